"""What a training round costs on this machine, on the embedded model, side by side in one run:

- KTO and DPO(+SFT) training throughput (examples per second of the training loop) with the
  default LoRA (r16, alpha 32, all seven linear projections), a stated batch and max length,
  on standard-library function prompts: reference bodies as desirable / chosen, a small
  corruption of each (the thesis's synthetic negatives) as undesirable / rejected;
- the projected time of a 500-example round (one epoch of each method) from those rates;
- the PEFT → GGUF adapter conversion;
- the live swap in a running `compilot serve`: from the registry's pointer switch until the
  server reports the new adapter, with the inline completions answered (and failed) meanwhile,
  and the engine's own `set_adapter` time.

    .venv/bin/python bench/train.py [--steps 6] [--batch 8] [--max-length 256]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

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
from compilot.training.registry import AdapterInfo, Registry

console = Console(width=130)


def rows(count: int, seed: int) -> tuple[Dataset, Dataset]:
    """(KTO rows, DPO rows) of ``count`` prompts each."""
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
    return Dataset.from_dict(kto), Dataset.from_dict(dpo)


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
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch", type=int, default=4, help="examples per forward pass")
    ap.add_argument("--accum", type=int, default=2, help="forward passes per step")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--round", type=int, default=500, help="examples in a projected round")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    work = Path(tempfile.mkdtemp(prefix="compilot-bench-train-"))
    t0 = time.perf_counter()
    base = materialize(embedded_model_path(), work / "cache")
    materialize_s = time.perf_counter() - t0
    per_step = args.batch * args.accum
    kto_rows, dpo_rows = rows(args.steps * per_step, args.seed)
    settings = TrainingSettings(max_steps=args.steps, batch_size=args.batch,
                                gradient_accumulation=args.accum, max_length=args.max_length)
    reports = {}
    for method, data in (("kto", kto_rows), ("dpo", dpo_rows)):
        console.print(f"training {method}: {args.steps} steps of {args.batch} x {args.accum}")
        reports[method] = train.train(method, data, base=base, out=work / method,
                                      settings=settings)
    t0 = time.perf_counter()
    peft_to_gguf(work / "kto", embedded_model_path(), work / "kto" / "adapter.gguf")
    convert_s = time.perf_counter() - t0
    swapped = asyncio.run(swap(work / "server", work / "kto"))
    swap_ms = engine_swap_ms(work / "kto" / "adapter.gguf")

    table = Table(title=f"training on {os.cpu_count()} cores: batch {args.batch} x "
                        f"{args.accum} accumulated, max length "
                        f"{args.max_length} tokens, LoRA r{settings.lora_r} alpha "
                        f"{settings.lora_alpha} on {len(settings.target_modules)} projections")
    for column in ("method", "steps", "examples", "s/step", "examples/s", "trainable params",
                   "peak MB", f"{args.round}-example epoch"):
        table.add_column(column, justify="right")
    for method, r in reports.items():
        seen = r.steps * per_step
        table.add_row(method, str(r.steps), str(seen), f"{r.train_s / r.steps:.2f}",
                      f"{r.examples_per_s:.2f}", f"{r.trainable_params:,}",
                      f"{r.peak_memory_mb:.0f}",
                      f"{args.round / r.examples_per_s / 60:.1f} min")
    console.print(table)
    ratio = reports["dpo"].examples_per_s / reports["kto"].examples_per_s
    console.print(f"DPO / KTO throughput (examples/s): {ratio:.2f} (a DPO example is a pair)")
    console.print(f"base checkpoint materialized from the GGUF: {materialize_s:.1f} s "
                  "(once per GGUF; cached)")
    console.print(f"PEFT -> GGUF adapter conversion: {convert_s:.2f} s")
    console.print(f"engine set_adapter: {swap_ms:.1f} ms (median)")
    console.print(f"live swap in compilot serve: {swapped['swap_s']:.2f} s from the pointer "
                  f"switch to the new adapter serving; {swapped['served']} completions served "
                  f"meanwhile (median {swapped['median_ms']:.0f} ms), {swapped['failed']} "
                  "failed")


if __name__ == "__main__":
    main()
