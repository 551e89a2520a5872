"""The base model for training, materialized once from the GGUF the server runs.

transformers reads a GGUF directly (``from_pretrained(dir, gguf_file=name)``) and dequantizes
its tensors to float32, un-permuting Q and K back to the Hugging Face layout
(``modeling_gguf_pytorch_utils.py``). The model it returns still carries a GGUF
``quantization_config`` and an ``hf_quantizer``, and in transformers 5.23 both ``Trainer`` and
``save_pretrained`` refuse such a model. So the dequantized weights are copied into a plain
model built from the same config without the quantization flags, and saved once as an
ordinary checkpoint keyed by the GGUF's hash; training loads that checkpoint.

transformers cannot read every GGUF (CodeGemma's ``gemma`` architecture, or tokenizers whose
pre-tokenizer it lacks, such as deepseek-coder's and starcoder's), so ``training.base`` may
name the model's HF checkpoint instead. An adapter trained on another model than the one
served would be applied to weights it never saw, so ``check_base`` compares the two first:
architecture, layer count, width, and the text that the GGUF's token ids of a probe stand for
in the checkpoint's tokenizer (the rows are tokenized by llama.cpp: ``served_tokens``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

BASE_DIR = "base"
"""Sub-folder of the cache root holding one checkpoint per GGUF hash."""

PROBE = ("def área(radius: float) -> float:\n    \"\"\"Return π·r².\"\"\"\n"
         "\treturn 3.14159 * radius ** 2  # 😀\n\n\nclass Point { int x; };\n"
         "    if (x != NULL) { printf(\"%d\\n\", x); }\r\n12345678 0x1F\n")
"""Text whose token ids must agree between the GGUF's tokenizer and the checkpoint's: code in
several languages, indentation by spaces and tabs, runs of newlines, digits, accents, emoji."""


class BaseMismatch(ValueError):
    """The training base is not the model the server runs; the message says what differs."""


def gguf_digest(gguf: Path) -> str:
    """First 16 hex digits of the GGUF file's SHA-256: the checkpoint's folder name."""
    sha = hashlib.sha256()
    with gguf.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()[:16]


def _convert(gguf: Path, dest: Path) -> None:
    """Dequantize ``gguf`` and save a plain float32 checkpoint (model + tokenizer) in ``dest``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    config = loaded.config
    # The flags that make transformers treat the model as GGUF-quantized (not serializable).
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    state = loaded.state_dict()
    del loaded
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Tied embeddings: lm_head.weight may be absent from the GGUF and come from embed_tokens.
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise ValueError(f"{gguf}: weights do not match the model built from its config "
                         f"(missing {missing}, unexpected {unexpected})")
    model.tie_weights()
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)


