"""The PEFT -> GGUF LoRA converter: llama.cpp on the Q4_1 base with the converted adapter
must behave like the merged PEFT model in transformers.

Tolerances come from the quantization floor measured on the embedded model: the dequantized
base in transformers (float32) and llama.cpp on the Q4_1 file (activations quantized to Q8_1
for the dot products) already differ by up to ~0.7 in last-token logits (correlation ~0.999,
logit range ~35). A correct adapter adds nothing measurable to that (~0.6-1.1); the adapter
itself moves logits by ~4-6. Unpermuted Q/K B matrices (the classic bug) give max diffs of
~1.7-2.3 and, more tellingly, an adapter effect that only partly agrees.
"""

from __future__ import annotations

import ctypes
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from llama_cpp import Llama, llama_get_logits_ith

from compilot.models import embedded_model_path
from compilot.settings import ModelSettings
from compilot.training.base import load_base
from compilot.training.gguf_adapter import peft_to_gguf, permute_qk
from tests.adapters import random_peft

PROMPTS = [
    "def fibonacci(n):\n",
    "import os\n\ndef list_files(path):\n",
    "for (int i = 0; i < n; i++) {\n",
    "class Stack:\n    def __init__(self):\n",
]
STEPS = 12
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
B_SCALE = 0.5
"""PEFT's ``init_lora_weights=False`` leaves A and B at nn.Linear's Kaiming init: a ~10% change
of every projection, which drives the 135M model into repetitive text full of near-ties.
Halving B still changes every continuation while keeping the text (and greedy) decisive."""
TIE = 0.5
"""A greedy step may differ only where transformers' top two logits are closer than this: below
the Q4_1/Q8_1 noise floor (~0.7 max abs), a near-tie either engine may break either way."""


def llama_logits(llm: Llama) -> np.ndarray:
    """The last evaluated token's logits (as server/engine.py reads them)."""
    ptr = llama_get_logits_ith(llm._ctx.ctx, -1)
    return np.ctypeslib.as_array(
        ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(llm.n_vocab(),)
    ).copy()


def llama_greedy(llm: Llama, ids: list[int]) -> tuple[np.ndarray, list[int]]:
    """(logits after the prompt, greedy continuation of STEPS tokens)."""
    llm.reset()
    llm.eval(ids)
    first = logits = llama_logits(llm)
    out: list[int] = []
    for _ in range(STEPS):
        out.append(int(logits.argmax()))
        llm.eval([out[-1]])
        logits = llama_logits(llm)
    return first, out


def hf_logits(model, ids: list[int]) -> np.ndarray:
    """Logits at every position of ``ids`` (float32, [len(ids), vocab])."""
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a, b)[0, 1])


@pytest.fixture(scope="module")
def base_gguf() -> Path:
    return embedded_model_path()


@pytest.fixture(scope="module")
def base_llm(base_gguf: Path):
    llm = Llama(model_path=str(base_gguf), n_ctx=512, verbose=False)
    yield llm
    llm.close()


@pytest.fixture(scope="module")
def lora_llm(base_gguf: Path, adapter_gguf: Path):
    llm = Llama(model_path=str(base_gguf), lora_path=str(adapter_gguf), n_ctx=512,
                verbose=False)
    yield llm
    llm.close()


@pytest.fixture(scope="module")
def prompt_ids(base_llm: Llama) -> list[list[int]]:
    """The prompts as llama.cpp tokenizes them; transformers is fed the same ids."""
    return [base_llm.tokenize(p.encode(), add_bos=True, special=False) for p in PROMPTS]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, base_checkpoint: Path,
            prompt_ids: list[list[int]]):
    """(adapter dir, transformers base logits per prompt, merged PEFT model)."""
    model, _ = load_base(base_checkpoint)
    model.eval()
    wrapped = random_peft(model, TARGETS, rank=8, alpha=16, b_scale=B_SCALE)
    with wrapped.disable_adapter():
        base_logits = [hf_logits(wrapped, ids)[-1] for ids in prompt_ids]
    adapter_dir = tmp_path_factory.mktemp("adapter")
    wrapped.save_pretrained(adapter_dir)
    merged = wrapped.merge_and_unload()
    merged.eval()
    return adapter_dir, base_logits, merged


