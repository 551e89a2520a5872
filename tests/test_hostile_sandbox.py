"""Issue 12, finding 10: generated code cannot reach past the evaluation sandbox.

Each escape is a real program run by ``sandbox.run_python`` against a real target the test set
up (a listening Unix socket, a file holding a secret, a sleeping process) and must fail; ordinary
programs must still pass. Everything runs against the default mechanism (what
``sandbox.isolation()`` picks on this machine) and against each strong mechanism that works here.
Before the fix (network namespace only, the evaluator's own uid) the Unix socket, the writes,
the reads, the kill and the setsid'd child all got through; the network was already off.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import compilot
from compilot.training import sandbox
from tests.processes import live_with

Run = Callable[[str], sandbox.Outcome]


@pytest.fixture(params=[None, sandbox.Mechanism.BWRAP, sandbox.Mechanism.NAMESPACES],
                ids=["default", "bwrap", "namespaces"])
def run(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Run:
    """run_python under the default mechanism, or under one forced (skipped where absent)."""
    if request.param is not None:
        forced = sandbox.probe(request.param)
        if forced is None:
            pytest.skip(f"{request.param} does not work on this machine")
        monkeypatch.setattr(sandbox, "isolation", lambda: forced)

    def run(code: str) -> sandbox.Outcome:
        return sandbox.run_python(textwrap.dedent(code), timeout=10, memory_mb=1024)

    return run


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory anyone may enter and write: only the sandbox, not file permissions or the
    0700 parents of pytest's tmp_path, keeps a program out of it."""
    path = Path(tempfile.mkdtemp(prefix="compilot-target-", dir="/tmp"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def marker() -> Iterator[str]:
    """A unique word; processes whose command line holds it are killed at the end."""
    word = f"compilot-escape-{uuid.uuid4().hex}"
    yield word
    for pid in live_with(word):
        os.kill(pid, signal.SIGKILL)


def test_connecting_to_a_unix_socket_is_denied(run: Run, open_dir: Path) -> None:
    """An ssh-agent or docker socket: one on the filesystem, one in the abstract namespace."""
    path = open_dir / "agent.sock"
    abstract = f"\0compilot-agent-{uuid.uuid4().hex}"
    servers = []
    for address in (str(path), abstract):
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(address)
        server.listen()
        server.setblocking(False)
        servers.append(server)
    path.chmod(0o777)
    outcome = run(f"""
        import socket
        for address in ({str(path)!r}, {abstract!r}):
            try:
                socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).connect(address)
                print("connected", repr(address))
            except OSError as exc:
                print("blocked", repr(address), exc)
        """)
    assert outcome.status == "passed", outcome
    assert "connected" not in outcome.output
    for server in servers:
        with pytest.raises(BlockingIOError):  # no connection ever arrived
            server.accept()
        server.close()


def test_writing_outside_the_sandbox_dir_is_denied(run: Run, open_dir: Path,
                                                   tmp_path: Path) -> None:
    name = f"escaped-{uuid.uuid4().hex}.txt"
    targets = [open_dir / name, tmp_path / name, Path("/tmp") / name, Path.home() / name]
    outcome = run(f"""
        for target in {[str(t) for t in targets]!r}:
            try:
                with open(target, "w") as f:
                    f.write("escaped")
                print("wrote", target)
            except OSError as exc:
                print("denied", target, exc)
        open("inside.txt", "w").write("fine")
        print("inside", open("inside.txt").read())
        """)
    escaped = [t for t in targets if t.exists()]
    for target in escaped:
        target.unlink()
    assert outcome.status == "passed", outcome
    assert "inside fine" in outcome.output  # its own directory stays writable
    assert escaped == []


def test_reading_outside_the_sandbox_dir_is_denied(run: Run, open_dir: Path,
                                                   marker: str) -> None:
    secret = open_dir / "secret.txt"
    secret.write_text(f"token={marker}\n")
    secret.chmod(0o644)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", marker])
    source_tree = Path(compilot.__file__).resolve().parents[1] / "pyproject.toml"
    targets = [str(secret), "/etc/shadow", f"/proc/{sleeper.pid}/cmdline",
               f"/proc/{sleeper.pid}/environ", str(source_tree)]
    try:
        outcome = run(f"""
            for target in {targets!r}:
                try:
                    print("read", target, open(target, "rb").read()[:200])
                except OSError as exc:
                    print("denied", target, exc)
            """)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert outcome.status == "passed", outcome
    assert marker not in outcome.output
    assert "root:" not in outcome.output  # /etc/shadow's first line
    assert "[project" not in outcome.output  # the user's source tree
    assert "read " not in outcome.output


def test_killing_another_process_is_denied(run: Run, marker: str) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", marker])
    try:
        outcome = run(f"""
            import os, signal
            try:
                os.kill({sleeper.pid}, signal.SIGKILL)
                print("sent")
            except OSError as exc:
                print("denied", exc)
            """)
        time.sleep(0.2)
        assert sleeper.poll() is None, "the sandboxed program killed a process outside it"
    finally:
        sleeper.kill()
        sleeper.wait()
    assert outcome.status == "passed", outcome


@pytest.mark.parametrize("forks", [1, 2], ids=["setsid-child", "double-fork"])
def test_a_setsid_child_is_not_left_behind(run: Run, marker: str, forks: int) -> None:
    outcome = run(f"""
        import os, sys
        if os.fork() == 0:
            os.setsid()
            if {forks} == 2 and os.fork():
                os._exit(0)
            os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)",
                                      {marker!r}])
        print("left a child behind")
        """)
    assert outcome.status == "passed", outcome
    assert live_with(marker) == []


def test_the_network_is_still_off(run: Run) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    port = listener.getsockname()[1]
    outcome = run(f"""
        import socket
        for host, port in [("127.0.0.1", {port}), ("8.8.8.8", 53)]:
            try:
                socket.create_connection((host, port), timeout=3).close()
                print("connected", host)
            except OSError as exc:
                print("blocked", host, exc)
        try:
            print("resolved", socket.getaddrinfo("example.com", 80))
        except OSError as exc:
            print("no lookup", exc)
        """)
    assert outcome.status == "passed", outcome
    assert "connected" not in outcome.output and "resolved" not in outcome.output
    with pytest.raises(BlockingIOError):
        listener.accept()
    listener.close()


@pytest.mark.parametrize(("code", "shown"), [
    pytest.param("""
        import heapq, itertools, math, re
        from collections import Counter
        def below_zero(ops):
            return any(s < 0 for s in itertools.accumulate(ops))
        assert below_zero([1, 2, -4, 5]) and not below_zero([1, 2, 3])
        assert heapq.nsmallest(2, [5, 1, 4]) == [1, 4] and math.gcd(12, 18) == 6
        assert Counter(re.findall(r"\\w+", "a b a"))["a"] == 2
        print("humaneval ok")
        """, "humaneval ok", id="humaneval-like"),
    pytest.param("""
        import asyncio
        async def double(x):
            await asyncio.sleep(0.01)
            return 2 * x
        async def main():
            return await asyncio.gather(*(double(i) for i in range(3)))
        print("asyncio", asyncio.run(main()))
        """, "asyncio [0, 2, 4]", id="asyncio-run"),
    pytest.param("""
        import os, tempfile
        with open("notes.txt", "w") as f:
            f.write("kept")
        with tempfile.NamedTemporaryFile("w+") as t:
            t.write("tmp"); t.flush(); t.seek(0)
            print("files", open("notes.txt").read(), t.read(), sorted(os.listdir(".")))
        """, "files kept tmp", id="files-in-cwd"),
    pytest.param("""
        import subprocess, sys
        done = subprocess.run([sys.executable, "-c", "print(6 * 7)"], capture_output=True,
                              text=True, check=True)
        print("child said", done.stdout.strip())
        """, "child said 42", id="subprocess-python"),
    pytest.param("""
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(4) as pool:
            print("threads", sum(pool.map(lambda x: x * x, range(10))))
        """, "threads 285", id="threads"),
    pytest.param("""
        from concurrent.futures import ProcessPoolExecutor
        if __name__ == "__main__":
            with ProcessPoolExecutor(2) as pool:
                print("processes", sum(pool.map(abs, [-1, -2, 3])))
        """, "processes 6", id="process-pool"),
    pytest.param("""
        import datetime, inspect, json, os, random
        random.seed(0)
        print("stdlib", len(inspect.getsource(json.dumps)) > 0, len(os.urandom(4)),
              datetime.datetime.now().year > 2000)
        """, "stdlib True 4 True", id="stdlib-source-time-random"),
])
def test_ordinary_programs_still_pass(run: Run, code: str, shown: str) -> None:
    outcome = run(code)
    assert outcome.status == "passed", outcome
    assert shown in outcome.output


def test_a_signal_is_still_reported(run: Run) -> None:
    outcome = run("import os\nos.kill(os.getpid(), 9)\n")
    assert (outcome.status, outcome.returncode) == ("killed", -9)


def test_which_mechanism_ran_is_reported(run: Run) -> None:
    outcome = run("pass\n")
    assert outcome.isolation == sandbox.isolation()
    assert outcome.isolation.enforces()
    assert str(outcome.isolation).split("+")[0] in {m.value for m in sandbox.Mechanism}


def test_the_default_here_is_a_strong_mechanism() -> None:
    """Namespaces work on this machine (and on CI): the default must not be the guard."""
    if sandbox.probe(sandbox.Mechanism.NAMESPACES) is None:
        pytest.skip("no namespaces here: the guard is all there is")
    assert sandbox.isolation().mechanism is not sandbox.Mechanism.GUARD


def test_without_bwrap_the_namespaces_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clean machine (CI) has no bubblewrap: the default is then the namespaces."""
    if sandbox.probe(sandbox.Mechanism.NAMESPACES) is None:
        pytest.skip("no namespaces here")
    which = shutil.which
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None if name == "bwrap"
                        else which(name))
    sandbox.probe.cache_clear()
    sandbox.isolation.cache_clear()
    try:
        assert sandbox.probe(sandbox.Mechanism.BWRAP) is None
        assert sandbox.isolation().mechanism is sandbox.Mechanism.NAMESPACES
        assert sandbox.run_python("print('ran')\n", timeout=10, memory_mb=1024).ok
    finally:
        sandbox.probe.cache_clear()
        sandbox.isolation.cache_clear()
