"""The cost of one LoRA training step on this CPU, by sequence length and precision, side by
side in one run: the levers of a faster round (issue 14) before they go into the trainer.

One step is a forward and backward pass of the base checkpoint (the serving GGUF dequantized,
as rounds train it) with the default LoRA (r16, alpha 32, all seven projections) on a batch of
``--batch`` rows of each length, plus the optimizer step; in float32 and under bfloat16
autocast (fast where the CPU has avx512_bf16 or AMX; `lscpu` says which). The first step of
each setting is a warm-up and not counted.

With ``--store DB`` it also prints how many tokens the prompts and completions of that event
store's training rows take, and how far back in the prompt what a completion draws on lies
(its function's ``def`` line, the names it uses): what ``training.prompt_tokens`` would cut.

    .venv/bin/python bench/step_cost.py [--batch 4] [--lengths 256,128] [--steps 3] [--store DB]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from compilot.models import embedded_model_path
from compilot.paths import DataDir
from compilot.settings import LORA_TARGETS, load
from compilot.training.base import materialize


def cpu_flags() -> str:
    """The bf16 matrix features `lscpu` reports (empty: none)."""
    flags = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    return " ".join(sorted(set(re.findall(r"\b(?:avx512_bf16|amx_bf16)\b", flags))))


def step_seconds(model: torch.nn.Module, optimizer: torch.optim.Optimizer, ids: torch.Tensor,
                 *, bf16: bool, steps: int) -> float:
    """Mean seconds per step after one warm-up step (the steps train on: this measures cost,
    not whether bf16 learns as well, which a round's figures must show)."""
    times = []
    for _ in range(steps + 1):
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - started)
    return sum(times[1:]) / steps


def token_lengths(store_path: Path, tokenizer: Any) -> Table:
    """Prompt and completion tokens (p50 / p95 / max) of the KTO, DPO and SFT rows of a store."""
    from compilot.feedback import datasets as fd
    from compilot.feedback.store import Store
    from compilot.settings import DatasetSettings

    store = Store(store_path, read_only=True)
    table = Table(title=f"tokens of the training rows of {store_path}")
    for column in ("rows", "count", "prompt p50", "prompt p95", "completion p50",
                   "completion p95", "completion max"):
        table.add_column(column, justify="left" if column == "rows" else "right")
    settings = DatasetSettings(held_out=0.0, synthetic_negatives=False)
    for kind, column in (("kto", "completion"), ("dpo", "chosen"), ("sft", "completion")):
        rows = fd.build(store, fd.Selection(kind=kind), settings)["train"]
        if not len(rows):
            continue
        prompts = sorted(len(tokenizer(r["prompt"])["input_ids"]) for r in rows)
        completions = sorted(len(tokenizer(r[column])["input_ids"]) for r in rows)

        def at(values: list[int], share: float) -> str:
            return str(values[min(len(values) - 1, int(share * len(values)))])

        table.add_row(f"{kind} {column}", str(len(rows)), at(prompts, 0.5), at(prompts, 0.95),
                      at(completions, 0.5), at(completions, 0.95), str(completions[-1]))
    store.close()
    return table


HEADER = re.compile(r"^[ \t]*(?:async[ \t]+)?def[ \t]", re.MULTILINE)
NAME = re.compile(r"\b[A-Za-z_]\w*\b")


def prompt_needs(store_path: Path, tokenizer: Any, budgets: list[int]) -> Table:
    """How much of the prompt a completion draws on, for the Python rows a round trains on:
    how many tokens back the enclosing function's ``def`` line starts, and of the names a
    desirable completion uses that the prompt holds (not keywords or builtins), the share
    found in the prompt's last N tokens. A prompt budget below this loses what the
    completion is written from."""
    import builtins
    import keyword

    from compilot.feedback import datasets as fd
    from compilot.feedback.store import Store
    from compilot.settings import DatasetSettings

    store = Store(store_path, read_only=True)
    rows = fd.build(store, fd.Selection(kind="kto"), DatasetSettings(
        held_out=0.0, synthetic_negatives=False))["train"]
    store.close()
    common = set(keyword.kwlist) | set(dir(builtins)) | {"self", "cls"}
    header: list[int] = []
    names = {budget: [0, 0] for budget in budgets}  # found within the budget, found at all
    for row in rows:
        if row["language"] != "python":
            continue
        prompt = row["prompt"]
        ids = tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)
        offsets = [start for start, _ in ids["offset_mapping"]]
        starts = [m.start() for m in HEADER.finditer(prompt)]
        if starts:
            header.append(sum(1 for o in offsets if o >= starts[-1]))
        if not row["label"]:
            continue
        used = set(NAME.findall(row["completion"])) - common
        for budget in budgets:
            tail = prompt[offsets[-budget]:] if len(offsets) > budget else prompt
            for name in used:
                if re.search(rf"\b{re.escape(name)}\b", prompt):
                    names[budget][1] += 1
                    names[budget][0] += bool(re.search(rf"\b{re.escape(name)}\b", tail))
    header.sort()
    table = Table(title=f"what a completion draws on in the prompt ({len(header)} Python rows "
                        f"of {store_path}; enclosing def: p50 "
                        f"{header[len(header) // 2] if header else '-'}, p95 "
                        f"{header[int(0.95 * len(header))] if header else '-'} tokens back)")
    for column in ("prompt budget (tokens)", "def line inside", "prompt names the completion "
                   "uses, inside"):
        table.add_column(column, justify="right")
    for budget in budgets:
        inside = sum(1 for h in header if h <= budget) / max(1, len(header))
        found, total = names[budget]
        table.add_row(str(budget), f"{inside:.0%}", f"{found / max(1, total):.0%} of {total}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lengths", default="256,128")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--store", type=Path, help="an events.db whose rows to measure")
    args = parser.parse_args()
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base = materialize(embedded_model_path(), DataDir.of(load()[0]).cache)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
        LoraConfig(r=16, lora_alpha=32, target_modules=list(LORA_TARGETS),
                   task_type="CAUSAL_LM"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    table = Table(title=f"one LoRA step, batch {args.batch}, {args.threads} threads; "
                        f"CPU bf16 features: {cpu_flags() or 'none'}")
    for column in ("tokens per row", "float32 s/step", "bf16 autocast s/step", "bf16 speed-up"):
        table.add_column(column, justify="right")
    for length in (int(v) for v in args.lengths.split(",")):
        ids = torch.randint(0, 1000, (args.batch, length))
        fp32 = step_seconds(model, optimizer, ids, bf16=False, steps=args.steps)
        bf16 = step_seconds(model, optimizer, ids, bf16=True, steps=args.steps)
        table.add_row(str(length), f"{fp32:.2f}", f"{bf16:.2f}", f"{fp32 / bf16:.2f}x")
    console = Console(width=130)
    console.print(table)
    if args.store is not None:
        tokenizer = AutoTokenizer.from_pretrained(base)
        console.print(token_lengths(args.store, tokenizer))
        console.print(prompt_needs(args.store, tokenizer, [32, 64, 96, 128, 192, 256, 512]))


if __name__ == "__main__":
    main()
