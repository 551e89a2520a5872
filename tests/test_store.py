"""The event store, redaction and settings."""

from __future__ import annotations

import json
import sqlite3
import stat
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from compilot import settings as settings_mod
from compilot.feedback.diagnostics import CheckStatus, Diagnostic
from compilot.feedback.records import Candidate, Request, Source
from compilot.feedback.redact import PLACEHOLDER, redact
from compilot.feedback.store import MIGRATIONS, Store, StoreError
from compilot.paths import DataDir
from tests.records import verdict


def request(rid: str = "r1", prefix: str = "x = ") -> Request:
    return Request(id=rid, uri="file:///a.py", language="python", line=0, character=4,
                   prefix=prefix, suffix="\n", latency_ms=12.5, model="m.gguf",
                   adapter="base", source=Source.MODEL)


def events(store: Store) -> list[dict[str, object]]:
    """The flat events dataset's rows (every file in train)."""
    from compilot.feedback import datasets as fd
    from compilot.settings import DatasetSettings

    built = fd.build(store, fd.Selection(kind="events"), DatasetSettings(held_out=0.0))
    return list(built["train"]) if "train" in built else []


def candidate(cid: str = "c1", text: str = "1") -> Candidate:
    return Candidate(id=cid, text=text, raw=text + "\n```", logprob=-0.3, tokens=2,
                     parsed=True)


def test_round_trip_and_events(tmp_path: Path) -> None:
    store = Store.in_dir(DataDir(tmp_path))
    store.record_request(request(), [candidate()])
    assert store.record_event("c1", "accepted")
    assert not store.record_event("unknown", "accepted")
    with pytest.raises(ValueError, match="unknown event kind"):
        store.record_event("c1", "liked")
    counts = store.counts()
    assert (counts["requests"], counts["candidates"], counts["accepted"]) == (1, 1, 1)
    assert store.schema_version == len(MIGRATIONS)
    mode = store.query("PRAGMA journal_mode")[0][0]
    assert mode == "wal"
    assert stat.S_IMODE((tmp_path / "events.db").stat().st_mode) == 0o600


def test_a_shown_says_whether_the_client_inferred_it(tmp_path: Path) -> None:
    # A version-6 store (before events.inferred) keeps its events; new ones say how the
    # client knew (1 inferred, 0 known, NULL not said).
    db = sqlite3.connect(tmp_path / "events.db")
    for script in MIGRATIONS[:6]:
        db.executescript(script)
    db.execute("PRAGMA user_version = 6")
    db.commit()
    db.close()
    store = Store(tmp_path / "events.db")
    assert store.schema_version == len(MIGRATIONS) == 7
    store.record_request(request(), [candidate(), candidate("c2"), candidate("c3")])
    assert store.record_event("c1", "shown", inferred=True)
    assert store.record_event("c2", "shown", inferred=False)
    assert store.record_event("c3", "shown")
    rows = store.query("SELECT candidate_id, inferred FROM events ORDER BY candidate_id")
    assert [tuple(r) for r in rows] == [("c1", 1), ("c2", 0), ("c3", None)]


def test_secrets_never_reach_the_store(tmp_path: Path) -> None:
    store = Store.in_dir(DataDir(tmp_path))
    key = "AKIA" + "ABCDEFGHIJKLMNOP"
    store.record_request(request(prefix=f'aws_key = "{key}"\npassword = "hunter22"\n'),
                         [candidate(text='token = "ghp_' + "a1B2" * 10 + '"')])
    dump = "\n".join(sqlite3.connect(tmp_path / "events.db").iterdump())
    assert key not in dump and "hunter22" not in dump and "ghp_a1B2" not in dump
    assert PLACEHOLDER in dump


def test_alternatives_join_their_request_redacted_and_only_a_recorded_one(
        tmp_path: Path) -> None:
    """``record_candidates``: the alternatives decoded after an answer join its request,
    ranked after its own candidates, redacted; for a request never written (a write the full
    queue dropped) nothing is written and nothing fails."""
    from compilot.feedback.queued_store import QueuedStore

    store = Store.in_dir(DataDir(tmp_path))
    store.record_request(request(), [candidate()])
    store.record_candidates("r1", [replace(candidate("c2", 'password = "hunter22"'), shown=False)],
                           first_rank=1)
    store.record_candidates("never", [candidate("c3")], first_rank=1)
    rows = store.query("SELECT id, request_id, rank, shown, text FROM candidates ORDER BY rank")
    assert [tuple(r)[:4] for r in rows] == [("c1", "r1", 0, 1), ("c2", "r1", 1, 0)]
    assert "hunter22" not in rows[1]["text"] and PLACEHOLDER in rows[1]["text"]
    store.close()
    queued = QueuedStore(DataDir(tmp_path))
    queued.record_candidates("r1", [candidate("c4")], first_rank=2)
    assert queued.flush(30)
    assert queued.record_event("c4", "accepted")  # known to the queue: events follow
    queued.close()
    assert Store.in_dir(DataDir(tmp_path)).counts()["candidates"] == 3


