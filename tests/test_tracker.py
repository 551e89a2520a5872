"""Following an accepted completion's region through edits; survival."""

from __future__ import annotations

import pytest

from compilot.feedback.tracker import Region, apply_edit, find_inserted, remap, survival

DOC = "def f(a):\n    return a + 1\n\nprint(f(2))\n"
TEXT = "return a + 1"
START = DOC.index(TEXT)


def region() -> Region:
    return Region("c", "file:///x.py", "python", START, START + len(TEXT), TEXT, 0.0)


def edit(doc: str, start: int, end: int, new: str) -> str:
    return doc[:start] + new + doc[end:]


@pytest.mark.parametrize(
    ("start", "end", "new", "expected"),
    [
        pytest.param(0, 0, "# hi\n", TEXT, id="insert-before"),
        pytest.param(0, 3, "", TEXT, id="delete-before"),
        pytest.param(START, START, "x = 0; ", TEXT, id="insert-at-start-stays-out"),
        pytest.param(START + len(TEXT), START + len(TEXT), "  # ok", TEXT,
                     id="typing-right-after-stays-out"),
        pytest.param(START + 7, START + 8, "b", "return b + 1", id="edit-inside"),
        pytest.param(START + 9, START + 12, "", "return a ", id="delete-tail"),
        pytest.param(START - 4, START + 6, "yield", "yield a + 1", id="overlaps-start"),
        pytest.param(len(DOC) - 1, len(DOC), "", TEXT, id="after"),
    ],
)
def test_region_follows_edits(start: int, end: int, new: str, expected: str) -> None:
    r = region()
    doc = edit(DOC, start, end, new)
    apply_edit(r, start, end, len(new))
    assert r.text(doc) == expected


def test_typing_right_after_a_broken_completion_is_inside() -> None:
    r = region()
    r.broken = "syntax"
    end = START + len(TEXT)
    apply_edit(r, end, end, 1)
    assert r.text(edit(DOC, end, end, "0")) == TEXT + "0"


def test_survival() -> None:
    assert survival("return a + 1", "return a + 1") == 1.0
    assert survival("return a + 1", "") == 0.0
    assert 0.5 < survival("return a + 1", "return a + 2") < 1.0
    assert survival("", "anything") == 1.0


def test_remap_after_a_change_on_disk() -> None:
    r = region()
    new = "import os\n\n" + DOC.replace("return a + 1", "return a + 10")
    assert remap(r, DOC, new)
    assert r.text(new).startswith("return a + 1")


def test_find_inserted_prefers_the_nearest() -> None:
    doc = "x = 1\nx = 1\nx = 1\n"
    assert find_inserted(doc, "x = 1", 7) == 6
    assert find_inserted(doc, "x = 1", 0) == 0
    assert find_inserted(doc, "y", 0) is None
