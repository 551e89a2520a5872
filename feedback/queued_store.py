"""The server's event store: writes go through a bounded queue to a thread of their own.

Nothing on the editor's path waits for SQLite. While another process (the trainer, `compilot
stats`, an export) holds a write transaction, the writer retries and the rows wait in the
queue; a full queue drops the newest writes and counts them. A database that cannot be opened
yet (locked, on a full disk, on a read-only mount) is opened again every few seconds, and a
damaged one is moved aside and a new one started (``Store``, ``recover``). What could not be
recorded is counted and told to the user, once when it starts and once when recording works
again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from compilot.feedback.blame import Blame
from compilot.feedback.diagnostics import CheckStatus
from compilot.feedback.records import Candidate, EventKind, Request, Trigger
from compilot.feedback.store import (
    Store,
    StoreBusy,
    StoreDamaged,
    StoreError,
    move_aside,
)
from compilot.paths import DataDir

log = logging.getLogger(__name__)

QUEUE_SIZE = 4096
"""Writes waiting at most; beyond that the newest are dropped (and counted)."""
REOPEN_S = 5.0
"""Seconds between two tries at opening a database that could not be opened."""
BUSY_S = 0.2
"""The writer's SQLite busy timeout: short, it retries (and can stop between tries)."""
_BACKOFF = (0.05, 0.1, 0.2, 0.5, 1.0)
_KNOWN = 65536  # candidate ids remembered with their events, for record_event's answer

Job = Callable[[Store], object]


@dataclass
class WriterCounters:
    """What happened to the writes given to the queue."""

    written: int = 0
    dropped: int = 0
    """Not queued: the queue was full."""
    lost: int = 0
    """Queued, but the database refused them (full disk, read-only, damaged, closed)."""
    retries: int = 0
    """Tries that found the database locked by another process."""


