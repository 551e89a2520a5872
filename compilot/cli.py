"""The `compilot` command."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from compilot import __version__
from compilot import settings as settings_mod

app = typer.Typer(help="compilot: local code completion that learns from the compiler.",
                  no_args_is_help=True, add_completion=False)
err = Console(stderr=True)


def _logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command()
def serve(
    tcp: Annotated[str | None, typer.Option(help="Listen on HOST:PORT instead of stdio.")] = None,
    log_level: Annotated[str, typer.Option(help="Log level (to stderr).")] = "warning",
) -> None:
    """Run the language server (stdio by default)."""
    _logging(log_level)
    from compilot.server.lsp import server

    if tcp:
        host, _, port = tcp.rpartition(":")
        server.start_tcp(host or "127.0.0.1", int(port))
        return
    # Keep stdout for LSP frames only: whatever else writes to fd 1 (a stray print, a C
    # library's printf) goes to stderr instead.
    lsp_out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    server.start_io(sys.stdin.buffer, lsp_out)


@app.command()
def demo(
    rounds: Annotated[int, typer.Option(help="Training rounds after the first session.")] = 2,
    size: Annotated[str, typer.Option(help="tiny | small | default: tasks per round, "
                                           "held-out sizes and training budget.")
                    ] = "default",
    seed: Annotated[int, typer.Option(help="Which functions, and the training seed.")] = 0,
) -> None:
    """The whole loop on the embedded model, headless: editor sessions over LSP, compile
    checks, the user's fixes, training rounds, the gate, live swaps; a report at the end."""
    from compilot.demo import SIZES, run_demo

    if size not in SIZES:
        raise typer.BadParameter(f"--size must be one of {', '.join(SIZES)}, not {size!r}")
    if rounds < 1:
        raise typer.BadParameter("--rounds must be at least 1")
    _logging("warning")
    _quiet_libraries()
    asyncio.run(run_demo(rounds=rounds, size=size, seed=seed))


def _share(part: int | None, whole: int | None) -> str:
    return f"{(part or 0) / whole:.0%}" if whole else "-"


