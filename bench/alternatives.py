"""What a first answer shows when its alternatives come later: the greedy candidate alone,
``completion.alternatives_later`` (the greedy candidate alone unless nothing of it that
parses can be shown, then the others at once, ``first_answer``) and the request's three
candidates ranked together (decoded side by side in the request), on the same
standard-library function bodies, in one run.

Per body, the server's pipeline (``generate_ranked``: heal, prompt, generate, cut, rank) answers
at the start of the body the three ways, in rotating order, each from the same evaluated prompt.
Reported: the share whose top shown suggestion compiles in place (syntax and compiler, scored
as the held-out compile@1 scores it, ``Evaluator.splices``), the share with nothing shown, and
the milliseconds of an answer with its prompt already evaluated, p50 / p95. No time limit:
the comparison is of what is shown, not of how much fits in ``predict_ms``.

    .venv/bin/python bench/alternatives.py [--count 40] [--max-tokens 64] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from compilot.languages import language_for
from compilot.models import embedded_model_path
from compilot.server.completion import first_answer, generate_ranked
from compilot.server.engine import Sampling
from compilot.server.prompt import window
from compilot.settings import Settings
from compilot.training.corpus import stdlib_holes
from compilot.training.evaluate import Evaluator
from compilot.training.prompts import Prompt

WAYS = ("greedy alone", "alternatives later", "three ranked together")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=40)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--seed", type=int, default=8)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    settings = Settings()
    c = settings.completion
    evaluator = Evaluator(embedded_model_path(), settings, max_tokens=args.max_tokens)
    engine = evaluator.engine
    sampling = Sampling.from_settings(c, max_tokens=args.max_tokens)
    python = language_for("python")
    ms: dict[str, list[float]] = {w: [] for w in WAYS}
    compiles = dict.fromkeys(WAYS, 0)
    empty = dict.fromkeys(WAYS, 0)
    differ = at_once = 0
    holes = stdlib_holes(args.count, seed=args.seed)
    for number, hole in enumerate(holes):
        at = len(hole.prefix)
        win = window(hole.document, at, prefix_chars=c.prefix_chars,
                     suffix_chars=c.suffix_chars)
        prompt = Prompt(prefix=win.prefix, suffix=win.suffix, language="python")
        before, after = hole.document[:at], hole.document[at:]
        tops = {}
        for way in WAYS[number % 3:] + WAYS[:number % 3]:
            generate_ranked(engine, win.prefix, win.suffix, python,  # the prompt in KV
                            replace(sampling, n=1, max_tokens=1), before=before, after=after)
            started = time.perf_counter()
            if way == WAYS[1]:
                ranked, _raw, owed = first_answer(engine, win.prefix, win.suffix, python,
                                                  sampling, before=before, after=after)
                at_once += not owed
            else:
                ranked, _raw = generate_ranked(engine, win.prefix, win.suffix, python,
                                               sampling, before=before, after=after,
                                               indices=[0] if way == WAYS[0] else None)
            ms[way].append((time.perf_counter() - started) * 1000)
            top = next((r.text for r in ranked if r.shown), "")
            tops[way] = top
            empty[way] += not top.strip()
            compiles[way] += evaluator.splices(prompt, top)
        differ += tops[WAYS[0]] != tops[WAYS[2]]
        print(f"\r{number + 1}/{len(holes)}", end="", flush=True)
    print()
    n = len(holes)
    out = {"bodies": n, "candidates": c.candidates, "max_tokens": args.max_tokens,
           "threads": engine.n_threads, "top_differs": differ,
           "later_decoded_the_others_at_once": at_once}
    print(f"{n} standard-library bodies, {c.candidates} candidates of at most "
          f"{args.max_tokens} tokens, {engine.n_threads} threads; the prompt already in the "
          "KV cache")
    for way in WAYS:
        out[way] = {"compile@1_shown": round(compiles[way] / n, 3),
                    "nothing_shown": empty[way], "p50_ms": round(pct(ms[way], .5), 1),
                    "p95_ms": round(pct(ms[way], .95), 1)}
        print(f"{way:<22} top shown compiles {compiles[way]:>3}/{n} ({compiles[way] / n:.2f})"
              f"  nothing shown {empty[way]:>3}  p50 {pct(ms[way], .5):7.1f} ms  "
              f"p95 {pct(ms[way], .95):7.1f} ms")
    print(f"the top suggestion of the greedy alone and of the three together differs in "
          f"{differ} of {n}; alternatives later decoded the others at once in {at_once} of {n}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
