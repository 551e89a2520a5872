"""The ring of other files' chunks: how files are cut, which chunks a request gets, and that
the choice holds still while the user types (the KV cache is reused only if it does)."""

from __future__ import annotations

from compilot.server.context import (
    Choice,
    ContextRing,
    chunks_of,
    definitions,
    identifiers,
    imported,
    jaccard,
)

UTILS = '''import re


def parse_header(line):
    """Split a header line."""
    name, _, value = line.partition(":")
    return name.strip().lower(), value.strip()


def quote_header(value):
    return '"' + value.replace('"', '\\\\"') + '"'


class HeaderRegistry:
    def __init__(self):
        self.headers = {}
'''

WINDOW = '''def read_headers(lines):
    headers = {}
    for line in lines:
        name, value = '''


def words(text: str) -> int:
    return len(text.split())


def test_a_file_is_cut_at_its_top_level_definitions() -> None:
    pieces = chunks_of(UTILS, chunk_lines=6)
    starts = [start for start, _ in pieces]
    assert starts == [0, 3, 9, 13]
    assert pieces[1][1].startswith("def parse_header(line):")
    assert pieces[1][1].endswith("return name.strip().lower(), value.strip()")
    # small neighbours share a piece when they fit
    merged = chunks_of(UTILS, chunk_lines=40)
    assert len(merged) == 1 and merged[0][0] == 0


def test_a_long_definition_is_cut_every_chunk_lines() -> None:
    text = "def long():\n" + "".join(f"    x{i} = {i}\n" for i in range(30))
    pieces = chunks_of(text, chunk_lines=10)
    assert [start for start, _ in pieces] == [0, 10, 20, 30]
    assert all(len(body.split("\n")) <= 10 for _, body in pieces)


def test_jaccard_over_identifiers() -> None:
    assert identifiers("aa.bb(cc, aa)") == {"aa", "bb", "cc"}
    assert identifiers("def f(self, x): return None") == set()  # keywords, one letter
    assert jaccard(frozenset("ab"), frozenset("bc")) == 1 / 3
    assert jaccard(frozenset(), frozenset()) == 0.0


def test_the_most_similar_chunk_of_another_file_is_chosen() -> None:
    ring = ContextRing(chunk_lines=6)
    ring.add_file("file:///p/utils.py", "utils.py", UTILS)
    ring.add_file("file:///p/other.py", "other.py", "def unrelated_thing(zz):\n    return zz\n")
    choice = ring.choose("file:///p/main.py", WINDOW, anchor=0, budget=30, measure=words)
    assert [c.path for c in choice.chunks] == ["utils.py"]
    assert choice.chunks[0].text.startswith("def parse_header")


def test_a_chunk_defining_a_name_the_window_uses_comes_first() -> None:
    """The window calls ``quote_header``, imported from utils: the chunk defining it comes
    before one more like the window by its words, and a definition the window has itself
    (``read_headers``) draws no chunk."""
    ring = ContextRing(chunk_lines=6)
    ring.add_file("file:///p/utils.py", "utils.py", UTILS)
    alike = "def headers_in(lines):\n    headers = [line for line in lines]\n"
    ring.add_file("file:///p/alike.py", "alike.py", alike)
    window = "from utils import quote_header\n\n\n" + WINDOW
    quote = next(c for c in ring.chunks if c.text.startswith("def quote_header"))
    assert jaccard(identifiers(window), identifiers(alike)) > jaccard(identifiers(window),
                                                                      quote.names)
    choice = ring.choose("file:///p/main.py", window, anchor=0, budget=20, measure=words)
    assert [c.text.split("(")[0] for c in choice.chunks] == ["def quote_header"]  # one fits
    assert definitions(UTILS) == {"parse_header", "quote_header", "HeaderRegistry", "__init__"}
    assert definitions("X_MAX = 3\nlimit_of: int = 2\na == b\nexport const makeThing = 1\n"
                       "pub fn go_now() {}\nasync function* walk() {}\n") == {
        "X_MAX", "limit_of", "makeThing", "go_now", "walk"}


def test_a_name_the_document_imports_above_the_window_draws_its_definition() -> None:
    """The import line is far above the window (outside it), the name not yet typed: the
    document's imports still say where to look."""
    ring = ContextRing(chunk_lines=6)
    ring.add_file("file:///p/utils.py", "utils.py", UTILS)
    ring.add_file("file:///p/alike.py", "alike.py",
                  "def headers_in(lines):\n    headers = [line for line in lines]\n")
    document = "from .utils import (parse_header,\n    quote_header)\n" + "\n" * 200 + WINDOW
    alone = ring.choose("file:///p/main.py", WINDOW, anchor=0, budget=20, measure=words)
    assert [c.path for c in alone.chunks] == ["alike.py"]
    choice = ring.choose("file:///p/main.py", WINDOW, anchor=1, budget=20, measure=words,
                         document=document)
    assert [c.text.split("(")[0] for c in choice.chunks] == ["def quote_header"]
    assert imported(document) == {"parse_header", "quote_header"}
    assert imported("import { makeThing } from './things'\nuse std::fmt;\n#include <stdio.h>\n"
                    "x = 1\n") == {"makeThing", "things", "std", "fmt", "stdio"}


