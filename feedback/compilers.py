"""The compile check of each language: the real toolchain, never running the code.

Python is ``compile()`` plus pyflakes (undefined names are "unresolved"); C and C++ are
``gcc``/``g++ -fsyntax-only``; Java is ``javac`` (a bare method is wrapped in a class; missing
packages are "unresolved", as the thesis does); JavaScript ``node --check``; TypeScript and JSX
``tsc --noEmit``; Go ``gofmt -e`` and, inside a module, ``go vet``; Rust ``rustc
--emit=metadata``. Each tool runs in a fresh temporary directory, in a child process with a
timeout and an address-space limit (``feedback.limits``), in the C locale whose messages the
readers below classify.
"""

from __future__ import annotations

import ast
import itertools
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from pyflakes import checker as pyflakes_checker
from pyflakes import messages as pyflakes_messages

from compilot.feedback.diagnostics import (
    KEPT,
    SHOWN,
    CheckResult,
    CheckStatus,
    Diagnostic,
    Stage,
    encode,
    since_ms,
    status_of,
)
from compilot.feedback.limits import Completed, run_limited
from compilot.feedback.syntax import parser_for
from compilot.settings import CheckSettings

SYNTAX, TYPE, UNRESOLVED = CheckStatus.SYNTAX, CheckStatus.TYPE, CheckStatus.UNRESOLVED


class _ToolError(Exception):
    """The tool failed and said nothing we can read as diagnostics."""


@dataclass(frozen=True)
class _Job:
    dir: Path  # where the source file is written and the tool runs
    out: Path  # build outputs (javac -d, rustc -o)
    timeout: float
    memory_mb: int
    c_flags: tuple[str, ...] = ()
    written: list[str] = field(default_factory=list)

    def write(self, name: str, source: str) -> str:
        with open(self.dir / name, "xb") as f:  # "x": never overwrite a file in a workdir
            self.written.append(name)
            f.write(encode(source))
        return name

    def run(self, argv: Sequence[str]) -> Completed:
        # The C locale gives ASCII quotes and English messages, which the classifiers read.
        env = {**os.environ, "LC_ALL": "C", "LANG": "C", "NO_COLOR": "1",
               "GOPROXY": "off", "GOTOOLCHAIN": "local", "MALLOC_ARENA_MAX": "2"}
        done = run_limited(argv, cwd=self.dir, timeout=self.timeout,
                           memory_mb=self.memory_mb, env=env)
        if done.timed_out:
            raise TimeoutError(f"{argv[0]} ran over {self.timeout:g} s")
        return done


# -- compilers: each returns every diagnostic it reads; raises TimeoutError or _ToolError ------

_UNDEFINED = (pyflakes_messages.UndefinedName, pyflakes_messages.UndefinedLocal,
              pyflakes_messages.UndefinedExport)


def _python(source: str, job: _Job) -> list[Diagnostic]:
    """compile() in-process (it never executes), then pyflakes for undefined names only."""
    try:
        with warnings.catch_warnings():  # SyntaxWarnings would go to the server's stderr
            warnings.simplefilter("ignore")
            tree = ast.parse(encode(source), "snippet.py")
            compile(tree, "snippet.py", "exec")  # 'return' outside function etc. live here
    except SyntaxError as exc:
        line, col = max((exc.lineno or 1) - 1, 0), max((exc.offset or 1) - 1, 0)
        return [Diagnostic(line, col, exc.msg, SYNTAX)]
    except ValueError as exc:  # null bytes (3.11)
        return [Diagnostic(0, 0, str(exc), SYNTAX)]
    flakes = pyflakes_checker.Checker(tree, filename="snippet.py")
    return [Diagnostic(m.lineno - 1, m.col, m.message % m.message_args, UNRESOLVED)
            for m in sorted(flakes.messages, key=lambda m: (m.lineno, m.col))
            if isinstance(m, _UNDEFINED)]


def _read(pattern: re.Pattern[str], done: Completed,
          kind: Callable[[re.Match[str]], CheckStatus | None]) -> list[Diagnostic]:
    """Diagnostics from the lines ``pattern`` matches (groups line, col 1-based, msg), each of
    the ``kind`` it gives (None: skip), at most KEPT; a failed run with none is the tool's
    failure."""
    found = (Diagnostic(int(m["line"]) - 1, int(m["col"]) - 1, m["msg"], k)
             for m in pattern.finditer(done.output) if (k := kind(m)))
    return _or_fail(list(itertools.islice(found, KEPT)), done)


def _or_fail(found: list[Diagnostic], done: Completed) -> list[Diagnostic]:
    if done.returncode != 0 and not found:
        tail = done.output.strip().splitlines()[-3:]
        raise _ToolError(" / ".join(tail) or f"exit status {done.returncode}")
    return found


