"""The base model for training, materialized once from the GGUF the server runs.

transformers reads a GGUF directly (``from_pretrained(dir, gguf_file=name)``) and dequantizes
its tensors to float32, un-permuting Q and K back to the Hugging Face layout
(``modeling_gguf_pytorch_utils.py``). The model it returns still carries a GGUF
``quantization_config`` and an ``hf_quantizer``, and in transformers 5.23 both ``Trainer`` and
``save_pretrained`` refuse such a model. So the dequantized weights are copied into a plain
model built from the same config without the quantization flags, and saved once as an
ordinary checkpoint keyed by the GGUF's hash; training loads that checkpoint.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

BASE_DIR = "base"
"""Sub-folder of the cache root holding one checkpoint per GGUF hash."""


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


def load_base(path: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The materialized checkpoint at ``path`` as (model, tokenizer), in float32."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path)
    return model, tokenizer
