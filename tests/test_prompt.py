"""The prompt window, token healing and LSP positions."""

from __future__ import annotations

import pytest

from compilot.server.positions import offset_at, word_before
from compilot.server.prompt import heal, unheal, window

TEXT = "".join(f"line {i}\n" for i in range(1000))


def test_small_document_is_whole() -> None:
    w = window("abc\ndef", 5, prefix_chars=100, suffix_chars=100)
    assert (w.prefix, w.suffix, w.start) == ("abc\nd", "ef", 0)


def test_window_is_bounded_and_line_anchored() -> None:
    offset = TEXT.index("line 900")
    w = window(TEXT, offset, prefix_chars=300, suffix_chars=50)
    assert len(w.prefix) <= 300 and w.prefix.startswith("line ")
    assert TEXT[w.start - 1] == "\n"
    assert len(w.suffix) <= 50 and w.suffix.endswith("\n")


def test_anchor_is_kept_while_typing_so_the_kv_cache_is_reused() -> None:
    offset = TEXT.index("line 900")
    first = window(TEXT, offset, prefix_chars=300, suffix_chars=50)
    typed = TEXT[:offset] + "abc" + TEXT[offset:]
    second = window(typed, offset + 3, prefix_chars=300, suffix_chars=50, anchor=first.start)
    assert second.start == first.start
    assert second.prefix == first.prefix + "abc"
    # Far away the anchor moves.
    third = window(TEXT, len(TEXT) - 1, prefix_chars=300, suffix_chars=50, anchor=first.start)
    assert third.start > first.start


def test_huge_single_line_is_still_bounded() -> None:
    text = "x" * 10_000_000
    w = window(text, 5_000_000, prefix_chars=3000, suffix_chars=1000)
    assert len(w.prefix) <= 3000 and len(w.suffix) <= 1000


@pytest.mark.parametrize(
    ("prefix", "prompt", "held"),
    [
        pytest.param("def f():\n    ", "def f():", "\n    ", id="indent"),
        pytest.param("x = ", "x =", " ", id="space"),
        pytest.param("x = 1", "x = 1", "", id="none"),
        pytest.param("   ", "   ", "", id="only-blank"),
        pytest.param("a\r\n\t", "a", "\r\n\t", id="crlf-tab"),
    ],
)
def test_heal(prefix: str, prompt: str, held: str) -> None:
    assert heal(prefix) == (prompt, held)


def test_unheal() -> None:
    assert unheal("\n    return 1", "\n    ") == "return 1"
    assert unheal("return 1", "") == "return 1"
    assert unheal("  return 1\n  x", "    ") == "return 1\n  x"


@pytest.mark.parametrize(
    ("text", "line", "character", "offset"),
    [
        pytest.param("", 0, 0, 0, id="empty"),
        pytest.param("abc", 0, 2, 2, id="column"),
        pytest.param("abc\ndef", 1, 0, 4, id="column-0"),
        pytest.param("abc\r\ndef", 0, 9, 3, id="crlf-past-end"),
        pytest.param("a😀b\nx", 0, 3, 2, id="utf16-surrogate-pair"),
        pytest.param("abc", 3, 0, None, id="line-out-of-range"),
        pytest.param("abc", -1, 0, None, id="negative"),
    ],
)
def test_offset_at(text: str, line: int, character: int, offset: int | None) -> None:
    assert offset_at(text, line, character) == offset


def test_word_before() -> None:
    assert word_before("x = foo_bar", 11) == "foo_bar"
    assert word_before("x = ", 4) == ""
