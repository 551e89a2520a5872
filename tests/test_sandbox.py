"""The sandbox survives hostile programs: limits, no network, nothing left behind; HumanEval."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from compilot.training import benchmarks, sandbox
from tests.processes import live_with


def run(code: str, *, timeout: float = 10.0, memory_mb: int = 1024,
        **kw: object) -> sandbox.Outcome:
    """The sandbox with the limits of the gate's defaults unless a test sets its own."""
    return sandbox.run_python(code, timeout=timeout, memory_mb=memory_mb, **kw)  # type: ignore[arg-type]

@pytest.fixture(params=list(sandbox.Mechanism), ids=str)
def mechanism(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each isolation mechanism in turn, skipped where it does not work here."""
    forced = sandbox.probe(request.param)
    if forced is None:
        pytest.skip(f"{request.param} does not work on this machine")
    monkeypatch.setattr(sandbox, "isolation", lambda: forced)


@pytest.mark.parametrize(
    ("code", "statuses", "shown"),
    [
        pytest.param("print('fine')\n", {"passed"}, "fine", id="passes"),
        pytest.param("assert 1 + 1 == 3, 'wrong sum'\n", {"failed"}, "AssertionError: wrong sum",
                     id="failing-assert"),
        pytest.param("raise ValueError('boom')\n", {"failed"}, "ValueError: boom",
                     id="exception"),
        pytest.param("import sys\nsys.exit(3)\n", {"failed"}, "", id="sys-exit-3"),
        pytest.param("import os\nos.kill(os.getpid(), 9)\n", {"killed"}, "", id="kills-itself"),
        pytest.param("x = bytearray(10 * 2**30)\nprint('allocated')\n", {"failed", "killed"},
                     "", id="allocates-10-gb"),
        # stdin is /dev/null: a read returns EOF at once instead of waiting for input.
        pytest.param("import sys\nprint(repr(sys.stdin.read()))\n", {"passed"}, "''",
                     id="stdin-eof"),
        pytest.param("input()\n", {"failed"}, "EOFError", id="input-eof"),
        pytest.param("def f(x):\n    return f(x + 1)\nf(0)\n", {"failed"}, "RecursionError",
                     id="recursion"),
    ],
)
def test_program_outcome(code: str, statuses: set[str], shown: str) -> None:
    outcome = run(code, timeout=5)
    assert outcome.status in statuses, outcome
    assert outcome.ok == (outcome.status == "passed")
    assert shown in outcome.output
    assert outcome.seconds < 5


def test_exit_status_and_signal_are_reported() -> None:
    assert run("import sys\nsys.exit(3)\n").returncode == 3
    assert run("import os\nos.kill(os.getpid(), 9)\n").returncode == -9


def test_infinite_loop_times_out() -> None:
    started = time.monotonic()
    outcome = run("while True:\n    pass\n", timeout=2)
    assert outcome.status == "timeout"
    assert not outcome.ok
    assert 1.9 < outcome.seconds < 5
    assert time.monotonic() - started < 10
    assert "timed out" in outcome.output


def test_output_written_before_a_timeout_is_kept() -> None:
    outcome = run("print('started')\nwhile True:\n    pass\n", timeout=1)
    assert outcome.status == "timeout"
    assert outcome.output.startswith("started")


def test_fork_bomb_is_stopped_and_leaves_no_process(mechanism: None) -> None:
    # The first line tells the test which processes to look for (its directory).
    code = "import os\nprint(os.getcwd(), flush=True)\nwhile True:\n    os.fork()\n"
    started = time.monotonic()
    outcome = run(code, timeout=5, max_processes=16)
    assert outcome.status != "passed"
    assert time.monotonic() - started < 10
    assert live_with(outcome.output.split()[0]) == []


def test_children_are_killed_after_a_normal_exit(mechanism: None) -> None:
    # A child that sleeps past its parent's exit, in the same group and in a group of its own.
    code = ("import os, time\nprint(os.getcwd(), flush=True)\n"
            "if os.fork() == 0:\n    time.sleep(60)\n"
            "if os.fork() == 0:\n    os.setpgid(0, 0)\n    time.sleep(60)\n")
    outcome = run(code, timeout=5)
    assert outcome.status == "passed", outcome
    assert outcome.seconds < 5
    assert live_with(outcome.output.split()[0]) == []


def test_network_is_blocked(mechanism: None) -> None:
    code = (
        "import socket\n"
        "for host, port in [('127.0.0.1', 9), ('8.8.8.8', 53)]:\n"
        "    try:\n"
        "        socket.create_connection((host, port), timeout=3).close()\n"
        "        print('connected', host)\n"
        "    except OSError as exc:\n"
        "        print('blocked', host, exc)\n"
        "a, b = socket.socketpair()\n"  # local, and what asyncio's event loop needs
        "a.sendall(b'x')\n"
        "print('socketpair', b.recv(1))\n"
    )
    outcome = run(code, timeout=10)
    assert outcome.status == "passed", outcome
    assert "connected" not in outcome.output
    assert "blocked 127.0.0.1" in outcome.output
    assert "blocked 8.8.8.8" in outcome.output
    assert "socketpair b'x'" in outcome.output


def test_line_numbers_are_the_programs(mechanism: None) -> None:
    outcome = run("print(__name__)\n\nraise KeyError('third line')\n")
    assert outcome.status == "failed"
    assert outcome.output.startswith("__main__")
    assert 'main.py", line 3' in outcome.output


@pytest.mark.parametrize(
    ("code", "status"),
    [
        pytest.param("for _ in range(20_000):\n    print('x' * 1000)\n", "passed",
                     id="20-mb-then-exit"),
        pytest.param("while True:\n    print('x' * 1000)\n", None, id="endless"),
        pytest.param("import sys\nwhile True:\n    sys.stderr.write('e' * 1000)\n", None,
                     id="endless-stderr"),
    ],
)
def test_huge_output_is_cut(code: str, status: str | None) -> None:
    outcome = run(code, timeout=5)
    if status is not None:
        assert outcome.status == status
    else:  # stopped by the file size limit or the clock, never by the evaluator's memory
        assert outcome.status != "passed"
    assert len(outcome.output) < 3 * sandbox.OUTPUT_BYTES
    assert "cut" in outcome.output


def test_workdir_is_fresh_private_and_removed() -> None:
    code = ("import os, tempfile\nopen('left.txt', 'w').write('x')\n"
            "print(os.getcwd()); print(os.environ['HOME']); print(tempfile.gettempdir())\n"
            "print(sorted(os.environ))\n")
    outcome = run(code)
    assert outcome.status == "passed", outcome
    cwd, home, tmp, names = outcome.output.splitlines()
    assert home == tmp == cwd
    assert not Path(cwd).exists()
    assert names == str(["HOME", "LANG", "PATH", "PYTHONHASHSEED", "TMPDIR"])


def test_str_hashes_repeat() -> None:
    runs = [run("print(hash('compilot'))\n").output for _ in range(2)]
    assert runs[0] == runs[1]


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError):
        run("pass\n", timeout=0)


def test_isolation_is_probed_once() -> None:
    first = sandbox.isolation()
    misses = sandbox.isolation.cache_info().misses
    assert first.mechanism in tuple(sandbox.Mechanism)
    assert sandbox.isolation() == first
    assert sandbox.isolation.cache_info().misses == misses


@pytest.fixture(scope="module")
def humaneval_five() -> list[benchmarks.Problem]:
    try:
        return benchmarks.humaneval(5)
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


def test_humaneval_references_pass(humaneval_five: list[benchmarks.Problem]) -> None:
    for task in humaneval_five:
        outcome = run(benchmarks.program(task, task.reference), timeout=10)
        assert outcome.ok, (task.task_id, outcome)


def test_humaneval_empty_body_fails(humaneval_five: list[benchmarks.Problem]) -> None:
    for task in humaneval_five:
        outcome = run(benchmarks.program(task, "    pass\n"), timeout=10)
        assert outcome.status == "failed", (task.task_id, outcome)
        assert "check(" in outcome.output  # the test failed, not the program around it


def test_the_guard_refuses_unix_sockets_with_seccomp(monkeypatch: pytest.MonkeyPatch) -> None:
    guard = sandbox.probe(sandbox.Mechanism.GUARD)
    assert guard is not None
    if not guard.seccomp:
        pytest.skip("no libseccomp here: the guard has Python's sockets only")
    monkeypatch.setattr(sandbox, "isolation", lambda: guard)
    outcome = run("import socket\ntry:\n    socket.socket(socket.AF_UNIX)\n    print('made')\n"
                  "except OSError as exc:\n    print('refused', exc)\n")
    assert outcome.status == "passed", outcome
    assert outcome.output.startswith("refused")
    assert any("NOT kept" in line for line in guard.enforces())
