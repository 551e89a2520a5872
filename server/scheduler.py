"""One worker thread that runs model work in order, so the LSP loop never blocks.

A newer job for the same document supersedes the older ones: queued ones are dropped without
being computed, a running one is told to stop at its next token. A cancelled LSP request
(``$/cancelRequest``) cancels its job the same way. Jobs have a priority: a request supersedes
every warm-up and background job, a warm-up (the cursor came to rest somewhere) supersedes every
background job (a prefetch computed for where the cursor was, a repair, which queues itself
again), and jobs of one priority supersede only those with their key.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from compilot.server.engine import Cancelled

log = logging.getLogger(__name__)


class Priority(IntEnum):
    """Which jobs a job supersedes: all of a lower priority, and those of its own with its key."""

    BACKGROUND = 0
    """Work for later: a prefetch, a repair."""
    WARM = 1
    """A warm-up of the window where the cursor came to rest."""
    REQUEST = 2
    """What an editor waits for: a completion, loading the model, swapping an adapter."""


@dataclass(eq=False)
class Job:
    """A unit of model work and the means to cancel it."""

    key: str | None
    work: Callable[[Callable[[], bool]], Any]
    priority: Priority = Priority.REQUEST
    document: str | None = None
    """The document the job works for, if one."""
    future: Future[Any] = field(default_factory=Future)
    _cancelled: threading.Event = field(default_factory=threading.Event)
    _abandoned: threading.Event = field(default_factory=threading.Event)

    def cancel(self, abandon: bool = True) -> None:
        """Stop this job: dropped if queued, stopped at its next check if running; with
        ``abandon``, its work in progress is of no use (a warm-up's batch is dropped midway,
        not finished)."""
        if abandon:
            self._abandoned.set()
        self._cancelled.set()

    @property
    def abandoned(self) -> bool:
        """Whether the job was told to stop without finishing the step it is in."""
        return self._abandoned.is_set()

    @property
    def cancelled(self) -> bool:
        """Whether the job was told to stop."""
        return self._cancelled.is_set()


@dataclass
class SchedulerCounters:
    """What the worker has done since it started."""
    submitted: int = 0
    superseded: int = 0
    """Jobs cancelled (by a newer job or by the client) before they started."""
    completed: int = 0
    failed: int = 0


class Scheduler:
    """A FIFO of jobs served by one daemon thread."""

    def __init__(self, name: str = "compilot-engine") -> None:
        self._queue: deque[Job] = deque()
        self._cond = threading.Condition()
        self._running: Job | None = None
        self._stopped = False
        self.counters = SchedulerCounters()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, work: Callable[[Callable[[], bool]], Any], *, key: str | None = None,
               priority: Priority = Priority.REQUEST, document: str | None = None) -> Job:
        """Queue ``work(cancelled)``; the jobs queued or running with the same ``key`` and
        ``priority`` are superseded, and so is every job of a lower priority. ``work`` must
        call ``cancelled()`` often and raise Cancelled when true. A superseded job for the
        same ``document`` is not abandoned: the step it is in (a warm-up's batch of the
        window this job needs too) is finished first."""
        job = Job(key, work, priority, document)
        with self._cond:
            if self._stopped:
                job.future.set_exception(RuntimeError("scheduler stopped"))
                return job
            for other in [*self._queue, self._running]:
                if other is None:
                    continue
                if (key is not None and other.key == key and other.priority == priority) or (
                        other.priority < priority):
                    other.cancel(abandon=document is None or other.document != document)
            self._queue.append(job)
            self.counters.submitted += 1
            self._cond.notify()
        return job

    def abandoned(self) -> bool:
        """Whether the running job was told to stop without finishing its step (asked from
        the job's own work, on the worker)."""
        running = self._running
        return running is not None and running.abandoned

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                job = self._queue.popleft()
                # A future cancelled by its awaiter (asyncio.wrap_future does that when the
                # LSP request is cancelled) must not run, and can no longer take a result.
                if job.cancelled or not job.future.set_running_or_notify_cancel():
                    self.counters.superseded += 1
                    if not job.future.done():
                        job.future.set_exception(Cancelled())
                    continue
                self._running = job
            try:
                result = job.work(job._cancelled.is_set)
            except Cancelled as exc:
                job.future.set_exception(exc)
            except Exception as exc:  # noqa: BLE001 - reported through the future
                log.exception("engine job failed")
                self.counters.failed += 1
                job.future.set_exception(exc)
            else:
                self.counters.completed += 1
                job.future.set_result(result)
            finally:
                with self._cond:
                    self._running = None

    def stop(self) -> None:
        """Cancel everything and end the worker."""
        with self._cond:
            self._stopped = True
            for job in self._queue:
                job.cancel()
                if job.future.set_running_or_notify_cancel():
                    job.future.set_exception(Cancelled())
            self._queue.clear()
            if self._running:
                self._running.cancel()
            self._cond.notify_all()
