"""llama.cpp builds and thread / batch settings, measured side by side on the served prompts.

Each wheel of llama-cpp-python given is installed into a folder of its own; then, in rounds
that alternate the order of the builds, a subprocess per build loads the embedded model through
compilot's Engine (the server's code path: its context of sequences, its prompt batches, the
copy that ``model.requantize`` serves) for each setting of ``model.n_threads`` and
``model.n_batch`` and times, on the same healed standard-library windows:
- prompt evaluation from an empty KV cache (what a first request in a file pays), tokens/s;
- decoding one greedy candidate of ``--max-tokens`` with the prompt cached, ms per token;
- the default request (3 candidates side by side) with the prompt cached, ms.
Reported: the median over rounds and prompts per build and setting, and each build against the
first, setting by setting.

    .venv/bin/python bench/llama_build.py --wheel x86-64-v3=PATH.whl --wheel native=PATH.whl
                                          [--rounds 2] [--count 6] [--settings 2x64,2x256]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def served_prompts(engine: Any, holes: list[Any], completion: Any, max_tokens: int
                   ) -> list[list[int]]:
    """The token ids the server evaluates for each hole: its window, healed."""
    from compilot.server.prompt import heal, window

    prompts = []
    for hole in holes:
        win = window(hole.document, len(hole.prefix), prefix_chars=completion.prefix_chars,
                     suffix_chars=completion.suffix_chars)
        prompts.append(engine.prompt(heal(win.prefix)[0], win.suffix, max_tokens))
    return prompts


def measure(engine: Any, prompts: list[list[int]], completion: Any, max_tokens: int
            ) -> dict[str, list[float]]:
    """Per prompt: evaluation from an empty KV cache (tokens/s), one greedy candidate of
    ``max_tokens`` with the prompt cached (ms per token), the default request (ms)."""
    from compilot.server.engine import Sampling

    one = Sampling.from_settings(completion, n=1, max_tokens=max_tokens)
    request = Sampling.from_settings(completion)
    first = Sampling.from_settings(completion, n=1, max_tokens=1)
    figures: dict[str, list[float]] = {"prompt_tps": [], "decode_ms": [], "request_ms": []}
    engine.generate(prompts[0][:32], first)  # pages fault in once, not in the first prompt
    for tokens in prompts:
        engine.llm.n_tokens = 0
        started = time.perf_counter()
        engine.generate(tokens, first)
        figures["prompt_tps"].append(len(tokens) / (time.perf_counter() - started))
        started = time.perf_counter()
        found = engine.generate(tokens, one)
        figures["decode_ms"].append((time.perf_counter() - started) * 1000
                                    / max(1, found[0].tokens))
        started = time.perf_counter()
        engine.generate(tokens, request)
        figures["request_ms"].append((time.perf_counter() - started) * 1000)
    return figures


def worker(settings: list[tuple[int, int]], count: int, max_tokens: int, seed: int) -> None:
    """In the subprocess: the measurements of one build, as JSON on stdout."""
    import llama_cpp

    from compilot.models import embedded_model_path
    from compilot.server.engine import Engine
    from compilot.settings import CompletionSettings, ModelSettings
    from compilot.training.corpus import stdlib_holes

    completion = CompletionSettings()
    holes = stdlib_holes(count, seed=seed)
    out: dict[str, Any] = {"llama_cpp": llama_cpp.__file__,
                           "system_info": llama_cpp.llama_print_system_info().decode(),
                           "settings": {}}
    for threads, batch in settings:
        engine = Engine(embedded_model_path(), ModelSettings(n_threads=threads, n_batch=batch))
        prompts = served_prompts(engine, holes, completion, max_tokens)
        figures = measure(engine, prompts, completion, max_tokens)
        figures["prompt_tokens"] = [float(len(t)) for t in prompts]
        out["settings"][f"{threads}x{batch}"] = figures
        engine.llm.close()
    print(json.dumps(out))


def install(label: str, wheel: Path, into: Path) -> Path:
    target = into / label
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(target), str(wheel)], check=True)
    return target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--wheel", action="append", default=[], metavar="LABEL=PATH",
                    help="a llama-cpp-python wheel (the first is the reference); none: the "
                         "installed build alone")
    ap.add_argument("--settings", default="2x64,2x128,2x256,2x512,1x256",
                    help="THREADSxBATCH, comma separated")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--count", type=int, default=6)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    settings = [(int(t), int(b)) for t, b in
                (s.split("x") for s in args.settings.split(","))]
    if args.worker:
        worker(settings, args.count, args.max_tokens, args.seed)
        return
    folder = Path(tempfile.mkdtemp(prefix="compilot-builds-"))
    builds: dict[str, Path | None] = {}
    for spec in args.wheel:
        label, _, path = spec.partition("=")
        builds[label] = install(label, Path(path), folder)
    if not builds:
        builds["installed"] = None
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label in builds}
    for number in range(args.rounds):
        order = list(builds) if number % 2 == 0 else list(reversed(builds))
        for label in order:
            env = dict(os.environ)
            if builds[label] is not None:
                env["PYTHONPATH"] = os.pathsep.join(
                    [str(builds[label]), *filter(None, [env.get("PYTHONPATH")])])
            done = subprocess.run(
                [sys.executable, __file__, "--worker", "--settings", args.settings,
                 "--count", str(args.count), "--max-tokens", str(args.max_tokens),
                 "--seed", str(args.seed)],
                env=env, check=True, capture_output=True, text=True)
            runs[label].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(f"\rround {number + 1}/{args.rounds}: {label} done", end="", flush=True)
    print()
    table: dict[str, dict[str, dict[str, float]]] = {}
    for label, results in runs.items():
        first = results[0]
        print(f"{label}: {first['llama_cpp']}\n  {first['system_info']}")
        table[label] = {}
        for setting in first["settings"]:
            merged = {k: [v for r in results for v in r["settings"][setting][k]]
                      for k in first["settings"][setting]}
            table[label][setting] = {k: statistics.median(v) for k, v in merged.items()}
    reference = next(iter(table))
    tokens = next(iter(table[reference].values()))["prompt_tokens"]
    print(f"{args.count} windows (median {tokens:.0f} prompt tokens) x {args.rounds} rounds; "
          f"medians. threads x batch:")
    print(f"{'build':<12} {'setting':<8} {'prompt tok/s':>13} {'decode ms/tok':>14} "
          f"{'3-candidate request ms':>23}   against {reference}")
    for label, rows in table.items():
        for setting, row in rows.items():
            ref = table[reference][setting]
            print(f"{label:<12} {setting:<8} {row['prompt_tps']:13.0f} {row['decode_ms']:14.2f} "
                  f"{row['request_ms']:23.0f}   prompt x{row['prompt_tps'] / ref['prompt_tps']:.3f}"
                  f" decode x{ref['decode_ms'] / row['decode_ms']:.3f}"
                  f" request x{ref['request_ms'] / row['request_ms']:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"table": table, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