@pytest.fixture(scope="module")
def adapter_gguf(trained, base_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gguf") / "adapter.gguf"
    assert peft_to_gguf(trained[0], base_gguf, out) == out
    return out


def test_adapter_gguf_metadata(adapter_gguf: Path) -> None:
    from gguf import GGUFReader

    reader = GGUFReader(adapter_gguf)
    fields = {k: reader.fields[k].contents() for k in
              ("general.architecture", "general.type", "adapter.type", "adapter.lora.alpha")}
    assert fields == {"general.architecture": "llama", "general.type": "adapter",
                      "adapter.type": "lora", "adapter.lora.alpha": 16.0}
    shapes = {t.name: tuple(int(n) for n in t.shape) for t in reader.tensors}  # ggml ne order
    assert len(shapes) == 30 * 7 * 2
    assert shapes["blk.0.attn_q.weight.lora_a"] == (576, 8)
    assert shapes["blk.0.attn_k.weight.lora_b"] == (8, 192)
    assert shapes["blk.29.ffn_down.weight.lora_a"] == (1536, 8)
    assert shapes["blk.29.ffn_down.weight.lora_b"] == (8, 576)


def test_llama_cpp_with_adapter_matches_merged_peft(trained, base_llm: Llama, lora_llm: Llama,
                                                    prompt_ids: list[list[int]]) -> None:
    _, hf_base, merged = trained
    exact, changed, report = 0, 0, []
    for prompt, ids, hf_base_last in zip(PROMPTS, prompt_ids, hf_base, strict=True):
        ll_first, ll_out = llama_greedy(lora_llm, ids)
        ll_base_first, ll_base_out = llama_greedy(base_llm, ids)
        # Teacher-force llama.cpp's continuation through transformers: one forward pass gives
        # the logits transformers would have used at every greedy step.
        hf = hf_logits(merged, ids + ll_out)[len(ids) - 1:]
        hf_first = hf[0]
        diff = float(np.abs(hf_first - ll_first).max())
        r = corr(hf_first, ll_first)
        # The adapter's effect on the logits, seen by each engine.
        hf_delta, ll_delta = hf_first - hf_base_last, ll_first - ll_base_first
        r_delta = corr(hf_delta, ll_delta)
        # Least-squares slope of llama.cpp's effect on transformers': 1 when alpha/r is applied
        # the same way (noise uncorrelated with the effect does not bias it, unlike a norm
        # ratio); a wrong alpha or rank scaling gives 2 or 0.5.
        gain = float(ll_delta @ hf_delta / (hf_delta @ hf_delta))
        report.append(f"{prompt!r}: max|diff| {diff:.3f} corr {r:.5f} "
                      f"delta-corr {r_delta:.4f} delta-gain {gain:.3f}")
        assert int(hf_first.argmax()) == int(ll_first.argmax()), report[-1]
        assert r > 0.995, report[-1]
        assert diff < 1.5, report[-1]
        assert r_delta > 0.95, report[-1]
        assert 0.8 < gain < 1.25, report[-1]
        for step, token in enumerate(ll_out):
            top = int(hf[step].argmax())
            margin = float(hf[step][top] - hf[step][token])
            assert top == token or margin < TIE, (prompt, step, top, token, margin)
        exact += all(int(hf[s].argmax()) == t for s, t in enumerate(ll_out))
        changed += ll_out != ll_base_out
    print("\n".join(report))
    assert exact >= len(PROMPTS) - 1, report  # near-ties are rare; at most one prompt hits one
    assert changed >= 1, "the adapter changed no greedy continuation"


def test_permute_qk_matches_reference_and_transformers_inverse() -> None:
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    n_head, head_dim, cols = 3, 8, 5
    w = np.arange(n_head * head_dim * cols, dtype=np.float32).reshape(n_head * head_dim, cols)
    # Reference, written out: HF rotates pairs (j, j + d/2) of each head (rotate_half); the
    # GGUF layout interleaves them, so GGUF row 2i+k of a head is HF row k*d/2 + i.
    expected = np.empty_like(w)
    half = head_dim // 2
    for h in range(n_head):
        for i in range(half):
            for k in range(2):
                expected[h * head_dim + 2 * i + k] = w[h * head_dim + k * half + i]
    permuted = permute_qk(w, n_head)
    np.testing.assert_array_equal(permuted, expected)
    # transformers' GGUF loader undoes exactly this permutation.
    undo = LlamaTensorProcessor()._reverse_permute_weights(permuted, n_head, n_head)
    np.testing.assert_array_equal(undo, w)
    # A vector (1-D rows) and a B matrix [out, r] permute the same way along axis 0.
    np.testing.assert_array_equal(permute_qk(w[:, 0], n_head), expected[:, 0])
    with pytest.raises(ValueError, match="heads"):
        permute_qk(np.zeros((10, 2)), 3)


def write_adapter(folder: Path, config: dict, tensors: dict[str, np.ndarray]) -> Path:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    base = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"],
            "use_rslora": False, "use_dora": False, "bias": "none"}
    (folder / "adapter_config.json").write_text(json.dumps({**base, **config}))
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    return folder


