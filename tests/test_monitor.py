"""Following accepted completions: checks on accept, checkpoints, revisions, disk changes."""

from __future__ import annotations

from pathlib import Path

import pytest

from compilot.feedback.monitor import Monitor
from compilot.feedback.records import Candidate, Request
from compilot.feedback.store import Store
from compilot.paths import DataDir
from compilot.settings import CheckSettings

HEAD = "def f(a):\n    return"
TAIL = "\n\n\nprint(f(1))\n"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store.in_dir(DataDir(tmp_path))
    for cid in ("good", "bad", "c-old-error"):
        store.record_request(
            Request(id=f"r-{cid}", uri="file:///m.py", language="python", line=1,
                    character=10, prefix=HEAD, suffix=TAIL, latency_ms=1, model="m",
                    adapter="base", source="model"),
            [Candidate(id=cid, text="x", raw="x", logprob=-1, tokens=1, parsed=True)])
    return store


def rows(store: Store, sql: str, cid: str) -> list[tuple]:
    return [tuple(r) for r in store.query(sql, (cid,))]


def test_good_completion_checkpoints(store: Store) -> None:
    clock = Clock()
    monitor = Monitor(store, CheckSettings(), clock=clock)
    doc = HEAD + " a + 1" + TAIL
    monitor.accepted("good", "file:///m.py", "python", doc, len(HEAD), " a + 1").result()
    assert rows(store, "SELECT stage, status, introduced FROM checks WHERE candidate_id = ?",
                "good") == [("syntax", "ok", 0), ("compile", "ok", 0)]
    clock.now += 31
    monitor.tick()
    start = len(HEAD) + 3
    monitor.changed("file:///m.py", start, start + 1, "2")  # " a + 1" -> " a + 2"
    clock.now += 600
    monitor.tick()
    survival = rows(store, "SELECT at, round(share, 2) FROM survival WHERE candidate_id = ?",
                    "good")
    assert survival[0] == ("30s", 1.0)
    assert [s[0] for s in survival] == ["30s", "2m", "10m"] and survival[-1][1] < 1.0
    assert not monitor.follows("file:///m.py")
    monitor.close()


def test_broken_completion_fixed_on_disk_is_a_revision(store: Store) -> None:
    monitor = Monitor(store, CheckSettings())
    doc = HEAD + " a +" + TAIL
    monitor.accepted("bad", "file:///m.py", "python", doc, len(HEAD), " a +").result()
    assert rows(store, "SELECT status, introduced FROM checks WHERE candidate_id = ? "
                "AND stage = 'compile'", "bad") == [("syntax", 1)]
    fixed = "import os\n\n" + HEAD + " a + 2" + TAIL
    for future in monitor.disk_changed("file:///m.py", fixed):
        future.result()
    assert rows(store, "SELECT broken, fixed, status FROM revisions WHERE candidate_id = ?",
                "bad") == [(" a +", " a + 2", "ok")]
    monitor.close()


def test_old_errors_are_not_blamed_on_the_completion(store: Store) -> None:
    monitor = Monitor(store, CheckSettings())
    head = "int g(void) { return undeclared_name; }\n\nint f(int a) {\n    return"
    doc = head + " a + 1;\n}\n"
    monitor.accepted("c-old-error", "file:///m.c", "c", doc, len(head), " a + 1;").result()
    compile_rows = rows(store, "SELECT status, introduced FROM checks WHERE candidate_id = ? "
                        "AND stage = 'compile'", "c-old-error")
    assert compile_rows == [("type", 0)]
    monitor.close()
