"""What a training round costs on this machine, on the embedded model, side by side in one run:

- KTO and DPO(+SFT) with the settings of before (float32, the prompt filling max_length, rows
  in their own order) and of now (training.precision, training.prompt_tokens,
  training.group_by_length), on the same rows: standard-library function prompts, the
  reference body as desirable / chosen, a small corruption of it (the thesis's synthetic
  negatives) as undesirable / rejected; the default LoRA (r16, alpha 32, all seven linear
  projections). Per setting: seconds per optimizer step and a breakdown of them (forward
  passes with gradient; forward passes without: the reference model and KTO's KL estimate;
  the rest of a step: backward and optimizer; batching: collating the rows between steps;
  setup before the first step: loading, tokenizing), examples per second, peak memory, the
  mean loss of the last steps, and the projected minutes of a 500-example round;
- with ``--round 500``, a real 500-example round of each method with the new settings, timed;
- the PEFT → GGUF adapter conversion, and the live swap in a running `compilot serve`: from the
  registry's pointer switch until the server reports the new adapter, with the inline
  completions answered (and failed) meanwhile, and the engine's own `set_adapter` time.

Each training run is a fresh process (its own peak memory, its own threads).

    .venv/bin/python bench/train.py [--steps 6] [--batch 4] [--accum 2] [--round 500] [--json F]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from datasets import Dataset
from lsprotocol import types
from rich.console import Console
from rich.table import Table

from compilot.feedback.datasets import corrupt
from compilot.lsp_client import inline, start_server
from compilot.models import embedded_model_path
from compilot.paths import DataDir
from compilot.settings import ModelSettings, TrainingSettings
from compilot.training import train
from compilot.training.base import materialize
from compilot.training.corpus import stdlib_holes
from compilot.training.gguf_adapter import peft_to_gguf
from compilot.training.precision import choose as choose_precision
from compilot.training.registry import AdapterInfo, Registry

console = Console(width=140)


def rows(count: int, seed: int) -> tuple[Dataset, Dataset]:
    """(KTO rows, DPO rows): ``count`` of each (KTO: half desirable, half not)."""
    kto: dict[str, list] = {"prompt": [], "completion": [], "label": []}
    dpo: dict[str, list] = {"prompt": [], "chosen": [], "rejected": []}
    for task in stdlib_holes(count * 2, seed=seed):
        bad = corrupt(task.reference, seed=seed)
        if not bad or len(dpo["prompt"]) >= count:
            continue
        kto["prompt"] += [task.prefix, task.prefix]
        kto["completion"] += [task.reference, bad[0]]
        kto["label"] += [True, False]
        dpo["prompt"].append(task.prefix)
        dpo["chosen"].append(task.reference)
        dpo["rejected"].append(bad[0])
    return Dataset.from_dict(kto).select(range(count)), Dataset.from_dict(dpo)


def breakdown() -> Any:
    """A callback timing each step's forward passes, with and without gradient."""
    import torch
    from transformers import TrainerCallback

    class Breakdown(TrainerCallback):
        def __init__(self) -> None:
            self.seconds: dict[str, float] = defaultdict(float)
            self.losses: list[float] = []
            self._forward = self._step = 0.0

        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None,
                           **kw: Any) -> None:
            model.register_forward_pre_hook(self._begin)
            model.register_forward_hook(self._end)

        def _begin(self, *_: Any) -> None:
            self._forward = time.perf_counter()

        def _end(self, *_: Any) -> None:
            kind = "forward" if torch.is_grad_enabled() else "no-grad forward"
            self.seconds[kind] += time.perf_counter() - self._forward

        def on_step_begin(self, *_: Any, **kw: Any) -> None:
            self._step = time.perf_counter()

        def on_step_end(self, *_: Any, **kw: Any) -> None:
            self.seconds["step"] += time.perf_counter() - self._step

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None,
                   **kw: Any) -> None:
            if logs and "loss" in logs:
                self.losses.append(float(logs["loss"]))

    return Breakdown()


