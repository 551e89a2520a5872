"""What `compilot bootstrap` yields on real code: the Python standard library and llama.cpp.

For each corpus, a run of `compilot bootstrap`'s engine (the embedded model, the server's
default sampling, the real checks) over ``--limit`` functions into a fresh store, then the
datasets built from it. Prints tasks per minute, labelled candidates, and KTO rows, DPO pairs
and SFT rows per 100 tasks; then, for an editor session, training rows per request before and
after background labelling (``bench/labels.py``).

The C / C++ corpus is llama.cpp as vendored in llama-cpp-python's source distribution (the one
`make install` builds): downloaded from PyPI into ~/.cache/compilot/sources once, with a
compile_commands.json from a CMake configure step (no build), as a user's checkout has.

    .venv/bin/python bench/bootstrap.py [--limit 100] [--skip-editor]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

from rich.console import Console
from rich.table import Table

from compilot.feedback import datasets as fd
from compilot.feedback.store import Store
from compilot.models import embedded_model_path
from compilot.server.engine import Engine
from compilot.settings import DatasetSettings, Settings
from compilot.training.bootstrap import Bootstrap, plan

SOURCES = Path.home() / ".cache" / "compilot" / "sources"


def llama_cpp_source() -> Path:
    """llama.cpp from llama-cpp-python's sdist (the installed version), configured by CMake
    for its compile_commands.json."""
    release = version("llama-cpp-python")
    root = SOURCES / f"llama_cpp_python-{release}" / "vendor" / "llama.cpp"
    if not root.is_dir():
        SOURCES.mkdir(parents=True, exist_ok=True)
        archive = SOURCES / f"llama_cpp_python-{release}.tar.gz"
        if not archive.exists():
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                            "--no-binary", ":all:", f"llama-cpp-python=={release}", "-d",
                            str(SOURCES)], check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(SOURCES, filter="data")
    if not (root / "build" / "compile_commands.json").exists() and shutil.which("cmake"):
        subprocess.run(["cmake", "-S", str(root), "-B", str(root / "build"),
                        "-DCMAKE_EXPORT_COMPILE_COMMANDS=ON", "-DLLAMA_CURL=OFF",
                        "-DGGML_NATIVE=OFF"], check=True, capture_output=True)
    return root


def run_corpus(name: str, root: Path, languages: list[str], limit: int,
               engine: Engine) -> dict[str, object]:
    settings = Settings()
    with tempfile.TemporaryDirectory(prefix="compilot-bootstrap-") as tmp:
        store = Store(Path(tmp) / "events.db")
        started = time.perf_counter()
        found = plan(root, settings, languages=languages, limit=limit)
        planned_s = time.perf_counter() - started
        run = Bootstrap(store, engine, adapter="base", settings=settings, root=root)
        tally = run.run(found.tasks)
        labelled = store.query("SELECT count(DISTINCT candidate_id) AS n FROM checks "
                               "WHERE stage = 'compile'")[0]["n"]
        data = DatasetSettings(held_out=0.0)
        rows = {kind: len(fd.build(store, fd.Selection(kind=kind), data)["train"])
                for kind in ("kto", "dpo", "sft")}
        events = fd.build(store, fd.Selection(kind="events"), data)["train"]
        by_grade = fd.summary(fd.DatasetDict({"train": events}))["by_grade"]
        store.close()
    per_100 = {kind: round(n * 100 / tally.tasks, 1) if tally.tasks else 0.0
               for kind, n in rows.items()}
    return {"corpus": name, "files": sum(found.files.values()), "functions": found.functions,
            "skipped": dict(found.skipped), "plan_s": round(planned_s, 1),
            "tasks": tally.tasks, "per_minute": round(tally.rate(), 1),
            "candidates": tally.candidates, "labelled": labelled,
            "revisions": tally.revisions, "broken_files": tally.broken_files,
            "rows": rows, "per_100": per_100, "by_grade": by_grade}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=100, help="functions per corpus")
    parser.add_argument("--skip-editor", action="store_true",
                        help="leave out the editor session (bench/labels.py)")
    args = parser.parse_args()
    engine = Engine(embedded_model_path(), Settings().model)
    corpora = [("Python standard library", Path(sysconfig.get_paths()["stdlib"]), ["python"]),
               ("llama.cpp (C, C++)", llama_cpp_source(), ["c", "cpp"])]
    results = []
    for name, root, languages in corpora:
        results.append(run_corpus(name, root, languages, args.limit, engine))
        print(results[-1], flush=True)
    engine.llm.close()
    table = Table(title=f"compilot bootstrap, {args.limit} functions per corpus, embedded "
                        "model, server defaults (3 candidates, 64 tokens)")
    for column in ("corpus", "files", "functions", "tasks/min", "candidates", "labelled",
                   "KTO /100", "DPO /100", "SFT /100", "broken files"):
        table.add_column(column, justify="left" if column == "corpus" else "right")
    for r in results:
        per_100 = r["per_100"]
        assert isinstance(per_100, dict)
        table.add_row(str(r["corpus"]), str(r["files"]), str(r["functions"]),
                      str(r["per_minute"]), str(r["candidates"]), str(r["labelled"]),
                      str(per_100["kto"]), str(per_100["dpo"]), str(per_100["sft"]),
                      str(r["broken_files"]))
    console = Console(width=140)
    console.print(table)
    for r in results:
        console.print(f"{r['corpus']}: skipped {r['skipped']}; grades {r['by_grade']}")
    if not args.skip_editor:
        console.print("editor session (bench/labels.py):")
        subprocess.run([sys.executable, str(Path(__file__).with_name("labels.py"))], check=True)


if __name__ == "__main__":
    main()
