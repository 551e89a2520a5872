"""Syntax (tree-sitter) and compile checks per language, and blame of a completion for them."""

from __future__ import annotations

import ast
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pyflakes import checker as pyflakes_checker
from pyflakes import messages as pyflakes_messages
from tree_sitter import Tree

# One source of truth for "accepted empty by the grammar, rejected by the compiler".
from compilot.feedback.syntax import empty_nodes, parser_for
from compilot.server.languages import language_for

STATUSES = ("ok", "syntax", "type", "unresolved", "timeout", "toolchain_missing", "error")
_FAILING = ("syntax", "type")
_SHOWN = 10  # diagnostics a result carries
_KEPT = 200  # diagnostics kept while checking: blame compares more than the shown ones


@dataclass(frozen=True)
class Diagnostic:
    """One error, 0-based; ``kind`` is the status it alone would give (syntax/type/unresolved)."""

    line: int
    column: int
    message: str
    kind: str = "error"


@dataclass(frozen=True)
class CheckResult:
    stage: str  # "syntax" | "compile"
    status: str  # one of STATUSES
    tool: str
    diagnostics: tuple[Diagnostic, ...]
    duration_ms: float

    @property
    def failed(self) -> bool:
        """A failure of the code; unresolved imports, timeouts and missing tools are not."""
        return self.status in _FAILING


@dataclass(frozen=True)
class Blame:
    result: CheckResult  # the check of the file with the completion
    introduced: bool
    new: tuple[Diagnostic, ...]


@dataclass(frozen=True)
class Completed:
    returncode: int
    output: str  # stdout then stderr
    timed_out: bool


class _ToolError(Exception):
    """The tool failed and said nothing we can read as diagnostics."""


def run_limited(argv: Sequence[str], *, cwd: Path | None, timeout: float, memory_mb: int,
                env: dict[str, str] | None = None) -> Completed:
    """Run ``argv`` with stdin closed and an address-space limit; kill its whole process group
    at ``timeout`` (compiler drivers fork: gcc runs cc1)."""
    limit = memory_mb * 1024 * 1024

    def limits() -> None:  # in the child, between fork and exec
        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        cap = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            errors="replace", start_new_session=True, preexec_fn=limits)
    try:
        out, err = proc.communicate(timeout=timeout)
        return Completed(proc.returncode, out + err, False)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        return Completed(proc.returncode, out + err, True)


@dataclass(frozen=True)
class _Job:
    dir: Path  # where the source file is written and the tool runs
    out: Path  # build outputs (javac -d, rustc -o)
    timeout: float
    memory_mb: int
    written: list[str] = field(default_factory=list)

    def write(self, name: str, source: str) -> str:
        with open(self.dir / name, "xb") as f:  # "x": never overwrite a file in a workdir
            self.written.append(name)
            f.write(_encode(source))
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


def _encode(source: str) -> bytes:
    """UTF-8; bytes a reader kept as surrogates (surrogateescape) go back as they were."""
    try:
        return source.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return source.encode("utf-8", "replace")


def _status(diagnostics: Sequence[Diagnostic]) -> str:
    kinds = {d.kind for d in diagnostics}
    return next((k for k in ("syntax", "type", "unresolved") if k in kinds), "ok")


def _since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


# -- tree-sitter ------------------------------------------------------------------------------

def _tree_diagnostics(tree: Tree, data: bytes, grammar: str) -> list[Diagnostic]:
    """ERROR and MISSING nodes (an ERROR covers its children), and nodes the compiler rejects
    empty (Python's ``if a:`` with no body, which tree-sitter accepts)."""
    found: list[Diagnostic] = []
    stack = [tree.root_node]
    while stack and len(found) < _KEPT:
        node = stack.pop()
        row, column = node.start_point
        if node.is_missing:
            found.append(Diagnostic(row, column, f"missing {node.type!r}", "syntax"))
        elif node.is_error:
            text = data[node.start_byte:node.end_byte].split(b"\n", 1)[0].strip()[:30]
            message = f"syntax error at {text.decode('utf-8', 'replace')!r}"
            found.append(Diagnostic(row, column, message, "syntax"))
        else:
            stack.extend(reversed([c for c in node.children if c.has_error or c.is_missing]))
    for node in empty_nodes(tree, grammar)[: max(0, _KEPT - len(found))]:
        found.append(Diagnostic(*node.start_point, f"empty {node.type}", "syntax"))
    return sorted(found, key=lambda d: (d.line, d.column))


