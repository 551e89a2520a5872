"""The event store: SQLite in WAL mode holding requests, candidates and events.

Every write is one short transaction, so the server, the trainer and the CLI can write at the
same time and a crash loses at most the event in flight. Text is redacted before it is written.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from compilot.feedback.blame import Blame
from compilot.feedback.diagnostics import FAILING, CheckStatus, Stage
from compilot.feedback.records import Candidate, EventKind, Origin, Request, Trigger
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
    # 3: one outcome per candidate (issue 12): a candidate is shown once and accepted or
    # rejected once, the first of the two standing (repeats written before are dropped); and
    # an index for the questions asked by time (today's rates, what is new since a round).
    """
    DELETE FROM events WHERE kind IN ('accepted', 'rejected') AND id NOT IN (
        SELECT min(id) FROM events WHERE kind IN ('accepted', 'rejected')
        GROUP BY candidate_id);
    DELETE FROM events WHERE kind = 'shown' AND id NOT IN (
        SELECT min(id) FROM events WHERE kind = 'shown' GROUP BY candidate_id);
    CREATE UNIQUE INDEX events_outcome ON events(candidate_id)
        WHERE kind IN ('accepted', 'rejected');
    CREATE UNIQUE INDEX events_shown ON events(candidate_id) WHERE kind = 'shown';
    CREATE INDEX requests_created ON requests(created_at);
    CREATE INDEX checks_created ON checks(created_at);
    """,
    # 4: graded outcomes and bootstrap data (issue 13): what kind of problem a completion
    # brought in (unresolved names grade below a clean compile); who made a request (an
    # editor, or `compilot bootstrap`); and the functions bootstrap has done, so a second run
    # goes on where the first stopped (by file content and function, never by path).
    """
    ALTER TABLE checks ADD COLUMN blamed TEXT
        CHECK (blamed IS NULL OR blamed IN ('syntax', 'type', 'unresolved'));
    ALTER TABLE requests ADD COLUMN origin TEXT NOT NULL DEFAULT 'editor'
        CHECK (origin IN ('editor', 'bootstrap'));
    CREATE TABLE bootstrapped (
        file_sha    TEXT NOT NULL,
        function    TEXT NOT NULL,
        request_id  TEXT REFERENCES requests(id),
        created_at  REAL NOT NULL,
        PRIMARY KEY (file_sha, function)
    );
    CREATE INDEX requests_origin ON requests(origin);
    """,
    # 5: cross-file context and answers that share a window (issue 16): the chunks of other
    # files a request's prompt carried before its window, as JSON [{"path", "start", "text"}]
    # (NULL: none), so that training sees the prompt the model saw; and, for an answer from
    # the cache, the request whose window (prefix, suffix, context) it shares, its own left
    # empty. Readers take windows from the view (NULL where that request was never written:
    # a write the full queue dropped; so window_of is no foreign key, which would lose the
    # answer's own row with it).
    """
    ALTER TABLE requests ADD COLUMN context TEXT;
    ALTER TABLE requests ADD COLUMN window_of TEXT;
    CREATE VIEW request_windows AS
        SELECT r.id AS id,
               CASE WHEN r.window_of IS NULL THEN r.prefix ELSE o.prefix END AS prefix,
               CASE WHEN r.window_of IS NULL THEN r.suffix ELSE o.suffix END AS suffix,
               CASE WHEN r.window_of IS NULL THEN r.context ELSE o.context END AS context
        FROM requests r LEFT JOIN requests o ON o.id = r.window_of;
    """,
    # 6: where a revision came from (issue 17): the user's own edit ('user'), the real body
    # that `compilot bootstrap` hid ('bootstrap'), or a checked fix the user applied through
    # the code action ('fix:model', 'fix:candidate': the model asked to repair, or one of the
    # request's other candidates). Rows written before are the user's or bootstrap's:
    # bootstrap's are the revisions of its own requests.
    """
    ALTER TABLE revisions ADD COLUMN source TEXT NOT NULL DEFAULT 'user';
    UPDATE revisions SET source = 'bootstrap' WHERE candidate_id IN (
        SELECT c.id FROM candidates c JOIN requests r ON r.id = c.request_id
        WHERE r.origin = 'bootstrap');
    """,
    # 7: how a 'shown' is known (issue 17). VS Code's stable API says nothing of an inline item
    # displayed: its extension infers it from the item staying current once the editor settles
    # (1), or knows it from what only a visible suggestion allows: Tab, a word or line taken,
    # Escape (0). NULL: the client did not say (Neovim draws the text itself), or rows before.
    """
    ALTER TABLE events ADD COLUMN inferred INTEGER;
    """,
]

_FAILING_SQL = ", ".join(f"'{status}'" for status in sorted(FAILING))
SUMMARY_SQL = f"""
-- Shown candidates by language, adapter and origin (editor or bootstrap): acceptance, and
-- parse / compile / survival of the accepted ones (what `compilot stats` and the editors'
-- status show).
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
SELECT r.language, r.adapter, r.origin,
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
GROUP BY r.language, r.adapter, r.origin
ORDER BY r.language, r.adapter, r.origin
"""


class EventLog(Protocol):
    """What the server and the monitor write and read: ``Store`` (writes made on the calling
    thread) and ``QueuedStore`` (writes queued to a thread of their own) both are one."""

    path: Path

    def record_request(self, request: Request, candidates: Sequence[Candidate]) -> None:
        """Write a request with its ranked candidates."""

    def record_candidates(self, request_id: str, candidates: Sequence[Candidate], *,
                          first_rank: int) -> None:
        """Add candidates to a recorded request, ranked from ``first_rank`` on."""

    def record_event(self, candidate_id: str, kind: EventKind,
                     accepted_length: int | None = None, inferred: bool | None = None) -> bool:
        """Write an event of a candidate; False when unknown or a repeat."""

    def record_check(self, candidate_id: str, verdict: Blame, trigger: Trigger) -> None:
        """Write a syntax or compile check of a candidate."""

    def record_survival(self, candidate_id: str, *, at: str, share: float,
                        text: str) -> None:
        """Write how much of an accepted candidate is left."""

    def record_revision(self, candidate_id: str, *, broken: str, fixed: str,
                        status: CheckStatus, source: str = "user") -> None:
        """Write a repair of a candidate (``source``: who made it)."""

    def counts(self) -> dict[str, int]:
        """Rows per table."""
        raise NotImplementedError

    def summary(self, since: float = 0.0) -> list[dict[str, Any]]:
        """Rates per language and adapter."""
        raise NotImplementedError

    def close(self) -> None:
        """Close the database."""


def _candidate_row(request_id: str, rank: int, c: Candidate) -> tuple[object, ...]:
    """The values of a candidate's row (text and raw redacted)."""
    return (c.id, request_id, rank, redact(c.text), redact(c.raw), c.logprob, c.tokens,
            None if c.parsed is None else int(c.parsed), int(c.shown))


