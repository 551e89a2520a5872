"""The fill-in-the-middle path end to end: `compilot serve` on a tiny FIM model.

No FIM model can be downloaded here; tests/fim_model.py writes a random-weight llama GGUF with
deepseek-coder's vocabulary (FIM tokens included) whose greedy output is always " x".
"""

from __future__ import annotations

import asyncio

import llama_cpp
import pytest
import pytest_lsp
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
    server_config,
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
