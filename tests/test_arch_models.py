"""The per-architecture fixtures of ``tests/arch_models.py``: each HF checkpoint and the GGUF the
real converter made of it load in transformers and llama.cpp, tokenize alike, give the same
logits and greedy tokens, and the FIM vocabularies keep their FIM tokens through the round trip.
Float32 GGUFs and an f32 KV cache keep the comparison tight."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import llama_cpp
import numpy as np
import pytest
import torch

from tests.arch_models import Fixture

PROMPTS = ("def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) +",
           "import numpy as np\n\nvalues = np.arange(10)  # 3 33 333\nprint(values.")
GREEDY_STEPS = 6

# llama.cpp's CPU GELU reads a float16 table (GGML_GELU_FP16 in ggml-cpu/vec.h): ~2e-3 on logits
# of std ~1 for the GELU architectures; the SiLU ones agree to ~1e-5.
LOGIT_ATOL = {"llama": 1e-4, "qwen2": 1e-4, "starcoder2": 1e-2, "gemma3": 1e-2}
BOS_FIRST = {"llama"}  # Llama 3 starts every text with <|begin_of_text|>; the others add nothing
FIM_TEXTS = {
    "qwen2": ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
    "starcoder2": ("<fim_prefix>", "<fim_suffix>", "<fim_middle>"),
}


@pytest.fixture(scope="module")
def llm(fixture: Fixture) -> Iterator[llama_cpp.Llama]:
    model = llama_cpp.Llama(model_path=str(fixture.gguf), n_ctx=256, verbose=False,
                            logits_all=True, n_threads=1, n_threads_batch=1,
                            type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32)
    yield model
    model.close()


@pytest.fixture(scope="module")
def hf(fixture: Fixture) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(fixture.hf_dir, dtype=torch.float32).eval()
    return AutoTokenizer.from_pretrained(fixture.hf_dir), model


def cpp_logits(llm: llama_cpp.Llama, ids: list[int]) -> np.ndarray:
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)])


def hf_logits(model: Any, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].numpy()


def greedy(logits_of: Any, ids: list[int]) -> list[int]:
    ids = list(ids)
    for _ in range(GREEDY_STEPS):
        ids.append(int(logits_of(ids)[-1].argmax()))
    return ids[-GREEDY_STEPS:]


@pytest.mark.parametrize("prompt", PROMPTS, ids=["fibonacci", "numpy"])
def test_both_runtimes_tokenize_and_predict_alike(fixture: Fixture, llm: llama_cpp.Llama,
                                                  hf: tuple[Any, Any], prompt: str) -> None:
    tokenizer, model = hf
    ids = tokenizer(prompt).input_ids
    assert llm.tokenize(prompt.encode(), add_bos=True, special=False) == ids
    assert (ids[0] == tokenizer.bos_token_id) == (fixture.arch in BOS_FIRST)
    assert llm.n_vocab() == model.config.vocab_size == len(tokenizer)
    if fixture.arch == "gemma3":
        assert len(ids) > model.config.sliding_window  # the sliding layers do slide

    expected = hf_logits(model, ids)
    np.testing.assert_allclose(cpp_logits(llm, ids), expected, rtol=0,
                               atol=LOGIT_ATOL[fixture.arch])
    assert 0.5 < expected.std() < 2  # neither flat nor saturated
    assert greedy(lambda t: cpp_logits(llm, t), ids) == greedy(lambda t: hf_logits(model, t), ids)


def test_greedy_continuations_differ_between_prompts(llm: llama_cpp.Llama,
                                                     hf: tuple[Any, Any]) -> None:
    tokenizer, _ = hf
    first, second = (greedy(lambda t: cpp_logits(llm, t), tokenizer(p).input_ids)
                     for p in PROMPTS)
    assert first != second


def test_fim_tokens_survive_the_conversion(fixture: Fixture, llm: llama_cpp.Llama,
                                           hf: tuple[Any, Any]) -> None:
    vocab = llm._model.vocab
    ids = (llama_cpp.llama_vocab_fim_pre(vocab), llama_cpp.llama_vocab_fim_suf(vocab),
           llama_cpp.llama_vocab_fim_mid(vocab))
    if not fixture.fim:
        assert ids == (-1, -1, -1)
        return
    tokenizer, _ = hf
    texts = FIM_TEXTS[fixture.arch]
    assert tuple(llm.detokenize([i], special=True).decode() for i in ids) == texts
    assert tuple(tokenizer.convert_tokens_to_ids(list(texts))) == ids
    assert all(tokenizer.added_tokens_decoder[i].special for i in ids)


@pytest.mark.slow
def test_transformers_loads_the_gguf_as_the_checkpoint(fixture: Fixture,
                                                       hf: tuple[Any, Any]) -> None:
    """Transformers' own GGUF loader (what a training base read from a GGUF goes through)."""
    from transformers import AutoModelForCausalLM

    _, model = hf
    loaded = AutoModelForCausalLM.from_pretrained(fixture.gguf.parent, gguf_file=fixture.gguf.name,
                                                  dtype=torch.float32).eval()
    assert type(loaded) is type(model)
    ids = list(range(1, 40, 3))
    np.testing.assert_allclose(hf_logits(loaded, ids), hf_logits(model, ids), rtol=0, atol=1e-5)