class StoreError(RuntimeError):
    """The event database could not be used; the message names the file and why."""


class StoreDamaged(StoreError):
    """The file is not a sound SQLite database (``PRAGMA quick_check`` failed, or SQLite
    reports it corrupt or not a database)."""


class StoreBusy(StoreError):
    """Another process holds the database locked; it is sound and will be free again."""


class StoreReadOnly(StoreError):
    """The database or its folder cannot be written (a read-only mount, permissions)."""


class StoreFull(StoreError):
    """The disk (or the user's quota) is full."""


_DAMAGE = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}
_BUSY = {"SQLITE_BUSY", "SQLITE_LOCKED"}
_READ_ONLY = {"SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH"}
_FULL = {"SQLITE_FULL"}


def classify(exc: BaseException, path: Path) -> StoreError:
    """The StoreError that ``exc`` (from SQLite or the OS) means for the database ``path``."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, sqlite3.Error):
        name = (getattr(exc, "sqlite_errorname", "") or "").split("_", 2)
        base = "_".join(name[:2])
        kind: type[StoreError] = (StoreDamaged if base in _DAMAGE else
                                  StoreBusy if base in _BUSY else
                                  StoreReadOnly if base in _READ_ONLY else
                                  StoreFull if base in _FULL else StoreError)
        what = {StoreDamaged: "is damaged", StoreBusy: "is locked by another process",
                StoreReadOnly: "cannot be written", StoreFull: "cannot grow: the disk is full",
                StoreError: "failed"}[kind]
        return kind(f"event database {path} {what} ({exc})")
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return StoreFull(f"event database {path} cannot be created: the disk is full "
                             f"({exc.strerror})")
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return StoreReadOnly(f"event database {path} cannot be written ({exc.strerror})")
    return StoreError(f"event database {path}: {exc}")


def move_aside(path: Path, why: StoreError) -> Path:
    """Keep a damaged database (and its WAL) beside the path, for a new one to start there:
    nothing is deleted. The name it got."""
    aside = path.with_name(f"{path.name}.damaged-{int(time.time())}")
    try:
        path.rename(aside)
        for suffix in ("-wal", "-shm"):
            side = path.with_name(path.name + suffix)
            if side.exists():
                side.rename(aside.with_name(aside.name + suffix))
    except OSError as exc:
        raise StoreDamaged(f"{why}, and it could not be moved aside ({exc})") from why
    return aside


class Store:
    """A thread-safe handle on the event database; every write is one transaction, made on
    the calling thread (the server queues its writes through a ``QueuedStore`` instead)."""

    def __init__(self, path: Path, *, recover: bool = False, busy_s: float = 10.0,
                 read_only: bool = False) -> None:
        self.path = path
        self.recovered_from: Path | None = None
        self.busy_s = busy_s
        self._lock = threading.Lock()
        self._db = self._open_read_only(path) if read_only else self._open(path, recover)

    def _open_read_only(self, path: Path) -> sqlite3.Connection:
        """A connection for reads only, to a database another connection opened and checked
        (in WAL mode its reads never wait for that one's writes)."""
        try:
            db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True,
                                 check_same_thread=False, timeout=self.busy_s,
                                 isolation_level=None)
            db.execute(f"PRAGMA busy_timeout = {int(self.busy_s * 1000)}")
        except sqlite3.Error as exc:
            raise classify(exc, path) from exc
        return db

    @classmethod
    def in_dir(cls, data: DataDir, *, recover: bool = False, busy_s: float = 10.0) -> Store:
        """The store of the data dir ``data`` (created, owner-only, when missing).

        A damaged database raises StoreDamaged naming the file; with ``recover`` (the server,
        which must keep working) it is moved aside, kept, and a new one started. A database
        that is locked, read-only or on a full disk is never taken for a damaged one: those
        raise StoreBusy, StoreReadOnly and StoreFull.
        """
        try:
            data.create()
        except OSError as exc:
            raise classify(exc, data.events_db) from exc
        return cls(data.events_db, recover=recover, busy_s=busy_s)

    def _open(self, path: Path, recover: bool) -> sqlite3.Connection:
        try:
            return self._connect(path)
        except StoreDamaged as exc:
            if not recover:
                raise StoreDamaged(f"{exc}; move it aside or restore it from a backup") from exc
            self.recovered_from = move_aside(path, exc)
            return self._connect(path)

    def _connect(self, path: Path) -> sqlite3.Connection:
        try:
            if not path.exists():
                # Created owner-only before SQLite writes a byte of it.
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            db = sqlite3.connect(path, check_same_thread=False, timeout=self.busy_s,
                                 isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise classify(exc, path) from exc
        try:
            db.execute(f"PRAGMA busy_timeout = {int(self.busy_s * 1000)}")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError(f"event database {path}: journal_mode is {mode}, not wal")
            problems = [row[0] for row in db.execute("PRAGMA quick_check(5)")]
            if problems != ["ok"]:
                raise StoreDamaged(f"event database {path} is damaged (quick_check: "
                                   f"{'; '.join(problems)})")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA foreign_keys = ON")
            self._migrate(db)
        except (sqlite3.Error, StoreError) as exc:
            db.close()
            raise classify(exc, path) from exc
        for suffix in ("", "-wal", "-shm"):
            side = Path(str(path) + suffix)
            with contextlib.suppress(OSError):
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

    def integrity(self) -> list[str]:
        """``PRAGMA integrity_check``'s findings (a full check, unlike the quick one at open):
        empty when the database is sound."""
        with self._lock:
            try:
                rows = [row[0] for row in self._db.execute("PRAGMA integrity_check(20)")]
            except sqlite3.DatabaseError as exc:
                return [str(exc)]
        return [] if rows == ["ok"] else rows

    def _write(self, statements: Iterable[tuple[str, Sequence[object]]]) -> int:
        """Run ``statements`` in one transaction; the rows the last one changed."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise classify(exc, self.path) from exc
            try:
                changed = 0
                for sql, args in statements:
                    changed = self._db.execute(sql, args).rowcount
                self._db.execute("COMMIT")
                return changed
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise classify(exc, self.path) from exc
                raise

    def record_request(self, request: Request, candidates: Sequence[Candidate]) -> None:
        """Write a request and its candidates (ranked: the first is rank 0) in one
        transaction, redacted; every candidate needs its id (``records.identified``)."""
        if any(not c.id for c in candidates):
            raise ValueError("every recorded candidate needs an id (records.identified)")
        # an answer that shares another request's window writes no copy of it
        shared = (("", "") if request.window_of else
                  (redact(request.prefix), redact(request.suffix)))
        context = ((redact(json.dumps(list(request.context))),)
                   if request.context and not request.window_of else (None,))
        statements: list[tuple[str, Sequence[object]]] = [
            (
                "INSERT INTO requests (id, created_at, uri, language, line, character, prefix, "
                "suffix, latency_ms, model, adapter, source, origin, context, window_of) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (request.id, request.created_at, request.uri, request.language, request.line,
                 request.character, *shared,
                 request.latency_ms, request.model, request.adapter, request.source,
                 request.origin, *context, request.window_of),
            )
        ]
        statements += [("INSERT INTO candidates VALUES (?,?,?,?,?,?,?,?,?)",
                        _candidate_row(request.id, rank, c))
                       for rank, c in enumerate(candidates)]
        self._write(statements)

    def record_candidates(self, request_id: str, candidates: Sequence[Candidate], *,
                          first_rank: int) -> None:
        """Add candidates to a recorded request (its alternatives, decoded after the answer
        was shown), ranked from ``first_rank`` on, redacted; nothing when the request is not
        in the database (a write the full queue dropped)."""
        if any(not c.id for c in candidates):
            raise ValueError("every recorded candidate needs an id (records.identified)")
        self._write([
            ("INSERT INTO candidates SELECT ?,?,?,?,?,?,?,?,? "
             "WHERE EXISTS (SELECT 1 FROM requests WHERE id = ?)",
             (*_candidate_row(request_id, first_rank + i, c), request_id))
            for i, c in enumerate(candidates)])

    def record_event(self, candidate_id: str, kind: EventKind,
                     accepted_length: int | None = None, inferred: bool | None = None) -> bool:
        """Record ``kind`` for a candidate; False when the candidate is unknown, or when the
        event would repeat one it has (it is shown once, and accepted or rejected once: the
        first of the two stands). ``inferred``: whether the client inferred the event rather
        than knew it (a 'shown' of VS Code's extension; None: not said)."""
        if kind not in tuple(EventKind):
            raise ValueError(f"unknown event kind {kind!r}; expected one of "
                             f"{', '.join(EventKind)}")
        return self._write([(
            "INSERT OR IGNORE INTO events (candidate_id, kind, accepted_length, created_at, "
            "inferred) SELECT ?,?,?,?,? WHERE EXISTS (SELECT 1 FROM candidates WHERE id = ?)",
            (candidate_id, kind, accepted_length, time.time(),
             None if inferred is None else int(inferred), candidate_id),
        )]) > 0

    def record_check(self, candidate_id: str, verdict: Blame, trigger: Trigger) -> None:
        """A syntax or compile check of a candidate in its file (diagnostics redacted)."""
        r = verdict.result
        self._write([(
            "INSERT INTO checks (candidate_id, stage, trigger, status, tool, introduced, "
            "diagnostics, duration_ms, created_at, blamed) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (candidate_id, r.stage, trigger, r.status, r.tool, int(verdict.introduced),
             redact(json.dumps(verdict.diagnostics())), r.duration_ms, time.time(),
             verdict.blamed),
        )])

    def record_survival(self, candidate_id: str, *, at: str, share: float, text: str) -> None:
        """How much of an accepted candidate's text is still there at ``at``."""
        self._write([(
            "INSERT INTO survival (candidate_id, at, share, text, created_at) "
            "VALUES (?,?,?,?,?)",
            (candidate_id, at, share, redact(text), time.time()),
        )])

    def record_revision(self, candidate_id: str, *, broken: str, fixed: str,
                        status: CheckStatus, source: str = "user") -> None:
        """A repair of a broken accepted candidate (SEED's minimal revision): the user's own
        (``user``), bootstrap's real body (``bootstrap``) or an applied fix (``fix:...``)."""
        self._write([(
            "INSERT INTO revisions (candidate_id, broken, fixed, status, source, created_at) "
            "VALUES (?,?,?,?,?,?)",
            (candidate_id, redact(broken), redact(fixed), status, source, time.time()),
        )])

    def record_bootstrapped(self, file_sha: str, function: str,
                            request_id: str | None) -> None:
        """``compilot bootstrap`` has done ``function`` of the file whose content hashes to
        ``file_sha`` (``request_id``: the request it made, None when it made none)."""
        self._write([(
            "INSERT OR IGNORE INTO bootstrapped (file_sha, function, request_id, created_at) "
            "VALUES (?,?,?,?)", (file_sha, function, request_id, time.time()),
        )])

    def bootstrapped(self) -> set[tuple[str, str]]:
        """(file hash, function) of every function ``compilot bootstrap`` has done."""
        return {(row[0], row[1]) for row in self.query(
            "SELECT file_sha, function FROM bootstrapped")}

    def query(self, sql: str, args: Sequence[object] = ()) -> list[sqlite3.Row]:
        """Read rows (for the CLI, reports and tests)."""
        with self._lock:
            try:
                cursor = self._db.execute(sql, args)
                cursor.row_factory = sqlite3.Row
                return cursor.fetchall()
            except sqlite3.Error as exc:
                raise classify(exc, self.path) from exc

    def counts(self) -> dict[str, int]:
        """Rows per table, events per kind, and the requests ``compilot bootstrap`` made."""
        out = {}
        for table in ("requests", "candidates", "events", "checks", "survival", "revisions",
                      "bootstrapped"):
            out[table] = self.query(f"SELECT count(*) AS n FROM {table}")[0]["n"]
        for kind in EventKind:
            rows = self.query("SELECT count(*) AS n FROM events WHERE kind = ?", (kind,))
            out[kind] = rows[0]["n"]
        rows = self.query("SELECT count(*) AS n FROM requests WHERE origin = ?",
                          (Origin.BOOTSTRAP,))
        out["bootstrap_requests"] = rows[0]["n"]
        rows = self.query("SELECT count(*) AS n FROM revisions WHERE source LIKE 'fix:%'")
        out["fixes_applied"] = rows[0]["n"]
        return out

    def summary(self, since: float = 0.0) -> list[dict[str, Any]]:
        """Per language, adapter and origin, for requests made at or after ``since`` (epoch
        s): shown, accepted, and of the accepted ones parsed, compile-checked, compiled, mean
        survival."""
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
