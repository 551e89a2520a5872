"""Cross-file context: does seeing the other files of a package make completions resolve?

Tasks: standard-library package modules (email/, json/, asyncio/, importlib/, ...) whose
function bodies use a name the module imports from a sibling module (``from .utils import
quote``) that defines it. The model sees the import line, but not what the name is, and a small
model that cannot see a helper invents one. As CrossCodeEval (Ding et al., 2023) cuts its
tasks, the cursor is where the other file is needed: at the first line of the body that uses
such a name (after its indentation; the body's earlier lines stay, its later ones go), or with
``--at body`` at the start of the whole body. Each task's module is opened so, its siblings
that define the names are opened too, and the top suggestion there is asked of two `compilot
serve`s, side by side in one run: one with cross-file context (the default settings), one
without (``context.enabled = false``). Scores, per side:

- **strict compile@1**: the suggestion, spliced in, brings in no syntax error, no type error
  and no unresolved name (``feedback.blame`` against the file without it: names the file lacks
  already do not count). Named apart from the evaluation's compile@1, which counts unresolved
  names as compiling;
- names used: the suggestion uses one of the sibling's names that the true code uses there
  (CrossCodeEval's identifier match, loosely);
- compile@1 as the evaluation counts it, and edit similarity to the true code;
- the latency of the first request in the file and of the request after one keystroke there.

    .venv/bin/python bench/context.py [--tasks 100] [--seed 5] [--at line|body] [--predict-ms 0]
                                      [--json out.json]
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import json
import os
import random
import re
import statistics
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from compilot.feedback.blame import blame
from compilot.feedback.diagnostics import FAILING
from compilot.lsp_client import command, inline, start_server, stop
from compilot.training.bodies import bodies
from compilot.training.metrics import edit_similarity

PACKAGES = ("email", "json", "asyncio", "importlib", "http", "logging", "concurrent/futures",
            "xml/etree", "xml/dom", "multiprocessing", "urllib", "unittest", "sqlite3",
            "dbm", "wsgiref", "xmlrpc", "tomllib", "zoneinfo", "curses", "ctypes", "html",
            "idlelib", "lib2to3", "lib2to3/fixes", "distutils", "distutils/command", "tkinter",
            "email/mime", "pydoc_data", "ensurepip", "venv")
MAX_FILE_CHARS = 60_000


@dataclass
class Task:
    module: Path
    document: str
    """The module with the body taken out."""
    offset: int
    reference: str
    siblings: list[Path]
    """The modules that define the names the body uses (opened as the user's other tabs)."""
    names: list[str]


def defined(tree: ast.Module) -> set[str]:
    """Top-level definitions of a module: functions, classes, assigned names."""
    out: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, ast.Assign):
            out |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return out


def sibling_imports(tree: ast.Module, package: Path, dotted: str, here: Path
                    ) -> dict[str, Path]:
    """Names the module imports from other modules of its package (``from .utils import x``,
    ``from email.utils import x``): name -> their file."""
    out = {}
    for node in tree.body:
        if not isinstance(node, ast.ImportFrom) or not node.module:
            continue
        if node.level == 1:
            relative = node.module
        elif node.level == 0 and node.module.startswith(dotted + "."):
            relative = node.module[len(dotted) + 1:]
        else:
            continue
        source = package / f"{relative.replace('.', '/')}.py"
        if source.is_file() and source != here:
            for alias in node.names:
                out[alias.asname or alias.name] = source
    return out


def tasks(count: int, seed: int, at: str = "line") -> list[Task]:
    root = Path(sysconfig.get_paths()["stdlib"])
    found = []
    for name in PACKAGES:
        package = root / name
        for module in sorted(package.glob("*.py")):
            text = module.read_text(errors="replace")
            if len(text) > MAX_FILE_CHARS:
                continue
            try:
                tree = ast.parse(text)
            except SyntaxError:
                continue
            imported = sibling_imports(tree, package, name.replace("/", "."), module)
            if not imported:
                continue
            defs = {}
            for source in set(imported.values()):
                try:
                    defs[source] = defined(ast.parse(source.read_text(errors="replace")))
                except SyntaxError:
                    defs[source] = set()
            for hole in bodies(text, "python", str(module)) or []:
                lines = hole.reference.split("\n")
                for number, line in enumerate(lines if at == "line" else [hole.reference]):
                    # bare names (not attributes): what pyflakes resolves
                    used = set(re.findall(r"(?<![\w.])([A-Za-z_]\w*)", line))
                    names = sorted(n for n in used if n in imported and n in defs[imported[n]])
                    if not names:
                        continue
                    before = "".join(f"{x}\n" for x in lines[:number])
                    if number:
                        before += line[:len(line) - len(line.lstrip(" "))]
                    prefix = hole.prefix + before
                    found.append(Task(module, prefix + hole.suffix, len(prefix),
                                      hole.reference[len(before):],
                                      sorted({imported[n] for n in names}), names))
                    break
    random.Random(seed).shuffle(found)
    return found[:count]


