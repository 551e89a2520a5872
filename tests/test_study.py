"""The method study's bookkeeping (bench/study.py): its split agrees with the store's, and its
paired comparison counts the prompts where the two models differ."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from compilot.feedback import datasets as fd


def study() -> ModuleType:
    path = Path(__file__).resolve().parents[1] / "bench" / "study.py"
    spec = importlib.util.spec_from_file_location("bench_study", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_held_out_files_are_the_stores_test_split() -> None:
    s = study()
    files = [Path(f"/corpus/pkg/m{i}.py") for i in range(200)]
    held = [f for f in files if s.held_out(f)]
    assert 20 < len(held) < 60  # about HELD_OUT of them
    for f in files:
        split = fd.split_of(fd.file_id(f.as_uri()), s.HELD_OUT)
        assert (split == "test") is s.held_out(f)


def test_paired_counts_wins_and_losses_on_the_same_prompts() -> None:
    s = study()
    base = [True, True, False, False, True]
    other = [True, False, True, True, True]
    assert s.paired(base, other) == "+20 (2/1)"
    assert s.paired(base, other[:3]) == "-"
    humaneval_base = [[True, False, False], [True, True, False]]
    humaneval_other = [[True, True, True], [True, True, False]]
    assert s.paired(humaneval_base, humaneval_other, 2) == "+50 (1/0)"
    assert s.rate(humaneval_other, 1) == 1.0
