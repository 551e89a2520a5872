"""Bootstrap's inputs: function bodies cut with tree-sitter, the repository walk, and the include
flags of the C/C++ compile check, on small repositories written in each test."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from compilot.training.bodies import bodies
from compilot.training.corpus import Hole
from compilot.training.repository import (
    SKIP_REASONS,
    Skipped,
    SkipReason,
    SourceFile,
    include_flags,
    walk,
)

PYTHON = '''"""A module."""

import os


def add(a, b):
    """Add two numbers."""
    total = a + b
    return total


class Stack:
    def __init__(self):
        self.items = []
        self.size = 0

    @property
    def top(self):
        # the last one
        return self.items[-1]

    async def drain(self):  # a comment on the colon's line stays there
        while self.items:
            await self.pop()


def one_liner(): return 1


def only_doc():
    """Nothing else."""


def outer(x):
    def inner(y):
        z = y * 2
        return z
    return inner(x)
# a comment after the body, at the module's indentation
'''

C = '''#include "lib.h"

static int twice(int x)
{
    int y = x * 2;
    return y;
}

int one(void) { return 1; }

int last(int a) {
    a += 1;
    return a; }

char *copy(const char *s) {
    // duplicate
    return strdup(s);
}

int sum(int a, int b) {  /* a comment on the brace line stays there */
    int s = a + b;
    return s;
}
'''

CPP = '''namespace geo {
struct Point {
    double x, y;
    double norm() const {
        double s = x * x + y * y;
        return std::sqrt(s);
    }
};
}

int geo::area(int w) {
    int a = w * w;
    return a;
}

int scale(int v) { return v * 2; }

double scale(double v) {
    double r = v * 2;
    return r;
}
'''

JAVA = '''package demo;

public class Counter {
    private int count;

    public Counter(int start) {
        this.count = start;
        log("made");
    }

    public int add(int n) {
        count += n;
        return count;
    }

    public int add() {
        count += 1;
        return count;
    }

    interface Shape {
        double area();
        default String label() {
            String name = "shape";
            return name;
        }
    }
}
'''

JAVASCRIPT = '''function greet(name) {
  const text = `hi ${name}`;
  return text;
}

class Box {
  open() {
    this.isOpen = true;
    return this;
  }
}

const square = (n) => {
  const r = n * n;
  return r;
};

items.forEach((item) => {
  console.log(item);
  count++;
});

const short = (n) => n * 2;
'''

TYPESCRIPT = '''export class Repo<T> {
  private items: T[] = [];
  add(item: T): number {
    this.items.push(item);
    return this.items.length;
  }
}
'''

RUST = '''struct Point { x: f64, y: f64 }

impl<T> Point {
    fn norm(&self) -> f64 {
        let s = self.x * self.x + self.y * self.y;
        s.sqrt()
    }
}

fn main() {
    let p = Point { x: 3.0, y: 4.0 };
    println!("{}", p.norm());
}

fn one() -> i32 { 1 }
'''


def check_shape(hole: Hole, source: str, *, braces: bool) -> None:
    """The cut every hole must have: the file exactly, the cursor after the indentation of
    the first body line, the reference up to the end of the last, the suffix from its break."""
    assert hole.prefix + hole.reference + hole.suffix == source
    indentation = hole.prefix.split("\n")[-1]
    assert indentation and indentation.strip(" ") == ""
    assert hole.cursor == (hole.prefix.count("\n"), len(indentation))
    assert hole.reference.strip() and not hole.reference.endswith(("\n", "\r"))
    assert hole.suffix.startswith("\n")
    if braces:
        assert hole.suffix.split("\n")[1].strip().startswith("}")


@pytest.mark.parametrize(
    ("language", "source", "expected", "reference"),
    [
        pytest.param("python", PYTHON,
                     [("add", (7, 4)), ("Stack.__init__", (13, 8)), ("Stack.top", (18, 8)),
                      ("Stack.drain", (22, 8)), ("outer", (34, 4)), ("outer.inner", (35, 8))],
                     "total = a + b\n    return total", id="python"),
        pytest.param("c", C, [("twice", (4, 4)), ("copy", (15, 4)), ("sum", (20, 4))],
                     "int y = x * 2;\n    return y;", id="c"),
        pytest.param("cpp", CPP,
                     [("geo::Point::norm", (4, 8)), ("geo::area", (11, 4)), ("scale#2", (18, 4))],
                     "double s = x * x + y * y;\n        return std::sqrt(s);", id="cpp"),
        pytest.param("java", JAVA,
                     [("Counter.Counter", (6, 8)), ("Counter.add", (11, 8)),
                      ("Counter.add#2", (16, 8)), ("Counter.Shape.label", (23, 12))],
                     'this.count = start;\n        log("made");', id="java"),
        pytest.param("javascript", JAVASCRIPT,
                     [("greet", (1, 2)), ("Box.open", (7, 4)), ("square", (13, 2))],
                     "const text = `hi ${name}`;\n  return text;", id="javascript"),
        pytest.param("typescript", TYPESCRIPT, [("Repo.add", (3, 4))],
                     "this.items.push(item);\n    return this.items.length;", id="typescript"),
        pytest.param("rust", RUST, [("Point::norm", (4, 8)), ("main", (10, 4))],
                     "let s = self.x * self.x + self.y * self.y;\n        s.sqrt()", id="rust"),
    ],
)
def test_bodies_of_each_language(language: str, source: str,
                                 expected: list[tuple[str, tuple[int, int]]],
                                 reference: str) -> None:
    holes = bodies(source, language, f"src/file.{language}")
    assert holes is not None
    assert [(h.name, h.cursor) for h in holes] == expected
    assert holes[0].reference == reference
    for hole in holes:
        check_shape(hole, source, braces=language != "python")
        assert hole.path == f"src/file.{language}"
        assert 2 <= hole.reference.count("\n") + 1 <= 12


def test_a_python_docstring_stays_in_the_prefix_and_the_body_ends_at_its_last_statement(
) -> None:
    holes = bodies(PYTHON, "python", "m.py")
    assert holes is not None
    add, outer = holes[0], holes[-2]
    assert add.prefix.endswith('    """Add two numbers."""\n    ')
    assert outer.reference.endswith("return inner(x)")
    assert outer.suffix == "\n# a comment after the body, at the module's indentation\n"
    assert holes[2].reference.startswith("# the last one\n")


@pytest.mark.parametrize(
    ("min_lines", "max_lines", "found"),
    [
        pytest.param(2, 12, ["f"], id="defaults"),
        pytest.param(4, 12, [], id="too-short"),
        pytest.param(2, 2, [], id="too-long"),
        pytest.param(3, 3, ["f"], id="exactly"),
    ],
)
def test_line_bounds(min_lines: int, max_lines: int, found: list[str]) -> None:
    source = "def f(x):\n    y = x\n\n    return y\n"
    holes = bodies(source, "python", "f.py", min_lines=min_lines, max_lines=max_lines)
    assert [h.name for h in holes or []] == found


@pytest.mark.parametrize(
    ("language", "source"),
    [
        pytest.param("python", "def f(:\n    return 1\n", id="python"),
        pytest.param("java", "class A { void m() {\n  x();\n  }\n", id="java"),
        pytest.param("javascript", "function f( {\n  return 1;\n}\n", id="javascript"),
        pytest.param("rust", "fn f( {\n    1\n}\n", id="rust"),
    ],
)
def test_a_file_that_does_not_parse_gives_none(language: str, source: str) -> None:
    assert bodies(source, language, "x") is None


C_WITH_A_MACRO = """#define LIST(X) X(a) X(b)
LIST(DECLARE)

