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
permuted, A is unchanged.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np

HF_TO_GGUF = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
"""PEFT module (relative to a decoder layer) -> llama.cpp tensor name (``blk.{i}.<name>``)."""

SUPPORTED_TARGETS = frozenset(name.split(".")[1] for name in HF_TO_GGUF)

SUPPORTED_ARCHITECTURES = frozenset({"llama"})
"""Base architectures whose Q/K layout this converter knows (llama: permuted)."""

_KEY = re.compile(
    r"^base_model\.model\.model\.layers\.(\d+)\.((?:self_attn|mlp)\.\w+)\.lora_([AB])\.weight$"
)


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


def _check_config(config: dict, source: Path) -> float:
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
    targets = config.get("target_modules")
    if isinstance(targets, list | tuple | set):
        unsupported = sorted(set(targets) - SUPPORTED_TARGETS)
        if unsupported:
            raise ValueError(f"{source}: unsupported target_modules {unsupported}; "
                             f"supported: {sorted(SUPPORTED_TARGETS)}")
    return float(config["lora_alpha"])


def _base_metadata(base_gguf: Path) -> tuple[str, int, int]:
    """(architecture, head count, KV head count) read from the base GGUF."""
    from gguf import GGUFReader

    reader = GGUFReader(base_gguf)

    def field(key: str) -> object:
        if key not in reader.fields:
            raise ValueError(f"{base_gguf}: metadata key {key!r} is missing")
        return reader.fields[key].contents()

    arch = str(field("general.architecture"))
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ValueError(f"{base_gguf}: architecture {arch!r} is not supported "
                         f"(supported: {sorted(SUPPORTED_ARCHITECTURES)})")
    n_head = field(f"{arch}.attention.head_count")
    n_head_kv = field(f"{arch}.attention.head_count_kv")
    if not isinstance(n_head, int) or not isinstance(n_head_kv, int):
        raise ValueError(f"{base_gguf}: per-layer head counts are not supported")
    return arch, n_head, n_head_kv


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
    alpha = _check_config(json.loads(config_path.read_text()), config_path)
    arch, n_head, n_head_kv = _base_metadata(base_gguf)

    pairs: dict[tuple[int, str], dict[str, np.ndarray]] = {}
    unsupported: set[str] = set()
    for key, value in load_file(weights_path).items():
        match = _KEY.match(key)
        if match is None or match.group(2) not in HF_TO_GGUF:
            unsupported.add(match.group(2) if match else key)
            continue
        layer, module, which = int(match.group(1)), match.group(2), match.group(3)
        pairs.setdefault((layer, module), {})[which] = value.astype(np.float32)
    if unsupported:
        raise ValueError(f"{weights_path}: unsupported target modules {sorted(unsupported)}; "
                         f"supported: {sorted(SUPPORTED_TARGETS)}")
    if not pairs:
        raise ValueError(f"{weights_path}: no LoRA weights found")

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}-", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer = gguf.GGUFWriter(tmp, arch)  # also writes general.architecture
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        for (layer, module), ab in sorted(pairs.items()):
            if set(ab) != {"A", "B"}:
                raise ValueError(f"{weights_path}: layer {layer} {module} lacks lora_A or lora_B")
            a, b = ab["A"], ab["B"]
            if a.shape[0] != b.shape[1]:
                raise ValueError(f"{weights_path}: layer {layer} {module}: rank mismatch "
                                 f"A {a.shape} vs B {b.shape}")
            if module == "self_attn.q_proj":
                b = permute_qk(b, n_head)
            elif module == "self_attn.k_proj":
                b = permute_qk(b, n_head_kv)
            name = f"blk.{layer}.{HF_TO_GGUF[module]}.weight"
            writer.add_tensor(f"{name}.lora_a", np.ascontiguousarray(a))
            writer.add_tensor(f"{name}.lora_b", np.ascontiguousarray(b))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
