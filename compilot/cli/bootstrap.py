"""`compilot bootstrap PATH`: a first adapter's data from the user's own repository."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import ProgressColumn, Task
from rich.table import Table
from rich.text import Text

from compilot import settings as settings_mod
from compilot.cli.app import app, err, log_to_stderr
from compilot.paths import DataDir

if TYPE_CHECKING:
    from compilot.training.bootstrap import Plan, Tally


class _Rate(ProgressColumn):
    """Functions per minute, from rich's speed estimate."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-/min" if speed is None else f"{speed * 60:.1f}/min", style="cyan")


def _plan_table(found: Plan, root: Path) -> Table:
    table = Table(title=f"compilot bootstrap {root}")
    table.add_column("")
    table.add_column("count", justify="right")
    for language, files in sorted(found.files.items()):
        table.add_row(f"{language} files", str(files))
    table.add_row("functions found", str(found.functions))
    table.add_row("done by an earlier run", str(found.done_before))
    table.add_row("left for a later run (--limit)", str(found.over_limit))
    table.add_row("[bold]to complete now[/]", str(len(found.tasks)))
    for reason, count in sorted(found.skipped.items()):
        table.add_row(f"skipped: {reason}", str(count))
    return table


def _tally_table(tally: Tally) -> Table:
    table = Table(title="recorded")
    table.add_column("")
    table.add_column("count", justify="right")
    for name, value in asdict(tally).items():
        table.add_row(name.replace("_", " "), f"{value:.1f}" if isinstance(value, float)
                      else str(value))
    table.add_row("functions per minute", f"{tally.rate():.1f}")
    return table


@app.command()
def bootstrap(
    path: Annotated[Path, typer.Argument(exists=True, file_okay=False, resolve_path=True,
                                         help="The repository to learn from.")],
    language: Annotated[list[str] | None, typer.Option(
        "--language", help="Only this LSP language id (repeatable): python, c, cpp, java, "
                           "javascript, typescript, rust.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most N functions this run "
                                                          "(the rest next time).")] = None,
    max_body_lines: Annotated[int, typer.Option(min=1, help="Bodies longer than this are "
                                                            "left out.")] = 12,
    min_body_lines: Annotated[int, typer.Option(min=1, help="Bodies shorter than this are "
                                                            "left out.")] = 2,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what it would do; load no "
                                                           "model, write nothing.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar (for logs).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan and what was "
                                                         "recorded as JSON.")] = False,
) -> None:
    """Hide each function body of PATH, let the serving model write it back through the
    server's pipeline, label every candidate with the real compiler and keep the real body as
    the fix where the model's fails: a first adapter's data (then run `compilot train`).
    Nothing of PATH is ever run. A second run skips the functions done; Ctrl-C keeps them."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from compilot.feedback.store import Store, StoreError
    from compilot.models import ModelNotFound, resolve_model_path
    from compilot.server import engine as engine_mod
    from compilot.server.engine import ModelLoadError
    from compilot.training.bootstrap import Bootstrap, interruptible, plan
    from compilot.training.registry import Registry

    log_to_stderr("warning")
    settings, _ = settings_mod.load()
    home = DataDir.of(settings)
    if dry_run:  # what is done, read without creating or migrating anything
        store = Store(home.events_db, read_only=True) if home.events_db.exists() else None
    else:
        store = Store.in_dir(home)
    console = Console(stderr=as_json)
    try:
        try:
            done = store.bootstrapped() if store is not None else set()
        except StoreError:
            done = set()  # a store of an older schema: nothing bootstrapped yet
        try:
            found = plan(path, settings, languages=language, limit=limit,
                         max_body_lines=max_body_lines, min_body_lines=min_body_lines,
                         done=done)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from exc
        report: dict[str, Any] = {"root": str(path), "store": str(home.events_db),
                                  "plan": _plan_dict(found)}
        if not as_json:
            console.print(_plan_table(found, path))
        if store is None or dry_run or not found.tasks:
            if as_json:
                print(json.dumps(report, indent=2))
            elif not found.tasks:
                console.print("nothing to complete")
            return
        registry = Registry(home.adapters)
        adapter = registry.current()
        try:
            engine = engine_mod.load(resolve_model_path(settings.model.path), settings.model)
            engine.set_adapter(registry.gguf(adapter))
        except (ModelNotFound, ModelLoadError) as exc:
            err.print(f"[red]compilot bootstrap:[/] cannot load the model: {exc}")
            raise typer.Exit(1) from exc
        run = Bootstrap(store, engine, adapter=adapter, settings=settings, root=path)
        progress = Progress(TextColumn("completing functions"), BarColumn(),
                            MofNCompleteColumn(), _Rate(), TimeRemainingColumn(),
                            console=err, disable=quiet or as_json)
        interrupted = False
        with progress, interruptible() as stop:
            bar = progress.add_task("bootstrap", total=len(found.tasks))
            try:
                run.run(found.tasks, progress=lambda: progress.advance(bar), stop=stop)
            except KeyboardInterrupt:
                interrupted = True
            interrupted = interrupted or stop()
        engine.llm.close()
        report |= {"adapter": adapter, "interrupted": interrupted,
                   "recorded": {**asdict(run.tally), "per_minute": round(run.tally.rate(), 2)}}
        if as_json:
            print(json.dumps(report, indent=2))
        else:
            console.print(_tally_table(run.tally))
            if interrupted:
                console.print(f"interrupted: {run.tally.tasks} functions kept; run it again "
                              "to go on")
            console.print(f"recorded in {home.events_db} as origin 'bootstrap'; "
                          "`compilot train` makes an adapter from it")
        if interrupted:
            raise typer.Exit(130)
    finally:
        if store is not None:
            store.close()


def _plan_dict(found: Plan) -> dict[str, Any]:
    return {"files": dict(found.files), "functions": found.functions,
            "done_before": found.done_before, "over_limit": found.over_limit,
            "tasks": len(found.tasks), "skipped": dict(found.skipped)}
