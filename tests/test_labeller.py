"""Issue 13: every candidate labelled in the background, with the meaning of an accept-time label.

Before, only accepted candidates got a check: a request whose candidates were shown and not
taken left no label, and no DPO pair without an accept.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from compilot import settings as settings_mod
from compilot.feedback import datasets as fd
from compilot.feedback.labeller import Labeller
from compilot.feedback.monitor import Monitor
from compilot.feedback.records import Candidate, Request, Source, Trigger, identified
from compilot.feedback.store import Store
from compilot.server.completion import CompletionService
from compilot.settings import CheckSettings, DatasetSettings

# LIMIT and os are defined more than a window (3,000 characters) above the cursor.
FILLER = "".join(f"\n\ndef helper_{i}(value):\n    return value * {i} + 1\n" for i in range(120))
HEAD = "import os\n\nLIMIT = 10\n" + FILLER + "\n\ndef clamp(x):\n    return"
TAIL = "\n\n\nprint(clamp(3))\n"


def record(store: Store, texts: list[str], prefix: str = HEAD, suffix: str = TAIL
           ) -> list[Candidate]:
    candidates = identified([Candidate(text=t, raw=t, tokens=3, logprob=-1.0, parsed=None,
                                       shown=i == 0) for i, t in enumerate(texts)])
    store.record_request(Request(
        id=f"r{time.monotonic_ns()}", created_at=time.time(), uri="file:///tmp/clamp.py",
        language="python", line=6, character=10, prefix=prefix, suffix=suffix, latency_ms=1.0,
        model="m", adapter="base", source=Source.MODEL), candidates)
    return candidates


def checks_of(store: Store, cid: str, trigger: str) -> list[tuple[str, str, int]]:
    return [(r["stage"], r["status"], r["introduced"]) for r in store.query(
        "SELECT stage, status, introduced FROM checks WHERE candidate_id = ? AND trigger = ? "
        "ORDER BY id", (cid, trigger))]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "events.db")


def test_a_candidate_not_accepted_gets_the_verdict_an_accept_would_give(store: Store) -> None:
    """Names defined outside the window (LIMIT, os) resolve: the whole document is checked."""
    assert len(HEAD) - HEAD.index("LIMIT") > settings_mod.CompletionSettings().prefix_chars
    texts = [" min(x, LIMIT)", " os.path.basename(x) + undefined_name", " min(x,"]
    candidates = record(store, texts)
    document = HEAD + TAIL
    labeller = Labeller(store, CheckSettings(idle_ms=0))
    labeller.offer("python", document, len(HEAD), candidates)
    assert labeller.wait(timeout=60)
    labeller.close()
    monitor = Monitor(store, CheckSettings())
    for c in candidates:
        accepted = HEAD + c.text + TAIL
        future = monitor.accepted(c.id, "file:///tmp/clamp.py", "python", accepted,
                                  len(HEAD), c.text)
        assert future is not None
        future.result(timeout=60)
    monitor.wait()
    monitor.close()
    verdicts = {c.text: (checks_of(store, c.id, Trigger.ANSWER), checks_of(store, c.id,
                                                                            Trigger.ACCEPT))
                for c in candidates}
    for text, (background, at_accept) in verdicts.items():
        assert background and background == at_accept, (text, background, at_accept)
    assert verdicts[" min(x, LIMIT)"][0][-1] == ("compile", "ok", 0)
    assert verdicts[" min(x,"][0][0][2] == 1  # does not parse: blamed
    assert verdicts[" os.path.basename(x) + undefined_name"][0][-1][:2] == ("compile",
                                                                             "unresolved")


def test_a_compiling_and_a_failing_candidate_give_a_dpo_pair_without_an_accept(
        store: Store) -> None:
    candidates = record(store, [" min(x, LIMIT)", " min(x, LIMIT"])
    labeller = Labeller(store, CheckSettings(idle_ms=0))
    labeller.offer("python", HEAD + TAIL, len(HEAD), candidates)
    assert labeller.wait(timeout=60)
    labeller.close()
    settings = DatasetSettings(held_out=0.0, synthetic_negatives=False)
    pairs = fd.build(store, fd.Selection(kind="dpo"), settings)["train"]
    assert [(r["chosen"], r["rejected"]) for r in pairs] == [(" min(x, LIMIT)",
                                                              " min(x, LIMIT")]
    kto = fd.build(store, fd.Selection(kind="kto"), settings)["train"]
    assert [(r["completion"], r["label"]) for r in kto] == [(" min(x, LIMIT", False)]


def test_the_queue_waits_for_an_idle_editor_and_drops_the_oldest(store: Store) -> None:
    candidates = record(store, [f" x + {i}" for i in range(5)])
    labeller = Labeller(store, CheckSettings(queue=2, idle_ms=60_000))
    labeller.offer("python", HEAD + TAIL, len(HEAD), candidates)
    time.sleep(0.3)
    assert labeller.counters.checked == 0, "a check ran while the editor was busy"
    assert labeller.counters.dropped == 3 and labeller.pending() == 2
    assert labeller.wait(timeout=60)  # someone waiting for the labels: no longer busy
    assert labeller.counters.checked == 2
    checked = {r["candidate_id"] for r in store.query("SELECT candidate_id FROM checks")}
    assert checked == {c.id for c in candidates[3:]}
    labeller.close()


def test_a_candidate_accepted_before_its_turn_is_left_to_the_accept_check(store: Store
                                                                          ) -> None:
    candidates = record(store, [" x + 1", " x + 2"])
    labeller = Labeller(store, CheckSettings(idle_ms=60_000))
    labeller.offer("python", HEAD + TAIL, len(HEAD), candidates)
    labeller.accepted(candidates[0].id)
    assert labeller.wait(timeout=60)
    assert (labeller.counters.skipped, labeller.counters.checked) == (1, 1)
    labeller.close()


def test_a_row_whose_completion_was_masked_is_not_trained_on(store: Store) -> None:
    secret = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"
    candidates = record(store, [f' "{secret}"', " min(x,"])
    labeller = Labeller(store, CheckSettings(idle_ms=0))
    labeller.offer("python", HEAD + TAIL, len(HEAD), candidates)
    assert labeller.wait(timeout=60)
    labeller.close()
    settings = DatasetSettings(held_out=0.0, synthetic_negatives=False)
    for kind in ("kto", "dpo"):
        rows = fd.build(store, fd.Selection(kind=kind), settings)["train"]
        assert all("<REDACTED>" not in str(r) for r in rows), (kind, rows.to_list())


async def test_the_answer_goes_out_before_any_check_of_its_candidates_starts(
        tmp_path: Path) -> None:
    settings, _ = settings_mod.load({"completion": {"maxTokens": 6, "candidates": 2},
                                     "checks": {"idleMs": 200}}, path=tmp_path / "none.toml")
    store = Store(tmp_path / "events.db")
    labeller = Labeller(store, settings.checks)
    service = CompletionService(settings, store, labeller=labeller)
    service.load().result()
    try:
        answer = await service.complete("file:///tmp/clamp.py", HEAD + TAIL, len(HEAD),
                                        language_id="python")
        answered = time.time()
        assert labeller.wait(timeout=120)
        rows = store.query("SELECT created_at, duration_ms FROM checks WHERE trigger = ?",
                           (Trigger.ANSWER,))
        assert rows and len({r["created_at"] for r in rows}) == len(rows)
        started = min(r["created_at"] - r["duration_ms"] / 1000 for r in rows)
        assert started > answered, "a check started before the answer was back"
        assert len(answer.items) >= 1
        assert labeller.counters.offered >= len(answer.items)
    finally:
        labeller.close()
        service.close()


async def test_through_the_server_a_shown_candidate_not_taken_is_labelled(tmp_path: Path
                                                                          ) -> None:
    """Was: no check at all for a candidate that was not accepted."""
    import os
    import sqlite3

    from lsprotocol import types

    from compilot.lsp_client import command, inline, start_server, stop

    env = {**os.environ, "COMPILOT_DATA_DIR": str(tmp_path / "data"),
           "COMPILOT_CONFIG": str(tmp_path / "none.toml")}
    client = await start_server({"completion": {"maxTokens": 6, "candidates": 2}}, env=env)
    try:
        uri = "file:///tmp/labelled/clamp.py"
        client.text_document_did_open(types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1,
                                                 text=HEAD + TAIL)))
        line = HEAD.count("\n")
        answer = await inline(client, uri, line, len(HEAD.rsplit("\n", 1)[1]))
        assert answer.items
        shown = answer.items[0].command.arguments[0]  # type: ignore[union-attr,index]
        assert await command(client, "compilot.settle") is True
    finally:
        await stop(client)
    db = sqlite3.connect(tmp_path / "data" / "events.db")
    stages = [r[0] for r in db.execute(
        "SELECT stage FROM checks WHERE candidate_id = ? AND trigger = 'answer' ORDER BY id",
        (shown,))]
    assert stages == ["syntax", "compile"]
    events = db.execute("SELECT count(*) FROM events WHERE candidate_id = ?", (shown,)).fetchone()
    assert events == (0,)  # neither accepted nor rejected
