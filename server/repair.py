"""Fixes for accepted completions that broke the build, checked by the compiler before they
are offered (the ``compilot: fix`` code action).

When the monitor finds that an accepted completion brought in a failing diagnostic, a
:class:`Repairer` asks the model, in the background (the engine's lowest priority, tried again
while the user types), for the region again under a prompt that shows the broken code and the
compiler's message (:func:`repair_prompt`, the repair benchmark's prompt too), and takes the
request's other candidates as fixes too. A fix is kept only if the file with it compiles where
the broken one did not: the completion's own diagnostics gone and none brought in (the same
blame as the accepted completion's). The fixes are ranked by edit distance to the broken text
(minimal repairs first) and an editor's code-action request is answered from what is ready,
never by waiting for the model or a compiler.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from compilot.feedback.blame import Blame, blame
from compilot.feedback.compilers import available
from compilot.feedback.diagnostics import CheckStatus, Diagnostic, Stage
from compilot.feedback.tracker import Region, survival
from compilot.languages import language_for
from compilot.server.prompt import heal, unheal
from compilot.settings import CheckSettings

if TYPE_CHECKING:
    from compilot.feedback.records import Candidate
    from compilot.server.completion import CompletionService

try:  # C++ Levenshtein, tens of times faster on long strings; optional, same results
    from rapidfuzz.distance import Levenshtein as _Levenshtein
except ImportError:  # pragma: no cover - depends on the environment
    _Levenshtein = None

log = logging.getLogger(__name__)

PROMPT_LINES = 12
"""Lines of code before the broken region that the prompt's comment block shows."""
MAX_CHECKS = 8
"""Fixes checked with the compiler per broken completion, at most."""
RETRIES = 240
"""Times a repair given way to the user's requests is queued again (about two minutes of
typing without a pause) before it is given up."""
RETRY_S = 0.5
MIN_KEPT = 0.5
"""A fix keeps at least this share of the broken text (``tracker.survival``): one that writes
something else altogether (``return 0`` for ``return max(values``) compiles, and is no repair
of what the user accepted; one that finishes it (``(a > b) ? a : b;`` for ``(a >``) is."""


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance in characters (code points): insertions, deletions, substitutions
    of cost 1 (rapidfuzz where installed, else the two-row dynamic programme)."""
    if _Levenshtein is not None:
        return int(_Levenshtein.distance(a, b))
    if len(a) < len(b):
        a, b = b, a  # the row runs along the shorter string
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def repair_prompt(prompt: str, broken: str, message: str = "", comment: str = "#") -> str:
    """What the model completes to repair ``broken``: the code as it is (``prompt`` then
    ``broken``) as a comment block, the compiler's ``message`` when there is one, then
    ``prompt`` again, to be continued fixed."""
    mark = comment or "//"
    shown = "".join(f"{mark} {line}".rstrip() + "\n"
                    for line in (prompt + broken).strip("\n").split("\n"))
    why = "".join(f"{mark} Error: {line}".rstrip() + "\n"
                  for line in message.strip().split("\n")[:3]) if message.strip() else ""
    return f"{mark} This version does not compile:\n{shown}{why}{mark} Fixed:\n{prompt}"


def _lines_before(text: str, at: int, lines: int) -> int:
    """The offset where the ``lines`` lines before the one holding ``at`` begin."""
    start = text.rfind("\n", 0, at) + 1
    for _ in range(lines):
        if start == 0:
            break
        start = text.rfind("\n", 0, start - 1) + 1
    return start


def fix_texts(generated: str, broken: str) -> list[str]:
    """Fixes in one generated text: its first k lines for k from the broken text's line count
    down to one (and one line more, for a fix that needs it), longest first."""
    lines = generated.split("\n")
    want = broken.count("\n") + 1
    out = []
    for k in (want, want + 1, *range(want - 1, 0, -1)):
        if 1 <= k <= len(lines):
            text = "\n".join(lines[:k]).rstrip()
            if text.strip() and text not in out:
                out.append(text)
    return out


@dataclass
class Fix:
    """A checked replacement of a broken accepted completion's text."""

    id: str
    candidate_id: str
    uri: str
    region: Region
    """The accepted completion, moved with the user's edits by the monitor."""
    broken: str
    text: str
    source: str
    """Where it came from: ``model`` (asked to repair) or ``candidate`` (the request's other
    candidates)."""
    distance: int
    message: str
    """The compiler's first message about the broken text."""
    status: CheckStatus
    """The check of the file with the fix."""

    def current(self, document: str) -> tuple[int, int] | None:
        """Where the broken text is in ``document`` now, or None when it is not there any
        more (the user changed it: the fix no longer applies)."""
        start, end = self.region.start, self.region.end
        if self.region.revised or document[start:end] != self.broken:
            return None
        return start, end


