"""The method study: which learning step lifts the embedded model on its own compiler feedback.

For each method (KTO, KTO + an SFT term, DPO + SFT term, SFT), two iterated rounds, as SEED and
CodeLutra iterate: round 1 trains on what ``compilot bootstrap`` recorded of the base model on
the training files of a corpus (the standard library), round 2 on what it recorded of that
method's round-1 adapter, continuing it. Every model is scored on the same prompts (paired):

- ``held-out``: functions of the corpus files no round trains on, prompted as the server
  prompts (its window at the hidden body);
- ``shifted``: functions of a second code base that no round sees (by default the installed
  ``rich`` package: a distribution shift);
- ``humaneval``: HumanEval's 164 problems (compile@1, exec@1, pass@1);
- ``robustness``: the held-out functions asked as plain clients ask (``training.robustness``).

Raw (the model's own text) and shown (what the server shows) are scored from one generation.
Each part is cached in ``--work`` (one JSON per model, one store per round's data, one folder per
adapter), so the study runs in pieces across sessions and a rerun only does what is missing.
Only the round-1 data (the base's bootstrap: recorded text, whatever CPU sampled it) serves every
machine; scores, adapters and round-2 data are kept per CPU (``machine_key``), because llama.cpp's
and torch's numerics differ between CPUs and a pairing of scores must come from one machine:

    .venv/bin/python bench/study.py --part data      # round-1 data (the base's bootstrap)
    .venv/bin/python bench/study.py --part base      # the base on every suite
    .venv/bin/python bench/study.py --part round1    # train and score each method's round 1
    .venv/bin/python bench/study.py --part round2    # bootstrap by each round-1 adapter, train
    .venv/bin/python bench/study.py --part sweep --sweep-method kto+sft   # LoRA r and alpha
    .venv/bin/python bench/study.py --part table     # print what is there (also after each part)

On another CPU, ``--part check --machine <folder>`` scores the base's held-out suite here and
compares it prompt by prompt with that folder's; where they agree, ``--machine <folder>`` goes on
with that folder's committed scores instead of starting again from the base.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import resource
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from compilot import settings as settings_mod
from compilot.cli.app import quiet_libraries
from compilot.feedback import datasets as fd
from compilot.feedback.store import Store
from compilot.models import embedded_model_path
from compilot.paths import DataDir
from compilot.server.engine import Engine, Sampling
from compilot.server.prompt import window
from compilot.settings import Settings
from compilot.training import benchmarks, data, train
from compilot.training.base import materialize
from compilot.training.bodies import bodies
from compilot.training.bootstrap import Bootstrap, interruptible, plan
from compilot.training.corpus import Hole
from compilot.training.evaluate import Evaluator, Prompt
from compilot.training.gguf_adapter import peft_to_gguf
from compilot.training.precision import cpu_features
from compilot.training.repository import SourceFile, walk
from compilot.training.robustness import SHAPES, Item, from_holes

console = Console(width=150)
METHODS = {  # name: (trl method, settings overrides)
    "kto": ("kto", {"learning_rate": 2e-4, "kto_sft_weight": 0.0}),
    "kto+sft": ("kto", {"learning_rate": 2e-4, "kto_sft_weight": 1.0}),
    "dpo+sft": ("dpo", {"learning_rate": 2e-4, "sft_weight": 1.0}),
    "sft": ("sft", {"learning_rate": 5e-4}),
}
RESULTS = Path(__file__).resolve().parent / "results" / "study"
"""The committed parts: round 1's data and each machine's scores and round reports."""
SUITES = ("held-out", "shifted", "robustness", "humaneval")
HELD_OUT = 0.2
"""The share of the corpus's files that no round trains on."""


def held_out(path: Path) -> bool:
    """Whether no round trains on the file: the store's own split (``datasets.held_out``, a
    hash of the file's URI), so that the rows of a held-out file land in the test split."""
    return fd.split_of(fd.file_id(path.as_uri()), HELD_OUT) == "test"


def rank(hole: Hole) -> str:
    """A stable pseudo-random order of functions (the first N are a sample of the corpus)."""
    return hashlib.sha256(f"{hole.path}:{hole.name}".encode()).hexdigest()


def functions(root: Path, settings: Settings, keep: Callable[[SourceFile], bool],
              limit: int) -> list[Hole]:
    """``limit`` Python functions (2-12 body lines) of the files under ``root`` that ``keep``."""
    holes = []
    for item in walk(root, languages={"python"}, ignore=settings.logging.ignore):
        if isinstance(item, SourceFile) and keep(item):
            holes += bodies(item.text, "python", str(item.path)) or []
    return sorted(holes, key=rank)[:limit]


