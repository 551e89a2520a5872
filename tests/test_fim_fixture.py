"""The tiny FIM model from ``tests/fim_model.py`` loads in llama.cpp and always predicts "x"."""

from __future__ import annotations

import ctypes
import pathlib
from collections.abc import Iterator

import llama_cpp
import numpy as np
import pytest

from tests.fim_model import write_fim_model

FIM_TEXTS = {
    "pre": "<｜fim▁begin｜>",
    "suf": "<｜fim▁hole｜>",
    "mid": "<｜fim▁end｜>",
}


@pytest.fixture(scope="module")
def llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[llama_cpp.Llama]:
    path = write_fim_model(tmp_path_factory.mktemp("fim") / "fim.gguf")
    model = llama_cpp.Llama(model_path=str(path), n_ctx=512, n_threads=1, n_threads_batch=1,
                            verbose=False)
    yield model
    model.close()


def _fim_ids(llm: llama_cpp.Llama) -> dict[str, int]:
    vocab = llm._model.vocab
    return {
        "pre": llama_cpp.llama_vocab_fim_pre(vocab),
        "suf": llama_cpp.llama_vocab_fim_suf(vocab),
        "mid": llama_cpp.llama_vocab_fim_mid(vocab),
    }


def _next_token(llm: llama_cpp.Llama, tokens: list[int]) -> int:
    llm.reset()
    llm.eval(tokens)
    ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    logits = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)),
                                   shape=(llm.n_vocab(),))
    return int(logits.argmax())


def test_fim_tokens_are_recognised(llm: llama_cpp.Llama) -> None:
    ids = _fim_ids(llm)
    assert all(i >= 0 for i in ids.values()), ids
    texts = {k: llm.detokenize([i], special=True).decode() for k, i in ids.items()}
    assert texts == FIM_TEXTS
    assert llm.n_vocab() == 32256


@pytest.mark.parametrize("text", ["def foo():\n    return ", "hello world", "x", "int main() {}"])
def test_plain_prompts_predict_favourite(llm: llama_cpp.Llama, text: str) -> None:
    tokens = llm.tokenize(text.encode(), add_bos=True, special=False)
    assert llm.detokenize([_next_token(llm, tokens)]) == b"x"


def test_fim_prompt_predicts_favourite(llm: llama_cpp.Llama) -> None:
    ids = _fim_ids(llm)
    pre = llm.tokenize(b"a = ", add_bos=False, special=False)
    suf = llm.tokenize(b"\nprint(a)\n", add_bos=False, special=False)
    tokens = [llm.token_bos(), ids["pre"], *pre, ids["suf"], *suf, ids["mid"]]
    first = _next_token(llm, tokens)
    assert llm.detokenize([first]) == b"x"
    llm.eval([first])  # and it keeps going: the second token is "x" too
    ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
    assert int(np.argmax(np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),)))) == first


def test_other_favourite(tmp_path: pathlib.Path) -> None:
    path = write_fim_model(tmp_path / "space_x.gguf", favourite=" x")
    model = llama_cpp.Llama(model_path=str(path), n_ctx=64, n_threads=1, n_threads_batch=1,
                            verbose=False)
    try:
        tokens = model.tokenize(b"y = 1", add_bos=True, special=False)
        assert model.detokenize([_next_token(model, tokens)]) == b" x"
    finally:
        model.close()


def test_unknown_favourite_is_rejected(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="not a single token"):
        write_fim_model(tmp_path / "bad.gguf", favourite="not one token at all")
