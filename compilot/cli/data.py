"""`compilot stats`, `compilot check` and `compilot export`: what the store and the checks say."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from compilot import settings as settings_mod
from compilot.cli.app import app, share
from compilot.feedback.store import Store, StoreDamaged
from compilot.paths import DataDir


@app.command()
def stats(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Acceptance, parse, compile and survival rates by language, adapter version and origin
    (an editor, or `compilot bootstrap`), after a full integrity check of the event database
    (exit 2 naming the file if it is damaged)."""
    settings, _ = settings_mod.load()
    store = Store.in_dir(DataDir.of(settings))
    damage = store.integrity()
    if damage:
        raise StoreDamaged(f"event database {store.path} is damaged (integrity_check: "
                           f"{'; '.join(damage[:5])}); move it aside or restore it from a "
                           "backup (the server moves it aside itself when it next starts)")
    rows = store.summary()
    if as_json:
        print(json.dumps({"path": str(store.path), "integrity": "ok",
                          "counts": store.counts(), "by": rows}))
        return
    table = Table(title=f"compilot ({store.path})")
    for column in ("language", "adapter", "origin", "shown", "accepted", "acceptance",
                   "parse (accepted)", "compile (accepted)", "survival"):
        table.add_column(column, justify="left" if column in ("language", "adapter", "origin")
                         else "right")
    for row in rows:
        survival = row["survival"]
        table.add_row(
            str(row["language"]), str(row["adapter"]), str(row["origin"]), str(row["shown"]),
            str(row["accepted"]),
            share(_int(row["accepted"]), _int(row["shown"])),
            share(_int(row["accepted_parsed"]), _int(row["accepted"])),
            share(_int(row["accepted_compiled"]), _int(row["accepted_checked"])),
            "-" if not isinstance(survival, int | float) else f"{survival:.0%}",
        )
    console = Console()
    console.print(table)
    console.print(", ".join(f"{k}: {v}" for k, v in store.counts().items()))


def _int(value: object) -> int:
    return int(value) if isinstance(value, int | float) else 0


def check_files(paths: list[Path], settings: settings_mod.CheckSettings) -> list[dict[str, Any]]:
    """Both checks of each file, as `compilot check --json` prints them."""
    from compilot.feedback.blame import check
    from compilot.feedback.watcher import read_text
    from compilot.languages import language_for

    results: list[dict[str, Any]] = []
    for path in (p.resolve() for p in paths):
        text = read_text(path)
        language = language_for(None, path.as_uri()).id
        if text is None:
            results.append({"path": str(path), "language": language, "failed": True,
                            "checks": [{"stage": "read", "status": "error", "tool": "",
                                        "diagnostics": ["unreadable or over 10 MB"]}]})
            continue
        found = check(text, language, settings)
        results.append({
            "path": str(path), "language": language,
            "failed": any(r.failed for r in found),
            "checks": [{"stage": r.stage, "status": r.status, "tool": r.tool,
                        "duration_ms": round(r.duration_ms, 1),
                        "diagnostics": [f"{d.line + 1}:{d.column + 1}: {d.message}"
                                        for d in r.diagnostics]} for r in found],
        })
    return results


@app.command()
def check(
    paths: Annotated[list[Path], typer.Argument(help="Files to check.", exists=True,
                                                dir_okay=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    timeout: Annotated[float | None, typer.Option(help="Seconds per compiler run (default: "
                                                       "checks.timeout_s).")] = None,
) -> None:
    """Run compilot's syntax and compile checks on files; exit 1 when any file fails."""
    settings, _ = settings_mod.load()
    limits = settings.checks if timeout is None else dataclasses.replace(
        settings.checks, timeout_s=timeout)
    results = check_files(paths, limits)
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
    synthetic: Annotated[bool | None, typer.Option(help="DPO: synthetic negatives (runs the "
                                                         "checker on each; default: "
                                                         "datasets.synthetic_negatives).")
                         ] = None,
    push_to_hub: Annotated[str | None, typer.Option(help="Also push to this hub repo "
                                                         "(needs a network).")] = None,
) -> None:
    """Export the collected compile-feedback data as a Hugging Face dataset with a card."""
    import datasets as hf_datasets

    from compilot.feedback import dataset_export as fe
    from compilot.feedback import datasets as fd

    hf_datasets.disable_progress_bars()
    if fmt not in fe.FORMATS:
        raise typer.BadParameter(f"--format must be one of {', '.join(fe.FORMATS)}, "
                                 f"not {fmt!r}")
    settings, _ = settings_mod.load()
    ds = settings.datasets
    if synthetic is not None:
        ds = dataclasses.replace(ds, synthetic_negatives=synthetic)
    try:
        selection = fd.Selection(kind=fd.kind_named(kind),
                                 since=fd.parse_since(since) if since else None,
                                 language=language)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    dataset = fd.build(Store.in_dir(DataDir.of(settings)), selection, ds)
    summary = fd.summary(dataset)
    made_with = {**dataclasses.asdict(selection), "settings": dataclasses.asdict(ds)}
    paths = fe.export(dataset, out, fmt=fmt, made_with=made_with, summary=summary)
    console = Console()
    console.print(f"[bold]{kind}[/]: {summary['rows']} rows "
                  + ", ".join(f"{split} {len(dataset[split])}" for split in dataset))
    for key, value in summary.items():
        if key.startswith("by_") or key in ("balance", "time_range"):
            console.print(f"  {key}: {value}")
    for path in paths:
        console.print(f"  {path}")
    if push_to_hub:
        fe.push_to_hub(dataset, push_to_hub, card=(out / fe.CARD).read_text())
        console.print(f"pushed to {push_to_hub}")
