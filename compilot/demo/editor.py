"""The editor side of a demo: `compilot serve` driven over LSP as an editor and a user would."""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient
from rich.progress import Progress

from compilot import settings as settings_mod
from compilot.feedback.store import Store
from compilot.lsp_client import code_actions, command, inline, start_server
from compilot.paths import DATA_DIR_ENV, DataDir
from compilot.training.corpus import Hole


async def start_demo_server(settings: settings_mod.Settings, root: Path) -> LanguageClient:
    """`compilot serve` with the demo's settings and data dir (and no user config file)."""
    env = {**os.environ, settings_mod.SETTINGS_ENV: json.dumps(settings_mod.as_dict(settings)),
           DATA_DIR_ENV: str(root), "COMPILOT_CONFIG": str(root / "no-config.toml")}
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

    task: Hole
    uri: str
    path: Path
    at: types.Position
    text: str
    candidate: str


async def session(client: LanguageClient, tasks: list[Hole], workdir: Path, progress: Progress
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
        arguments = list(top.command.arguments or []) if top and top.command else []
        if top is not None and top.command is not None and arguments \
                and str(top.insert_text).strip():
            text = str(top.insert_text)
            _edit(client, uri, 2, at, at, text)
            await command(client, top.command.command, *arguments)
            accepted.append(Opened(task, uri, path, at, text, str(arguments[0])))
        progress.advance(bar)
    return accepted, len(tasks)


def broken(root: Path, candidate: str) -> bool:
    """Whether the server's checks blamed the accepted completion for an error."""
    store = Store.in_dir(DataDir(root))
    try:
        rows = store.query("SELECT max(introduced) AS bad FROM checks WHERE candidate_id = ?",
                           (candidate,))
    finally:
        store.close()
    return bool(rows and rows[0]["bad"])


async def repairs_done(client: LanguageClient, timeout: float = 300.0) -> None:
    """Wait until the server's repairs of broken accepted completions have ended."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        repair = (await command(client, "compilot.stats")).get("repair")
        if not repair or repair.get("pending", 0) <= 0:
            return
        await asyncio.sleep(0.5)


async def play_fixes(client: LanguageClient, root: Path, accepted: list[Opened]
                     ) -> dict[str, int]:
    """Where an accepted completion broke the code, see whether the server offers a checked
    fix ("compilot: fix", counted, not applied), then edit the reference body in and save, as
    the user would; the server turns (broken, fixed) into a revision. Returns the broken
    accepts, those with a fix offered, and the user's fixes played."""
    await command(client, "compilot.settle")
    await repairs_done(client)
    fixed = found = 0
    for item in accepted:
        if broken(root, item.candidate):
            where = types.Range(start=item.at, end=end_position(item.at, item.text))
            actions = await code_actions(client, item.uri, where)
            found += any(a.title.startswith("compilot: fix") for a in actions)
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
    return {"broken": fixed, "fix_offered": found}


def session_figures(root: Path, since: float, served_by: str, requests: int) -> dict[str, Any]:
    """Acceptance and the parse / compile rates of the accepted completions of one round."""
    store = Store.in_dir(DataDir(root))
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
