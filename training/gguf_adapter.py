"""Convert a PEFT LoRA adapter into a GGUF LoRA adapter that llama.cpp applies on the base.

The layout follows llama.cpp's ``convert_lora_to_gguf.py`` and ``src/llama-adapter.cpp``:
KV ``general.type = "adapter"``, ``adapter.type = "lora"``, ``adapter.lora.alpha``, and per
target ``<gguf tensor>.lora_a`` / ``.lora_b``. PEFT's ``lora_A`` is [r, in] and ``lora_B`` is
[out, r] in numpy order, which are exactly the shapes llama.cpp expects (ggml ``ne`` is the
reverse: a is ne [in, r], b is ne [r, out]), so both are written as they are. llama.cpp
scales the product by ``alpha / r`` (r read from the tensors), as PEFT does without rsLoRA.

One twist: ``convert_hf_to_gguf.py`` (``LlamaModel.permute``) reorders the rows of the Q and K
weights of llama models so that rotary embeddings pair adjacent values. The base GGUF holds
``P @ W``, so the adapter's delta ``B @ A`` must become ``(P @ B) @ A``: the rows of B are
permuted, A is unchanged. Only llama is permuted (``PERMUTED``); qwen2, starcoder2 and the gemma
family keep Hugging Face's order.

The GGUF tensor of each PEFT module comes from the ``gguf`` package's own name maps
(``gguf.get_tensor_name_map``, the tables ``convert_hf_to_gguf.py`` converts the base with), so
starcoder2's ``mlp.c_fc`` becomes ``ffn_up`` as its base's tensor did; the architecture, block
count and head counts are read from the base GGUF. An architecture outside ``ARCHITECTURES``
is refused with the list of those known.
"""

from __future__ import annotations

import functools
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ARCHITECTURES = ("llama", "qwen2", "starcoder2", "gemma", "gemma2", "gemma3")
"""Base architectures (``general.architecture`` of the GGUF) whose adapters this converter
writes: the families local code models come in (Qwen2.5-Coder is qwen2, DeepSeek-Coder 1.3B
llama, StarCoder2 starcoder2, CodeGemma gemma, Gemma 2 / 3 gemma2 / gemma3)."""

PERMUTED = frozenset({"llama"})
"""Architectures whose Q and K rows ``convert_hf_to_gguf.py`` reorders (``LlamaModel.permute``);
the others keep Hugging Face's row order."""

HF_MODEL_TYPES = {"llama": "llama", "qwen2": "qwen2", "starcoder2": "starcoder2",
                  "gemma": "gemma", "gemma2": "gemma2", "gemma3": "gemma3",
                  "gemma3_text": "gemma3"}
"""transformers' ``config.model_type`` -> the GGUF architecture it converts to."""


def _tensor_types() -> frozenset[Any]:
    import gguf

    t = gguf.MODEL_TENSOR
    return frozenset({t.ATTN_Q, t.ATTN_K, t.ATTN_V, t.ATTN_OUT, t.FFN_GATE, t.FFN_UP,
                      t.FFN_DOWN})


@functools.lru_cache(maxsize=16)
def _name_map(arch: str, blocks: int) -> Any:
    """The ``gguf`` package's map from Hugging Face tensor names to GGUF ones, for ``arch``
    (built once per architecture and block count: ``targets`` asks it for every module)."""
    import gguf

    by_name = {name: key for key, name in gguf.MODEL_ARCH_NAMES.items()}
    if arch not in ARCHITECTURES or arch not in by_name:
        raise ValueError(f"architecture {arch!r} is not supported for adapters "
                         f"(supported: {', '.join(ARCHITECTURES)})")
    return gguf.get_tensor_name_map(by_name[arch], blocks)


def gguf_name(module: str, arch: str, blocks: int) -> str | None:
    """The GGUF tensor (``blk.3.attn_q``) that the Hugging Face linear ``module``
    (``model.layers.3.self_attn.q_proj``) becomes in ``arch``, or None where it is no
    projection an adapter can carry (an embedding, a norm, a module the architecture lacks)."""
    found = _name_map(arch, blocks).get_type_and_name(module)
    if found is None or found[0] not in _tensor_types():
        return None
    return str(found[1])


def targets(model: Any, arch: str) -> list[str]:
    """The LoRA target modules of ``model`` (a transformers model) that a llama.cpp adapter
    for ``arch`` carries: the leaf names (``q_proj``, ``c_fc``) of its block projections."""
    import torch

    blocks = int(getattr(model.config, "num_hidden_layers", 0) or 0)
    names = {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
             if isinstance(module, torch.nn.Linear) and gguf_name(name, arch, blocks)}
    return sorted(names)


def architecture_of(model: Any) -> str:
    """The GGUF architecture of a transformers model, or ValueError naming the ones known."""
    model_type = getattr(model.config, "model_type", None)
    if model_type not in HF_MODEL_TYPES:
        raise ValueError(f"model type {model_type!r} has no llama.cpp adapter converter "
                         f"(supported: {', '.join(sorted(HF_MODEL_TYPES))})")
    return HF_MODEL_TYPES[model_type]


_KEY = re.compile(r"^base_model\.model\.(.+)\.lora_([AB])\.weight$")


