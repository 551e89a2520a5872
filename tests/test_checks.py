"""Syntax and compile checks on the real toolchains, the limits they run under, and blame."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from compilot.feedback import compilers
from compilot.feedback.blame import blame, check
from compilot.feedback.compilers import available, check_compile
from compilot.feedback.diagnostics import CheckStatus
from compilot.feedback.limits import run_limited
from compilot.feedback.syntax import check_syntax
from compilot.settings import CheckSettings


def needs(language: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not available(language), reason=f"no {language} compiler")


C_OK = "#include <string.h>\n\nint f(const char *s) {\n    return (int) strlen(s);\n}\n"
CPP_OK = "#include <vector>\n\nint f(const std::vector<int> &v) { return (int) v.size(); }\n"
JAVA_BARE = "import java.util.List;\n\nint total(List<Integer> xs) {\n    int t = 0;\n" \
            "    for (int x : xs) t += x;\n    return t;\n}\n"


@pytest.mark.parametrize(
    ("language", "source", "status"),
    [
        pytest.param("python", "def f(a):\n    return a + 1\n", "ok", id="python-ok"),
        pytest.param("python", "def f(a):\n    return (a + 1\n", "syntax", id="python-syntax"),
        # compile() finds what the parser alone does not; it never runs the code.
        pytest.param("python", "import sys\nsys.exit(3)\nreturn 1\n", "syntax",
                     id="python-return-outside-function"),
        pytest.param("c", C_OK, "ok", id="c-ok", marks=needs("c")),
        pytest.param("c", "int f(int a) {\n    return a + 1\n}\n", "syntax",
                     id="c-syntax", marks=needs("c")),
        pytest.param("c", "int f(int a) {\n    int *p = 1.5;\n    return a;\n}\n", "type",
                     id="c-type", marks=needs("c")),
        pytest.param("c", '#include "nothere.h"\nint f(void) { return 0; }\n', "unresolved",
                     id="c-missing-include", marks=needs("c")),
        pytest.param("cpp", CPP_OK, "ok", id="cpp-ok", marks=needs("cpp")),
        pytest.param("cpp", "int f(int a) { return a + ; }\n", "syntax", id="cpp-syntax",
                     marks=needs("cpp")),
        pytest.param("cpp", "void g(int *p);\nvoid f() { g(2.5); }\n", "type", id="cpp-type",
                     marks=needs("cpp")),
        pytest.param("java", "public class Main {\n  int f() { return 1; }\n}\n", "ok",
                     id="java-ok-public-class-names-the-file", marks=needs("java")),
        pytest.param("java", JAVA_BARE, "ok", id="java-bare-method-wrapped", marks=needs("java")),
        pytest.param("java", "int f(int a) {\n    return a\n}\n", "syntax", id="java-syntax",
                     marks=needs("java")),
        pytest.param("java", "import com.example.missing.Widget;\n\nint f() {\n"
                     "    Widget w = new Widget();\n    return w.size();\n}\n", "unresolved",
                     id="java-missing-package", marks=needs("java")),
        pytest.param("javascript", "const f = (a) => a + 1;\nmodule.exports = f;\n", "ok",
                     id="javascript-ok", marks=needs("javascript")),
        pytest.param("javascript", "import x from 'y';\nexport const z = ;\n", "syntax",
                     id="javascript-module-syntax", marks=needs("javascript")),
        pytest.param("rust", "pub fn f(a: i32) -> i32 {\n    a + 1\n}\n", "ok", id="rust-ok",
                     marks=needs("rust")),
        pytest.param("rust", "pub fn f(a: i32) -> i32 {\n    a +\n", "syntax",
                     id="rust-syntax", marks=needs("rust")),
        pytest.param("rust", 'pub fn f() -> i32 {\n    "one"\n}\n', "type", id="rust-type",
                     marks=needs("rust")),
        pytest.param("rust", "use serde::Serialize;\npub fn f() {}\n", "unresolved",
                     id="rust-missing-crate", marks=needs("rust")),
    ],
)
def test_compile_status(language: str, source: str, status: str) -> None:
    result = check_compile(source, language)
    assert (result.stage, result.status) == ("compile", status), result.diagnostics
    assert result.failed is (status in ("syntax", "type"))
    assert (status == "ok") is not result.diagnostics
    assert all("compilot-check-" not in d.message for d in result.diagnostics)


def test_python_undefined_name_is_unresolved_not_failed() -> None:
    result = check_compile("def f(a):\n    return a + missing_name\n", "python")
    assert (result.status, result.failed) == ("unresolved", False)
    assert [(d.line, d.column, d.message) for d in result.diagnostics] == [
        (1, 15, "undefined name 'missing_name'")]


@needs("c")
def test_c_diagnostic_position_and_message() -> None:
    result = check_compile("int f(int a) {\n    return a + 1\n}\n", "c")
    assert [(d.line, d.column, d.message) for d in result.diagnostics] == [
        (1, 16, "expected ';' before '}' token")]


@needs("java")
def test_java_bare_method_type_error_maps_back_to_its_line() -> None:
    source = "import java.util.List;\n\nint f(List<Integer> a) {\n    String s = 1;\n" \
             "    return a.size();\n}\n"
    result = check_compile(source, "java")
    assert result.status == "type"
    assert [(d.line, d.column) for d in result.diagnostics] == [(3, 15)]
    assert "incompatible types" in result.diagnostics[0].message


@pytest.mark.parametrize(
    ("language", "source", "status", "where"),
    [
        pytest.param("python", "def f(a):\n    return a\n", "ok", [], id="python-ok"),
        pytest.param("python", "x = 1\ny = (2,\n", "syntax", [(1, 0)], id="python-unclosed"),
        # tree-sitter accepts an empty block; Python does not.
        pytest.param("python", "def f(a):\n    if a:\n", "syntax", [(1, 9)],
                     id="python-empty-block"),
        pytest.param("c", "int f() {\n  return 1\n}\n", "syntax", [(1, 10)],
                     id="c-missing-semicolon"),
        pytest.param("java", "class A { void f() { int x = ; } }", "syntax", [(0, 27)],
                     id="java-missing-expression"),
        pytest.param("go", "package main\nfunc f() {}\n", "ok", [], id="go-ok"),
    ],
)
def test_check_syntax(language: str, source: str, status: str,
                      where: list[tuple[int, int]]) -> None:
    result = check_syntax(source, language)
    assert (result.stage, result.status, result.failed) == ("syntax", status, bool(where))
    assert [(d.line, d.column) for d in result.diagnostics] == where
    assert result.tool == f"tree-sitter {language}"


def test_unknown_language_has_no_toolchain() -> None:
    syntax, compiled = check("x", "no-such-language")
    assert (syntax.status, syntax.tool, syntax.failed) == ("toolchain_missing", "tree-sitter",
                                                           False)
    assert compiled.status == "toolchain_missing"
    assert not available("no-such-language")


@pytest.mark.parametrize(
    "language",
    [
        pytest.param("go", id="go", marks=pytest.mark.skipif(
            available("go"), reason="gofmt is installed")),
        pytest.param("typescript", id="typescript", marks=pytest.mark.skipif(
            available("typescript"), reason="tsc is installed")),
    ],
)
def test_missing_toolchain(language: str) -> None:
    result = check_compile("package main\n", language)
    assert (result.status, result.failed, available(language)) == (
        "toolchain_missing", False, False)


def test_toolchain_missing_from_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compilers.shutil, "which", lambda name: None)
    assert not available("c")
    result = check_compile(C_OK, "c")
    assert (result.status, result.tool) == ("toolchain_missing", "gcc -fsyntax-only")


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(b"\x00\xff\xfe\x80 = 1\n".decode("utf-8", "surrogateescape"),
                     id="surrogateescape"),
        pytest.param(b"\x00\xff\xfe\x80 = 1\n".decode("utf-8", "replace"), id="replace"),
        pytest.param("x = '\ud800'\n", id="lone-surrogate"),
    ],
)
def test_binary_input_does_not_raise(text: str) -> None:
    for result in check(text, "python"):
        assert result.status in tuple(CheckStatus)
    assert check_syntax(text, "c").status in tuple(CheckStatus)


def test_ten_megabyte_python_source_is_parsed() -> None:
    unit = "def f{0}(a):\n    return a + {0}\n\n\n"
    source = "".join(unit.format(i) for i in range(300_000))
    assert len(source) > 10_000_000
    assert check_syntax(source, "python").status == "ok"


# -- the subprocess helper ------------------------------------------------------------------

def test_hung_tool_is_killed_at_the_timeout() -> None:
    started = time.monotonic()
    done = run_limited(["sleep", "30"], cwd=None, timeout=0.2, memory_mb=256)
    assert done.timed_out and time.monotonic() - started < 5


def test_timeout_kills_the_process_group() -> None:
    done = run_limited(["sh", "-c", "sleep 30 & echo $!; wait"], cwd=None,
                              timeout=0.3, memory_mb=256)
    assert done.timed_out
    child = int(done.output.split()[0])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    """Running, not gone and not a zombie waiting for a reaper that may not exist here."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_memory_limit_applies() -> None:
    done = run_limited([sys.executable, "-c", "bytearray(1 << 30)"], cwd=None,
                              timeout=10, memory_mb=256)
    assert done.returncode != 0 and "MemoryError" in done.output


