"""The learning loop on each architecture compilot knows, on its tiny model
(``tests/arch_models.py``: llama, qwen2, starcoder2, gemma3; float32 GGUFs from the real
converter):

* a PEFT LoRA on the HF checkpoint, converted by compilot, runs in llama.cpp on the GGUF base
  as the merged PEFT model runs in transformers (logits and greedy tokens), and both differ from
  the base;
* the server's engine swaps that adapter in live (``CompletionService.use_adapter``) and then
  answers as llama.cpp with the adapter loaded at start;
* the training rows are the server's prompts: the served GGUF's ids, in the FIM layout from the
  fixture's own FIM ids where it has them (the prefix alone where it has none);
* a training round runs with ``model.path`` the GGUF and ``training.base`` its checkpoint, and
  its adapter applies to the GGUF.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
import pytest
import torch
from datasets import Dataset

from compilot.languages import language_for
from compilot.server.completion import CompletionService, context_prompt
from compilot.server.engine import Engine, Sampling
from compilot.settings import ModelSettings, Settings, TrainingSettings
from compilot.training import train
from compilot.training.boundaries import tokenize
from compilot.training.gguf_adapter import peft_to_gguf, targets
from compilot.training.served_tokens import ServedTokens
from tests.adapters import random_peft
from tests.arch_models import Fixture
from tests.test_boundaries import choice_of
from tests.test_training import copy_store

PROMPTS = ("def fibonacci(n):\n    if n < 2:\n", "import os\n\ndef list_files(path):\n",
           "for (int i = 0; i < n; i++) {\n")
STEPS = 6
B_SCALE = 0.5
"""LoRA B at half of PEFT's non-zero init: a clear change of every projection."""
ATOL = {"llama": 1e-3, "qwen2": 1e-3, "starcoder2": 3e-2, "gemma3": 3e-2}
"""Logit tolerance with the adapter: ten times the base's (``test_arch_models.LOGIT_ATOL``:
llama.cpp's CPU GELU reads a float16 table)."""
GREEDY = Sampling(n=1, max_tokens=STEPS, temperature=0.0, top_k=1, top_p=1.0, seed=0)


def cpp(gguf: Path, lora: Path | None = None) -> llama_cpp.Llama:
    return llama_cpp.Llama(model_path=str(gguf), lora_path=str(lora) if lora else None,
                           n_ctx=256, verbose=False, n_threads=1, n_threads_batch=1,
                           type_k=llama_cpp.GGML_TYPE_F32, type_v=llama_cpp.GGML_TYPE_F32)


def cpp_greedy(llm: llama_cpp.Llama, ids: list[int]) -> tuple[np.ndarray, list[int]]:
    """(logits after the prompt, the greedy continuation of STEPS tokens)."""
    llm.reset()
    out: list[int] = []
    first = None
    llm.eval(ids)
    for _ in range(STEPS):
        ptr = llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1)
        logits = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)),
                                       shape=(llm.n_vocab(),)).copy()
        first = logits if first is None else first
        out.append(int(logits.argmax()))
        llm.eval([out[-1]])
    assert first is not None
    return first, out


