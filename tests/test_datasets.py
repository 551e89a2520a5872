"""Training data from the event store: labels, pairs, splits, export and redaction."""

from __future__ import annotations

import json
import socket
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from compilot.feedback import dataset_export as fx
from compilot.feedback import datasets as fd
from compilot.feedback.grades import Grade
from compilot.feedback.records import Candidate, Request
from compilot.feedback.store import Store
from compilot.feedback.syntax import check_syntax
from compilot.paths import DataDir
from compilot.settings import DatasetSettings
from tests.records import verdict

KEY = "AKIA" + "Q7XZ2M4P8R6T1V3W"  # a fake AWS access key id
BROKEN = "for i in range(n)\n        total += i"
FIXED = "for i in range(n):\n        total += i"
STILL_COMPILES = 'x = "a:b"'  # its only corruption drops the colon inside the string


def add(store: Store, rid: str, at: float, uri: str, prefix: str, suffix: str,
        *candidates: tuple[str, str, bool | None, bool], language: str = "python") -> None:
    """A request and its candidates (id, text, parsed, shown)."""
    store.record_request(
        Request(id=rid, uri=uri, language=language, line=1, character=4, prefix=prefix,
                suffix=suffix, latency_ms=10.0, model="m.gguf", adapter="base-1",
                source="model", created_at=at),
        [Candidate(id=cid, text=text, raw=text, logprob=-0.5, tokens=4, parsed=parsed,
                   shown=shown)
         for cid, text, parsed, shown in candidates],
    )


def accept(store: Store, cid: str, status: str = "ok", share: float | None = 1.0,
           introduced: bool = False, kind: str = "accepted") -> None:
    store.record_event(cid, "shown")
    store.record_event(cid, kind)
    store.record_check(cid, verdict("compile", status, introduced=introduced,
                                    tool="py_compile"), "accept")
    if share is not None:
        store.record_survival(cid, at="30s", share=share, text="")


def fill(store: Store) -> None:
    add_prefix = "def add(a, b):\n    "
    add(store, "r1", 1000, "file:///w/a.py", add_prefix, "\n\n\nprint(add(1, 2))\n",
        ("add-ok", "return a + b", True, True), ("add-broken", "return a +", False, False))
    accept(store, "add-ok")
    add(store, "r2", 1100, "file:///w/b.py", "def is_even(n):\n    ", "\n",
        ("even", "return n % 2 == 0", True, True))
    accept(store, "even", share=0.9)
    store.record_survival("even", at="2m", share=0.8, text="")
    add(store, "r3", 1200, "file:///w/c.py", "def total(n):\n    total = 0\n    ",
        "\n    return total\n", ("loop", BROKEN, True, True))
    accept(store, "loop", status="syntax", introduced=True, share=None)
    store.record_revision("loop", broken=BROKEN, fixed=FIXED, status="ok")
    add(store, "r4", 1300, "file:///w/d.py", "def neg(x):\n    ", "\n",
        ("neg", "return -x", True, True))
    accept(store, "neg", kind="rejected", share=None)
    add(store, "r5", 1400, "file:///w/e.py", "def double(x):\n    ", "\n",
        ("gone", "return x * 2", True, True), ("slow", "return x + x", True, True))
    accept(store, "gone", share=0.2)  # compiles, but the user deleted most of it
    accept(store, "slow", status="timeout")  # the check timed out: unknown
    add(store, "r6", 1500, "file:///w/a.py", add_prefix, "\n\n\nprint(add(1, 2))\n",
        ("add-again", "return a + b", True, True))  # the same example as add-ok
    accept(store, "add-again")
    add(store, "r7", 1600, "file:///w/f.py", f'AWS = "{KEY}"\ndef get():\n    ', "\n",
        ("secret", "return AWS", True, True))
    accept(store, "secret")
    add(store, "r8", 1700, "file:///w/g.py", "def f():\n    ", "\n    return x\n",
        ("colon", STILL_COMPILES, True, True))
    accept(store, "colon")
    add(store, "r9", 1800, "file:///w/h.js", "function f() {\n  ", "\n}\n",
        ("js", "return 1;", True, True), language="javascript")
    accept(store, "js", status="toolchain_missing")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    store = Store.in_dir(DataDir(tmp_path_factory.mktemp("store")))
    fill(store)
    # Rows written before a redaction pattern existed: the export must still redact them.
    store.close()
    db = sqlite3.connect(store.path)
    db.execute("UPDATE requests SET suffix = ? WHERE id = 'r7'", (f"\n# {KEY}\n",))
    db.commit()
    db.close()
    return Store(store.path)