int broken(void) {
    int x = 1 +;
    return x;
}

int whole(int a) {
    int b = a + 1;
    return b;
}
"""


@pytest.mark.parametrize("language", ["c", "cpp"])
def test_c_and_cpp_keep_the_functions_outside_a_parse_error(language: str) -> None:
    """tree-sitter does not expand macros: real C and C++ files often hold an error node (380
    of llama.cpp's 1,100 source files did). Only the functions holding one are left out."""
    holes = bodies(C_WITH_A_MACRO, language, "x")
    assert holes is not None
    assert [h.name for h in holes] == ["whole"]
    assert bodies("int f( {\n  return 1;\n}\n", language, "x") == []


@pytest.mark.parametrize(
    ("language", "source"),
    [
        pytest.param("python", "x = 1\n", id="no-function"),
        pytest.param("python", "def f():\n\tx = 1\n\treturn x\n", id="tab-indented"),
        pytest.param("python", "def f(): x = 1; return x\n", id="same-line-as-colon"),
        pytest.param("python", 'def f():\n    """Doc."""; x = 1\n    return x\n',
                     id="same-line-as-docstring"),
        pytest.param("c", "int f(void) {\n    // todo\n    /* later */\n}\n",
                     id="only-comments"),
        pytest.param("c", "int f(void) { int x = 1;\n    return x;\n}\n",
                     id="statement-on-the-brace-line"),
        pytest.param("java", "interface A {\n    void m();\n}\n", id="no-body"),
        pytest.param("javascript", "setTimeout(function () {\n  a();\n  b();\n});\n",
                     id="anonymous-callback"),
    ],
)
def test_bodies_left_out(language: str, source: str) -> None:
    assert bodies(source, language, "x") == []


def test_repeated_names_count_the_bodies_left_out_too() -> None:
    source = "int f(int a) { return a; }\n\nint f(void) {\n    int b = 2;\n    return b;\n}\n"
    holes = bodies(source, "cpp", "x.cpp")
    assert [h.name for h in holes or []] == ["f#2"]


def test_crlf_lines_keep_their_break_in_the_suffix() -> None:
    source = "def f(x):\r\n    y = x\r\n    return y\r\n"
    holes = bodies(source, "python", "f.py")
    assert holes is not None and len(holes) == 1
    hole = holes[0]
    assert hole.prefix + hole.reference + hole.suffix == source
    assert (hole.reference, hole.suffix, hole.cursor) == ("y = x\r\n    return y", "\r\n", (1, 4))


def test_an_unknown_language_is_an_error() -> None:
    with pytest.raises(ValueError, match="'go'"):
        bodies("package main\n", "go", "main.go")


# -- the repository walk ---------------------------------------------------------------------


def write(root: Path, files: dict[str, str | bytes]) -> None:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    write(root, {
        ".git/hooks/update.py": "x = 1\n",
        ".compilotignore": "private/\n",
        "README.md": "# readme\n",
        "app.py": "def main():\n    return 1\n",
        "big.py": "x = 1\n" * 1000,
        "blob.c": b"int x;\0\0\0",
        "env/pyvenv.cfg": "home = /usr/bin\n",
        "env/lib/site.py": "x = 1\n",
        "gen/api_pb2.py": "x = 1\n",
        "gen/doc.py": '"""Values generated by the parser."""\n',
        "gen/schema.py": "# -*- coding: utf-8 -*-\n# Code generated by tool. DO NOT EDIT.\nx = 1\n",
        "include/lib.h": "int twice(int x);\n",
        "keys_prod.py": "KEY = 1\n",
        "latin.py": "x = 'caf\xe9'\n".encode("latin-1"),
        "lib.c": '#include "lib.h"\n',
        "node_modules/pkg/index.js": "module.exports = 1;\n",
        "private/secret.py": "x = 1\n",
        "src/vendor/lib.js": "var a = 1;\n",
        "static/app.min.js": "var a=1;\n",
        "static/bundle.js": "var a=1;" * 100 + "\n",
        "static/wide.js": ("// " + "x" * 250 + "\n") * 10,
        "sub/.compilotignore": "local.py\n",
        "sub/local.py": "x = 1\n",
        "sub/main.rs": "fn main() {}\n",
        "venv/__init__.py": "x = 1\n",  # a package of the user's named venv, no environment
    })
    (tmp_path / "outside.py").write_text("x = 1\n")
    (root / "link_out.py").symlink_to(tmp_path / "outside.py")
    (root / "linked").symlink_to(root / "sub", target_is_directory=True)
    os.mkfifo(root / "pipe.py")
    return root


@pytest.mark.timeout(10)  # reading the FIFO would block
def test_walk_yields_sources_and_the_reason_of_each_skip(repository: Path) -> None:
    found = list(walk(repository, ignore=["keys_*.py"], max_file_bytes=4096))
    assert [(f.relative, f.reason if isinstance(f, Skipped) else f.language)
            for f in found] == [
        ("app.py", "python"),
        ("big.py", SkipReason.HUGE),
        ("blob.c", SkipReason.BINARY),
        ("env", SkipReason.VENDORED),
        ("gen/api_pb2.py", SkipReason.GENERATED),
        ("gen/doc.py", "python"),
        ("gen/schema.py", SkipReason.GENERATED),
        ("include/lib.h", "c"),
        ("keys_prod.py", SkipReason.IGNORED),
        ("latin.py", SkipReason.NOT_UTF8),
        ("lib.c", "c"),
        ("link_out.py", SkipReason.IGNORED),
        ("node_modules", SkipReason.VENDORED),
        ("private/secret.py", SkipReason.IGNORED),
        ("src/vendor", SkipReason.VENDORED),
        ("static/app.min.js", SkipReason.MINIFIED),
        ("static/bundle.js", SkipReason.MINIFIED),
        ("static/wide.js", SkipReason.MINIFIED),
        ("sub/local.py", SkipReason.IGNORED),
        ("sub/main.rs", "rust"),
        ("venv/__init__.py", "python"),
    ]
    assert {f.reason for f in found if isinstance(f, Skipped)} <= set(SKIP_REASONS)
    app = found[0]
    assert isinstance(app, SourceFile)
    assert app.path == repository.resolve() / "app.py"
    assert app.text == "def main():\n    return 1\n"
    assert app.sha256 == hashlib.sha256(b"def main():\n    return 1\n").hexdigest()


def test_walk_keeps_to_the_languages_asked_for(repository: Path) -> None:
    found = list(walk(repository, languages={"rust"}))
    assert [f.relative for f in found] == ["env", "node_modules", "src/vendor", "sub/main.rs"]


# -- include flags for the compile check -----------------------------------------------------


def test_include_flags_come_from_the_compilation_database(tmp_path: Path) -> None:
    root = tmp_path.resolve()
    command = ("gcc -I../include -iquote ../quoted -isystem /opt/sys -DFOO=1 -D BAR -U BAZ "
               "-std=c11 -fplugin=evil.so @rsp -B/tmp/evil -specs=x.specs -include evil.h "
               "-I ../other -o main.o -c ../src/main.c")
    write(root, {"build/compile_commands.json": json.dumps([
        {"directory": str(root / "build"), "file": "../src/main.c", "command": command},
        {"directory": str(root), "file": "src/util.c",
         "arguments": ["cc", "-Ilib", "-DFOO=1", "-fplugin=x.so", "-c", "src/util.c"]},
    ])})
    src = str(root / "src")
    main = include_flags(root, root / "src" / "main.c")
    assert main == ("-iquote", src, "-I", str(root / "include"), "-iquote", str(root / "quoted"),
                    "-isystem", "/opt/sys", "-DFOO=1", "-DBAR", "-UBAZ", "-std=c11",
                    "-I", str(root / "other"))
    assert not [t for t in main if t.startswith(("-f", "@", "-B", "-specs", "-o", "-c"))]
    util = include_flags(root, root / "src" / "util.c")
    assert util == ("-iquote", src, "-I", str(root / "lib"), "-DFOO=1")
    # a file without an entry gets every entry's flags, each once
    assert include_flags(root, root / "src" / "new.c") == main + ("-I", str(root / "lib"))


def test_include_flags_without_a_database_name_the_include_folders(tmp_path: Path) -> None:
    root = tmp_path.resolve()
    for folder in ("include", "lib/inc", "a/b/c/include", "a/b/c/d/include",
                   "node_modules/x/include", "src"):
        (root / folder).mkdir(parents=True)
    write(root, {"compile_commands.json": "not json"})
    flags = include_flags(root, root / "src" / "x.c")
    assert flags == ("-iquote", str(root / "src"), "-I", str(root / "include"),
                     "-I", str(root / "lib/inc"), "-I", str(root / "a/b/c/include"),
                     "-I", str(root / "src"), "-I", str(root))


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_include_flags_let_gcc_compile_a_copy_elsewhere(tmp_path: Path) -> None:
    root = tmp_path.resolve() / "repo"
    write(root, {
        "include/api.h": "int twice(int x);\n",
        "src/local.h": "#define TWO 2\n",
        "src/x.c": '#include <api.h>\n#include "local.h"\nint twice(int x) { return x * TWO; }\n',
    })
    copy = tmp_path / "scratch" / "x.c"
    copy.parent.mkdir()
    shutil.copy(root / "src" / "x.c", copy)

    def compiles(*flags: str) -> bool:
        run = subprocess.run(["gcc", "-fsyntax-only", *flags, str(copy)], capture_output=True,
                             timeout=30, env={**os.environ, "LC_ALL": "C"})
        return run.returncode == 0

    assert not compiles()
    assert compiles(*include_flags(root, root / "src" / "x.c"))
