"""`compilot demo`: a scripted editor session against `compilot serve` over LSP.

It opens real standard-library files with one function body removed, asks for an inline
completion where the body goes, accepts the top item, then shows the cache and typing through
a suggestion. Everything goes through the real server process, model and event store.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from lsprotocol import types
from pygls.lsp.client import LanguageClient
from rich.console import Console
from rich.table import Table

from compilot.training.corpus import stdlib_tasks

console = Console()


async def start_server(options: dict | None = None, env: dict | None = None) -> LanguageClient:
    """`compilot serve` as a subprocess, initialized as an editor would."""
    client = LanguageClient("compilot-demo", "1")
    await client.start_io(sys.executable, "-m", "compilot", "serve", env=env)
    await client.initialize_async(types.InitializeParams(
        capabilities=types.ClientCapabilities(),
        initialization_options=options or {},
    ))
    client.initialized(types.InitializedParams())
    return client


async def inline(client: LanguageClient, uri: str, line: int, character: int
                 ) -> types.InlineCompletionList:
    result = await client.text_document_inline_completion_async(types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri),
        position=types.Position(line=line, character=character),
        context=types.InlineCompletionContext(
            trigger_kind=types.InlineCompletionTriggerKind.Automatic),
    ))
    if isinstance(result, list):
        return types.InlineCompletionList(items=result)
    return result or types.InlineCompletionList(items=[])


async def run_demo(*, size: int, seed: int, max_tokens: int) -> None:
    tasks = stdlib_tasks(size, seed=seed)
    with tempfile.TemporaryDirectory(prefix="compilot-demo-") as workdir:
        console.print(f"[bold]compilot demo[/]: {len(tasks)} functions from the standard "
                      "library, embedded SmolLM2-135M-Instruct Q4_1, over LSP")
        started = time.perf_counter()
        client = await start_server({"completion": {"maxTokens": max_tokens}})
        table = Table(title="inline completions at function bodies")
        for column in ("function", "ms", "items", "top item (first line)"):
            table.add_column(column)
        latencies: list[float] = []
        accepted = 0
        try:
            for number, task in enumerate(tasks):
                path = Path(workdir) / f"{number:02d}_{Path(task.path).name}"
                path.write_text(task.document, encoding="utf-8")
                uri = path.as_uri()
                client.text_document_did_open(types.DidOpenTextDocumentParams(
                    text_document=types.TextDocumentItem(uri=uri, language_id="python",
                                                         version=1, text=task.document)))
                line, character = task.cursor
                t0 = time.perf_counter()
                result = await inline(client, uri, line, character)
                ms = (time.perf_counter() - t0) * 1000
                latencies.append(ms)
                top = result.items[0] if result.items else None
                text = str(top.insert_text) if top else ""
                table.add_row(task.name, f"{ms:.0f}", str(len(result.items)),
                              text.strip().split("\n")[0][:60])
                if top is not None and top.command is not None:
                    # As an editor does: insert the item, then run its command.
                    at = types.Position(line=line, character=character)
                    client.text_document_did_change(types.DidChangeTextDocumentParams(
                        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
                        content_changes=[types.TextDocumentContentChangePartial(
                            range=types.Range(start=at, end=at), text=text)]))
                    await client.workspace_execute_command_async(types.ExecuteCommandParams(
                        command=top.command.command, arguments=top.command.arguments))
                    accepted += 1
            console.print(table)

            # The first file again, as a new document: the same window is answered from the
            # LRU cache, without the model.
            task = tasks[0]
            uri = (Path(workdir) / "again.py").as_uri()
            client.text_document_did_open(types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1,
                                                     text=task.document)))
            line, character = task.cursor
            cached = []
            for _ in range(5):
                t0 = time.perf_counter()
                await inline(client, uri, line, character)
                cached.append((time.perf_counter() - t0) * 1000)
            await client.workspace_execute_command_async(types.ExecuteCommandParams(
                command="compilot.settle", arguments=[]))  # the compile checks of the accepts
            stats = await client.workspace_execute_command_async(types.ExecuteCommandParams(
                command="compilot.stats", arguments=[]))
        finally:
            await client.shutdown_async(None)
            client.exit(None)
            await client.stop()
        console.print(f"model round trips: p50 {statistics.median(latencies):.0f} ms, "
                      f"max {max(latencies):.0f} ms; cache hits: p50 "
                      f"{statistics.median(cached):.1f} ms")
        console.print(f"accepted {accepted} completions; event store: {stats.get('store')}")
        console.print(f"engine: {stats.get('engine')}")
        console.print(f"done in {time.perf_counter() - started:.1f}s")
