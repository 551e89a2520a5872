"""How often completions parse: the model's raw text against what compilot shows.

For N standard-library function bodies (the body removed, the cursor where it was), the
completion service (the server's own code path, in process) generates candidates; each raw
candidate and each shown (cut, ranked) candidate is spliced into the file and checked with
Python's own parser (`ast.parse`), independent of the tree-sitter check the ranker uses.

    .venv/bin/python bench/parse_rate.py [--count 100] [--candidates 3] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import os
import tempfile
import time

from compilot import settings as settings_mod
from compilot.server.completion import CompletionService
from compilot.training.corpus import stdlib_holes


def parses(source: str) -> bool:
    try:
        ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    return True


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--candidates", type=int, default=3)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    os.environ.setdefault("COMPILOT_DATA_DIR", tempfile.mkdtemp(prefix="compilot-bench-"))
    settings, _ = settings_mod.load({"completion": {"candidates": args.candidates,
                                                    "max_tokens": args.max_tokens}})
    service = CompletionService(settings, store=None)
    service.load().result()
    assert service.engine is not None, service.engine_error
    from compilot.server.prompt import heal, unheal

    raw_ok = raw_n = shown_ok = shown_n = top_ok = top_n = 0
    disagree = 0  # tree-sitter accepted it, Python's parser did not
    failures: list[str] = []
    started = time.perf_counter()
    tasks = stdlib_holes(args.count, seed=args.seed)
    for number, task in enumerate(tasks, 1):
        answer = await service.complete(f"file:///bench/{number}.py", task.document,
                                        len(task.prefix), language_id="python")
        # The raw candidates of this request: the model's text from the cursor, unprocessed.
        _, held = heal(task.prefix)
        for cand in service.last_raw:
            raw_n += 1
            raw_ok += parses(task.prefix + unheal(cand, held) + task.suffix)
        for rank, item in enumerate(answer.items):
            ok = parses(task.prefix + item.text + task.suffix)
            shown_n += 1
            shown_ok += ok
            if not ok:
                disagree += bool(item.parsed)
                failures.append(f"{task.name}: {item.text[:70]!r}")
            if rank == 0:
                top_n += 1
                top_ok += ok
        print(f"\r{number}/{len(tasks)}", end="", flush=True)
    print()
    elapsed = time.perf_counter() - started
    print(f"functions: {len(tasks)}, candidates per request: {args.candidates}, "
          f"max tokens: {args.max_tokens}, {elapsed:.0f}s")
    print(f"raw model completions that parse:   {raw_ok}/{raw_n} = {raw_ok / raw_n:.1%}")
    print(f"shown completions that parse:       {shown_ok}/{shown_n} = "
          f"{shown_ok / max(1, shown_n):.1%}  (target >= 95%)")
    print(f"top shown completion parses:        {top_ok}/{top_n} = {top_ok / max(1, top_n):.1%}")
    print(f"shown but not parsing: {shown_n - shown_ok} ({disagree} accepted by tree-sitter, "
          f"rejected by Python's parser; the rest: no candidate of the request parsed)")
    for failure in failures:
        print("  ", failure)
    service.close()


if __name__ == "__main__":
    asyncio.run(main())
