"""How long the syntax and compile checks take.

(a) tree-sitter on a ~2,000-line Python file (the standard library's argparse.py, cut at the
    last definition before line 2,000): the incremental check the ranker runs per
    candidate (Splicer: parse once, then `new_problems(inserted)` per edit), against a cold full
    parse of the edited file, and `check_syntax` (cold parse + diagnostics) on it;
(b) each compiler check (`check_compile`) on a small file that compiles.

    .venv/bin/python bench/checks.py [--repeat 30] [--javac-repeat 10] [--edits 300]
"""

from __future__ import annotations

import argparse
import inspect
import itertools
import re
import time
from collections.abc import Callable
from typing import TypeVar

from compilot.feedback import compilers
from compilot.feedback.syntax import Splicer, Trees, check_syntax, parser_for, problems

T = TypeVar("T")

SMALL = {
    "python": "import os\n\n\ndef f(path):\n    return os.path.basename(path).upper()\n",
    "c": "#include <string.h>\n\nint f(const char *s) {\n    return (int) strlen(s);\n}\n",
    "cpp": "#include <string>\n\nint f(const std::string &s) {\n    return (int) s.size();\n}\n",
    "java": "class A {\n    int f(String s) {\n        return s.length();\n    }\n}\n",
    "javascript": "function f(s) {\n  return s.trim().length;\n}\nmodule.exports = f;\n",
    "rust": "pub fn f(s: &str) -> usize {\n    s.trim().len()\n}\n",
}
# Candidates as the model writes them, one of them broken; inserted at a statement start.
EDITS = ["result = self._get_values(action, arg_strings)\n        ",
         "if not arg_strings:\n            return None\n        ",
         "value = (action.default +\n        ",
         "x"]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(fn: Callable[[], T], n: int) -> tuple[list[float], list[T]]:
    """Milliseconds of each of ``n`` calls, and what they returned."""
    times, results = [], []
    for _ in range(n):
        started = time.perf_counter()
        results.append(fn())
        times.append((time.perf_counter() - started) * 1000)
    return times, results


def python_file(lines: int = 2000) -> str:
    source = inspect.getsource(argparse).splitlines(keepends=True)
    cut = max(i for i, line in enumerate(source[:lines + 1])
              if line.startswith(("def ", "class ", "    def ")))
    return "".join(source[:cut])


def row(name: str, values: list[float], target: str = "") -> str:
    return (f"{name:<44} n={len(values):<4} p50 {pct(values, .5):8.2f} ms   "
            f"p95 {pct(values, .95):8.2f} ms   {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--javac-repeat", type=int, default=10)
    parser.add_argument("--edits", type=int, default=300)
    args = parser.parse_args()

    text = python_file()
    data = text.encode()
    # The edit point: a return statement of a method near the middle of the file.
    middle = re.compile(r"^ {8}return ", re.M).search(text, len(text) // 2).start() + 8
    ts = parser_for("python")
    assert ts is not None
    started = time.perf_counter()
    splicer = Splicer(ts, data, len(text[:middle].encode()), "python")
    first = (time.perf_counter() - started) * 1000
    edits = itertools.cycle(EDITS)
    incremental, _ = timed(lambda: splicer.new_problems(next(edits)), args.edits)
    spliced = [data[:splicer.offset] + e.encode() + data[splicer.offset:] for e in EDITS]
    which = itertools.cycle(spliced)
    cold, _ = timed(lambda: problems(ts.parse(next(which)), "python"), args.edits // 3)
    texts = itertools.cycle([s.decode() for s in spliced])
    full, _ = timed(lambda: check_syntax(next(texts), "python"), args.edits // 3)
    print(f"tree-sitter, {text.count(chr(10))}-line Python file, {len(data)} bytes "
          f"(Splicer's first parse: {first:.1f} ms)")
    print(row("incremental splice + new_problems (per edit)", incremental, "target p95 <= 10 ms"))
    print(row("cold full parse + problems", cold))
    print(row("check_syntax (cold parse + diagnostics)", full))
    # A request's document tree, one keystroke after the last: the kept tree edited
    # (feedback.syntax.Trees, what the server does now) against a parse from scratch (before).
    typed = [data[:splicer.offset] + b"x" * k + data[splicer.offset:]
             for k in range(1, args.edits + 2)]
    trees, keystroke = Trees(), itertools.count()
    trees.tree("doc", ts, "python", typed[0])
    kept, _ = timed(lambda: trees.tree("doc", ts, "python", typed[1 + next(keystroke)]),
                    args.edits)
    afresh = itertools.cycle(typed)
    scratch, _ = timed(lambda: ts.parse(next(afresh)), args.edits // 3)
    print(row("document tree after a keystroke: kept tree edited", kept))
    print(row("document tree after a keystroke: parsed afresh", scratch))

    print("\ncompile checks, small file that compiles (check_compile, wall time)")
    for language, source in SMALL.items():
        if not compilers.available(language):
            print(f"{language:<44} toolchain missing")
            continue
        n = args.javac_repeat if language == "java" else args.repeat
        times, results = timed(lambda s=source, lang=language: compilers.check_compile(s, lang), n)
        statuses = sorted({r.status for r in results})
        target = "target p95 <= 20 ms" if language == "python" else ""
        print(row(f"{language} ({results[0].tool}) {'/'.join(statuses)}", times, target))
    big, _ = timed(lambda: compilers.check_compile(text, "python"), args.repeat)
    print(row(f"python, the {text.count(chr(10))}-line file above", big))


if __name__ == "__main__":
    main()