# Grammars outside the vetted languages run in a child process: some of the pack's grammars
# never return on ordinary input, and py-tree-sitter 0.26 has no parse timeout.
UNVETTED_TIMEOUT = 5.0


def _unvetted_syntax(source: str, grammar: str, started: float) -> CheckResult:
    tool = f"tree-sitter {grammar} (subprocess)"
    with tempfile.TemporaryDirectory(prefix="compilot-syntax-") as tmp:
        path = Path(tmp) / "source"
        path.write_bytes(_encode(source))
        done = run_limited([sys.executable, "-m", "compilot.feedback.checks", grammar,
                            str(path)], cwd=Path(tmp), timeout=UNVETTED_TIMEOUT, memory_mb=1024)
    if done.timed_out:
        return CheckResult("syntax", "timeout", tool, (), _since(started))
    try:
        found = [Diagnostic(*row) for row in json.loads(done.output.splitlines()[-1])]
    except (ValueError, IndexError, TypeError):
        return CheckResult("syntax", "error", tool, (Diagnostic(0, 0, done.output[-300:]),),
                           _since(started))
    return CheckResult("syntax", _status(found), tool, tuple(found), _since(started))


def _syntax(source: str, language_id: str) -> CheckResult:
    started = time.perf_counter()
    grammar = language_for(language_id).grammar
    if grammar is None and language_id and parser_for(language_id) is not None:
        return _unvetted_syntax(source, language_id, started)
    parser = parser_for(grammar) if grammar else None
    if grammar is None or parser is None:
        return CheckResult("syntax", "toolchain_missing", "tree-sitter", (), _since(started))
    data = _encode(source)
    found = _tree_diagnostics(parser.parse(data), data, grammar)
    return CheckResult("syntax", _status(found), f"tree-sitter {grammar}", tuple(found),
                       _since(started))


# -- compilers: each returns every diagnostic it reads; raises TimeoutError or _ToolError ------

_UNDEFINED = (pyflakes_messages.UndefinedName, pyflakes_messages.UndefinedLocal,
              pyflakes_messages.UndefinedExport)


def _python(source: str, job: _Job) -> list[Diagnostic]:
    """compile() in-process (it never executes), then pyflakes for undefined names only."""
    try:
        with warnings.catch_warnings():  # SyntaxWarnings would go to the server's stderr
            warnings.simplefilter("ignore")
            tree = compile(_encode(source), "snippet.py", "exec", ast.PyCF_ONLY_AST)
            compile(tree, "snippet.py", "exec")  # 'return' outside function etc. live here
    except SyntaxError as exc:
        line, col = max((exc.lineno or 1) - 1, 0), max((exc.offset or 1) - 1, 0)
        return [Diagnostic(line, col, exc.msg, "syntax")]
    except ValueError as exc:  # null bytes (3.11)
        return [Diagnostic(0, 0, str(exc), "syntax")]
    flakes = pyflakes_checker.Checker(tree, filename="snippet.py")
    return [Diagnostic(m.lineno - 1, m.col, m.message % m.message_args, "unresolved")
            for m in sorted(flakes.messages, key=lambda m: (m.lineno, m.col))
            if isinstance(m, _UNDEFINED)]


def _read(pattern: re.Pattern[str], done: Completed,
          kind: Callable[[re.Match[str]], str | None]) -> list[Diagnostic]:
    """Diagnostics from the lines ``pattern`` matches (groups line, col 1-based, msg), each of
    the ``kind`` it gives (None: skip); a failed run with none is the tool's failure."""
    return _or_fail([Diagnostic(int(m["line"]) - 1, int(m["col"]) - 1, m["msg"], k)
                     for m in pattern.finditer(done.output) if (k := kind(m))], done)


def _or_fail(found: list[Diagnostic], done: Completed) -> list[Diagnostic]:
    if done.returncode != 0 and not found:
        tail = done.output.strip().splitlines()[-3:]
        raise _ToolError(" / ".join(tail) or f"exit status {done.returncode}")
    return found


_GCC = re.compile(r"^(?P<file>[^:\n]*):(?P<line>\d+):(?P<col>\d+): (?:fatal )?error: "
                  r"(?P<msg>.*)$", re.M)