def rows(dataset_dict: Any) -> list[dict[str, Any]]:
    return [r for split in fd.SPLITS for r in dataset_dict[split].to_list()]


def build(store: Store, kind: str, *, since: float | None = None, language: str | None = None,
          **settings: Any) -> Any:
    """``kind`` from ``store``, every file in train unless ``held_out`` is given."""
    selection = fd.Selection(kind=kind, since=since, language=language)  # type: ignore[arg-type]
    return fd.build(store, selection, DatasetSettings(**{"held_out": 0.0, **settings}))


# -- labels -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("parsed", "checks", "expected"),
    [
        pytest.param(False, [], "fails", id="does-not-parse"),
        pytest.param(True, [("compile", "syntax", True)], "fails", id="introduced-syntax"),
        pytest.param(None, [("compile", "ok", False), ("compile", "type", True)], "fails",
                     id="introduced-type-on-save"),
        pytest.param(True, [("syntax", "syntax", True), ("compile", "ok", False)], "fails",
                     id="any-failing-check"),
        pytest.param(True, [("compile", "ok", False)], "compiles", id="compile-ok"),
        pytest.param(True, [("compile", "unresolved", False)], "compiles", id="unresolved"),
        pytest.param(None, [("syntax", "ok", False), ("compile", "unresolved", False)],
                     "compiles", id="no-grammar-flag-but-syntax-check"),
        pytest.param(None, [("compile", "toolchain_missing", False)], "unknown",
                     id="nothing-was-checked"),
        pytest.param(True, [("compile", "toolchain_missing", False)], "compiles",
                     id="toolchain-missing"),
        pytest.param(True, [("compile", "syntax", False), ("compile", "ok", False)], "compiles",
                     id="old-error-not-introduced"),
        pytest.param(True, [("compile", "timeout", False)], "unknown", id="timeout"),
        pytest.param(True, [("compile", "error", False)], "unknown", id="checker-error"),
        pytest.param(True, [("syntax", "ok", False)], "unknown", id="syntax-check-only"),
        pytest.param(True, [], "unknown", id="never-checked"),
    ],
)
def test_classify(parsed: bool | None, checks: list[tuple[str, str, bool]],
                  expected: str) -> None:
    assert fd.classify(parsed, [(*c, None) for c in checks]) == expected


@pytest.mark.parametrize(
    ("include_rejected", "expected"),
    [
        pytest.param(False, {"return a + b": True, "return n % 2 == 0": True, BROKEN: False,
                             "return a +": False, "return AWS": True, STILL_COMPILES: True},
                     id="default"),
        pytest.param(True, {"return a + b": True, "return n % 2 == 0": True, BROKEN: False,
                            "return a +": False, "return AWS": True, STILL_COMPILES: True,
                            "return -x": False},
                     id="rejected-compiling-included"),
    ],
)
def test_kto_labels(store: Store, include_rejected: bool, expected: dict[str, bool]) -> None:
    got = rows(build(store, "kto", language="python",
                     include_rejected_compiling=include_rejected))
    assert {r["completion"]: r["label"] for r in got} == expected
    assert len(got) == len(expected)  # "return a + b" twice in the store, once here
    sources = {r["completion"]: r["source"] for r in got}
    assert (sources["return a +"], sources[BROKEN]) == ("generated", "accepted")


