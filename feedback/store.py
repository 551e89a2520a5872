"""The event store: SQLite in WAL mode holding requests, candidates and events.

Every write is one short transaction, so the server, the trainer and the CLI can write at the
same time and a crash loses at most the event in flight. Text is redacted before it is written.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from compilot.feedback.blame import Blame
from compilot.feedback.diagnostics import FAILING, CheckStatus, Stage
from compilot.feedback.records import Candidate, EventKind, Request, Trigger
from compilot.feedback.redact import redact
from compilot.paths import DataDir

# Schema migrations, applied in order; PRAGMA user_version is the number applied.
# Never edit a released entry: append a new one.
MIGRATIONS: list[str] = [
    # 1: the first cut (issue 2)
    """
    CREATE TABLE requests (
        id          TEXT PRIMARY KEY,
        created_at  REAL NOT NULL,
        uri         TEXT NOT NULL,
        language    TEXT NOT NULL,
        line        INTEGER NOT NULL,
        character   INTEGER NOT NULL,
        prefix      TEXT NOT NULL,
        suffix      TEXT NOT NULL,
        latency_ms  REAL NOT NULL,
        model       TEXT NOT NULL,
        adapter     TEXT NOT NULL,
        source      TEXT NOT NULL CHECK (source IN ('model', 'cache', 'typed'))
    );
    CREATE TABLE candidates (
        id          TEXT PRIMARY KEY,
        request_id  TEXT NOT NULL REFERENCES requests(id),
        rank        INTEGER NOT NULL,
        text        TEXT NOT NULL,
        raw         TEXT NOT NULL,
        logprob     REAL,
        tokens      INTEGER NOT NULL,
        parsed      INTEGER,
        shown       INTEGER NOT NULL
    );
    CREATE INDEX candidates_request ON candidates(request_id);
    CREATE TABLE events (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        candidate_id    TEXT NOT NULL REFERENCES candidates(id),
        kind            TEXT NOT NULL
                        CHECK (kind IN ('shown', 'accepted', 'rejected', 'partial')),
        accepted_length INTEGER,
        created_at      REAL NOT NULL
    );
    CREATE INDEX events_candidate ON events(candidate_id);
    """,
    # 2: compiler in the loop (issue 3): checks, survival of accepted text, user revisions
    """
    CREATE TABLE checks (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        candidate_id TEXT NOT NULL REFERENCES candidates(id),
        stage        TEXT NOT NULL CHECK (stage IN ('syntax', 'compile')),
        trigger      TEXT NOT NULL,
        status       TEXT NOT NULL,
        tool         TEXT NOT NULL,
        introduced   INTEGER NOT NULL,
        diagnostics  TEXT NOT NULL,
        duration_ms  REAL NOT NULL,
        created_at   REAL NOT NULL
    );
    CREATE INDEX checks_candidate ON checks(candidate_id);
    CREATE TABLE survival (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        candidate_id TEXT NOT NULL REFERENCES candidates(id),
        at           TEXT NOT NULL,
        share        REAL NOT NULL,
        text         TEXT NOT NULL,
        created_at   REAL NOT NULL
    );
    CREATE INDEX survival_candidate ON survival(candidate_id);
    CREATE TABLE revisions (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        candidate_id TEXT NOT NULL REFERENCES candidates(id),
        broken       TEXT NOT NULL,
        fixed        TEXT NOT NULL,
        status       TEXT NOT NULL,
        created_at   REAL NOT NULL
    );
    CREATE INDEX revisions_candidate ON revisions(candidate_id);
    """,
]

_FAILING_SQL = ", ".join(f"'{status}'" for status in sorted(FAILING))
SUMMARY_SQL = f"""
-- Shown candidates by language and adapter: acceptance, and parse / compile / survival of
-- the accepted ones (what `compilot stats` and the editors' status show).
WITH accepted AS (
    SELECT DISTINCT candidate_id AS id FROM events WHERE kind = '{EventKind.ACCEPTED}'
), compiled AS (
    SELECT candidate_id AS id,
           max(stage = '{Stage.COMPILE}' AND introduced = 1 AND status IN ({_FAILING_SQL})) AS bad,
           max(stage = '{Stage.COMPILE}') AS checked
    FROM checks GROUP BY candidate_id
), survived AS (
    SELECT s.candidate_id AS id, s.share FROM survival s
    WHERE s.id = (SELECT max(id) FROM survival WHERE candidate_id = s.candidate_id)
)
SELECT r.language, r.adapter,
       count(*) AS shown,
       count(a.id) AS accepted,
       sum(a.id IS NOT NULL AND c.parsed = 1) AS accepted_parsed,
       sum(a.id IS NOT NULL AND k.checked = 1) AS accepted_checked,
       sum(a.id IS NOT NULL AND k.checked = 1 AND k.bad = 0) AS accepted_compiled,
       avg(CASE WHEN a.id IS NOT NULL THEN v.share END) AS survival
FROM candidates c
JOIN requests r ON r.id = c.request_id
LEFT JOIN accepted a ON a.id = c.id
LEFT JOIN compiled k ON k.id = c.id
LEFT JOIN survived v ON v.id = c.id
WHERE c.shown = 1 AND r.created_at >= ?
GROUP BY r.language, r.adapter
ORDER BY r.language, r.adapter
"""


class StoreError(RuntimeError):
    """The event database could not be used; the message names the file."""


class Store:
    """A thread-safe handle on the event database."""

    def __init__(self, path: Path, *, recover: bool = False) -> None:
        self.path = path
        self.recovered_from: Path | None = None
        self._lock = threading.Lock()
        self._db = self._open(path, recover)

    @classmethod
    def in_dir(cls, data: DataDir, *, recover: bool = False) -> Store:
        """The store of the data dir ``data`` (created, owner-only, when missing).

        A damaged database raises StoreError naming the file; with ``recover`` (the server,
        which must keep working) it is moved aside, kept, and a new one started.
        """
        data.create()
        return cls(data.events_db, recover=recover)

    def _open(self, path: Path, recover: bool) -> sqlite3.Connection:
        try:
            return self._connect(path)
        except sqlite3.DatabaseError as exc:
            if not recover:
                raise StoreError(f"event database {path} is damaged ({exc}); move it aside "
                                 "or restore it from a backup") from exc
            # A damaged file is kept beside the new one, never deleted: nothing is lost.
            aside = path.with_name(f"{path.name}.damaged-{int(time.time())}")
            try:
                path.rename(aside)
                for suffix in ("-wal", "-shm"):
                    side = path.with_name(path.name + suffix)
                    if side.exists():
                        side.rename(aside.with_name(aside.name + suffix))
            except OSError as move_exc:
                raise StoreError(f"event database {path} is damaged ({exc}) and could not "
                                 f"be moved aside ({move_exc})") from exc
            self.recovered_from = aside
            return self._connect(path)

    def _connect(self, path: Path) -> sqlite3.Connection:
        new = not path.exists()
        if new:
            # Created owner-only before SQLite writes a byte of it.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        db = sqlite3.connect(path, check_same_thread=False, timeout=10.0, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout = 10000")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise sqlite3.DatabaseError(f"journal_mode is {mode}, not wal")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA foreign_keys = ON")
            self._migrate(db)
        except sqlite3.DatabaseError:
            db.close()
            raise
        for suffix in ("", "-wal", "-shm"):
            side = Path(str(path) + suffix)
            if side.exists():
                side.chmod(0o600)
        return db

    @staticmethod
    def _migrate(db: sqlite3.Connection) -> None:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(
                f"the event database has schema version {version}, newer than this compilot "
                f"knows ({len(MIGRATIONS)}); upgrade compilot"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            db.execute("BEGIN IMMEDIATE")
            try:
                for statement in filter(str.strip, script.split(";")):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        """The number of migrations applied (PRAGMA user_version)."""
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _write(self, statements: Iterable[tuple[str, Sequence[object]]]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for sql, args in statements:
                    self._db.execute(sql, args)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def record_request(self, request: Request, candidates: Sequence[Candidate]) -> None:
        """Write a request and its candidates (ranked: the first is rank 0) in one
        transaction, redacted; every candidate needs its id (``records.identified``)."""
        if any(not c.id for c in candidates):
            raise ValueError("every recorded candidate needs an id (records.identified)")
        statements: list[tuple[str, Sequence[object]]] = [
            (
                "INSERT INTO requests VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (request.id, request.created_at, request.uri, request.language, request.line,
                 request.character, redact(request.prefix), redact(request.suffix),
                 request.latency_ms, request.model, request.adapter, request.source),
            )
        ]
        for rank, c in enumerate(candidates):
            statements.append((
                "INSERT INTO candidates VALUES (?,?,?,?,?,?,?,?,?)",
                (c.id, request.id, rank, redact(c.text), redact(c.raw), c.logprob, c.tokens,
                 None if c.parsed is None else int(c.parsed), int(c.shown)),
            ))
        self._write(statements)

    def record_event(self, candidate_id: str, kind: EventKind,
                     accepted_length: int | None = None) -> bool:
        """Record ``kind`` for a candidate; False when the candidate is unknown."""
        if kind not in tuple(EventKind):
            raise ValueError(f"unknown event kind {kind!r}; expected one of "
                             f"{', '.join(EventKind)}")
        with self._lock:
            known = self._db.execute(
                "SELECT 1 FROM candidates WHERE id = ?", (candidate_id,)
            ).fetchone()
        if not known:
            return False
        self._write([(
            "INSERT INTO events (candidate_id, kind, accepted_length, created_at) "
            "VALUES (?,?,?,?)",
            (candidate_id, kind, accepted_length, time.time()),
        )])
        return True

    def record_check(self, candidate_id: str, verdict: Blame, trigger: Trigger) -> None:
        """A syntax or compile check of a candidate in its file (diagnostics redacted)."""
        r = verdict.result
        self._write([(
            "INSERT INTO checks (candidate_id, stage, trigger, status, tool, introduced, "
            "diagnostics, duration_ms, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
            (candidate_id, r.stage, trigger, r.status, r.tool, int(verdict.introduced),
             redact(json.dumps(verdict.diagnostics())), r.duration_ms, time.time()),
        )])

    def record_survival(self, candidate_id: str, *, at: str, share: float, text: str) -> None:
        """How much of an accepted candidate's text is still there at ``at``."""
        self._write([(
            "INSERT INTO survival (candidate_id, at, share, text, created_at) "
            "VALUES (?,?,?,?,?)",
            (candidate_id, at, share, redact(text), time.time()),
        )])

    def record_revision(self, candidate_id: str, *, broken: str, fixed: str,
                        status: CheckStatus) -> None:
        """The user's repair of a broken accepted candidate (SEED's minimal revision)."""
        self._write([(
            "INSERT INTO revisions (candidate_id, broken, fixed, status, created_at) "
            "VALUES (?,?,?,?,?)",
            (candidate_id, redact(broken), redact(fixed), status, time.time()),
        )])

    def query(self, sql: str, args: Sequence[object] = ()) -> list[sqlite3.Row]:
        """Read rows (for the CLI, reports and tests)."""
        with self._lock:
            cursor = self._db.execute(sql, args)
            cursor.row_factory = sqlite3.Row
            return cursor.fetchall()

    def counts(self) -> dict[str, int]:
        """Rows per table and accepted/rejected events."""
        out = {}
        for table in ("requests", "candidates", "events", "checks", "survival", "revisions"):
            out[table] = self.query(f"SELECT count(*) AS n FROM {table}")[0]["n"]
        for kind in EventKind:
            rows = self.query("SELECT count(*) AS n FROM events WHERE kind = ?", (kind,))
            out[kind] = rows[0]["n"]
        return out

    def summary(self, since: float = 0.0) -> list[dict[str, Any]]:
        """Per language and adapter, for requests made at or after ``since`` (epoch s): shown,
        accepted, and of the accepted ones parsed, compile-checked, compiled, mean survival."""
        return [dict(row) for row in self.query(SUMMARY_SQL, (since,))]

    def labelled_since(self, since: float) -> int:
        """Candidates that got a compile check or a revision at or after ``since`` (epoch s):
        new training signal, what the background trainer counts."""
        rows = self.query(
            "SELECT count(*) AS n FROM (SELECT candidate_id FROM checks "
            f"WHERE stage = '{Stage.COMPILE}' AND created_at >= ? "
            "UNION SELECT candidate_id FROM revisions WHERE created_at >= ?)", (since, since))
        return int(rows[0]["n"])

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()