@needs("cpp")
def test_compiler_over_time_is_a_timeout_not_a_failure() -> None:
    result = check_compile(CPP_OK, "cpp", CheckSettings(timeout_s=0.001))
    assert (result.status, result.failed) == ("timeout", False)


@needs("c")
def test_tool_that_cannot_start_is_an_error_not_an_exception() -> None:
    result = check_compile(C_OK, "c", CheckSettings(memory_mb=8))
    assert (result.status, result.failed) == ("error", False)
    assert result.diagnostics and "compilot-check-" not in result.diagnostics[0].message


@needs("c")
def test_workdir_holds_headers_and_is_left_clean(tmp_path: Path) -> None:
    (tmp_path / "local.h").write_text("int helper(int);\n")
    source = '#include "local.h"\nint f(void) { return helper(1); }\n'
    assert check_compile(source, "c", workdir=tmp_path).status == "ok"
    assert os.listdir(tmp_path) == ["local.h"]


# -- blame ----------------------------------------------------------------------------------

C_HEAD = "int f(int a) {\n"
C_TAIL = "\n}\n\nint g(void) {\n    return undeclared_elsewhere;\n}\n"


@needs("c")
@pytest.mark.parametrize(
    ("completion", "status", "introduced", "new"),
    [
        # Two lines inserted above the old error: its line moves, its message does not.
        pytest.param("    int b = a;\n    return b;", "type", False, [], id="old-error-only"),
        pytest.param("    return a + nope;", "type", True,
                     ["'nope' undeclared (first use in this function)"], id="new-type-error"),
        pytest.param("    return a +;", "syntax", True, ["expected expression before ';' token"],
                     id="new-syntax-error"),
    ],
)
def test_blame_c(completion: str, status: str, introduced: bool, new: list[str]) -> None:
    blamed = blame(C_HEAD + C_TAIL, C_HEAD + completion + C_TAIL, "c")
    assert (blamed.result.status, blamed.introduced) == (status, introduced)
    assert [d.message for d in blamed.new] == new


