"""The demo's loop: round 0 scored, then per round an editor session, a training round, the
gate and a live swap; tables per round and an HTML report at the end."""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from compilot import settings as settings_mod
from compilot.demo.editor import (
    play_fixes,
    session,
    session_figures,
    start_demo_server,
    wait_for_adapter,
)
from compilot.demo.setup import SIZES, demo_settings, prompts_at_holes, split_holes
from compilot.lsp_client import stop
from compilot.models import embedded_model_path
from compilot.paths import DATA_DIR_ENV, DataDir
from compilot.pointer import BASE
from compilot.report import EVALUATION, evaluation_rows, render, value
from compilot.training import rounds as training_rounds
from compilot.training.base import materialize
from compilot.training.registry import AdapterStatus
from compilot.training.robustness import from_holes
from compilot.training.train import TrainingError

console = Console()
MODES = ("server", "raw")


def final_table(rounds: list[dict[str, Any]]) -> Table:
    """Round 0 against the model serving at the end, and the last round's model when the gate
    kept it out."""
    first = rounds[0]
    promoted = [r for r in rounds[1:] if r.get("status") == AdapterStatus.PROMOTED]
    shown = [first, *promoted[-1:]]
    last = rounds[-1]
    if last is not shown[-1] and last.get("evaluation"):
        shown.append(last)
    table = Table(title="round 0 (embedded model) against the last round")
    table.add_column("figure")
    for r in shown:
        promoted_here = r.get("status") == AdapterStatus.PROMOTED
        what = ("embedded model" if r is first else
                "serving at the end" if promoted_here else r.get("status", ""))
        table.add_column(f"round {r['round']}: {r['model']}\n({what})", justify="right")
    for suite, metric, title in EVALUATION:
        for mode in ("raw", "server"):
            table.add_row(f"{title} ({mode})", *(_pct(value(r.get("evaluation") or {}, suite,
                                                             metric, mode)) for r in shown))
    return table


def _evaluation_row(r: dict[str, Any]) -> list[str]:
    values = evaluation_rows([r])[0][3:]  # after round, model, status: raw, server per figure
    return [str(r["round"]), r["model"], r.get("status", "")] + [
        f"{_pct(raw)} / {_pct(shown)}" for raw, shown in zip(values[::2], values[1::2],
                                                             strict=True)]


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.0%}"


def print_round(r: dict[str, Any]) -> None:
    """One round's session, training and evaluation figures."""
    s = r.get("session")
    if s:
        console.print(
            f"[bold]round {r['round']}[/]: served by {s['served_by']}: {s['accepted']} of "
            f"{s['shown']} shown accepted ({_pct(s['acceptance'])}); accepted ones parse "
            f"{_pct(s['parse'])}, compile {_pct(s['compile'])}; {s['revisions']} revisions; "
            f"a checked fix for {s.get('fix_offered', 0)} of {s.get('broken', 0)} broken "
            "accepts")
    if r.get("training"):
        t = r["training"]
        console.print(f"  trained {t['method']} on {t['examples']} examples in "
                      f"{t['train_s']:.0f} s ({t['examples_per_s']:.2f} ex/s): "
                      f"{r['model']} {r['status']}: {r['verdict']}")
        if t.get("reason"):
            console.print(f"  method: {t['reason']}")
    table = Table("round", "model", "status",
                  *(f"{title} raw / shown" for _, _, title in EVALUATION))
    table.add_row(*_evaluation_row(r))
    console.print(table)
    robust = (r.get("evaluation") or {}).get("robustness") or {}
    if robust:
        console.print("  robustness compile@1, prompts sent as plain clients send them (raw / "
                      "cut): " + ", ".join(
                          f"{shape} {_pct(v.get('compile@1'))} / {_pct(v.get('cut compile@1'))}"
                          for shape, v in robust.items()))