def prompts(holes: Iterable[Hole], settings: Settings) -> list[Prompt]:
    """The prompts the server would build at each hole."""
    c = settings.completion
    out = []
    for hole in holes:
        win = window(hole.document, len(hole.prefix), prefix_chars=c.prefix_chars,
                     suffix_chars=c.suffix_chars)
        out.append(Prompt(win.prefix, win.suffix, "python"))
    return out


def machine_key(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU a study's scores and adapters belong to: its model name and a hash of its
    feature flags (two machines with the same name can differ in AVX-512 or AMX)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        text = ""
    name = next((line.partition(":")[2] for line in text.splitlines()
                 if line.startswith("model name")), "unknown")
    slug = "-".join(re.findall(r"[a-z0-9]+", name.lower().replace("(r)", "")))[:40]
    flags = hashlib.sha256(" ".join(sorted(cpu_features(cpuinfo))).encode()).hexdigest()[:8]
    return f"{slug or 'unknown'}-{flags}"


def machine_folder(work: Path, name: str) -> Path:
    """``work``'s folder for the machine ``name``. A new one starts from that machine's
    committed scores (bench/results/study/<name>/scores), so that what it adds pairs with
    them; one that has scores keeps its own."""
    folder = work / "machines" / name
    folder.mkdir(parents=True, exist_ok=True)
    committed = RESULTS / name / "scores"
    if committed.is_dir() and not (folder / "scores").exists():
        shutil.copytree(committed, folder / "scores")
        console.print(f"scores from {committed}")
    return folder


class Study:
    """The study's inputs and its cache."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.settings, _ = settings_mod.load()
        self.settings = replace(
            # the Q4_1 file as it is: the study's committed round-1 data and scores were made
            # on it, before the server served a Q8_0 copy (model.requantize), and a pairing
            # must not mix the two
            self.settings, model=replace(self.settings.model, path=None, requantize="off"),
            datasets=replace(self.settings.datasets, held_out=HELD_OUT),
            gate=replace(self.settings.gate, max_tokens=args.max_tokens))
        self.work: Path = args.work
        self.machine = machine_folder(self.work, args.machine or machine_key())
        if args.machine and args.machine != machine_key():
            console.print(f"[yellow]scores and adapters of {args.machine} on this CPU "
                          f"({machine_key()}): pair them only where the numerics were checked "
                          "to agree (--part check)[/]")
        self.model = embedded_model_path()
        self.corpus: Path = args.corpus
        self.base = materialize(self.model, DataDir.of(self.settings).cache)
        self.sets = self._sets()

    def _sets(self) -> dict[str, Any]:
        """The evaluation prompts, built once and kept (the same prompts for every model)."""
        cached = self.work / "sets.json"
        if not cached.exists():
            root = self.corpus
            held = functions(root, self.settings, lambda f: held_out(f.path),
                             self.args.eval)
            shifted = functions(self.args.shifted, self.settings, lambda f: True,
                                self.args.eval)
            cached.write_text(json.dumps({
                "corpus": str(root), "shifted": str(self.args.shifted),
                "held_out": [h.__dict__ for h in held], "shifted_holes": [
                    h.__dict__ for h in shifted]}))
        raw = json.loads(cached.read_text())
        held = [Hole(**h) for h in raw["held_out"]]
        shifted = [Hole(**h) for h in raw["shifted_holes"]]
        return {"held-out": prompts(held, self.settings),
                "shifted": prompts(shifted, self.settings),
                "robustness": from_holes([(h, "python") for h in held], fim=True,
                                         limit=self.args.robustness),
                "humaneval": benchmarks.humaneval(self.args.humaneval)}

    # -- data ------------------------------------------------------------------------------

    def store(self, name: str) -> Path:
        """Round 1's data (the base's) serves every machine; later rounds' are this CPU's.
        A new work folder starts from the committed round-1 data, where there is one."""
        root = self.work if name == "round1" else self.machine
        path = root / "data" / name / "events.db"
        committed = RESULTS / "round1-events.db.gz"
        if name == "round1" and not path.exists() and committed.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with gzip.open(committed) as packed, path.open("wb") as out:
                shutil.copyfileobj(packed, out)
            console.print(f"round 1 data from {committed}")
        return path

    def bootstrap(self, name: str, adapter: Path | None, version: str) -> Path:
        """The bootstrap of the corpus's training files by ``adapter`` (resumable)."""
        path = self.store(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        store = Store(path)
        try:
            done = store.bootstrapped()
            found = plan(self.corpus, self.settings, languages={"python"}, limit=None,
                         done=done)
            tasks = [t for t in found.tasks if not held_out(t.file.path)]
            tasks = tasks[:max(0, self.args.functions - len(done))]
            if not tasks:
                return path
            engine = Engine(self.model, self.settings.model)
            engine.set_adapter(adapter)
            runner = Bootstrap(store, engine, adapter=version, settings=self.settings,
                               root=self.corpus,
                               sampling=Sampling.from_settings(self.settings.completion))
            with self.progress() as bar, interruptible() as stop:
                task = bar.add_task(f"bootstrap for {name} ({version})", total=len(tasks))
                tally = runner.run(tasks, lambda: bar.advance(task), stop=stop)
            if stop():
                raise SystemExit(f"interrupted: {tally.tasks} functions of {name} kept; run "
                                 "the part again to go on")
            engine.llm.close()
            console.print(f"{name}: {tally.tasks} functions, {tally.candidates} candidates, "
                          f"{tally.revisions} revisions, {tally.rate():.1f}/min")
        finally:
            store.close()
        return path

    # -- training --------------------------------------------------------------------------

    def adapter_dir(self, name: str) -> Path:
        return self.machine / "adapters" / name

    def train(self, name: str, method: str, store: Path, version: str, parent: Path | None,
              overrides: dict[str, Any]) -> dict[str, Any]:
        """One round of ``method`` on the on-policy rows of ``store`` (cached)."""
        out = self.adapter_dir(name)
        report_file = out / "report.json"
        if report_file.exists():
            return json.loads(report_file.read_text())
        trl_method, extra = METHODS[method]
        tr = replace(self.settings.training, **{**extra, **overrides},
                     max_examples=self.args.max_examples)
        settings = replace(self.settings, training=tr)
        round_data = data.from_store(Store(store, read_only=True), settings, serving=version,
                                     serving_since=None)
        rows = round_data.rows[trl_method]
        weights = {k: float(round_data.balance[k]) for k in ("desirable_weight",
                                                             "undesirable_weight")
                   if trl_method == "kto" and k in round_data.balance}
        console.print(f"training {name}: {len(rows)} {trl_method} rows ({round_data.counts()})")
        report = train.train(trl_method, rows, base=self.base, model_path=self.model,
                             out=out / "peft", settings=tr,
                             parent=parent, kto_weights=weights)
        peft_to_gguf(out / "peft", self.model, out / "adapter.gguf")
        figures = {**report.as_dict(), "counts": round_data.counts()}
        report_file.write_text(json.dumps(figures, indent=2, default=str))
        return figures

    # -- evaluation ------------------------------------------------------------------------

    def scores(self, name: str, adapter: Path | None, suites: Iterable[str] = SUITES,
               machine: Path | None = None) -> dict[str, Any]:
        """The suites, per prompt, for one model (cached per suite), in ``machine``'s folder
        (by default the study's)."""
        path = (machine or self.machine) / "scores" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        have: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        todo = [s for s in suites if s not in have]
        if not todo:
            return have
        evaluator = Evaluator(self.model, self.settings, max_tokens=self.args.max_tokens)
        evaluator.engine.set_adapter(adapter)
        try:
            with self.progress() as bar:
                for suite in todo:
                    items = self.sets[suite]
                    task = bar.add_task(f"{name}: {suite}", total=len(items))
                    tick = partial(bar.advance, task)
                    started = time.perf_counter()
                    have[suite] = {"per_prompt": self._suite(evaluator, suite, items, tick),
                                   "seconds": round(time.perf_counter() - started, 1)}
                    path.write_text(json.dumps(have))
        finally:
            evaluator.close()
        return have

    @staticmethod
    def _suite(evaluator: Evaluator, suite: str, items: list[Any],
               tick: Callable[[], None]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        if suite == "robustness":
            for item in items:
                assert isinstance(item, Item)
                if item.shape == "fim" and evaluator.engine.fim is None:
                    continue
                text = evaluator.plain(item.prompt)
                out.setdefault(item.shape, []).append(evaluator.splices(item.check, text))
                tick()
            return out
        for item in items:
            if suite == "humaneval":
                texts = evaluator.complete(item.prompt, "", item.language)
                for mode in ("server", "raw"):
                    out.setdefault(mode, []).append(
                        list(evaluator.score(item, (texts[mode] or [""])[0])))
            else:
                texts = evaluator.complete(item.prefix, item.suffix, item.language)
                for mode in ("server", "raw"):
                    out.setdefault(mode, []).append(
                        evaluator.splices(item, (texts[mode] or [""])[0]))
            tick()
        return out

    def progress(self) -> Progress:
        return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, transient=True)


def rate(values: list[Any], index: int | None = None) -> float:
    picked = [v[index] if index is not None else v for v in values]
    return sum(bool(v) for v in picked) / len(picked) if picked else float("nan")


def paired(base: list[Any], other: list[Any], index: int | None = None) -> str:
    """The adapter's rate minus the base's in points, with wins / losses over the same
    prompts (the pairs where exactly one of the two compiled)."""
    if not base or len(base) != len(other):
        return "-"
    pick = (lambda v: bool(v[index])) if index is not None else bool  # noqa: E731
    wins = sum(pick(o) and not pick(b) for b, o in zip(base, other, strict=True))
    losses = sum(pick(b) and not pick(o) for b, o in zip(base, other, strict=True))
    return f"{100 * (wins - losses) / len(base):+.0f} ({wins}/{losses})"


COLUMNS = [  # (title, suite, mode, index into a HumanEval score)
    ("held-out raw", "held-out", "raw", None), ("held-out shown", "held-out", "server", None),
    ("shifted raw", "shifted", "raw", None), ("shifted shown", "shifted", "server", None),
    ("HumanEval compile@1", "humaneval", "server", 0),
    ("HumanEval exec@1", "humaneval", "server", 1),
    ("HumanEval pass@1", "humaneval", "server", 2),
]


def table(study: Study) -> Table:
    """Each scored model: its rates, and against the base the paired difference."""
    scores_dir = study.machine / "scores"
    found = {p.stem: json.loads(p.read_text()) for p in sorted(scores_dir.glob("*.json"))}
    base = found.get("base", {})
    out = Table(title=f"the method study ({study.machine}): rates, then points against the base "
                      "(wins/losses on the same prompts)")
    out.add_column("model")
    out.add_column("rows / steps / train s", justify="right")
    for title, *_ in COLUMNS:
        out.add_column(title, justify="right")
    for shape in SHAPES:
        out.add_column(f"robust {shape}", justify="right")
    for name, figures in found.items():
        report_file = study.adapter_dir(name) / "report.json"
        report = json.loads(report_file.read_text()) if report_file.exists() else None
        cells = [name, "" if report is None else
                 f"{report['examples']} / {report['steps']} / {report['train_s']:.0f}"]
        for _, suite, mode, index in COLUMNS:
            values = figures.get(suite, {}).get("per_prompt", {}).get(mode, [])
            cell = f"{rate(values, index):.2f}" if values else "-"
            if name != "base" and values:
                cell += " " + paired(base.get(suite, {}).get("per_prompt", {}).get(mode, []),
                                     values, index)
            cells.append(cell)
        for shape in SHAPES:
            values = figures.get("robustness", {}).get("per_prompt", {}).get(shape, [])
            cell = f"{rate(values):.2f}" if values else "-"
            if name != "base" and values:
                cell += " " + paired(base.get("robustness", {}).get("per_prompt", {})
                                     .get(shape, []), values)
            cells.append(cell)
        out.add_row(*cells)
    return out


def sweep(study: Study, method: str, ranks: list[int], alphas: list[int],
          suites: tuple[str, ...]) -> Table:
    """The LoRA trade-off table of one method's first round (the course-project seed's):
    each rank of ``ranks`` at alpha = 2 x rank, then the settings' rank at each alpha of
    ``alphas`` (the scale alpha / r apart from the rank); trainable parameters, training time,
    peak memory, compile@1 on ``suites`` (by default the held-out one). The rank and alpha the
    settings train with are that method's round-1 adapter itself, not trained again."""
    tr = study.settings.training
    configs = [(r, 2 * r) for r in ranks] + [(tr.lora_r, a) for a in alphas]
    out = Table(title=f"LoRA sweep, {method}, round 1")
    for column in ("r", "alpha", "trainable params", "train s", "peak MB", "held-out raw",
                   "held-out shown"):
        out.add_column(column, justify="right")
    store = study.store("round1")
    for r, alpha in dict.fromkeys(configs):
        default = r == tr.lora_r and alpha == tr.lora_alpha
        name = f"{method}-1" if default else sweep_name(method, r, alpha)
        committed = RESULTS / study.machine.name / "adapters" / f"{name}.json"
        report = json.loads(committed.read_text()) if default and committed.exists() else \
            study.train(name, method, store, "base", None,
                        {} if default else {"lora_r": r, "lora_alpha": alpha})
        scores = study.scores(name, study.adapter_dir(name) / "adapter.gguf", suites=suites)
        held = scores.get("held-out", {}).get("per_prompt", {})
        out.add_row(str(r), str(alpha), f"{report['trainable_params']:,}",
                    f"{report['train_s']:.0f}", f"{report['peak_memory_mb']:.0f}",
                    f"{rate(held.get('raw', [])):.2f}", f"{rate(held.get('server', [])):.2f}")
    return out


def sweep_name(method: str, r: int, alpha: int) -> str:
    """A sweep adapter's name: by rank where alpha is 2 x rank (the names of the first sweep
    runs), by rank and alpha otherwise."""
    return f"sweep-{method}-r{r}" + ("" if alpha == 2 * r else f"-a{alpha}")


def check(study: Study) -> bool:
    """Whether this CPU scores the base as the study's machine folder holds it: the held-out
    suite scored here (in this CPU's own folder), compared prompt by prompt. The same
    llama.cpp build gives the same text on CPUs of the same instruction set; where it does, the
    other machine's scores pair with what this one adds."""
    here = study.work / "machines" / machine_key()
    mine = study.scores("base", None, suites=("held-out",), machine=here)
    theirs = json.loads((study.machine / "scores" / "base.json").read_text())
    same = True
    for mode in ("raw", "server"):
        a = mine["held-out"]["per_prompt"][mode]
        b = theirs["held-out"]["per_prompt"][mode]
        differ = sum(x != y for x, y in zip(a, b, strict=True))
        same = same and differ == 0
        console.print(f"held-out {mode}: {len(a)} prompts, {differ} scored otherwise than in "
                      f"{study.machine.name} ({rate(a):.2f} here, {rate(b):.2f} there)")
    return same


def numbers(text: str) -> list[int]:
    """A comma-separated list of integers ("" for none)."""
    return [int(n) for n in text.split(",") if n.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", required=True,
                        choices=["data", "base", "check", "round1", "round2", "sweep",
                                 "table"])
    parser.add_argument("--work", type=Path,
                        default=DataDir.of(settings_mod.load()[0]).root / "study")
    parser.add_argument("--corpus", type=Path,
                        default=Path(os.path.dirname(os.__file__)))
    parser.add_argument("--shifted", type=Path, default=None,
                        help="the second code base (default: the installed rich package)")
    parser.add_argument("--functions", type=int, default=400,
                        help="functions bootstrapped per round")
    parser.add_argument("--eval", type=int, default=100, help="prompts per evaluation set")
    parser.add_argument("--robustness", type=int, default=40,
                        help="held-out functions in the robustness set")
    parser.add_argument("--humaneval", type=int, default=None, help="problems (default all)")
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--max-examples", type=int, default=500)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--machine", default=None,
                        help="the machine folder to use (default: this CPU's key); another "
                             "CPU's, once --part check found this one scores as it did")
    parser.add_argument("--sweep-method", default="kto+sft")
    parser.add_argument("--ranks", default="4,8,16,32", help="LoRA ranks (alpha = 2 x r)")
    parser.add_argument("--alphas", default="16,64",
                        help="alphas tried at the settings' rank (training.lora_r)")
    parser.add_argument("--sweep-suites", default="held-out",
                        help=f"the suites each sweep adapter is scored on ({', '.join(SUITES)})")
    args = parser.parse_args()
    if args.shifted is None:
        import rich

        args.shifted = Path(rich.__file__).parent
    quiet_libraries()
    study = Study(args)
    methods = args.methods.split(",")
    if args.part == "data":
        study.bootstrap("round1", None, "base")
    elif args.part == "base":
        study.scores("base", None)
    elif args.part == "check":
        if not check(study):
            raise SystemExit(f"this CPU does not score as {study.machine.name}: run the study "
                             "in its own folder (without --machine)")
    elif args.part == "round1":
        store = study.bootstrap("round1", None, "base")
        for method in methods:
            name = f"{method}-1"
            study.train(name, method, store, "base", None, {})
            study.scores(name, study.adapter_dir(name) / "adapter.gguf")
    elif args.part == "round2":
        for method in methods:
            first = study.adapter_dir(f"{method}-1")
            store = study.bootstrap(f"round2-{method}", first / "adapter.gguf", f"{method}-1")
            name = f"{method}-2"
            study.train(name, method, store, f"{method}-1", first / "peft", {})
            study.scores(name, study.adapter_dir(name) / "adapter.gguf")
    elif args.part == "sweep":
        console.print(sweep(study, args.sweep_method, numbers(args.ranks),
                            numbers(args.alphas), tuple(args.sweep_suites.split(","))))
    console.print(table(study))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    console.print(f"part {args.part} done; peak memory {usage.ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