def test_kto_summary_reports_balance(store: Store) -> None:
    s = fd.summary(build(store, "kto"))
    assert s["by_label"] == {"desirable": 5, "undesirable": 2}
    assert s["balance"] == {"desirable": 5, "undesirable": 2, "ratio": 2.5,
                            "desirable_weight": 1.0, "undesirable_weight": 2.5}
    assert s["by_language"] == {"javascript": 1, "python": 6}
    assert s["by_adapter"] == {"base-1": 7}
    assert s["time_range"]["from"].startswith("1970-01-01T00:16:40")


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        pytest.param({}, {"r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9"}, id="all"),
        pytest.param({"since": 1550.0}, {"r7", "r8", "r9"}, id="since"),
        pytest.param({"language": "javascript"}, {"r9"}, id="language"),
    ],
)
def test_events_filters(store: Store, options: dict[str, Any], expected: set[str]) -> None:
    got = rows(build(store, "events", **options))
    assert {r["request_id"] for r in got} == expected
    if not options:
        by_id = {r["candidate_id"]: r for r in got}
        assert len(by_id) == 11
        assert by_id["loop"]["outcome"] == "fails"
        assert by_id["loop"]["revision"] == FIXED
        assert (by_id["even"]["survival_at"], by_id["even"]["survival_share"]) == ("2m", 0.8)
        assert by_id["slow"]["check_status"] == "timeout"
        assert by_id["slow"]["outcome"] == "unknown"
        assert by_id["neg"]["events"] == "shown,rejected"


def test_parse_since() -> None:
    assert fd.parse_since("1970-01-02") == 86400.0
    assert fd.parse_since("86400") == 86400.0
    with pytest.raises(ValueError, match="since"):
        fd.parse_since("yesterday")
    with pytest.raises(ValueError, match="held_out"):
        DatasetSettings(held_out=2.0)
    with pytest.raises(ValueError, match="kind"):
        fd.Selection(kind="ppo")  # type: ignore[arg-type]


# -- SFT and dedupe -----------------------------------------------------------------------------

def test_sft_rows(store: Store) -> None:
    got = {(r["source"], r["completion"]) for r in rows(build(store, "sft", language="python"))}
    assert got == {("revision", FIXED), ("accepted", "return a + b"),
                   ("accepted", "return n % 2 == 0"), ("accepted", "return AWS"),
                   ("accepted", STILL_COMPILES)}


def test_dedupe_keeps_the_first() -> None:
    got = fd.dedupe([{"p": "a", "c": "1", "n": 1}, {"p": "a", "c": "1", "n": 2},
                     {"p": "a", "c": "2", "n": 3}], ("p", "c"))
    assert [r["n"] for r in got] == [1, 3]


