"""Build a tiny random-weight llama GGUF with fill-in-the-middle tokens, for tests.

Why this exists: no FIM-capable model can be downloaded on the test machines, but the
llama-cpp-python sdist ships tokenizer-only GGUFs. ``tests/data/ggml-vocab-deepseek-coder.gguf``
(from llama-cpp-python 0.3.36, ``vendor/llama.cpp/models/``) has the deepseek-coder vocabulary,
whose ``<｜fim▁begin｜>``, ``<｜fim▁hole｜>`` and ``<｜fim▁end｜>`` tokens llama.cpp recognises by
their text as FIM prefix, suffix and middle (the file has no ``tokenizer.ggml.fim_*_id`` keys).
This module copies that vocabulary into a 2-layer llama model whose weights make greedy
decoding always pick one token, ``favourite``, whatever the prompt:

* ``attn_output`` and ``ffn_down`` are zero, so the residual stream is the token embedding;
* every token embedding is ``1.0`` in dimension 0 (other dimensions small random numbers),
  so after the final RMS norm (weights all ones) dimension 0 is positive;
* ``output.weight`` is zero except ``+10`` at dimension 0 of the favourite token's row, so the
  favourite's logit is positive and every other logit is exactly zero.

The default favourite ``"x"`` is token 87 (no leading space); ``" x"`` would be token 1371
(``Ġx``). The model never predicts EOS, so generation runs until its token limit. Writing takes
about a second, mostly ``GGUFReader`` parsing the vocabulary (cached per process); the file is
~9.6 MB. Under CPU load, load it with ``n_threads_batch=1``: llama-cpp-python's default (all
cores) makes every multi-token ``eval`` stall ~0.5 s on a busy 2-core machine.
Usage: ``python tests/fim_model.py OUT.gguf [FAVOURITE]``.
"""

from __future__ import annotations

import functools
import pathlib
import sys
from typing import Any

import numpy as np
from gguf import GGUFReader, GGUFValueType, GGUFWriter

DEFAULT_VOCAB = pathlib.Path(__file__).parent / "data" / "ggml-vocab-deepseek-coder.gguf"

N_EMBD = 64
N_LAYER = 2
N_HEAD = 4
N_HEAD_KV = 4
N_FF = 128
N_CTX_TRAIN = 2048


def _byte_level(text: str) -> str:
    """``text`` as GPT-2 byte-level BPE writes it in the vocabulary (``" x"`` -> ``"Ġx"``)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    table: dict[int, str] = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return "".join(table[b] for b in text.encode("utf-8"))


TokenizerKV = tuple[str, Any, GGUFValueType, GGUFValueType | None]


@functools.cache
def _tokenizer_kv(vocab_gguf: pathlib.Path) -> tuple[TokenizerKV, ...]:
    """Every ``tokenizer.*`` key of ``vocab_gguf`` with its value and type (parsing is slow)."""
    kv: list[TokenizerKV] = []
    for key, field in GGUFReader(vocab_gguf).fields.items():
        if not key.startswith("tokenizer."):
            continue
        vtype = GGUFValueType(field.types[0])
        sub_type = GGUFValueType(field.types[-1]) if vtype == GGUFValueType.ARRAY else None
        if sub_type is not None and len(field.types) != 2:
            raise ValueError(f"nested array {key} is not supported")
        kv.append((key, field.contents(), vtype, sub_type))
    return tuple(kv)


def write_fim_model(path: pathlib.Path, vocab_gguf: pathlib.Path = DEFAULT_VOCAB,
                    favourite: str = "x") -> pathlib.Path:
    """Write the tiny model to ``path`` and return ``path``.

    ``favourite`` is the exact text of the token greedy decoding always produces; it must be a
    single token of the (byte-level BPE) vocabulary.
    """
    kv = _tokenizer_kv(pathlib.Path(vocab_gguf).resolve())
    tokens: list[str] = next((v for k, v, *_ in kv if k == "tokenizer.ggml.tokens"), [])
    n_vocab = len(tokens)
    try:
        fav_id = tokens.index(_byte_level(favourite))
    except ValueError:
        raise ValueError(f"{favourite!r} is not a single token of {vocab_gguf}") from None

    writer = GGUFWriter(path, arch="llama")
    writer.add_name("compilot-test-fim")
    for key, value, vtype, sub_type in kv:
        writer.add_key_value(key, value, vtype, sub_type=sub_type)

    head_dim = N_EMBD // N_HEAD
    writer.add_context_length(N_CTX_TRAIN)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD_KV)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(1)  # mostly f16

    rng = np.random.default_rng(0)

    def rand(*shape: int) -> np.ndarray:  # numpy shape = reversed ggml ne
        return (rng.standard_normal(shape) * 0.02).astype(np.float16)

    ones = np.ones(N_EMBD, dtype=np.float32)
    embd = rand(n_vocab, N_EMBD)
    embd[:, 0] = 1.0
    output = np.zeros((n_vocab, N_EMBD), dtype=np.float16)
    output[fav_id, 0] = 10.0
    writer.add_tensor("token_embd.weight", embd)
    writer.add_tensor("output_norm.weight", ones)
    writer.add_tensor("output.weight", output)
    for i in range(N_LAYER):
        blk = f"blk.{i}"
        writer.add_tensor(f"{blk}.attn_norm.weight", ones)
        writer.add_tensor(f"{blk}.attn_q.weight", rand(N_HEAD * head_dim, N_EMBD))
        writer.add_tensor(f"{blk}.attn_k.weight", rand(N_HEAD_KV * head_dim, N_EMBD))
        writer.add_tensor(f"{blk}.attn_v.weight", rand(N_HEAD_KV * head_dim, N_EMBD))
        writer.add_tensor(f"{blk}.attn_output.weight",
                          np.zeros((N_EMBD, N_HEAD * head_dim), dtype=np.float16))
        writer.add_tensor(f"{blk}.ffn_norm.weight", ones)
        writer.add_tensor(f"{blk}.ffn_gate.weight", rand(N_FF, N_EMBD))
        writer.add_tensor(f"{blk}.ffn_up.weight", rand(N_FF, N_EMBD))
        writer.add_tensor(f"{blk}.ffn_down.weight", np.zeros((N_EMBD, N_FF), dtype=np.float16))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(f"usage: {sys.argv[0]} OUT.gguf [FAVOURITE]")
    out = write_fim_model(pathlib.Path(sys.argv[1]), favourite=(sys.argv[2:] or ["x"])[0])
    print(f"wrote {out} ({out.stat().st_size} bytes)")