def permute_qk(weights: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder rows as ``convert_hf_to_gguf.py``'s ``LlamaModel.permute`` does for Q and K.

    Within each head, the two interleaved halves of the rotary dimension are regrouped; for K
    ``n_head`` is the KV head count. Works on any array whose first axis is ``n_head * dim``.
    """
    rows = weights.shape[0]
    if rows % (2 * n_head):
        raise ValueError(f"cannot permute {rows} rows into {n_head} heads of even size")
    return (weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2)
            .reshape(weights.shape))


def _check_config(config: dict, source: Path, known: frozenset[str]) -> float:
    """``lora_alpha`` from a PEFT LoRA config, or ValueError for what llama.cpp cannot apply."""
    if config.get("peft_type", "LORA") != "LORA":
        raise ValueError(f"{source}: peft_type is {config['peft_type']!r}; only LORA converts")
    refused = {
        "use_rslora": "llama.cpp scales by alpha/r; retrain with use_rslora=False",
        "use_dora": "llama.cpp has no DoRA; retrain with use_dora=False",
        "lora_bias": "llama.cpp adapters carry no bias; retrain with lora_bias=False",
        "alpha_pattern": "a GGUF adapter has one alpha; retrain without alpha_pattern",
        "modules_to_save": "only LoRA matrices convert; retrain without modules_to_save",
    }
    for key, why in refused.items():
        if config.get(key):
            raise ValueError(f"{source}: {key}={config[key]!r} is not supported ({why})")
    if config.get("bias", "none") != "none":
        raise ValueError(f"{source}: bias={config['bias']!r} is not supported "
                         "(llama.cpp adapters carry no bias; use bias='none')")
    wanted = config.get("target_modules")
    if isinstance(wanted, list | tuple | set):
        unsupported = sorted(set(wanted) - known)
        if unsupported:
            raise ValueError(f"{source}: unsupported target_modules {unsupported}; "
                             f"supported: {sorted(known)}")
    return float(config["lora_alpha"])


_LEAVES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "c_fc",
           "c_proj")
"""The projections' module names in the supported families' transformers models."""


@dataclass(frozen=True)
class BaseShape:
    """What the converter reads from the base GGUF."""

    arch: str
    blocks: int
    n_head: int
    n_head_kv: int

    def known_targets(self) -> frozenset[str]:
        """Leaf module names with a GGUF projection in this architecture."""
        return frozenset(n for n in _LEAVES for part in ("self_attn", "mlp")
                         if gguf_name(f"model.layers.0.{part}.{n}", self.arch, self.blocks))


def _base_metadata(base_gguf: Path) -> BaseShape:
    """The architecture, block count and head counts of the base GGUF."""
    from gguf import GGUFReader

    reader = GGUFReader(base_gguf)

    def field(key: str) -> object:
        if key not in reader.fields:
            raise ValueError(f"{base_gguf}: metadata key {key!r} is missing")
        return reader.fields[key].contents()

    arch = str(field("general.architecture"))
    if arch not in ARCHITECTURES:
        raise ValueError(f"{base_gguf}: architecture {arch!r} is not supported for adapters "
                         f"(supported: {', '.join(ARCHITECTURES)})")
    blocks = field(f"{arch}.block_count")
    n_head = field(f"{arch}.attention.head_count")
    n_head_kv = field(f"{arch}.attention.head_count_kv")
    if not isinstance(n_head, int) or not isinstance(n_head_kv, int):
        raise ValueError(f"{base_gguf}: per-layer head counts are not supported")
    if not isinstance(blocks, int):
        raise ValueError(f"{base_gguf}: {arch}.block_count is not a number")
    return BaseShape(arch, blocks, n_head, n_head_kv)


def peft_to_gguf(adapter_dir: Path, base_gguf: Path, out: Path) -> Path:
    """Write the PEFT LoRA adapter in ``adapter_dir`` as a llama.cpp GGUF adapter at ``out``.

    ``base_gguf`` is the GGUF the adapter will be applied to: its architecture and head counts
    decide the names and the Q/K row order. Raises ValueError for settings or modules that
    llama.cpp cannot apply. The file is written beside ``out`` and renamed into place.
    """
    import gguf
    from safetensors.numpy import load_file

    adapter_dir, base_gguf, out = Path(adapter_dir), Path(base_gguf), Path(out)
    config_path = adapter_dir / "adapter_config.json"
    weights_path = adapter_dir / "adapter_model.safetensors"
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"PEFT adapter file not found: {path}")
    base = _base_metadata(base_gguf)
    alpha = _check_config(json.loads(config_path.read_text()), config_path,
                          base.known_targets())

    pairs: dict[str, dict[str, np.ndarray]] = {}
    unsupported: set[str] = set()
    for key, value in load_file(weights_path).items():
        match = _KEY.match(key)
        name = gguf_name(match.group(1), base.arch, base.blocks) if match else None
        if match is None or name is None:
            unsupported.add(match.group(1) if match else key)
            continue
        pairs.setdefault(name, {})[match.group(2)] = value.astype(np.float32)
    if unsupported:
        raise ValueError(f"{weights_path}: modules with no {base.arch} adapter tensor: "
                         f"{sorted(unsupported)[:6]}; supported: {sorted(base.known_targets())}")
    if not pairs:
        raise ValueError(f"{weights_path}: no LoRA weights found")

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}-", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer = gguf.GGUFWriter(tmp, base.arch)  # also writes general.architecture
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        for name, ab in sorted(pairs.items()):
            if set(ab) != {"A", "B"}:
                raise ValueError(f"{weights_path}: {name} lacks lora_A or lora_B")
            a, b = ab["A"], ab["B"]
            if a.shape[0] != b.shape[1]:
                raise ValueError(f"{weights_path}: {name}: rank mismatch "
                                 f"A {a.shape} vs B {b.shape}")
            if base.arch in PERMUTED and name.endswith(".attn_q"):
                b = permute_qk(b, base.n_head)
            elif base.arch in PERMUTED and name.endswith(".attn_k"):
                b = permute_qk(b, base.n_head_kv)
            writer.add_tensor(f"{name}.weight.lora_a", np.ascontiguousarray(a))
            writer.add_tensor(f"{name}.weight.lora_b", np.ascontiguousarray(b))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
