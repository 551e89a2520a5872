"""Every candidate labelled, not only accepted ones: background checks of what the model wrote.

After an answer has been computed, each of its candidates (shown or not) waits in a bounded
queue for the syntax and compile checks, run on a thread of its own at the lowest CPU priority
and only while the editor is idle (no completion request for ``checks.idle_ms``). A full queue
drops its oldest candidates and counts them. A candidate is checked in the whole document as
it was when the request was answered (an in-memory snapshot: a window alone would turn names
defined outside it into "unresolved"), against the same document without it, exactly as an
accept-time check blames an accepted one, so both labels mean the same. The check sees the text
as the model wrote it; the store keeps it redacted, as everything else.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from compilot.feedback.blame import blame
from compilot.feedback.compilers import available
from compilot.feedback.diagnostics import Stage
from compilot.feedback.records import Candidate, Trigger
from compilot.feedback.store import EventLog
from compilot.settings import CheckSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """One candidate and the document it was generated for."""

    candidate_id: str
    language: str
    document: str
    offset: int
    text: str


@dataclass
class LabellerCounters:
    """What happened to the candidates offered."""

    offered: int = 0
    checked: int = 0
    dropped: int = 0
    """The queue was full: the oldest waiting candidate was dropped."""
    skipped: int = 0
    """Accepted before its turn (the accept-time check labels it)."""
    failed: int = 0


class Labeller:
    """The queue of candidates waiting for a background check, and its thread."""

    def __init__(self, store: EventLog, checks: CheckSettings) -> None:
        self.store = store
        self.checks = checks
        self.counters = LabellerCounters()
        self._jobs: deque[Job] = deque()
        self._skip: set[str] = set()
        self._changed = threading.Condition()
        self._last_request = 0.0
        self._busy = False
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="compilot-labeller", daemon=True)
        self._thread.start()

    # -- the editor's side (cheap: no check runs here) -----------------------------------

    def request(self) -> None:
        """A completion request started: the editor is not idle."""
        with self._changed:
            self._last_request = time.monotonic()

    def offer(self, language: str, document: str, offset: int,
              candidates: Sequence[Candidate]) -> None:
        """Queue the candidates of an answer made for ``document`` at ``offset``."""
        with self._changed:
            self._last_request = time.monotonic()
            for c in candidates:
                if not c.id or not c.text.strip():
                    continue
                self.counters.offered += 1
                if len(self._jobs) >= self.checks.queue:
                    self._jobs.popleft()
                    self.counters.dropped += 1
                self._jobs.append(Job(c.id, language, document, offset, c.text))
            self._changed.notify_all()

    def accepted(self, candidate_id: str) -> None:
        """The user accepted a candidate: its accept-time check labels it."""
        with self._changed:
            self._skip.add(candidate_id)

    def pending(self) -> int:
        """Candidates waiting or being checked."""
        with self._changed:
            return len(self._jobs) + int(self._busy)

    def wait(self, timeout: float | None = None) -> bool:
        """Until every queued candidate is checked (idle or not); False on ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            self._last_request = 0.0  # nobody is typing while someone waits for the labels
            self._changed.notify_all()
            while self._jobs or self._busy:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def close(self) -> None:
        """Stop after the check in progress; what is still queued is not checked."""
        with self._changed:
            self._closing = True
            self._jobs.clear()
            self._changed.notify_all()
        self._thread.join(timeout=self.checks.timeout_s * 2 + 1)

    # -- the thread ----------------------------------------------------------------------

    def _next(self) -> Job | None:
        idle = self.checks.idle_ms / 1000
        with self._changed:
            while True:
                if self._closing:
                    return None
                quiet = time.monotonic() - self._last_request
                if self._jobs and quiet >= idle:
                    job = self._jobs.popleft()
                    if job.candidate_id in self._skip:
                        self._skip.discard(job.candidate_id)
                        self.counters.skipped += 1
                        self._changed.notify_all()
                        continue
                    self._busy = True
                    return job
                self._changed.wait(idle - quiet if self._jobs else None)

    def _run(self) -> None:
        with contextlib.suppress(OSError, AttributeError):  # the lowest priority, this thread
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        while (job := self._next()) is not None:
            try:
                self._check(job)
                self.counters.checked += 1
            except Exception:  # noqa: BLE001 - a checker bug must not stop the labels
                log.exception("background check of %s failed", job.candidate_id)
                self.counters.failed += 1
            finally:
                with self._changed:
                    self._busy = False
                    self._changed.notify_all()

    def _check(self, job: Job) -> None:
        before = job.document
        after = before[:job.offset] + job.text + before[job.offset:]
        syntax = blame(before, after, job.language, stage=Stage.SYNTAX, settings=self.checks)
        self.store.record_check(job.candidate_id, syntax, Trigger.ANSWER)
        if available(job.language):
            result = blame(before, after, job.language, stage=Stage.COMPILE,
                           settings=self.checks)
            self.store.record_check(job.candidate_id, result, Trigger.ANSWER)
