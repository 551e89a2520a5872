"""The candidates of a request decoded side by side (one batch per token, one KV sequence
each) against one after another, and against the greedy candidate alone (what an editor's
request decodes with ``completion.alternatives_later``), on the same prompts, in one run.

For standard-library function bodies (the server's healed window), the prompt is evaluated
once; then the request's candidates are generated the three ways, in rotating order, each from
the same evaluated prompt. Reported: milliseconds for the candidates (prompt evaluation
apart) p50 / p95, their tokens, milliseconds per decoding step (one token of every candidate
still going: the time over the longest candidate's tokens), the ratios, and whether the ways
gave the same texts.

    .venv/bin/python bench/candidates.py [--count 30] [--candidates 3] [--max-tokens 32]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

from compilot.models import embedded_model_path
from compilot.server.engine import Engine, Sampling
from compilot.server.prompt import heal, window
from compilot.settings import CompletionSettings, ModelSettings
from compilot.training.corpus import stdlib_holes


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=30)
    ap.add_argument("--candidates", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--seed", type=int, default=6)
    args = ap.parse_args()
    completion = CompletionSettings(candidates=args.candidates, max_tokens=args.max_tokens)
    engine = Engine(embedded_model_path(), ModelSettings())
    side = engine.n_seq
    sampling = Sampling.from_settings(completion)
    ms: dict[str, list[float]] = {"side by side": [], "one after another": [],
                                  "greedy alone": []}
    tokens: dict[str, list[int]] = {k: [] for k in ms}
    step_ms: dict[str, list[float]] = {k: [] for k in ms}
    same = top = 0
    holes = stdlib_holes(args.count, seed=args.seed)
    for number, hole in enumerate(holes):
        win = window(hole.document, len(hole.prefix), prefix_chars=completion.prefix_chars,
                     suffix_chars=completion.suffix_chars)
        prompt = engine.prompt(heal(win.prefix)[0], win.suffix, args.max_tokens)
        ways = list(ms)
        order = ways[number % 3:] + ways[:number % 3]
        texts = {}
        for way in order:
            engine.n_seq = 1 if way == "one after another" else side
            engine.generate(prompt, replace(sampling, n=1, max_tokens=1))  # the prompt in KV
            started = time.perf_counter()
            found = engine.generate(prompt, sampling,
                                    indices=[0] if way == "greedy alone" else None)
            ms[way].append((time.perf_counter() - started) * 1000)
            tokens[way].append(sum(c.tokens for c in found))
            steps = (sum if way == "one after another" else max)(c.tokens for c in found)
            step_ms[way].append(ms[way][-1] / max(1, steps))
            texts[way] = [c.text for c in found]
        same += texts["side by side"] == texts["one after another"]
        top += texts["side by side"][:1] == texts["one after another"][:1]
        print(f"\r{number + 1}/{len(holes)}", end="", flush=True)
    print()
    print(f"{len(holes)} requests, {args.candidates} candidates of at most {args.max_tokens} "
          f"tokens, {engine.n_threads} threads; the prompt already in the KV cache")
    for way, values in ms.items():
        print(f"{way:<18} p50 {pct(values, .5):7.1f} ms  p95 {pct(values, .95):7.1f} ms  "
              f"tokens per request {statistics.mean(tokens[way]):.1f}  "
              f"per step p50 {pct(step_ms[way], .5):5.1f} ms")
    ratio = pct(ms["one after another"], .5) / pct(ms["side by side"], .5)
    alone = pct(ms["side by side"], .5) / pct(ms["greedy alone"], .5)
    step = pct(step_ms["side by side"], .5) / pct(step_ms["greedy alone"], .5)
    print(f"one after another / side by side, p50: {ratio:.2f}; side by side / greedy alone, "
          f"p50: {alone:.2f} (a step of {args.candidates} tokens costs {step:.2f} of one); the "
          f"same greedy candidate in {top} of {len(holes)} requests, all candidates the same "
          f"in {same} (a batch rounds differently from a single token: a sampled candidate can "
          "part at a near tie)")


if __name__ == "__main__":
    main()
