"""Prompts per model family on the tiny real models of each architecture: the FIM layout from
each vocabulary's own ids, the repository layout with other files (Qwen2.5-Coder's, StarCoder2's),
the context budget, and the tokens that end a candidate."""

from __future__ import annotations

from pathlib import Path

import llama_cpp
import pytest

from compilot.server.engine import Engine, FimTokens, Sampling
from compilot.settings import CompletionSettings, ModelSettings
from tests.arch_models import Fixture
from tests.fim_model import write_fim_model

N_CTX = 256
MAX_TOKENS = 16
PREFIX = "from pkg.util import X\n\n\ndef f():\n    return "
SUFFIX = "\n\n\nprint(f())\n"
PATH = "pkg/main.py"
UTIL = ("pkg/util.py", "X = 1\n")
STARCODER_VOCAB = Path(__file__).parent / "data" / "ggml-vocab-starcoder.gguf"

FIM = {
    "llama": None,
    "qwen2": FimTokens(151659, 151661, 151660, repo=151663, file_sep=151664),
    "starcoder2": FimTokens(1, 3, 2, repo=5, file_sep=6),
    "gemma3": None,
}
FIM_TEXTS = {
    "qwen2": ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|repo_name|>",
              "<|file_sep|>"),
    "starcoder2": ("<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<repo_name>", "<file_sep>"),
}
# The layouts as the families document them (Qwen2.5-Coder's README, "Repository Level Code
# Infilling"; StarCoder2's paper, arXiv 2402.19173 section 5).
REPO_TEXT = {
    "qwen2": ("<|repo_name|>demo\n<|file_sep|>pkg/util.py\nX = 1\n\n<|file_sep|>pkg/main.py\n"
              f"<|fim_prefix|>{PREFIX}<|fim_suffix|>{SUFFIX}<|fim_middle|>"),
    "starcoder2": ("<repo_name>demo<file_sep>pkg/util.py\nX = 1\n"
                   f"<file_sep><fim_prefix>pkg/main.py\n{PREFIX}<fim_suffix>{SUFFIX}<fim_middle>"),
}
STOPS = {
    "llama": {128009},  # <|eot_id|>
    "qwen2": {151645, 151659, 151660, 151661, 151662, 151663, 151664},  # <|im_end|>, FIM...
    "starcoder2": {0, 1, 2, 3, 4, 5, 6},  # <|endoftext|>, <fim_*>, <repo_name>, <file_sep>
    "gemma3": {50256},  # GPT-2's <|endoftext|>
}


@pytest.fixture(scope="module")
def engine(fixture: Fixture) -> Engine:
    return Engine(fixture.gguf, ModelSettings(n_ctx=N_CTX, n_threads=1))


def text(engine: Engine, tokens: list[int]) -> str:
    return engine.llm.detokenize(tokens, special=True).decode()


def in_file(engine: Engine, prompt: list[int]) -> list[int]:
    """The FIM part of a repository prompt without the current file's path."""
    assert engine.fim is not None and engine.repo_format is not None
    start = prompt.index(engine.fim.prefix)
    if engine.repo_format.path_in_prefix:
        named = engine.tokenize(f"{PATH}\n")
        assert prompt[start + 1 : start + 1 + len(named)] == named
        return prompt[start : start + 1] + prompt[start + 1 + len(named) :]
    return prompt[start:]


def test_fim_tokens_are_the_vocabularys_own(fixture: Fixture, engine: Engine) -> None:
    assert engine.fim == FIM[fixture.arch]
    if engine.fim is not None:
        ids = (engine.fim.prefix, engine.fim.suffix, engine.fim.middle, engine.fim.repo,
               engine.fim.file_sep)
        assert tuple(text(engine, [i]) for i in ids) == FIM_TEXTS[fixture.arch]


def test_fim_prompt_layout_or_prefix_alone(fixture: Fixture, engine: Engine) -> None:
    bos = [engine.llm.token_bos()] if engine.add_bos else []
    prompt = engine.prompt(PREFIX, SUFFIX, MAX_TOKENS)
    if engine.fim is None:
        assert not fixture.fim
        assert prompt == bos + engine.tokenize(PREFIX)
        return
    assert prompt == (bos + [engine.fim.prefix] + engine.tokenize(PREFIX) + [engine.fim.suffix]
                      + engine.tokenize(SUFFIX) + [engine.fim.middle])


def test_repository_layout_with_context_files(fixture: Fixture, engine: Engine) -> None:
    plain = engine.prompt(PREFIX, SUFFIX, MAX_TOKENS)
    prompt = engine.prompt(PREFIX, SUFFIX, MAX_TOKENS, path=PATH, context=[UTIL], repo="demo")
    if fixture.arch not in REPO_TEXT:
        assert engine.repo_format is None
        assert prompt == plain  # no file separator: the context (and the path) is dropped
        return
    assert text(engine, prompt) == REPO_TEXT[fixture.arch]
    assert in_file(engine, prompt) == plain  # the prefix and suffix tokens are today's
    fim = engine.fim
    assert fim is not None
    # The special tokens are the vocabulary's ids, not their spellings tokenized as text.
    assert [t for t in prompt if t in STOPS[fixture.arch]] == [
        fim.repo, fim.file_sep, fim.file_sep, fim.prefix, fim.suffix, fim.middle]


