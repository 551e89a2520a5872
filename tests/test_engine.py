"""The engine on the real embedded model, and the worker that runs it."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from compilot.models import embedded_model_path
from compilot.server.engine import WARM_BATCH, Cancelled, Engine, ModelLoadError, Sampling
from compilot.server.prompt import heal
from compilot.server.scheduler import Priority, Scheduler
from compilot.settings import CompletionSettings, ModelSettings


def sampling(**changes: object) -> Sampling:
    return Sampling.from_settings(CompletionSettings(), **{"n": 1, **changes})


PREFIX = 'def add(a, b):\n    """Return the sum of a and b."""\n'


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(embedded_model_path(), ModelSettings(n_ctx=1024))


def test_embedded_model_has_no_fim_and_prompt_is_prefix(engine: Engine) -> None:
    assert engine.fim is None
    assert engine.prompt(PREFIX, "ignored suffix", 16) == engine.tokenize(PREFIX)


def test_embedded_model_drops_context_but_stops_at_a_new_file(engine: Engine) -> None:
    # SmolLM2's vocabulary has StarCoder2's <file_sep> but no FIM tokens: no repository
    # layout, yet a <file_sep> it emits ends the candidate.
    plain = engine.prompt(PREFIX, "", 16)
    assert engine.repo_format is None
    assert engine.prompt(PREFIX, "", 16, path="a.py", repo="r",
                         context=[("b.py", "B = 1\n")]) == plain
    [file_sep] = engine.llm.tokenize(b"<file_sep>", add_bos=False, special=True)
    assert file_sep in engine.stop_ids and engine.stops(file_sep)


def test_candidates_have_log_probs_and_are_reproducible(engine: Engine) -> None:
    three = sampling(n=3, max_tokens=12, temperature=0.8, seed=7)
    first = engine.generate(engine.prompt(PREFIX, "", 12), three, forced="    ")
    again = engine.generate(engine.prompt(PREFIX, "", 12), three, forced="    ")
    assert [c.text for c in first] == [c.text for c in again]
    assert len(first) == 3
    for cand in first:
        assert cand.text.startswith("    ")  # token healing: forced text comes first
        assert 0 < cand.tokens <= 12
        assert cand.logprob is not None and cand.logprob < 0


def test_candidates_are_decoded_side_by_side_as_one_after_another_picks_them(
        engine: Engine) -> None:
    """A request's candidates share one batch per token (a KV sequence each): reproducible,
    the greedy one completing the line as the sequential decoding does, and the KV cache
    left as after one candidate (the prompt, nothing of the other sequences)."""
    import llama_cpp

    assert engine.n_seq >= 3
    three = sampling(n=3, max_tokens=12, temperature=0.8, seed=7)
    prompt = engine.prompt(PREFIX, "", 12)
    side = engine.generate(prompt, three, forced="    ")
    memory = engine.llm._ctx.memory
    assert [llama_cpp.llama_memory_seq_pos_max(memory, i) for i in (1, 2)] == [-1, -1]
    assert llama_cpp.llama_memory_seq_pos_max(memory, 0) == len(prompt) - 1
    assert engine.generate(prompt, three, forced="    ") == side  # reproducible
    engine.n_seq, kept = 1, engine.n_seq
    try:
        sequential = engine.generate(prompt, three, forced="    ")
    finally:
        engine.n_seq = kept
    # A batch rounds differently from a single token, so past a near tie the two can part
    # (here after the function's last line); what the line completes is the same.
    assert side[0].text.split("\n")[0] == sequential[0].text.split("\n")[0]
    assert all(c.text.startswith("    ") for c in side)
    reused = engine.counters.reused_tokens
    engine.generate(prompt, sampling(max_tokens=2))
    assert engine.counters.reused_tokens - reused == len(prompt) - 1  # the prompt's KV kept


def test_alternatives_decoded_later_are_those_decoded_with_the_greedy_candidate(
        engine: Engine) -> None:
    """``indices``: a request that decodes its greedy candidate alone gets, by decoding the
    others afterwards, the alternatives it would have had (the same seeds, side by side)."""
    three = sampling(n=3, max_tokens=12, temperature=0.8, seed=7)
    prompt = engine.prompt(PREFIX, "", 12)
    together = engine.generate(prompt, three, forced="    ")
    generated = engine.counters.generated_tokens
    [greedy] = engine.generate(prompt, three, forced="    ", indices=[0])
    assert engine.counters.generated_tokens - generated == greedy.tokens  # the greedy alone
    later = engine.generate(prompt, three, forced="    ", indices=[1, 2])
    assert greedy.text.split("\n")[0] == together[0].text.split("\n")[0]
    assert [c.text for c in later] == [c.text for c in together[1:]]
    assert len({c.text for c in together}) > 1  # the sampled ones differ: a real check


def test_a_background_prompt_gives_way_midway_through_a_batch(engine: Engine) -> None:
    """A prefetch's or an alternatives' prompt is evaluated under llama.cpp's abort callback:
    a request that comes meanwhile does not wait for the rest of the batch (was: up to
    ``n_batch`` tokens, most of a second on 2 cores), and the KV cache stays sound."""
    source = (Path(json.__file__).parent / "decoder.py").read_text()
    prompt = engine.prompt(source[:4000], "", 8)
    assert len(prompt) > engine.n_batch
    engine.llm.n_tokens = 0
    answers = iter([False])  # go on at the first look; stop at llama.cpp's first question
    with pytest.raises(Cancelled):
        engine.generate(prompt, sampling(max_tokens=8), background=True,
                        cancelled=lambda: next(answers, True))
    assert engine.llm.n_tokens == 0  # the batch was dropped, not finished
    then = engine.generate(prompt, sampling(max_tokens=8))
    engine.llm.n_tokens = 0
    assert [c.text for c in then] == [c.text for c in engine.generate(prompt,
                                                                      sampling(max_tokens=8))]


@pytest.mark.parametrize("n", [1, 3], ids=["one", "side-by-side"])
def test_a_candidate_past_its_time_ends_at_its_next_newline(engine: Engine, n: int) -> None:
    """``predict_ms``: once decoding has run that long, a candidate ends with the line it is
    on (llama.cpp's t_max_predict_ms); without it, the same candidate runs on."""
    prompt = engine.prompt("def fizzbuzz(n):\n", "", 48)
    free = engine.generate(prompt, sampling(n=n, max_tokens=48))
    assert free[0].text.count("\n") >= 2, free[0].text  # the greedy body runs several lines
    limited = engine.counters.time_limited
    quick = engine.generate(prompt, sampling(n=n, max_tokens=48, predict_ms=0.001))
    assert engine.counters.time_limited > limited
    for cand in quick:
        assert "\n" not in cand.text.rstrip(), cand.text  # one line, with its line break
    assert free[0].text.startswith(quick[0].text)  # the greedy line is the same, cut short


def test_a_request_whose_time_went_on_its_prompt_still_gets_a_line(engine: Engine) -> None:
    """``predict_ms`` counts from the request's arrival (``since``): one that spent it all on
    its prompt ends its candidates at their first line with text, never at the newline that
    token healing forces first (that gave empty suggestions)."""
    prefix, held = heal("def fizzbuzz(n):\n    ")
    assert held.startswith("\n")  # the first token re-produces the newline and indentation
    prompt = engine.prompt(prefix, "", 48)
    long_ago = time.monotonic() - 60
    for n in (1, 3):
        quick = engine.generate(prompt, sampling(n=n, max_tokens=48, predict_ms=250),
                                forced=held, since=long_ago)
        assert quick[0].text.strip(), quick[0].text
        assert quick[0].text.strip().count("\n") == 0, quick[0].text  # one line


def test_past_the_time_the_alternatives_end_with_the_greedy_candidate(engine: Engine) -> None:
    """Side by side, once the greedy candidate has ended past ``predict_ms``, the sampled ones
    stop too, with the lines they completed: a longer line of an alternative no longer holds
    up the answer."""
    prompt = engine.prompt("import os\n\n\ndef list_python_files(folder):\n", "", 64)
    free = engine.generate(prompt, sampling(n=3, max_tokens=64, temperature=1.5, top_k=0))
    limited = engine.counters.time_limited
    quick = engine.generate(prompt, sampling(n=3, max_tokens=64, predict_ms=0.001,
                                             temperature=1.5, top_k=0))
    greedy = quick[0]
    assert engine.counters.time_limited > limited
    for cand in quick[1:]:
        # no more tokens than the greedy one had when it ended, and only whole lines
        assert cand.tokens <= greedy.tokens, (cand.text, greedy.text)
        assert cand.text == "" or cand.text.rstrip(" \t").endswith("\n"), cand.text
    # without the time limit they ran on past where the greedy candidate ended
    assert any(c.tokens > greedy.tokens for c in free[1:]), [c.text for c in free]


def test_a_keystroke_evaluates_only_new_tokens(engine: Engine) -> None:
    engine.generate(engine.prompt(PREFIX + "    return a", "", 4), sampling(max_tokens=4))
    before = engine.counters.prompt_tokens
    engine.generate(engine.prompt(PREFIX + "    return a +", "", 4), sampling(max_tokens=4))
    evaluated = engine.counters.prompt_tokens - before
    assert 1 <= evaluated <= 2, evaluated


def test_a_warm_up_batch_is_abandoned_midway_for_a_request(engine: Engine) -> None:
    """A warm-up evaluates batches of WARM_BATCH tokens, and a request that comes meanwhile
    does not wait for the batch: llama.cpp asks between its operations (the abort callback)
    and drops it; the batches done before stay, and the KV cache answers as an empty one."""
    source = (Path(json.__file__).parent / "decoder.py").read_text()
    prompt = engine.prompt(source[:4000], "", 8)
    assert len(prompt) > 2 * WARM_BATCH
    engine.llm.n_tokens = 0
    looks: list[str] = []

    def never() -> bool:
        looks.append("look")
        return False

    # one batch to its end: the warm-up looks once before it, llama.cpp asks during it
    assert engine.warm(prompt[:WARM_BATCH], never) == WARM_BATCH
    assert len(looks) > 1, "llama.cpp never asked whether to go on"
    # the next batch: go on at the warm-up's look, stop at llama.cpp's first question
    answers = iter([False])
    aborts = engine.counters.warm_aborts
    assert engine.warm(prompt, lambda: next(answers, True)) == 0
    assert engine.counters.warm_aborts == aborts + 1
    assert engine.llm.n_tokens == WARM_BATCH  # the batch done before stays
    warm_then = engine.generate(prompt, sampling(max_tokens=8))
    engine.llm.n_tokens = 0
    cold = engine.generate(prompt, sampling(max_tokens=8))
    assert [c.text for c in warm_then] == [c.text for c in cold]


def test_cancel_stops_between_tokens(engine: Engine) -> None:
    calls = {"n": 0}

    def cancelled() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    aborted = engine.counters.aborted
    with pytest.raises(Cancelled):
        engine.generate(engine.prompt(PREFIX, "", 32), sampling(max_tokens=32),
                        cancelled=cancelled)
    assert engine.counters.aborted == aborted + 1


@pytest.mark.parametrize("content", [b"", b"not a model", b"GGUF" + b"\x00" * 7])
def test_bad_model_files_raise_a_clear_error(tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(content)
    with pytest.raises(ModelLoadError, match=str(bad)):
        Engine(bad)


def spinner(started: threading.Event):
    """A job's work that says it started, then runs until it is cancelled."""

    def slow(cancelled) -> str:
        started.set()
        while not cancelled():
            time.sleep(0.001)
        raise Cancelled

    return slow


def test_scheduler_supersedes_queued_and_running_jobs() -> None:
    scheduler = Scheduler()
    started = threading.Event()
    slow = spinner(started)

    running = scheduler.submit(slow, key="doc")
    started.wait(5)
    queued = [scheduler.submit(lambda c, i=i: i, key="doc") for i in range(5)]
    other = scheduler.submit(lambda c: "other", key="other-doc")
    with pytest.raises(Cancelled):
        running.future.result(5)
    for job in queued[:-1]:
        with pytest.raises(Cancelled):
            job.future.result(5)
    assert queued[-1].future.result(5) == 4
    assert other.future.result(5) == "other"
    assert scheduler.counters.superseded == 4
    assert scheduler.counters.completed == 2
    scheduler.stop()


def test_a_job_supersedes_every_job_of_a_lower_priority() -> None:
    scheduler = Scheduler()
    started = threading.Event()
    slow = spinner(started)

    prefetch = scheduler.submit(slow, key="prefetch:a", priority=Priority.BACKGROUND)
    started.wait(5)
    repair = scheduler.submit(lambda c: "repaired", key="repair:x", priority=Priority.BACKGROUND)
    warm = scheduler.submit(lambda c: "warm b", key="warm", priority=Priority.WARM)
    with pytest.raises(Cancelled):  # a warm-up elsewhere stops the running prefetch...
        prefetch.future.result(5)
    with pytest.raises(Cancelled):  # ... and drops the queued background job
        repair.future.result(5)
    assert warm.future.result(5) == "warm b"
    # a background job leaves a warm-up alone; a request stops it
    started.clear()
    warming = scheduler.submit(slow, key="warm", priority=Priority.WARM)
    started.wait(5)
    later = scheduler.submit(lambda c: "later", key="prefetch:b", priority=Priority.BACKGROUND)
    assert not warming.cancelled
    request = scheduler.submit(lambda c: "answer", key="doc")
    with pytest.raises(Cancelled):
        warming.future.result(5)
    assert request.future.result(5) == "answer"
    with pytest.raises(Cancelled):
        later.future.result(5)
    scheduler.stop()


def test_a_request_lets_a_warm_up_of_its_document_finish_its_batch() -> None:
    """A request stops a warm-up either way; for the same document the batch in progress is
    finished (it is the request's window), for another one it is abandoned midway."""
    scheduler = Scheduler()
    started = threading.Event()
    slow = spinner(started)

    for document, abandoned in (("a.py", False), ("b.py", True)):
        started.clear()
        warm = scheduler.submit(slow, key="warm", priority=Priority.WARM, document="a.py")
        started.wait(5)
        request = scheduler.submit(lambda c: "answer", key=document, document=document)
        assert request.future.result(5) == "answer"
        assert warm.cancelled and warm.abandoned is abandoned
    scheduler.stop()


def test_a_future_cancelled_by_its_awaiter_never_kills_the_worker() -> None:
    # asyncio.wrap_future cancels the concurrent future when the LSP request is cancelled;
    # the worker used to die on set_exception(InvalidStateError) and hang every later request.
    scheduler = Scheduler()
    gate = threading.Event()
    blocker = scheduler.submit(lambda c: gate.wait(5), key="a")
    queued = scheduler.submit(lambda c: "never", key="b")
    assert queued.future.cancel()
    gate.set()
    assert blocker.future.result(5) is True
    assert scheduler.submit(lambda c: "alive", key="c").future.result(5) == "alive"
    assert scheduler.counters.superseded == 1
    scheduler.stop()
