"""`compilot doctor`: passes on this machine with the embedded model, and names each failure
with a fix: a model path that is no GGUF, a training base that is another model, a compiler
missing for a language the user writes, a settings file that does not parse."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from compilot.cli import app
from compilot.cli.doctor import Status, check_compiler, check_data_dir, check_settings
from compilot.feedback.records import Candidate, Request
from compilot.feedback.store import Store
from compilot.paths import DataDir
from compilot.settings import Settings
from tests.arch_models import build


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The config file the doctor reads (absent until a test writes it), in a fresh data dir."""
    monkeypatch.setenv("COMPILOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COMPILOT_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.delenv("COMPILOT_SETTINGS", raising=False)
    return tmp_path / "config.toml"


def doctor() -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.stdout.splitlines()


def line(lines: list[str], start: str) -> tuple[str, str]:
    """The line starting with ``start``, and the one after it (its fix, if it has one)."""
    at = next(i for i, text in enumerate(lines) if text.startswith(start))
    return lines[at], (lines[at + 1] if at + 1 < len(lines) else "")


def test_passes_with_the_embedded_model(config: Path) -> None:
    code, lines = doctor()
    assert code == 0, "\n".join(lines)
    assert line(lines, "✓ settings: ")[0].endswith("(absent: the defaults); an editor's own "
                                                   "settings apply over these")
    assert line(lines, "✓ model: ")[0] == ("✓ model: SmolLM2-135M-Instruct.Q4_1.gguf (the "
                                           "embedded model, llama) loads in llama.cpp")
    # SmolLM2 has no FIM tokens: a warning with its fix, not a failure.
    fim, fix = line(lines, "! FIM: ")
    assert "completions use the text before the cursor only" in fim
    assert fix.startswith("    fix: ") and "set model.path to a FIM model" in fix
    assert "itself is dequantized into the training base" in line(lines, "✓ training: ")[0]
    assert line(lines, "✓ data dir: ")[0].startswith(f"✓ data dir: {config.parent / 'data'} "
                                                     "is writable")
    assert line(lines, "✓ compiler for python: ")[0]
    assert lines[-1].startswith("0 failed")


def test_a_text_file_as_model_path_fails(config: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n")
    config.write_text(f'[model]\npath = "{notes}"\n')
    code, lines = doctor()
    assert code == 1
    failure, fix = line(lines, "✗ model: ")
    assert failure == f"✗ model: {notes} is not a GGUF model file (magic b'hell')"
    assert fix == (f"    fix: Set model.path in {config} to a GGUF model file, or leave it "
                   "empty for the embedded SmolLM2-135M-Instruct.Q4_1.gguf.")
    assert not any(text.startswith(("✓ FIM", "! FIM", "✓ training")) for text in lines)


def test_a_training_base_of_another_model_fails(config: Path, arch_dir: Path) -> None:
    """Both are llama, but the fixture has 2 layers and SmolLM2-135M 30: check_base says so."""
    llama = build("llama", arch_dir)
    config.write_text(f'[training]\nbase = "{llama.hf_dir}"\n')
    code, lines = doctor()
    assert code == 1
    failure, fix = line(lines, "✗ training: ")
    assert failure == (f"✗ training: training.base {llama.hf_dir} has 2 layers, the served "
                       "model SmolLM2-135M-Instruct.Q4_1.gguf has 30: they are different "
                       "models (another size of the family?)")
    assert fix.startswith("    fix: Set training.base to the HF checkpoint "
                          "SmolLM2-135M-Instruct.Q4_1.gguf was converted from")


def test_a_missing_compiler_fails_for_a_language_the_user_writes(
    config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.in_dir(DataDir(tmp_path / "data"))
    store.record_request(
        Request(id="r", uri="file:///p/a.c", language="c", line=1, character=4,
                prefix="int f(void) {\n    ", suffix="\n}\n", latency_ms=5, model="m",
                adapter="base", source="model"),
        [Candidate(id="c", text="return 1;", raw="return 1;", logprob=-1, tokens=3,
                   parsed=True)])
    store.close()
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no gcc, g++, javac, node, rustc...
    code, lines = doctor()
    assert code == 1
    failure, fix = line(lines, "✗ compiler for c: ")
    assert failure == ("✗ compiler for c: gcc not found on PATH: your c completions get syntax "
                       "checks only")
    assert fix == "    fix: Install gcc (apt install gcc), or put it on PATH."
    # C++ has no recorded completions: a warning only.
    assert line(lines, "! compiler for cpp: g++ not found on PATH")[0]
    assert line(lines, "✓ event store: ")[0].endswith("(requests by language: c 1)")
    assert lines[-1].startswith("1 failed")


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        pytest.param("[model\npath = 1\n", "not a readable TOML file", id="malformed"),
        pytest.param("[completion]\nmax_tokens = 5000\n",
                     "completion.max_tokens must be between 1 and 2048, not 5000",
                     id="max-tokens-out-of-range"),
        pytest.param("[checks]\nidle_ms = -1\n", "checks.idle_ms must be at least 0, not -1",
                     id="negative-idle"),
        pytest.param("[completion]\ncandidats = 3\n", "candidats", id="unknown-key"),
    ],
)
def test_settings_problems_fail_naming_the_file(config: Path, toml: str, problem: str) -> None:
    config.write_text(toml)
    result, settings = check_settings()
    assert result.status is Status.FAIL
    assert result.line.startswith(f"settings ({config}): ")
    assert problem in result.line
    assert result.fix is not None and str(config) in result.fix
    assert settings == Settings()  # each bad value kept its default


def test_a_compilers_status_follows_the_recorded_languages() -> None:
    args = (["c"], ("no-such-compiler-here",), "nscc")
    assert check_compiler(*args, used=set()).status is Status.WARN
    assert check_compiler(*args, used={"c"}).status is Status.FAIL
    found = check_compiler(["python"], (), "python compile+pyflakes", used={"python"})
    assert (found.status, found.fix) == (Status.OK, None)


def test_a_data_dir_that_cannot_be_made_fails(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("COMPILOT_DATA_DIR", str(blocker / "data"))  # under a file: no mkdir
    result = check_data_dir(Settings())
    assert result.status is Status.FAIL
    assert result.line.startswith(f"data dir: {blocker / 'data'} is not writable")
    assert result.fix is not None and "COMPILOT_DATA_DIR" in result.fix
