"""The completion service: window → cache / typed-through → engine → cut → rank → record.

Free of LSP types so that it can be driven directly (tests, benchmarks, the CLI); lsp.py wraps
it in handlers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

from pathspec import GitIgnoreSpec

from compilot.feedback.labeller import Labeller
from compilot.feedback.records import (
    Candidate,
    EventKind,
    Request,
    Source,
    identified,
    new_id,
)
from compilot.feedback.store import EventLog
from compilot.feedback.syntax import Trees
from compilot.languages import Language, language_for
from compilot.models import ModelNotFound, resolve_model_path
from compilot.pointer import BASE
from compilot.server import engine as engine_mod
from compilot.server.context import NONE, Choice, ContextRing
from compilot.server.engine import Cancelled, Engine, ModelLoadError, Sampling
from compilot.server.postprocess import Cursor, cut, should_stop
from compilot.server.prompt import Window, heal, unheal, window
from compilot.server.rank import MAX_FULL_PARSE_BYTES, rank
from compilot.server.scheduler import Priority, Scheduler
from compilot.settings import Settings
from compilot.thread_budget import ThreadBudget

log = logging.getLogger(__name__)

IGNORE_FILE = ".compilotignore"
WARM_TAIL = 2
"""Tokens a warm-up leaves at the end of the window: typing there re-tokenizes them."""
MAX_CONTEXT_FILE_CHARS = 1_000_000
"""A bigger file (generated, minified, data) is not cut into the context ring."""
CUT_WAIT_S = 0.25
"""How long a request waits for a file still being cut into the context ring."""
OWED_ALTERNATIVES = 16
"""Answers whose alternatives wait to be decoded (``completion.alternatives_later``); the
oldest beyond it are dropped and counted."""
ALTERNATIVES_IDLE_S = 1.5
"""Seconds without a request before owed alternatives are decoded: while the user types, the
worker is kept for requests and their prefetches (decoded after every answer, the slowest
requests while typing took longer: p95 1,551 ms against 607 and 619 with the candidates
decoded in the request, ``bench/results/keystrokes-alternatives/earlier/``)."""


def _approx_tokens(text: str) -> int:
    """A text's tokens, over-estimated (code runs about 3.5 characters a token for the
    vocabularies here): the choice of context chunks is made on the editor's loop, where the
    engine's tokenizer, busy on the worker, is not asked."""
    return len(text) // 3 + 1


@dataclass
class Answer:
    """The result of one completion request."""

    request_id: str
    items: list[Candidate]
    """The candidates shown, best first, each with the id that accept / reject events name."""
    source: Source | None
    """Where the candidates came from; None when the request was cancelled."""
    latency_ms: float
    language: str


@dataclass(frozen=True)
class Placement:
    """Where a shown candidate would be inserted."""

    uri: str
    language: str
    offset: int
    text: str
    others: tuple[str, ...] = ()
    """The other candidates shown with it (fixes to try if it breaks the build)."""


@dataclass
class _Last:
    """What was last shown for a document, for typing through a suggestion."""

    window: Window
    items: list[Candidate]


@dataclass
class _Owed:
    """An answer that showed its greedy candidate alone (``first_answer``): its alternatives
    are still to be decoded, in the document and window it was computed for."""

    request_id: str
    recorded: bool
    model: str
    adapter: str
    """What computed the answer: alternatives from another model or adapter are not its."""
    key: tuple[object, ...]
    uri: str
    document: str
    offset: int
    win: Window
    language: Language
    sampling: Sampling
    context: Choice
    path: str | None
    cached: list[Candidate]
    """The answer as the cache holds it (replaced by the full one unless it changed)."""
    offered: list[Candidate]
    """Its candidates as recorded, with their ids."""


@dataclass
class ServiceCounters:
    """What the completion service has done since it started."""
    requests: int = 0
    cache_hits: int = 0
    typed_through: int = 0
    cancelled: int = 0
    empty: int = 0
    warm_ups: int = 0
    """Windows evaluated ahead of a request (a document opened or focused, the cursor at
    rest in a new place)."""
    prefetched: int = 0
    """Answers computed as if the shown suggestion were accepted, ready in the cache."""
    joined_prefetches: int = 0
    """Requests that came while their prefetch was still computing and waited for it (also
    counted as cache hits)."""
    alternatives: int = 0
    """Answers whose alternatives were decoded after them (``completion.alternatives_later``),
    recorded with them and added to their cached answer."""
    alternatives_dropped: int = 0
    """Answers whose alternatives were never decoded: more than ``OWED_ALTERNATIVES`` waited,
    or decoding them failed."""


K = TypeVar("K")
V = TypeVar("V")


