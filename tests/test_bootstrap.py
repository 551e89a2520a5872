"""`compilot bootstrap PATH` on small repositories, as a user runs it: the real model, the real
checks, the real store; resumed, interrupted, and fed hostile files."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from compilot.feedback.compilers import available

CLI = [sys.executable, "-m", "compilot"]
KEY = "AKIA" + "Q7XZ2M4P8R6T1V3W"  # a fake AWS access key id

PYTHON = '''"""Small helpers."""

WIDTH = 80


def clamp(value, low, high):
    """Keep value between low and high."""
    if value < low:
        return low
    return min(value, high)


def mean(values):
    total = sum(values)
    count = len(values)
    return total / count


class Stack:
    def __init__(self):
        self.items = []
        self.size = 0

    def push(self, item):
        self.items.append(item)
        self.size += 1

    def pop(self):
        self.size -= 1
        return self.items.pop()
'''

HEADER = """#ifndef GEOM_H
#define GEOM_H
typedef struct { double x, y; } point;
double dot(point a, point b);
point scale(point p, double k);
#endif
"""

C = """#include "geom.h"

double dot(point a, point b) {
    double s = a.x * b.x;
    s += a.y * b.y;
    return s;
}

point scale(point p, double k) {
    point out = p;
    out.x *= k;
    out.y *= k;
    return out;
}

double norm2(point p) {
    double d = dot(p, p);
    return d;
}

