"""The `compilot` command: check, stats, export (as a user runs them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from compilot.feedback.records import Candidate, Request
from compilot.feedback.store import Store
from compilot.paths import DataDir
from tests.records import verdict

CLI = [sys.executable, "-m", "compilot"]


def run(*args: str, data_dir: Path, cwd: Path | None = None
        ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COMPILOT_DATA_DIR": str(data_dir),
           "COMPILOT_CONFIG": str(data_dir / "none.toml"), "HF_DATASETS_OFFLINE": "1",
           "HF_HUB_OFFLINE": "1"}
    return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=300,
                          cwd=cwd)


@pytest.mark.parametrize(
    ("name", "source", "code"),
    [
        pytest.param("ok.py", "def f(a):\n    return a\n", 0, id="python-ok"),
        pytest.param("bad.py", "def f(a:\n    return a\n", 1, id="python-syntax"),
        pytest.param("bad.c", "int f(void) { return y; }\n", 1, id="c-type"),
    ],
)
def test_check_exit_status(tmp_path: Path, name: str, source: str, code: int) -> None:
    path = tmp_path / name
    path.write_text(source)
    done = run("check", "--json", name, data_dir=tmp_path, cwd=tmp_path)  # a relative path
    assert done.returncode == code, done.stderr
    result = json.loads(done.stdout)[0]
    assert result["failed"] is bool(code)


def test_stats_and_export(tmp_path: Path) -> None:
    store = Store.in_dir(DataDir(tmp_path))
    store.record_request(
        Request(id="r", uri="file:///p/a.py", language="python", line=1, character=4,
                prefix="def f(a):\n    ", suffix="\n", latency_ms=5, model="m",
                adapter="base", source="model"),
        [Candidate(id="c", text="return a(", raw="return a(", logprob=-1, tokens=3,
                   parsed=False)])
    store.record_event("c", "accepted")
    store.record_check("c", verdict("compile", "syntax", introduced=True), "accept")
    store.record_revision("c", broken="return a(", fixed="return a()", status="ok")
    store.close()
    stats = json.loads(run("stats", "--json", data_dir=tmp_path).stdout)
    assert stats["by"][0]["accepted"] == 1 and stats["counts"]["revisions"] == 1
    out = tmp_path / "sft"
    done = run("export", "--kind", "sft", "--format", "jsonl", "--out", str(out),
               data_dir=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for split in out.glob("*.jsonl")
            for line in split.read_text().splitlines()]
    assert [r["completion"] for r in rows] == ["return a()"]
    assert (out / "README.md").exists()
    assert run("export", "--kind", "nonsense", "--out", str(out),
               data_dir=tmp_path).returncode != 0


def test_damaged_database_is_reported_not_replaced(tmp_path: Path) -> None:
    damaged = b"\x00garbage" * 500
    (tmp_path / "events.db").write_bytes(damaged)
    done = run("stats", data_dir=tmp_path)
    assert done.returncode == 2
    assert "damaged" in done.stderr and "events.db" in done.stderr
    assert (tmp_path / "events.db").read_bytes() == damaged


def test_adapters_commands(tmp_path: Path) -> None:
    from compilot.training.registry import AdapterInfo, Registry

    registry = Registry(tmp_path / "adapters")
    staging = registry.staging()
    (staging / "adapter.gguf").write_bytes(b"GGUF")
    registry.add(staging, AdapterInfo(version="v1", method="dpo", parent="base"))
    assert run("adapters", "promote", "v1", data_dir=tmp_path).returncode == 0
    assert registry.current() == "v1"
    listed = run("adapters", "list", data_dir=tmp_path)
    assert "v1 *" in listed.stdout and "promoted" in listed.stdout
    assert run("adapters", "promote", "nope", data_dir=tmp_path).returncode != 0
    assert run("adapters", "rollback", data_dir=tmp_path).returncode == 0
    assert registry.current() == "base"
    assert run("adapters", "rollback", data_dir=tmp_path).returncode == 1
