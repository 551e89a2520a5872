"""``model.requantize``: the file as it is against the copy the server serves, side by side.

Two engines on the embedded model (``requantize = "off"`` and the default ``"auto"``, which
serves its Q4_1 as a Q8_0 copy) in one process, in rounds that alternate their order, timed as
``bench/llama_build.py`` times builds, on the same healed standard-library windows:
- prompt evaluation from an empty KV cache (what a first request in a file pays), tokens/s;
- decoding one greedy candidate with the prompt cached, ms per token;
- the default request (3 candidates side by side) with the prompt cached, ms.
Then each scores HumanEval as ``compilot eval --benchmark humaneval --both`` does (the same
greedy generation scored as shown and raw), paired: the problems either solves alone.

With ``--also q4_0,f16`` the speed part also times those copies (``model.requantize`` forced).

    .venv/bin/python bench/requantize.py [--rounds 3] [--count 6] [--limit 164] [--also TYPES]
                                         [--json out]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from llama_build import measure, served_prompts  # noqa: E402

MODES = ("off", "auto")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--count", type=int, default=6, help="windows timed per round")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--limit", type=int, default=164, help="HumanEval problems (0: none)")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--also", default="", help="more types to time, comma separated")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    timed = (*MODES, *filter(None, args.also.split(",")))

    from compilot.models import describe, embedded_model_path
    from compilot.server.engine import Engine
    from compilot.settings import Settings
    from compilot.training import benchmarks
    from compilot.training.corpus import stdlib_holes
    from compilot.training.evaluate import Evaluator

    settings = Settings()
    model = embedded_model_path()
    evaluators = {mode: Evaluator(model, replace(settings, model=replace(
        settings.model, requantize=mode))) for mode in timed}
    engines: dict[str, Engine] = {mode: e.engine for mode, e in evaluators.items()}
    types = {mode: describe(e.served_path).quantization for mode, e in engines.items()}
    print("served: " + ", ".join(f"{mode} {types[mode]} ({engines[mode].served_path.name})"
                                 for mode in timed))
    holes = stdlib_holes(args.count, seed=args.seed)
    prompts = served_prompts(engines["off"], holes, settings.completion, args.max_tokens)
    figures: dict[str, dict[str, list[float]]] = {m: {} for m in timed}
    for number in range(args.rounds):
        for mode in timed if number % 2 == 0 else tuple(reversed(timed)):
            got = measure(engines[mode], prompts, settings.completion, args.max_tokens)
            for key, values in got.items():
                figures[mode].setdefault(key, []).extend(values)
    summary: dict[str, Any] = {"prompt_tokens": statistics.median(len(p) for p in prompts),
                               "types": types}
    for mode in timed:
        summary[mode] = {key: round(statistics.median(v), 1) for key, v in figures[mode].items()}
    off, auto = summary["off"], summary["auto"]
    summary["auto against off"] = {
        "prompt evaluation": round(auto["prompt_tps"] / off["prompt_tps"], 2),
        "decoding": round(off["decode_ms"] / auto["decode_ms"], 2),
        "request": round(off["request_ms"] / auto["request_ms"], 2)}
    for mode in timed:
        s = summary[mode]
        print(f"{mode:<5} {types[mode]:<5} prompt {s['prompt_tps']:.0f} tokens/s  decode "
              f"{s['decode_ms']:.1f} ms/token  request {s['request_ms']:.0f} ms")
    print(f"auto against off (speed-up, median of {args.rounds} rounds x {args.count} windows "
          f"of {summary['prompt_tokens']:.0f} tokens): {summary['auto against off']}")
    if args.limit:
        tasks = benchmarks.humaneval(args.limit)
        outcomes: dict[str, dict[str, list[tuple[bool, bool, bool]]]] = {}
        for mode in MODES:
            ev, started = evaluators[mode], time.perf_counter()
            outcomes[mode] = {"server": [], "raw": []}
            for number, task in enumerate(tasks):
                texts = ev.complete(task.prompt, "", task.language, seed=number)
                for shown in ("server", "raw"):
                    outcomes[mode][shown].append(ev.score(task, texts[shown][0]))
            print(f"{mode}: {len(tasks)} HumanEval problems in "
                  f"{time.perf_counter() - started:.0f} s")
        scores: dict[str, Any] = {}
        for mode in MODES:
            scores[mode] = {shown: {f"{metric}@1": round(statistics.mean(
                o[i] for o in outcomes[mode][shown]), 4)
                for i, metric in enumerate(("compile", "exec", "pass"))}
                for shown in ("server", "raw")}
        for shown in ("server", "raw"):
            pairs = list(zip(outcomes["auto"][shown], outcomes["off"][shown], strict=True))
            scores[f"{shown} compile@1 auto wins / losses"] = [
                sum(a[0] and not b[0] for a, b in pairs), sum(b[0] and not a[0] for a, b in pairs)]
        summary["humaneval"] = {"problems": len(tasks), **scores}
        for mode in MODES:
            row = scores[mode]
            print(f"{mode:<5} as shown compile@1 {row['server']['compile@1']:.3f} exec@1 "
                  f"{row['server']['exec@1']:.3f} pass@1 {row['server']['pass@1']:.3f}; raw "
                  f"compile@1 {row['raw']['compile@1']:.3f} exec@1 {row['raw']['exec@1']:.3f}")
        print("compile@1, problems auto alone / off alone solves: as shown "
              f"{scores['server compile@1 auto wins / losses']}, raw "
              f"{scores['raw compile@1 auto wins / losses']}")
    for e in evaluators.values():
        e.close()
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
