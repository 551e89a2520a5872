"""A soak of `compilot serve`: N inline requests while typing, as an editor sends them.

For standard-library function bodies (the holes of `compilot.training.corpus`), one after
another: open the file at the hole, then type the true body's first characters one at a time
(didChange, then inlineCompletion at the new cursor, as an editor does on each keystroke),
accepting the top candidate now and then (compilot.accepted) and rejecting it at other
times. It reports, over the whole run and per tenth of it: errors (error responses and
timeouts), latency p50 / p95 of the inline requests, the server's RSS at the start (after a
warm-up) and at the end, and the store's bytes per 1,000 requests (events.db and its WAL,
after the writer has drained). A flat RSS and a flat p95 from the first tenth to the last are
what it is for.

    .venv/bin/python bench/soak.py [--requests 10000] [--max-tokens 16] [--candidates 3]
                                   [--keys 40] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient

from compilot.lsp_client import command, inline, start_server, stop
from compilot.training.corpus import stdlib_holes


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def store_bytes(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in data_dir.glob("events.db*") if p.is_file())


def position(text: str) -> tuple[int, int]:
    lines = text.split("\n")
    return len(lines) - 1, len(lines[-1].encode("utf-16-le")) // 2


async def soak(client: LanguageClient, data_dir: Path, requests: int, seed: int, keys: int
               ) -> dict[str, Any]:
    rng = random.Random(seed)
    holes = stdlib_holes(max(50, requests // keys + 10), seed=seed)
    server = client._server  # noqa: SLF001 - the subprocess, for its RSS
    assert server is not None
    latencies: list[float] = []
    errors: list[str] = []
    accepted = rejected = 0
    start_rss = end_rss = 0.0
    rss_tenths: list[float] = []
    started = time.perf_counter()
    n = 0
    for number, hole in enumerate(holes * (1 + requests // max(1, len(holes)))):
        if n >= requests:
            break
        uri = Path(data_dir, f"soak{number}.py").as_uri()
        client.text_document_did_open(types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1,
                                                 text=hole.document)))
        typed = ""
        for version, char in enumerate(["", *hole.reference[:keys]], start=1):
            if n >= requests:
                break
            if char:  # a keystroke at the cursor
                line, character = position(hole.prefix + typed)
                at = types.Position(line=line, character=character)
                client.text_document_did_change(types.DidChangeTextDocumentParams(
                    text_document=types.VersionedTextDocumentIdentifier(uri=uri,
                                                                        version=version),
                    content_changes=[types.TextDocumentContentChangePartial(
                        range=types.Range(start=at, end=at), text=char)]))
                typed += char
            line, character = position(hole.prefix + typed)
            t0 = time.perf_counter()
            try:
                answer = await inline(client, uri, line, character)
                latencies.append((time.perf_counter() - t0) * 1000)
                if answer.items and answer.items[0].command is not None:
                    cid = answer.items[0].command.arguments[0]  # type: ignore[index]
                    roll = rng.random()
                    if roll < 0.03:
                        accepted += bool(await command(client, "compilot.accepted", cid))
                    elif roll < 0.06:
                        rejected += bool(await command(client, "compilot.rejected", cid))
            except Exception as exc:  # noqa: BLE001 - counted, the soak goes on
                latencies.append((time.perf_counter() - t0) * 1000)
                errors.append(f"{type(exc).__name__}: {exc}")
            n += 1
            if n == min(50, requests):
                start_rss = rss_mb(server.pid)
            if n % max(1, requests // 10) == 0:
                rss_tenths.append(round(rss_mb(server.pid), 1))
            if n % 100 == 0:
                print(f"\r{n}/{requests}", end="", flush=True)
        client.text_document_did_close(types.DidCloseTextDocumentParams(
            text_document=types.TextDocumentIdentifier(uri=uri)))
    print()
    elapsed = time.perf_counter() - started
    settled = await command(client, "compilot.settle")
    end_rss = rss_mb(server.pid)
    stats = await command(client, "compilot.stats")
    tenth = max(1, len(latencies) // 10)
    return {
        "requests": len(latencies), "keys_per_file": keys, "seconds": round(elapsed, 1),
        "errors": len(errors), "error_kinds": sorted(set(errors))[:5],
        "accepted": accepted, "rejected": rejected,
        "p50_ms": round(pct(latencies, 0.5), 1), "p95_ms": round(pct(latencies, 0.95), 1),
        "tenths": [{"p50_ms": round(pct(latencies[i:i + tenth], 0.5), 1),
                    "p95_ms": round(pct(latencies[i:i + tenth], 0.95), 1)}
                   for i in range(0, tenth * 10, tenth)],
        "rss_mb": {"start": round(start_rss, 1), "end": round(end_rss, 1),
                   "tenths": rss_tenths},
        "store": {"settled": settled, "bytes": store_bytes(data_dir),
                  "bytes_per_1000_requests": round(store_bytes(data_dir) * 1000
                                                   / max(1, len(latencies))),
                  **{k: v for k, v in (stats.get("store") or {}).items() if k != "path"}},
    }


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--candidates", type=int, default=3)
    ap.add_argument("--keys", type=int, default=40, help="Characters typed into each body.")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None, help="Also write the figures here.")
    args = ap.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="compilot-soak-"))
    client = await start_server(
        {"completion": {"maxTokens": args.max_tokens, "candidates": args.candidates}},
        env={**os.environ, "COMPILOT_DATA_DIR": str(data_dir),
             "COMPILOT_CONFIG": str(data_dir / "none.toml")})
    try:
        result = await soak(client, data_dir, args.requests, args.seed, args.keys)
    finally:
        await stop(client)
    print(f"requests {result['requests']} in {result['seconds']} s; errors {result['errors']}"
          f" {result['error_kinds'] or ''}")
    print(f"latency p50 {result['p50_ms']} ms, p95 {result['p95_ms']} ms; per tenth (p50/p95):"
          " " + "  ".join(f"{t['p50_ms']:.0f}/{t['p95_ms']:.0f}" for t in result["tenths"]))
    print(f"RSS {result['rss_mb']['start']} -> {result['rss_mb']['end']} MB; at each tenth: "
          + " ".join(f"{v:.0f}" for v in result["rss_mb"]["tenths"]))
    store = result["store"]
    print(f"store {store['bytes']} bytes, {store['bytes_per_1000_requests']} per 1,000 "
          f"requests; rows: requests {store.get('requests')}, candidates "
          f"{store.get('candidates')}, events {store.get('events')}; writes dropped "
          f"{store.get('writes_dropped')}, lost {store.get('writes_lost')}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
