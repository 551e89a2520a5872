"""Splicing candidates into a document and finding new syntax errors; the ranking."""

from __future__ import annotations

import pytest

from compilot.feedback.records import Candidate
from compilot.feedback.syntax import Splicer, parser_for
from compilot.languages import language_for
from compilot.server.rank import rank

PY = 'def f(a):\n    """Doc."""\n    '
SUFFIX = "\n\n\ndef g():\n    return 2\n"


def splicer(before: str, after: str, grammar: str = "python") -> Splicer:
    parser = parser_for(grammar)
    assert parser is not None
    return Splicer(parser, (before + after).encode(), len(before.encode()), grammar)


@pytest.mark.parametrize(
    ("inserted", "parses"),
    [
        pytest.param("return a + 1", True, id="statement"),
        pytest.param("if a:\n        return 1\n    return 2", True, id="block"),
        pytest.param("return (a + 1", False, id="unclosed-paren"),
        pytest.param("return a +", False, id="dangling-operator"),
        pytest.param("if a:", False, id="block-without-body"),
        pytest.param("x = 'é' + \"ü\"", True, id="non-ascii"),
    ],
)
def test_python_splice(inserted: str, parses: bool) -> None:
    assert splicer(PY, SUFFIX).parses(inserted) is parses


def test_old_errors_elsewhere_are_not_blamed() -> None:
    broken_elsewhere = "def h(:\n    pass\n\n" + PY
    s = splicer(broken_elsewhere, SUFFIX)
    assert s.baseline
    assert s.parses("return a")
    assert not s.parses("return (a")


@pytest.mark.parametrize("grammar", ["java", "c", "cpp", "javascript", "typescript", "go",
                                     "rust"])
def test_grammars_load_offline(grammar: str) -> None:
    assert parser_for(grammar) is not None


def test_c_splice() -> None:
    s = splicer("int f(int a) {\n    ", "\n}\n", "c")
    assert s.parses("return a + 1;")
    assert not s.parses("return a + ;")


def cand(text: str, raw: str, logprob: float, tokens: int) -> Candidate:
    return Candidate(text=text, raw=raw, logprob=logprob, tokens=tokens)


def test_rank_puts_parsing_candidates_first_and_shortens_broken_tails() -> None:
    before, after = PY, SUFFIX
    ranked = rank(
        [
            cand("return (a", "raw1", -0.1, 3),          # best log-prob, does not parse
            cand("return a\n    if a:", "raw2", -0.5, 5),  # parses once its broken tail goes
            cand("return 2 * a", "raw3", -0.9, 4),
            cand("return 2 * a", "raw4", -0.2, 4),       # duplicate text
            cand("   ", "raw5", -0.01, 1),              # empty
        ],
        before=before, after=after, language=language_for("python"),
    )
    assert [r.text for r in ranked] == ["return a", "return 2 * a", "return (a"]
    assert [r.parsed for r in ranked] == [True, True, False]
    assert [r.shown for r in ranked] == [True, True, False]


def test_when_nothing_parses_only_the_most_likely_is_shown() -> None:
    ranked = rank([cand("return a +", "r", -0.2, 3), cand("return (a", "r", -0.1, 3)], before=PY,
                  after=SUFFIX, language=language_for("python"))
    assert [(r.text, r.parsed, r.shown) for r in ranked] == [
        ("return (a", False, True), ("return a +", False, False)]


def test_rank_without_grammar_keeps_log_prob_order() -> None:
    ranked = rank([cand("b", "b", -2.0, 1), cand("a", "a", -1.0, 1)], before="", after="",
                  language=language_for("plaintext"))
    assert [r.text for r in ranked] == ["a", "b"]
    assert all(r.parsed is None for r in ranked)


@pytest.mark.parametrize(("language_id", "source", "status"), [
    pytest.param("ruby", "def f(a)\n  a + 1\nend\n", "ok", id="ruby-ok"),
    pytest.param("ruby", "def f(a\n  a +\n", "syntax", id="ruby-broken"),
    pytest.param("shellscript", "if [ -f x ]; then echo hi; fi\n", "ok", id="bash-ok"),
    pytest.param("plaintext", "anything at all", "toolchain_missing", id="no-grammar"),
    *[pytest.param(lang, "x = 1\n", None, id=f"{lang}-terminates")
      for lang in ("php", "lua", "kotlin", "csharp")],
])
def test_any_language_in_the_pack_gets_syntax_checks(language_id: str, source: str,
                                                     status: str) -> None:
    from compilot.feedback.syntax import check_syntax

    result = check_syntax(source, language_id)
    assert result.status == status or (status is None and result.tool.startswith("tree-sitter "))


