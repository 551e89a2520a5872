"""After acceptance: check the completion, follow it, record survival and the user's repair.

On accept the syntax check runs at once and then the compile check, both on a background
thread (never delaying completions); both blame the completion only for what it introduced
(the file is checked with and without it). Later saves, closes and changes on disk re-check
files that hold followed completions; a completion that broke the code and that the user then
edits into code that compiles yields a revision (broken, fixed): the minimal repair SEED
trains on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from compilot.feedback.blame import Blame, blame
from compilot.feedback.compilers import available
from compilot.feedback.diagnostics import CheckStatus, Stage
from compilot.feedback.records import Trigger
from compilot.feedback.store import EventLog
from compilot.feedback.tracker import CHECKPOINTS, Region, apply_edit, find_inserted, remap
from compilot.feedback.tracker import survival as survival_share
from compilot.settings import CheckSettings

log = logging.getLogger(__name__)


class Monitor:
    """Follows accepted completions per document; thread-safe."""

    def __init__(self, store: EventLog | None, checks: CheckSettings, *,
                 clock: Callable[[], float] = time.monotonic,
                 on_broken: Callable[[Region, Blame, str, str], None] | None = None) -> None:
        self.store = store
        self.checks = checks
        self.clock = clock
        self.on_broken = on_broken
        """Told (on the checks thread) of an accepted completion that broke the build: the
        region, its blame, the file without it and with it (the server looks for a fix)."""
        self.regions: dict[str, list[Region]] = {}
        self.texts: dict[str, str] = {}
        self._lock = threading.RLock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="compilot-checks")

    # -- events ----------------------------------------------------------------------------

    def accepted(self, candidate_id: str, uri: str, language: str, document: str,
                 offset: int, text: str) -> Future[None] | None:
        """The user accepted ``text`` at about ``offset``; ``document`` already holds it."""
        start = find_inserted(document, text, offset) if text else None
        if start is None:
            log.info("accepted text of %s is not in %s; not followed", candidate_id, uri)
            return None
        region = Region(candidate_id, uri, language, start, start + len(text), text,
                        self.clock())
        with self._lock:
            self.regions.setdefault(uri, []).append(region)
            self.texts[uri] = document
        before = region.without(document)
        # Syntax first, then compile, on the checks thread: the LSP loop never waits for them.
        self._pool.submit(self._syntax, region, before, document)
        return self._pool.submit(self._compile, region, before, document, Trigger.ACCEPT)

    def _syntax(self, region: Region, before: str, after: str) -> None:
        try:
            syntax = blame(before, after, region.language, stage=Stage.SYNTAX)
        except Exception:  # noqa: BLE001
            log.exception("syntax check of %s failed", region.candidate_id)
            return
        self._record(region, syntax, Trigger.ACCEPT)
        if syntax.introduced:
            region.broken = syntax.result.status

    def changed(self, uri: str, start: int, end: int, new_text: str) -> None:
        """An edit in the editor: [start, end) of the mirror replaced by ``new_text``."""
        with self._lock:
            text = self.texts.get(uri)
            if text is None:
                return
            self.texts[uri] = text[:start] + new_text + text[end:]
            for region in self.regions.get(uri, []):
                apply_edit(region, start, end, len(new_text))

    def _resync(self, uri: str, text: str) -> bool:
        """Move ``uri``'s regions from the mirror to ``text`` by diff (lock held); regions
        whose text is gone stop being followed. False when there was nothing to move."""
        old = self.texts.get(uri)
        if old is None or old == text:
            return False
        for region in list(self.regions.get(uri, [])):
            if not remap(region, old, text):
                self.regions[uri].remove(region)
        self.texts[uri] = text
        return True

    def replaced(self, uri: str, text: str) -> None:
        """The editor sent the whole document: move the regions by diff."""
        with self._lock:
            self._resync(uri, text)

    def follows(self, uri: str) -> bool:
        """Whether any accepted completion in ``uri`` is being followed."""
        with self._lock:
            return bool(self.regions.get(uri))

    def mirror(self, uri: str) -> str | None:
        """The monitor's copy of ``uri``'s text (None when it follows nothing there)."""
        with self._lock:
            return self.texts.get(uri)

    def saved(self, uri: str, document: str | None = None) -> list[Future[None]]:
        """The file was saved: survival at save, and a re-check of each followed completion."""
        return self._revisit(uri, Trigger.SAVE, document)

    def closed(self, uri: str) -> list[Future[None]]:
        """The file was closed: last survival record and re-check; stop following it."""
        futures = self._revisit(uri, Trigger.CLOSE, None)
        with self._lock:
            self.regions.pop(uri, None)
            self.texts.pop(uri, None)
        return futures

    def disk_changed(self, uri: str, text: str) -> list[Future[None]]:
        """The file changed on disk outside the editor: move the regions, then re-check."""
        with self._lock:
            if not self._resync(uri, text):
                return []
        return self._revisit(uri, Trigger.DISK, None)

    def tick(self) -> None:
        """Record survival at the checkpoints that are due; stop after the last one."""
        now = self.clock()
        with self._lock:
            for uri, regions in list(self.regions.items()):
                text = self.texts.get(uri, "")
                for region in list(regions):
                    for label, delay in CHECKPOINTS:
                        if label not in region.done and now - region.accepted_at >= delay:
                            region.done.add(label)
                            self._survival(region, text, label)
                    if all(label in region.done for label, _ in CHECKPOINTS):
                        regions.remove(region)

    # -- work ------------------------------------------------------------------------------

    def _revisit(self, uri: str, trigger: Trigger, document: str | None
                 ) -> list[Future[None]]:
        futures = []
        with self._lock:
            if document is not None and self._resync(uri, document):
                log.warning("mirror of %s disagreed with the editor at %s; resynced", uri,
                            trigger)
            text = self.texts.get(uri)
            if text is None:
                return []
            for region in self.regions.get(uri, []):
                self._survival(region, text, trigger)
                futures.append(self._pool.submit(self._compile, region, region.without(text),
                                                 text, trigger))
        return futures

    def _compile(self, region: Region, before: str, after: str, trigger: Trigger) -> None:
        """Check ``after`` (with the region) against ``before`` (without it)."""
        stage = Stage.COMPILE if available(region.language) else Stage.SYNTAX
        try:
            result = blame(before, after, region.language, stage=stage, settings=self.checks)
        except Exception:  # noqa: BLE001 - a checker bug must not lose the event stream
            log.exception("check of %s failed", region.candidate_id)
            return
        self._record(region, result, trigger)
        if trigger is Trigger.ACCEPT:
            if result.introduced and region.broken is None:
                region.broken = result.result.status
            if result.introduced and self.on_broken is not None:
                try:
                    self.on_broken(region, result, before, after)
                except Exception:  # noqa: BLE001
                    log.exception("looking for a fix of %s failed", region.candidate_id)
            return
        fixed = after[region.start : region.end]
        if (region.broken and not region.revised and not result.introduced
                and result.result.status.conclusive
                and fixed.strip() and fixed != region.original):
            region.revised = True
            if self.store is not None:
                self.store.record_revision(region.candidate_id, broken=region.original,
                                           fixed=fixed, status=result.result.status)

    def fixed(self, region: Region, text: str, status: CheckStatus, source: str) -> None:
        """The user applied a checked fix of ``region`` (already in the document): recorded
        as its revision, with where the fix came from, and not again when the file is next
        checked."""
        with self._lock:
            if region.revised:
                return
            region.revised = True
        if self.store is not None:
            try:
                self.store.record_revision(region.candidate_id, broken=region.original,
                                           fixed=text, status=status, source=source)
            except Exception:  # noqa: BLE001
                log.exception("could not record the fix of %s", region.candidate_id)

    def _record(self, region: Region, blamed: Blame, trigger: Trigger) -> None:
        if self.store is None:
            return
        try:
            self.store.record_check(region.candidate_id, blamed, trigger)
        except Exception:  # noqa: BLE001
            log.exception("could not record a check of %s", region.candidate_id)

    def _survival(self, region: Region, text: str, at: str) -> None:
        if self.store is None:
            return
        current = region.text(text)
        try:
            self.store.record_survival(region.candidate_id, at=at,
                                       share=survival_share(region.original, current),
                                       text=current)
        except Exception:  # noqa: BLE001
            log.exception("could not record survival of %s", region.candidate_id)

    def wait(self) -> None:
        """Block until queued checks have run (tests, shutdown)."""
        self._pool.submit(lambda: None).result()

    def close(self) -> None:
        """Stop the checks thread, dropping checks not yet started."""
        self._pool.shutdown(wait=True, cancel_futures=True)
