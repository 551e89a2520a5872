"""End to end: `compilot serve` as a subprocess with the embedded model, driven over LSP with
VS Code's and Neovim's client capabilities."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import LanguageClient

from compilot.feedback.records import Candidate, Origin, Request, Source, identified
from compilot.feedback.store import Store
from tests.lsp_helpers import (
    CLIENTS,
    TIMEOUT,
    command,
    end_of,
    fresh_data_dir,
    initialize,
    inline,
    inline_params,
    open_document,
    query,
    server_config,
    settle,
)

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

DATA_DIR = fresh_data_dir()
# Whole suggestions (predictMs 0): tests here read the model's text (a fence it writes after
# the body), which a decoding time limit would cut at the first newline on a loaded machine.
OPTIONS = {"completion": {"candidates": 2, "maxTokens": 32, "predictMs": 0}}

ADD = 'def add(a, b):\n    """Return the sum of a and b."""\n    '
TAIL = "\n\n\nprint(add(1, 2))\n"


@pytest_lsp.fixture(config=server_config(DATA_DIR), params=CLIENTS, scope="module")
async def client(lsp_client: LanguageClient, request: pytest.FixtureRequest):
    await initialize(lsp_client, request.param, OPTIONS)
    yield
    await asyncio.wait_for(lsp_client.shutdown_session(), TIMEOUT)


async def test_inline_completion_is_ranked_and_parses(client: LanguageClient) -> None:
    uri = open_document(client, ADD + TAIL)
    items = await inline(client, uri, end_of(ADD))
    assert items, "no inline completion"
    for item in items:
        assert isinstance(item.insert_text, str) and item.insert_text.strip()
        assert item.command is not None and item.command.command == "compilot.accepted"
        assert item.range == types.Range(start=end_of(ADD), end=end_of(ADD))
    # The top item spliced into the file gives valid Python: cut and ranked, not raw.
    ast.parse(ADD + items[0].insert_text + TAIL)
    await settle(client)
    rows = query(DATA_DIR, "SELECT c.parsed, c.rank FROM candidates c JOIN requests r "
                 "ON r.id = c.request_id WHERE r.uri = ? AND c.shown ORDER BY c.rank", (uri,))
    assert [r["parsed"] for r in rows][0] == 1
    assert len(rows) == len(items)
    assert items[0].command.arguments[1]["parsed"] is True


async def test_accept_is_recorded(client: LanguageClient) -> None:
    text = 'def greet(name):\n    """Return a greeting for name."""\n    return '
    uri = open_document(client, text + "\n")
    items = await inline(client, uri, end_of(text))
    assert items
    top = items[0]
    assert top.command is not None
    assert await command(client, top.command.command, *top.command.arguments) is True
    cid = top.command.arguments[0]
    await settle(client)
    events = query(DATA_DIR, "SELECT kind FROM events WHERE candidate_id = ?", (cid,))
    assert [e["kind"] for e in events] == ["accepted"]
    await settle(client)
    request = query(DATA_DIR, "SELECT r.* FROM requests r JOIN candidates c "
                    "ON c.request_id = r.id WHERE c.id = ?", (cid,))[0]
    assert (request["uri"], request["language"], request["adapter"]) == (uri, "python", "base")
    assert request["prefix"].endswith("return ") and request["source"] == "model"
    # A rejection and an unknown id.
    if len(items) > 1:
        second = items[1].command.arguments[0]
        assert await command(client, "compilot.rejected", second) is True
    assert await command(client, "compilot.accepted", "no-such-id") is False


async def test_copilot_notifications_are_recorded(client: LanguageClient) -> None:
    text = 'def double(x):\n    """Return twice x."""\n    return '
    uri = open_document(client, text + "\n")
    items = await inline(client, uri, end_of(text))
    assert items
    item = client.protocol._converter.unstructure(items[0])
    client.protocol.notify("textDocument/didShowCompletion", {"item": item})
    client.protocol.notify("textDocument/didPartiallyAcceptCompletion",
                           {"item": item, "acceptedLength": 2})
    cid = items[0].command.arguments[0]
    for _ in range(100):
        await settle(client)
        kinds = [e["kind"] for e in query(
            DATA_DIR, "SELECT kind FROM events WHERE candidate_id = ? ORDER BY id", (cid,))]
        if len(kinds) == 2:
            break
        await asyncio.sleep(0.05)
    assert kinds == ["shown", "partial"]
    await settle(client)
    length = query(DATA_DIR, "SELECT accepted_length FROM events WHERE kind = 'partial' "
                   "AND candidate_id = ?", (cid,))[0][0]
    assert length == 2
    # Copilot's notification says nothing of how the client knows: NULL.
    inferred = query(DATA_DIR, "SELECT inferred FROM events WHERE kind = 'shown' "
                     "AND candidate_id = ?", (cid,))[0][0]
    assert inferred is None


async def test_a_shown_the_client_inferred_is_recorded_as_inferred(client: LanguageClient
                                                                   ) -> None:
    # VS Code's extension cannot know that VS Code displayed an item: it says so.
    text = 'def half(x):\n    """Return half of x."""\n    return '
    uri = open_document(client, text + "\n")
    items = await inline(client, uri, end_of(text))
    assert items
    item = client.protocol._converter.unstructure(items[0])
    client.protocol.notify("textDocument/didShowCompletion", {"item": item, "inferred": True})
    cid = items[0].command.arguments[0]
    rows: list = []
    for _ in range(100):
        await settle(client)
        rows = query(DATA_DIR, "SELECT kind, inferred FROM events WHERE candidate_id = ?",
                     (cid,))
        if rows:
            break
        await asyncio.sleep(0.05)
    assert [tuple(r) for r in rows] == [("shown", 1)]


async def test_burst_of_typing_computes_only_the_last(client: LanguageClient) -> None:
    text = 'def product(a, b):\n    """Return a times b."""\n    '
    uri = open_document(client, text + "\n")
    before = await command(client, "compilot.stats")
    typed = "return a"
    futures = []
    position = end_of(text)
    for version, char in enumerate(typed[:10], start=2):
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[types.TextDocumentContentChangePartial(
                range=types.Range(start=position, end=position), text=char)]))
        position = types.Position(line=position.line, character=position.character + 1)
        futures.append(client.text_document_inline_completion(inline_params(uri, position)))
    results = [await asyncio.wait_for(asyncio.wrap_future(f), TIMEOUT) for f in futures]
    after = await command(client, "compilot.stats")
    assert len(futures) == len(typed)
    computed = after["engine"]["generations"] - before["engine"]["generations"]
    dropped = (after["scheduler"]["superseded"] - before["scheduler"]["superseded"]) + (
        after["engine"]["aborted"] - before["engine"]["aborted"])
    assert computed == 1, after
    assert dropped == len(typed) - 1, after
    assert all(not r.items for r in results[:-1])
    assert results[-1].items, "the last request of the burst got no completion"


async def test_cache_and_typing_through(client: LanguageClient) -> None:
    text = 'def halve(x):\n    """Return half of x."""\n    '
    uri = open_document(client, text + "\n")
    first = await inline(client, uri, end_of(text))
    assert first
    again = await inline(client, uri, end_of(text))
    assert [i.insert_text for i in again] == [i.insert_text for i in first]
    stats = await command(client, "compilot.stats")
    generations = stats["engine"]["generations"]
    assert stats["service"]["cache_hits"] >= 1

    # Type the first two characters of the top suggestion: answered with its remainder.
    top = first[0].insert_text
    typed = top[:2]
    position = end_of(text)
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(start=position, end=position), text=typed)]))
    moved = types.Position(line=position.line, character=position.character + len(typed))
    rest = await inline(client, uri, moved)
    assert rest and rest[0].insert_text == top[2:]
    stats = await command(client, "compilot.stats")
    assert stats["engine"]["generations"] == generations
    assert stats["service"]["typed_through"] >= 1


async def test_suggestions_extend_the_suggest_widgets_selected_entry(
        client: LanguageClient) -> None:
    """VS Code shows, while its suggest widget is open, only items that extend the selected
    entry over the same range: the server completes as if the entry were accepted."""
    text = 'def double(x):\n    """Return twice x."""\n    ret'
    uri = open_document(client, text + "\n")
    cursor = end_of(text)
    word = types.Range(start=types.Position(line=cursor.line, character=cursor.character - 3),
                       end=cursor)
    params = inline_params(uri, cursor)
    params.context.selected_completion_info = types.SelectedCompletionInfo(range=word,
                                                                           text="return")
    result = await asyncio.wait_for(client.text_document_inline_completion_async(params),
                                    TIMEOUT)
    assert result is not None
    items = list(result if isinstance(result, list) else result.items)
    assert items, "no suggestion while the suggest widget is open"
    for item in items:
        assert item.range == word
        assert isinstance(item.insert_text, str) and item.insert_text.startswith("return")
        assert item.command is not None
    # the model was asked with the entry accepted, and the request is recorded so
    ast.parse(text[:-3] + items[0].insert_text + "\n")
    await settle(client)
    request = query(DATA_DIR, "SELECT r.* FROM requests r JOIN candidates c ON c.request_id "
                    "= r.id WHERE c.id = ?", (items[0].command.arguments[0],))[0]
    assert request["prefix"].endswith("    return")
    assert (request["line"], request["character"]) == (cursor.line, cursor.character + 3)

    # an entry that does not reach the cursor cannot be extended there: nothing is asked
    elsewhere = types.Range(start=types.Position(line=0, character=4),
                            end=types.Position(line=0, character=10))
    params.context.selected_completion_info = types.SelectedCompletionInfo(range=elsewhere,
                                                                           text="triple")
    before = (await command(client, "compilot.stats"))["service"]["requests"]
    result = await asyncio.wait_for(client.text_document_inline_completion_async(params),
                                    TIMEOUT)
    assert result is not None and not (result if isinstance(result, list) else result.items)
    assert (await command(client, "compilot.stats"))["service"]["requests"] == before


async def test_a_closed_document_leaves_no_kept_tree(client: LanguageClient) -> None:
    text = 'def quarter(x):\n    """Return a quarter of x."""\n    '
    uri = open_document(client, text + "\n")
    assert await inline(client, uri, end_of(text))
    assert uri in (await command(client, "compilot.stats"))["trees"]
    client.text_document_did_close(types.DidCloseTextDocumentParams(
        text_document=types.TextDocumentIdentifier(uri=uri)))
    assert uri not in (await command(client, "compilot.stats"))["trees"]


async def test_fence_ends_the_completion(client: LanguageClient) -> None:
    # The embedded model answers this with ` n % 2 == 0`, then closes a markdown fence
    # and explains itself in prose.
    text = 'def is_even(n):\n    """Return True if n is even."""\n    return '
    uri = open_document(client, text + "\n")
    items = await inline(client, uri, end_of(text))
    assert items
    await settle(client)
    rows = query(DATA_DIR, "SELECT c.text, c.raw FROM candidates c JOIN requests r "
                 "ON r.id = c.request_id WHERE r.uri = ? ORDER BY c.rank", (uri,))
    fenced = [r for r in rows if "```" in r["raw"]]
    assert fenced, [r["raw"] for r in rows]
    for row in fenced:
        assert "```" not in row["text"]
        assert row["raw"].lstrip().startswith(row["text"].lstrip())
    assert all("```" not in i.insert_text and "\n" not in i.insert_text for i in items)


async def test_bad_requests_get_empty_answers(client: LanguageClient) -> None:
    unopened = "file:///tmp/compilot-e2e/never-opened.py"
    assert await inline(client, unopened, types.Position(line=0, character=0)) == []
    uri = open_document(client, "x = 1\n")
    assert await inline(client, uri, types.Position(line=50, character=0)) == []
    # Unknown language: offered, unranked by syntax.
    other = open_document(client, "Dear diary, today I ", suffix=".txt", language="plaintext")
    items = await inline(client, other, types.Position(line=0, character=20))
    assert isinstance(items, list)
    stats = await command(client, "compilot.stats")
    assert stats["error"] is None


async def test_completion_items_for_clients_without_inline(client: LanguageClient) -> None:
    text = 'def triple(x):\n    """Return three times x."""\n    return tr'
    uri = open_document(client, text + "\n")
    result = await asyncio.wait_for(client.text_document_completion_async(
        types.CompletionParams(text_document=types.TextDocumentIdentifier(uri=uri),
                               position=end_of(text))), TIMEOUT)
    assert result is not None and result.items
    item = result.items[0]
    assert item.text_edit is not None and item.text_edit.new_text.startswith("tr")
    assert item.text_edit.range.start.character == end_of(text).character - 2
    assert item.command is not None and item.command.command == "compilot.accepted"


async def test_huge_and_binary_documents_stay_bounded(client: LanguageClient) -> None:
    # 10 MB of Python, then binary-looking text (NULs, escapes, replacement characters).
    body = "".join(f"def f{i}(x):\n    return x + {i}\n\n" for i in range(330_000))
    huge = body[:10_000_000] + "\n\ndef last(a):\n    "
    assert len(huge) >= 10_000_000
    junk = "\x00\x01\x1b[0m\ufffd\ufffd" * 2000 + "\nx = "
    huge_uri = open_document(client, huge)
    junk_uri = open_document(client, junk, suffix=".bin", language="plaintext")
    small_uri = open_document(client, ADD + TAIL)
    results = await asyncio.gather(
        inline(client, huge_uri, end_of(huge)),
        inline(client, junk_uri, end_of(junk)),
        inline(client, small_uri, end_of(ADD)),
    )
    assert all(isinstance(r, list) for r in results)
    assert results[2], "a small document got nothing while a huge one was open"
    await settle(client)
    rows = query(DATA_DIR, "SELECT length(prefix) AS n FROM requests WHERE uri = ?",
                 (huge_uri,))
    assert rows and rows[0]["n"] <= 3000


async def test_cancel_request_stops_the_work(client: LanguageClient) -> None:
    # A long prompt (about 2 s to evaluate here) so that the cancel arrives mid-work.
    context = "".join(f"def f{i}(x):\n    return x * {i} + {i * 7} - {i % 5}\n\n"
                      for i in range(80))
    text = context + 'def cube(x):\n    """Return x to the third power."""\n    '
    uri = open_document(client, text + "\n")
    await inline(client, open_document(client, "x = 1\n"), end_of("x = 1"))  # model loaded
    before = await command(client, "compilot.stats")
    future = client.protocol.send_request(types.TEXT_DOCUMENT_INLINE_COMPLETION,
                                          inline_params(uri, end_of(text)), msg_id="cancel-me")
    await asyncio.sleep(0.3)
    client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id="cancel-me"))
    with pytest.raises(Exception, match="cancel"):
        await asyncio.wait_for(asyncio.wrap_future(future), TIMEOUT)
    for _ in range(100):  # the worker stops at its next check (between prompt batches)
        after = await command(client, "compilot.stats")
        if after["engine"]["aborted"] > before["engine"]["aborted"]:
            break
        await asyncio.sleep(0.1)
    assert after["service"]["cancelled"] == before["service"]["cancelled"] + 1
    assert after["engine"]["aborted"] == before["engine"]["aborted"] + 1
    assert after["engine"]["generations"] == before["engine"]["generations"]


async def test_did_change_configuration_applies(client: LanguageClient) -> None:
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"compilot": {"completion": {"candidates": 1, "maxTokens": 8}}}))
    text = 'def negate(x):\n    """Return minus x."""\n    '
    uri = open_document(client, text + "\n")
    await inline(client, uri, end_of(text))
    await settle(client)
    rows = query(DATA_DIR, "SELECT c.tokens FROM candidates c JOIN requests r "
                 "ON r.id = c.request_id WHERE r.uri = ?", (uri,))
    assert len(rows) == 1 and rows[0]["tokens"] <= 8
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"compilot": {"completion": {"candidates": 2, "maxTokens": 32}}}))


async def test_status_counts_today_and_partial_accepts(client: LanguageClient) -> None:
    before = await command(client, "compilot.status")
    assert before["adapter"] == "base" and before["error"] is None
    assert before["model"].endswith(".gguf") and before["report"] is None
    text = 'def double(x):\n    """Return twice x."""\n    '
    uri = open_document(client, text + "\n")
    items = await inline(client, uri, end_of(text))
    assert items
    first = items[0].command.arguments[0]
    assert await command(client, "compilot.partiallyAccepted", first,
                         {"length": 3, "kind": "word"}) is True
    # As an editor does: the item goes into the document, then its command runs.
    at = end_of(text)
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(start=at, end=at), text=items[0].insert_text)]))
    assert await command(client, "compilot.accepted", first) is True
    await command(client, "compilot.settle")
    # `compilot bootstrap` writing beside the server: its requests are not today's editing.
    bootstrap = Store(DATA_DIR / "events.db")
    bootstrap.record_request(
        Request(uri="file:///r/a.py", language="python", line=0, character=0, prefix="x",
                suffix="", latency_ms=1.0, model="m", adapter="base", source=Source.MODEL,
                origin=Origin.BOOTSTRAP),
        identified([Candidate(text="y", raw="y", tokens=1, logprob=-1.0)]))
    bootstrap.close()
    after = await command(client, "compilot.status")
    today, then = after["today"], before["today"]
    assert today["shown"] == then["shown"] + len(items)
    assert today["accepted"] == then["accepted"] + 1
    assert today["checked"] == then["checked"] + 1
    assert 0.0 < today["acceptRate"] <= 1.0
    await settle(client)
    partial = query(DATA_DIR, "SELECT accepted_length FROM events WHERE candidate_id = ? "
                    "AND kind = 'partial'", (first,))
    assert [r["accepted_length"] for r in partial] == [3]
    assert await command(client, "compilot.partiallyAccepted", "no-such-id", {}) is False


async def test_train_now_starts_one_round_at_a_time(client: LanguageClient) -> None:
    from compilot import round_lock
    from compilot.paths import DataDir

    # While some round holds the lock, a second is refused with the reason.
    with round_lock.round_locked(DataDir(DATA_DIR)):
        assert (await command(client, "compilot.status"))["training"]["running"] is True
        refused = await command(client, "compilot.train")
        assert refused["started"] is False and "running already" in refused["message"]
    # Now it starts: a real `compilot train` child with the server's settings, which ask for
    # more examples than the store holds; the child says so in the trainer's log.
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"compilot": {"training": {"minExamples": 100000}}}))
    log = DATA_DIR / "trainer.log"
    before = log.stat().st_size if log.exists() else 0
    started = await command(client, "compilot.train")
    assert started["started"] is True, started
    assert Path(started["log"]) == log

    def written() -> str:  # what this round's child wrote, rich's line wrapping undone
        with open(log, "rb") as f:
            f.seek(before)
            return " ".join(f.read().decode(errors="replace").split())

    for _ in range(int(TIMEOUT / 0.5)):
        if "not enough data" in written():
            break
        await asyncio.sleep(0.5)
    assert "training.min_examples = 100000" in written()
