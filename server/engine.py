"""The inference engine: one llama.cpp model, our own sampling loop, KV cache reuse.

Why our own loop rather than ``create_completion``:
- log-probabilities: llama-cpp-python's ``logprobs`` needs ``logits_all=True`` (n_ctx x n_vocab
  floats, ~400 MB at n_ctx 2048 for a 49k vocabulary, and slower steps); reading the last
  token's logits after each step costs one n_vocab copy;
- fill-in-the-middle: ``create_completion(suffix=...)`` in 0.3.36 puts token 0 where the FIM
  tokens belong (a TODO in its source), so the FIM sequence is built here from the vocab's ids,
  with other files of the repository before it in the layout the model family trained on;
- stopping: llama.cpp's end-of-generation set misses tokens a FIM model emits when it starts a
  new document (StarCoder2's ``<file_sep>``, any model's ``<fim_prefix>``), so we stop on those;
- n candidates share one prompt evaluation (the KV cache is rewound to the prompt's end);
- cancellation between prompt batches and between tokens.

The engine is not thread-safe: exactly one worker thread (scheduler.py) drives it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compilot.feedback.records import Candidate
from compilot.paths import user_cache
from compilot.server.layout import (
    FILE_SEP_TEXTS,
    REPO_TEXTS,
    FimTokens,
    RepoFormat,
    Vocabulary,
    repository,
)
from compilot.server.requantize import SERVED_DIR, served_file
from compilot.settings import MAX_CANDIDATES, CompletionSettings, ModelSettings

log = logging.getLogger(__name__)


class Cancelled(Exception):
    """The request was superseded or cancelled; its work stopped."""


class ModelLoadError(RuntimeError):
    """The model file could not be loaded; the message names it."""


@dataclass
class Counters:
    """What the engine has done since it started (exposed by `compilot.stats`)."""

    generations: int = 0
    """Requests whose candidates were computed to the end."""
    aborted: int = 0
    """Requests stopped part-way because they were superseded or cancelled."""
    prompt_tokens: int = 0
    """Prompt tokens evaluated by the model."""
    reused_tokens: int = 0
    """Prompt tokens whose KV cache entries were reused from the previous request."""
    generated_tokens: int = 0
    last_prompt: list[int] = field(default_factory=list)
    warmed_tokens: int = 0
    """Prompt tokens evaluated ahead of a request (``Engine.warm``)."""
    warm_aborts: int = 0
    """Warm-up batches abandoned midway for a request."""
    background_tokens: int = 0
    """Prompt and generated tokens of background generations (prefetch), which the counters
    above leave out, so that they say what the requests cost."""
    time_limited: int = 0
    """Candidates ended at a newline because their decoding ran past ``predict_ms``."""

    def as_dict(self) -> dict[str, object]:
        """The counters as `compilot.stats` reports them."""
        return {
            "generations": self.generations,
            "aborted": self.aborted,
            "prompt_tokens": self.prompt_tokens,
            "reused_tokens": self.reused_tokens,
            "generated_tokens": self.generated_tokens,
            "warmed_tokens": self.warmed_tokens,
            "warm_aborts": self.warm_aborts,
            "background_tokens": self.background_tokens,
            "time_limited": self.time_limited,
            "last_prompt_length": len(self.last_prompt),
            "last_prompt_head": self.last_prompt[:4],
        }


WARM_BATCH = 256
"""Tokens a warm-up evaluates per llama.cpp call: the batch that evaluates prompts fastest
(``bench/llama_build.py``: 372 tokens/s against 305 in batches of 64, 2 cores). A request in
another document does not wait for it: llama.cpp asks, between the operations of a batch,
whether to go on (its abort callback), and abandons the batch; a request in the warm-up's own
document lets the batch finish, since it is that request's window."""

@dataclass
class _Sequence:
    """One candidate being generated."""

    index: int
    rng: np.random.Generator
    forced: str
    room: int
    deadline: float = 0.0
    """``time.monotonic()`` after which the candidate ends at its next newline; 0: never."""
    out: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    data: bytes = b""
    pieces: list[bytes] = field(default_factory=list)

    def whole_lines(self) -> None:
        """Drop what follows the last newline generated (all of it if there is none): the
        candidate ends with the line it completed last."""
        keep = len(self.pieces)
        while keep and b"\n" not in self.pieces[keep - 1]:
            keep -= 1
        del self.out[keep:], self.logprobs[keep:], self.pieces[keep:]
        self.data = b"".join(self.pieces)