_C_SYNTAX = re.compile(r"^expected |stray |unterminated|missing terminating|empty character"
                       r"|invalid preprocessing|without #if|#else after|'else' without")


def _gcc(compiler: str, lang: str, suffix: str) -> Callable[[str, _Job], list[Diagnostic]]:
    def run(source: str, job: _Job) -> list[Diagnostic]:
        name = job.write(f"snippet.{suffix}", source)
        done = job.run([compiler, "-fsyntax-only", "-x", lang, "-w", "-fmax-errors=100",
                        "-fdiagnostics-plain-output", "-fdiagnostics-column-unit=byte", name])
        return _read(_GCC, done, lambda m: None if m["file"] != name
                     else "unresolved" if m["msg"].endswith("No such file or directory")
                     else "syntax" if _C_SYNTAX.search(m["msg"]) else "type")
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
        c.type in _JAVA_TYPES for c in parser.parse(_encode(source)).root_node.children))
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
    errors = []  # (line, column, message, source line)
    for i, line in enumerate(lines):
        if m := _JAVA_ERROR.match(line):
            symbol = _JAVA_SYMBOL.match(lines[i + 3])
            msg = f"{m[2]}: {symbol[1]} {symbol[2]}" if symbol else m[2]
            errors.append((int(m[1]) - 1, max(lines[i + 2].find("^"), 0), msg, lines[i + 1]))
    # Imports are not on the classpath (the thesis ignores import errors, section 3.1.3): a
    # failed import, and each use of a name it would have brought, is "unresolved".
    imports = [imp for *_, echo in errors if (imp := _JAVA_IMPORT.match(echo))]
    names = {imp[1].rsplit(".", 1)[-1] for imp in imports if not imp[2]}
    wildcard = any(imp[2] for imp in imports)
    found, last = [], max(len(source.splitlines()) - 1, 0)
    for line, column, msg, echo in errors:
        symbol = msg.rsplit(" ", 1)[-1] if msg.startswith("cannot find symbol:") else ""
        if (_JAVA_IMPORT.match(echo) or re.match(r"package \S+ does not exist", msg)
                or symbol in names or (wildcard and symbol[:1].isupper())):
            kind = "unresolved"
        else:
            kind = "syntax" if _JAVA_SYNTAX.search(msg) else "type"
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
    found = ([Diagnostic(int(where[1]) - 1, len(where[2]), message[0], "syntax")]
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
        return _read(_TSC, done, lambda m: "unresolved" if m["code"] in _TS_UNRESOLVED
                     else "syntax" if m["code"].startswith("1") else "type")
    return run


_GO = re.compile(r"^(?:vet: )?(?:\./)?snippet\.go:(?P<line>\d+):(?P<col>\d+): (?P<msg>.*)$",
                 re.M)
_GO_UNRESOLVED = re.compile(r"could not import|no required module|cannot find package"
                            r"|is not in std")


def _go(source: str, job: _Job) -> list[Diagnostic]:
    """``gofmt -e`` for syntax; ``go vet`` for types only inside a module (workdir/go.mod)."""
    name = job.write("snippet.go", source)
    found = _read(_GO, job.run(["gofmt", "-e", "-l", name]), lambda m: "syntax")
    if found or not (job.dir / "go.mod").exists() or shutil.which("go") is None:
        return found
    return _read(_GO, job.run(["go", "vet", name]), lambda m: "unresolved"
                 if _GO_UNRESOLVED.search(m["msg"]) else "type")


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
                 else "unresolved" if m["code"] in _RUST_UNRESOLVED
                 else "syntax" if _RUST_SYNTAX.match(m["msg"]) else "type")


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


def available(language_id: str) -> bool:
    """Whether the compile toolchain of ``language_id`` is installed."""
    compiler = _COMPILERS.get(language_id)
    return compiler is not None and all(shutil.which(t) for t in compiler.needs)


def _strip(text: str, *dirs: Path) -> str:
    for d in dirs:
        for form in {str(d), os.path.realpath(d)}:
            text = text.replace(form + os.sep, "").replace(form, "")
    return text


