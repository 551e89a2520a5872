"""Issue 12, finding 7: a hostile compiler cannot hang the checks or fill the server's memory.

Each "compiler" is a real executable script in the test's directory; no mocks. Before the fix a
grandchild that kept the output pipe open hung ``run_limited`` for ever (``communicate()``
without a timeout after the kill), and a 300 MB line was read whole into memory and stored as
one diagnostic.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from compilot.feedback import limits
from compilot.feedback.compilers import check_compile
from compilot.feedback.diagnostics import MESSAGE_CHARS, SHOWN
from compilot.settings import CheckSettings
from tests.processes import live_with

GRACE = 3.0  # seconds past the timeout that a run may take, its clean-up included
BIG = 300_000_000  # bytes of the one-line flood


@pytest.fixture
def marker() -> Iterator[str]:
    """A unique word on the command line of each grandchild; whatever survives is killed."""
    word = f"compilot-hostile-{uuid.uuid4().hex}"
    yield word
    for pid in live_with(word):
        os.kill(pid, signal.SIGKILL)


def script(path: Path, body: str) -> Path:
    """An executable Python script at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(0o755)
    return path


# A grandchild that keeps stdout and stderr open and sleeps; "setsid" moves it out of the
# session (double fork, a session of its own) so that a session kill cannot find it.
LEAVER = """\
import os, sys, time
ESCAPE, THEN, WORD = sys.argv[1], sys.argv[2], sys.argv[3]
if os.fork() == 0:
    if ESCAPE == "setsid":
        os.setsid()
        if os.fork():
            os._exit(0)
    os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)", WORD])
print("snippet.c:1:5: error: expected ';' before '}' token", flush=True)
if THEN == "hang":
    time.sleep(600)
sys.exit(1)
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("escape", "then"), [
    pytest.param("stay", "exit", id="child-in-session-compiler-exits"),
    pytest.param("setsid", "exit", id="setsid-grandchild-compiler-exits"),
    pytest.param("setsid", "hang", id="setsid-grandchild-compiler-hangs"),
])
def test_grandchild_holding_the_pipe_does_not_hang_the_run(
        tmp_path: Path, marker: str, escape: str, then: str) -> None:
    """Was: hung for ever in ``communicate()`` (setsid), or ran to the timeout (in session)."""
    tool = script(tmp_path / "cc", LEAVER)
    timeout = 4.0
    started = time.monotonic()
    done = limits.run_limited([str(tool), escape, then, marker], cwd=tmp_path,
                              timeout=timeout, memory_mb=512)
    took = time.monotonic() - started
    assert "expected ';'" in done.output
    if then == "hang":
        assert done.timed_out and took < timeout + GRACE
    else:  # the compiler's own exit ends the run, not the clock
        assert not done.timed_out and done.returncode == 1 and took < timeout / 2
    assert live_with(marker) == []


FLOOD = f"""\
import sys
chunk = b"x" * (1 << 20)
out = sys.stdout.buffer
out.write(b"snippet.c:1:1: error: ")
for _ in range({BIG} // len(chunk)):
    out.write(chunk)
out.write(b"\\nsnippet.c:2:1: error: expected ';' after the flood\\n")
sys.exit(1)
"""


def peak_rss_reset() -> int:
    """Reset this process's peak RSS (VmHWM) to its current RSS; that RSS in bytes."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kb("VmRSS") * 1024


def peak_rss() -> int:
    """This process's peak RSS in bytes since the last reset."""
    return _status_kb("VmHWM") * 1024


def _status_kb(field: str) -> int:
    line = next(x for x in Path("/proc/self/status").read_text().splitlines()
                if x.startswith(field + ":"))
    return int(line.split()[1])


@pytest.mark.timeout(120)
def test_a_300_mb_line_is_cut_and_memory_stays_bounded(tmp_path: Path) -> None:
    """Was: the whole line read into memory (twice: bytes, then str), RSS + ~600 MB."""
    tool = script(tmp_path / "cc", FLOOD)
    base = peak_rss_reset()
    started = time.monotonic()
    done = limits.run_limited([str(tool)], cwd=tmp_path, timeout=60, memory_mb=512)
    took = time.monotonic() - started
    grew = peak_rss() - base
    assert grew < 50 * 2**20, f"peak RSS grew by {grew / 2**20:.0f} MB"
    assert not done.timed_out and done.returncode == 1
    assert len(done.output) <= 2 * limits.OUTPUT_BYTES + 200
    assert "bytes of stdout cut" in done.output
    assert done.output.startswith("snippet.c:1:1: error: xxx")
    assert done.output.rstrip().endswith("expected ';' after the flood")  # the tail is kept
    assert took < 30


def test_short_output_is_whole_and_in_order(tmp_path: Path) -> None:
    tool = script(tmp_path / "cc", "import sys\nprint('out')\nprint('err', file=sys.stderr)\n")
    done = limits.run_limited([str(tool)], cwd=tmp_path, timeout=10, memory_mb=512)
    assert (done.returncode, done.output, done.timed_out) == (0, "out\nerr\n", False)


# -- the same through the compile check, with a fake gcc first on PATH -------------------------

@pytest.fixture
def fake_gcc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory first on PATH, where a test writes its ``gcc``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir / "gcc"


@pytest.mark.timeout(60)
def test_check_compile_returns_when_gcc_leaves_a_setsid_child(
        fake_gcc: Path, marker: str) -> None:
    """Was: the checks thread hung for ever; no check was recorded again."""
    script(fake_gcc, LEAVER.replace("sys.argv[1], sys.argv[2], sys.argv[3]",
                                    f"'setsid', 'exit', {marker!r}"))
    started = time.monotonic()
    result = check_compile("int f(void) { return 1 }\n", "c", CheckSettings(timeout_s=4))
    assert time.monotonic() - started < 2 + GRACE
    assert result.status == "syntax", result
    assert live_with(marker) == []


@pytest.mark.timeout(120)
def test_check_compile_caps_a_300_mb_diagnostic(fake_gcc: Path) -> None:
    """Was: one 300 MB diagnostic (the events.db grew by as much), 1.1 GB RSS."""
    script(fake_gcc, FLOOD)
    base = peak_rss_reset()
    result = check_compile("int x;\n", "c", CheckSettings(timeout_s=60))
    grew = peak_rss() - base
    assert grew < 50 * 2**20, f"peak RSS grew by {grew / 2**20:.0f} MB"
    assert result.diagnostics, result
    assert all(len(d.message) <= MESSAGE_CHARS for d in result.diagnostics)
    assert result.diagnostics[0].message.endswith("[cut]")


def test_check_compile_keeps_a_bounded_count_of_diagnostics(fake_gcc: Path) -> None:
    script(fake_gcc, "for i in range(100_000):\n"
                     "    print(f'snippet.c:{i + 1}:1: error: expected x{i}')\n"
                     "raise SystemExit(1)\n")
    result = check_compile("int x;\n", "c", CheckSettings(timeout_s=30))
    assert result.status == "syntax"
    assert 0 < len(result.diagnostics) <= SHOWN