@dataclass(frozen=True, kw_only=True)
class Sampling:
    """How to sample the candidates of one request (the defaults live in the settings)."""

    n: int
    max_tokens: int
    temperature: float
    top_k: int
    top_p: float
    seed: int
    predict_ms: float = 0.0
    """Milliseconds after which a candidate ends at its next newline (llama.cpp server's
    ``t_max_predict_ms``, which llama.vim sets), counted from ``generate``'s ``since`` (an
    editor's request: its arrival, what the user waits for) or else from the start of
    decoding: a suggestion of whole lines in bounded time, the rest left to the next request
    (or its prefetch); 0: no limit. Only the editor's requests set it
    (``completion.predict_ms``): evaluations and training data must not depend on the speed of
    the machine."""

    @classmethod
    def from_settings(cls, completion: CompletionSettings, **overrides: Any) -> Sampling:
        """The sampling of ``[completion]``, with ``overrides`` (an evaluation's n, seed...)."""
        values: dict[str, Any] = {
            "n": max(1, completion.candidates), "max_tokens": max(1, completion.max_tokens),
            "temperature": completion.temperature, "top_k": completion.top_k,
            "top_p": completion.top_p, "seed": completion.seed}
        return cls(**{**values, **overrides})


def _deadline(sampling: Sampling, since: float | None = None) -> float:
    """When candidates end at their next newline (``Sampling.predict_ms`` after ``since``, a
    ``time.monotonic()``, or after now); 0: never."""
    if sampling.predict_ms <= 0:
        return 0.0
    return (time.monotonic() if since is None else since) + sampling.predict_ms / 1000


_LOG_FILTER: list[Any] = []
"""The llama.cpp log callback installed by ``_quiet_abandoned_batches`` (kept alive here)."""


def _quiet_abandoned_batches(llama_cpp: Any) -> None:
    """Leave out of llama.cpp's log (llama-cpp-python prints it to stderr, the editor's log)
    the line it writes for each warm-up batch abandoned for a request ("removing memory
    module entries"): an abandoned warm-up is routine, not an error."""
    if _LOG_FILTER:
        return
    from llama_cpp import _logger

    @llama_cpp.llama_log_callback
    def quiet(level: int, text: bytes, data: ctypes.c_void_p) -> None:
        if b"removing memory module entries" not in text:
            _logger.llama_log_callback(level, text, data)

    _LOG_FILTER.append(quiet)
    llama_cpp.llama_log_set(quiet, ctypes.c_void_p(0))


def _check_gguf(path: Path) -> None:
    """Fail with a clear message before llama.cpp sees a file that is not a GGUF."""
    try:
        with path.open("rb") as f:
            magic = f.read(4)
    except OSError as exc:
        raise ModelLoadError(f"cannot read model file {path}: {exc}") from exc
    if magic != b"GGUF":
        raise ModelLoadError(f"{path} is not a GGUF model file (magic {magic!r})")


