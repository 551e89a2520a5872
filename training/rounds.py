"""One training round: data → method → LoRA → GGUF adapter → registry → gate → promote.

Crash safety: everything is written into a registry staging folder, which becomes a version
only by one rename once the GGUF adapter is complete; the gate then promotes it with an atomic
pointer switch or marks it rejected. A round killed anywhere leaves ``current`` as it was; the
next start removes the staging folder and marks a version that never reached the gate
abandoned (``Registry.clean``).

The gate (``judge``): on the held-out prompts, the new adapter's compile@1 (of what the server
shows) must beat the serving model's, or tie it while the raw output's compile@1 beats it; on
a HumanEval sample its pass@1 may not drop by more than the tolerance; on the robustness set
(``training.robustness``: held-out functions asked for as plain clients ask) no prompt shape's
compile@1 may fall more than its tolerance below the base model's.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compilot.feedback.store import Store
from compilot.models import resolve_model_path
from compilot.paths import DataDir
from compilot.pointer import ADAPTER_FILE, BASE
from compilot.settings import GateSettings, Settings
from compilot.training import benchmarks, data, train
from compilot.training.base import training_base
from compilot.training.evaluate import Evaluation, Evaluator, Prompt
from compilot.training.gguf_adapter import peft_to_gguf
from compilot.training.registry import PEFT_DIR, AdapterInfo, AdapterStatus, Registry
from compilot.training.robustness import Item

if TYPE_CHECKING:
    from rich.progress import Progress

log = logging.getLogger(__name__)


@dataclass
class RoundResult:
    """What a round did, for the summary and the trainer's log."""

    choice: train.Choice
    source: str
    version: str | None = None
    promoted: bool = False
    verdict: str = ""
    report: train.Report | None = None
    evaluation: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The result as plain data (JSON, the trainer's log)."""
        return asdict(self)


def robustness_loss(base: Evaluation, candidate: Evaluation,
                    tolerance: float) -> tuple[str, float, float] | None:
    """The first prompt shape on which ``candidate``'s compile@1 falls more than
    ``tolerance`` below the base's: (shape, base, candidate); None when none does."""
    for shape, figures in base.robustness.items():
        old, new = figures.get("compile@1"), candidate.robustness.get(shape, {}).get("compile@1")
        if old is not None and new is not None and new < old - tolerance - 1e-9:
            return shape, old, new
    return None


def judge(serving: Evaluation, candidate: Evaluation, gate: GateSettings,
          base: Evaluation | None = None) -> tuple[bool, str]:
    """(promote?, why) from the two models' figures; ``base``: the base model's robustness
    figures when the serving model is an adapter (each shape is held against the base, so
    that losses within the tolerance do not add up round after round)."""
    new, old = candidate.held_out.get("compile@1"), serving.held_out.get("compile@1")
    if new is None or old is None:
        return False, "no held-out prompts to judge on; kept, not promoted"
    raw_new, raw_old = (e.raw.get("held_out", {}).get("compile@1") for e in (candidate, serving))
    if new == old and raw_new is not None and raw_old is not None and raw_new > raw_old:
        # What the server shows ties (near the ceiling, where cutting and ranking rescue most
        # completions); the model's own output decides: the loop is to improve the model.
        why = (f"held-out compile@1 {old:.3f} = {new:.3f} as shown, raw {raw_old:.3f} -> "
               f"{raw_new:.3f}")
    elif new <= old:
        return False, f"held-out compile@1 {new:.3f} does not beat the serving {old:.3f}"
    else:
        why = f"held-out compile@1 {old:.3f} -> {new:.3f}"
    p_new, p_old = candidate.humaneval.get("pass@1"), serving.humaneval.get("pass@1")
    if p_new is not None and p_old is not None:
        if p_new < p_old - gate.pass_tolerance:
            return False, (f"{why}, but HumanEval pass@1 fell {p_old:.3f} -> {p_new:.3f} "
                           f"(tolerance {gate.pass_tolerance})")
        why += f"; HumanEval pass@1 {p_old:.3f} -> {p_new:.3f}"
    reference = base if base is not None else serving
    lost = robustness_loss(reference, candidate, gate.robustness_tolerance)
    if lost is not None:
        shape, old_r, new_r = lost
        return False, (f"{why}, but robustness compile@1 ({shape} prompts) fell {old_r:.3f} "
                       f"-> {new_r:.3f} against the base (tolerance "
                       f"{gate.robustness_tolerance})")
    if reference.robustness and candidate.robustness:
        why += "; robustness " + ", ".join(
            f"{shape} {figures['compile@1']:.2f}"
            for shape, figures in candidate.robustness.items()
            if figures.get("compile@1") is not None)
    return True, why


def _version(registry: Registry, method: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name, n = f"{stamp}-{method}", 1
    while (registry.root / name).exists():
        n += 1
        name = f"{stamp}-{method}-{n}"
    return name


def _steps_callback(progress: Progress, method: str) -> Any:
    from transformers import TrainerCallback

    task = progress.add_task(f"training ({method})", total=None)

    class Steps(TrainerCallback):
        """Moves a rich progress bar with the optimizer steps and shows the loss."""

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            progress.update(task, total=state.max_steps)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None,
                   **kw: Any) -> None:
            if logs and "loss" in logs:
                progress.update(task, description=f"training ({method}) loss "
                                                  f"{float(logs['loss']):.4f}")

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            progress.update(task, completed=state.global_step)

    return Steps()


def evaluate_pair(settings: Settings, model: Path, serving: tuple[str, Path | None],
                  candidate: tuple[str, Path | None], prompts: list[Prompt],
                  progress: Progress | None = None, *, known: Evaluation | None = None,
                  modes: tuple[str, ...] = ("server", "raw"),
                  robustness: Sequence[Item] = ()) -> tuple[Evaluation, Evaluation]:
    """Both models on the same held-out prompts, robustness set and HumanEval sample;
    ``known`` is the serving model's evaluation on exactly these when the caller has it (it
    is not run again)."""
    out = [] if known is None else [known]
    todo = (serving, candidate) if known is None else (candidate,)
    out += evaluate_models(settings, model, todo, prompts, progress, modes=modes,
                           robustness=robustness)
    return out[0], out[1]


def evaluate_models(settings: Settings, model: Path, models: Sequence[tuple[str, Path | None]],
                    prompts: list[Prompt], progress: Progress | None = None, *,
                    modes: tuple[str, ...] = ("server", "raw"), humaneval: bool = True,
                    robustness: Sequence[Item] = ()) -> list[Evaluation]:
    """Each (version, adapter) on the held-out prompts, the robustness set and (unless
    ``humaneval`` is false) the gate's HumanEval sample, with one engine on the base GGUF."""
    gate = settings.gate
    tasks = benchmarks.humaneval(gate.humaneval, seed=settings.training.seed) \
        if gate.humaneval and humaneval else []
    evaluator = Evaluator(model, settings)
    try:
        out = []
        for version, path in models:
            tick: Callable[[], None] = lambda: None  # noqa: E731
            if progress is not None:
                task = progress.add_task(f"evaluating {version}",
                                         total=len(prompts) + len(tasks) + len(robustness))
                tick = partial(progress.advance, task)
            out.append(evaluator.evaluate(version, path, prompts, tasks, modes=modes,
                                          robustness=robustness, progress=tick))
        return out
    finally:
        evaluator.close()


def run_round(settings: Settings, *, dataset: Path | None = None, method: str | None = None,
              progress: Progress | None = None, promote: bool = True,
              held_out: list[Prompt] | None = None,
              robustness: list[Item] | None = None,
              known: dict[str, Evaluation] | None = None,
              modes: tuple[str, ...] = ("server", "raw")) -> RoundResult:
    """One round now. Raises ``train.TrainingError`` when there is nothing to train on.

    ``held_out`` and ``robustness``: the gate's prompts and robustness set instead of those of
    the data's test split (the demo holds out whole tasks of its own); ``known``: evaluations
    by version on those same prompts, reused for the serving model (and the base's
    robustness figures) and extended with the candidate's; ``modes``: what is scored, from
    the same generations ("server": what the server shows; "raw": the model's output).
    """
    started = time.perf_counter()
    home = DataDir.of(settings)
    registry = Registry(home.adapters)
    for leftover in registry.clean():
        log.warning("removed what an interrupted round left: %s", leftover)
    serving = registry.current()
    serving_info = registry.info(serving) if serving != BASE else None
    if dataset is not None:
        round_data = data.from_path(dataset, settings)
    else:
        round_data = data.from_store(
            Store.in_dir(home), settings, serving=serving,
            serving_since=serving_info.promoted_at if serving_info else None)
    choice = train.choose(method or settings.training.method, round_data.counts(),
                          settings.training.min_examples, settings.training.auto_order,
                          settings.training.kto_sft_weight)
    log.info("round: %s (data: %s)", choice.reason, round_data.source)
    result = RoundResult(choice, round_data.source)
    rows = round_data.rows.get(choice.method)
    if rows is None or not len(rows):
        raise train.TrainingError(f"{round_data.source} has no {choice.method} rows")

    model = resolve_model_path(settings.model.path)
    base = training_base(settings.training.base, model, home.cache)
    parent = registry.peft(serving)
    if parent is not None and not (parent / "adapter_config.json").is_file():
        log.warning("serving adapter %s has no PEFT weights; training a fresh LoRA", serving)
        parent = None
    staging = registry.staging()
    try:
        callbacks = [_steps_callback(progress, choice.method)] if progress is not None else []
        weights: dict[str, float] = {
            k: float(round_data.balance[k]) for k in ("desirable_weight", "undesirable_weight")
            if k in round_data.balance}
        report = train.train(choice.method, rows, base=base, model_path=model,
                             out=staging / PEFT_DIR,
                             settings=settings.training, parent=parent, kto_weights=weights,
                             callbacks=callbacks)
        result.report = report
        peft_to_gguf(staging / PEFT_DIR, model, staging / ADAPTER_FILE)
        version = _version(registry, choice.method)
        info = AdapterInfo(
            version=version, method=choice.method, parent=serving,
            data={"rows": report.examples, "dropped": report.dropped, "source": round_data.source,
                  "reason": choice.reason, **round_data.counts()},
            hyperparameters=report.hyperparameters,
            training={k: v for k, v in report.as_dict().items()
                      if k not in ("hyperparameters", "metrics")})
        registry.add(staging, info)
    except BaseException:
        # An error (not a kill: that is Registry.clean's job) removes the half-built folder.
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result.version = version

    if promote:
        prompts = round_data.held_out if held_out is None else held_out
        items = round_data.robustness if robustness is None else robustness
        old, new = evaluate_pair(settings, model, (serving, registry.gguf(serving)),
                                 (version, registry.gguf(version)),
                                 prompts, progress, modes=modes,
                                 known=(known or {}).get(serving), robustness=items)
        if known is not None:
            known.setdefault(serving, old)
            known[version] = new
        base_eval = None
        if serving != BASE and items:
            base_eval = (known or {}).get(BASE)
            if base_eval is None or not base_eval.robustness:
                base_eval = evaluate_models(settings, model, [(BASE, None)], [], progress,
                                            modes=modes, humaneval=False,
                                            robustness=items)[0]
        ok, why = judge(old, new, settings.gate, base_eval)
        result.evaluation = {"serving": old.as_dict(), "candidate": new.as_dict()}
        if base_eval is not None:
            result.evaluation["base_robustness"] = base_eval.robustness
        result.verdict = why
        figures = {**result.evaluation, "verdict": why}
        if ok:
            registry.record(version, figures)
            registry.promote(version)
            result.promoted = True
        else:
            registry.reject(version, figures)
        log.info("round: %s %s: %s", version,
                 AdapterStatus.PROMOTED if ok else AdapterStatus.REJECTED, why)
    result.seconds = round(time.perf_counter() - started, 1)
    return result