Q = "base_model.model.model.layers.0.self_attn.q_proj"
GOOD = {f"{Q}.lora_A.weight": np.ones((2, 576), np.float32),
        f"{Q}.lora_B.weight": np.ones((576, 2), np.float32)}


@pytest.mark.parametrize("config, tensors, message", [
    pytest.param({"use_rslora": True}, GOOD, "use_rslora", id="rslora"),
    pytest.param({"use_dora": True}, GOOD, "use_dora", id="dora"),
    pytest.param({"bias": "all"}, GOOD, "bias", id="bias"),
    pytest.param({"target_modules": ["q_proj", "embed_tokens", "lm_head"]}, GOOD,
                 r"\['embed_tokens', 'lm_head'\]", id="unsupported-target-in-config"),
    pytest.param({}, {**GOOD, "base_model.model.lm_head.lora_A.weight":
                      np.ones((2, 576), np.float32)},
                 "modules with no llama adapter tensor", id="unsupported-target-in-weights"),
    pytest.param({}, {f"{Q}.lora_A.weight": np.ones((2, 576), np.float32)},
                 "lacks lora_A or lora_B", id="missing-b"),
])
def test_refuses_what_llama_cpp_cannot_apply(tmp_path: Path, base_gguf: Path, config: dict,
                                             tensors: dict, message: str) -> None:
    adapter = write_adapter(tmp_path / "adapter", config, tensors)
    out = tmp_path / "out.gguf"
    with pytest.raises(ValueError, match=message):
        peft_to_gguf(adapter, base_gguf, out)
    assert not out.exists()
    assert list(tmp_path.glob(".out.gguf-*")) == []  # no temporary file left behind


def test_engine_swaps_the_adapter_live(base_gguf: Path, adapter_gguf: Path,
                                       lora_llm: Llama, prompt_ids: list[list[int]]) -> None:
    """The serving engine applies the converted adapter without reloading the base, gives what
    llama.cpp gives with the adapter loaded at start, and swaps back to the base."""
    from compilot.server.engine import Engine, Sampling

    engine = Engine(base_gguf, ModelSettings(n_ctx=512))
    greedy = Sampling(n=1, max_tokens=8, temperature=0.0, top_k=1, top_p=1.0, seed=0)
    ids = prompt_ids[0]
    base_text = engine.generate(ids, greedy)[0].text
    engine.set_adapter(adapter_gguf)
    swapped = engine.generate(ids, greedy)[0].text
    _, expected_ids = llama_greedy(lora_llm, ids)
    expected = lora_llm.detokenize(expected_ids[:8]).decode("utf-8", errors="replace")
    assert swapped == expected[: len(swapped)] and swapped != base_text
    engine.set_adapter(None)
    assert engine.generate(ids, greedy)[0].text == base_text