def materialize(gguf: Path, cache_root: Path) -> Path:
    """The plain checkpoint of ``gguf`` under ``cache_root/base/<hash>``, made on first use.

    Written into a temporary folder beside it and renamed into place, so a run killed half-way
    never leaves a partial checkpoint that a later run would trust.
    """
    gguf = Path(gguf)
    if not gguf.is_file():
        raise FileNotFoundError(f"base GGUF not found: {gguf}")
    parent = Path(cache_root) / BASE_DIR
    dest = parent / gguf_digest(gguf)
    if (dest / "config.json").is_file():
        return dest
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=parent))
    try:
        _convert(gguf, tmp)
        try:
            os.rename(tmp, dest)
        except OSError:
            # Another process finished first (dest exists and is non-empty): keep theirs.
            if not (dest / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _gguf_facts(gguf: Path) -> tuple[str, int, int]:
    """(architecture, block count, embedding width) from the GGUF's metadata."""
    from gguf import GGUFReader

    reader = GGUFReader(gguf)
    fields = reader.fields
    arch = str(fields["general.architecture"].contents())
    facts = [fields.get(f"{arch}.{key}") for key in ("block_count", "embedding_length")]
    if any(f is None for f in facts):
        raise BaseMismatch(f"{gguf}: {arch}.block_count or {arch}.embedding_length is missing")
    return arch, int(facts[0].contents()), int(facts[1].contents())


def check_base(hf_dir: Path, gguf: Path) -> None:
    """Raise BaseMismatch unless the HF checkpoint ``hf_dir`` is the model in ``gguf``.

    Compared: the architecture (``config.model_type`` as ``convert_hf_to_gguf.py`` names it),
    the layer count, the hidden width, and whether llama.cpp's ids of ``PROBE`` read back as
    ``PROBE`` in transformers' tokenizer (the same vocabulary). Weights are not compared: a
    quantized GGUF differs from its checkpoint by design.
    """
    import json

    from compilot.training.gguf_adapter import HF_MODEL_TYPES
    from compilot.training.served_tokens import ServedTokens

    hf_dir, gguf = Path(hf_dir), Path(gguf)
    config_path = hf_dir / "config.json"
    if not config_path.is_file():
        raise BaseMismatch(f"training.base {hf_dir} is not an HF checkpoint folder (no "
                           "config.json): name the folder holding the model's config.json, "
                           "weights and tokenizer, or leave training.base unset to train on "
                           "the GGUF itself")
    config = json.loads(config_path.read_text())
    text = config.get("text_config") or {}  # multimodal checkpoints (Gemma 3) nest it
    arch, blocks, width = _gguf_facts(gguf)
    model_type = config.get("model_type")
    hf_arch = HF_MODEL_TYPES.get(str(model_type), model_type)
    if hf_arch != arch:
        raise BaseMismatch(f"training.base {hf_dir} is a {model_type} checkpoint, but the "
                           f"served model {gguf.name} is {arch}: name the HF checkpoint the "
                           "GGUF was converted from")
    for what, key, expected in (("layers", "num_hidden_layers", blocks),
                                ("hidden width", "hidden_size", width)):
        found = config.get(key, text.get(key))
        if found != expected:
            raise BaseMismatch(f"training.base {hf_dir} has {found} {what}, the served model "
                               f"{gguf.name} has {expected}: they are different models (another "
                               "size of the family?)")
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    except (OSError, ValueError) as exc:
        raise BaseMismatch(f"training.base {hf_dir}: its tokenizer does not load: {exc}") from exc
    with ServedTokens(gguf) as served:
        ours = served.ids(PROBE)
    # Training rows are llama.cpp's ids (served_tokens): what must agree is the text each id
    # stands for. How each tokenizer splits a text may differ (transformers lacks some
    # pre-tokenizers); that alone costs nothing, since transformers' split is never trained on.
    read = tokenizer.decode(ours, clean_up_tokenization_spaces=False)
    if read != PROBE:
        at = next((i for i in range(len(ours)) if not PROBE.startswith(
            tokenizer.decode(ours[:i + 1], clean_up_tokenization_spaces=False))), len(ours))
        raise BaseMismatch(
            f"training.base {hf_dir} reads {gguf.name}'s token ids as other text (token {at}: "
            f"id {ours[at] if at < len(ours) else None} is "
            f"{tokenizer.decode(ours[at:at + 1])!r} there): its vocabulary is another model's; "
            "name the checkpoint the GGUF was converted from, with its own tokenizer files")
    theirs = tokenizer(PROBE, add_special_tokens=False)["input_ids"]
    if theirs != ours:
        log.info("%s splits text unlike llama.cpp's tokenizer of %s (%d ids against %d); "
                 "training uses llama.cpp's", hf_dir, gguf.name, len(theirs), len(ours))


def training_base(configured: str | None, gguf: Path, cache_root: Path) -> Path:
    """The checkpoint to train on: ``configured`` (``training.base``) once it passes
    ``check_base`` against the served ``gguf``, else the GGUF materialized."""
    if not configured:
        return materialize(gguf, cache_root)
    hf_dir = Path(configured).expanduser()
    if hf_dir.resolve() != (Path(cache_root) / BASE_DIR / gguf_digest(gguf)).resolve():
        check_base(hf_dir, gguf)  # the GGUF's own materialized checkpoint needs no check
    return hf_dir


def load_base(path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The materialized checkpoint at ``path`` as (model, tokenizer), in float32."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path)
    return model, tokenizer
