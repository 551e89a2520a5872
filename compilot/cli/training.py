"""`compilot train`, `compilot trainer`, `compilot eval` and `compilot adapters`."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from compilot import round_lock
from compilot import settings as settings_mod
from compilot.cli.app import (
    adapters_app,
    app,
    err,
    figures_table,
    fmt,
    log_to_stderr,
    quiet_libraries,
)
from compilot.paths import DataDir
from compilot.training.registry import Registry, RegistryError

if TYPE_CHECKING:
    from compilot.training.rounds import RoundResult


def _registry() -> Registry:
    settings, _ = settings_mod.load()
    return Registry(DataDir.of(settings).adapters)


@adapters_app.command("list")
def adapters_list() -> None:
    """Every adapter version with its status and evaluation."""
    registry = _registry()
    current = registry.current()
    table = Table(title=f"adapters ({registry.root}); serving: {current}")
    for column in ("version", "status", "method", "parent", "data", "evaluation"):
        table.add_column(column)
    for info in registry.versions():
        mark = " *" if info.version == current else ""
        table.add_row(info.version + mark, info.status, info.method, info.parent,
                      json.dumps(info.data), json.dumps(info.evaluation))
    Console().print(table)


@adapters_app.command("promote")
def adapters_promote(version: str) -> None:
    """Serve VERSION (the running server swaps to it)."""
    try:
        _registry().promote(version)
    except RegistryError as exc:
        raise typer.BadParameter(str(exc)) from exc
    print(f"serving {version}")


@adapters_app.command("rollback")
def adapters_rollback() -> None:
    """Serve what was serving before the current adapter."""
    try:
        previous = _registry().rollback()
    except RegistryError as exc:
        err.print(f"[red]compilot:[/] {exc}")
        raise typer.Exit(1) from exc
    print(f"serving {previous}")


def round_summary(result: RoundResult, console: Console) -> None:
    """The method and why, the training run's figures, the gate's table and its verdict."""
    console.print(f"[bold]method[/]: {result.choice.method} ({result.choice.reason})")
    console.print(f"[bold]data[/]: {result.source}")
    if result.report is not None:
        r = result.report
        table = Table(title="training run")
        for column in ("rows", "steps", "trainable params", "wall s", "train s",
                       "examples/s", "peak MB", "last loss"):
            table.add_column(column, justify="right")
        table.add_row(str(r.examples), str(r.steps),
                      f"{r.trainable_params:,} ({r.trainable_params / r.total_params:.2%})",
                      f"{r.wall_s:.1f}", f"{r.train_s:.1f}", f"{r.examples_per_s:.2f}",
                      f"{r.peak_memory_mb:.0f}", "-" if r.loss is None else f"{r.loss:.4f}")
        console.print(table)
    if result.evaluation:
        table = Table(title="gate")
        for column in ("model", "held-out prompts", "compile@1", "HumanEval", "pass@1",
                       "exec@1", "seconds"):
            table.add_column(column, justify="right")
        for role in ("serving", "candidate"):
            e = result.evaluation[role]
            h, he = e["held_out"], e["humaneval"]
            table.add_row(f"{role}: {e['adapter']}", str(h.get("prompts", 0)),
                          fmt(h.get("compile@1")), str(he.get("problems", 0)),
                          fmt(he.get("pass@1")), fmt(he.get("exec@1")), str(e["seconds"]))
        console.print(table)
    verdict = "promoted" if result.promoted else ("kept, rejected" if result.evaluation
                                                   else "kept as a candidate")
    console.print(f"[bold]{result.version}[/]: {verdict}"
                  + (f" ({result.verdict})" if result.verdict else ""))


@app.command()
def train(
    dataset: Annotated[Path | None, typer.Option(help="Train on an exported dataset (a "
                                                      "folder, or a parquet / jsonl file) "
                                                      "instead of the store.")] = None,
    method: Annotated[str | None, typer.Option(help="auto | kto | dpo | sft (default: the "
                                                    "training.method setting).")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps.")] = None,
    promote: Annotated[bool, typer.Option(help="Run the gate and promote a better adapter.")
                       ] = True,
    quiet: Annotated[bool, typer.Option(help="No progress bars (for logs).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Run one training round now: data, LoRA training, GGUF adapter, gate, promotion."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from compilot.training.rounds import run_round
    from compilot.training.train import TrainingError

    log_to_stderr("warning")
    quiet_libraries()
    settings, _ = settings_mod.load()
    if max_steps is not None:
        settings.training = dataclasses.replace(settings.training, max_steps=max_steps)
    console = Console()
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, disable=quiet or as_json)
    try:
        with round_lock.round_locked(DataDir.of(settings)), progress:
            result = run_round(settings, dataset=dataset, method=method, progress=progress,
                               promote=promote)
    except (TrainingError, round_lock.Busy, ValueError, FileNotFoundError) as exc:
        err.print(f"[red]compilot train:[/] {exc}")
        raise typer.Exit(1) from exc
    if as_json:
        print(json.dumps(result.as_dict(), indent=2, default=str))
    else:
        round_summary(result, console)


@app.command()
def trainer(
    once: Annotated[bool, typer.Option(help="Run a round if one is due, then exit.")] = False,
) -> None:
    """The background trainer: a round in the nightly window or after N new labelled
    completions (settings [trainer]); logs to trainer.log in the data dir."""
    from compilot.training import schedule

    settings, _ = settings_mod.load()
    data = DataDir.of(settings)
    data.create()
    log_path = schedule.file_logging(data)
    err.print(f"compilot trainer: logging to {log_path}")
    try:
        rounds = schedule.run_trainer(data, settings.trainer, once=once)
    except (round_lock.Busy, ValueError) as exc:
        err.print(f"[red]compilot trainer:[/] {exc}")
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    err.print(f"compilot trainer: {rounds} round(s) run")


@app.command("eval")
def evaluate(
    benchmark: Annotated[str, typer.Option(help="humaneval | held-out (the store's test "
                                                "split) | repair (HumanEval with broken "
                                                "bodies to fix) | robustness (held-out "
                                                "functions asked for as plain clients ask, "
                                                "against the base) | a JSONL file of "
                                                "HumanEval's shape")] = "humaneval",
    adapter: Annotated[str, typer.Option(help="current | base | an adapter VERSION")
                       ] = "current",
    limit: Annotated[int | None, typer.Option(help="Only the first N problems.")] = None,
    samples: Annotated[int, typer.Option(help="Samples per problem (n of pass@k).")] = 1,
    k: Annotated[str, typer.Option(help="Comma-separated k values (each <= samples).")] = "1",
    temperature: Annotated[float | None, typer.Option(help="Of the samples after the first "
                                                           "(default: gate.temperature).")
                           ] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Tokens per completion (default: "
                                                        "gate.max_tokens).")] = None,
    raw: Annotated[bool, typer.Option(help="Score the model's unprocessed output instead of "
                                           "what the server shows.")] = False,
    both: Annotated[bool, typer.Option(help="Score both, from the same generations.")] = False,
    codebleu: Annotated[bool, typer.Option(help="Also CodeBLEU against the references.")
                        ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Evaluate the serving model or an adapter: compile@k, exec@k, pass@k, exact match, edit
    similarity, CodeBLEU; repair pass rate and edit distance (generated code runs only in the
    sandbox). Results are stored in the data dir and with the adapter's metadata."""
    from rich.progress import Progress

    from compilot.training.evaluate import BenchmarkRun, run_benchmark

    settings, _ = settings_mod.load()
    try:
        ks = tuple(sorted({int(v) for v in k.split(",") if v.strip()}))
    except ValueError as exc:
        raise typer.BadParameter(f"--k must be integers like 1,5, not {k!r}") from exc
    if samples < 1 or not ks or max(ks) > samples:
        raise typer.BadParameter(f"--k values {list(ks)} need --samples >= {max(ks or (1,))}")
    modes = ("server", "raw") if both else ("raw",) if raw else ("server",)
    try:
        run = BenchmarkRun(benchmark=benchmark, adapter=adapter, limit=limit, samples=samples,
                           ks=ks, temperature=temperature, max_tokens=max_tokens, modes=modes,
                           codebleu=codebleu)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    with Progress(console=err, disable=as_json) as progress:

        def started(description: str, total: int) -> Callable[[], None]:
            task = progress.add_task(description, total=total)
            return lambda: progress.advance(task)

        try:
            result, stored = run_benchmark(settings, run, started=started)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
    if as_json:
        print(json.dumps(result, indent=2))
        return
    Console().print(figures_table(f"{benchmark} — {result['adapter']}, {result['seconds']} s",
                                  result["modes"]))
    err.print(f"programs ran in the sandbox: {result['sandbox']['isolation']} "
              f"({'; '.join(result['sandbox']['enforces'])})")
    err.print(f"stored in {stored}")