class LRU(OrderedDict[K, V]):
    """A small least-recently-used map."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def get_fresh(self, key: K) -> V | None:
        """The value of ``key`` (now the most recently used), or None."""
        if key not in self:
            return None
        self.move_to_end(key)
        return self[key]

    def put(self, key: K, value: V) -> None:
        """Set ``key``, dropping the least recently used entries beyond the size."""
        self[key] = value
        self.move_to_end(key)
        while len(self) > max(0, self.size):
            self.popitem(last=False)


def uri_path(uri: str) -> str:
    """The file path of a ``file:`` URI, else the URI itself."""
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme == "file" else uri


def _spec(lines: tuple[str, ...], where: str) -> GitIgnoreSpec:
    """The gitignore patterns of ``lines`` (pathspec); an invalid one is logged and skipped."""
    good = []
    for line in lines:
        try:
            GitIgnoreSpec.from_lines([line])
        except (ValueError, re.error) as exc:
            log.warning("%s: ignoring the pattern %r (%s)", where, line, exc)
        else:
            good.append(line)
    return GitIgnoreSpec.from_lines(good)


@lru_cache(maxsize=256)
def _ignore_file(folder: Path, mtime: float) -> GitIgnoreSpec | None:
    try:
        text = (folder / IGNORE_FILE).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return _spec(tuple(text.splitlines()), str(folder / IGNORE_FILE))


def _ignore_patterns(folder: Path) -> GitIgnoreSpec | None:
    """The patterns of ``folder/.compilotignore`` (re-read when the file changes)."""
    try:
        mtime = (folder / IGNORE_FILE).stat().st_mtime
    except OSError:
        return None
    return _ignore_file(folder, mtime)


def _folder_ignored(spec: GitIgnoreSpec, relative: str) -> bool:
    """Whether a folder on the way to ``relative`` is ignored: nothing below it comes back,
    since git cannot re-include a file whose folder is excluded either (gitignore(5))."""
    parts = relative.split("/")
    return any(spec.check_file("/".join(parts[:d]) + "/").include for d in range(1, len(parts)))


def _matches(spec: GitIgnoreSpec, relative: str) -> bool | None:
    """The verdict of git on ``relative`` (a /-separated path below the patterns' folder): True
    ignored, itself or a folder on the way; False re-included by a ``!`` pattern; None not
    matched."""
    return True if _folder_ignored(spec, relative) else spec.check_file(relative).include


@lru_cache(maxsize=8)
def _setting_spec(patterns: tuple[str, ...]) -> GitIgnoreSpec:
    return _spec(tuple(os.path.expanduser(p) for p in patterns), "logging.ignore")


@lru_cache(maxsize=4096)
def setting_ignores(patterns: tuple[str, ...], path: Path) -> bool:
    """Whether the ``logging.ignore`` patterns match ``path``. The workspace root is not known
    here, so they are matched below every folder of it: ``secrets/*`` matches
    ``/home/u/proj/secrets/x.py``, ``/anchored.py`` a file of that name in any folder."""
    spec = _setting_spec(patterns)
    parts = path.parts[1:] if path.is_absolute() else path.parts
    return any(_matches(spec, "/".join(parts[i:])) for i in range(len(parts)))


def compilotignored(path: Path) -> bool:
    """Whether the ``.compilotignore`` files in the folders of ``path`` (absolute) ignore it;
    each file's patterns are relative to its folder, and a deeper file's verdict wins."""
    verdict: bool | None = None
    for folder in reversed(path.parents):
        spec = _ignore_patterns(folder)
        if spec is None:
            continue
        relative = path.relative_to(folder).as_posix()
        if _folder_ignored(spec, relative):
            return True
        found = spec.check_file(relative).include
        verdict = verdict if found is None else found
    return verdict is True


def context_prompt(engine: Engine, prefix: str, suffix: str, max_tokens: int,
                   language: Language, context: Choice, path: str | None) -> list[int]:
    """The prompt with other files' chunks before the window: as files for a model with
    repository tokens (``Engine.prompt(context=)``), else as comments before the prefix (which
    the engine trims from the left first when the prompt is too long)."""
    if not context.chunks:
        return engine.prompt(prefix, suffix, max_tokens)
    if engine.repo_format is not None:
        return engine.prompt(prefix, suffix, max_tokens, path=path, context=context.files())
    return engine.prompt(context.as_comments(language.comment) + prefix, suffix, max_tokens)


def generate_ranked(engine: Engine, prefix: str, suffix: str, language: Language,
                    sampling: Sampling, *, before: str | None = None, after: str | None = None,
                    rank_by_syntax: bool = True,
                    cancelled: Callable[[], bool] = lambda: False,
                    context: Choice = NONE, path: str | None = None,
                    background: bool = False, trees: Trees | None = None,
                    document: str | None = None, since: float | None = None,
                    indices: Sequence[int] | None = None,
                    ranked_with: Sequence[Candidate] = ()) -> tuple[list[Candidate], list[str]]:
    """The server's model pipeline for one window: heal → prompt → generate → cut → rank.

    Returns (ranked candidates, the model's raw texts). ``before``/``after`` are the whole
    document around the cursor for the splice check (default: the window); ``context`` the
    chunks of other files the prompt carries (``context_prompt``) and ``path`` how it names
    this file; ``background``: a prefetch (``Engine.generate``); ``trees`` and ``document``
    (its key there): the document's last syntax tree, edited instead of parsed afresh;
    ``since``: the request's arrival (``time.monotonic()``), from which ``sampling.predict_ms``
    counts; ``indices``: which candidates to decode (``Engine.generate``); ``ranked_with``:
    candidates of this window ranked before (the greedy one an answer showed alone), ranked
    again together with these. The evaluator calls this too, so that what it measures is what
    the server shows.
    """
    prompt_prefix, held = heal(prefix)
    tokens = context_prompt(engine, prompt_prefix, suffix, sampling.max_tokens, language,
                            context, path)
    if not tokens:
        # Nothing before the cursor, and a model with neither FIM tokens nor a BOS: there is
        # nothing to continue (an empty file, the cursor at 0:0). The answer is empty.
        return [], []
    cursor = Cursor.of(prefix, suffix)  # once per request, not at every generated line
    candidates = engine.generate(
        tokens, sampling, forced=held, cancelled=cancelled, background=background,
        stop=lambda text: should_stop(unheal(text, held), prefix, suffix, language, cursor),
        since=since, indices=indices,
    )
    cut_ = [replace(c, text=cut(unheal(c.raw, held), prefix, suffix, language, cursor))
            for c in candidates]
    ranked = rank([*ranked_with, *cut_], before=prefix if before is None else before,
                  after=suffix if after is None else after, language=language,
                  check_syntax=rank_by_syntax, trees=trees, key=document)
    return ranked, [c.raw for c in candidates]


def shows_parsing(ranked: Sequence[Candidate]) -> bool:
    """Whether an answer shows a candidate that is not known to break the syntax."""
    return any(r.shown and r.parsed is not False for r in ranked)


def first_answer(engine: Engine, prefix: str, suffix: str, language: Language,
                 sampling: Sampling, **options: Any) -> tuple[list[Candidate], list[str], bool]:
    """An editor's answer with ``completion.alternatives_later``: the greedy candidate alone
    (a step of one token costs less than a step of three), unless it ended on its own and
    nothing of it can be shown that parses; then the sampled ones are decoded at once and
    ranked with it, as a request of all ``sampling.n`` would have (``bench/alternatives.py``:
    alone, the top suggestion shown compiled less often). A greedy candidate that the time
    limit (``Sampling.predict_ms``) ended at its line is unfinished rather than broken (the
    opening line of a block, whose body the next request brings): the sampled ones, ended
    the same way, would cost a second pass for lines as unfinished (the first request after
    moving to another function took it at p50, 877 ms, in
    ``bench/results/keystrokes-alternatives/earlier/v2-later-1.json``).
    ``options`` are ``generate_ranked``'s. Returns (ranked candidates, the model's raw texts,
    whether the sampled ones are still to be decoded)."""
    limited = engine.counters.time_limited
    ranked, raw = generate_ranked(engine, prefix, suffix, language, sampling, indices=[0],
                                  **options)
    if sampling.n <= 1:
        return ranked, raw, False
    if shows_parsing(ranked) or engine.counters.time_limited > limited:
        return ranked, raw, True
    more, more_raw = generate_ranked(engine, prefix, suffix, language, sampling,
                                     indices=range(1, sampling.n), ranked_with=ranked,
                                     **options)
    return more, raw + more_raw, False


class CompletionService:
    """Owns the engine (through the worker), the caches and the event log."""

    def __init__(self, settings: Settings, store: EventLog | None,
                 on_error: Callable[[str], None] = lambda _m: None, *,
                 threads: ThreadBudget | None = None, labeller: Labeller | None = None) -> None:
        self.settings = settings
        self.store = store
        self.labeller = labeller
        """Background checks of every candidate (None: only accepted ones are checked)."""
        self.threads = threads
        """The machine's cores shared with other servers (None: as ``model.n_threads``)."""
        self.on_error = on_error
        self.scheduler = Scheduler()
        self.engine: Engine | None = None
        self.engine_error: str | None = None
        self.adapter = BASE
        self.counters = ServiceCounters()
        self._cache: LRU[tuple[object, ...], list[Candidate]] = LRU(
            settings.completion.cache_size)
        self._windows: LRU[tuple[object, ...], str] = LRU(settings.completion.cache_size)
        """Cache key -> the recorded request whose window a cache hit shares."""
        self._prefetching: dict[tuple[object, ...], Future[list[Candidate]]] = {}
        """Cache key -> the prefetch computing its answer (until it ends)."""
        self._anchors: dict[str, int] = {}
        self._last: dict[str, _Last] = {}
        self._loaded: Future[object] | None = None
        self.last_raw: list[str] = []
        """The model's unprocessed candidates of the last computed request (benchmarks)."""
        self.placed: LRU[str, Placement] = LRU(4096)
        """candidate id -> Placement, for following an accepted candidate."""
        self.context = self._ring(settings)
        """Chunks of the files the user opened or saved, for the prompts of the others."""
        self._paths: dict[str, str] = {}
        self._cutter = ThreadPoolExecutor(1, thread_name_prefix="compilot-context")
        self._cutting: Future[None] | None = None
        self._trees = Trees()
        """The last syntax tree of each open document (parsed on the worker thread)."""
        self._owed: OrderedDict[str, _Owed] = OrderedDict()
        """Request id -> an answer whose alternatives are still to be decoded, oldest first."""
        self._alternatives: Future[list[Candidate] | None] | None = None
        """The job decoding the alternatives of one of them."""
        self._last_request = 0.0
        """When the last request came or was answered (``time.monotonic()``)."""
        self._idle: asyncio.TimerHandle | None = None
        """The timer that decodes owed alternatives once the user is idle."""

    # -- other files -----------------------------------------------------------------------

    def _ring(self, settings: Settings) -> ContextRing:
        c = settings.context
        return ContextRing(max_chunks=c.max_chunks, chunk_lines=c.chunk_lines,
                           max_similarity=c.max_similarity, excluded=self._private)

    def _private(self, uri: str) -> bool:
        """Whether a file may not be shown to the model as context (nor recorded): the
        setting ``logging.ignore`` or a ``.compilotignore`` names it."""
        return self._ignored(uri)

    def file_seen(self, uri: str, text: str, path: str | None = None) -> Future[None] | None:
        """A file was opened or saved (or left after edits): cut it into the context ring, on
        a thread of its own; ``path`` is how prompts name it (default: its file path)."""
        c = self.settings.context
        if not c.enabled or c.tokens <= 0 or len(text) > MAX_CONTEXT_FILE_CHARS:
            return None
        if self.engine is not None and self.engine.repo_format is None and not c.as_comments:
            return None  # no prompt will carry chunks: no CPU taken from the warm-up
        name = path or uri_path(uri)
        self._paths[uri] = name
        ring = self.context
        self._cutting = self._cutter.submit(ring.add_file, uri, name, text)
        return self._cutting

    async def _cut_landed(self) -> None:
        """Wait (at most CUT_WAIT_S) for a file still being cut into the ring: a file opened
        or left a moment ago (the LSP server cuts the document left after edits when the next
        request comes) would otherwise land between two requests and change the second's
        context, a cache miss that evaluates the prompt again from the chunk on."""
        cutting = self._cutting
        if cutting is None or cutting.done():
            return
        with contextlib.suppress(Exception):  # too slow, or it failed: the request goes on
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(cutting)), CUT_WAIT_S)

    def context_settled(self, timeout: float | None = None) -> None:
        """Wait until the files given to ``file_seen`` are in the ring (tests, benchmarks)."""
        if self._cutting is not None:
            self._cutting.result(timeout)

    def _choose(self, uri: str, win: Window, language: Language, document: str) -> Choice:
        """The chunks of other files for a request in ``uri`` at ``win`` of ``document``: none
        when context is off, or when the model has no repository tokens and the chunks may not
        go in as comments (``context.as_comments``, or ``language`` has no line comment)."""
        c = self.settings.context
        if not c.enabled or c.tokens <= 0 or self.engine is None:
            return NONE
        if self.engine.repo_format is None and not (c.as_comments and language.comment):
            return NONE
        return self.context.choose(uri, win.prefix + win.suffix, anchor=win.start,
                                   budget=c.tokens, measure=_approx_tokens, document=document)

    # -- the model -------------------------------------------------------------------------

    def load(self) -> Future[object]:
        """Load the configured model on the worker; errors go to ``on_error`` once."""
        model = self.settings.model

        def work(_cancelled: Callable[[], bool]) -> None:
            try:
                path = resolve_model_path(model.path)
                self.engine = engine_mod.load(path, model)
                self.engine_error = None
            except (ModelNotFound, ModelLoadError) as exc:
                self.engine = None
                self.engine_error = (f"compilot: cannot load the model: {exc}. Completions are "
                                     "off until the setting model.path names a GGUF file.")
                log.error(self.engine_error)
                self.on_error(self.engine_error)

        self._cache.clear()
        self._loaded = self.scheduler.submit(work).future
        return self._loaded

    def use_adapter(self, version: str, path: Path | None) -> Future[object]:
        """Swap to the LoRA adapter ``version`` (``path`` None: the base) between requests,
        without reloading the base model; a bad adapter keeps the current one and says so.
        """

        def work(_cancelled: Callable[[], bool]) -> None:
            if self.engine is None or version == self.adapter:
                return
            try:
                self.engine.set_adapter(path)
            except ModelLoadError as exc:
                self.on_error(f"compilot: adapter {version} not applied, still serving "
                              f"{self.adapter}: {exc}")
                return
            log.info("serving adapter %s (%s)", version, path)
            self.adapter = version
            self._last.clear()

        return self.scheduler.submit(work).future

    def reconfigure(self, settings: Settings) -> None:
        """Apply new settings; reload the model only when its settings changed."""
        reload = settings.model != self.settings.model
        if settings.context != self.settings.context:
            self.context = self._ring(settings)
        self.settings = settings
        self._cache = LRU(settings.completion.cache_size)
        self._windows = LRU(settings.completion.cache_size)
        if reload:
            self.load()

    def closed(self, uri: str) -> None:
        """The editor closed ``uri``: drop what is kept per open document (its syntax tree,
        the window's anchor, what was last shown there). Its context chunks stay: a file
        closed a moment ago is still context."""
        self._trees.forget(uri)
        self._anchors.pop(uri, None)
        self._last.pop(uri, None)

    # -- ahead of a request ----------------------------------------------------------------

    def warm(self, uri: str, document: str, offset: int, *,
             language_id: str | None = None) -> Future[Any] | None:
        """Evaluate the window at ``offset`` into the KV cache in the background (a document
        was opened or focused, the cursor rests in a new place), so that the first request
        there evaluates only what was typed since. The lowest priority: any request stops it,
        and takes over what it evaluated (the common prefix of the two prompts)."""
        c = self.settings.completion
        if not c.warm_up:
            return None
        if self.engine is None:
            self._warm_when_loaded(uri, document, offset, language_id)
            return None
        language = language_for(language_id, uri)
        win = window(document, offset, prefix_chars=c.prefix_chars, suffix_chars=c.suffix_chars,
                     anchor=self._anchors.get(uri))
        self._anchors[uri] = win.start
        context, path = self._choose(uri, win, language, document), self._paths.get(uri)
        pending = self._prefetching.get(self._key(win, language, context))
        if pending is not None:
            # A suggestion accepted: the cursor rests where the prefetch computes the next
            # answer. It evaluates this window already, and a warm-up would supersede it.
            return pending
        self.counters.warm_ups += 1

        def work(cancelled: Callable[[], bool]) -> int:
            engine = self.engine
            if engine is None:
                return 0
            if self.threads is not None:
                engine.set_threads(self.threads.threads())
            prompt_prefix, _held = heal(win.prefix)
            tokens = context_prompt(engine, prompt_prefix, win.suffix, c.max_tokens, language,
                                    context, path)
            # the last tokens are where typing goes on: they would be evaluated again
            return engine.warm(tokens[:-WARM_TAIL], cancelled, abandon=self.scheduler.abandoned)

        # One warm-up at a time, of any document: the cursor rests in one place. A request
        # in this document lets it finish its batch (the request's own window, mostly).
        return self.scheduler.submit(work, key="warm", priority=Priority.WARM,
                                     document=uri).future

    def _warm_when_loaded(self, uri: str, document: str, offset: int,
                          language_id: str | None) -> None:
        """A document focused while the model still loads (an editor started on a file): warm
        it once the model is there, on the loop, unless the load failed."""
        loading = self._loaded
        if loading is None or loading.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on a loop: nobody to warm for
            return

        def loaded(future: Future[object]) -> None:
            if not future.cancelled() and future.exception() is None:
                with contextlib.suppress(RuntimeError):  # the loop has ended
                    loop.call_soon_threadsafe(
                        lambda: self.warm(uri, document, offset, language_id=language_id))

        loading.add_done_callback(loaded)

    def _prefetch(self, uri: str, document: str, offset: int, win: Window, language: Language,
                  sampling: Sampling, shown: list[Candidate]) -> None:
        """Compute, in the background, the answer to the request that follows accepting the
        top suggestion (llama.vim, llama.vscode), so that Tab and the next request is a cache
        hit. Accepting its first line, or a word, needs no prefetch: the rest of the same
        suggestion answers that request (``_typed_through``). It decodes what a request
        would (``first_answer``: a request that comes meanwhile waits for it); alternatives it
        left out are not decoded afterwards: its answer has not been shown yet."""
        c = self.settings.completion
        if not c.prefetch or not shown or not shown[0].text:
            return
        text = shown[0].text
        after = document[:offset] + text + document[offset:]
        at = offset + len(text)
        next_win = window(after, at, prefix_chars=c.prefix_chars,
                          suffix_chars=c.suffix_chars, anchor=win.start)
        context, path = self._choose(uri, next_win, language, after), self._paths.get(uri)
        key = self._key(next_win, language, context)
        if key in self._cache or key in self._prefetching:
            return
        loop = asyncio.get_running_loop()

        def work(cancelled: Callable[[], bool]) -> list[Candidate]:
            return self._compute(after, at, next_win, language, sampling, cancelled, context,
                                 path, background=True, uri=uri, first=True)[0]

        def done(future: Future[list[Candidate]]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has ended: nobody asks
                loop.call_soon_threadsafe(self._prefetched, key, future)

        job = self.scheduler.submit(work, key=f"prefetch:{uri}", priority=Priority.BACKGROUND)
        self._prefetching[key] = job.future
        job.future.add_done_callback(done)

    def _prefetched(self, key: tuple[object, ...], future: Future[list[Candidate]]) -> None:
        """A prefetch ended (on the loop): its answer goes into the cache."""
        if self._prefetching.get(key) is future:
            del self._prefetching[key]
        if not future.cancelled() and future.exception() is None:
            self._cache.put(key, future.result())
            self.counters.prefetched += 1

    async def _join_prefetch(self, key: tuple[object, ...]) -> list[Candidate] | None:
        """The answer a prefetch for ``key`` is computing (or has just computed): a request
        that comes before it is done waits for it rather than starting again; None when there
        is none, or it was superseded or failed (the request then asks the model itself)."""
        pending = self._prefetching.pop(key, None)
        if pending is None:
            return None
        try:
            return await asyncio.wrap_future(pending)
        except asyncio.CancelledError:
            self.counters.cancelled += 1
            raise
        except Exception:  # noqa: BLE001 - superseded or failed: the request asks itself
            return None

    # -- completions -----------------------------------------------------------------------

    def _sampling(self) -> Sampling:
        """How an editor's request samples (the settings, with the editor's time limit)."""
        c = self.settings.completion
        return Sampling.from_settings(c, predict_ms=c.predict_ms)

    def _key(self, win: Window, language: Language, context: Choice) -> tuple[object, ...]:
        """What tells answers apart in the cache: the window, what the model and the ranking
        were, the chunks of other files the prompt carried."""
        return (win.prefix, win.suffix, language.id, self.adapter, self._sampling(),
                self.settings.completion.rank_by_syntax, context.key)

    def _typed_through(self, uri: str, win: Window) -> list[Candidate] | None:
        last = self._last.get(uri)
        if last is None or win.suffix != last.window.suffix or win.start != last.window.start:
            return None
        if not win.prefix.startswith(last.window.prefix):
            return None
        typed = win.prefix[len(last.window.prefix):]
        if not typed:
            return None
        rest = [replace(r, text=r.text[len(typed):]) for r in last.items
                if r.text.startswith(typed) and len(r.text) > len(typed)]
        return rest or None

    def _compute(self, document: str, offset: int, win: Window, language: Language,
                 sampling: Sampling, cancelled: Callable[[], bool], context: Choice = NONE,
                 path: str | None = None, background: bool = False,
                 uri: str | None = None, since: float | None = None, first: bool = False,
                 indices: Sequence[int] | None = None,
                 ranked_with: Sequence[Candidate] = ()) -> tuple[list[Candidate], bool]:
        """Model work, on the worker thread (``uri``: the document, whose last syntax tree
        is edited instead of parsed afresh; ``since``: the request's arrival; ``first``: an
        editor's answer, ``first_answer`` with ``completion.alternatives_later``; ``indices``
        and ``ranked_with`` as ``generate_ranked`` takes them). Returns the ranked candidates
        and whether their alternatives are still to be decoded."""
        if self.engine is None:
            return [], False
        if self.threads is not None:
            self.engine.set_threads(self.threads.threads())
        if len(document) <= MAX_FULL_PARSE_BYTES:
            before, after = document[:offset], document[offset:]
        else:
            before, after, uri = win.prefix, win.suffix, None  # the window moves: no tree kept
        options: dict[str, Any] = {
            "before": before, "after": after,
            "rank_by_syntax": self.settings.completion.rank_by_syntax, "cancelled": cancelled,
            "context": context, "path": path, "background": background, "trees": self._trees,
            "document": uri, "since": since}
        owed = False
        if first and self.settings.completion.alternatives_later:
            ranked, raw, owed = first_answer(self.engine, win.prefix, win.suffix, language,
                                             sampling, **options)
        else:
            ranked, raw = generate_ranked(self.engine, win.prefix, win.suffix, language,
                                          sampling, indices=indices, ranked_with=ranked_with,
                                          **options)
        if not background:
            self.last_raw = raw
        return ranked, owed

    async def complete(self, uri: str, document: str, offset: int, *, line: int = 0,
                       character: int = 0, language_id: str | None = None,
                       invoked: bool = False) -> Answer:
        """Ranked candidates for the cursor at ``offset`` (a str index) of ``document``;
        ``invoked``: the user asked (LSP's trigger kind Invoked: cycling through suggestions,
        a key to suggest), so an answer whose alternatives are still owed waits for them."""
        started, arrived = time.perf_counter(), time.monotonic()
        self._last_request = arrived
        self.counters.requests += 1
        if self.labeller is not None:
            self.labeller.request()
        language = language_for(language_id, uri)
        request_id = new_id()
        if self.engine is None and self._loaded is not None and not self._loaded.done():
            try:
                await asyncio.wrap_future(self._loaded)
            except asyncio.CancelledError:
                self.counters.cancelled += 1
                raise
        if self.engine is None:
            self.counters.empty += 1
            return Answer(request_id, [], Source.MODEL, 0.0, language.id)

        c = self.settings.completion
        win = window(document, offset, prefix_chars=c.prefix_chars, suffix_chars=c.suffix_chars,
                     anchor=self._anchors.get(uri))
        self._anchors[uri] = win.start
        sampling = self._sampling()
        await self._cut_landed()
        context = self._choose(uri, win, language, document)
        key = self._key(win, language, context)

        source = Source.MODEL
        owes = False  # the answer's alternatives are still to be decoded
        ranked = self._typed_through(uri, win)
        if ranked is not None:
            source = Source.TYPED
            self.counters.typed_through += 1
        elif (hit := self._cache.get_fresh(key)) is not None:
            ranked, source = hit, Source.CACHE
            self.counters.cache_hits += 1
            if invoked and (whole := await self._alternatives_now(key, uri)) is not None:
                ranked = whole
        elif (joined := await self._join_prefetch(key)) is not None:
            ranked, source = joined, Source.CACHE
            self.counters.cache_hits += 1
            self.counters.joined_prefetches += 1
        else:
            job = self.scheduler.submit(
                # predict_ms counts from the arrival: the user waits for the prompt too
                lambda cancelled: self._compute(document, offset, win, language, sampling,
                                                cancelled, context, self._paths.get(uri),
                                                uri=uri, since=arrived, first=True),
                key=uri, document=uri,
            )
            try:
                computed, owes = await asyncio.wrap_future(job.future)
            except Cancelled:
                self.counters.cancelled += 1
                return Answer(request_id, [], None, 0.0, language.id)
            except asyncio.CancelledError:
                job.cancel()
                self.counters.cancelled += 1
                raise
            self._cache.put(key, computed)
            ranked = computed

        visible = [r for r in ranked if r.shown]
        self._last[uri] = _Last(win, visible)
        if source is not Source.TYPED:  # a prefetched answer prefetches the next: Tab, Tab
            self._prefetch(uri, document, offset, win, language, sampling, visible)
        latency = (time.perf_counter() - started) * 1000
        offered = identified(ranked)
        shown = [c for c in offered if c.shown]
        for item in shown:
            others = tuple(o.text for o in shown if o is not item)
            self.placed.put(item.id, Placement(uri, language.id, offset, item.text, others))
        # A cache hit refers to the recorded request whose window it shares. A typed-through
        # answer keeps its own window: a suffix of text typed on is not redacted alone (a
        # secret typed across the two would be masked in one half only).
        shares = self._windows.get(key) if source is Source.CACHE else None
        recorded = self._record(Request(
            id=request_id, uri=uri, language=language.id, line=line, character=character,
            prefix=win.prefix, suffix=win.suffix, latency_ms=latency,
            model=self.engine.name if self.engine else "", adapter=self.adapter, source=source,
            context=tuple(context.as_records()), window_of=shares,
        ), offered)
        if recorded and shares is None and source is not Source.TYPED:
            self._windows.put(key, request_id)
        if (recorded and source is Source.MODEL and self.labeller is not None
                and len(document) <= MAX_FULL_PARSE_BYTES):
            # Checked later, off this path, in the document as it is now.
            self.labeller.offer(language.id, document, offset, offered)
        if owes:
            self._owe(_Owed(request_id, recorded, self.engine.name, self.adapter, key, uri,
                            document, offset, win, language, sampling, context,
                            self._paths.get(uri), ranked, offered))
        self._last_request = time.monotonic()  # idle from the answer on
        self._decode_alternatives()
        if not shown:
            self.counters.empty += 1
        return Answer(request_id, shown, source, latency, language.id)

    # -- alternatives, after the answer ----------------------------------------------------

    def _owe(self, owed: _Owed) -> None:
        self._owed[owed.request_id] = owed
        while len(self._owed) > OWED_ALTERNATIVES:
            self._owed.popitem(last=False)
            self.counters.alternatives_dropped += 1

    def _decode_alternatives(self) -> None:
        """Queue the decoding of the newest owed alternatives (on the loop) once no request
        came for ``ALTERNATIVES_IDLE_S``, one job at a time, behind any prefetch: the lowest
        priority, so a request or a warm-up supersedes it, and the answer stays owed until the
        job completes. The newest first: its prompt is the one the KV cache holds, and a user
        who pauses is likely to cycle through it."""
        if not self._owed or self._alternatives is not None:  # None once its end is handled
            return
        loop = asyncio.get_running_loop()
        wait = self._last_request + ALTERNATIVES_IDLE_S - time.monotonic()
        if wait > 0:
            if self._idle is None:
                self._idle = loop.call_later(wait, self._idle_now)
            return
        owed = next(reversed(self._owed.values()))
        work = self._alternatives_of(owed, background=True)

        def done(future: Future[list[Candidate] | None]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has ended
                loop.call_soon_threadsafe(self._alternatives_done, owed, future)

        job = self.scheduler.submit(work, key="alternatives", priority=Priority.BACKGROUND,
                                    document=owed.uri)
        self._alternatives = job.future
        job.future.add_done_callback(done)

    def _idle_now(self) -> None:
        self._idle = None
        self._decode_alternatives()

    def _alternatives_of(self, owed: _Owed, *, background: bool
                         ) -> Callable[[Callable[[], bool]], list[Candidate] | None]:
        """The worker's job that decodes ``owed``'s alternatives and ranks them with its
        answer: None when the model or the adapter was swapped since. Side by side, each
        ending at its next newline once the request's ``predict_ms`` has passed since they
        started (as with the greedy one they would have ended with it: whole lines, and a
        bounded piece of background work, which a request would otherwise wait on for a
        step of it)."""
        sampling = owed.sampling

        def work(cancelled: Callable[[], bool]) -> list[Candidate] | None:
            engine = self.engine
            if engine is None or (engine.name, self.adapter) != (owed.model, owed.adapter):
                return None  # swapped since: these would not be the answer's alternatives
            # No document key: the kept syntax tree stays the document's newest.
            return self._compute(owed.document, owed.offset, owed.win, owed.language,
                                 sampling, cancelled, owed.context, owed.path,
                                 background=background, indices=range(1, sampling.n),
                                 ranked_with=owed.offered)[0]

        return work

    async def _alternatives_now(self, key: tuple[object, ...], uri: str
                                ) -> list[Candidate] | None:
        """The user asked for suggestions where an answer's alternatives are still owed
        (cycling through them, an explicit request): they are decoded now, at a request's
        priority, and the whole ranking answers; None when none are owed for ``key`` (or the
        decoding was cancelled or failed: the cached answer stands)."""
        owed = next((o for o in self._owed.values() if o.key == key), None)
        if owed is None:
            return None
        job = self.scheduler.submit(self._alternatives_of(owed, background=False), key=uri,
                                    document=uri)
        try:
            ranked = await asyncio.wrap_future(job.future)
        except asyncio.CancelledError:
            job.cancel()
            raise
        except Exception:  # noqa: BLE001 - superseded or failed: the cached answer stands
            return None
        if ranked is None or self._owed.pop(owed.request_id, None) is None:
            return None  # swapped, or the background job landed them meanwhile
        self._alternatives_landed(owed, ranked)
        return ranked

    def _alternatives_done(self, owed: _Owed,
                           future: Future[list[Candidate] | None]) -> None:
        """An alternatives job ended (on the loop). Superseded: the answer stays owed (the
        next answer queues it again). Done: the new candidates are recorded with the request
        (never shown: ranked after its own), offered to the labeller, and the cached answer
        becomes the whole ranking; then the next owed one is queued."""
        if self._alternatives is future:
            self._alternatives = None
        if future.cancelled() or isinstance(future.exception(), Cancelled):
            return
        if self._owed.pop(owed.request_id, None) is not None:  # else dropped meanwhile
            ranked = future.result() if future.exception() is None else None
            if ranked is None:  # failed, or the model or adapter was swapped since
                self.counters.alternatives_dropped += 1
            else:
                self._alternatives_landed(owed, ranked)
        self._decode_alternatives()

    async def alternatives_settled(self, timeout: float = 120.0) -> bool:
        """Wait until the alternatives of every answer are decoded and recorded (tests and the
        demo, before they read the store); False if some are still owed after ``timeout``."""
        deadline = time.monotonic() + timeout
        while self._owed and time.monotonic() < deadline:
            self._decode_alternatives()  # the idle timer starts them
            await asyncio.sleep(0.02)
        return not self._owed

    def _alternatives_landed(self, owed: _Owed, ranked: list[Candidate]) -> None:
        self.counters.alternatives += 1
        if self._cache.get(owed.key) is owed.cached:
            self._cache[owed.key] = ranked
        added = [replace(c, id=new_id(), shown=False) for c in ranked if not c.id]
        if not added or not owed.recorded or self.store is None:
            return
        try:
            self.store.record_candidates(owed.request_id, added, first_rank=len(owed.offered))
        except Exception:  # noqa: BLE001 - logging must never cost a completion
            log.exception("could not record the alternatives of request %s in %s",
                          owed.request_id, self.store.path)
            return
        if self.labeller is not None and len(owed.document) <= MAX_FULL_PARSE_BYTES:
            self.labeller.offer(owed.language.id, owed.document, owed.offset, added)

    # -- the event log ---------------------------------------------------------------------

    def _logged(self, uri: str) -> bool:
        """Whether a file's completions may be recorded: logging on, and the file not
        ignored (``_ignored``)."""
        if self.store is None or not self.settings.logging.enabled:
            return False
        return not self._ignored(uri)

    def _ignored(self, uri: str) -> bool:
        """Whether the setting ``logging.ignore`` or a ``.compilotignore`` in the file's folder
        or above matches it (gitignore semantics), under its own path or, through symlinks,
        its real one."""
        path = Path(uri_path(uri))
        paths = [path]
        if path.is_absolute():
            paths.append(Path(os.path.realpath(path)))
        patterns = tuple(self.settings.logging.ignore)
        return any(setting_ignores(patterns, p) or (p.is_absolute() and compilotignored(p))
                   for p in dict.fromkeys(paths))

    def _record(self, request: Request, candidates: list[Candidate]) -> bool:
        """Record the request if its file is logged; whether it was."""
        if self.store is None or not self._logged(request.uri):
            return False
        try:
            self.store.record_request(request, candidates)
        except Exception:  # noqa: BLE001 - logging must never cost a completion
            log.exception("could not record request %s in %s", request.id, self.store.path)
            return False
        return True

    def event(self, candidate_id: str, kind: EventKind, accepted_length: int | None = None,
              inferred: bool | None = None) -> bool:
        """Record an accept / reject / shown / partial event (``inferred``: as the client says);
        False if unknown or not logged."""
        if self.store is None or not isinstance(candidate_id, str):
            return False
        try:
            return self.store.record_event(candidate_id, kind, accepted_length, inferred)
        except Exception:  # noqa: BLE001
            log.exception("could not record %s event for %s", kind, candidate_id)
            return False

    def stats(self, *, prompt: bool = False) -> dict[str, object]:
        """Counters of the service, the worker, the engine and the store; with ``prompt``,
        also the token ids of the last prompt (to check the FIM layout).
        """
        out: dict[str, object] = {
            "service": asdict(self.counters),
            "scheduler": asdict(self.scheduler.counters),
            "engine": self.engine.counters.as_dict() if self.engine else None,
            "threads": self.engine.n_threads if self.engine else None,
            "model": str(self.engine.path) if self.engine else None,
            "fim": self.engine.fim is not None if self.engine else None,
            "adapter": self.adapter,
            "error": self.engine_error,
            "trees": self._trees.documents(),
        }
        if prompt and self.engine is not None:
            out["last_prompt"] = list(self.engine.counters.last_prompt)
            out["fim_tokens"] = (vars(self.engine.fim) if self.engine.fim else None)
        if self.store is not None:
            out["store"] = {"path": str(self.store.path), **self.store.counts()}
        return out

    def close(self) -> None:
        """Stop the worker and close the store."""
        if self._idle is not None:
            self._idle.cancel()
        self.scheduler.stop()
        self._cutter.shutdown(wait=False, cancel_futures=True)
        if self.store is not None:
            self.store.close()