def position(text: str) -> tuple[int, int]:
    lines = text.split("\n")
    return len(lines) - 1, len(lines[-1].encode("utf-16-le")) // 2


def open_file(client: LanguageClient, path: Path, text: str, uri: str | None = None) -> str:
    uri = uri or path.as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1,
                                             text=text)))
    return uri


async def ask(client: LanguageClient, task: Task, number: int) -> dict[str, Any]:
    """Open the task's siblings and module in ``client``; the top suggestion and timings."""
    for sibling in task.siblings:
        open_file(client, sibling, sibling.read_text(errors="replace"))
    uri = Path(tempfile.gettempdir(), "compilot-context", task.module.parent.name,
               f"{number}_{task.module.name}").as_uri()
    open_file(client, task.module, task.document, uri)
    await command(client, "compilot.settle")  # the files are in the ring
    line, character = position(task.document[:task.offset])
    t0 = time.perf_counter()
    answer = await inline(client, uri, line, character)
    first_ms = (time.perf_counter() - t0) * 1000
    top = answer.items[0].insert_text if answer.items else ""
    assert isinstance(top, str)
    # one keystroke there (a character no suggestion starts with: the model is asked again)
    at = types.Position(line=line, character=character)
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(start=at, end=at), text="\x60")]))
    t0 = time.perf_counter()
    await inline(client, uri, line, character + 1)
    key_ms = (time.perf_counter() - t0) * 1000
    client.text_document_did_close(types.DidCloseTextDocumentParams(
        text_document=types.TextDocumentIdentifier(uri=uri)))
    return {"text": top, "first_ms": first_ms, "keystroke_ms": key_ms}


def score(task: Task, text: str) -> dict[str, Any]:
    before = task.document
    after = before[:task.offset] + text + before[task.offset:]
    verdict = blame(before, after, "python")
    return {"strict": bool(text.strip()) and verdict.blamed is None,
            "compiles": bool(text.strip()) and not any(
                d.kind in FAILING for d in verdict.new),
            "names_used": bool(set(re.findall(r"(?<![\w.])([A-Za-z_]\w*)", text))
                               & set(task.names)),
            "similarity": edit_similarity(text.strip(), task.reference.strip())}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=100)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--at", choices=("line", "body"), default="line",
                    help="the cursor at the first line using a sibling's name, or at the body")
    ap.add_argument("--predict-ms", type=float, default=0.0,
                    help="completion.predict_ms of both servers (0: whole suggestions, scored "
                         "apart from the machine's speed)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    todo = tasks(args.tasks, args.seed, args.at)
    print(f"{len(todo)} tasks from {len({t.module for t in todo})} modules")
    both = {"completion": {"predictMs": args.predict_ms}}
    # the embedded model has no repository tokens: it takes other files as comments only
    sides = {"with context": {**both, "context": {"asComments": True}},
             "without": {**both, "context": {"enabled": False}}}
    clients = {}
    for name, options in sides.items():
        data_dir = tempfile.mkdtemp(prefix="compilot-context-")
        clients[name] = await start_server(options, env={
            **os.environ, "COMPILOT_DATA_DIR": data_dir,
            "COMPILOT_CONFIG": str(Path(data_dir) / "none.toml")})
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in sides}
    try:
        for number, task in enumerate(todo):
            for name, client in clients.items():  # side by side, task by task
                got = await ask(client, task, number)
                results[name].append({**got, **score(task, got["text"])})
            print(f"\r{number + 1}/{len(todo)}", end="", flush=True)
        print()
    finally:
        for client in clients.values():
            await stop(client)
    summary: dict[str, Any] = {"tasks": len(todo), "at": args.at}
    for name, rows in results.items():
        summary[name] = {
            "strict_compile@1": round(statistics.mean(r["strict"] for r in rows), 3),
            "compile@1": round(statistics.mean(r["compiles"] for r in rows), 3),
            "names_used": round(statistics.mean(r["names_used"] for r in rows), 3),
            "edit_similarity": round(statistics.mean(r["similarity"] for r in rows), 3),
            "first_ms_p50": round(statistics.median(r["first_ms"] for r in rows), 1),
            "keystroke_ms_p50": round(statistics.median(r["keystroke_ms"] for r in rows), 1),
        }
    on, off = results["with context"], results["without"]
    summary["strict wins / losses"] = [
        sum(a["strict"] and not b["strict"] for a, b in zip(on, off, strict=True)),
        sum(b["strict"] and not a["strict"] for a, b in zip(on, off, strict=True))]
    for name in sides:
        s = summary[name]
        print(f"{name:<13} strict compile@1 {s['strict_compile@1']:.3f}  compile@1 "
              f"{s['compile@1']:.3f}  names used {s['names_used']:.3f}  edit similarity "
              f"{s['edit_similarity']:.3f}  first request p50 {s['first_ms_p50']:.0f} ms  "
              f"keystroke p50 "
              f"{s['keystroke_ms_p50']:.0f} ms")
    print(f"strict compile@1 with context against without, on the same tasks: wins / losses "
          f"{summary['strict wins / losses']}")
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "results": results}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