@app.command()
def stats(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Acceptance, parse, compile and survival rates by language and adapter version."""
    from rich.table import Table

    from compilot.feedback.store import Store

    settings, _ = settings_mod.load()
    store = Store.in_dir(settings_mod.data_dir(settings))
    rows = store.summary()
    if as_json:
        print(json.dumps({"path": str(store.path), "counts": store.counts(), "by": rows}))
        return
    table = Table(title=f"compilot ({store.path})")
    for column in ("language", "adapter", "shown", "accepted", "acceptance",
                   "parse (accepted)", "compile (accepted)", "survival"):
        table.add_column(column, justify="left" if column in ("language", "adapter")
                         else "right")
    for row in rows:
        table.add_row(
            row["language"], row["adapter"], str(row["shown"]), str(row["accepted"]),
            _share(row["accepted"], row["shown"]),
            _share(row["accepted_parsed"], row["accepted"]),
            _share(row["accepted_compiled"], row["accepted_checked"]),
            "-" if row["survival"] is None else f"{row['survival']:.0%}",
        )
    console = Console()
    console.print(table)
    counts = store.counts()
    console.print(", ".join(f"{k}: {v}" for k, v in counts.items()))


@app.command()
def check(
    paths: Annotated[list[Path], typer.Argument(help="Files to check.", exists=True,
                                                dir_okay=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds per compiler run.")] = 10.0,
) -> None:
    """Run compilot's syntax and compile checks on files; exit 1 when any file fails."""
    from rich.table import Table

    from compilot.feedback import checks
    from compilot.feedback.watcher import read_text
    from compilot.server.languages import language_for

    results = []
    for path in (p.resolve() for p in paths):
        text = read_text(path)
        language = language_for(None, path.as_uri()).id
        if text is None:
            results.append({"path": str(path), "language": language, "failed": True,
                            "checks": [{"stage": "read", "status": "error", "tool": "",
                                        "diagnostics": ["unreadable or over 10 MB"]}]})
            continue
        found = checks.check(text, language, timeout=timeout)
        results.append({
            "path": str(path), "language": language,
            "failed": any(r.failed for r in found),
            "checks": [{"stage": r.stage, "status": r.status, "tool": r.tool,
                        "duration_ms": round(r.duration_ms, 1),
                        "diagnostics": [f"{d.line + 1}:{d.column + 1}: {d.message}"
                                        for d in r.diagnostics]} for r in found],
        })
    if as_json:
        print(json.dumps(results, indent=2))
    else:
        table = Table(title="compilot check")
        for column in ("file", "stage", "status", "tool", "first diagnostic"):
            table.add_column(column)
        for result in results:
            for r in result["checks"]:
                table.add_row(result["path"], r["stage"], r["status"], r["tool"],
                              (r["diagnostics"] or [""])[0][:80])
        Console().print(table)
    raise typer.Exit(1 if any(r["failed"] for r in results) else 0)


@app.command()
def export(
    kind: Annotated[str, typer.Option(help="kto | dpo | sft | events")] = "kto",
    fmt: Annotated[str, typer.Option("--format", help="parquet | jsonl | arrow")] = "parquet",
    out: Annotated[Path, typer.Option(help="Folder to write the dataset to.")] = Path("dataset"),
    since: Annotated[str | None, typer.Option(help="Only events since (ISO date).")] = None,
    language: Annotated[str | None, typer.Option(help="Only this languageId.")] = None,
    synthetic: Annotated[bool, typer.Option(help="DPO: synthetic negatives (runs the "
                                                  "checker on each).")] = True,
    push_to_hub: Annotated[str | None, typer.Option(help="Also push to this hub repo "
                                                         "(needs a network).")] = None,
) -> None:
    """Export the collected compile-feedback data as a Hugging Face dataset with a card."""
    import datasets as hf_datasets

    from compilot.feedback import datasets as fd
    from compilot.feedback import export as fe
    from compilot.feedback.store import Store

    hf_datasets.disable_progress_bars()
    if fmt not in ("parquet", "jsonl", "arrow"):
        raise typer.BadParameter(f"--format must be parquet, jsonl or arrow, not {fmt!r}")
    settings, _ = settings_mod.load()
    ds = settings.datasets
    try:
        options = fd.DatasetOptions(
            kind=kind, since=fd.parse_since(since) if since else None, language=language,
            synthetic=synthetic, include_rejected_compiling=ds.include_rejected_compiling,
            survival_threshold=ds.survival_threshold, held_out=ds.held_out)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    store = Store.in_dir(settings_mod.data_dir(settings))
    dataset = fd.build(store, options)
    summary = fd.summary(dataset)
    paths = fe.export(dataset, out, fmt=fmt, options=options, summary=summary)
    console = Console()
    console.print(f"[bold]{kind}[/]: {summary['rows']} rows "
                  + ", ".join(f"{split} {len(dataset[split])}" for split in dataset))
    for key, value in summary.items():
        if key.startswith("by_") or key in ("balance", "time_range"):
            console.print(f"  {key}: {value}")
    for path in paths:
        console.print(f"  {path}")
    if push_to_hub:
        fe.push_to_hub(dataset, push_to_hub, card=(out / "README.md").read_text())
        console.print(f"pushed to {push_to_hub}")


adapters_app = typer.Typer(help="Versioned LoRA adapters: list, promote, roll back.",
                           no_args_is_help=True)
app.add_typer(adapters_app, name="adapters")


def _registry():  # noqa: ANN202 - compilot.training.registry.Registry
    from compilot.training.registry import Registry

    settings, _ = settings_mod.load()
    return Registry(settings_mod.data_dir(settings) / "adapters")


@adapters_app.command("list")
def adapters_list() -> None:
    """Every adapter version with its status and evaluation."""
    from rich.table import Table

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
    from compilot.training.registry import RegistryError

    try:
        _registry().promote(version)
    except RegistryError as exc:
        raise typer.BadParameter(str(exc)) from exc
    print(f"serving {version}")


@adapters_app.command("rollback")
def adapters_rollback() -> None:
    """Serve what was serving before the current adapter."""
    from compilot.training.registry import RegistryError

    try:
        previous = _registry().rollback()
    except RegistryError as exc:
        err.print(f"[red]compilot:[/] {exc}")
        raise typer.Exit(1) from exc
    print(f"serving {previous}")


def _round_summary(result, console: Console) -> None:  # noqa: ANN001 - RoundResult
    from rich.table import Table

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
                          _fmt(h.get("compile@1")), str(he.get("problems", 0)),
                          _fmt(he.get("pass@1")), _fmt(he.get("exec@1")), str(e["seconds"]))
        console.print(table)
    verdict = "promoted" if result.promoted else ("kept, rejected" if result.evaluation
                                                   else "kept as a candidate")
    console.print(f"[bold]{result.version}[/]: {verdict}"
                  + (f" ({result.verdict})" if result.verdict else ""))


