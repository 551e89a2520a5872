"""Helpers shared by the end-to-end LSP tests: the server command and a few client calls."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
import tempfile
from itertools import count
from pathlib import Path
from typing import Any

from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

SERVER = [sys.executable, "-m", "compilot", "serve"]
CLIENTS = ["visual_studio_code", "neovim"]
TIMEOUT = 120  # seconds for any single wait on the server

_docs = count()


def server_config(data_dir: Path) -> ClientServerConfig:
    """`compilot serve` with its own data dir and no user config file."""
    env = {**os.environ, "COMPILOT_DATA_DIR": str(data_dir),
           "COMPILOT_CONFIG": str(data_dir / "no-config.toml")}
    return ClientServerConfig(server_command=SERVER, server_env=env)


def fresh_data_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="compilot-test-"))


async def initialize(client: LanguageClient, client_name: str,
                     options: dict[str, Any] | None = None) -> None:
    await asyncio.wait_for(client.initialize_session(types.InitializeParams(
        capabilities=client_capabilities(client_name),
        initialization_options=options or {},
    )), TIMEOUT)


def open_document(client: LanguageClient, text: str, *, suffix: str = ".py",
                  language: str = "python") -> str:
    """Open a new in-memory document; returns its uri."""
    uri = f"file:///tmp/compilot-e2e/doc{next(_docs)}{suffix}"
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id=language, version=1,
                                             text=text)))
    return uri


def end_of(text: str) -> types.Position:
    lines = text.split("\n")
    return types.Position(line=len(lines) - 1, character=len(lines[-1]))


def inline_params(uri: str, position: types.Position) -> types.InlineCompletionParams:
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), position=position,
        context=types.InlineCompletionContext(
            trigger_kind=types.InlineCompletionTriggerKind.Automatic))


async def inline(client: LanguageClient, uri: str, position: types.Position
                 ) -> list[types.InlineCompletionItem]:
    result = await asyncio.wait_for(
        client.text_document_inline_completion_async(inline_params(uri, position)), TIMEOUT)
    if result is None:
        return []
    return list(result if isinstance(result, list) else result.items)


async def command(client: LanguageClient, name: str, *args: Any) -> Any:
    return await asyncio.wait_for(client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=name, arguments=list(args))), TIMEOUT)


async def settle(client: LanguageClient) -> None:
    """Wait until the server's queued checks and writes are done (before reading its store)."""
    assert await command(client, "compilot.settle") is True


def query(data_dir: Path, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
    """Read the server's event store from the test process (WAL allows it)."""
    db = sqlite3.connect(data_dir / "events.db")
    db.row_factory = sqlite3.Row
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()