class QueuedStore:
    """The event store as the server uses it: the same writes as ``Store``, queued."""

    def __init__(self, data: DataDir, *, recover: bool = True, size: int = QUEUE_SIZE,
                 on_error: Callable[[str], None] | None = None,
                 reopen_s: float = REOPEN_S) -> None:
        self.data = data
        self.path = data.events_db
        self.recover = recover
        self.size = size
        self.reopen_s = reopen_s
        self.on_error = on_error or (lambda message: log.warning("%s", message))
        self.recovered_from: Path | None = None
        self.counters = WriterCounters()
        self.problem: str | None = None
        """Why writes are failing now (None while they succeed)."""
        self._store: Store | None = None
        self._reader: Store | None = None
        self._jobs: deque[Job] = deque()
        self._busy = False
        self._closing = False
        self._changed = threading.Condition()
        self._known: OrderedDict[str, set[str]] = OrderedDict()
        self._known_lock = threading.Lock()
        self._failing_since: tuple[str, int] | None = None  # (kind of failure, lost before)
        self._thread = threading.Thread(target=self._run, name="compilot-store", daemon=True)
        self._thread.start()

    # -- the writer thread -------------------------------------------------------------

    def _open(self) -> Store | None:
        try:
            store = Store.in_dir(self.data, recover=self.recover, busy_s=BUSY_S)
        except StoreError as exc:
            self._failing(exc)
            return None
        if store.recovered_from is not None:
            self.recovered_from = store.recovered_from
            self.on_error(f"compilot: the event database was damaged; it was kept as "
                          f"{store.recovered_from} and a new one started at {store.path}")
        self._reader = Store(self.path, read_only=True)
        return store

    def _run(self) -> None:
        attempt = 0
        while True:
            with self._changed:
                while not self._jobs and not self._closing:
                    self._changed.wait()
                if not self._jobs:
                    return
                job = self._jobs[0]
                self._busy = True
            if self._store is None:
                self._store = self._open()
                if self._store is None:
                    self._wait(self.reopen_s)
                    self._idle(keep=not self._closing)
                    continue
            try:
                job(self._store)
            except StoreBusy:
                self.counters.retries += 1
                self._wait(_BACKOFF[min(attempt, len(_BACKOFF) - 1)])
                attempt += 1
                self._idle(keep=not self._closing)
                continue
            except StoreDamaged as exc:
                self._damaged(exc)
                self._idle(keep=self.recover and not self._closing)
                continue
            except StoreError as exc:
                self._failing(exc)
                self._idle(keep=False)
                continue
            except Exception:  # noqa: BLE001 - a bad row must not stop the writer
                log.exception("could not record an event in %s", self.path)
                self.counters.lost += 1
                self._idle(keep=False)
                continue
            attempt = 0
            self.counters.written += 1
            self._recovered()
            self._idle(keep=False, done=True)

    def _idle(self, *, keep: bool, done: bool = False) -> None:
        """After a try at the first job: keep it for another try, or take it off."""
        with self._changed:
            if not keep:
                self._jobs.popleft()
                if not done:
                    self.counters.lost += 1
            self._busy = False
            self._changed.notify_all()

    def _wait(self, seconds: float) -> None:
        with self._changed:
            if not self._closing:
                self._changed.wait(seconds)

    def _damaged(self, exc: StoreDamaged) -> None:
        """A write found the file damaged: keep it aside and start a new one (recover)."""
        store, self._store = self._store, None
        if store is not None:
            store.close()
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if not self.recover:
            self._failing(exc)
            return
        try:
            aside = move_aside(self.path, exc)
        except StoreError as move_exc:
            self._failing(move_exc)
            return
        self.recovered_from = aside
        self.on_error(f"compilot: the event database became damaged ({exc}); it was kept as "
                      f"{aside} and a new one started at {self.path}")

    def _failing(self, exc: StoreError) -> None:
        kind = type(exc).__name__
        self.problem = str(exc)
        if self._failing_since is None or self._failing_since[0] != kind:
            self._failing_since = (kind, self.counters.lost + self.counters.dropped)
            self.on_error(f"compilot: events are not being recorded: {exc}")

    def _recovered(self) -> None:
        if self._failing_since is None:
            return
        lost = self.counters.lost + self.counters.dropped - self._failing_since[1]
        self.on_error(f"compilot: events are recorded again in {self.path}; {lost} could not "
                      f"be recorded meanwhile ({self.problem})")
        self._failing_since, self.problem = None, None

    # -- the queue ---------------------------------------------------------------------

    def _put(self, job: Job) -> bool:
        with self._changed:
            if self._closing or len(self._jobs) >= self.size:
                self.counters.dropped += 1
                return False
            self._jobs.append(job)
            self._changed.notify_all()
            return True

    def pending(self) -> int:
        """Writes queued or in progress."""
        with self._changed:
            return len(self._jobs)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every queued write was made (or failed); False on ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while self._jobs:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (for at most ``timeout`` s: the rest is counted as lost),
        then close the database."""
        self.flush(timeout)
        with self._changed:
            self._closing = True
            keep = 1 if self._busy else 0  # the writer ends the write it is making
            while len(self._jobs) > keep:
                self._jobs.pop()
                self.counters.lost += 1
            self._changed.notify_all()
        self._thread.join(timeout=max(1.0, 2 * BUSY_S))
        for store in (self._store, self._reader):
            if store is not None:
                store.close()

    # -- the writes (Store's, queued) --------------------------------------------------

    def _remember(self, candidate_id: str, kind: str | None = None) -> None:
        with self._known_lock:
            kinds = self._known.setdefault(candidate_id, set())
            if kind is not None:
                kinds.add(kind)
            self._known.move_to_end(candidate_id)
            while len(self._known) > _KNOWN:
                self._known.popitem(last=False)

    def record_request(self, request: Request, candidates: Sequence[Candidate]) -> None:
        """Queue a request with its candidates (redacted on the writer thread)."""
        if any(not c.id for c in candidates):
            raise ValueError("every recorded candidate needs an id (records.identified)")
        if self._put(lambda store: store.record_request(request, candidates)):
            for c in candidates:
                self._remember(c.id)

    def record_candidates(self, request_id: str, candidates: Sequence[Candidate], *,
                          first_rank: int) -> None:
        """Queue candidates added to a recorded request (``Store.record_candidates``)."""
        if any(not c.id for c in candidates):
            raise ValueError("every recorded candidate needs an id (records.identified)")
        if self._put(lambda store: store.record_candidates(request_id, candidates,
                                                           first_rank=first_rank)):
            for c in candidates:
                self._remember(c.id)

    def record_event(self, candidate_id: str, kind: EventKind,
                     accepted_length: int | None = None, inferred: bool | None = None) -> bool:
        """Queue ``kind`` for a candidate: False when the candidate is unknown or the event
        repeats one it has (the rules of ``Store.record_event``)."""
        with self._known_lock:
            kinds = self._known.get(candidate_id)
        if kinds is None:
            kinds = self._kinds_in_db(candidate_id)
            if kinds is None:
                return False
            for known_kind in kinds:
                self._remember(candidate_id, known_kind)
            self._remember(candidate_id)
        outcome = {EventKind.ACCEPTED, EventKind.REJECTED}
        if (kind == EventKind.SHOWN and kind in kinds) or (kind in outcome and kinds & outcome):
            return False
        if not self._put(lambda store: store.record_event(candidate_id, kind, accepted_length,
                                                          inferred)):
            return False
        self._remember(candidate_id, kind)
        return True

    def _kinds_in_db(self, candidate_id: str) -> set[str] | None:
        """The events a candidate of an earlier session has (a read: never waits for a
        writer in WAL mode); None if it is not there."""
        if self._reader is None:
            return None
        try:
            rows = self._reader.query(
                "SELECT c.id, e.kind FROM candidates c LEFT JOIN events e "
                "ON e.candidate_id = c.id WHERE c.id = ?", (candidate_id,))
        except StoreError:
            return None
        return {row["kind"] for row in rows if row["kind"]} if rows else None

    def record_check(self, candidate_id: str, verdict: Blame, trigger: Trigger) -> None:
        """Queue a check of a candidate (``Store.record_check``)."""
        self._put(lambda store: store.record_check(candidate_id, verdict, trigger))

    def record_survival(self, candidate_id: str, *, at: str, share: float, text: str) -> None:
        """Queue a survival record (``Store.record_survival``)."""
        self._put(lambda store: store.record_survival(candidate_id, at=at, share=share,
                                                      text=text))

    def record_revision(self, candidate_id: str, *, broken: str, fixed: str,
                        status: CheckStatus, source: str = "user") -> None:
        """Queue a revision (``Store.record_revision``)."""
        self._put(lambda store: store.record_revision(candidate_id, broken=broken,
                                                      fixed=fixed, status=status,
                                                      source=source))

    # -- reads (a read-only connection of their own) -----------------------------------

    def _read(self) -> Store:
        if self._reader is None:
            raise StoreError(f"event database {self.path} is not open"
                             + (f": {self.problem}" if self.problem else " yet"))
        return self._reader

    def counts(self) -> dict[str, int]:
        """``Store.counts``, with the writer's counters."""
        out = self._read().counts() if self._reader is not None else {}
        return {**out, **{f"writes_{k}": v for k, v in asdict(self.counters).items()},
                "writes_pending": self.pending()}

    def summary(self, since: float = 0.0) -> list[dict[str, Any]]:
        """``Store.summary``."""
        return self._read().summary(since)

    def query(self, sql: str, args: Sequence[object] = ()) -> list[Any]:
        """``Store.query`` (rows written so far: ``flush`` first to see queued ones)."""
        return self._read().query(sql, args)