def hf_logits(model: Any, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


@pytest.fixture(scope="module")
def lora(fixture: Fixture, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any, list]:
    """(the converted GGUF adapter, the merged PEFT model, the base's greedy continuations by
    llama.cpp per prompt)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(fixture.hf_dir, dtype=torch.float32).eval()
    wrapped = random_peft(model, targets(model, fixture.arch), rank=4, alpha=8,
                          b_scale=B_SCALE)
    folder = tmp_path_factory.mktemp(f"lora-{fixture.arch}")
    wrapped.save_pretrained(folder / "peft")
    adapter = peft_to_gguf(folder / "peft", fixture.gguf, folder / "adapter.gguf")
    base = cpp(fixture.gguf)
    try:
        base_greedy = [cpp_greedy(base, ids(base, p))[1] for p in PROMPTS]
    finally:
        base.close()
    return adapter, wrapped.merge_and_unload().eval(), base_greedy


def ids(llm: llama_cpp.Llama, text: str) -> list[int]:
    return llm.tokenize(text.encode(), add_bos=True, special=False)


def test_llama_cpp_with_the_adapter_runs_as_the_merged_peft_model(fixture: Fixture,
                                                                  lora: tuple) -> None:
    adapter, merged, base_greedy = lora
    llm = cpp(fixture.gguf, adapter)
    try:
        changed = 0
        for prompt, before in zip(PROMPTS, base_greedy, strict=True):
            prompt_ids = ids(llm, prompt)
            first, out = cpp_greedy(llm, prompt_ids)
            # Teacher-forced: transformers' logits at every step of llama.cpp's continuation.
            hf = hf_logits(merged, prompt_ids + out)[len(prompt_ids) - 1:]
            np.testing.assert_allclose(first, hf[0], atol=ATOL[fixture.arch])
            assert [int(step.argmax()) for step in hf[:STEPS]] == out, prompt
            changed += out != before
    finally:
        llm.close()
    assert changed, "the adapter changed no greedy continuation"


def test_the_server_swaps_the_adapter_in_live(fixture: Fixture, lora: tuple) -> None:
    adapter, _, base_greedy = lora
    settings = Settings()
    settings.model.path = str(fixture.gguf)
    settings.model.n_ctx = 256
    service = CompletionService(settings, None)
    service.load().result(timeout=120)
    engine = service.engine
    assert engine is not None, service.engine_error
    reference = cpp(fixture.gguf, adapter)
    try:
        tokens = engine.prompt(PROMPTS[0], "", STEPS)
        before = engine.generate(tokens, GREEDY)[0].tokens
        service.use_adapter("v1", adapter).result(timeout=60)
        assert service.adapter == "v1" and engine.adapter_path == adapter
        # The engine's generate stops early at an end-of-generation token; compare its text.
        swapped = engine.generate(tokens, GREEDY)[0].text
        expected = reference.detokenize(cpp_greedy(reference, tokens)[1]).decode(
            "utf-8", errors="replace")
        assert swapped == expected[:len(swapped)]
        service.use_adapter("base", None).result(timeout=60)
        assert engine.generate(tokens, GREEDY)[0].tokens == before
    finally:
        reference.close()
        service.close()
        engine.llm.close()
    assert base_greedy  # the base's continuation differs from the adapter's (test above)


@pytest.fixture(scope="module")
def served(fixture: Fixture) -> Iterator[ServedTokens]:
    with ServedTokens(fixture.gguf) as tokens:
        yield tokens


def test_training_rows_are_the_servers_prompts(fixture: Fixture, served: ServedTokens) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(fixture.hf_dir)
    prefix = 'def area(width, height):\n    """The area."""\n    '
    suffix = "\n\n\ndef volume(w, h, d):\n    return area(w, h) * d\n"
    rows = Dataset.from_dict({"prompt": [prefix], "suffix": [suffix],
                              "completion": ["return width * height\n"], "label": [True]})
    fitted, dropped = train.fit(rows, "kto", tokenizer, 256, fim=served.fim is not None)
    assert dropped == 0 and fitted[0]["suffix"] == suffix  # short enough to keep whole
    row = tokenize(fitted, "kto", served)[0]
    engine = Engine(fixture.gguf, ModelSettings(n_ctx=256))
    try:
        assert (engine.fim is not None) == fixture.fim == (served.fim is not None)
        assert row["prompt_ids"] == engine.prompt(fitted[0]["prompt"], suffix, max_tokens=16)
        if fixture.fim:
            assert engine.fim is not None
            fim = engine.fim
            assert row["prompt_ids"].count(fim.suffix) == 1
            assert row["prompt_ids"][-1] == fim.middle
            middle = row["prompt_ids"].index(fim.suffix)
            assert engine.llm.detokenize(row["prompt_ids"][middle + 1:-1]).decode() == suffix
        else:  # the prefix alone: the suffix is not in the ids
            healed = fitted[0]["prompt"]  # the newline and indentation went to the completion
            assert prefix.startswith(healed) and healed.endswith('"""')
            assert engine.llm.detokenize(row["prompt_ids"]).decode().endswith(healed)
    finally:
        engine.llm.close()

    # With the chunks of other files: the server's layout of them (repository files for the
    # qwen2 and starcoder2 fixtures, comments for llama and gemma3).
    chunks = [{"path": "shapes/units.py", "text": "def square(x):\n    return x * x"}]
    with_context = rows.add_column("context", [chunks]).add_column("language", ["python"])
    fitted, _ = train.fit(with_context, "kto", tokenizer, 256, fim=served.fim is not None,
                          context_tokens=64)
    assert fitted[0]["context"] == chunks
    row = tokenize(fitted, "kto", served)[0]
    engine = Engine(fixture.gguf, ModelSettings(n_ctx=256))
    try:
        sent = context_prompt(engine, fitted[0]["prompt"], fitted[0]["suffix"], 16,
                              language_for("python"), choice_of(chunks), None)
        assert row["prompt_ids"] == sent
        assert (engine.repo_format is not None) == (engine.fim is not None
                                                    and engine.fim.file_sep >= 0)
        assert "return x * x" in engine.llm.detokenize(sent).decode()
    finally:
        engine.llm.close()

    # A long suffix is cut from the right to a quarter of the prompt's budget.
    long = Dataset.from_dict({"prompt": [prefix], "suffix": [suffix * 40],
                              "completion": ["return width * height\n"], "label": [True]})
    fitted, _ = train.fit(long, "kto", tokenizer, 128, fim=served.fim is not None)
    if fixture.fim:
        kept = fitted[0]["suffix"]
        assert kept and (suffix * 40).startswith(kept)
        assert len(served.ids(kept)) <= (128 - 2) // 4 + 2
    else:
        assert fitted[0]["suffix"] == suffix * 40


def test_a_training_round_runs_and_its_adapter_applies(fixture: Fixture, collected: Path,
                                                       tmp_path: Path) -> None:
    from compilot.training.registry import Registry
    from compilot.training.rounds import run_round

    root = copy_store(collected, tmp_path / "data")
    settings = Settings()
    settings.data_dir = str(root)
    settings.model.path = str(fixture.gguf)
    settings.model.n_ctx = 256
    settings.datasets.held_out = 0.25
    settings.training = TrainingSettings(base=str(fixture.hf_dir), max_steps=2, batch_size=2,
                                         gradient_accumulation=1, max_length=128,
                                         learning_rate=1e-3, min_examples=2, lora_r=4,
                                         lora_alpha=8)
    settings.gate.held_out_prompts = 2
    settings.gate.humaneval = 0
    settings.gate.robustness_functions = 0
    settings.gate.max_tokens = 8
    result = run_round(settings, method="sft", promote=False)
    assert result.report is not None and result.report.steps == 2
    assert result.version is not None
    adapter = Registry(root / "adapters").root / result.version / "adapter.gguf"
    engine = Engine(fixture.gguf, ModelSettings(n_ctx=256))
    try:
        tokens = engine.prompt(PROMPTS[1], "", 8)
        before = engine._evaluate_prompt(tokens, lambda: False).copy()
        engine.set_adapter(adapter)
        after = engine._evaluate_prompt(tokens, lambda: False)
        assert float(np.abs(after - before).max()) > 1e-4  # the trained LoRA moves the logits
    finally:
        engine.llm.close()
