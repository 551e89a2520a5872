"""Issue 12, finding 11: the adapter pointer stays inside ``adapters/``, what compilot writes is
owner-only, the data dir is one for the whole session, and servers share the machine's cores.

Each test failed before its fix: ``../../x`` served an adapter from outside ``adapters/``, a
1 MB pointer raised in the watcher's callback, ``trainer.log`` and exports were world-readable
and a 0777 data dir stayed so, a changed ``dataDir`` split the session's state in two, and
every server took every core.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from compilot import pointer, thread_budget
from compilot.lsp_client import command, start_server, stop
from compilot.paths import DataDir
from compilot.thread_budget import ThreadBudget


def version(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / pointer.METADATA_FILE).write_text("{}")
    (folder / pointer.ADAPTER_FILE).write_bytes(b"GGUF")
    return folder


@pytest.mark.parametrize("text", [
    pytest.param("../../outside", id="dot-dot"),
    pytest.param("/tmp/outside", id="absolute"),
    pytest.param("v1/../../../outside", id="through-a-version"),
    pytest.param("x" * (1 << 20), id="1-MB"),
])
def test_a_pointer_outside_adapters_reads_as_the_base(tmp_path: Path, text: str) -> None:
    """Was: ``../../x`` loaded an adapter from outside ``adapters/``; a 1 MB pointer raised
    (file name too long) in the watcher's callback."""
    adapters = tmp_path / "data" / "adapters"
    version(adapters / "v1")
    version(tmp_path / "outside")
    (adapters / pointer.POINTER).write_text(text.replace("/tmp/outside", str(tmp_path / "outside")))
    assert pointer.current(adapters) == pointer.BASE


def test_a_binary_pointer_reads_as_the_base(tmp_path: Path) -> None:
    version(tmp_path / "v1")
    (tmp_path / pointer.POINTER).write_bytes(b"v1\xff\xfe\x00")
    assert pointer.current(tmp_path) == pointer.BASE


def test_a_symlinked_version_that_leaves_adapters_reads_as_the_base(tmp_path: Path) -> None:
    adapters = tmp_path / "adapters"
    adapters.mkdir()
    (adapters / "v2").symlink_to(version(tmp_path / "elsewhere"))
    pointer.point_to(adapters, "v2")
    assert pointer.current(adapters) == pointer.BASE
    version(adapters / "v3")
    pointer.point_to(adapters, "v3")
    assert pointer.current(adapters) == "v3"