point add(point a, point b) {
    point out = a;
    out.x += b.x;
    out.y += b.y;
    return out;
}
"""


BODIES = {"if value < low:\n        return low\n    return min(value, high)",
          "total = sum(values)\n    count = len(values)\n    return total / count",
          "self.items = []\n        self.size = 0",
          "self.items.append(item)\n        self.size += 1",
          "self.size -= 1\n        return self.items.pop()",
          "double s = a.x * b.x;\n    s += a.y * b.y;\n    return s;",
          "point out = p;\n    out.x *= k;\n    out.y *= k;\n    return out;",
          "double d = dot(p, p);\n    return d;",
          "point out = a;\n    out.x += b.x;\n    out.y += b.y;\n    return out;"}


def environment(root: Path, **completion: Any) -> dict[str, str]:
    """A data dir and a config for short completions (a test makes things small)."""
    root.mkdir(parents=True, exist_ok=True)
    values = {"candidates": 3, "max_tokens": 24, "temperature": 0.8, **completion}
    (root / "config.toml").write_text(
        "[completion]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    return {**os.environ, "COMPILOT_DATA_DIR": str(root / "data"),
            "COMPILOT_CONFIG": str(root / "config.toml")}


def bootstrap(env: dict[str, str], *args: str) -> dict[str, Any]:
    done = subprocess.run([*CLI, "bootstrap", "--json", *args], env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def query(env: dict[str, str], sql: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(Path(env["COMPILOT_DATA_DIR"]) / "events.db")
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("repository")
    (root / "util.py").write_text(PYTHON)
    (root / "include").mkdir()
    (root / "include" / "geom.h").write_text(HEADER)
    (root / "src").mkdir()
    (root / "src" / "geom.c").write_text(C)
    return root


@pytest.fixture(scope="module")
def first_run(repository: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[dict[str, str], dict[str, Any]]:
    env = environment(tmp_path_factory.mktemp("bootstrap"))
    return env, bootstrap(env, str(repository))


def test_python_and_c_functions_are_completed_labelled_and_revised(
        first_run: tuple[dict[str, str], dict[str, Any]]) -> None:
    env, report = first_run
    assert report["plan"]["files"] == {"python": 1, "c": 2}  # the header has no bodies
    assert report["plan"]["functions"] == report["recorded"]["tasks"] == 9
    requests = query(env, "SELECT language, origin, count(*) FROM requests GROUP BY 1, 2")
    assert sorted(requests) == [("c", "bootstrap", 4), ("python", "bootstrap", 5)]
    # Every candidate with text is labelled; the compile stage unless it does not parse.
    unlabelled = query(env, "SELECT c.id FROM candidates c WHERE trim(c.text) != '' AND "
                            "NOT EXISTS (SELECT 1 FROM checks k WHERE k.candidate_id = c.id "
                            "AND k.stage = 'syntax')")
    assert unlabelled == []
    compiled = query(env, "SELECT count(DISTINCT candidate_id) FROM checks "
                          "WHERE stage = 'compile'")[0][0]
    assert compiled >= report["recorded"]["compiled"] > 0
    # Each candidate that broke the file has the real body as its fix; the accepted one that
    # did not has its survival in the real body.
    labelled = query(env, """
        SELECT c.id, max(k.introduced),
               (SELECT group_concat(v.fixed) FROM revisions v WHERE v.candidate_id = c.id),
               (SELECT count(*) FROM survival s WHERE s.candidate_id = c.id),
               EXISTS (SELECT 1 FROM events e WHERE e.candidate_id = c.id
                       AND e.kind = 'accepted')
        FROM candidates c JOIN checks k ON k.candidate_id = c.id GROUP BY c.id""")
    assert sum(accepted for *_, accepted in labelled) == 9 - report["recorded"]["empty"]
    for _, introduced, fixed, survivals, accepted in labelled:
        assert (fixed is not None) is bool(introduced)
        assert survivals == int(accepted and not introduced)
        assert fixed is None or fixed in BODIES
    assert report["recorded"]["revisions"] == sum(r[1] for r in labelled) > 0


@pytest.mark.skipif(not available("c"), reason="gcc is not installed")
def test_c_checks_find_the_project_headers(first_run: tuple[dict[str, str], dict[str, Any]]
                                           ) -> None:
    """With the include folder on the path, the file itself compiles and no check reads
    geom.h as missing (without it every #include "geom.h" is a fatal, "unresolved" error that
    hides every other one, and any candidate looks as if it compiled)."""
    env, report = first_run
    assert report["recorded"]["broken_files"] == 0
    missing = query(env, "SELECT diagnostics FROM checks WHERE diagnostics LIKE "
                         "'%No such file%'")
    assert missing == []


def test_a_second_run_skips_what_is_done(repository: Path,
                                         first_run: tuple[dict[str, str], dict[str, Any]]
                                         ) -> None:
    env, report = first_run
    before = query(env, "SELECT count(*) FROM requests")[0][0]
    again = bootstrap(env, str(repository))
    assert again["plan"]["done_before"] == report["recorded"]["tasks"]
    assert again["plan"]["tasks"] == 0 and "recorded" not in again
    assert query(env, "SELECT count(*) FROM requests")[0][0] == before
    # A changed file is a new file: its functions are done again.
    changed = repository / "util.py"
    changed.write_text(changed.read_text() + "\n\ndef twice(x):\n    y = x * 2\n    return y\n")
    try:
        dry = bootstrap(env, str(repository), "--dry-run", "--language", "python")
        assert dry["plan"]["tasks"] == 6 and dry["plan"]["done_before"] == 0
        assert query(env, "SELECT count(*) FROM requests")[0][0] == before
    finally:
        changed.write_text(PYTHON)


def test_ctrl_c_keeps_what_was_done(repository: Path, tmp_path: Path) -> None:
    env = environment(tmp_path)
    process = subprocess.Popen([*CLI, "bootstrap", "--quiet", str(repository)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    db = Path(env["COMPILOT_DATA_DIR"]) / "events.db"
    deadline = time.monotonic() + 300
    done = 0
    while time.monotonic() < deadline and process.poll() is None:
        if db.exists():
            try:
                done = query(env, "SELECT count(*) FROM bootstrapped")[0][0]
            except sqlite3.OperationalError:  # not migrated yet
                done = 0
            if done >= 2:
                break
        time.sleep(0.2)
    assert process.poll() is None, "it finished before it could be interrupted"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    kept = query(env, "SELECT count(*) FROM bootstrapped")[0][0]
    assert 2 <= kept < 9
    # Nothing half-written: each function marked done has its request.
    assert query(env, "SELECT count(*) FROM bootstrapped b JOIN requests r "
                      "ON r.id = b.request_id")[0][0] == kept
    rest = bootstrap(env, str(repository))
    assert rest["plan"]["done_before"] == kept
    assert rest["recorded"]["tasks"] == 9 - kept


def test_a_hostile_repository_gets_through_counted_and_the_secret_is_not_stored(
        tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "node_modules" / "left-pad").mkdir(parents=True)
    (repo / "node_modules" / "left-pad" / "index.js").write_text("function f() {\n}\n")
    (repo / "blob.py").write_bytes(b"def f():\n    return 1\x00\x01\x02\n")
    (repo / "app.min.js").write_text("function a(b){return b+1}" * 40 + "\n")
    (repo / "broken.py").write_text("def f(:\n    return 1\n")
    (repo / ".compilotignore").write_text("private/\n")
    (repo / "private").mkdir()
    (repo / "private" / "notes.py").write_text("def f():\n    x = 1\n    return x\n")
    (repo / "keys.py").write_text(
        f'TOKEN = "{KEY}"\n\n\ndef header():\n    value = TOKEN\n    return value\n')
    env = environment(tmp_path / "run", max_tokens=8)
    report = bootstrap(env, str(repo))
    assert report["plan"]["skipped"] == {"binary": 1, "minified": 1, "does_not_parse": 1,
                                         "vendored": 1, "ignored": 1}
    assert report["recorded"]["tasks"] == 1
    data = Path(env["COMPILOT_DATA_DIR"])
    for path in data.glob("events.db*"):
        assert KEY.encode() not in path.read_bytes(), path
    assert query(env, "SELECT count(*) FROM requests WHERE prefix LIKE '%<REDACTED>%'") == [(1,)]


def test_interruptible_turns_ctrl_c_into_a_flag_and_then_a_stop() -> None:
    """What bench/study.py and the CLI share: the first Ctrl-C sets the flag read between two
    functions (bench/study.py's data part ignored Ctrl-C before it used this), the second
    stops at once, and the handler before the block comes back after it."""
    from compilot.training.bootstrap import interruptible

    before = signal.getsignal(signal.SIGINT)
    with interruptible() as stop:
        assert not stop()
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        assert stop()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
    assert signal.getsignal(signal.SIGINT) is before and stop()
