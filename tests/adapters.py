"""A random LoRA adapter for the embedded model, built without torch: PEFT's file layout
(adapter_config.json + adapter_model.safetensors) written with numpy, then converted to a GGUF
adapter by the real converter. For tests of the adapter swap. And a random PEFT LoRA on a
transformers model, for the tests that compare llama.cpp with the merged PEFT model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGUFReader
from safetensors.numpy import save_file

from compilot.training.gguf_adapter import peft_to_gguf


def _meta(reader: GGUFReader, key: str) -> int:
    field = reader.fields[key]
    return int(field.parts[field.data[0]][0])


def random_adapter(base_gguf: Path, out_dir: Path, *, rank: int = 4, scale: float = 0.05,
                   seed: int = 0) -> Path:
    """Write a PEFT-layout LoRA for ``base_gguf`` and its GGUF conversion; returns the GGUF."""
    reader = GGUFReader(base_gguf)
    arch = "llama"
    n_embd = _meta(reader, f"{arch}.embedding_length")
    n_ff = _meta(reader, f"{arch}.feed_forward_length")
    n_layer = _meta(reader, f"{arch}.block_count")
    n_head = _meta(reader, f"{arch}.attention.head_count")
    n_kv = _meta(reader, f"{arch}.attention.head_count_kv")
    kv_dim = n_embd // n_head * n_kv
    shapes = {"self_attn.q_proj": (n_embd, n_embd), "self_attn.k_proj": (n_embd, kv_dim),
              "self_attn.v_proj": (n_embd, kv_dim), "self_attn.o_proj": (n_embd, n_embd),
              "mlp.gate_proj": (n_embd, n_ff), "mlp.up_proj": (n_embd, n_ff),
              "mlp.down_proj": (n_ff, n_embd)}
    rng = np.random.default_rng(seed)
    tensors = {}
    for layer in range(n_layer):
        for module, (n_in, n_out) in shapes.items():
            name = f"base_model.model.model.layers.{layer}.{module}"
            tensors[f"{name}.lora_A.weight"] = (rng.standard_normal((rank, n_in)) * scale
                                                ).astype(np.float32)
            tensors[f"{name}.lora_B.weight"] = (rng.standard_normal((n_out, rank)) * scale
                                                ).astype(np.float32)
    peft_dir = out_dir / "peft"
    peft_dir.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(peft_dir / "adapter_model.safetensors"))
    (peft_dir / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank, "bias": "none",
        "target_modules": sorted(m.split(".")[1] for m in shapes)}))
    return peft_to_gguf(peft_dir, base_gguf, out_dir / "adapter.gguf")


def random_peft(model: Any, targets: list[str], *, rank: int, alpha: int,
                b_scale: float) -> Any:
    """``model`` (transformers) wrapped in a PEFT LoRA on ``targets`` with random A and B:
    PEFT's ``init_lora_weights=False`` (nn.Linear's Kaiming init), B scaled by ``b_scale``,
    torch's seed 0."""
    import peft
    import torch

    torch.manual_seed(0)
    config = peft.LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets,
                             init_lora_weights=False)
    wrapped = peft.get_peft_model(model, config)
    with torch.no_grad():
        for name, param in wrapped.named_parameters():
            if "lora_B" in name:
                param.mul_(b_scale)
    return wrapped
