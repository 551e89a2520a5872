"""The levers of a faster round: bf16 where the hardware has it, a prompt budget, rows batched
by length (bench/train.py measures what each saves)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from datasets import Dataset

from compilot.models import embedded_model_path
from compilot.settings import RangeError, TrainingSettings
from compilot.training import precision, train


@pytest.mark.parametrize(("requested", "cuda", "features", "bf16", "why"), [
    ("auto", False, {"avx2", "avx512f", "avx512_bf16"}, True, "avx512_bf16"),
    ("auto", False, {"avx2", "amx_bf16", "amx_tile"}, True, "amx_bf16"),
    ("auto", False, {"avx2", "avx512f"}, False, "emulated"),
    ("auto", True, set(), True, "CUDA"),
    ("float32", False, {"avx512_bf16"}, False, "training.precision = float32"),
    ("bf16", False, set(), True, "training.precision = bf16"),
])
def test_precision_follows_the_hardware(requested: str, cuda: bool, features: set[str],
                                        bf16: bool, why: str) -> None:
    chosen = precision.choose(requested, cuda=cuda, features=frozenset(features))
    assert chosen.bf16 is bf16 and why in chosen.reason
    assert chosen.name == ("bf16" if bf16 else "float32")


def test_cpu_features_read_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Xeon\nflags\t\t: fpu avx2 amx_bf16\n\n"
                       "processor\t: 1\nflags\t\t: fpu avx2 amx_bf16\n")
    assert precision.cpu_features(cpuinfo) == {"fpu", "avx2", "amx_bf16"}
    assert precision.cpu_features(tmp_path / "missing") == frozenset()


def test_a_precision_that_does_not_exist_is_refused() -> None:
    with pytest.raises(RangeError, match="training.precision"):
        TrainingSettings(precision="fp16")
    with pytest.raises(RangeError, match="training.prompt_tokens"):
        TrainingSettings(prompt_tokens=-1)


@pytest.fixture(scope="module")
def tokenizer(base_checkpoint: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(base_checkpoint)


def tokens(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def long_rows(count: int = 6) -> Dataset:
    prompt = "".join(f"def helper_{i}(x):\n    return x + {i}\n\n\n" for i in range(60))
    return Dataset.from_dict({
        "prompt": [prompt + f"def f{i}(a, b):\n    " for i in range(count)],
        "completion": [f"return a * {i} + b" for i in range(count)],
        "label": [i % 2 == 0 for i in range(count)]})


def test_the_prompt_budget_cuts_the_prompt_from_the_left(tokenizer: Any) -> None:
    rows = long_rows()
    fitted, dropped = train.fit(rows, "kto", tokenizer, 256, prompt_tokens=48)
    assert dropped == 0
    for before, after in zip(rows, fitted, strict=True):
        # The end of the prompt (the function being written) stays; the start goes.
        assert 40 <= tokens(tokenizer, after["prompt"]) <= 48
        assert before["prompt"].rstrip().endswith(after["prompt"].rstrip()[-30:])
        # Healing moved the trailing whitespace into the completion, which is whole.
        held = after["completion"].removesuffix(before["completion"])
        assert held != after["completion"] and held.strip() == "" and "    " in held
    unlimited, _ = train.fit(rows, "kto", tokenizer, 256)
    assert all(tokens(tokenizer, r["prompt"] + r["completion"]) > 200 for r in unlimited)


def test_rows_are_batched_by_length(tokenizer: Any) -> None:
    rng = random.Random(3)
    sizes = [rng.choice([1, 5, 20, 60]) for _ in range(64)]
    rows = Dataset.from_dict({"prompt": ["def f():\n"] * len(sizes),
                              "completion": ["    x = 1\n" * n for n in sizes],
                              "label": [True, False] * (len(sizes) // 2)})
    ordered = train.order_by_length(rows, "kto", tokenizer, batch_size=4, seed=0)
    assert sorted(ordered["completion"]) == sorted(rows["completion"])  # each row once

    def padding(ds: Dataset) -> int:
        lengths = [tokens(tokenizer, c) for c in ds["completion"]]
        return sum(max(lengths[i:i + 4]) * 4 - sum(lengths[i:i + 4])
                   for i in range(0, len(lengths), 4))

    assert padding(ordered) < padding(rows) / 4
    again = train.order_by_length(rows, "kto", tokenizer, batch_size=4, seed=0)
    assert again["completion"] == ordered["completion"]
    # Shuffled batches: the epoch does not run from the longest rows to the shortest.
    first = [tokens(tokenizer, c) for c in ordered["completion"]]
    assert first != sorted(first, reverse=True) and first != sorted(first)


def test_kto_with_an_sft_term_adds_the_desirable_side_likelihood(base_checkpoint: Path,
                                                                 tmp_path: Path) -> None:
    from transformers import TrainerCallback

    from compilot.feedback.datasets import corrupt
    from compilot.training.corpus import stdlib_holes

    rows: dict[str, list[Any]] = {"prompt": [], "completion": [], "label": []}
    for task in stdlib_holes(8, seed=2):
        bad = corrupt(task.reference, seed=0)
        if bad:
            rows["prompt"] += [task.prefix, task.prefix]
            rows["completion"] += [task.reference, bad[0]]
            rows["label"] += [True, False]
    data = Dataset.from_dict(rows).select(range(8))

    class Logs(TrainerCallback):
        def __init__(self) -> None:
            self.logs: list[dict[str, float]] = []

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None,
                   **kw: Any) -> None:
            self.logs.append(dict(logs or {}))

    first = {}
    for weight in (0.0, 1.0):
        settings = TrainingSettings(max_steps=1, batch_size=4, gradient_accumulation=1,
                                    max_length=128, kto_sft_weight=weight)
        logs = Logs()
        report = train.train("kto", data, base=base_checkpoint, model_path=embedded_model_path(),
                             out=tmp_path / str(weight),
                             settings=settings, callbacks=[logs])
        assert report.hyperparameters["kto_sft_weight"] == weight
        first[weight] = next(entry for entry in logs.logs if "loss" in entry)
    # The same first batch, the same weights: the loss differs by the SFT term alone.
    assert "sft_loss" not in first[0.0] and first[1.0]["sft_loss"] > 0.1
    assert first[1.0]["loss"] - first[0.0]["loss"] == pytest.approx(first[1.0]["sft_loss"],
                                                                    rel=0.05)
