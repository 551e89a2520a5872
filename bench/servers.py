"""Several `compilot serve` processes on one machine: throughput with the shared thread budget
against each taking every core (what each did before `compilot.thread_budget`).

Side by side in one run, for each arm: N servers (own data dirs, one runtime folder), each
sent the same standard-library function bodies, one request at a time, all servers at once;
the figure is requests answered per second, all servers together.

    .venv/bin/python bench/servers.py [--servers 3] [--requests 20] [--max-tokens 16]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from compilot.lsp_client import command, inline, start_server, stop
from compilot.thread_budget import cores
from compilot.training.corpus import Hole, stdlib_holes


async def drive(client: LanguageClient, holes: list[Hole], folder: Path) -> int:
    for number, hole in enumerate(holes):
        uri = Path(folder, f"h{number}.py").as_uri()
        client.text_document_did_open(types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1,
                                                 text=hole.document)))
        await inline(client, uri, *hole.cursor)
    return len(holes)


async def arm(n: int, threads: int | None, holes: list[Hole], max_tokens: int
              ) -> tuple[float, list[int]]:
    root = Path(tempfile.mkdtemp(prefix="compilot-servers-"))
    options: dict[str, object] = {"completion": {"maxTokens": max_tokens, "candidates": 1}}
    if threads is not None:
        options["model"] = {"nThreads": threads}
    env = {**os.environ, "COMPILOT_RUNTIME_DIR": str(root / "run"),
           "COMPILOT_CONFIG": str(root / "none.toml")}
    clients = [await start_server(options, env={**env, "COMPILOT_DATA_DIR": str(root / str(i))})
               for i in range(n)]
    try:
        await asyncio.gather(*(drive(c, holes[:2], root) for c in clients))  # warm-up
        started = time.perf_counter()
        done = await asyncio.gather(*(drive(c, holes[2:], root / "t") for c in clients))
        elapsed = time.perf_counter() - started
        used = [(await command(c, "compilot.stats"))["threads"] for c in clients]
    finally:
        for c in clients:
            await stop(c)
    return sum(done) / elapsed, used


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--servers", type=int, default=3)
    ap.add_argument("--requests", type=int, default=20, help="Per server.")
    ap.add_argument("--max-tokens", type=int, default=16)
    args = ap.parse_args()
    holes = stdlib_holes(args.requests + 2, seed=5)
    print(f"{cores()} cores, {args.servers} servers, {args.requests} requests each")
    for name, n, threads in (("one server", 1, None),
                             (f"{args.servers} servers, shared budget", args.servers, None),
                             (f"{args.servers} servers, every core each", args.servers,
                              cores())):
        rate, used = await arm(n, threads, holes, args.max_tokens)
        print(f"{name:<34} {rate:6.2f} requests/s   (llama threads per server: {used})")


if __name__ == "__main__":
    asyncio.run(main())