async def run_demo(*, rounds: int, size: str, seed: int) -> Path:
    """The loop; returns the path of the HTML report."""
    chosen = SIZES[size]
    user, _ = settings_mod.load()
    home = DataDir.of(user)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root = home.demo_runs / stamp
    workdir = root / "files"
    workdir.mkdir(parents=True, exist_ok=True)
    # Everything this run does (the server, the rounds, the registry) uses the run's folder;
    # COMPILOT_DATA_DIR outranks the settings, so it is the one to set.
    os.environ[DATA_DIR_ENV] = str(root)
    settings = demo_settings(chosen, root, seed)
    model = embedded_model_path()
    started = time.perf_counter()
    console.print(f"[bold]compilot demo[/]: {rounds} round(s), size {size}, on {model.name}; "
                  f"data in {root}")
    held_tasks, round_tasks = split_holes(chosen, rounds, seed)
    prompts = prompts_at_holes(held_tasks, settings)
    robust = from_holes([(hole, "python") for hole in held_tasks], fim=True,
                        limit=settings.gate.robustness_functions)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, transient=True)
    summary: dict[str, Any] = {
        "started": stamp, "model": model.name, "root": str(root), "rounds_run": 0,
        "setup": {"size": size, "seed": seed, "rounds": rounds, **{
            k: getattr(chosen, k) for k in ("tasks", "held_out", "humaneval", "max_length",
                                            "max_steps", "learning_rate", "method", "auto_order",
                                            "kto_sft_weight")}},
        "rounds": []}
    known: dict[str, Any] = {}
    with progress:
        if not settings.training.base:
            progress.add_task("materializing the training checkpoint (once per model)",
                              total=None)
            base = materialize(model, home.cache)
            settings = replace(settings, training=replace(settings.training, base=str(base)))
        known[BASE] = training_rounds.evaluate_models(settings, model, [(BASE, None)], prompts,
                                                progress, modes=MODES, robustness=robust)[0]
    zero = {"round": 0, "model": BASE, "status": "embedded model",
            "evaluation": known[BASE].as_dict()}
    summary["rounds"].append(zero)
    print_round(zero)

    client = await start_demo_server(settings, root)
    serving = BASE
    try:
        for number in range(1, rounds + 1):
            since = time.time()
            folder = workdir / f"round{number}"
            folder.mkdir()
            with progress:
                accepted, requests = await session(client, round_tasks[number - 1], folder,
                                                   progress)
                repairs = await play_fixes(client, root, accepted)
            figures = session_figures(root, since, serving, requests)
            # the share of broken accepts for which "compilot: fix" had a checked fix ready
            figures.update(repairs, fix_share=round(repairs["fix_offered"] / repairs["broken"], 4)
                           if repairs["broken"] else None)
            record: dict[str, Any] = {"round": number, "model": serving, "session": figures}
            try:
                with progress:
                    result = await asyncio.to_thread(
                        training_rounds.run_round, settings, progress=progress, held_out=prompts,
                        robustness=robust, known=known, modes=MODES)
            except TrainingError as exc:
                record.update(status="no round", verdict=str(exc))
                summary["rounds"].append(record)
                print_round(record)
                continue
            report, version = result.report, result.version
            assert report is not None and version is not None  # a round that ran trained one
            status = AdapterStatus.PROMOTED if result.promoted else AdapterStatus.REJECTED
            record.update(
                model=version, status=status,
                verdict=result.verdict, evaluation=known[version].as_dict(),
                training={"method": result.choice.method, "reason": result.choice.reason,
                          "examples": report.examples, "steps": report.steps,
                          "train_s": report.train_s, "examples_per_s": report.examples_per_s,
                          "peak_memory_mb": report.peak_memory_mb,
                          "trainable_params": report.trainable_params})
            if result.promoted:
                record["swap_s"] = round(await wait_for_adapter(client, version), 2)
                serving = version
            summary["rounds"].append(record)
            summary["rounds_run"] = number
            print_round(record)
    finally:
        await stop(client)

    summary["seconds"] = round(time.perf_counter() - started, 1)
    reports = home.reports
    reports.mkdir(parents=True, exist_ok=True)
    path = reports / f"demo-{stamp}.html"
    path.write_text(render(summary), encoding="utf-8")
    (reports / f"demo-{stamp}.json").write_text(json.dumps(summary, indent=2, default=str))
    console.print(final_table(summary["rounds"]))
    console.print(f"done in {summary['seconds']:.0f} s; report: {path}")
    return path