def test_rows_carry_the_context_their_prompt_carried(tmp_path: Path) -> None:
    """The chunks of other files a request's prompt carried come with its rows (a cache hit's
    are its first request's); the same window with other context is another prompt; a secret
    in a chunk recorded before its pattern existed is redacted in the rows."""
    store = Store.in_dir(DataDir(tmp_path))
    chunk = {"path": "shapes/units.py", "start": 0, "text": "def square(x):\n    return x * x"}
    prefix = "def area(w):\n    "

    def request(rid: str, cid: str, **fields: Any) -> None:
        store.record_request(
            Request(id=rid, uri="file:///w/area.py", language="python", line=1, character=4,
                    latency_ms=1.0, model="m.gguf", adapter="base-1", source="model",
                    created_at=1000.0 + len(rid), **fields),
            [Candidate(id=cid, text="return square(w)", raw="return square(w)", logprob=-0.5,
                       tokens=4, parsed=True, shown=True)])
        accept(store, cid)

    request("ctx", "with", prefix=prefix, suffix="\n", context=(chunk,))
    request("hit", "hit-c", prefix="", suffix="", window_of="ctx")
    request("plain", "without", prefix=prefix, suffix="\n")
    request("older", "old", prefix=prefix, suffix="\n", context=(chunk,))
    store.close()
    db = sqlite3.connect(store.path)  # written before a redaction pattern existed
    db.execute("UPDATE requests SET context = ? WHERE id = 'older'",
               (json.dumps([chunk, {"path": "keys.py", "start": 0, "text": f"K = '{KEY}'"}]),))
    db.commit()
    db.close()
    store = Store.in_dir(DataDir(tmp_path))
    got = rows(build(store, "sft"))
    assert [r["context"] for r in got] == [
        [{"path": "shapes/units.py", "text": chunk["text"]}],
        [{"path": "shapes/units.py", "text": chunk["text"]}, {"path": "keys.py",
                                                              "text": "K = '<REDACTED>'"}],
        [],
    ]  # the hit is its first request's prompt (deduplicated); the plain window is apart
    assert all(KEY not in json.dumps(r) for r in rows(build(store, "events")))


# -- corruption and DPO -------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("return a + b", {"retrun a + b"}, id="keyword"),
        pytest.param("print(x[0])", {"print(x[0)", "print(x[0]"}, id="closing-brackets"),
        pytest.param("if x: y", {"if x y", "fi x: y"}, id="colon-and-keyword"),
        pytest.param("while ok:", {"whlie ok:", "while ok"}, id="while"),
        pytest.param("define = 1", set(), id="keyword-inside-a-word"),
        pytest.param("", set(), id="empty"),
    ],
)
def test_corruptions(text: str, expected: set[str]) -> None:
    assert set(fd.corruptions(text)) == expected


def test_corrupt_is_deterministic_by_seed() -> None:
    text = "def f(a):\n    return g(a[0], {1: 2})"
    assert fd.corrupt(text, seed=3) == fd.corrupt(text, seed=3)
    assert sorted(fd.corrupt(text, seed=3)) == sorted(fd.corruptions(text))
    assert len({tuple(fd.corrupt(text, seed=s)) for s in range(5)}) > 1


@pytest.mark.parametrize(
    ("prefix", "text", "suffix", "kept"),
    [
        pytest.param("def f(x):\n    ", "return (x + 1)", "\n", True, id="confirmed"),
        pytest.param("def f():\n    ", STILL_COMPILES, "\n    return x\n", False,
                     id="still-compiles"),
        pytest.param("def f(:\n    ", "return (x + 1)", "\n", False, id="window-already-broken"),
        pytest.param("x = ", "1", "\n", False, id="nothing-to-corrupt"),
    ],
)
def test_synthetic_negative(prefix: str, text: str, suffix: str, kept: bool) -> None:
    found = fd.synthetic_negative(prefix, text, suffix, "python", seed=0)
    assert (found is not None) is kept
    if found is not None:
        negative, grade = found
        assert negative in fd.corruptions(text)
        assert check_syntax(prefix + negative + suffix, "python").failed
        assert grade is Grade.DOES_NOT_PARSE


def test_dpo_pairs(store: Store) -> None:
    got = rows(build(store, "dpo", language="python"))
    pairs = {(r["source"], r["chosen"], r["rejected"]) for r in got}
    assert ("candidates", "return a + b", "return a +") in pairs
    assert ("revision", FIXED, BROKEN) in pairs
    synthetic = {r["chosen"]: r["rejected"] for r in got if r["source"] == "synthetic"}
    assert synthetic["return n % 2 == 0"] in fd.corruptions("return n % 2 == 0")
    assert STILL_COMPILES not in synthetic  # its only corruption still compiles
    assert "return a + b" not in synthetic  # r1 has a natural negative
    assert len(got) == len(pairs)
    none = rows(build(store, "dpo", language="python", synthetic_negatives=False))
    assert {r["source"] for r in none} == {"candidates", "revision"}