def _quiet_libraries() -> None:
    """The libraries' own progress bars and deprecation chatter would bury ours."""
    import warnings

    import datasets
    import transformers

    os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF loader uses plain tqdm
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="trl")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


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
    import dataclasses

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from compilot.training import schedule
    from compilot.training.round import run_round
    from compilot.training.train import TrainingError

    _logging("warning")
    _quiet_libraries()
    settings, _ = settings_mod.load()
    if max_steps is not None:
        settings.training = dataclasses.replace(settings.training, max_steps=max_steps)
    root = settings_mod.data_dir(settings)
    console = Console()
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, disable=quiet or as_json)
    try:
        with schedule.locked(root / schedule.ROUND_LOCK, "training round"), progress:
            result = run_round(settings, dataset=dataset, method=method, progress=progress,
                               promote=promote)
    except (TrainingError, schedule.Busy, ValueError, FileNotFoundError) as exc:
        err.print(f"[red]compilot train:[/] {exc}")
        raise typer.Exit(1) from exc
    if as_json:
        print(json.dumps(result.as_dict(), indent=2, default=str))
    else:
        _round_summary(result, console)


@app.command()
def trainer(
    once: Annotated[bool, typer.Option(help="Run a round if one is due, then exit.")] = False,
) -> None:
    """The background trainer: a round in the nightly window or after N new labelled
    completions (settings [trainer]); logs to trainer.log in the data dir."""
    from compilot.training import schedule

    settings, _ = settings_mod.load()
    root = settings_mod.data_dir(settings)
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    log_path = schedule.file_logging(root)
    err.print(f"compilot trainer: logging to {log_path}")
    try:
        rounds = schedule.run_trainer(root, settings.trainer, once=once)
    except (schedule.Busy, ValueError) as exc:
        err.print(f"[red]compilot trainer:[/] {exc}")
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    err.print(f"compilot trainer: {rounds} round(s) run")


