"""The adapter converter per architecture: tensor names from the ``gguf`` package's own maps, the
Q/K permutation for llama only, target modules per family, and a clear refusal of the rest.
(The end-to-end check, llama.cpp with the adapter against the merged PEFT model, is in
``test_lora_export.py``.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from compilot.training.gguf_adapter import (
    ARCHITECTURES,
    gguf_name,
    peft_to_gguf,
    permute_qk,
)

N_HEAD, N_HEAD_KV, HEAD_DIM, N_EMBD = 4, 2, 8, 32


def base_header(path: Path, arch: str, blocks: int = 2) -> Path:
    """A GGUF holding only what the converter reads of a base: its architecture and shape."""
    import gguf

    writer = gguf.GGUFWriter(path, arch)
    writer.add_block_count(blocks)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD_KV)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def peft_adapter(folder: Path, modules: dict[str, tuple[int, int]], layers: int = 2) -> Path:
    """A PEFT LoRA folder with random A / B for ``modules`` (path in a block: (in, out))."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    tensors = {}
    for layer in range(layers):
        for module, (n_in, n_out) in modules.items():
            name = f"base_model.model.model.layers.{layer}.{module}"
            tensors[f"{name}.lora_A.weight"] = rng.standard_normal((2, n_in)).astype(np.float32)
            tensors[f"{name}.lora_B.weight"] = rng.standard_normal((n_out, 2)).astype(np.float32)
    folder.mkdir(parents=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps({
        "peft_type": "LORA", "r": 2, "lora_alpha": 4, "bias": "none",
        "target_modules": sorted({m.split(".")[1] for m in modules})}))
    return folder


def read(path: Path) -> dict[str, np.ndarray]:
    from gguf import GGUFReader

    return {t.name: np.asarray(t.data) for t in GGUFReader(path).tensors}


ATTENTION = {"self_attn.q_proj": (N_EMBD, N_HEAD * HEAD_DIM),
             "self_attn.k_proj": (N_EMBD, N_HEAD_KV * HEAD_DIM),
             "self_attn.v_proj": (N_EMBD, N_HEAD_KV * HEAD_DIM),
             "self_attn.o_proj": (N_HEAD * HEAD_DIM, N_EMBD)}
GATED = {"mlp.gate_proj": (N_EMBD, 64), "mlp.up_proj": (N_EMBD, 64),
         "mlp.down_proj": (64, N_EMBD)}
STARCODER_MLP = {"mlp.c_fc": (N_EMBD, 64), "mlp.c_proj": (64, N_EMBD)}


@pytest.mark.parametrize(("arch", "mlp", "names"), [
    ("llama", GATED, ("ffn_gate", "ffn_up", "ffn_down")),
    ("qwen2", GATED, ("ffn_gate", "ffn_up", "ffn_down")),
    ("starcoder2", STARCODER_MLP, ("ffn_up", "ffn_down")),
    ("gemma2", GATED, ("ffn_gate", "ffn_up", "ffn_down")),
    ("gemma3", GATED, ("ffn_gate", "ffn_up", "ffn_down")),
])
def test_each_family_gets_its_tensor_names_and_row_order(tmp_path: Path, arch: str, mlp: dict,
                                                         names: tuple[str, ...]) -> None:
    from safetensors.numpy import load_file

    peft = peft_adapter(tmp_path / "peft", {**ATTENTION, **mlp})
    out = peft_to_gguf(peft, base_header(tmp_path / "base.gguf", arch), tmp_path / "a.gguf")
    tensors = read(out)
    expected = {f"blk.{i}.{n}.weight.lora_{ab}" for i in range(2)
                for n in ("attn_q", "attn_k", "attn_v", "attn_output", *names) for ab in "ab"}
    assert set(tensors) == expected
    source = load_file(peft / "adapter_model.safetensors")
    q_b = source["base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight"]
    k_b = source["base_model.model.model.layers.1.self_attn.k_proj.lora_B.weight"]
    if arch == "llama":  # convert_hf_to_gguf.py permuted the base's Q and K rows
        np.testing.assert_array_equal(tensors["blk.1.attn_q.weight.lora_b"],
                                      permute_qk(q_b, N_HEAD))
        np.testing.assert_array_equal(tensors["blk.1.attn_k.weight.lora_b"],
                                      permute_qk(k_b, N_HEAD_KV))
    else:
        np.testing.assert_array_equal(tensors["blk.1.attn_q.weight.lora_b"], q_b)
        np.testing.assert_array_equal(tensors["blk.1.attn_k.weight.lora_b"], k_b)
    first = next(iter(mlp))  # gate_proj -> ffn_gate; starcoder2's c_fc -> ffn_up
    np.testing.assert_array_equal(tensors[f"blk.0.{names[0]}.weight.lora_a"],
                                  source[f"base_model.model.model.layers.0.{first}.lora_A.weight"])


def test_names_come_from_the_gguf_maps() -> None:
    assert gguf_name("model.layers.3.mlp.c_fc", "starcoder2", 4) == "blk.3.ffn_up"
    assert gguf_name("model.layers.3.mlp.c_proj", "starcoder2", 4) == "blk.3.ffn_down"
    assert gguf_name("model.layers.0.mlp.gate_proj", "starcoder2", 4) is None  # no gate
    assert gguf_name("model.layers.1.self_attn.o_proj", "qwen2", 2) == "blk.1.attn_output"
    assert gguf_name("model.embed_tokens", "llama", 2) is None  # not a block projection
    assert gguf_name("model.layers.0.input_layernorm", "gemma3", 2) is None


def test_a_family_without_a_module_is_refused_with_what_it_has(tmp_path: Path) -> None:
    peft = peft_adapter(tmp_path / "peft", {**ATTENTION, **GATED})
    with pytest.raises(ValueError, match=r"gate_proj.*supported: \['c_fc', 'c_proj'"):
        peft_to_gguf(peft, base_header(tmp_path / "base.gguf", "starcoder2"),
                     tmp_path / "a.gguf")
    assert not (tmp_path / "a.gguf").exists()


def test_an_unknown_architecture_is_refused_by_name(tmp_path: Path) -> None:
    peft = peft_adapter(tmp_path / "peft", ATTENTION)
    base = base_header(tmp_path / "base.gguf", "mamba")
    with pytest.raises(ValueError, match="'mamba' is not supported.*" + ", ".join(ARCHITECTURES)):
        peft_to_gguf(peft, base, tmp_path / "a.gguf")