# -- split --------------------------------------------------------------------------------------

def test_split_by_file_is_disjoint(tmp_path: Path) -> None:
    store = Store.in_dir(DataDir(tmp_path))
    for n in range(16):
        for m in range(2):
            add(store, f"r{n}-{m}", 1000 + n, f"file:///w/m{n}.py", f"def f{n}_{m}():\n    ",
                "\n", (f"c{n}-{m}", "return 1", True, True))
            accept(store, f"c{n}-{m}")
    half = build(store, "sft", held_out=0.5)
    files = {s: set(half[s]["file"]) for s in fd.SPLITS}
    assert files["train"] and files["test"] and not files["train"] & files["test"]
    assert len(half["train"]) + len(half["test"]) == 32
    assert all(len(f) == 16 and "/" not in f for f in files["train"] | files["test"])
    again = build(store, "sft", held_out=0.5, seed=7)
    assert {s: set(again[s]["file"]) for s in fd.SPLITS} == files  # stable, seed-independent
    for held_out, empty in ((0.0, "test"), (1.0, "train")):
        dd = build(store, "sft", held_out=held_out)
        assert len(dd[empty]) == 0 and dd[empty].features == fd.FEATURES["sft"]


# -- export -------------------------------------------------------------------------------------

@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets.config

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"network access: {args}")

    monkeypatch.setattr(socket.socket, "connect", no_network)


@pytest.mark.parametrize("fmt", [pytest.param(f, id=f) for f in fx.FORMATS])
@pytest.mark.parametrize(
    ("kind", "held_out"),
    [
        pytest.param("kto", 0.0, id="kto-empty-test"),
        pytest.param("kto", 0.5, id="kto"),
        pytest.param("sft", 0.5, id="sft"),
        pytest.param("events", 0.5, id="events-with-nulls"),
    ],
)
def test_export_round_trip(store: Store, tmp_path: Path, offline: None, fmt: str, kind: str,
                           held_out: float) -> None:
    dd = build(store, kind, held_out=held_out)
    paths = fx.export(dd, tmp_path / "out", fmt=fmt, made_with={"kind": kind})
    assert all(p.exists() for p in paths)
    back = fx.load(tmp_path / "out", fmt, cache_dir=tmp_path / "cache")
    assert set(back) == set(fd.SPLITS)
    for split in fd.SPLITS:
        assert back[split].features == dd[split].features
        assert back[split].to_list() == dd[split].to_list()
    card = (tmp_path / "out" / "README.md").read_text()
    assert card.startswith("---\n") and "configs:" in card and "dataset_info:" in card
    assert f"| train | {len(dd['train'])} |" in card and f"| test | {len(dd['test'])} |" in card
    assert "introduced" in card and "## Redaction" in card
    if kind == "kto":
        assert "desirable (5), undesirable (2)" in card


@pytest.mark.parametrize("fmt", [pytest.param(f, id=f) for f in fx.FORMATS])
@pytest.mark.parametrize("kind", [pytest.param(k, id=k) for k in ("kto", "events")])
def test_secrets_never_exported(store: Store, tmp_path: Path, fmt: str, kind: str) -> None:
    assert KEY in store.query("SELECT suffix FROM requests WHERE id = 'r7'")[0][0]
    dd = build(store, kind, held_out=0.5)
    assert any(KEY[:4] not in (r["prompt"] + r["suffix"]) and "<REDACTED>" in r["prompt"]
               for r in rows(dd))
    fx.export(dd, tmp_path, fmt=fmt)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files
    for path in files:
        assert KEY.encode() not in path.read_bytes(), path
    assert not any(KEY in str(v) for r in rows(fx.load(tmp_path, fmt, cache_dir=tmp_path / "c"))
                   for v in r.values())