_GCC = re.compile(r"^(?P<file>[^:\n]*):(?P<line>\d+):(?P<col>\d+): (?:fatal )?error: "
                  r"(?P<msg>.*)$", re.M)
_C_SYNTAX = re.compile(r"^expected |stray |unterminated|missing terminating|empty character"
                       r"|invalid preprocessing|without #if|#else after|'else' without")


_C_PATH_FLAGS = ("-I", "-iquote", "-isystem")
_C_FLAG = re.compile(r"-(?:I|iquote|isystem)\S|-[DU]\w|-std=[\w+]+$")


def c_flags(tokens: Sequence[str]) -> tuple[str, ...]:
    """The tokens of ``tokens`` that the C and C++ check passes on: include paths (joined
    ``-Idir`` or ``-I dir``), macros and the standard. Anything else is dropped: a flag such
    as -fplugin, -B, -specs or @file could make the compiler load and run code."""
    out: list[str] = []
    rest = iter(tokens)
    for token in rest:
        if token in _C_PATH_FLAGS:
            path = next(rest, None)
            if path is not None:
                out += [token, path]
        elif _C_FLAG.match(token):
            out.append(token)
    return tuple(out)


def _gcc(compiler: str, lang: str, suffix: str) -> Callable[[str, _Job], list[Diagnostic]]:
    def run(source: str, job: _Job) -> list[Diagnostic]:
        name = job.write(f"snippet.{suffix}", source)
        done = job.run([compiler, "-fsyntax-only", "-x", lang, "-w", "-fmax-errors=100",
                        "-fdiagnostics-plain-output", "-fdiagnostics-column-unit=byte",
                        *job.c_flags, name])
        return _read(_GCC, done, lambda m: None if m["file"] != name
                     else UNRESOLVED if m["msg"].endswith("No such file or directory")
                     else SYNTAX if _C_SYNTAX.search(m["msg"]) else TYPE)
    return run


_JAVA_TYPES = frozenset({"class_declaration", "interface_declaration", "enum_declaration",
                         "record_declaration", "annotation_type_declaration"})
_JAVA_PUBLIC = re.compile(r"\bpublic\s+(?:(?:final|abstract|sealed|non-sealed|strictfp)\s+)*"
                          r"(?:class|interface|enum|record|@interface)\s+([A-Za-z_$][\w$]*)")
_JAVA_HEAD = re.compile(r"\s*(?:$|//|(?:import|package)\b)")
_JAVA_ERROR = re.compile(r"^[^\n]+\.java:(\d+): error: (.*)$")
_JAVA_SYNTAX = re.compile(r"expected$|^illegal |^reached end of file|^not a statement"
                          r"|^unclosed |^malformed |^orphaned |^'else' without|^empty character")
_JAVA_IMPORT = re.compile(r"\s*import\s+(?:static\s+)?([\w.$]+?)(\.\*)?\s*;")
_JAVA_SYMBOL = re.compile(r"\s+symbol:\s+(\w+)\s+([\w$]+)")


def _java_file(source: str) -> tuple[str, str, int]:
    """File name, text to compile, and the line of an inserted ``class Snippet {`` (or -1).

    A bare method (as the thesis' CodeSearchNet functions, and most completions) is wrapped in
    a class below its imports; a public class names the file, as javac demands."""
    parser = parser_for("java")
    declares = (parser is None or any(
        c.type in _JAVA_TYPES for c in parser.parse(encode(source)).root_node.children))
    if declares:
        public = _JAVA_PUBLIC.search(source)
        return f"{public[1] if public else 'Snippet'}.java", source, -1
    lines = source.splitlines(keepends=True)
    head = next((i for i, line in enumerate(lines) if not _JAVA_HEAD.match(line)), len(lines))
    wrapped = "class Snippet {\n" + "".join(lines[head:]) + "\n}\n"
    return "Snippet.java", "".join(lines[:head]) + wrapped, head