def test_damaged_database_is_an_error_naming_it(tmp_path: Path) -> None:
    damaged = b"this is not sqlite" * 100
    (tmp_path / "events.db").write_bytes(damaged)
    with pytest.raises(StoreError, match=str(tmp_path / "events.db")):
        Store.in_dir(DataDir(tmp_path))
    assert (tmp_path / "events.db").read_bytes() == damaged  # never created over it


def test_server_keeps_a_damaged_database_aside(tmp_path: Path) -> None:
    (tmp_path / "events.db").write_bytes(b"this is not sqlite" * 100)
    store = Store.in_dir(DataDir(tmp_path), recover=True)
    assert store.recovered_from is not None and store.recovered_from.exists()
    assert store.recovered_from.read_bytes().startswith(b"this is not sqlite")
    store.record_request(request(), [candidate()])
    assert store.counts()["requests"] == 1


def test_concurrent_writers(tmp_path: Path) -> None:
    stores = [Store.in_dir(DataDir(tmp_path)) for _ in range(3)]

    def write(index: int) -> None:
        for n in range(30):
            rid = f"r{index}-{n}"
            stores[index].record_request(request(rid), [candidate(f"c{index}-{n}")])

    threads = [threading.Thread(target=write, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert stores[0].counts()["requests"] == 90


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        pytest.param("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
                     "MIIEow", id="private-key"),
        pytest.param("key = 'AKIAIOSFODNN7EXAMPLE'", "AKIAIOSFODNN7EXAMPLE", id="aws-key-id"),
        pytest.param("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                     "wJalrXUtnFEMI", id="aws-secret"),
        pytest.param("t = 'ghp_" + "x" * 36 + "'", "ghp_xxxx", id="github"),
        pytest.param("SLACK = 'xoxb-1234567890-abcdefghij'", "xoxb-1234567890", id="slack"),
        pytest.param("openai.api_key = 'sk-" + "a" * 40 + "'", "sk-aaaa", id="openai"),
        pytest.param("g = 'AIza" + "B" * 35 + "'", "AIzaBBB", id="google"),
        pytest.param('db_password = "correct horse"', "correct horse", id="password"),
        pytest.param("url = 'postgres://bob:s3cr3t@db/x'", "s3cr3t", id="url-credentials"),
        pytest.param("salt = 'q8F3kLz9Xw2PmN7vR4tY6uB1'", "q8F3kLz9Xw2PmN7vR4tY6uB1",
                     id="high-entropy"),
    ],
)
def test_redact(text: str, secret: str) -> None:
    assert secret not in redact(text)
    assert PLACEHOLDER in redact(text)


@pytest.mark.parametrize("text", [
    pytest.param("def f(password):\n    return check(password)", id="parameter-name"),
    pytest.param("name = 'configuration_settings_file'", id="low-entropy-literal"),
    pytest.param("x = 'hello world'", id="plain-string"),
])
def test_redact_keeps_ordinary_code(text: str) -> None:
    assert redact(text) == text


def test_settings_layers_and_bad_values(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[completion]\ncandidates = 5\nmax_tokens = 'many'\n")
    settings, problems = settings_mod.load(path=config)
    assert settings.completion.candidates == 5
    assert settings.completion.max_tokens == settings_mod.CompletionSettings().max_tokens
    assert any("max_tokens" in p for p in problems)
    settings, problems = settings_mod.load({"completion": {"maxTokens": 12, "bogus": 1}},
                                           path=config)
    assert settings.completion.max_tokens == 12 and settings.completion.candidates == 5
    assert any("bogus" in p for p in problems)
    config.write_text("[completion\n")
    settings, problems = settings_mod.load(path=config)
    assert settings == settings_mod.Settings() and "not a readable TOML" in problems[0]


def test_migration_keeps_earlier_data(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "events.db")
    for statement in filter(str.strip, MIGRATIONS[0].split(";")):
        db.execute(statement)
    db.execute("PRAGMA user_version = 1")
    db.execute("INSERT INTO requests VALUES ('r0', 0, 'u', 'python', 0, 0, 'p', 's', 1, 'm', "
               "'base', 'model')")
    db.commit()
    db.close()
    store = Store.in_dir(DataDir(tmp_path))
    assert store.schema_version == len(MIGRATIONS) >= 2
    assert store.counts()["requests"] == 1
    store.record_request(request(), [candidate()])
    store.record_check("c1", verdict("compile", "type", introduced=True, tool="gcc",
                                     diagnostics=(Diagnostic(0, 0, "AKIA" + "X" * 16),)),
                       "accept")
    store.record_survival("c1", at="30s", share=0.5, text="x")
    store.record_revision("c1", broken="x(", fixed="x()", status=CheckStatus.OK)
    counts = store.counts()
    assert (counts["checks"], counts["survival"], counts["revisions"]) == (1, 1, 1)
    assert "AKIA" not in store.query("SELECT diagnostics FROM checks")[0][0]


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "events.db")
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(StoreError, match="newer"):
        Store.in_dir(DataDir(tmp_path))


def test_inherited_settings_apply_over_the_file_and_under_the_editor(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.toml"
    config.write_text("[completion]\ncandidates = 5\nmax_tokens = 20\n")
    monkeypatch.setenv(settings_mod.SETTINGS_ENV,
                       '{"completion": {"maxTokens": 30}, "training": {"min_examples": 9}}')
    settings, problems = settings_mod.load({"completion": {"candidates": 2}}, path=config)
    assert problems == []
    assert (settings.completion.candidates, settings.completion.max_tokens) == (2, 30)
    assert settings.training.min_examples == 9
    # What a server hands the child that runs a round comes back unchanged.
    monkeypatch.setenv(settings_mod.SETTINGS_ENV, json.dumps(settings_mod.as_dict(settings)))
    assert settings_mod.load(path=tmp_path / "none.toml")[0] == settings


@pytest.mark.parametrize("value", [
    pytest.param("{not json", id="not-json"),
    pytest.param("[1, 2]", id="not-an-object"),
])
def test_bad_inherited_settings_are_named_and_ignored(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(settings_mod.SETTINGS_ENV, value)
    settings, problems = settings_mod.load(path=tmp_path / "none.toml")
    assert settings == settings_mod.Settings()
    assert len(problems) == 1 and settings_mod.SETTINGS_ENV in problems[0]


def test_a_cache_hit_shares_its_window_and_training_rows_read_it(tmp_path: Path) -> None:
    store = Store.in_dir(DataDir(tmp_path))
    first = Request(id="r1", uri="file:///a.py", language="python", line=0, character=4,
                    prefix="def f():\n    return ", suffix="\n", latency_ms=9.0,
                    model="m.gguf", adapter="base", source=Source.MODEL,
                    context=({"path": "b.py", "start": 0, "text": "def g(): pass"},))
    hit = Request(id="r2", uri="file:///a.py", language="python", line=0, character=4,
                  prefix=first.prefix, suffix=first.suffix, latency_ms=0.1, model="m.gguf",
                  adapter="base", source=Source.CACHE, window_of="r1",
                  context=first.context)
    store.record_request(first, [candidate("c1", "1")])
    store.record_request(hit, [candidate("c2", "1")])
    assert store.record_event("c2", "accepted")
    rows = {r["id"]: r for r in store.query("SELECT * FROM requests")}
    assert (rows["r2"]["prefix"], rows["r2"]["suffix"], rows["r2"]["context"]) == ("", "", None)
    assert rows["r2"]["window_of"] == "r1"
    windows = {r["id"]: tuple(r)[1:] for r in store.query("SELECT * FROM request_windows")}
    assert windows["r2"] == windows["r1"] == (
        first.prefix, first.suffix, json.dumps(list(first.context)))
    prompts = {r["prompt"] for r in events(store)}
    assert prompts == {first.prefix}


def test_a_window_whose_request_was_never_written_makes_no_row(tmp_path: Path) -> None:
    store = Store.in_dir(DataDir(tmp_path))
    orphan = Request(id="r2", uri="file:///a.py", language="python", line=0, character=4,
                     prefix="x = ", suffix="", latency_ms=0.1, model="m.gguf", adapter="base",
                     source=Source.CACHE, window_of="dropped")
    store.record_request(orphan, [candidate("c2", "1")])
    store.record_event("c2", "accepted")
    assert events(store) == []


def test_a_version_4_store_migrates_and_its_windows_read_as_before(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "events.db")
    for script in MIGRATIONS[:4]:
        db.executescript(script)
    db.execute("PRAGMA user_version = 4")
    db.execute("INSERT INTO requests (id, created_at, uri, language, line, character, prefix, "
               "suffix, latency_ms, model, adapter, source) VALUES ('r', 1.0, 'file:///a.py', "
               "'python', 0, 0, 'x = ', '\n', 1.0, 'm', 'base', 'model')")
    db.commit()
    db.close()
    store = Store(tmp_path / "events.db")
    assert store.schema_version == len(MIGRATIONS) == 7
    assert [tuple(r) for r in store.query("SELECT * FROM request_windows")] == [
        ("r", "x = ", "\n", None)]
