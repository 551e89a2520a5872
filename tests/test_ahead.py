"""Work done ahead of a request, on the embedded model: a warm-up evaluates the window before
the first request there (and a request stops it and takes over what it evaluated), and a
prefetch computes the answer that follows accepting a suggestion."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path

import pytest

from compilot import settings as settings_mod
from compilot.feedback.labeller import Labeller
from compilot.feedback.records import Source
from compilot.feedback.store import EventLog, Store
from compilot.languages import language_for
from compilot.paths import DataDir
from compilot.server.completion import WARM_TAIL, CompletionService
from compilot.server.context import NONE
from compilot.server.engine import Cancelled, Engine
from compilot.server.prompt import window
from compilot.settings import CheckSettings

SOURCE = (Path(json.__file__).parent / "decoder.py").read_text()
CURSOR = SOURCE.index("    def decode(self, s, _w=WHITESPACE.match):")
AT = SOURCE.index("\n", SOURCE.index('"""', SOURCE.index('"""', CURSOR) + 3)) + 1 + 8
"""After the docstring of JSONDecoder.decode, indented: the start of its body."""
DOCUMENT = SOURCE[:AT] + SOURCE[SOURCE.index("\n", AT):]


def variant(name: str) -> tuple[str, int]:
    """The document, made different for each test (else one test's answer is the next one's
    cache hit), and the cursor in it."""
    head = f"# {name}\n"
    return head + DOCUMENT, AT + len(head)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> CompletionService:
    # a long window (about 2,000 tokens): a warm-up takes long enough to be caught midway
    settings, _ = settings_mod.load({"completion": {"maxTokens": 8, "candidates": 1,
                                                   "prefixChars": 12000}},
                                    path=tmp_path_factory.mktemp("cfg") / "none.toml")
    svc = CompletionService(settings, store=None)
    svc.load().result()
    assert svc.engine is not None, svc.engine_error
    yield svc
    svc.close()


def engine_of(service: CompletionService) -> Engine:
    assert service.engine is not None
    return service.engine


def forget_the_kv_cache(service: CompletionService) -> None:
    """Nothing in the KV cache, done on the worker (a prefetch may be running there: this
    job, not one of the background, stops it first)."""
    engine = engine_of(service)
    service.scheduler.submit(lambda _cancelled: setattr(engine.llm, "n_tokens", 0)
                             ).future.result(60)


async def result_of(future: Future[object] | None) -> object:
    assert future is not None
    try:
        return await asyncio.wrap_future(future)
    except Cancelled:
        return 0


async def test_a_warm_up_leaves_the_first_request_only_the_last_tokens(
        service: CompletionService) -> None:
    engine = engine_of(service)
    document, at = variant("a")
    warmed = await result_of(service.warm("file:///w/a.py", document, at, language_id="python"))
    assert isinstance(warmed, int) and warmed > 1000  # the window: about 2,000 tokens
    before = engine.counters.prompt_tokens
    answer = await service.complete("file:///w/a.py", document, at, language_id="python")
    assert answer.source is Source.MODEL
    assert engine.counters.prompt_tokens - before <= WARM_TAIL + 1


async def test_a_request_stops_a_warm_up_and_takes_over_what_it_evaluated(
        service: CompletionService) -> None:
    engine = engine_of(service)
    forget_the_kv_cache(service)  # nothing of this window in the KV cache
    document, at = variant("b")
    warm = service.warm("file:///w/b.py", document, at, language_id="python")
    for _ in range(6000):  # until the warm-up has evaluated its first batch
        if engine.llm.n_tokens >= 64:
            break
        await asyncio.sleep(0.005)
    reused = engine.counters.reused_tokens
    answer = await service.complete("file:///w/b.py", document, at, language_id="python")
    assert answer.source is Source.MODEL
    warmed = await result_of(warm)
    assert isinstance(warmed, int)
    total = len(engine.counters.last_prompt)
    assert warmed < total - WARM_TAIL, "the request should have stopped the warm-up"
    # what the warm-up evaluated, the request did not evaluate again
    assert engine.counters.reused_tokens - reused >= warmed
    # and the answer is the one a cold start gives
    forget_the_kv_cache(service)
    service._cache.clear()  # noqa: SLF001 - the same window, computed afresh
    cold = await service.complete("file:///w/c.py", document, at, language_id="python")
    assert cold.source is Source.MODEL
    assert [c.text for c in answer.items] == [c.text for c in cold.items]


async def test_tab_then_the_next_request_is_a_prefetched_cache_hit(
        service: CompletionService) -> None:
    uri = "file:///w/d.py"
    document, at = variant("d")
    prefetched = service.counters.prefetched
    first = await service.complete(uri, document, at, language_id="python")
    assert first.source is Source.MODEL and first.items, "no suggestion to accept"
    for _ in range(1200):  # the prefetch lands through the loop
        if service.counters.prefetched > prefetched:
            break
        await asyncio.sleep(0.1)
    text = first.items[0].text
    accepted = document[:at] + text + document[at:]
    generated = engine_of(service).counters.generated_tokens
    second = await service.complete(uri, accepted, at + len(text), language_id="python")
    assert second.source is Source.CACHE
    assert engine_of(service).counters.generated_tokens == generated  # nothing computed now


async def test_tab_at_once_waits_for_the_prefetch_instead_of_asking_again(
        service: CompletionService) -> None:
    """A request that comes while its prefetch is still computing (Tab at once) takes the
    prefetch's answer when it is done: the model is not asked twice for the same window."""
    uri = "file:///w/j.py"
    document, at = variant("j")
    first = await service.complete(uri, document, at, language_id="python")
    assert first.source is Source.MODEL and first.items, "no suggestion to accept"
    assert service._prefetching  # noqa: SLF001 - the loop has not run since: still pending
    joined = service.counters.joined_prefetches
    generated = engine_of(service).counters.generated_tokens
    text = first.items[0].text
    accepted = document[:at] + text + document[at:]
    second = await service.complete(uri, accepted, at + len(text), language_id="python")
    assert second.source is Source.CACHE
    assert service.counters.joined_prefetches == joined + 1
    assert engine_of(service).counters.generated_tokens == generated  # only the prefetch's