def _java(source: str, job: _Job) -> list[Diagnostic]:
    name, text, wrapped = _java_file(source)
    job.write(name, text)
    # A JVM reserves far more address space than it uses: cap heap, class space and code
    # cache so that it starts under RLIMIT_AS; C1 only and the serial GC start faster.
    done = job.run(["javac", f"-J-Xmx{max(64, job.memory_mb // 4)}m", "-J-Xshare:auto",
                    "-J-XX:CompressedClassSpaceSize=64m", "-J-XX:ReservedCodeCacheSize=32m",
                    "-J-XX:TieredStopAtLevel=1", "-J-XX:+UseSerialGC", "-d", str(job.out),
                    "-proc:none", "-implicit:none", "-Xlint:none", name])
    # javac prints the error, the source line, a caret line and maybe "symbol: class Foo".
    lines = done.output.splitlines() + ["", "", ""]
    errors: list[tuple[int, int, str, str]] = []  # (line, column, message, source line)
    for i, output in enumerate(lines):
        if m := _JAVA_ERROR.match(output):
            said = _JAVA_SYMBOL.match(lines[i + 3])
            msg = f"{m[2]}: {said[1]} {said[2]}" if said else m[2]
            errors.append((int(m[1]) - 1, max(lines[i + 2].find("^"), 0), msg, lines[i + 1]))
    # Imports are not on the classpath (the thesis ignores import errors, section 3.1.3): a
    # failed import, and each use of a name it would have brought, is "unresolved".
    imports = [imp for *_, echo in errors if (imp := _JAVA_IMPORT.match(echo))]
    names = {imp[1].rsplit(".", 1)[-1] for imp in imports if not imp[2]}
    wildcard = any(imp[2] for imp in imports)
    found: list[Diagnostic] = []
    last = max(len(source.splitlines()) - 1, 0)
    for line, column, msg, echo in errors:
        symbol = msg.rsplit(" ", 1)[-1] if msg.startswith("cannot find symbol:") else ""
        if (_JAVA_IMPORT.match(echo) or re.match(r"package \S+ does not exist", msg)
                or symbol in names or (wildcard and symbol[:1].isupper())):
            kind = UNRESOLVED
        else:
            kind = SYNTAX if _JAVA_SYNTAX.search(msg) else TYPE
        if 0 <= wrapped <= line:
            line = max(line - 1, wrapped)
        found.append(Diagnostic(min(line, last), column, msg, kind))
    return _or_fail(found, done)


_NODE_MODULE = re.compile(r"^\s*(?:import\s*[\w{*\"']|export[\s{*])", re.M)


def _node(source: str, job: _Job) -> list[Diagnostic]:
    """``node --check``; .mjs for ES modules, else .cjs (a package.json must not decide)."""
    name = job.write("snippet.mjs" if _NODE_MODULE.search(source) else "snippet.cjs", source)
    done = job.run(["node", "--check", name])
    # It prints "file:line", the source line, a caret line, then "SyntaxError: message".
    where = re.search(rf"{name}:(\d+)\n.*\n( *)\^", done.output)
    message = re.search(r"^\w*Error: .*$", done.output, re.M)
    found = ([Diagnostic(int(where[1]) - 1, len(where[2]), message[0], SYNTAX)]
             if where and message and done.returncode != 0 else [])
    return _or_fail(found, done)


_TSC = re.compile(r"^(?P<file>[^(\n]+)\((?P<line>\d+),(?P<col>\d+)\): error "
                  r"TS(?P<code>\d+): (?P<msg>.*)$", re.M)
_TS_UNRESOLVED = {"2307", "2792", "7016"}  # cannot find a module or its declarations


def _tsc(suffix: str) -> Callable[[str, _Job], list[Diagnostic]]:
    def run(source: str, job: _Job) -> list[Diagnostic]:
        name = job.write(f"snippet.{suffix}", source)
        done = job.run(["tsc", "--noEmit", "--pretty", "false", "--skipLibCheck", "--target",
                        "es2022", "--jsx", "preserve", "--allowJs", name])
        return _read(_TSC, done, lambda m: UNRESOLVED if m["code"] in _TS_UNRESOLVED
                     else SYNTAX if m["code"].startswith("1") else TYPE)
    return run


_GO = re.compile(r"^(?:vet: )?(?:\./)?snippet\.go:(?P<line>\d+):(?P<col>\d+): (?P<msg>.*)$",
                 re.M)
_GO_UNRESOLVED = re.compile(r"could not import|no required module|cannot find package"
                            r"|is not in std")


def _go(source: str, job: _Job) -> list[Diagnostic]:
    """``gofmt -e`` for syntax; ``go vet`` for types only inside a module (workdir/go.mod)."""
    name = job.write("snippet.go", source)
    found = _read(_GO, job.run(["gofmt", "-e", "-l", name]), lambda m: SYNTAX)
    if found or not (job.dir / "go.mod").exists() or shutil.which("go") is None:
        return found
    return _read(_GO, job.run(["go", "vet", name]), lambda m: UNRESOLVED
                 if _GO_UNRESOLVED.search(m["msg"]) else TYPE)


_RUST = re.compile(r"^(?P<file>[^:\n]+):(?P<line>\d+):(?P<col>\d+): "
                   r"error(?:\[(?P<code>E\d+)\])?: (?P<msg>.*)$", re.M)
_RUST_SYNTAX = re.compile(r"^(?:expected |unexpected |unterminated |unclosed |mismatched closing"
                          r"|this file contains an unclosed|unknown start of token)")
