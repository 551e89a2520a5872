"""Tiny random-weight models of llama, qwen2, starcoder2 and gemma3, each as an HF checkpoint
and as a GGUF made from it by llama.cpp's own ``convert_hf_to_gguf.py``, built at test time.

Why this exists: training and adapter tests need a base of each architecture compilot serves in
both forms (transformers trains on the checkpoint, llama.cpp serves the GGUF), and nothing can be
downloaded from the Hugging Face Hub on the test machines. The weights are random (fixed seed);
the tokenizers are real: llama.cpp's tokenizer-only GGUFs from the llama-cpp-python sdist
(``vendor/llama.cpp/models/``, copied to ``tests/data/``), turned into HF tokenizer files by
transformers and back into GGUF vocabularies by the converter, which checks the pre-tokenizer
by hashing a probe text (``get_vocab_base_pre``) and stops on one it does not know.

* llama: ``ggml-vocab-llama-bpe`` (Llama 3; 128,256), untied output, BOS added to every text;
* qwen2: ``ggml-vocab-qwen2`` (151,936), which is Qwen2's and has no FIM tokens, so Qwen2.5's
  special tokens (``<|fim_prefix|>`` = 151659 ...) are written over the ``[PAD151646]``...
  placeholders at their real ids;
* starcoder2: ``ggml-vocab-starcoder`` (49,152; ``<fim_prefix>`` = 1), biased c_fc/c_proj MLP;
* gemma3: ``ggml-vocab-gpt-2`` (50,257), no FIM tokens.

Gemma's own vocabulary cannot be used: the converter reads it from ``tokenizer.model`` with the
``sentencepiece`` package, which compilot does not install, and the gemma-4 vocabulary GGUF has
262,144 tokens (16 MB, and 67 MB of embeddings per file). Any byte-level BPE vocabulary the
converter knows is as good a test of the architecture, so gemma3 gets GPT-2's. Gemma2 is left out
for the same reason: its converter has no path without ``tokenizer.model``.

Choices that keep the three readers (transformers, llama.cpp, transformers' GGUF loader) in
agreement, each found by a mismatch:

* gemma3 keeps the real ``head_dim = query_pre_attn_scalar = 256``: llama.cpp scales queries by
  ``1/sqrt(head_dim)`` (``src/models/gemma3.cpp``) and transformers' GGUF loader resets
  ``query_pre_attn_scalar`` to 256, so any other pair disagrees somewhere;
* gemma3 has 6 layers: the converter does not write ``layer_types`` and llama.cpp assumes five
  sliding layers to one global (``load_swa_pattern(ml, 6)``), so 6 is the smallest count with
  both kinds; its ``sliding_window`` is 8 so that short prompts cross it;
* starcoder2 has no sliding window (llama.cpp implements none for it).

Two workarounds, both for the converter run only: it imports ``sentencepiece`` before checking
that ``tokenizer.model`` exists (``_create_vocab_sentencepiece``), so the ``except
FileNotFoundError`` fallbacks of llama and qwen2 die on ImportError without the package; a
small stand-in module on its ``PYTHONPATH`` lets them reach the check. And it needs the
``gguf-py`` shipped beside it (the installed gguf 0.19.0 lacks ``LazyChunkedTensor``), which it
puts on ``sys.path`` itself unless ``NO_LOCAL_GGUF`` is set, so that variable is dropped.

The converter and its ``conversion/`` and ``gguf-py/`` (~2 MB of the 77 MB sdist) are extracted
once per machine to ``~/.cache/compilot/llama-cpp-python-<version>-src/``, next to the Makefile's
wheel cache, from ``pip download`` of the installed llama-cpp-python version (10 s with pip's
cache warm, two minutes cold); they are not copied into the repository, which would freeze 2 MB
of third-party code that has to match the installed llama.cpp anyway.
Building one takes 10-30 s on a busy 2-core machine (starcoder2 fastest, llama slowest), two
thirds of it the converter (its imports, the vocabulary); ``build`` reuses a finished folder, so
a session that shares ``out_dir`` builds each once (~300 MB on disk for all four,
a half of it llama's).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data"
LLAMA_CPP_VERSION = importlib.metadata.version("llama-cpp-python")
SOURCE_CACHE = Path.home() / ".cache" / "compilot" / f"llama-cpp-python-{LLAMA_CPP_VERSION}-src"
"""Where the converter is kept: ``convert_hf_to_gguf.py`` with ``conversion/`` and ``gguf-py/``."""
_SDIST_DIR = "vendor/llama.cpp/"
_SDIST_MEMBERS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")

SEED = 0
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 2048}

# Qwen2.5's added tokens at their ids (its tokenizer.json); the qwen2 vocabulary GGUF is Qwen2's,
# which stops at <|im_end|> (151645) and pads the rest with [PAD<id>] placeholders.
QWEN25_SPECIAL = dict(enumerate((
    "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>",
    "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>",
    "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"),
    start=151646))

_SENTENCEPIECE_STANDIN = (
    '"""Stand-in for sentencepiece, for the converter only: see tests/arch_models.py."""\n\n\n'
    "class SentencePieceProcessor:\n"
    "    def __init__(self, *args, **kwargs):\n"
    "        raise ImportError('sentencepiece is not installed')\n")

ARCHITECTURES: tuple[str, ...] = ("llama", "qwen2", "starcoder2", "gemma3")


@dataclass(frozen=True)
class Fixture:
    """One built architecture: its HF checkpoint folder and the float32 GGUF converted from it."""

    arch: str
    hf_dir: Path
    gguf: Path
    fim: bool
    """Whether the vocabulary has FIM prefix, suffix and middle tokens llama.cpp recognises."""


@dataclass(frozen=True)
class _Spec:
    vocab: str
    config: Callable[[dict[str, Any]], Any]
    """Builds the transformers config from the tokenizer's ids and size."""
    fim: bool
    add_bos: bool = False
    """Whether the tokenizer starts every text with BOS (Llama 3 does; the GGUF does not say)."""
    special: dict[int, str] = field(default_factory=dict)
    """Placeholder tokens of the vocabulary to respell, as special tokens, by id."""