def one_run(method: str, data: dict[str, list], base: str, out: str,
            settings: TrainingSettings) -> dict[str, Any]:
    """Train in this (fresh) process; the report and the breakdown as plain data."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    timer = breakdown()
    report = train.train(method, Dataset.from_dict(data), base=Path(base),
                         model_path=embedded_model_path(), out=Path(out), settings=settings,
                         callbacks=[timer])
    tail = timer.losses[-max(1, len(timer.losses) // 3):]
    return {"report": report.as_dict(), "seconds": dict(timer.seconds),
            "loss": statistics.mean(tail) if tail else None}


def run(method: str, data: Dataset, base: Path, out: Path,
        settings: TrainingSettings) -> dict[str, Any]:
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(one_run, method, data.to_dict(), str(base), str(out),
                           settings).result()


async def swap(root: Path, adapter_dir: Path) -> dict[str, float]:
    """Promote an adapter under a running server while completions keep coming."""
    env = {**os.environ, "COMPILOT_DATA_DIR": str(root),
           "COMPILOT_CONFIG": str(root / "none.toml")}
    client = await start_server({"completion": {"candidates": 1, "maxTokens": 16}}, env=env)
    registry = Registry(DataDir(root).adapters)
    staging = registry.staging()
    for name in ("adapter.gguf",):
        (staging / name).write_bytes((adapter_dir / name).read_bytes())
    registry.add(staging, AdapterInfo(version="bench", method="kto", parent="base"))
    tasks = stdlib_holes(40, seed=5)
    served = failed = 0
    latencies: list[float] = []

    async def one(number: int) -> None:
        nonlocal served, failed
        task = tasks[number % len(tasks)]
        uri = f"file:///bench/{number}.py"
        client.text_document_did_open(types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1,
                                                 text=task.document)))
        t0 = time.perf_counter()
        try:
            await inline(client, uri, *task.cursor)
            served += 1
            latencies.append((time.perf_counter() - t0) * 1000)
        except Exception:  # noqa: BLE001 - a failed request is what we count
            failed += 1

    async def adapter() -> str:
        stats = await client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="compilot.stats"))
        return stats["adapter"]

    try:
        await one(0)  # the model is loaded
        served = 0
        latencies.clear()
        started = time.perf_counter()
        registry.promote("bench")
        number = 1
        while await adapter() != "bench":
            await one(number)
            number += 1
            if time.perf_counter() - started > 60:
                raise RuntimeError("the server did not swap within 60 s")
        swap_s = time.perf_counter() - started
        await one(number)  # the first completion under the new adapter
        return {"swap_s": swap_s, "served": served, "failed": failed,
                "median_ms": statistics.median(latencies) if latencies else float("nan")}
    finally:
        await client.shutdown_async(None)
        client.exit(None)
        await client.stop()


def engine_swap_ms(adapter: Path, repeats: int = 5) -> float:
    from compilot.server.engine import Engine

    engine = Engine(embedded_model_path(), ModelSettings(n_ctx=512))
    times = []
    for _ in range(repeats):
        for path in (adapter, None):
            t0 = time.perf_counter()
            engine.set_adapter(path)
            times.append((time.perf_counter() - t0) * 1000)
    engine.llm.close()
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=6, help="optimizer steps per compared setting")
    ap.add_argument("--batch", type=int, default=4, help="examples per forward pass")
    ap.add_argument("--accum", type=int, default=2, help="forward passes per step")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--round", type=int, default=0,
                    help="also train a real round of this many examples per method (new "
                         "settings) and time it")
    ap.add_argument("--methods", default="kto,dpo")
    ap.add_argument("--no-swap", action="store_true", help="skip the conversion and swap")
    ap.add_argument("--json", type=Path, help="write the figures here too")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import datasets

    datasets.disable_progress_bars()
    work = Path(tempfile.mkdtemp(prefix="compilot-bench-train-"))
    t0 = time.perf_counter()
    base = materialize(embedded_model_path(), work / "cache")
    materialize_s = time.perf_counter() - t0
    per_step = args.batch * args.accum
    count = max(args.steps * per_step, args.round)
    kto_rows, dpo_rows = rows(count, args.seed)
    data = {"kto": kto_rows, "dpo": dpo_rows}
    new = TrainingSettings(max_steps=args.steps, batch_size=args.batch,
                           gradient_accumulation=args.accum, max_length=args.max_length,
                           seed=args.seed)
    old = replace(new, precision="float32", prompt_tokens=0, group_by_length=False)
    precision = choose_precision(new.precision)
    settings = {"before": old, "now": new}
    methods = args.methods.split(",")
    figures: dict[str, Any] = {"cpu_count": os.cpu_count(), "precision": precision.name,
                               "precision_reason": precision.reason, "runs": {}}
    for method in methods:
        for name, chosen in settings.items():
            console.print(f"training {method} ({name}): {args.steps} steps of {args.batch} x "
                          f"{args.accum}")
            figures["runs"][f"{method} {name}"] = run(
                method, data[method].select(range(args.steps * per_step)), base,
                work / f"{method}-{name}", chosen)
    rounds = {}
    for method in methods if args.round else ():
        console.print(f"training a {args.round}-example {method} round (now)")
        full = replace(new, max_steps=-1, epochs=1.0)
        rounds[method] = run(method, data[method].select(range(args.round)), base,
                             work / f"{method}-round", full)
    figures["rounds"] = rounds

    table = Table(title=f"training on {os.cpu_count()} cores: batch {args.batch} x "
                        f"{args.accum} accumulated, max length {args.max_length} tokens, LoRA "
                        f"r{new.lora_r} alpha {new.lora_alpha} on "
                        f"{len(new.target_modules) or 'all'} projections; before: float32, whole "
                        f"prompt; now: {precision.name} ({precision.reason}), prompt "
                        f"<= {new.prompt_tokens} tokens, grouped by length")
    for column in ("run", "s/step", "forward", "no-grad fwd", "backward+opt", "batching",
                   "setup s",
                   "examples/s", "peak MB", "loss (last third)", f"{args.round or 500}-ex round"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for name, fig in figures["runs"].items():
        r, sec = fig["report"], fig["seconds"]
        steps = max(1, r["steps"])
        rest = sec.get("step", 0.0) - sec.get("forward", 0.0) - sec.get("no-grad forward", 0.0)
        table.add_row(name, f"{sec.get('step', 0.0) / steps:.2f}",
                      f"{sec.get('forward', 0.0) / steps:.2f}",
                      f"{sec.get('no-grad forward', 0.0) / steps:.2f}", f"{rest / steps:.2f}",
                      f"{(r['train_s'] - sec.get('step', 0.0)) / steps:.2f}",
                      f"{r['wall_s'] - r['train_s']:.1f}", f"{r['examples_per_s']:.2f}",
                      f"{r['peak_memory_mb']:.0f}",
                      "" if fig["loss"] is None else f"{fig['loss']:.4f}",
                      f"{(args.round or 500) / r['examples_per_s'] / 60:.1f} min (projected)")
    for method, fig in rounds.items():
        r = fig["report"]
        table.add_row(f"{method} round", f"{r['train_s'] / max(1, r['steps']):.2f}", "", "", "", "",
                      f"{r['wall_s'] - r['train_s']:.1f}", f"{r['examples_per_s']:.2f}",
                      f"{r['peak_memory_mb']:.0f}",
                      "" if fig["loss"] is None else f"{fig['loss']:.4f}",
                      f"{r['train_s'] / 60:.1f} min training, {r['wall_s'] / 60:.1f} in all "
                      f"({r['examples']} rows)")
    console.print(table)
    for method in methods:
        before, now = (figures["runs"][f"{method} {n}"]["report"] for n in settings)
        speedup = now["examples_per_s"] / before["examples_per_s"]
        console.print(f"{method}: now / before throughput {speedup:.2f}x")
    console.print(f"base checkpoint materialized from the GGUF: {materialize_s:.1f} s "
                  "(once per GGUF; cached)")
    if not args.no_swap:
        adapter = work / f"{methods[0]}-now"
        t0 = time.perf_counter()
        peft_to_gguf(adapter, embedded_model_path(), adapter / "adapter.gguf")
        convert_s = time.perf_counter() - t0
        swapped = asyncio.run(swap(work / "server", adapter))
        swap_ms = engine_swap_ms(adapter / "adapter.gguf")
        figures.update(convert_s=convert_s, swap=swapped, engine_swap_ms=swap_ms)
        console.print(f"PEFT -> GGUF adapter conversion: {convert_s:.2f} s")
        console.print(f"engine set_adapter: {swap_ms:.1f} ms (median)")
        console.print(f"live swap in compilot serve: {swapped['swap_s']:.2f} s from the "
                      f"pointer switch to the new adapter serving; {swapped['served']} "
                      f"completions served meanwhile (median {swapped['median_ms']:.0f} ms), "
                      f"{swapped['failed']} failed")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
