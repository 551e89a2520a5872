"""Other files in the prompt, end to end: `compilot serve` with the embedded model, files opened
over LSP, the prompt the engine evaluated (its token ids, read back as text) and the store."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import llama_cpp
import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import LanguageClient

from compilot.models import embedded_model_path
from tests.lsp_helpers import (
    TIMEOUT,
    command,
    end_of,
    fresh_data_dir,
    initialize,
    inline,
    query,
    server_config,
    settle,
)

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

DATA_DIR = fresh_data_dir()
WORK = fresh_data_dir()
SECRET = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
HELPERS = f'''GITHUB_TOKEN = "{SECRET}"


def parse_header_line(line):
    """Split one header line into its name and value."""
    name, _, value = line.partition(":")
    return name.strip().lower(), value.strip()
'''
PRIVATE = '''def parse_header_private(line):
    return line.split(":", 1)
'''
MAIN = '''def read_headers(lines):
    """Each header line's name and value, by name."""
    headers = {}
    for line in lines:
        name, value = '''


@pytest_lsp.fixture(config=server_config(DATA_DIR), scope="module")
async def client(lsp_client: LanguageClient):
    # the embedded model has no repository tokens: its chunks go in as comments
    await initialize(lsp_client, "visual_studio_code",
                     {"completion": {"candidates": 1, "maxTokens": 8},
                      "context": {"asComments": True}})
    yield
    await asyncio.wait_for(lsp_client.shutdown_session(), TIMEOUT)


def open_file(client: LanguageClient, path: Path, text: str, language: str = "python") -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=path.as_uri(), language_id=language,
                                             version=1, text=text)))
    return path.as_uri()


def as_text(ids: list[int]) -> str:
    vocab = llama_cpp.Llama(model_path=str(embedded_model_path()), vocab_only=True,
                            verbose=False)
    try:
        return vocab.detokenize(ids).decode("utf-8", errors="replace")
    finally:
        vocab.close()


async def test_an_open_file_is_context_and_its_secret_never_reaches_prompt_or_store(
        client: LanguageClient) -> None:
    helpers = WORK / "pkg" / "helpers.py"
    open_file(client, helpers, HELPERS)
    (WORK / "pkg" / "private").mkdir(parents=True, exist_ok=True)
    (WORK / "pkg" / "private" / ".compilotignore").write_text("*\n")
    open_file(client, WORK / "pkg" / "private" / "keys.py", PRIVATE)
    main = open_file(client, WORK / "pkg" / "main.py", MAIN + "\n")
    await settle(client)  # the files are in the ring
    items = await inline(client, main, end_of(MAIN))
    stats = await command(client, "compilot.stats", {"prompt": True})
    prompt = as_text(stats["last_prompt"])
    assert f"# Compare this snippet from {helpers}:" in prompt
    assert "# def parse_header_line(line):" in prompt
    assert prompt.index("parse_header_line") < prompt.index("def read_headers")
    assert SECRET not in prompt and "GITHUB_TOKEN" in prompt  # redacted, not dropped
    assert "parse_header_private" not in prompt  # .compilotignore'd files are never context
    assert items is not None
    await settle(client)
    rows = query(DATA_DIR, "SELECT context FROM requests WHERE uri = ?", (main,))
    assert rows and rows[-1]["context"] is not None
    recorded = json.loads(rows[-1]["context"])
    assert [c["path"] for c in recorded] == [str(helpers)]
    assert "def parse_header_line(line):" in recorded[0]["text"]
    for file in DATA_DIR.glob("events.db*"):
        assert SECRET.encode() not in file.read_bytes(), file


async def test_the_context_holds_while_typing(client: LanguageClient) -> None:
    main = (WORK / "pkg" / "main.py").as_uri()
    before = await command(client, "compilot.stats", {"prompt": True})
    head = as_text(before["last_prompt"]).split("def read_headers")[0]
    typed = MAIN + "hdr_zq"  # no candidate starts so: the model is asked again
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=main, version=2),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(start=end_of(MAIN), end=end_of(MAIN)), text="hdr_zq")]))
    await inline(client, main, end_of(typed))
    after = await command(client, "compilot.stats", {"prompt": True})
    assert as_text(after["last_prompt"]).split("def read_headers")[0] == head
    # only the typed characters were evaluated: the context and the window before them were
    # the KV cache's
    evaluated = after["engine"]["prompt_tokens"] - before["engine"]["prompt_tokens"]
    assert after["engine"]["generated_tokens"] > before["engine"]["generated_tokens"]
    assert evaluated < 16


FOLD = '''

def fold_header_lines(lines):
    """Join the continuation lines of folded headers."""
    folded = []
    for line in lines:
        name, _, value = line.partition(":")
        folded.append((name, value))
    return folded
'''


async def test_a_file_left_after_edits_is_context_at_once_and_the_next_request_a_hit(
        client: LanguageClient) -> None:
    """Leaving an edited file cuts it into the ring when the next request comes: that request
    waits for the cut, so its context already holds the edit, and the same request again is a
    cache hit (before, the cut landed between the two: the second had other context, a miss
    that evaluated the prompt again)."""
    helpers = (WORK / "pkg" / "helpers.py").as_uri()
    await inline(client, helpers, end_of(HELPERS))  # the user works in helpers.py
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=helpers, version=2),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(start=end_of(HELPERS), end=end_of(HELPERS)), text=FOLD)]))
    main = (WORK / "pkg" / "main.py").as_uri()
    typed = MAIN + "hdr_zq"  # main.py as the test before left it
    await inline(client, main, end_of(typed))
    stats = await command(client, "compilot.stats", {"prompt": True})
    assert "def fold_header_lines(lines):" in as_text(stats["last_prompt"])
    hits = stats["service"]["cache_hits"]
    await inline(client, main, end_of(typed))
    again = await command(client, "compilot.stats", {"prompt": True})
    assert again["service"]["cache_hits"] == hits + 1


async def test_a_language_without_line_comments_gets_no_context(
        client: LanguageClient) -> None:
    """The embedded model has no repository tokens, so other files come as line comments: a
    language with none known gets no context (the chunks would be bare text before its
    window), and its request records none."""
    notes = open_file(client, WORK / "pkg" / "NOTES.md", "# Headers\n\nEach header line ",
                      language="markdown")
    await settle(client)
    await inline(client, notes, types.Position(line=2, character=17))
    stats = await command(client, "compilot.stats", {"prompt": True})
    prompt = as_text(stats["last_prompt"])
    assert "Each header line" in prompt
    assert "Compare this snippet" not in prompt and "parse_header_line" not in prompt
    await settle(client)
    rows = query(DATA_DIR, "SELECT context FROM requests WHERE uri = ?", (notes,))
    assert rows and all(r["context"] is None for r in rows)


async def test_context_off(client: LanguageClient) -> None:
    client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
        settings={"compilot": {"context": {"enabled": False}}}))
    main = open_file(client, WORK / "pkg" / "other_main.py", MAIN + "\n")
    await settle(client)
    await inline(client, main, end_of(MAIN))
    stats = await command(client, "compilot.stats", {"prompt": True})
    assert "Compare this snippet" not in as_text(stats["last_prompt"])
