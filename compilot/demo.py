"""`compilot demo`: the whole loop on the embedded model, headless, as an editor would drive it.

Each round: `compilot serve` (a real subprocess, over LSP) completes function bodies of real
standard-library files; the demo accepts the top item as an editor does, lets the compile
checks run, and where an accepted completion broke the code it plays the user's fix by
editing the reference body in (the server records the revision). Then a training round runs
on what the store collected (``training.round.run_round``: data, trl, GGUF adapter, gate),
the gate promotes or rejects the adapter, the running server swaps a promoted one in live,
and the next round's completions come from it. Held-out prompts (functions of other files)
and a HumanEval sample are never trained on; every model is scored on them, both on its raw
output and on what the server shows. The figures go to a table per round and to an HTML
report with plots.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from compilot import settings as settings_mod
from compilot.lsp_client import command, inline, start_server, stop
from compilot.training.corpus import Task, stdlib_tasks

console = Console()
MODES = ("server", "raw")


@dataclass(frozen=True)
class Size:
    """How much a demo does: tasks per round, held-out sizes, and the training budget."""

    tasks: int  # function bodies completed over LSP per round
    held_out: int  # held-out function prompts (compile@1)
    humaneval: int  # HumanEval problems (compile@1, exec@1, pass@1)
    candidates: int
    max_tokens: int  # per completion in the session
    eval_tokens: int  # per completion in the evaluations
    max_length: int  # training sequence length (prompt cut from the left)
    max_steps: int  # -1: one epoch
    batch_size: int
    learning_rate: float
    method: str = "sft"


# The method and learning rate come from bench/methods.py on demo sessions of the embedded model
# (README, "Measured"): on two dozen to forty rows a round, KTO and DPO + SFT term did not beat
# the base on the held-out prompts, SFT on the kept compiling completions and the user's fixes
# (SEED's training on revisions) at lr 5e-4 did, and it moved the raw output most. The
# preference methods need more data than a demo round has; `compilot train` keeps `auto`.


SIZES = {
    "tiny": Size(tasks=4, held_out=4, humaneval=2, candidates=2, max_tokens=32, eval_tokens=48,
                 max_length=128, max_steps=2, batch_size=2, learning_rate=5e-4),
    "small": Size(tasks=12, held_out=12, humaneval=6, candidates=3, max_tokens=48,
                  eval_tokens=64, max_length=160, max_steps=-1, batch_size=4,
                  learning_rate=5e-4),
    "default": Size(tasks=24, held_out=24, humaneval=10, candidates=3, max_tokens=48,
                    eval_tokens=64, max_length=160, max_steps=-1, batch_size=4,
                    learning_rate=5e-4),
}


def demo_settings(size: Size, root: Path, seed: int) -> settings_mod.Settings:
    """The user's settings with the demo's sizes, the embedded model and its own data dir.

    The user's ``training.base`` (a materialized checkpoint) and thread counts are kept.
    """
    base, _ = settings_mod.load()
    return replace(
        base, data_dir=str(root),
        model=replace(base.model, path=None),
        completion=replace(base.completion, candidates=size.candidates,
                           max_tokens=size.max_tokens, seed=seed),
        logging=replace(base.logging, enabled=True, ignore=[]),
        training=replace(base.training, method=size.method, max_length=size.max_length,
                         max_steps=size.max_steps, batch_size=size.batch_size,
                         gradient_accumulation=1, learning_rate=size.learning_rate,
                         epochs=1.0, min_examples=2, max_examples=4 * size.tasks * 3,
                         on_policy=True, seed=seed),
        gate=replace(base.gate, held_out_prompts=size.held_out, humaneval=size.humaneval,
                     max_tokens=size.eval_tokens),
    )


def split_tasks(size: Size, rounds: int, seed: int) -> tuple[list[Task], list[list[Task]]]:
    """Held-out tasks, then the tasks of each round from files the held-out ones do not use."""
    pool = stdlib_tasks(10 * (size.held_out + size.tasks * rounds) + 50, seed=seed)
    held: list[Task] = []
    held_files: set[str] = set()
    for task in pool:
        if len(held) == size.held_out:
            break
        held.append(task)
        held_files.add(task.path)
    train = [t for t in pool if t.path not in held_files]
    need = size.tasks * rounds
    if len(held) < size.held_out or len(train) < need:
        raise RuntimeError(f"the standard library gave {len(held)} held-out and {len(train)} "
                           f"training tasks; the demo needs {size.held_out} and {need}")
    return held, [train[r * size.tasks:(r + 1) * size.tasks] for r in range(rounds)]


def held_out_prompts(tasks: list[Task], settings: settings_mod.Settings) -> list[Any]:
    """The prompts the server would build at each held-out cursor."""
    from compilot.server.prompt import window
    from compilot.training.evaluate import Prompt

    c = settings.completion
    out = []
    for task in tasks:
        win = window(task.document, len(task.prefix), prefix_chars=c.prefix_chars,
                     suffix_chars=c.suffix_chars)
        out.append(Prompt(win.prefix, win.suffix, "python"))
    return out


# -- the editor side ----------------------------------------------------------------------------

async def start_demo_server(settings: settings_mod.Settings, root: Path) -> LanguageClient:
    """`compilot serve` with the demo's settings and data dir (and no user config file)."""
    env = {**os.environ, settings_mod.SETTINGS_ENV: json.dumps(settings_mod.as_dict(settings)),
           "COMPILOT_DATA_DIR": str(root), "COMPILOT_CONFIG": str(root / "no-config.toml")}
    return await start_server(env=env)


