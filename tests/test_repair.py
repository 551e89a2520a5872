"""The repair code action: a fix the compiler has checked, for an accepted completion that broke
the build, end to end over LSP with the embedded model and the real compilers (Python and C),
and the check that keeps a fix the compiler rejects from ever being offered."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import LanguageClient

from compilot import settings as settings_mod
from compilot.feedback.blame import blame
from compilot.feedback.compilers import check_compile
from compilot.feedback.tracker import Region
from compilot.lsp_client import code_actions, read_code_actions
from compilot.server.completion import CompletionService
from compilot.server.repair import Repairer, fix_texts, repair_prompt
from tests.lsp_helpers import (
    TIMEOUT,
    command,
    end_of,
    fresh_data_dir,
    initialize,
    inline,
    open_document,
    query,
    server_config,
    settle,
)

ASYNC = pytest.mark.asyncio(loop_scope="module")

DATA_DIR = fresh_data_dir()
# Three tokens cut the model's body short: `max(values` and `(a >`, which do not compile.
OPTIONS = {"completion": {"candidates": 1, "maxTokens": 3}, "context": {"enabled": False},
           "checks": {"background": False}}

PY_HEAD = 'def largest(values):\n    """Return the largest of the values."""\n    return '
PY_TAIL = "\n\n\nprint(largest([1, 2]))\n"
C_HEAD = "#include <stdio.h>\n\nint largest(int a, int b) {\n    return "
C_TAIL = "\n}\n"


@pytest_lsp.fixture(config=server_config(DATA_DIR), scope="module")
async def client(lsp_client: LanguageClient):
    read_code_actions(lsp_client)  # lsprotocol reads a CodeAction with a command as a Command
    await initialize(lsp_client, "visual_studio_code", OPTIONS)
    yield
    await asyncio.wait_for(lsp_client.shutdown_session(), TIMEOUT)


def _offset(text: str, position: types.Position) -> int:
    lines = text.split("\n")
    return sum(len(line) + 1 for line in lines[:position.line]) + position.character


def _applied(text: str, edit: types.TextEdit) -> str:
    return (text[:_offset(text, edit.range.start)] + edit.new_text
            + text[_offset(text, edit.range.end):])


async def _accept_broken(client: LanguageClient, head: str, tail: str, suffix: str,
                         language: str) -> tuple[str, str, str, types.Range]:
    """Open a file, take the model's completion at the end of ``head`` and accept it (as an
    editor does: insert, then run the item's command); (uri, candidate id, document, the
    completion's range). The completion must break the file: that is the premise."""
    uri = open_document(client, head + tail, suffix=suffix, language=language)
    items = await inline(client, uri, end_of(head))
    assert items, "no completion"
    text = items[0].insert_text
    assert isinstance(text, str)
    document = head + text + tail
    assert check_compile(document, language).failed, f"the completion {text!r} compiles"
    at = end_of(head)
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(start=at, end=at), text=text)]))
    assert items[0].command is not None and items[0].command.arguments
    assert await command(client, items[0].command.command, *items[0].command.arguments)
    return uri, items[0].command.arguments[0], document, types.Range(start=at,
                                                                     end=end_of(head + text))


async def _actions(client: LanguageClient, uri: str, where: types.Range
                   ) -> list[types.CodeAction]:
    return await code_actions(client, uri, where)


async def _until_actions(client: LanguageClient, uri: str, where: types.Range
                         ) -> list[types.CodeAction]:
    """Code actions at ``where`` once the fixes are ready (asked as an editor asks, again
    and again; an answer never waits for them)."""
    end = time.monotonic() + TIMEOUT
    while time.monotonic() < end:
        started = time.monotonic()
        actions = await _actions(client, uri, where)
        assert time.monotonic() - started < 5.0, "a code action request waited for work"
        if actions:
            return actions
        await asyncio.sleep(0.5)
    stats = await command(client, "compilot.stats")
    raise AssertionError(f"no fix offered in {TIMEOUT} s: {stats.get('repair')}")