def test_without_path_and_context_the_prompt_is_unchanged(engine: Engine) -> None:
    plain = engine.prompt(PREFIX, SUFFIX, MAX_TOKENS)
    assert engine.prompt(PREFIX, SUFFIX, MAX_TOKENS, path=None, context=()) == plain
    assert engine.prompt(PREFIX, SUFFIX, MAX_TOKENS, repo="demo") == plain


def file_of(engine: Engine, name: str, tokens: int) -> tuple[str, str]:
    """A context file of about ``tokens`` tokens."""
    lines: list[str] = []
    while len(engine.tokenize("".join(lines))) < tokens:
        lines.append(f"{name.upper()}_{len(lines)} = {len(lines)}\n")
    return f"pkg/{name}.py", "".join(lines)


def test_context_takes_only_the_room_left_whole_files_newest_first(engine: Engine) -> None:
    if engine.repo_format is None:
        pytest.skip("no repository tokens")
    plain = engine.prompt(PREFIX, SUFFIX, MAX_TOKENS)
    bare = engine.prompt(PREFIX, SUFFIX, MAX_TOKENS, path=PATH)
    room = N_CTX - MAX_TOKENS - 1 - len(bare)
    huge, old = file_of(engine, "huge", room + 10), file_of(engine, "old", room * 2 // 3)
    mid, new = file_of(engine, "mid", room // 3), file_of(engine, "new", 5)
    prompt = engine.prompt(PREFIX, SUFFIX, MAX_TOKENS, path=PATH, context=[old, mid, huge, new])
    assert len(prompt) <= N_CTX - MAX_TOKENS
    assert in_file(engine, prompt) == plain
    shown = text(engine, prompt)
    # huge never fits; new and mid do; old would overflow after them, so it goes.
    assert "pkg/huge.py" not in shown and "pkg/old.py" not in shown
    assert shown.index("pkg/mid.py") < shown.index("pkg/new.py") < shown.index(PATH)
    assert mid[1] in shown and new[1] in shown  # whole files, not cut


def test_a_prefix_filling_the_window_keeps_todays_prompt(engine: Engine) -> None:
    long_prefix = "".join(f"v{i} = {i}\n" for i in range(200)) + PREFIX
    plain = engine.prompt(long_prefix, SUFFIX, MAX_TOKENS)
    prompt = engine.prompt(long_prefix, SUFFIX, MAX_TOKENS, path=PATH, context=[UTIL],
                           repo="demo")
    assert prompt == plain  # not even the names fit: the prefix is never cut for them


def test_stop_set_holds_the_end_pad_and_separator_tokens(fixture: Fixture,
                                                         engine: Engine) -> None:
    assert engine.stop_ids == STOPS[fixture.arch]
    assert all(engine.stops(t) for t in engine.stop_ids)
    assert not engine.stops(engine.tokenize("x")[0])


def test_a_repository_prompt_generates(engine: Engine) -> None:
    prompt = engine.prompt(PREFIX, SUFFIX, 4, path=PATH, context=[UTIL], repo="demo")
    sampling = Sampling.from_settings(CompletionSettings(), n=2, max_tokens=4, seed=1)
    candidates = engine.generate(prompt, sampling)
    assert engine.counters.last_prompt == prompt
    assert len(candidates) == 2 and all(c.tokens <= 4 for c in candidates)


@pytest.mark.parametrize("favourite, tokens", [
    pytest.param("<file_sep>", 0, id="file-sep-stops"),
    pytest.param("x", 6, id="text-goes-on"),
])
def test_generation_stops_when_the_greedy_token_starts_a_new_file(
        tmp_path: Path, favourite: str, tokens: int) -> None:
    # A tiny llama whose greedy token is always ``favourite`` (tests/fim_model.py), on
    # StarCoder2's vocabulary: llama.cpp does not count <file_sep> as end of generation.
    model = write_fim_model(tmp_path / "model.gguf", STARCODER_VOCAB, favourite=favourite)
    engine = Engine(model, ModelSettings(n_ctx=128, n_threads=1))
    try:
        assert engine.fim == FIM["starcoder2"]
        assert not llama_cpp.llama_vocab_is_eog(engine.llm._model.vocab, 6)
        [greedy] = engine.generate(engine.prompt("a = ", "", 6),
                                   Sampling.from_settings(CompletionSettings(), n=1, max_tokens=6))
        assert greedy.tokens == tokens
        assert greedy.text == ("" if tokens == 0 else favourite * tokens)
    finally:
        engine.llm.close()