def end_position(start: types.Position, text: str) -> types.Position:
    """Where ``text`` inserted at ``start`` ends (LSP positions count UTF-16 units)."""
    lines = text.split("\n")
    last = len(lines[-1].encode("utf-16-le")) // 2
    if len(lines) == 1:
        return types.Position(line=start.line, character=start.character + last)
    return types.Position(line=start.line + len(lines) - 1, character=last)


def _edit(client: LanguageClient, uri: str, version: int, start: types.Position,
          end: types.Position, text: str) -> None:
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(start=start, end=end), text=text)]))


@dataclass
class Opened:
    """A file of the session with the completion accepted in it."""

    task: Task
    uri: str
    path: Path
    at: types.Position
    text: str
    candidate: str


async def session(client: LanguageClient, tasks: list[Task], workdir: Path, progress: Progress
                  ) -> tuple[list[Opened], int]:
    """Open each file, ask for the completion at the body, accept the top item as an editor
    does (insert it, then run its command). Returns the accepted ones and the request count."""
    accepted: list[Opened] = []
    bar = progress.add_task("editor session: completing function bodies", total=len(tasks))
    for number, task in enumerate(tasks):
        path = workdir / f"{number:02d}_{task.name.replace('.', '_')}.py"
        path.write_text(task.document, encoding="utf-8")
        uri = path.as_uri()
        client.text_document_did_open(types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1,
                                                 text=task.document)))
        line, character = task.cursor
        at = types.Position(line=line, character=character)
        items = (await inline(client, uri, at.line, at.character)).items
        top = items[0] if items else None
        if top is not None and top.command is not None and str(top.insert_text).strip():
            text = str(top.insert_text)
            _edit(client, uri, 2, at, at, text)
            await command(client, top.command.command, *(top.command.arguments or []))
            accepted.append(Opened(task, uri, path, at, text, top.command.arguments[0]))
        progress.advance(bar)
    return accepted, len(tasks)


def broken(root: Path, candidate: str) -> bool:
    """Whether the server's checks blamed the accepted completion for an error."""
    from compilot.feedback.store import Store

    store = Store.in_dir(root)
    try:
        rows = store.query("SELECT max(introduced) AS bad FROM checks WHERE candidate_id = ?",
                           (candidate,))
    finally:
        store.close()
    return bool(rows and rows[0]["bad"])


