"""What a hostile or careless client sends: the server answers, names what is wrong, and goes on.

The campaign of issue 12, one finding per test, each of which failed before its fix.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from compilot import settings as settings_mod
from compilot.server.completion import CompletionService


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> CompletionService:
    """The completion service on the embedded model, recording nothing."""
    settings, _ = settings_mod.load({"completion": {"maxTokens": 8, "candidates": 2}},
                                    path=tmp_path_factory.mktemp("cfg") / "none.toml")
    svc = CompletionService(settings, store=None)
    svc.load().result()
    assert svc.engine is not None, svc.engine_error
    yield svc
    svc.close()


@pytest.mark.parametrize(("document", "offset"), [
    pytest.param("", 0, id="empty-file"),
    pytest.param("x = 1\n", 0, id="cursor-at-0-0"),
    pytest.param("\n\n   ", 0, id="blank-file-start"),
])
async def test_a_cursor_with_nothing_before_it_gets_an_empty_answer(
        service: CompletionService, document: str, offset: int) -> None:
    """Was -32603 "empty prompt" with a traceback (a model without FIM tokens and no BOS gets
    no prompt tokens at all there)."""
    answer = await service.complete("file:///tmp/empty.py", document, offset,
                                    language_id="python")
    assert answer.source is not None
    if not service.engine.fim and not service.engine.add_bos:  # type: ignore[union-attr]
        assert answer.items == []


@pytest.mark.parametrize(("overrides", "named"), [
    pytest.param({"completion": {"prefixChars": 0}}, "completion.prefix_chars", id="prefix-0"),
    pytest.param({"completion": {"prefixChars": -5}}, "completion.prefix_chars",
                 id="prefix-negative"),
    pytest.param({"completion": {"candidates": 1000}}, "completion.candidates",
                 id="candidates-1000"),
    pytest.param({"completion": {"candidates": 0}}, "completion.candidates", id="candidates-0"),
    pytest.param({"completion": {"maxTokens": 0}}, "completion.max_tokens", id="max-tokens-0"),
    pytest.param({"completion": {"maxTokens": 2044}}, "completion.max_tokens",
                 id="max-tokens-fills-the-context"),
    pytest.param({"model": {"nCtx": 8}}, "model.n_ctx", id="n-ctx-8"),
    pytest.param({"completion": {"topP": 0}}, "completion.top_p", id="top-p-0"),
    pytest.param({"completion": {"temperature": -1}}, "completion.temperature",
                 id="temperature-negative"),
    pytest.param({"datasets": {"heldOut": 2}}, "datasets.held_out", id="held-out-2"),
])
def test_settings_out_of_range_are_named_and_the_default_kept(
        tmp_path: Path, overrides: dict[str, dict[str, object]], named: str) -> None:
    """Were accepted as they came (1,000 candidates: 46 s a request)."""
    settings, problems = settings_mod.load(overrides, path=tmp_path / "none.toml")
    assert settings == settings_mod.Settings()
    assert len(problems) == 1 and problems[0].startswith(named), problems


def test_a_good_key_beside_a_bad_one_still_applies(tmp_path: Path) -> None:
    settings, problems = settings_mod.load(
        {"completion": {"candidates": 1000, "maxTokens": 12}}, path=tmp_path / "none.toml")
    assert (settings.completion.candidates, settings.completion.max_tokens) == (3, 12)
    assert ["completion.candidates" in p for p in problems] == [True]


def test_max_tokens_is_judged_against_the_context_it_gets(tmp_path: Path) -> None:
    settings, problems = settings_mod.load({"model": {"nCtx": 512},
                                            "completion": {"maxTokens": 400}},
                                           path=tmp_path / "none.toml")
    assert (settings.model.n_ctx, settings.completion.max_tokens) == (512, 64)
    assert "at most 256" in problems[0]


# -- the round lock is probed, never taken (finding 6) -------------------------------------------

_TAKER = """
import sys, time
from pathlib import Path
from compilot import round_lock
from compilot.paths import DataDir
data, busy = DataDir(Path(sys.argv[1])), 0
print("ready", flush=True)
for _ in range(int(sys.argv[2])):
    try:
        with round_lock.round_locked(data):
            pass
    except round_lock.Busy:
        busy += 1
print(busy)
"""


def test_probing_the_round_lock_never_makes_a_round_fail(tmp_path: Path) -> None:
    """Was: `compilot.status` took the lock to see whether it was free, so rounds starting
    meanwhile failed with "another training round is running" (468 of 3,000 takes)."""
    import subprocess
    import sys

    from compilot import round_lock
    from compilot.paths import DataDir

    data = DataDir(tmp_path)
    taker = subprocess.Popen([sys.executable, "-c", _TAKER, str(tmp_path), "3000"],
                             stdout=subprocess.PIPE, text=True)
    assert taker.stdout is not None and taker.stdout.readline().strip() == "ready"
    probes = 0
    while taker.poll() is None:
        round_lock.round_running(data)
        probes += 1
    assert int(taker.stdout.read()) == 0, f"{probes} probes made takes fail"
    assert probes > 10


def test_a_held_round_lock_is_seen_and_left_alone(tmp_path: Path) -> None:
    from compilot import round_lock
    from compilot.paths import DataDir

    data = DataDir(tmp_path)
    assert not round_lock.round_running(data)
    assert not data.round_lock.exists()  # probing creates nothing
    with round_lock.round_locked(data):
        holder = data.round_lock.read_text()
        assert round_lock.round_running(data)
        assert data.round_lock.read_text() == holder  # the holder's pid stays
        with pytest.raises(round_lock.Busy, match=holder.strip()):
            with round_lock.round_locked(data):
                pass
    assert not round_lock.round_running(data)
