"""The server stays up and says what is wrong when its model cannot be loaded."""

from __future__ import annotations

import asyncio

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import LanguageClient

from tests.lsp_helpers import (
    TIMEOUT,
    command,
    fresh_data_dir,
    initialize,
    inline,
    open_document,
    server_config,
)

pytestmark = pytest.mark.asyncio

DATA_DIR = fresh_data_dir()
MISSING = DATA_DIR / "missing.gguf"
NOT_GGUF = DATA_DIR / "not-a-model.gguf"
NOT_GGUF.write_bytes(b"\x00\x01binary junk" * 100)
TRUNCATED = DATA_DIR / "truncated.gguf"
TRUNCATED.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 64)


@pytest_lsp.fixture(config=server_config(DATA_DIR),
                    params=[MISSING, NOT_GGUF, TRUNCATED], ids=["missing", "not-gguf", "truncated"])
async def broken(lsp_client: LanguageClient, request: pytest.FixtureRequest):
    lsp_client.model_path = request.param  # type: ignore[attr-defined]
    await initialize(lsp_client, "visual_studio_code", {"model": {"path": str(request.param)}})
    yield
    await asyncio.wait_for(lsp_client.shutdown_session(), TIMEOUT)


async def test_bad_model_is_reported_and_server_lives(broken: LanguageClient) -> None:
    uri = open_document(broken, "def f():\n    ")
    items = await inline(broken, uri, types.Position(line=1, character=4))
    assert items == []
    for _ in range(200):
        if broken.messages:
            break
        await asyncio.sleep(0.05)
    errors = [m for m in broken.messages if m.type == types.MessageType.Error]
    assert len(errors) == 1, broken.messages
    assert str(broken.model_path) in errors[0].message  # type: ignore[attr-defined]
    # Still answering, and once only.
    assert await inline(broken, uri, types.Position(line=1, character=4)) == []
    stats = await command(broken, "compilot.stats")
    assert str(broken.model_path) in stats["error"]  # type: ignore[attr-defined]
    assert len([m for m in broken.messages if m.type == types.MessageType.Error]) == 1