OLD_ERROR = "def g(:\n    pass\n\n\n"


@pytest.mark.parametrize(
    ("old", "completion", "stage", "introduced"),
    [
        pytest.param(OLD_ERROR, "return a + 1", "syntax", False, id="syntax-old-error-only"),
        pytest.param(OLD_ERROR, "return (a + 1", "syntax", True, id="syntax-new-error"),
        # compile() stops at the first error, so these files have no old one.
        pytest.param("", "return a + 1", "compile", False, id="compile-ok"),
        pytest.param("", "return a + missing", "compile", False, id="compile-unresolved"),
        pytest.param("", "return a +", "compile", True, id="compile-new-error"),
    ],
)
def test_blame_python(old: str, completion: str, stage: str, introduced: bool) -> None:
    head, tail = old + "def f(a):\n    ", "\n\n\nprint(f(1))\n"
    blamed = blame(head + tail, head + completion + tail, "python", stage=stage)
    assert (blamed.result.stage, blamed.introduced) == (stage, introduced)


def test_c_flags_pass_include_paths_and_macros_only() -> None:
    flags = ["-I", "/p/include", "-Isrc", "-iquote", "/q", "-isystem", "/s", "-DN=1", "-UX",
             "-std=c++17", "-fplugin=/tmp/evil.so", "@/tmp/args", "-B", "/tmp/bin",
             "-specs=/tmp/s", "-include", "/tmp/h.h", "-O2", "-I"]
    assert compilers.c_flags(flags) == ("-I", "/p/include", "-Isrc", "-iquote", "/q",
                                        "-isystem", "/s", "-DN=1", "-UX", "-std=c++17")


@pytest.mark.skipif(not available("c"), reason="gcc is not installed")
def test_c_flags_let_the_check_find_a_project_header(tmp_path: Path) -> None:
    (tmp_path / "geom.h").write_text("typedef struct { int x; } point;\n")
    source = '#include "geom.h"\nint f(point p) { return p.x; }\n'
    without = check_compile(source, "c")
    assert without.status is CheckStatus.UNRESOLVED  # the fatal error hides everything else
    found = check_compile(source, "c", CheckSettings(c_flags=["-iquote", str(tmp_path)]))
    assert found.status is CheckStatus.OK
    wrong = check_compile(source.replace("p.x", "p.y"), "c",
                          CheckSettings(c_flags=["-iquote", str(tmp_path)]))
    assert wrong.status is CheckStatus.TYPE