class Engine:
    """A loaded GGUF and the state of its KV cache."""

    def __init__(self, path: Path, model: ModelSettings | None = None) -> None:
        """Load the GGUF at ``path`` as ``model`` says (context, threads, batch; the
        ``[model]`` defaults when None); ModelLoadError names a file that cannot serve."""
        import llama_cpp

        model = model or ModelSettings()
        n_ctx, n_batch = model.n_ctx, model.n_batch

        self._llama_cpp = llama_cpp
        _check_gguf(path)
        self.served_path = served_file(path, model.requantize, user_cache() / SERVED_DIR)
        """What llama.cpp loaded: ``path``, or its faster copy (``server/requantize.py``)."""
        self.n_threads = model.n_threads or os.cpu_count() or 1
        try:
            self.llm = llama_cpp.Llama(
                model_path=str(self.served_path), n_ctx=n_ctx, n_batch=n_batch,
                n_threads=self.n_threads, logits_all=False, verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(f"llama.cpp could not load {path}: {exc}") from exc
        self.n_seq = self._with_sequences(llama_cpp, min(MAX_CANDIDATES, int(
            llama_cpp.llama_max_parallel_sequences())))
        self.path = path
        self.n_ctx = n_ctx
        self.n_batch = n_batch
        self.n_vocab = self.llm.n_vocab()
        self._vocab = self.llm._model.vocab
        self._layout = Vocabulary(llama_cpp, self.llm)
        self.fim: FimTokens | None = self._layout.fim
        self.repo_format: RepoFormat | None = self._layout.repo_format
        self.stop_ids = self._stop_tokens()
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self._vocab))
        self.counters = Counters()
        self.name = path.name
        # Each token's text, for constraining the first tokens to the held-back whitespace.
        self._texts = [self.llm.detokenize([i]).decode("utf-8", errors="replace")
                       for i in range(self.n_vocab)]
        self._allowed_cache: dict[str, np.ndarray] = {}
        self._background = False
        """A background generation (prefetch) is running: its tokens count apart."""
        self._adapter: Any = None  # llama_adapter_lora_p of the adapter being applied
        self.adapter_path: Path | None = None
        self._abort: Callable[[], bool] | None = None
        """While a warm-up's batch evaluates: whether to abandon it (a request came)."""
        self._abort_callback = llama_cpp.ggml_abort_callback(self._should_abort)
        llama_cpp.llama_set_abort_callback(self.llm._ctx.ctx, self._abort_callback, None)
        _quiet_abandoned_batches(llama_cpp)

    def _with_sequences(self, llama_cpp: Any, n: int) -> int:
        """Give the model a context of ``n`` sequences sharing one KV cache of ``n_ctx`` cells
        (llama-cpp-python makes one sequence, except for embeddings), so that a request's
        candidates are decoded side by side, one batch per token; 1 where llama.cpp refuses."""
        if n <= 1:
            return 1
        from llama_cpp import _internals

        params = self.llm.context_params
        params.n_seq_max, params.kv_unified = n, True
        try:
            ctx = _internals.LlamaContext(model=self.llm._model, params=params, verbose=False)
        except ValueError:
            params.n_seq_max, params.kv_unified = 1, False
            log.warning("llama.cpp made no context of %d sequences: candidates are decoded "
                        "one after another", n)
            return 1
        self.llm._ctx.close()
        self.llm._ctx = ctx
        return n

    def _should_abort(self, _data: Any) -> bool:
        """llama.cpp's abort callback, called between the operations of a batch (on the
        thread that evaluates it): true abandons the batch, whose positions llama.cpp then
        removes from the KV cache (``llama_decode`` returns 2)."""
        abort = self._abort
        try:
            return bool(abort is not None and abort())
        except Exception:  # noqa: BLE001 - a callback must not raise into C
            return False

    def set_threads(self, n: int) -> None:
        """Use ``n`` CPU threads from the next evaluation on (on the worker, between
        requests)."""
        if n != self.n_threads:
            self._llama_cpp.llama_set_n_threads(self.llm._ctx.ctx, n, n)
            self.n_threads = n

    def _stop_tokens(self) -> frozenset[int]:
        """Tokens that end a candidate besides llama.cpp's end-of-generation ones: end of turn,
        FIM padding, and any token that starts a new document or FIM part."""
        cpp, vocab, layout = self._llama_cpp, self._vocab, self._layout
        ids = {cpp.llama_vocab_eot(vocab), cpp.llama_vocab_fim_pad(vocab),
               cpp.llama_vocab_fim_pre(vocab), cpp.llama_vocab_fim_suf(vocab),
               cpp.llama_vocab_fim_mid(vocab), layout.repo_token(), layout.file_sep_token(),
               # llama.cpp may report another spelling (SmolLM2: <reponame>, not <repo_name>)
               layout.control(REPO_TEXTS), layout.control(FILE_SEP_TEXTS)}
        return frozenset(int(i) for i in ids if i >= 0)

    def stops(self, token: int) -> bool:
        """Whether ``token`` ends a candidate (it is not part of the completion)."""
        return token in self.stop_ids or bool(
            self._llama_cpp.llama_vocab_is_eog(self._vocab, token))

    # -- adapters --------------------------------------------------------------------------

    def set_adapter(self, path: Path | None, scale: float = 1.0) -> None:
        """Apply the GGUF LoRA adapter at ``path`` (None: the base alone), without reloading
        the base model. Call between requests (on the worker). The KV cache is dropped: it
        was computed under the previous adapter."""
        cpp = self._llama_cpp
        ctx = self.llm._ctx.ctx
        new = None
        if path is not None:
            _check_gguf(path)
            new = cpp.llama_adapter_lora_init(self.llm._model.model, str(path).encode())
            if not new:
                raise ModelLoadError(f"llama.cpp could not load the LoRA adapter {path}")
            adapters = (cpp.llama_adapter_lora_p_ctypes * 1)(new)
            scales = (ctypes.c_float * 1)(scale)
            status = cpp.llama_set_adapters_lora(ctx, adapters, 1, scales)
        else:
            status = cpp.llama_set_adapters_lora(ctx, None, 0, None)
        if status != 0:
            if new:
                cpp.llama_adapter_lora_free(new)
            raise ModelLoadError(f"llama.cpp refused the LoRA adapter {path} (status {status})")
        if self._adapter:
            cpp.llama_adapter_lora_free(self._adapter)
        self._adapter, self.adapter_path = new, path
        self.llm.n_tokens = 0  # the next prompt is evaluated afresh under the new weights

    # -- prompts ---------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        """Tokens of ``text`` (no BOS, special tokens as text: user code is never control)."""
        data = text.encode("utf-8", errors="replace")
        return self.llm.tokenize(data, add_bos=False, special=False) if data else []

    def prompt(self, prefix: str, suffix: str, max_tokens: int, *, path: str | None = None,
               context: Sequence[tuple[str, str]] = (), repo: str | None = None) -> list[int]:
        """The prompt for a cursor between ``prefix`` and ``suffix`` in the file ``path``.

        FIM models get ``<PRE> prefix <SUF> suffix <MID>``; others the prefix alone. The
        prefix is trimmed from the left and the suffix from the right to fit the context.

        ``context`` holds other files as (path, text), the most relevant last. A FIM model with
        a file separator token gets them, the repository's name ``repo`` (left out when None)
        and ``path`` before the FIM part, as its family was trained (``RepoFormat``); a model
        without one gets no context (and no path). The files only take the room the prefix
        and suffix leave: each is whole or left out, the least relevant first, so the prefix
        and suffix are what they would be without context. Without ``path`` and ``context``
        the prompt is the FIM (or prefix) prompt alone.
        """
        budget = self.n_ctx - max_tokens - 4
        pre = self.tokenize(prefix)
        bos = [self.llm.token_bos()] if self.add_bos else []
        if self.fim is None:
            return bos + pre[max(0, len(pre) - budget + len(bos)):]
        suf = self.tokenize(suffix)
        suf = suf[: max(0, min(len(suf), budget // 4, budget - len(pre)))]
        pre = pre[max(0, len(pre) - (budget - len(suf) - len(bos))):]
        fim = self.fim.wrap(pre, suf)
        if self.repo_format is None or (path is None and not context):
            return bos + fim
        return bos + repository(fim, self.fim, self.repo_format, self.tokenize, path, context,
                                repo, budget - len(bos) - len(pre) - len(suf))

    # -- generation ------------------------------------------------------------------------

    def _logits(self) -> np.ndarray:
        """The logits of the last token evaluated."""
        return self._logits_at(-1)

    def _cached_prefix(self, tokens: list[int]) -> int:
        """How many leading ``tokens`` the KV cache already holds."""
        llm = self.llm
        cached = llm.input_ids[: llm.n_tokens]
        common = 0
        limit = min(len(cached), len(tokens))
        while common < limit and cached[common] == tokens[common]:
            common += 1
        return common

    def _evaluate_prompt(self, tokens: list[int], cancelled: Callable[[], bool]) -> np.ndarray:
        """Evaluate ``tokens``, reusing the KV cache of the longest common prefix."""
        llm = self.llm
        common = self._cached_prefix(tokens)
        common = min(common, len(tokens) - 1)  # re-evaluate at least one token for its logits
        llm.n_tokens = common
        if not self._background:
            self.counters.reused_tokens += common
        # The last token is always evaluated on its own: batched and single-token matmuls
        # round differently, and a near-tie decided by that would make the same prompt give
        # different candidates depending on what the KV cache held before (seen on an AMD
        # EPYC: the greedy candidate changed between a fresh and a cached prompt).
        body, last = tokens[common:-1], tokens[-1:]
        # A background prompt (a prefetch's, an alternatives') gives way midway through a
        # batch: a request does not wait for the rest of it.
        abort = cancelled if self._background else None
        for start in range(0, len(body), self.n_batch):
            if cancelled() or not self._eval(body[start : start + self.n_batch], abort):
                raise Cancelled
        if cancelled():
            raise Cancelled
        llm.eval(last)
        if self._background:
            self.counters.background_tokens += len(tokens) - common
        else:
            self.counters.prompt_tokens += len(tokens) - common
        return self._logits()

    def warm(self, tokens: list[int], cancelled: Callable[[], bool],
             batch: int = WARM_BATCH, abandon: Callable[[], bool] | None = None) -> int:
        """Evaluate ``tokens`` into the KV cache ahead of a request (the stable part of a
        window), in batches of ``WARM_BATCH``, up to the first one after which
        ``cancelled()``; ``abandon()`` (default: ``cancelled``) drops the running batch
        midway (a request for another window: the batch is no use to it). The batches
        evaluated stay, and the request's ``_evaluate_prompt`` reuses them as the common
        prefix. Returns the tokens evaluated."""
        llm = self.llm
        common = self._cached_prefix(tokens)
        llm.n_tokens = common
        done = 0
        for start in range(common, len(tokens), batch):
            if cancelled():
                break
            chunk = tokens[start : start + batch]
            if not self._eval(chunk, abandon or cancelled):
                self.counters.warm_aborts += 1
                break
            done += len(chunk)
        self.counters.warmed_tokens += done
        return done

    def _eval(self, chunk: list[int], abort: Callable[[], bool] | None) -> bool:
        """Evaluate ``chunk`` into the KV cache; with ``abort``, llama.cpp asks it between
        the batch's operations and, when true, drops the batch's positions: False then (the
        cache holds what it held before)."""
        if abort is None:
            self.llm.eval(chunk)
            return True
        self._abort = abort
        try:
            self.llm.eval(chunk)
        except RuntimeError:
            if abort():  # abandoned midway: llama.cpp dropped the batch
                return False
            raise
        finally:
            self._abort = None
        return True

    def _allowed(self, forced: str) -> np.ndarray:
        """Token ids whose text agrees with ``forced``: starts with it, or is a prefix of it."""
        if forced not in self._allowed_cache:
            ids = [i for i, t in enumerate(self._texts)
                   if t and (t.startswith(forced) or forced.startswith(t))]
            self._allowed_cache[forced] = np.array(ids, dtype=np.int64)
        return self._allowed_cache[forced]

    def generate(self, tokens: list[int], sampling: Sampling, *, forced: str = "",
                 stop: Callable[[str], bool] = lambda _text: False,
                 cancelled: Callable[[], bool] = lambda: False,
                 background: bool = False, since: float | None = None,
                 indices: Sequence[int] | None = None) -> list[Candidate]:
        """``sampling.n`` candidates after ``tokens``: the first greedy, the rest sampled.

        ``forced`` is text every candidate must begin with (token healing: the prompt's
        trailing whitespace is held back and the first tokens are constrained to re-produce
        it, so the model picks its natural token boundary, such as newline-plus-indent).
        ``stop(text)`` ends a candidate early; ``cancelled()`` aborts the whole request
        (raising Cancelled) between prompt batches and between tokens. A ``background``
        generation (prefetch) is counted in ``background_tokens`` only. ``since`` (a
        ``time.monotonic()``): when the time of ``sampling.predict_ms`` started, the request's
        arrival (default: once the prompt is evaluated). ``indices``: which of the candidates
        to decode, in this order (default all of ``range(sampling.n)``): index 0 is the greedy
        one, index i > 0 the sampled one seeded by (``sampling.seed``, i), so the alternatives
        of a request that showed its greedy candidate alone can be decoded later, as they
        would have been with it.
        """
        if not tokens:
            raise ValueError("empty prompt")
        self._background = background  # the worker runs one generation at a time
        if not background:
            self.counters.last_prompt = list(tokens)
        try:
            prompt_logits = self._evaluate_prompt(tokens, cancelled)
            deadline = _deadline(sampling, since)
            wanted = list(range(max(1, sampling.n)) if indices is None else indices)
            if 1 < len(wanted) <= self.n_seq:
                candidates = self._sample_side_by_side(tokens, prompt_logits, sampling, wanted,
                                                       forced, stop, cancelled, deadline)
            else:
                candidates = [
                    self._sample_one(tokens, prompt_logits, sampling, index, forced, stop,
                                     cancelled, deadline)
                    for index in wanted
                ]
        except Cancelled:
            if not background:
                self.counters.aborted += 1
            raise
        finally:
            self._background = False
        if not background:
            self.counters.generations += 1
        return candidates

    def _step(self, seq: _Sequence, logits: np.ndarray, sampling: Sampling,
              stop: Callable[[str], bool]) -> int | None:
        """Pick ``seq``'s next token from ``logits``: the token to evaluate next, or None when
        the candidate is complete (a stop token, ``stop``, or no room left)."""
        allowed = self._allowed(seq.forced) if seq.forced else None
        if allowed is not None and len(allowed):
            token, logprob = self._pick(logits, sampling, seq.index, seq.rng, allowed)
            text = self._texts[token]
            seq.forced = seq.forced[len(text):] if seq.forced.startswith(text) else ""
        else:
            seq.forced = ""
            token, logprob = self._pick(logits, sampling, seq.index, seq.rng)
        if self.stops(token):
            return None
        seq.out.append(token)
        seq.logprobs.append(logprob)
        piece = self.llm.detokenize([token])
        seq.data += piece
        seq.pieces.append(piece)
        full = len(seq.out) >= seq.room
        if (b"\n" in piece or full) and stop(seq.data.decode("utf-8", errors="ignore")):
            return None
        if (b"\n" in piece and 0 < seq.deadline < time.monotonic()
                and seq.data[: -len(piece)].strip()):  # a line with text in it is done
            self.counters.time_limited += 1
            return None
        return None if full else token

    def _sample_one(self, prompt: list[int], logits: np.ndarray, sampling: Sampling,
                    index: int, forced: str, stop: Callable[[str], bool],
                    cancelled: Callable[[], bool], deadline: float) -> Candidate:
        llm = self.llm
        llm.n_tokens = len(prompt)  # rewind to the prompt's end; eval drops the rest
        seq = _Sequence(index, np.random.default_rng([sampling.seed, index]), forced,
                        min(sampling.max_tokens, self.n_ctx - len(prompt)), deadline)
        while seq.room > 0:
            if cancelled():
                raise Cancelled
            token = self._step(seq, logits, sampling, stop)
            if token is None:
                break
            llm.eval([token])
            logits = self._logits()
        return self._candidate(seq)

    def _candidate(self, seq: _Sequence) -> Candidate:
        if self._background:
            self.counters.background_tokens += len(seq.out)
        else:
            self.counters.generated_tokens += len(seq.out)
        mean = float(np.mean(seq.logprobs)) if seq.logprobs else None
        text = seq.data.decode("utf-8", errors="replace")
        return Candidate(text=text, raw=text, tokens=len(seq.out), logprob=mean)

    def _sample_side_by_side(self, prompt: list[int], logits: np.ndarray, sampling: Sampling,
                             indices: list[int], forced: str, stop: Callable[[str], bool],
                             cancelled: Callable[[], bool], deadline: float
                             ) -> list[Candidate]:
        """The candidates of ``indices`` decoded together: the j-th on sequence j of the KV
        cache, which starts as a copy of the prompt's (sequence 0), and one batch per step
        holding the next token of every candidate not yet complete: the weights are read once
        per step, not once per candidate (``bench/candidates.py``: 3 candidates of 32 tokens
        in 787 ms against 1,176 one after another, 2 cores, AMX Xeon). Each candidate is
        picked as ``_sample_one`` picks it. Past the ``deadline``, the sampled candidates end
        with the greedy one: those still in a line keep their whole lines only (an
        alternative does not hold up the answer by the rest of a longer line)."""
        lc, llm = self._llama_cpp, self.llm
        ctx, memory, length = llm._ctx.ctx, llm._ctx.memory, len(prompt)
        n = len(indices)
        room = min(sampling.max_tokens, self.n_ctx - length)
        seqs = [_Sequence(i, np.random.default_rng([sampling.seed, i]), forced, room, deadline)
                for i in indices]
        llm.n_tokens = length
        lc.llama_memory_seq_rm(memory, 0, length, -1)
        for i in range(1, n):
            lc.llama_memory_seq_rm(memory, i, -1, -1)
            lc.llama_memory_seq_cp(memory, 0, i, 0, length)
        batch = lc.llama_batch_init(n, 0, 1)
        pending = {i: logits for i in range(n)}  # sequence -> the logits of its next pick
        try:
            while pending and room > 0:
                if cancelled():
                    raise Cancelled
                picked = []
                for i, row in pending.items():
                    token = self._step(seqs[i], row, sampling, stop)
                    if token is not None:
                        picked.append((i, token))
                if not picked:
                    break
                for j, (i, token) in enumerate(picked):
                    batch.token[j] = token
                    batch.pos[j] = length + len(seqs[i].out) - 1
                    batch.n_seq_id[j] = 1
                    batch.seq_id[j][0] = i
                    batch.logits[j] = True
                batch.n_tokens = len(picked)
                if lc.llama_decode(ctx, batch) != 0:
                    raise RuntimeError("llama_decode failed for a batch of candidates")
                pending = {i: self._logits_at(j) for j, (i, _) in enumerate(picked)}
                if (seqs[0].index == 0 and 0 not in pending and pending
                        and 0 < deadline < time.monotonic()):
                    for i in pending:
                        seqs[i].whole_lines()
                    self.counters.time_limited += len(pending)
                    break
        finally:
            lc.llama_batch_free(batch)
            for i in range(1, n):
                lc.llama_memory_seq_rm(memory, i, -1, -1)
            lc.llama_memory_seq_rm(memory, 0, length, -1)
            llm.n_tokens = length
        return [self._candidate(seq) for seq in seqs]

    def _logits_at(self, index: int) -> np.ndarray:
        ptr = self._llama_cpp.llama_get_logits_ith(self.llm._ctx.ctx, index)
        return np.ctypeslib.as_array(
            ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(self.n_vocab,)
        ).copy()

    @staticmethod
    def _pick(logits: np.ndarray, sampling: Sampling, index: int, rng: np.random.Generator,
              allowed: np.ndarray | None = None) -> tuple[int, float]:
        """Next token (among ``allowed`` if given) and its log-probability (temperature 1)."""
        top = float(logits.max())
        logz = top + float(np.log(np.exp(logits - top).sum()))
        if allowed is not None:
            masked = np.full_like(logits, -np.inf)
            masked[allowed] = logits[allowed]
            logits = masked
        if index == 0 or sampling.temperature <= 0:
            token = int(logits.argmax())
            return token, float(logits[token]) - logz
        k = max(1, min(sampling.top_k or len(logits), len(logits)))
        ids = np.argpartition(-logits, k - 1)[:k]
        scaled = logits[ids] / sampling.temperature
        probs = np.exp(scaled - scaled.max())
        probs /= probs.sum()
        order = np.argsort(-probs)
        keep = int(np.searchsorted(np.cumsum(probs[order]), sampling.top_p) + 1)
        chosen = order[:keep]
        p = probs[chosen] / probs[chosen].sum()
        token = int(ids[chosen[rng.choice(len(chosen), p=p)]])
        return token, float(logits[token]) - logz


def load(path: Path, model: ModelSettings) -> Engine:
    """Load ``path`` and log how long it took."""
    started = time.perf_counter()
    engine = Engine(path, model)
    log.info("loaded %s in %.2fs (FIM: %s)%s", path, time.perf_counter() - started,
             engine.fim is not None,
             "" if engine.served_path == path else f" as {engine.served_path}")
    return engine