def _llama(ids: dict[str, Any]) -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(**TINY, **ids, tie_word_embeddings=False)


def _qwen2(ids: dict[str, Any]) -> Any:
    from transformers import Qwen2Config

    return Qwen2Config(**TINY, **ids, tie_word_embeddings=True)


def _starcoder2(ids: dict[str, Any]) -> Any:
    from transformers import Starcoder2Config

    return Starcoder2Config(**TINY, **ids, use_bias=True, sliding_window=None,
                            tie_word_embeddings=True)


def _gemma3(ids: dict[str, Any]) -> Any:
    from transformers import Gemma3TextConfig

    return Gemma3TextConfig(**{**TINY, "num_hidden_layers": 6}, **ids, head_dim=256,
                            query_pre_attn_scalar=256, sliding_window=8)


_SPECS = {
    "llama": _Spec("ggml-vocab-llama-bpe.gguf", _llama, fim=False, add_bos=True),
    "qwen2": _Spec("ggml-vocab-qwen2.gguf", _qwen2, fim=True, special=QWEN25_SPECIAL),
    "starcoder2": _Spec("ggml-vocab-starcoder.gguf", _starcoder2, fim=True),
    "gemma3": _Spec("ggml-vocab-gpt-2.gguf", _gemma3, fim=False),
}


def converter_source() -> Path:
    """The folder holding ``convert_hf_to_gguf.py``, fetched and extracted on first use."""
    if (SOURCE_CACHE / "convert_hf_to_gguf.py").is_file():
        return SOURCE_CACHE
    SOURCE_CACHE.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=SOURCE_CACHE.parent, prefix=".fetch-") as tmp:
        download = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary",
             ":all:", f"llama-cpp-python=={LLAMA_CPP_VERSION}", "-d", tmp],
            capture_output=True, text=True)
        sdists = list(Path(tmp).glob("*.tar.gz"))
        if download.returncode != 0 or not sdists:
            raise RuntimeError(f"pip download of the llama-cpp-python {LLAMA_CPP_VERSION} sdist "
                               f"failed:\n{download.stderr[-2000:]}")
        staging = Path(tmp) / "src"
        with tarfile.open(sdists[0]) as tar:
            for member in tar.getmembers():
                _, _, inner = member.name.partition("/" + _SDIST_DIR)
                if inner.startswith(_SDIST_MEMBERS) and (member.isfile() or member.isdir()):
                    member.name = inner
                    tar.extract(member, staging, filter="data")
        if not (staging / "convert_hf_to_gguf.py").is_file():
            raise RuntimeError(f"{sdists[0].name} has no {_SDIST_DIR}convert_hf_to_gguf.py")
        try:
            staging.rename(SOURCE_CACHE)
        except OSError:  # another process finished first
            if not (SOURCE_CACHE / "convert_hf_to_gguf.py").is_file():
                raise
    return SOURCE_CACHE


def _tokenizer(spec: _Spec, hf_dir: Path) -> Any:
    """The vocabulary GGUF as HF tokenizer files in ``hf_dir``, loaded back from there.

    ``PreTrainedTokenizerFast`` rather than ``AutoTokenizer``: both build the same tokenizer.json,
    but AutoTokenizer first rebuilds a model config with the legacy GGUF reader, which takes
    ~10x longer (30 s for Qwen2's vocabulary on a loaded machine).
    """
    from transformers import PreTrainedTokenizerFast

    options = {"add_bos_token": True} if spec.add_bos else {}
    PreTrainedTokenizerFast.from_pretrained(DATA, gguf_file=spec.vocab,
                                            **options).save_pretrained(hf_dir)
    _edit(hf_dir / "tokenizer.json", spec.special)
    return PreTrainedTokenizerFast.from_pretrained(hf_dir)