@app.command("eval")
def evaluate(
    benchmark: Annotated[str, typer.Option(help="humaneval | held-out (the store's test "
                                                "split) | repair (HumanEval with broken "
                                                "bodies to fix) | a JSONL file of "
                                                "HumanEval's shape")] = "humaneval",
    adapter: Annotated[str, typer.Option(help="current | base | an adapter VERSION")
                       ] = "current",
    limit: Annotated[int | None, typer.Option(help="Only the first N problems.")] = None,
    samples: Annotated[int, typer.Option(help="Samples per problem (n of pass@k).")] = 1,
    k: Annotated[str, typer.Option(help="Comma-separated k values (each <= samples).")] = "1",
    temperature: Annotated[float, typer.Option(help="Of the samples after the first.")] = 0.8,
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
    import time

    from rich.progress import Progress

    from compilot.models import resolve_model_path
    from compilot.training import benchmarks
    from compilot.training.evaluate import Evaluator
    from compilot.training.registry import BASE, Registry, RegistryError

    settings, _ = settings_mod.load()
    root = settings_mod.data_dir(settings)
    registry = Registry(root / "adapters")
    version = registry.current() if adapter == "current" else adapter
    try:
        path = None if version == BASE else registry.root / registry.info(version).version / \
            "adapter.gguf"
    except RegistryError as exc:
        raise typer.BadParameter(str(exc)) from exc
    try:
        ks = sorted({int(v) for v in k.split(",") if v.strip()})
    except ValueError as exc:
        raise typer.BadParameter(f"--k must be integers like 1,5, not {k!r}") from exc
    if samples < 1 or not ks or max(ks) > samples:
        raise typer.BadParameter(f"--k values {ks} need --samples >= {max(ks or [1])}")
    modes = ("server", "raw") if both else ("raw",) if raw else ("server",)
    tasks: list[benchmarks.Task] = []
    if benchmark == "humaneval":
        tasks = benchmarks.humaneval(limit)
    elif benchmark == "repair":
        tasks = benchmarks.repair_tasks(benchmarks.humaneval(), limit)
    elif benchmark != "held-out":
        try:
            tasks = benchmarks.from_jsonl(Path(benchmark))[:limit]
        except (OSError, ValueError) as exc:
            raise typer.BadParameter(str(exc)) from exc
    evaluator = Evaluator(resolve_model_path(settings.model.path),
                          max_tokens=max_tokens or settings.gate.max_tokens,
                          n_threads=settings.model.n_threads, n_ctx=settings.model.n_ctx,
                          timeout_s=settings.gate.timeout_s)
    evaluator.engine.set_adapter(path)
    started = time.perf_counter()
    with Progress(console=err, disable=as_json) as progress:
        if benchmark == "held-out":
            from compilot.feedback import datasets as fd
            from compilot.feedback.store import Store
            from compilot.training.evaluate import held_out_prompts

            built = fd.build(Store.in_dir(root), fd.DatasetOptions(
                kind="events", held_out=settings.datasets.held_out))
            prompts = held_out_prompts(built["test"], limit or settings.gate.held_out_prompts)
            task = progress.add_task("held-out prompts", total=len(prompts))
            figures = evaluator.held_out(prompts, modes=modes,
                                         progress=lambda: progress.advance(task))
        else:
            task = progress.add_task(benchmark, total=len(tasks))
            figures = evaluator.suite(tasks, modes=modes, n=samples, ks=ks,
                                      temperature=temperature, codebleu=codebleu,
                                      progress=lambda: progress.advance(task))
    evaluator.close()
    name = Path(benchmark).stem
    result = {"benchmark": benchmark, "adapter": version, "max_tokens": evaluator.max_tokens,
              "seconds": round(time.perf_counter() - started, 1), "modes": figures}
    out_dir = root / "evaluations"
    out_dir.mkdir(parents=True, exist_ok=True)
    stored = out_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{version}-{name}-{'-'.join(modes)}.json"
    stored.write_text(json.dumps(result, indent=2))
    if version != BASE:
        registry.record(version, {f"eval:{name}:{mode}": value
                                  for mode, value in figures.items()})
    if as_json:
        print(json.dumps(result, indent=2))
        return
    Console().print(_figures_table(f"{benchmark} — {version}, {result['seconds']} s", figures))
    err.print(f"stored in {stored}")


def _figures_table(title: str, figures: dict[str, dict[str, object]]) -> object:
    """A rich table: one row per metric, one column per mode."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("metric")
    for mode in figures:
        table.add_column(mode, justify="right")
    metrics = list(dict.fromkeys(key for values in figures.values() for key in values))
    for metric in metrics:
        cells = [figures[mode].get(metric) for mode in figures]
        table.add_row(metric, *("-" if v is None else _fmt(v) if isinstance(v, float)
                                else str(v) for v in cells))
    return table


@app.command()
def version() -> None:
    """Print the version."""
    print(__version__)


def main() -> None:
    from compilot.feedback.store import StoreError

    try:
        app()
    except StoreError as exc:
        err.print(f"[red]compilot:[/] {exc}")
        raise SystemExit(2) from exc


if __name__ == "__main__":
    main()
