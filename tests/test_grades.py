"""Graded outcomes: the ordinal, what blame records for it, DPO pairs by grade, the exports."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from compilot.feedback import datasets as fd
from compilot.feedback.blame import blame
from compilot.feedback.diagnostics import CheckStatus
from compilot.feedback.grades import Grade, grade
from compilot.feedback.records import Candidate, Origin, Request
from compilot.feedback.store import MIGRATIONS, Store
from compilot.feedback.syntax import check_syntax
from compilot.settings import DatasetSettings
from tests.records import verdict

OK = ("compile", "ok", False, None)


@pytest.mark.parametrize(
    ("parsed", "checks", "kept", "passed", "expected"),
    [
        pytest.param(False, [OK], False, None, Grade.DOES_NOT_PARSE, id="parse-flag"),
        pytest.param(True, [("compile", "syntax", True, "syntax")], False, None,
                     Grade.DOES_NOT_PARSE, id="compiler-syntax"),
        pytest.param(True, [("compile", "type", True, "type")], False, None, Grade.TYPE_ERROR,
                     id="type"),
        pytest.param(True, [("compile", "type", True, None)], False, None, Grade.TYPE_ERROR,
                     id="type-before-blamed-existed"),
        pytest.param(True, [("compile", "type", False, None)], False, None, None,
                     id="the-file-fails-with-or-without-it"),
        pytest.param(True, [("compile", "unresolved", False, "unresolved")], False, None,
                     Grade.UNRESOLVED, id="unresolved-brought-in"),
        pytest.param(True, [("compile", "unresolved", False, None)], False, None,
                     Grade.COMPILES, id="unresolved-the-file-had-already"),
        pytest.param(True, [OK], False, None, Grade.COMPILES, id="compiles"),
        pytest.param(True, [OK], True, None, Grade.KEPT, id="kept"),
        pytest.param(True, [OK], True, True, Grade.PASSES_TESTS, id="passes"),
        pytest.param(True, [OK], False, False, Grade.COMPILES, id="fails-its-tests"),
        pytest.param(True, [("compile", "timeout", False, None)], False, None, None,
                     id="timeout"),
        pytest.param(None, [("compile", "ok", False, None)], False, None, None,
                     id="no-syntax-evidence"),
    ],
)
def test_grade(parsed: bool | None, checks: list[Any], kept: bool, passed: bool | None,
               expected: Grade | None) -> None:
    assert grade(parsed, checks, kept=kept, passed=passed) == expected


def test_grades_are_ordered_as_the_issue_says() -> None:
    assert (Grade.DOES_NOT_PARSE < Grade.TYPE_ERROR < Grade.UNRESOLVED < Grade.COMPILES
            < Grade.KEPT < Grade.PASSES_TESTS)


FILE = "import os\n\n\ndef helper(x):\n    return x\n\n\ndef f(n):\n    {}\n"


@pytest.mark.parametrize(
    ("before", "completion", "blamed"),
    [
        pytest.param(FILE, "return helper(n)", None, id="defined-in-the-file"),
        pytest.param(FILE, "return frobnicate(n)", CheckStatus.UNRESOLVED, id="made-up-name"),
        pytest.param(FILE.replace("return x", "return missing(x)"), "return missing(n)",
                     None, id="the-file-lacks-it-already"),
        pytest.param(FILE, "return n +", CheckStatus.SYNTAX, id="syntax"),
    ],
)
def test_blame_records_what_the_completion_brought_in(before: str, completion: str,
                                                      blamed: CheckStatus | None) -> None:
    """Real pyflakes and compile(): unresolved names count against a completion only when the
    file without it lacks none of them (compared as a set, unlike failures)."""
    hole = before.index("{}")
    before = before[:hole] + before[hole + 2:]
    verdict_ = blame(before, before[:hole] + completion + before[hole:], "python")
    assert verdict_.blamed == blamed
    assert verdict_.introduced is (blamed == CheckStatus.SYNTAX)


def add(store: Store, rid: str, *candidates: tuple[str, str], origin: Origin = Origin.EDITOR,
        uri: str = "file:///w/a.py", prefix: str = "def f(n):\n    ") -> None:
    store.record_request(
        Request(id=rid, uri=uri, language="python", line=1, character=4,
                prefix=prefix, suffix="\n", latency_ms=1.0, model="m",
                adapter="base", source="model", origin=origin),
        [Candidate(id=cid, text=text, raw=text, logprob=-0.5, tokens=3,
                   parsed=not check_syntax("def f(n):\n    " + text + "\n", "python").failed)
         for cid, text in candidates])


def checked(store: Store, cid: str, status: str, blamed: str | None = None) -> None:
    store.record_check(cid, verdict("compile", status, introduced=status in ("syntax", "type"),
                                    blamed=blamed), "answer")


def build(store: Store, kind: str, **options: Any) -> list[dict[str, Any]]:
    settings = DatasetSettings(held_out=0.0, synthetic_negatives=False, **options)
    built = fd.build(store, fd.Selection(kind=kind), settings)  # type: ignore[arg-type]
    return [r for split in fd.SPLITS for r in built[split].to_list()]


@pytest.fixture
def graded(tmp_path: Path) -> Store:
    """One request with a candidate of each grade from does-not-parse to compiles, none
    accepted (background labels), and one bootstrap request."""
    store = Store(tmp_path / "events.db")
    add(store, "r1", ("clean", "return n + 1"), ("made-up", "return frob(n)"),
        ("typed", "return n.nope"), ("broken", "return n +"))
    checked(store, "clean", "ok")
    checked(store, "made-up", "unresolved", "unresolved")
    checked(store, "typed", "type")
    add(store, "r2", ("boot", "return n"), origin=Origin.BOOTSTRAP, uri="file:///w/b.py",
        prefix="def g(n):\n    ")
    checked(store, "boot", "ok")
    return store


def test_dpo_pairs_any_two_grades_with_a_compiling_chosen_side(graded: Store) -> None:
    pairs = {(r["chosen"], r["rejected"], r["chosen_grade"], r["rejected_grade"])
             for r in build(graded, "dpo")}
    assert pairs == {
        ("return n + 1", "return frob(n)", Grade.COMPILES, Grade.UNRESOLVED),
        ("return n + 1", "return n.nope", Grade.COMPILES, Grade.TYPE_ERROR),
        ("return n + 1", "return n +", Grade.COMPILES, Grade.DOES_NOT_PARSE),
        ("return frob(n)", "return n.nope", Grade.UNRESOLVED, Grade.TYPE_ERROR),
        ("return frob(n)", "return n +", Grade.UNRESOLVED, Grade.DOES_NOT_PARSE),
    }  # never a type error chosen over a parse failure: the SFT term would learn it
    first_rule = {(r["chosen"], r["rejected"]) for r in build(graded, "dpo",
                                                              dpo_pairs="compiles")}
    assert first_rule == {("return n + 1", "return n.nope"), ("return n + 1", "return n +"),
                          ("return frob(n)", "return n.nope"), ("return frob(n)", "return n +")}


def test_every_dataset_exports_grade_and_origin(graded: Store) -> None:
    events = {r["candidate_id"]: r for r in build(graded, "events")}
    assert {k: r["grade"] for k, r in events.items()} == {
        "clean": 3, "made-up": 2, "typed": 1, "broken": 0, "boot": 3}
    assert events["boot"]["origin"] == "bootstrap" and events["clean"]["origin"] == "editor"
    kto = build(graded, "kto")
    assert {(r["completion"], r["grade"]) for r in kto} == {("return n.nope", 1),
                                                            ("return n +", 0)}
    assert fd.summary(fd.DatasetDict({"train": fd.to_dataset(kto, "kto")}))["by_grade"] == {
        "does_not_parse": 1, "type_error": 1}


def test_summary_tells_origins_apart(graded: Store) -> None:
    by_origin = {r["origin"]: r["shown"] for r in graded.summary()}
    assert by_origin == {"editor": 4, "bootstrap": 1}
    assert graded.counts()["bootstrap_requests"] == 1


def test_a_version_3_store_migrates_keeping_its_rows(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "events.db")
    for script in MIGRATIONS[:3]:
        db.executescript(script)
    db.execute("PRAGMA user_version = 3")
    db.execute("INSERT INTO requests VALUES ('r', 1.0, 'file:///a.py', 'python', 0, 0, 'x', "
               "'', 1.0, 'm', 'base', 'model')")
    db.execute("INSERT INTO candidates VALUES ('c', 'r', 0, 'y', 'y', -1.0, 1, 0, 1)")
    db.execute("INSERT INTO checks (candidate_id, stage, trigger, status, tool, introduced, "
               "diagnostics, duration_ms, created_at) VALUES ('c', 'compile', 'accept', "
               "'type', 't', 1, '[]', 1.0, 1.0)")
    db.commit()
    db.close()
    store = Store(tmp_path / "events.db")
    assert store.schema_version == len(MIGRATIONS) == 7
    assert [tuple(r) for r in store.query("SELECT origin FROM requests")] == [("editor",)]
    assert build(store, "events")[0]["grade"] == Grade.DOES_NOT_PARSE  # parsed = 0
    assert store.bootstrapped() == set()


def test_a_version_5_store_tells_where_its_revisions_came_from(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "events.db")
    for script in MIGRATIONS[:5]:
        db.executescript(script)
    db.execute("PRAGMA user_version = 5")
    for rid, origin in (("r1", "editor"), ("r2", "bootstrap")):
        db.execute("INSERT INTO requests (id, created_at, uri, language, line, character, "
                   "prefix, suffix, latency_ms, model, adapter, source, origin) VALUES "
                   f"('{rid}', 1.0, 'file:///a.py', 'python', 0, 0, 'x', '', 1.0, 'm', 'base', "
                   f"'model', '{origin}')")
        db.execute(f"INSERT INTO candidates VALUES ('c{rid}', '{rid}', 0, 'y', 'y', -1.0, 1, "
                   "0, 1)")
        db.execute("INSERT INTO revisions (candidate_id, broken, fixed, status, created_at) "
                   f"VALUES ('c{rid}', 'y', 'z', 'ok', 1.0)")
    db.commit()
    db.close()
    store = Store(tmp_path / "events.db")
    rows = store.query("SELECT candidate_id, source FROM revisions ORDER BY candidate_id")
    assert [tuple(r) for r in rows] == [("cr1", "user"), ("cr2", "bootstrap")]
    store.record_revision("cr1", broken="y", fixed="w", status=CheckStatus.OK,
                          source="fix:model")
    assert store.counts()["fixes_applied"] == 1


def test_kto_rows_resampled_by_grade_keep_the_class_balance() -> None:
    from compilot.training.data import by_grade

    rows = ([{"completion": f"p{i}", "label": False, "grade": 0} for i in range(50)]
            + [{"completion": f"t{i}", "label": False, "grade": 1} for i in range(50)]
            + [{"completion": f"k{i}", "label": True, "grade": 4} for i in range(20)])
    dataset = fd.to_dataset([{**r, "prompt": "x", "suffix": "", "language": "python",
                              "adapter": "base", "file": "0" * 16, "source": "shown",
                              "origin": "editor", "created_at": 0.0} for r in rows], "kto")
    resampled = by_grade(dataset, seed=0)
    labels = resampled["label"]
    assert (labels.count(False), labels.count(True)) == (100, 20)
    grades = [g for g, label in zip(resampled["grade"], labels, strict=True) if not label]
    assert grades.count(0) / len(grades) > 0.55  # 1.0 : 0.6 gives 0.625 in expectation
    assert by_grade(dataset, seed=0)["completion"] == resampled["completion"]


def test_kto_weighting_is_checked() -> None:
    from compilot.settings import RangeError, TrainingSettings

    with pytest.raises(RangeError, match="training.kto_weighting"):
        TrainingSettings(kto_weighting="sometimes")