async def play_fixes(client: LanguageClient, root: Path, accepted: list[Opened]) -> int:
    """Where an accepted completion broke the code, edit the reference body in and save, as the
    user would; the server turns (broken, fixed) into a revision. Returns the fixes played."""
    await command(client, "compilot.settle")
    fixed = 0
    for item in accepted:
        if broken(root, item.candidate):
            _edit(client, item.uri, 3, item.at, end_position(item.at, item.text),
                  item.task.reference)
            document = item.task.prefix + item.task.reference + item.task.suffix
            item.path.write_text(document, encoding="utf-8")
            client.text_document_did_save(types.DidSaveTextDocumentParams(
                text_document=types.TextDocumentIdentifier(uri=item.uri)))
            fixed += 1
    await command(client, "compilot.settle")
    for item in accepted:
        client.text_document_did_close(types.DidCloseTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=item.uri)))
    await command(client, "compilot.settle")
    return fixed


def session_figures(root: Path, since: float, served_by: str, requests: int) -> dict[str, Any]:
    """Acceptance and the parse / compile rates of the accepted completions of one round."""
    from compilot.feedback.store import Store

    store = Store.in_dir(root)
    try:
        rows = store.summary(since)
        revisions = store.query("SELECT count(*) AS n FROM revisions WHERE created_at >= ?",
                                (since,))[0]["n"]
    finally:
        store.close()
    total = {k: sum(int(r[k] or 0) for r in rows) for k in (
        "shown", "accepted", "accepted_parsed", "accepted_checked", "accepted_compiled")}

    def rate(part: str, whole: str) -> float | None:
        return round(total[part] / total[whole], 4) if total[whole] else None

    return {"served_by": served_by, "requests": requests, "shown": total["shown"],
            "accepted": total["accepted"], "acceptance": rate("accepted", "shown"),
            "parse": rate("accepted_parsed", "accepted"),
            "compile": rate("accepted_compiled", "accepted_checked"), "revisions": revisions}