def _edit(tokenizer_json: Path, special: dict[int, str]) -> None:
    """Drop the added tokens past the GGUF's vocabulary, and write ``special`` over the
    ``[PAD<id>]`` placeholders at those ids, as special tokens.

    A GGUF lists every token, so an added token with an id past them is one transformers
    invented: ``<|endoftext|>``, the unknown token of the ``GPT2Tokenizer`` it rebuilds
    byte-level vocabularies with, when the vocabulary has none (Llama 3's).
    """
    data = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    vocab: dict[str, int] = data["model"]["vocab"]
    data["added_tokens"] = [t for t in data["added_tokens"] if t["id"] < len(vocab)]
    added = {token["id"]: token for token in data["added_tokens"]}
    for token_id, text in special.items():
        placeholder = f"[PAD{token_id}]"
        if vocab.get(placeholder) != token_id or added[token_id]["content"] != placeholder:
            raise ValueError(f"{tokenizer_json}: token {token_id} is not {placeholder}")
        del vocab[placeholder]
        vocab[text] = token_id
        added[token_id].update(content=text, special=True)
    tokenizer_json.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def _randomize(model: Any, seed: int) -> None:
    """Weights with unit-scale activations and logits: N(0, 1/fan_in) matrices (embeddings
    included, so tied logits have std ~1), and norm weights and biases moved off their
    constant initial values by N(0, 0.1) so that a converter dropping or mis-shifting one
    shows."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, param in sorted(model.named_parameters()):
            noise = torch.randn(param.shape, generator=generator)
            if param.ndim >= 2:
                param.copy_(noise * param.shape[-1] ** -0.5)
            else:
                param.add_(noise * 0.1)


def _convert(hf_dir: Path, gguf: Path) -> None:
    """Run ``convert_hf_to_gguf.py`` on ``hf_dir``, writing a float32 GGUF."""
    env = {key: value for key, value in os.environ.items() if key != "NO_LOCAL_GGUF"}
    env["HF_HUB_OFFLINE"] = "1"
    if importlib.util.find_spec("sentencepiece") is None:
        shim = gguf.parent / "converter-shim"
        shim.mkdir(exist_ok=True)
        (shim / "sentencepiece.py").write_text(_SENTENCEPIECE_STANDIN, encoding="utf-8")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(shim), env.get("PYTHONPATH")]))
    run = subprocess.run(
        [sys.executable, str(converter_source() / "convert_hf_to_gguf.py"), str(hf_dir),
         "--outfile", str(gguf), "--outtype", "f32"],
        capture_output=True, text=True, env=env)
    if run.returncode != 0 or not gguf.is_file():
        raise RuntimeError(f"convert_hf_to_gguf.py failed on {hf_dir}:\n{run.stderr[-4000:]}")


def build(arch: str, out_dir: Path) -> Fixture:
    """Build ``arch`` under ``out_dir / arch`` (or return it if already built there).

    The folder appears complete or not at all: it is built under a dot-name and renamed.
    """
    if arch not in _SPECS:
        raise ValueError(f"unknown architecture {arch!r}; known: {list(ARCHITECTURES)}")
    spec = _SPECS[arch]
    final = out_dir / arch
    fixture = Fixture(arch=arch, hf_dir=final / "hf", gguf=final / f"{arch}-f32.gguf",
                      fim=spec.fim)
    if fixture.gguf.is_file():
        return fixture

    import torch
    from transformers import AutoModelForCausalLM

    out_dir.mkdir(parents=True, exist_ok=True)
    staging = out_dir / f".staging-{arch}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    hf_dir = staging / fixture.hf_dir.name
    tokenizer = _tokenizer(spec, hf_dir)
    config = spec.config({"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
                          "eos_token_id": tokenizer.eos_token_id,
                          "pad_token_id": tokenizer.pad_token_id})
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    _randomize(model, SEED)
    model.save_pretrained(hf_dir)
    _convert(hf_dir, staging / fixture.gguf.name)
    shutil.rmtree(staging / "converter-shim", ignore_errors=True)
    try:
        staging.rename(final)
    except OSError:  # built meanwhile by another process
        shutil.rmtree(staging, ignore_errors=True)
        if not fixture.gguf.is_file():
            raise
    return fixture


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(f"usage: {sys.argv[0]} OUT_DIR [ARCH...]")
    for name in sys.argv[2:] or ARCHITECTURES:
        print(build(name, Path(sys.argv[1])))
