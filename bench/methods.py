"""Which learning step moves the model on one editor session's data: KTO, DPO + SFT term, SFT.

Takes the store of a `compilot demo` run (its first round's completions, all made by the base
model), trains one round per method and learning rate on a fresh copy of it, and scores each
adapter on the demo's held-out prompts (raw output and what the server shows), against the
base's figures that the demo recorded. Prints a table.

    .venv/bin/python bench/methods.py                   # the newest demo run in the data dir
    .venv/bin/python bench/methods.py --run DIR --runs sft:5e-4,kto:2e-4,kto+grade:2e-4,kto+sft:2e-4
    .venv/bin/python bench/methods.py --runs kto+sft:5e-4 --boundaries healed=1,indented=2
                                        # training.boundaries for every run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from compilot import settings as settings_mod
from compilot.cli.app import quiet_libraries
from compilot.demo import SIZES, demo_settings, prompts_at_holes, split_holes
from compilot.paths import DataDir
from compilot.pointer import BASE
from compilot.training import rounds
from compilot.training.base import BASE_DIR
from compilot.training.evaluate import Evaluation

VARIANTS = {"kto": ("", "grade", "sft"), "dpo": ("", "sft"), "sft": ("",)}
"""The runs --runs names: a method, and for KTO how its rows are drawn or its SFT term."""


def newest_run(home: DataDir) -> Path:
    runs = sorted(home.demo_runs.glob("*/events.db"))
    if not runs:
        raise SystemExit(f"no demo run under {home.demo_runs}: run `compilot demo` first")
    return runs[-1].parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, help="a demo run folder (holds events.db)")
    parser.add_argument("--runs", default="kto:2e-4,kto+grade:2e-4,dpo:2e-4,sft:2e-4,sft:5e-4",
                        help="method:learning-rate pairs (kto+grade: KTO rows resampled by "
                             "graded outcome, training.kto_weighting; kto+sft: KTO with an SFT "
                             "term on the desirable side, training.kto_sft_weight = 1)")
    parser.add_argument("--boundaries", default=None,
                        help="training.boundaries for every run, as name=weight pairs "
                             "(healed=3,newline=1,indented=1,mid_line=1); default: the settings'")
    args = parser.parse_args()
    boundaries = None if args.boundaries is None else {
        name: float(weight) for name, _, weight in
        (pair.partition("=") for pair in args.boundaries.split(","))}
    quiet_libraries()
    home = DataDir.of(settings_mod.load()[0])
    run = args.run or newest_run(home)
    summary = json.loads((home.reports / f"demo-{run.name}.json").read_text())
    setup = summary["setup"]
    size = SIZES[setup["size"]]
    held, _ = split_holes(size, setup["rounds"], setup["seed"])
    base_eval = Evaluation(**summary["rounds"][0]["evaluation"])
    # The gate's HumanEval sample is left out here: the question is the held-out prompts.
    base_eval.humaneval, base_eval.raw["humaneval"] = {}, {}
    checkpoint = next(iter(sorted((home.cache / BASE_DIR).iterdir())), None)

    table = Table(title=f"one round on {run.name}'s first session (held-out compile@1)")
    for column in ("method", "lr", "rows", "steps", "train s", "raw", "shown", "gate"):
        table.add_column(column, justify="left" if column in ("method", "gate") else "right")
    base = base_eval.raw["held_out"]["compile@1"], base_eval.held_out["compile@1"]
    table.add_row("base", "", "", "", "", f"{base[0]:.2f}", f"{base[1]:.2f}", "")
    # "kto+grade": KTO resampled by grade; "kto+sft": KTO with its SFT term (weight 1); "dpo"
    # always has its SFT term (training.sft_weight). Every run is checked before one trains.
    specs = []
    for spec in args.runs.split(","):
        name, lr = spec.split(":")
        method, _, variant = name.partition("+")
        if variant not in VARIANTS.get(method, ("",)):
            raise SystemExit(f"unknown run {name!r}: one of kto, kto+grade, kto+sft, dpo, sft")
        specs.append((name, method, variant, lr))
    for name, method, variant, lr in specs:
        with tempfile.TemporaryDirectory(prefix="compilot-methods-") as tmp:
            root = Path(tmp)
            shutil.copy(run / "events.db", DataDir(root).events_db)
            os.environ["COMPILOT_DATA_DIR"] = str(root)
            settings = demo_settings(size, root, setup["seed"])
            settings = replace(
                settings, training=replace(settings.training, method=method,
                                           learning_rate=float(lr),
                                           kto_weighting="grade" if variant == "grade"
                                           else "none",
                                           kto_sft_weight=1.0 if variant == "sft" else 0.0,
                                           boundaries=boundaries or settings.training.boundaries,
                                           base=str(checkpoint) if checkpoint else None),
                gate=replace(settings.gate, humaneval=0))
            prompts = prompts_at_holes(held, settings)
            started = time.perf_counter()
            result = rounds.run_round(settings, held_out=prompts, known={BASE: base_eval})
            candidate = result.evaluation["candidate"]
            report = result.report
            table.add_row(name, lr, str(report.examples), str(report.steps),
                          f"{report.train_s:.0f}",
                          f"{candidate['raw']['held_out']['compile@1']:.2f}",
                          f"{candidate['held_out']['compile@1']:.2f}",
                          ("promoted" if result.promoted else "rejected")
                          + f" ({time.perf_counter() - started:.0f} s)")
    Console().print(table)


if __name__ == "__main__":
    main()