def test_the_trainer_never_writes_a_pointer_that_is_not_a_version(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a version name"):
        pointer.point_to(tmp_path, "../x")


# -- owner-only ------------------------------------------------------------------------------

def run_cli(args: list[str], data: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``compilot ARGS`` under the permissive umask 000."""
    code = ("import os, sys; os.umask(0); from compilot.cli import main; "
            f"sys.argv = ['compilot', *{args!r}]; main()")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "COMPILOT_DATA_DIR": str(data),
                                            "COMPILOT_CONFIG": str(tmp_path / "none.toml")})


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_an_open_data_dir_is_made_owner_only(tmp_path: Path) -> None:
    """Was: a data dir that existed as 0777 stayed so."""
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o777)
    done = run_cli(["stats", "--json"], data, tmp_path)
    assert done.returncode == 0, done.stderr
    assert mode(data) == 0o700
    assert mode(data / "events.db") == 0o600


def test_exports_and_the_trainer_log_are_owner_only(tmp_path: Path) -> None:
    """Was: 0644 (world-readable) for trainer.log and each exported file."""
    data = tmp_path / "data"
    from compilot.feedback.store import Store
    from tests.test_hostile_store import request

    DataDir(data).create()
    store = Store(data / "events.db")
    store.record_request(*request(0))
    store.close()
    out = tmp_path / "export"
    done = run_cli(["export", "--kind", "events", "--format", "jsonl", "--out", str(out)],
                   data, tmp_path)
    assert done.returncode == 0, done.stderr
    written = [p for p in out.rglob("*")]
    assert written
    assert all(mode(p) & 0o077 == 0 for p in written), {str(p): oct(mode(p)) for p in written}

    from training.schedule import file_logging

    old = os.umask(0)
    try:
        log = file_logging(DataDir(data))
    finally:
        os.umask(old)
    assert mode(log) == 0o600


# -- one data dir per session ----------------------------------------------------------------

async def test_a_data_dir_changed_mid_session_waits_for_the_restart(tmp_path: Path) -> None:
    """Was: the store stayed in the old data dir while status, train and the pointer moved to
    the new one (the session's state split in two)."""
    first, second = tmp_path / "first", tmp_path / "second"
    env = {**os.environ, "COMPILOT_CONFIG": str(tmp_path / "none.toml")}
    env.pop("COMPILOT_DATA_DIR", None)
    client = await start_server({"dataDir": str(first)}, env=env)
    try:
        from lsprotocol import types
        client.workspace_did_change_configuration(types.DidChangeConfigurationParams(
            settings={"compilot": {"dataDir": str(second)}}))
        status = await command(client, "compilot.status")
        assert status["training"]["log"] == str(first / "trainer.log")
        stats = await command(client, "compilot.stats")
        assert stats["store"]["path"] == str(first / "events.db")
    finally:
        await stop(client)
    assert not second.exists()


# -- the machine's cores ---------------------------------------------------------------------

def test_servers_share_the_cores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Was: each server took every core (6 llama threads for 3 servers on 2 cores)."""
    monkeypatch.setattr(thread_budget, "RECOUNT_S", 0.0)
    cores = thread_budget.cores()
    holders = [subprocess.Popen(
        [sys.executable, "-c", "import sys, pathlib; from compilot.thread_budget import "
         f"ThreadBudget; b = ThreadBudget(folder=pathlib.Path({str(tmp_path)!r})); "
         "print('in', flush=True); sys.stdin.readline()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        for h in holders:
            assert h.stdout is not None and h.stdout.readline() == "in\n"
        budget = ThreadBudget(folder=tmp_path)
        assert budget.servers() == 3
        assert budget.threads() == max(1, cores // 3)
        holders[0].kill()
        holders[0].wait()
        assert budget.servers() == 2
        assert budget.threads() == max(1, cores // 2)
        assert ThreadBudget(4, folder=tmp_path).threads() == 4  # model.nThreads outranks it
        budget.close()
    finally:
        for h in holders:
            h.kill()
            h.wait()


async def test_a_second_server_halves_the_first_ones_threads(tmp_path: Path) -> None:
    env = {**os.environ, "COMPILOT_CONFIG": str(tmp_path / "none.toml"),
           "COMPILOT_RUNTIME_DIR": str(tmp_path / "run")}
    options = {"completion": {"maxTokens": 2, "candidates": 1}}
    cores = thread_budget.cores()
    a = await start_server(options, env={**env, "COMPILOT_DATA_DIR": str(tmp_path / "a")})
    b = await start_server(options, env={**env, "COMPILOT_DATA_DIR": str(tmp_path / "b")})
    try:
        from lsprotocol import types

        from compilot.lsp_client import inline
        for client in (a, b):
            client.text_document_did_open(types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(uri="file:///tmp/t.py",
                                                     language_id="python", version=1,
                                                     text="def f(x):\n    return")))
            await inline(client, "file:///tmp/t.py", 1, 10)
        threads = [(await command(c, "compilot.stats"))["threads"] for c in (a, b)]
        assert threads[1] == max(1, cores // 2), threads
        registered = sorted(p.name for p in (tmp_path / "run" / "servers").iterdir())
        assert len(registered) == 2, registered
    finally:
        await stop(a)
        await stop(b)
    assert json.dumps(threads)