async def test_a_prefetch_does_not_hold_up_a_request(service: CompletionService) -> None:
    uri = "file:///w/e.py"
    document, at = variant("e")
    first = await service.complete(uri, document, at, language_id="python")
    assert first.items
    # the user types on instead of accepting: the request stops the prefetch at its next token
    typed = document[:at] + "zq" + document[at:]
    second = await asyncio.wait_for(
        service.complete(uri, typed, at + 2, language_id="python"), 120)
    assert second.source is Source.MODEL
    assert service.scheduler.counters.failed == 0


async def answer_and_prefetch(service: CompletionService, uri: str, document: str,
                              at: int) -> Future[object]:
    """A suggestion at ``at``, and the prefetch it started (still pending: the loop has not
    run since)."""
    before = set(service._prefetching)  # noqa: SLF001
    first = await service.complete(uri, document, at, language_id="python")
    assert first.source is Source.MODEL and first.items, "no suggestion"
    started = [f for k, f in service._prefetching.items() if k not in before]  # noqa: SLF001
    assert len(started) == 1
    return started[0]


async def test_the_cursor_resting_elsewhere_stops_a_prefetch_for_where_it_was(
        service: CompletionService) -> None:
    """A prefetch computes the answer after an accept at the old place; once the cursor rests
    in another document, the warm-up there goes first (it waited for the prefetch before)."""
    first_uri, there = "file:///w/k.py", "file:///w/l.py"
    document, at = variant("k")
    prefetch = await answer_and_prefetch(service, first_uri, document, at)
    other = (Path(json.__file__).parent / "encoder.py").read_text()  # a window not cached
    other_at = other.index("\n", len(other) // 2) + 1
    warmed = await result_of(service.warm(there, other, other_at, language_id="python"))
    assert isinstance(warmed, int) and warmed > 1000
    with pytest.raises(Cancelled):
        prefetch.result(60)


async def test_the_cursor_resting_where_the_prefetch_computes_leaves_it_alone(
        service: CompletionService) -> None:
    """Tab on a suggestion of several lines moves the cursor to another line, and the client
    tells the server that it rests there: the prefetch computes that very window, and goes on."""
    uri = "file:///w/m.py"
    document, at = variant("m")
    prefetch = await answer_and_prefetch(service, uri, document, at)
    text = service._last[uri].items[0].text  # noqa: SLF001 - the suggestion shown
    accepted = document[:at] + text + document[at:]
    warm_ups = service.counters.warm_ups
    assert service.warm(uri, accepted, at + len(text), language_id="python") is prefetch
    assert service.counters.warm_ups == warm_ups
    assert isinstance(prefetch.result(120), list)


async def test_the_embedded_model_gets_no_other_files_unless_as_comments(
        service: CompletionService) -> None:
    """The embedded model has no repository tokens, and ``context.as_comments`` is off by
    default: a file opened is not cut into the ring (no CPU taken from a warm-up), and a
    request's prompt carries no chunks."""
    assert engine_of(service).repo_format is None
    assert not service.settings.context.as_comments
    helper = "def read_headers(lines):\n    return dict(l.split(':', 1) for l in lines)\n"
    assert service.file_seen("file:///w/helpers.py", helper) is None
    # even with chunks in the ring (cut while the setting was on), none reaches a prompt
    service.context.add_file("file:///w/helpers.py", "helpers.py", helper)
    document = "import helpers\n\ndef parse(lines):\n    return read_headers("
    win = window(document, len(document), prefix_chars=3000, suffix_chars=0)
    language = language_for("python", "file:///w/n.py")
    assert service._choose("file:///w/n.py", win, language, document) is NONE  # noqa: SLF001
    on = replace(service.settings, context=replace(service.settings.context, as_comments=True))
    service.settings = on
    try:
        assert service._choose("file:///w/n.py", win, language, document).chunks  # noqa: SLF001
    finally:
        service.settings = replace(on, context=replace(on.context, as_comments=False))


async def test_a_document_focused_while_the_model_loads_is_warmed_once_it_is_there(
        tmp_path: Path) -> None:
    """An editor started on a file tells the focus before the model has loaded: the warm-up
    happens when the load ends, not never (the first suggestion would pay the whole window)."""
    settings, _ = settings_mod.load({"completion": {"maxTokens": 8, "candidates": 1}},
                                    path=tmp_path / "none.toml")
    svc = CompletionService(settings, store=None)
    try:
        loading = svc.load()
        document, at = variant("loading")
        assert svc.warm("file:///w/l.py", document, at, language_id="python") is None
        assert not loading.done() and svc.counters.warm_ups == 0
        await asyncio.wrap_future(loading)
        for _ in range(600):
            if svc.counters.warm_ups:
                break
            await asyncio.sleep(0.05)
        assert svc.counters.warm_ups == 1
    finally:
        svc.close()


async def test_a_cache_hit_writes_no_new_window(tmp_path: Path) -> None:
    settings, _ = settings_mod.load({"completion": {"maxTokens": 8, "candidates": 1,
                                                   "prefetch": False}},
                                    path=tmp_path / "none.toml")
    store = Store.in_dir(DataDir(tmp_path / "data"))
    svc = CompletionService(settings, store=store)
    svc.load().result()
    try:
        uri = (tmp_path / "x.py").as_uri()
        first = await svc.complete(uri, DOCUMENT, AT, language_id="python")
        again = await svc.complete(uri, DOCUMENT, AT, language_id="python")
        assert (first.source, again.source) == (Source.MODEL, Source.CACHE)
    finally:
        svc.close()
    store = Store.in_dir(DataDir(tmp_path / "data"))
    rows = {r["id"]: r for r in store.query("SELECT id, prefix, suffix, window_of FROM requests")}
    hit = rows[again.request_id]
    assert (hit["prefix"], hit["suffix"], hit["window_of"]) == ("", "", first.request_id)
    assert len(rows[first.request_id]["prefix"]) > 1000
    window = store.query("SELECT prefix FROM request_windows WHERE id = ?", (again.request_id,))
    assert window[0]["prefix"] == rows[first.request_id]["prefix"]


def later(tmp_path: Path, store: EventLog | None = None, labeller: Labeller | None = None,
          **completion: object) -> CompletionService:
    """A loaded service with ``completion.alternatives_later`` on: three candidates, no
    prefetch (the tests watch the alternatives alone), ``completion`` over that."""
    settings, _ = settings_mod.load(
        {"completion": {"candidates": 3, "prefetch": False, "alternativesLater": True,
                        **completion}}, path=tmp_path / "none.toml")
    svc = CompletionService(settings, store=store, labeller=labeller)
    svc.load().result()
    return svc


async def test_an_answer_shows_its_greedy_candidate_and_its_alternatives_follow(
        tmp_path: Path) -> None:
    """``completion.alternatives_later``: a request decodes its greedy candidate alone (what a
    user waits for); the other candidates are decoded afterwards, recorded with that request
    (never shown, ranked after it), checked by the labeller, and added to its cached answer,
    where the next request for the window finds them."""
    store = Store.in_dir(DataDir(tmp_path / "data"))
    labeller = Labeller(store, CheckSettings(idle_ms=0))
    # no time limit: the greedy candidate here is a whole `if` statement, which parses
    svc = later(tmp_path, store, labeller, maxTokens=12, temperature=1.0, predictMs=0)
    try:
        uri = (tmp_path / "x.py").as_uri()
        engine = engine_of(svc)
        generated = engine.counters.generated_tokens
        first = await svc.complete(uri, DOCUMENT, AT, language_id="python")
        assert first.source is Source.MODEL and len(first.items) == 1
        assert first.items[0].parsed is True
        assert engine.counters.generated_tokens - generated <= 12  # one candidate's tokens
        assert await svc.alternatives_settled(120)
        assert svc.counters.alternatives == 1
        assert engine.counters.generated_tokens - generated <= 12  # they were background work
        again = await svc.complete(uri, DOCUMENT, AT, language_id="python")
        assert again.source is Source.CACHE  # ranked together now: more to cycle through
        assert {c.text for c in again.items} - {c.text for c in first.items}, again.items
        assert labeller.wait(120)
    finally:
        svc.close()
        labeller.close()
    store = Store.in_dir(DataDir(tmp_path / "data"))
    rows = store.query("SELECT id, rank, shown, text FROM candidates WHERE request_id = ? "
                       "ORDER BY rank", (first.request_id,))
    assert [r["id"] for r in rows[:1]] == [first.items[0].id]
    assert len(rows) > 1 and [r["rank"] for r in rows] == list(range(len(rows)))
    assert [r["shown"] for r in rows[1:]] == [0] * (len(rows) - 1)  # never shown
    checked = {r["candidate_id"] for r in store.query(
        "SELECT candidate_id FROM checks WHERE trigger = 'answer'")}
    assert {r["id"] for r in rows[1:]} <= checked  # the labeller checked the alternatives


async def test_a_request_supersedes_the_alternatives_which_stay_owed(tmp_path: Path) -> None:
    """The alternatives of an answer are the lowest priority: a request stops their decoding,
    and they are decoded afterwards (the answer stays owed until they are)."""
    svc = later(tmp_path, maxTokens=12, predictMs=0)
    try:
        uri = (tmp_path / "y.py").as_uri()
        first = await svc.complete(uri, DOCUMENT, AT, language_id="python")
        assert svc._alternatives is None  # not while the user may still be typing
        for _ in range(200):  # ALTERNATIVES_IDLE_S later they start
            if svc._alternatives is not None:
                break
            await asyncio.sleep(0.02)
        assert svc._alternatives is not None
        second = await svc.complete(uri, DOCUMENT, AT - 8, language_id="python")
        assert (first.source, second.source) == (Source.MODEL, Source.MODEL)
        assert svc.counters.alternatives == 0  # stopped for the second request
        assert list(svc._owed) == [first.request_id, second.request_id]
        assert await svc.alternatives_settled(120)
        assert svc.counters.alternatives == 2 and svc.counters.alternatives_dropped == 0
    finally:
        svc.close()


async def test_a_greedy_candidate_that_does_not_parse_gets_its_alternatives_at_once(
        tmp_path: Path) -> None:
    """When nothing of the greedy candidate can be shown that parses (here the opening line
    of an `if` whose body did not fit), the request decodes the sampled ones at once and
    ranks them with it, as a request of all three would: one of them that parses is shown,
    and nothing is owed."""
    svc = later(tmp_path, maxTokens=8, temperature=1.0, predictMs=0)
    try:
        engine = engine_of(svc)
        generated = engine.counters.generated_tokens
        answer = await svc.complete((tmp_path / "z.py").as_uri(), DOCUMENT, AT,
                                    language_id="python")
        assert answer.items and answer.items[0].parsed is True, answer.items
        assert engine.counters.generated_tokens - generated > 8  # more than the greedy one
        assert not svc._owed and svc._alternatives is None
    finally:
        svc.close()


async def test_asking_again_where_alternatives_are_owed_decodes_them_now(
        tmp_path: Path) -> None:
    """An invoked request (the user cycles through suggestions: VS Code asks again with the
    trigger kind Invoked, the Neovim plugin too) for a window whose alternatives are still
    owed decodes them at a request's priority and answers with the whole ranking."""
    svc = later(tmp_path, maxTokens=12, temperature=1.0, predictMs=0)
    try:
        uri = (tmp_path / "w.py").as_uri()
        first = await svc.complete(uri, DOCUMENT, AT, language_id="python")
        assert len(first.items) == 1 and list(svc._owed) == [first.request_id]
        again = await svc.complete(uri, DOCUMENT, AT, language_id="python", invoked=True)
        assert again.source is Source.CACHE and len(again.items) > 1, again.items
        assert not svc._owed and svc.counters.alternatives == 1
        assert await svc.alternatives_settled(60)
        assert svc.counters.alternatives == 1  # not decoded twice
    finally:
        svc.close()


async def test_a_greedy_line_ended_by_the_time_limit_is_shown_alone(tmp_path: Path) -> None:
    """A greedy candidate that the time limit ended at its first line (here the opening line
    of an `if`) is unfinished, not broken: it is shown alone, and its alternatives come
    after the answer, not in a second pass that the user would wait for."""
    svc = later(tmp_path, maxTokens=12, predictMs=1)
    try:
        engine = engine_of(svc)
        generated = engine.counters.generated_tokens
        answer = await svc.complete((tmp_path / "v.py").as_uri(), DOCUMENT, AT,
                                    language_id="python")
        [item] = answer.items
        assert item.text == "if not isinstance(s):" and item.parsed is False
        assert engine.counters.generated_tokens - generated < 12  # the greedy line alone
        assert list(svc._owed) == [answer.request_id]
    finally:
        svc.close()
