"""The fill-in-the-middle path end to end: `compilot serve` on a tiny FIM model.

No FIM model can be downloaded here; tests/fim_model.py writes a random-weight llama GGUF with
deepseek-coder's vocabulary (FIM tokens included) whose greedy output is always " x".
"""

from __future__ import annotations

import asyncio

import llama_cpp
import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import LanguageClient

from tests.fim_model import write_fim_model
from tests.lsp_helpers import (
    CLIENTS,
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

pytestmark = pytest.mark.asyncio(loop_scope="module")

DATA_DIR = fresh_data_dir()
MODEL = write_fim_model(DATA_DIR / "tiny-fim.gguf", favourite=" x")

PREFIX = "def f(a):\n    return"
SUFFIX = "\n\n\nprint(f(1))\n"


@pytest_lsp.fixture(config=server_config(DATA_DIR), params=CLIENTS, scope="module")
async def client(lsp_client: LanguageClient, request: pytest.FixtureRequest):
    await initialize(lsp_client, request.param, {
        "model": {"path": str(MODEL), "nCtx": 512},
        "completion": {"candidates": 1, "maxTokens": 4},
        # the exact FIM layout, without other open files' chunks (tests/test_context_lsp.py)
        "context": {"enabled": False},
    })
    yield
    await asyncio.wait_for(lsp_client.shutdown_session(), TIMEOUT)


def tokenize(text: str) -> list[int]:
    vocab = llama_cpp.Llama(model_path=str(MODEL), vocab_only=True, verbose=False)
    return vocab.tokenize(text.encode(), add_bos=False, special=False)


async def test_fim_prompt_layout_and_completion(client: LanguageClient) -> None:
    uri = open_document(client, PREFIX + SUFFIX)
    items = await inline(client, uri, end_of(PREFIX))
    stats = await command(client, "compilot.stats", {"prompt": True})
    assert stats["fim"] is True
    fim = stats["fim_tokens"]
    # <BOS> <PRE> prefix <SUF> suffix <MID>: built from the model's own FIM ids, never token 0.
    expected = [fim["prefix"], *tokenize(PREFIX), fim["suffix"], *tokenize(SUFFIX),
                 fim["middle"]]
    assert stats["last_prompt"][-len(expected):] == expected
    assert stats["last_prompt"][: -len(expected)] in ([], [32013])  # BOS when the model adds it
    assert items and items[0].insert_text.startswith(" x")


async def test_a_users_fix_of_a_broken_completion_is_a_revision(client: LanguageClient
                                                                 ) -> None:
    # The tiny model always writes " x x x x": after `return` that is a syntax error.
    key = "AKIA" + "Q7ZB4XK2MN5PLR8T"
    head = f'AWS_KEY = "{key}"\n\n\ndef f(a):\n    return'
    tail = "\n\n\nprint(f(1))\n"
    uri = open_document(client, head + tail)
    items = await inline(client, uri, end_of(head))
    assert items
    broken = items[0].insert_text
    assert broken.startswith(" x x")
    # The editor inserts the item, then runs its command.
    at = end_of(head)
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(start=at, end=at), text=broken)]))
    assert await command(client, items[0].command.command, *items[0].command.arguments)
    await command(client, "compilot.settle")
    cid = items[0].command.arguments[0]
    await settle(client)
    checks = query(DATA_DIR, "SELECT stage, status, introduced, trigger FROM checks "
                   "WHERE candidate_id = ? ORDER BY id", (cid,))
    assert [(c["stage"], c["status"], c["introduced"]) for c in checks] == [
        ("syntax", "syntax", 1), ("compile", "syntax", 1)]

    # The user repairs it: " x x x x" becomes " a", then saves.
    end = types.Position(line=at.line, character=at.character + len(broken))
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=3),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(start=at, end=end), text=" a")]))
    client.text_document_did_save(types.DidSaveTextDocumentParams(
        text_document=types.TextDocumentIdentifier(uri=uri)))
    await command(client, "compilot.settle")
    await settle(client)
    revisions = query(DATA_DIR, "SELECT broken, fixed, status FROM revisions "
                      "WHERE candidate_id = ?", (cid,))
    assert [(r["broken"], r["fixed"], r["status"]) for r in revisions] == [
        (broken, " a", "ok")]
    await settle(client)
    saved = query(DATA_DIR, "SELECT at, share FROM survival WHERE candidate_id = ?", (cid,))
    assert [s["at"] for s in saved] == ["save"] and saved[0]["share"] < 0.5

    # The fake key typed into the file never reached the database.
    for name in ("events.db", "events.db-wal"):
        path = DATA_DIR / name
        if path.exists():
            assert key.encode() not in path.read_bytes()