_RUST_UNRESOLVED = {"E0432", "E0433", "E0463"}  # unresolved import, path, crate


def _rust(source: str, job: _Job) -> list[Diagnostic]:
    """Metadata only (types checked, no code generated); a lib crate needs no main."""
    name = job.write("snippet.rs", source)
    done = job.run(["rustc", "--edition", "2021", "--crate-type", "lib", "--emit=metadata",
                    "--error-format=short", "--cap-lints=allow", "-o",
                    str(job.out / "out.rmeta"), name])
    return _read(_RUST, done, lambda m: None if m["file"] != name
                 else UNRESOLVED if m["code"] in _RUST_UNRESOLVED
                 else SYNTAX if _RUST_SYNTAX.match(m["msg"]) else TYPE)


@dataclass(frozen=True)
class _Compiler:
    tool: str
    needs: tuple[str, ...]  # executables that must be on PATH
    run: Callable[[str, _Job], list[Diagnostic]]


_COMPILERS = {
    "python": _Compiler("python compile+pyflakes", (), _python),
    "c": _Compiler("gcc -fsyntax-only", ("gcc",), _gcc("gcc", "c", "c")),
    "cpp": _Compiler("g++ -fsyntax-only", ("g++",), _gcc("g++", "c++", "cpp")),
    "java": _Compiler("javac", ("javac",), _java),
    "javascript": _Compiler("node --check", ("node",), _node),
    # node cannot read JSX; tsc checks only the syntax of JavaScript (no --checkJs).
    "javascriptreact": _Compiler("tsc --noEmit", ("tsc",), _tsc("jsx")),
    "typescript": _Compiler("tsc --noEmit", ("tsc",), _tsc("ts")),
    "typescriptreact": _Compiler("tsc --noEmit", ("tsc",), _tsc("tsx")),
    "go": _Compiler("gofmt -e + go vet", ("gofmt",), _go),
    "rust": _Compiler("rustc --emit=metadata", ("rustc",), _rust),
}


def toolchains() -> dict[str, tuple[str, tuple[str, ...]]]:
    """Each language's compile check: language id -> (what runs, the executables it needs on
    PATH; none for an in-process check)."""
    return {language: (c.tool, c.needs) for language, c in _COMPILERS.items()}


def available(language_id: str) -> bool:
    """Whether the compile toolchain of ``language_id`` is installed."""
    compiler = _COMPILERS.get(language_id)
    return compiler is not None and all(shutil.which(t) for t in compiler.needs)


def _strip(text: str, *dirs: Path) -> str:
    for d in dirs:
        for form in {str(d), os.path.realpath(d)}:
            text = text.replace(form + os.sep, "").replace(form, "")
    return text


def check_compile(source: str, language_id: str, settings: CheckSettings | None = None, *,
                  workdir: Path | None = None, limit: int = SHOWN) -> CheckResult:
    """The language's compiler on ``source``, never running the code, in a child process
    with the limits of ``settings`` (the defaults of ``[checks]`` when None); at most
    ``limit`` diagnostics. ``workdir``: a scratch folder of the caller's for the source file
    (one holding a go.mod or headers); outputs always go to a fresh temporary directory."""
    settings = settings or CheckSettings()
    started = time.perf_counter()
    compiler = _COMPILERS.get(language_id)
    if compiler is None or not available(language_id):
        tool = compiler.tool if compiler else ""
        return CheckResult(Stage.COMPILE, CheckStatus.TOOLCHAIN_MISSING, tool, (),
                           since_ms(started))
    dirs: tuple[Path, ...] = ()
    try:
        with tempfile.TemporaryDirectory(prefix="compilot-check-") as tmp:
            job = _Job(Path(workdir or tmp), Path(tmp), settings.timeout_s, settings.memory_mb,
                       c_flags(settings.c_flags))
            dirs = (job.dir, job.out)
            try:
                found = compiler.run(source, job)
            finally:
                for name in job.written if workdir else ():
                    (job.dir / name).unlink(missing_ok=True)
            found = [replace(d, message=_strip(d.message, *dirs)) for d in found[:KEPT]]
        return CheckResult(Stage.COMPILE, status_of(found), compiler.tool,
                           tuple(found[:limit]), since_ms(started))
    except TimeoutError as exc:
        return CheckResult(Stage.COMPILE, CheckStatus.TIMEOUT, compiler.tool,
                           (Diagnostic(0, 0, str(exc)),), since_ms(started))
    except Exception as exc:  # noqa: BLE001 - a check must never raise into the server
        text = str(exc) if isinstance(exc, _ToolError) else f"{type(exc).__name__}: {exc}"
        return CheckResult(Stage.COMPILE, CheckStatus.ERROR, compiler.tool,
                           (Diagnostic(0, 0, _strip(text, *dirs)),), since_ms(started))