def _compile(source: str, language_id: str, *, timeout: float = 10.0, memory_mb: int = 1024,
             workdir: Path | None = None) -> CheckResult:
    started = time.perf_counter()
    compiler = _COMPILERS.get(language_id)
    if compiler is None or not available(language_id):
        tool = compiler.tool if compiler else ""
        return CheckResult("compile", "toolchain_missing", tool, (), _since(started))
    dirs: tuple[Path, ...] = ()
    try:
        # Outputs always go to a fresh temporary directory; the source file too, unless the
        # caller gives a scratch ``workdir`` of its own (holding a go.mod, headers).
        with tempfile.TemporaryDirectory(prefix="compilot-check-") as tmp:
            job = _Job(Path(workdir or tmp), Path(tmp), timeout, memory_mb)
            dirs = (job.dir, job.out)
            try:
                found = compiler.run(source, job)
            finally:
                for name in job.written if workdir else ():
                    (job.dir / name).unlink(missing_ok=True)
            found = [replace(d, message=_strip(d.message, *dirs)) for d in found[:_KEPT]]
        return CheckResult("compile", _status(found), compiler.tool, tuple(found),
                           _since(started))
    except TimeoutError as exc:
        return CheckResult("compile", "timeout", compiler.tool, (Diagnostic(0, 0, str(exc)),),
                           _since(started))
    except Exception as exc:  # noqa: BLE001 - a check must never raise into the server
        text = str(exc) if isinstance(exc, _ToolError) else f"{type(exc).__name__}: {exc}"
        message = _strip(text, *dirs)
        return CheckResult("compile", "error", compiler.tool, (Diagnostic(0, 0, message),),
                           _since(started))


def _shown(result: CheckResult) -> CheckResult:
    return replace(result, diagnostics=result.diagnostics[:_SHOWN])


def check_syntax(source: str, language_id: str) -> CheckResult:
    """tree-sitter: ERROR and MISSING nodes; "toolchain_missing" for a language without one."""
    return _shown(_syntax(source, language_id))


def check_compile(source: str, language_id: str, *, timeout: float = 10.0,
                  memory_mb: int = 1024, workdir: Path | None = None) -> CheckResult:
    """The language's compiler, never running the code, in a subprocess with limits."""
    return _shown(_compile(source, language_id, timeout=timeout, memory_mb=memory_mb,
                           workdir=workdir))


def check(source: str, language_id: str, **kw: Any) -> list[CheckResult]:
    """Both stages, syntax then compile (both always run: the syntax check is cheap)."""
    return [check_syntax(source, language_id), check_compile(source, language_id, **kw)]


def _key(message: str) -> str:
    # Messages may cite a line ("... on line 12"), and lines shift when text is inserted.
    return re.sub(r"\bline \d+", "line N", message)


def blame(before: str, after: str, language_id: str, *, stage: str = "compile",
          **kw: Any) -> Blame:
    """Check ``after`` (the file with the completion); blame the completion only for failing
    diagnostics that ``before`` (the file without it) lacks, compared by message as a multiset
    (line numbers shift). With no baseline (``before`` timed out) nothing is blamed."""
    if stage not in ("syntax", "compile"):
        raise ValueError(f"stage must be 'syntax' or 'compile', not {stage!r}")

    def run(text: str) -> CheckResult:
        return _syntax(text, language_id) if stage == "syntax" else _compile(
            text, language_id, **kw)

    now = run(after)
    if not now.failed:
        return Blame(_shown(now), False, ())
    was = run(before)
    if was.status in ("timeout", "error", "toolchain_missing"):
        return Blame(_shown(now), False, ())
    left = Counter(_key(d.message) for d in was.diagnostics)
    new = []
    for d in now.diagnostics:
        if left[_key(d.message)] > 0:
            left[_key(d.message)] -= 1
        else:
            new.append(d)
    return Blame(_shown(now), any(d.kind in _FAILING for d in new), tuple(new[:_SHOWN]))


def _child_syntax(grammar: str, path: str) -> None:
    """``python -m compilot.feedback.checks GRAMMAR FILE``: diagnostics as one JSON line."""
    parser = parser_for(grammar)
    assert parser is not None
    data = Path(path).read_bytes()
    found = _tree_diagnostics(parser.parse(data), data, grammar)
    print(json.dumps([[d.line, d.column, d.message, d.kind] for d in found]))


if __name__ == "__main__":
    _child_syntax(sys.argv[1], sys.argv[2])