@dataclass
class RepairCounters:
    """What the repairer has done since the server started."""

    broken: int = 0
    """Accepted completions that broke the build."""
    repaired: int = 0
    """Of them, those for which a checked fix was found."""
    unrepaired: int = 0
    """Those for which no proposed fix passed the checks."""
    checked: int = 0
    """Fixes checked with the compiler."""
    rejected: int = 0
    """Fixes the checker rejected (never offered)."""
    applied: int = 0
    """Fixes the user applied."""
    given_up: int = 0
    """Repairs whose model part was given up (the user kept typing): only the request's other
    candidates were checked."""


@dataclass
class _Job:
    region: Region
    language: str
    before: str
    after: str
    diagnostics: tuple[Diagnostic, ...]
    others: tuple[str, ...]
    tries: int = 0
    model: list[str] = field(default_factory=list)


class Repairer:
    """Finds and keeps checked fixes of broken accepted completions, per document."""

    def __init__(self, service: CompletionService, checks: CheckSettings, *,
                 on_ready: Callable[[str], None] = lambda _uri: None,
                 max_tokens: int = 96, candidates: int = 3) -> None:
        self.service = service
        self.checks = checks
        self.on_ready = on_ready
        """Called (from a repair thread) with the document whose fixes changed."""
        self.max_tokens = max_tokens
        self.candidates = candidates
        self.counters = RepairCounters()
        self._others: dict[str, tuple[str, ...]] = {}
        self._fixes: dict[str, list[Fix]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="compilot-repair")
        self._timers: set[threading.Timer] = set()
        self._closed = False

    # -- what the server tells it --------------------------------------------------------

    def siblings(self, candidate_id: str, others: tuple[str, ...]) -> None:
        """The other candidates shown with ``candidate_id``, which the user accepted."""
        with self._lock:
            self._others[candidate_id] = others
            while len(self._others) > 256:
                self._others.pop(next(iter(self._others)))

    def broken(self, region: Region, blamed: Blame, before: str, after: str) -> None:
        """The monitor found that ``region`` (accepted into ``after``; ``before`` is the file
        without it) brought in a failing diagnostic: look for fixes in the background."""
        with self._lock:
            if self._closed:
                return
            others = self._others.pop(region.candidate_id, ())
            self.counters.broken += 1
        failing = tuple(d for d in blamed.new if d.kind.failed)
        job = _Job(region, region.language, before, after, failing or blamed.new, others)
        self._ask_model(job)

    def fixes(self, uri: str, document: str) -> list[Fix]:
        """The ready fixes of ``uri`` that still apply to ``document``, best first."""
        with self._lock:
            ready = list(self._fixes.get(uri, []))
        return [f for f in ready if f.current(document) is not None]

    def applied(self, fix_id: str) -> Fix | None:
        """The user applied the fix ``fix_id``: it and its region's other fixes are done."""
        with self._lock:
            for uri, fixes in self._fixes.items():
                for fix in fixes:
                    if fix.id == fix_id:
                        self._fixes[uri] = [f for f in fixes if f.region is not fix.region]
                        self.counters.applied += 1
                        return fix
        return None

    def forget(self, uri: str) -> None:
        """The document was closed: its fixes go."""
        with self._lock:
            self._fixes.pop(uri, None)

    def documents(self) -> dict[str, int]:
        """Documents with ready fixes, and how many."""
        with self._lock:
            return {uri: len(f) for uri, f in self._fixes.items() if f}

    def pending(self) -> int:
        """Broken completions whose repair has not ended (a fix found or not)."""
        c = self.counters
        return c.broken - c.repaired - c.unrepaired

    def wait(self, timeout: float | None = None) -> None:
        """Block until queued checks of fixes have run (tests)."""
        self._pool.submit(lambda: None).result(timeout)

    def close(self) -> None:
        """Stop: queued retries and checks not yet started are dropped."""
        with self._lock:
            self._closed = True
            for timer in self._timers:
                timer.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)

    # -- the work ------------------------------------------------------------------------

    def _prompt(self, job: _Job) -> tuple[str, str, str]:
        """(prompt prefix, suffix, broken text) for the model."""
        region, text = job.region, job.after
        prefix_chars = self.service.settings.completion.prefix_chars
        suffix_chars = self.service.settings.completion.suffix_chars
        shown_from = _lines_before(text, region.start, PROMPT_LINES)
        line_end = text.find("\n", region.end)
        line_end = len(text) if line_end < 0 else line_end
        message = job.diagnostics[0].message if job.diagnostics else ""
        comment = language_for(job.language).comment or "//"
        header = repair_prompt(text[shown_from:region.start], text[region.start:line_end],
                               message, comment)
        # the code before the shown lines, from a line start, then the header (which ends
        # with the shown lines again, to be continued fixed)
        window_from = max(0, shown_from - prefix_chars)
        window_from = text.find("\n", window_from) + 1 if window_from else 0
        prefix = text[window_from:shown_from] + header
        suffix = text[region.end:region.end + suffix_chars]
        return prefix, suffix, region.original

    def _ask_model(self, job: _Job) -> None:
        from compilot.server.engine import Cancelled, Sampling
        from compilot.server.scheduler import Priority

        service = self.service
        if service.engine is None:
            self._pool.submit(self._verify, job)
            return
        prefix, suffix, broken = self._prompt(job)
        prefix, held = heal(prefix)  # as completions are prompted: no trailing blank
        limit = broken.count("\n") + 2
        settings = service.settings.completion
        sampling = Sampling.from_settings(settings, n=self.candidates,
                                          max_tokens=self.max_tokens, predict_ms=0.0)

        def work(cancelled: Callable[[], bool]) -> list[Candidate]:
            engine = service.engine
            if engine is None:
                return []
            if service.threads is not None:
                engine.set_threads(service.threads.threads())
            tokens = engine.prompt(prefix, suffix, sampling.max_tokens)
            return engine.generate(
                tokens, sampling, forced=held, cancelled=cancelled, background=True,
                stop=lambda text: unheal(text, held).count("\n") >= limit)

        handle = service.scheduler.submit(work, key=f"repair:{job.region.candidate_id}",
                                          priority=Priority.BACKGROUND)

        def done(future: object) -> None:
            try:
                out = handle.future.result()
            except Cancelled:
                self._again(job)
                return
            except Exception:  # noqa: BLE001 - a model failure loses the model's fixes only
                log.exception("repair of %s failed", job.region.candidate_id)
                out = []
            job.model = [unheal(c.raw, held) for c in out]
            self._submit(self._verify, job)

        handle.future.add_done_callback(done)

    def _again(self, job: _Job) -> None:
        """The repair gave way to a request: queue it again shortly, a bounded number of
        times (the candidates' fixes are checked meanwhile only once the model is done)."""
        job.tries += 1
        if job.tries > RETRIES:
            self.counters.given_up += 1
            self._submit(self._verify, job)
            return
        timer = threading.Timer(RETRY_S, lambda: self._retry(job, timer))
        timer.daemon = True
        with self._lock:
            if self._closed:
                return
            self._timers.add(timer)
        timer.start()

    def _retry(self, job: _Job, timer: threading.Timer) -> None:
        with self._lock:
            self._timers.discard(timer)
            if self._closed:
                return
        self._ask_model(job)

    def _submit(self, fn: Callable[[_Job], None], job: _Job) -> None:
        try:
            self._pool.submit(fn, job)
        except RuntimeError:  # closed
            pass

    def _verify(self, job: _Job) -> None:
        """Check each fix with the compiler; keep the ones that repair, best first."""
        region = job.region
        broken = region.original
        proposed: list[tuple[str, str]] = []
        for raw in job.model:
            proposed += [(t, "model") for t in fix_texts(raw, broken)]
        proposed += [(t.rstrip(), "candidate") for t in job.others if t.strip()]
        seen: set[str] = set()
        unique = []
        for text, source in sorted(proposed, key=lambda p: edit_distance(p[0], broken)):
            keeps = survival(broken.rstrip(), text) >= MIN_KEPT
            if keeps and text != broken.rstrip() and text not in seen:
                seen.add(text)
                unique.append((text, source))
        bad = {d.message for d in job.diagnostics}
        stage = Stage.COMPILE if available(job.language) else Stage.SYNTAX
        found: list[Fix] = []
        for text, source in unique[:MAX_CHECKS]:
            tail = broken[len(broken.rstrip()):]  # the broken text's trailing newline stays
            patched = job.after[:region.start] + text + tail + job.after[region.end:]
            try:
                checked = blame(job.before, patched, job.language, stage=stage,
                                settings=self.checks)
            except Exception:  # noqa: BLE001
                log.exception("checking a fix of %s failed", region.candidate_id)
                continue
            self.counters.checked += 1
            still = any(d.message in bad for d in checked.result.diagnostics)
            # nothing new at all: not a failure, and no name the file lacks (a made-up helper)
            if checked.new or still or not checked.result.status.conclusive:
                self.counters.rejected += 1
                continue
            found.append(Fix(uuid.uuid4().hex, region.candidate_id, region.uri, region, broken,
                             text + tail, source, edit_distance(text, broken.rstrip()),
                             job.diagnostics[0].message if job.diagnostics else "",
                             checked.result.status))
        if not found:
            log.info("no checked fix for %s (%d tried)", region.candidate_id, len(unique))
            with self._lock:
                self.counters.unrepaired += 1
            return
        with self._lock:
            self.counters.repaired += 1
            kept = [f for f in self._fixes.get(region.uri, []) if f.region is not region]
            self._fixes[region.uri] = kept + sorted(found, key=lambda f: f.distance)
        self.on_ready(region.uri)