async def wait_for_adapter(client: LanguageClient, version: str, timeout: float = 120.0
                           ) -> float:
    """Seconds until the running server serves ``version`` (it follows the registry)."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        status = await command(client, "compilot.status")
        if status.get("adapter") == version:
            return time.perf_counter() - started
        await asyncio.sleep(0.25)
    raise TimeoutError(f"the server did not swap to adapter {version} within {timeout:.0f} s")


# -- the loop -----------------------------------------------------------------------------------

def final_table(rounds: list[dict[str, Any]]) -> Table:
    """Round 0 against the model serving at the end, and the last round's model when the gate
    kept it out."""
    from compilot.report import EVALUATION, value

    first = rounds[0]
    promoted = [r for r in rounds[1:] if r.get("status") == "promoted"]
    shown = [first, *promoted[-1:]]
    last = rounds[-1]
    if last is not shown[-1] and last.get("evaluation"):
        shown.append(last)
    table = Table(title="round 0 (embedded model) against the last round")
    table.add_column("figure")
    for r in shown:
        what = ("embedded model" if r is first else
                "serving at the end" if r.get("status") == "promoted" else r.get("status", ""))
        table.add_column(f"round {r['round']}: {r['model']}\n({what})", justify="right")
    for suite, metric, title in EVALUATION:
        for mode in ("raw", "server"):
            table.add_row(f"{title} ({mode})", *(_pct(value(r.get("evaluation") or {}, suite,
                                                             metric, mode)) for r in shown))
    return table


def _evaluation_row(r: dict[str, Any]) -> list[str]:
    from compilot.report import evaluation_rows

    values = evaluation_rows([r])[0][3:]  # after round, model, status: raw, server per figure
    return [str(r["round"]), r["model"], r.get("status", "")] + [
        f"{_pct(raw)} / {_pct(shown)}" for raw, shown in zip(values[::2], values[1::2],
                                                             strict=True)]


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.0%}"


def print_round(r: dict[str, Any]) -> None:
    from compilot.report import EVALUATION

    s = r.get("session")
    if s:
        console.print(
            f"[bold]round {r['round']}[/]: served by {s['served_by']}: {s['accepted']} of "
            f"{s['shown']} shown accepted ({_pct(s['acceptance'])}); accepted ones parse "
            f"{_pct(s['parse'])}, compile {_pct(s['compile'])}; {s['revisions']} revisions")
    if r.get("training"):
        t = r["training"]
        console.print(f"  trained {t['method']} on {t['examples']} examples in "
                      f"{t['train_s']:.0f} s ({t['examples_per_s']:.2f} ex/s): "
                      f"{r['model']} {r['status']}: {r['verdict']}")
    table = Table("round", "model", "status",
                  *(f"{title} raw / shown" for _, _, title in EVALUATION))
    table.add_row(*_evaluation_row(r))
    console.print(table)


async def run_demo(*, rounds: int, size: str, seed: int) -> Path:
    """The loop; returns the path of the HTML report."""
    from compilot.models import embedded_model_path
    from compilot.report import render
    from compilot.training import round as round_mod
    from compilot.training.base import materialize
    from compilot.training.registry import BASE
    from compilot.training.train import TrainingError

    chosen = SIZES[size]
    user, _ = settings_mod.load()
    home = settings_mod.data_dir(user)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    root = home / "demo" / stamp
    workdir = root / "files"
    workdir.mkdir(parents=True, exist_ok=True)
    # Everything this run does (the server, the rounds, the registry) uses the run's folder;
    # COMPILOT_DATA_DIR outranks the settings, so it is the one to set.
    os.environ["COMPILOT_DATA_DIR"] = str(root)
    settings = demo_settings(chosen, root, seed)
    model = embedded_model_path()
    started = time.perf_counter()
    console.print(f"[bold]compilot demo[/]: {rounds} round(s), size {size}, on {model.name}; "
                  f"data in {root}")
    held_tasks, round_tasks = split_tasks(chosen, rounds, seed)
    prompts = held_out_prompts(held_tasks, settings)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, transient=True)
    summary: dict[str, Any] = {
        "started": stamp, "model": model.name, "root": str(root), "rounds_run": 0,
        "setup": {"size": size, "seed": seed, "rounds": rounds, **{
            k: getattr(chosen, k) for k in ("tasks", "held_out", "humaneval", "max_length",
                                            "max_steps", "learning_rate", "method")}},
        "rounds": []}
    known: dict[str, Any] = {}
    with progress:
        if not settings.training.base:
            progress.add_task("materializing the training checkpoint (once per model)",
                              total=None)
            base = materialize(model, home / round_mod.CACHE_DIR)
            settings = replace(settings, training=replace(settings.training, base=str(base)))
        known[BASE] = round_mod.evaluate_models(settings, model, [(BASE, None)], prompts,
                                                progress, modes=MODES)[0]
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
                await play_fixes(client, root, accepted)
            record: dict[str, Any] = {"round": number, "model": serving,
                                      "session": session_figures(root, since, serving,
                                                                 requests)}
            try:
                with progress:
                    result = await asyncio.to_thread(
                        round_mod.run_round, settings, progress=progress, held_out=prompts,
                        known=known, modes=MODES)
            except TrainingError as exc:
                record.update(status="no round", verdict=str(exc))
                summary["rounds"].append(record)
                print_round(record)
                continue
            report = result.report
            record.update(
                model=result.version, status="promoted" if result.promoted else "rejected",
                verdict=result.verdict, evaluation=known[result.version].as_dict(),
                training={"method": result.choice.method, "reason": result.choice.reason,
                          "examples": report.examples, "steps": report.steps,
                          "train_s": report.train_s, "examples_per_s": report.examples_per_s,
                          "peak_memory_mb": report.peak_memory_mb,
                          "trainable_params": report.trainable_params})
            if result.promoted:
                record["swap_s"] = round(await wait_for_adapter(client, result.version), 2)
                serving = result.version
            summary["rounds"].append(record)
            summary["rounds_run"] = number
            print_round(record)
    finally:
        await stop(client)

    summary["seconds"] = round(time.perf_counter() - started, 1)
    reports = home / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    path = reports / f"demo-{stamp}.html"
    path.write_text(render(summary), encoding="utf-8")
    (reports / f"demo-{stamp}.json").write_text(json.dumps(summary, indent=2, default=str))
    console.print(final_table(summary["rounds"]))
    console.print(f"done in {summary['seconds']:.0f} s; report: {path}")
    return path
