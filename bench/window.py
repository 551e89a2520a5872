"""``completion.prefix_chars``: what a shorter window costs in compile@1 and saves in time.

A first request in a file pays for evaluating its whole window; the warm-up can hide that only
when the typist reads long enough. This prompts the same standard-library function bodies
(drawn by ``--seed``) with windows of each ``--prefix-chars`` (the suffix as the server cuts
it), through the evaluator (the server's pipeline: heal, prompt, generate, cut, rank; greedy,
``gate.max_tokens``), and reports per length, paired on the same bodies: compile@1 raw and as
shown (the splice introduces no error), the bodies a length fails that the longest passes
and the reverse, the prompt's tokens and its evaluation from an empty KV cache.

    .venv/bin/python bench/window.py [--count 100] [--prefix-chars 3000,2000,1500,1000]
                                     [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--prefix-chars", default="3000,2000,1500,1000")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    from compilot.models import embedded_model_path
    from compilot.server.engine import Sampling
    from compilot.server.prompt import heal, window
    from compilot.settings import Settings
    from compilot.training.corpus import stdlib_holes
    from compilot.training.evaluate import Evaluator
    from compilot.training.prompts import Prompt

    settings = Settings()
    lengths = [int(n) for n in args.prefix_chars.split(",")]
    holes = stdlib_holes(args.count, seed=args.seed, max_file_chars=200_000)
    evaluator = Evaluator(embedded_model_path(), settings)
    engine = evaluator.engine
    first = Sampling.from_settings(settings.completion, n=1, max_tokens=1)
    passed: dict[int, dict[str, list[bool]]] = {}
    costs: dict[int, dict[str, list[float]]] = {}
    for chars in lengths:
        c = replace(settings.completion, prefix_chars=chars)
        passed[chars] = {"raw": [], "server": []}
        costs[chars] = {"tokens": [], "ms": []}
        started = time.perf_counter()
        for hole in holes:
            win = window(hole.document, len(hole.prefix), prefix_chars=c.prefix_chars,
                         suffix_chars=c.suffix_chars)
            prompt = Prompt(win.prefix, win.suffix, "python")
            texts = evaluator.complete(prompt.prefix, prompt.suffix, prompt.language)
            for mode in ("raw", "server"):
                passed[chars][mode].append(evaluator.splices(prompt, (texts[mode] or [""])[0]))
            tokens = engine.prompt(heal(win.prefix)[0], win.suffix, evaluator.max_tokens)
            engine.llm.n_tokens = 0
            clock = time.perf_counter()
            engine.generate(tokens, first)
            costs[chars]["ms"].append((time.perf_counter() - clock) * 1000)
            costs[chars]["tokens"].append(float(len(tokens)))
        print(f"prefix_chars {chars}: {len(holes)} bodies in {time.perf_counter() - started:.0f} s")
    longest = lengths[0]
    summary: dict[str, Any] = {"bodies": len(holes), "lengths": {}}
    for chars in lengths:
        row: dict[str, Any] = {
            "prompt tokens mean": round(statistics.mean(costs[chars]["tokens"]), 1),
            "prompt ms p50": round(statistics.median(costs[chars]["ms"]), 1)}
        for mode in ("raw", "server"):
            mine, ref = passed[chars][mode], passed[longest][mode]
            row[f"{mode} compile@1"] = round(statistics.mean(mine), 3)
            row[f"{mode} lost / gained against {longest}"] = [
                sum(r and not m for m, r in zip(mine, ref, strict=True)),
                sum(m and not r for m, r in zip(mine, ref, strict=True))]
        summary["lengths"][chars] = row
        print(f"{chars:>5} chars: {row['prompt tokens mean']:.0f} tokens, evaluated in "
              f"{row['prompt ms p50']:.0f} ms (p50); compile@1 raw {row['raw compile@1']:.3f} "
              f"shown {row['server compile@1']:.3f}; against {longest}: lost / gained raw "
              f"{row[f'raw lost / gained against {longest}']}, shown "
              f"{row[f'server lost / gained against {longest}']}")
    evaluator.close()
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