def test_the_current_file_and_too_similar_chunks_are_left_out() -> None:
    ring = ContextRing(chunk_lines=6, max_similarity=0.5)
    ring.add_file("file:///p/main.py", "main.py", UTILS)
    assert ring.choose("file:///p/main.py", WINDOW, anchor=0, budget=500,
                       measure=words).chunks == ()
    ring.add_file("file:///p/copy.py", "copy.py", WINDOW + "line.split()\n")
    assert "copy.py" not in [c.path for c in ring.choose(
        "file:///p/main.py", WINDOW, anchor=0, budget=500, measure=words).chunks]


def test_the_budget_holds_and_the_ring_order_is_kept() -> None:
    ring = ContextRing(chunk_lines=6)
    ring.add_file("file:///p/a.py", "a.py", "def headers_of(line):\n    return line\n")
    ring.add_file("file:///p/utils.py", "utils.py", UTILS)
    everything = ring.choose("file:///p/main.py", WINDOW, anchor=0, budget=500, measure=words)
    assert [c.path for c in everything.chunks][0] == "a.py"  # entered the ring first
    serials = [c.serial for c in everything.chunks]
    assert serials == sorted(serials)
    small = ring.choose("file:///p/main.py", WINDOW, anchor=1, budget=25, measure=words)
    assert sum(words(c.text) + words(c.path) + 8 for c in small.chunks) <= 25
    assert len(small.chunks) < len(everything.chunks)


def test_the_choice_holds_while_typing_and_moves_with_the_ring_or_the_anchor() -> None:
    ring = ContextRing(chunk_lines=6)
    ring.add_file("file:///p/utils.py", "utils.py", UTILS)
    first = ring.choose("file:///p/main.py", WINDOW, anchor=7, budget=40, measure=words)
    typed = ring.choose("file:///p/main.py", WINDOW + "name, value = parse_",
                        anchor=7, budget=40, measure=words)
    assert typed is first  # keystrokes: the same choice, the prompt's head unchanged
    ring.add_file("file:///p/main.py", "main.py", "x = 1\n")  # the current file saved
    assert ring.choose("file:///p/main.py", WINDOW, anchor=7, budget=40,
                       measure=words) is first
    ring.add_file("file:///p/b.py", "b.py", "def lines_of(headers):\n    return headers\n")
    again = ring.choose("file:///p/main.py", WINDOW, anchor=7, budget=40, measure=words)
    assert again is not first
    moved = ring.choose("file:///p/main.py", WINDOW, anchor=90, budget=40, measure=words)
    assert moved is not again


def test_a_saved_file_replaces_its_chunks_and_the_oldest_leave() -> None:
    ring = ContextRing(chunk_lines=6, max_chunks=5)
    ring.add_file("file:///p/utils.py", "utils.py", UTILS)
    assert len(ring) == 4
    ring.add_file("file:///p/utils.py", "utils.py", "def only(): pass\n")
    assert [c.text for c in ring.chunks] == ["def only(): pass"]
    ring.add_file("file:///p/u2.py", "u2.py", UTILS)
    ring.add_file("file:///p/u3.py", "u3.py", UTILS)
    assert len(ring) == 5
    assert {c.path for c in ring.chunks} == {"u2.py", "u3.py"}
    ring.forget("file:///p/u3.py")
    assert {c.path for c in ring.chunks} == {"u2.py"}


def test_a_secret_in_another_file_never_reaches_the_context() -> None:
    secret = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
    ring = ContextRing(chunk_lines=10)
    ring.add_file("file:///p/settings.py", "settings.py",
                  f'STRIPE_KEY = "{secret}"\n\n\ndef read_headers_key(headers):\n'
                  "    return headers\n")
    choice = ring.choose("file:///p/main.py", WINDOW + "STRIPE_KEY", anchor=0, budget=500,
                         measure=words)
    assert choice.chunks
    assert all(secret not in c.text for c in ring.chunks)
    assert secret not in choice.as_comments("#")
    assert secret not in str(choice.as_records())


def test_an_excluded_file_never_enters_the_ring() -> None:
    ring = ContextRing(excluded=lambda uri: uri.endswith("private.py"))
    ring.add_file("file:///p/private.py", "private.py", UTILS)
    assert len(ring) == 0


def test_chunks_as_comments_and_as_files() -> None:
    ring = ContextRing(chunk_lines=6)
    ring.add_file("file:///p/utils.py", "pkg/utils.py", UTILS)
    choice = ring.choose("file:///p/main.py", WINDOW, anchor=0, budget=30, measure=words)
    text = choice.as_comments("#")
    assert text.startswith("# Compare this snippet from pkg/utils.py:\n# def parse_header(line):")
    assert text.endswith("\n") and "\n#     name, _, value" in text
    assert choice.files() == [("pkg/utils.py", choice.chunks[0].text)]
    assert Choice().as_comments("//") == ""
