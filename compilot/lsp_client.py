"""The editor's side of an LSP session with `compilot serve`, for the demo and the benchmarks:
start the server as a subprocess, ask for inline completions and code actions, run commands."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient

TIMEOUT = 300.0  # seconds for any one wait on the server


class EditorClient(LanguageClient):
    """A client that keeps what the server publishes, as an editor shows it: the diagnostics
    of each document (compilot flags a broken accepted completion that has a checked fix)."""

    def __init__(self) -> None:
        super().__init__("compilot-client", "1")
        self.diagnostics: dict[str, list[types.Diagnostic]] = {}

        @self.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        def published(params: types.PublishDiagnosticsParams) -> None:
            self.diagnostics[params.uri] = list(params.diagnostics)


async def start_server(options: dict[str, Any] | None = None,
                       env: dict[str, str] | None = None) -> EditorClient:
    """`compilot serve` as a subprocess (this interpreter), initialized as an editor would."""
    client = EditorClient()
    read_code_actions(client)
    await client.start_io(sys.executable, "-m", "compilot", "serve", env=env)
    await asyncio.wait_for(client.initialize_async(types.InitializeParams(
        capabilities=types.ClientCapabilities(), initialization_options=options or {})),
        TIMEOUT)
    client.initialized(types.InitializedParams())
    return client


async def inline(client: LanguageClient, uri: str, line: int, character: int
                 ) -> types.InlineCompletionList:
    """The inline completion at (line, character), as an automatic trigger asks for it."""
    result = await asyncio.wait_for(client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=line, character=character),
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Automatic))), TIMEOUT)
    if isinstance(result, types.InlineCompletionList):
        return result
    return types.InlineCompletionList(items=list(result or []))


def read_code_actions(client: LanguageClient) -> None:
    """Read a code-action result as the spec and the editors do. lsprotocol (2025.0.0) reads
    every item with a ``command`` as a Command, though a CodeAction's is an object (a
    Command's is a string), and so loses every action that carries one."""
    converter = client.protocol._converter

    def hook(value: Any, _: type) -> types.Command | types.CodeAction:
        if isinstance(value.get("command"), str):
            return converter.structure(value, types.Command)
        return converter.structure(value, types.CodeAction)

    converter.register_structure_hook(types.Command | types.CodeAction, hook)


async def code_actions(client: LanguageClient, uri: str, where: types.Range
                       ) -> list[types.CodeAction]:
    """The code actions over ``where``, as an editor asks on a cursor move."""
    result = await asyncio.wait_for(client.text_document_code_action_async(
        types.CodeActionParams(text_document=types.TextDocumentIdentifier(uri=uri),
                               range=where, context=types.CodeActionContext(diagnostics=[]))),
        TIMEOUT)
    return [a for a in result or [] if isinstance(a, types.CodeAction)]


async def command(client: LanguageClient, name: str, *args: Any) -> Any:
    """``workspace/executeCommand``."""
    return await asyncio.wait_for(client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=name, arguments=list(args))), TIMEOUT)


async def stop(client: LanguageClient) -> None:
    """Shut the server down as an editor does when it closes."""
    await asyncio.wait_for(client.shutdown_async(None), TIMEOUT)
    client.exit(None)
    await client.stop()