@ASYNC
@pytest.mark.parametrize(("head", "tail", "suffix", "language"), [
    pytest.param(PY_HEAD, PY_TAIL, ".py", "python", id="python"),
    pytest.param(C_HEAD, C_TAIL, ".c", "c", id="c"),
])
async def test_a_broken_accept_gets_a_checked_fix_that_lands_as_a_revision(
        client: LanguageClient, head: str, tail: str, suffix: str, language: str) -> None:
    uri, cid, document, where = await _accept_broken(client, head, tail, suffix, language)
    actions = await _until_actions(client, uri, where)

    # Every action offered is a quick fix whose edit makes the file compile.
    for action in actions:
        assert action.kind == types.CodeActionKind.QuickFix
        assert action.title.startswith("compilot: fix")
        assert action.edit is not None and action.edit.changes is not None
        (edit,) = action.edit.changes[uri]
        assert edit.range == where
        patched = _applied(document, edit)
        assert not check_compile(patched, language).failed, patched
    assert actions[0].is_preferred
    # The editor was told where (a diagnostic of compilot's over the broken completion).
    flagged = client.diagnostics.get(uri, [])
    assert [d.range for d in flagged if d.source == "compilot"] == [where]

    # The user applies the first: the edit, then its command.
    action = actions[0]
    assert action.edit is not None and action.edit.changes is not None
    (edit,) = action.edit.changes[uri]
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=3),
        content_changes=[types.TextDocumentContentChangePartial(range=edit.range,
                                                                text=edit.new_text)]))
    assert action.command is not None
    assert await command(client, action.command.command, *(action.command.arguments or []))
    await settle(client)
    revisions = query(DATA_DIR, "SELECT broken, fixed, status, source FROM revisions "
                      "WHERE candidate_id = ?", (cid,))
    assert [(r["broken"], r["fixed"]) for r in revisions] == [
        (document[_offset(document, where.start):_offset(document, where.end)],
         edit.new_text)]
    assert revisions[0]["source"] in ("fix:model", "fix:candidate")
    # Fixed: no action any more, and compilot's diagnostic is gone.
    assert await _actions(client, uri, where) == []
    assert [d for d in client.diagnostics.get(uri, []) if d.source == "compilot"] == []
    # The file saved now: the monitor does not record the same fix again as the user's.
    client.text_document_did_save(types.DidSaveTextDocumentParams(
        text_document=types.TextDocumentIdentifier(uri=uri)))
    await settle(client)
    assert len(query(DATA_DIR, "SELECT id FROM revisions WHERE candidate_id = ?", (cid,))) == 1


@ASYNC
async def test_applied_fixes_are_counted(client: LanguageClient) -> None:
    stats: dict[str, Any] = await command(client, "compilot.stats")
    repair = stats["repair"]
    assert repair["applied"] == 2 and repair["broken"] >= 2 and repair["repaired"] >= 2
    fixes = query(DATA_DIR, "SELECT count(*) AS n FROM revisions WHERE source LIKE 'fix:%'")
    assert fixes[0]["n"] == 2


def test_a_fix_the_checker_rejects_is_never_offered() -> None:
    # The model is not loaded: the request's other candidates are the only fixes, checked
    # with the real compiler. Of three, one compiles; one does not parse; one parses but uses
    # a name the file does not define (a made-up helper): only the first is offered.
    settings, _ = settings_mod.load({})
    service = CompletionService(replace(settings), None)
    repairer = Repairer(service, settings.checks)
    try:
        head = 'def largest(values):\n    """Return the largest."""\n    return '
        broken, tail = "max(values", "\n"
        after = head + broken + tail
        region = Region("c1", "file:///x.py", "python", len(head), len(head) + len(broken),
                        broken, 0.0)
        blamed = blame(head + tail, after, "python")
        assert blamed.introduced
        repairer.siblings("c1", ("max(values]", "biggest_of(values)", "max(values)"))
        repairer.broken(region, blamed, head + tail, after)
        repairer.wait(60)
        fixes = repairer.fixes("file:///x.py", after)
        assert [(f.text, f.source) for f in fixes] == [("max(values)", "candidate")]
        assert repairer.counters.checked == 3 and repairer.counters.rejected == 2
        # The user changes the broken text: the fix no longer applies.
        assert repairer.fixes("file:///x.py", head + "max(valu" + tail) == []
    finally:
        repairer.close()
        service.close()


def test_the_repair_prompt_shows_the_broken_code_and_the_message() -> None:
    prompt = repair_prompt("int f(void) {\n    return ", "1\n}", "expected ';'", "//")
    assert prompt == ("// This version does not compile:\n// int f(void) {\n//     return 1\n"
                      "// }\n// Error: expected ';'\n// Fixed:\nint f(void) {\n    return ")
    assert fix_texts("a)\nb\nc\n", "x(\ny") == ["a)\nb", "a)\nb\nc", "a)"]