def test_other_pack_grammars_run_in_a_child_with_a_timeout(monkeypatch) -> None:
    from compilot.feedback import syntax as checks

    monkeypatch.setattr(checks, "UNVETTED_TIMEOUT", 2.0)
    ok = checks.check_syntax('[a]\nb = 1\n', "toml")
    assert (ok.status, ok.tool) == ("ok", "tree-sitter toml (subprocess)")
    assert checks.check_syntax("[a\nb = = 1\n", "toml").status == "syntax"
    # The pack's cobol grammar never returns on this input: a timeout, not a hang.
    assert checks.check_syntax("x", "cobol").status == "timeout"


# -- one rule for "parses" ------------------------------------------------------------------------

BROKEN_ELSEWHERE = "def h(:\n    pass\n\n\n"  # an old error the completion is not blamed for


@pytest.mark.parametrize("inserted", [
    pytest.param("return a + 1", id="statement"),
    pytest.param("return (a + 1", id="unclosed-paren"),
    pytest.param("return a +", id="dangling-operator"),
    pytest.param("if a:", id="empty-block"),
    pytest.param("while a:\n        pass\n    else", id="missing-colon"),
    pytest.param("for x in a:\n        yield x", id="loop"),
    pytest.param("return }", id="stray-closer"),
])
@pytest.mark.parametrize("head", [pytest.param("", id="clean-file"),
                                  pytest.param(BROKEN_ELSEWHERE, id="broken-elsewhere")])
def test_the_ranker_and_the_label_agree_on_what_parses(head: str, inserted: str) -> None:
    """The ranker's splice test and the syntax check behind a label use one walker: a
    candidate ranked as parsing is never blamed for a syntax error, and the other way round."""
    from compilot.feedback.blame import blame
    from compilot.feedback.diagnostics import Stage

    before, after = head + PY, SUFFIX
    ranked = splicer(before, after).parses(inserted)
    labelled = blame(before + after, before + inserted + after, "python", stage=Stage.SYNTAX)
    assert ranked is not labelled.introduced, labelled


def test_a_documents_tree_is_edited_not_parsed_again() -> None:
    """Each model request parsed its whole document from scratch."""
    from compilot.feedback.syntax import Trees

    parser = parser_for("python")
    assert parser is not None
    trees = Trees()
    text = "def f(a):\n    return a\n\n\nclass C:\n    x = 1\n"
    edits = [text,
             text.replace("return a", "return a + 1"),           # typed in the middle
             text.replace("return a", "return a + 1") + "y = (",   # appended, now broken
             "import os\n" + text,                               # inserted at the start
             "def f(a):\n    return a\n",                       # cut at the end
             "",
             "x = 1\n"]
    for source in edits:
        data = source.encode()
        tree = trees.tree("file:///a.py", parser, "python", data)
        assert str(tree.root_node) == str(parser.parse(data).root_node), source
        assert tree.root_node.end_byte == len(data)
    assert (trees.full, trees.incremental) == (1, len(edits) - 1)
    trees.tree("file:///b.py", parser, "python", b"z = 2\n")
    assert trees.full == 2


def test_the_ranking_is_the_same_with_the_kept_tree() -> None:
    from compilot.feedback.syntax import Trees

    before, after = "def f(a):\n    ", "\n\n\nprint(f(1))\n"
    candidates = [Candidate(text="return a +", raw="", logprob=-0.1, tokens=3),
                  Candidate(text="return a * 2", raw="", logprob=-0.5, tokens=4)]
    trees = Trees()
    rank(candidates, before="def g():\n    pass\n" + before, after=after,
         language=language_for("python"), trees=trees, key="file:///a.py")
    kept = rank(candidates, before=before, after=after, language=language_for("python"),
                trees=trees, key="file:///a.py")
    fresh = rank(candidates, before=before, after=after, language=language_for("python"))
    assert kept == fresh and trees.incremental == 1
    assert [c.text for c in kept if c.shown] == ["return a * 2"]
