"""A running server swaps to a promoted adapter between requests; completions carry its
version; requests made during the swap succeed."""

from __future__ import annotations

import asyncio

import pytest
import pytest_lsp
from pytest_lsp import LanguageClient

from compilot.models import embedded_model_path
from compilot.paths import DataDir
from compilot.training.registry import AdapterInfo, Registry
from tests.adapters import random_adapter
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

pytestmark = pytest.mark.asyncio

DATA_DIR = fresh_data_dir()
TEXT = 'def add(a, b):\n    """Return the sum of a and b."""\n    '


@pytest_lsp.fixture(config=server_config(DATA_DIR))
async def client(lsp_client: LanguageClient):
    await initialize(lsp_client, "visual_studio_code",
                     {"completion": {"candidates": 1, "maxTokens": 12}})
    yield
    await asyncio.wait_for(lsp_client.shutdown_session(), TIMEOUT)


async def test_promoted_adapter_is_swapped_in_live(client: LanguageClient) -> None:
    registry = Registry(DataDir(DATA_DIR).adapters)
    staging = registry.staging()
    random_adapter(embedded_model_path(), staging)
    registry.add(staging, AdapterInfo(version="v1", method="test", parent="base"))

    first = open_document(client, TEXT + "\n")
    assert await inline(client, first, end_of(TEXT))
    assert (await command(client, "compilot.stats"))["adapter"] == "base"

    registry.promote("v1")
    during = []
    for _ in range(200):  # keep asking while the server notices and swaps
        uri = open_document(client, TEXT + "\n")
        during.append(await inline(client, uri, end_of(TEXT)))
        if (await command(client, "compilot.stats"))["adapter"] == "v1":
            break
        await asyncio.sleep(0.05)
    assert (await command(client, "compilot.stats"))["adapter"] == "v1"
    assert all(isinstance(items, list) for items in during)

    after = open_document(client, TEXT + "\n")
    assert await inline(client, after, end_of(TEXT))
    await settle(client)
    adapters = {row["uri"]: row["adapter"] for row in query(
        DATA_DIR, "SELECT uri, adapter FROM requests WHERE uri IN (?, ?)", (first, after))}
    assert adapters == {first: "base", after: "v1"}

    registry.rollback()
    for _ in range(200):
        if (await command(client, "compilot.stats"))["adapter"] == "base":
            break
        await asyncio.sleep(0.05)
    assert (await command(client, "compilot.stats"))["adapter"] == "base"

    # A damaged adapter is refused: the server says so and keeps serving the base.
    staging = registry.staging()
    (staging / "adapter.gguf").write_bytes(b"GGUF" + b"\x00" * 64)
    registry.add(staging, AdapterInfo(version="v2", method="test", parent="base"))
    registry.promote("v2")
    for _ in range(200):
        if any("v2" in m.message for m in client.messages):
            break
        await asyncio.sleep(0.05)
    assert any("adapter v2 not applied" in m.message for m in client.messages)
    assert (await command(client, "compilot.stats"))["adapter"] == "base"
    assert await inline(client, open_document(client, TEXT + "\n"), end_of(TEXT))
