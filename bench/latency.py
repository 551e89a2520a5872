"""Latency of an LSP round trip through `compilot serve` against a direct llama-cpp-python call.

For the same prompts (standard-library function bodies) and the same number of generated
tokens, measured side by side in one run (each prompt: server, then direct call):
- direct: `Llama.create_completion` on the prompt token ids the server evaluated (its healed
  window, after the chunks of other files opened before it), greedy, with max_tokens set to
  the tokens the server generated for that request;
- LSP: `textDocument/inlineCompletion` through a real `compilot serve` subprocess (one
  candidate, greedy), including windowing, post-processing, ranking and the event store;
- cache hit: the same request again, answered from the LRU cache;
- keystroke: one character typed at the cursor, then a request there: the window keeps its
  anchor, so the engine reuses the KV cache and evaluates only the new tokens.

    .venv/bin/python bench/latency.py [--count 50] [--max-tokens 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from lsprotocol import types

from compilot.lsp_client import inline, start_server
from compilot.models import embedded_model_path
from compilot.settings import ModelSettings
from compilot.training.corpus import stdlib_holes


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--seed", type=int, default=2)
    args = ap.parse_args()
    import llama_cpp

    model = ModelSettings()
    direct = llama_cpp.Llama(model_path=str(embedded_model_path()), n_ctx=model.n_ctx,
                             n_batch=model.n_batch, n_threads=os.cpu_count(), verbose=False)
    data_dir = tempfile.mkdtemp(prefix="compilot-bench-")
    client = await start_server(
        {"completion": {"candidates": 1, "maxTokens": args.max_tokens}},
        env={**os.environ, "COMPILOT_DATA_DIR": data_dir,
             "COMPILOT_CONFIG": str(Path(data_dir) / "none.toml")},
    )
    tasks = stdlib_holes(args.count, seed=args.seed)
    lsp_ms: list[float] = []
    direct_ms: list[float] = []
    hit_ms: list[float] = []
    key_ms: list[float] = []
    key_evaluated: list[int] = []
    lsp_tokens: list[int] = []
    direct_tokens: list[int] = []
    try:
        # Warm both (model pages, first-call allocations).
        warm = tasks[0]
        uri = Path(data_dir, "warm.py").as_uri()
        client.text_document_did_open(types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1,
                                                 text=warm.document)))
        await inline(client, uri, *warm.cursor)
        direct.create_completion("def f():", max_tokens=4, temperature=0)

        for number, task in enumerate(tasks):
            uri = Path(data_dir, f"t{number}.py").as_uri()
            client.text_document_did_open(types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1,
                                                     text=task.document)))
            before = await client.workspace_execute_command_async(
                types.ExecuteCommandParams(command="compilot.stats", arguments=[]))
            t0 = time.perf_counter()
            await inline(client, uri, *task.cursor)
            lsp_ms.append((time.perf_counter() - t0) * 1000)
            after = await client.workspace_execute_command_async(
                types.ExecuteCommandParams(command="compilot.stats",
                                           arguments=[{"prompt": True}]))
            generated = (after["engine"]["generated_tokens"]
                         - before["engine"]["generated_tokens"])
            lsp_tokens.append(generated)

            t0 = time.perf_counter()
            await inline(client, uri, *task.cursor)
            hit_ms.append((time.perf_counter() - t0) * 1000)

            line, character = task.cursor
            client.text_document_did_change(types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
                content_changes=[types.TextDocumentContentChangePartial(
                    range=types.Range(start=types.Position(line=line, character=character),
                                      end=types.Position(line=line, character=character)),
                    text="#")]))
            t0 = time.perf_counter()
            await inline(client, uri, line, character + 1)
            key_ms.append((time.perf_counter() - t0) * 1000)
            typed = await client.workspace_execute_command_async(
                types.ExecuteCommandParams(command="compilot.stats", arguments=[]))
            key_evaluated.append(typed["engine"]["prompt_tokens"]
                                 - after["engine"]["prompt_tokens"])

            # the very ids the server evaluated (its window, healed, after the chunks of the
            # files opened before, which the direct call would not have otherwise)
            t0 = time.perf_counter()
            out = direct.create_completion(after["last_prompt"], max_tokens=max(1, generated),
                                           temperature=0)
            direct_ms.append((time.perf_counter() - t0) * 1000)
            direct_tokens.append(out["usage"]["completion_tokens"])
            print(f"\r{number + 1}/{len(tasks)}", end="", flush=True)
        print()
    finally:
        await client.shutdown_async(None)
        client.exit(None)
        await client.stop()

    def row(name: str, values: list[float]) -> str:
        return f"{name:<28} p50 {pct(values, 0.5):8.1f} ms   p95 {pct(values, 0.95):8.1f} ms"

    print(f"prompts: {len(tasks)}; tokens generated, mean: LSP {statistics.mean(lsp_tokens):.1f}"
          f", direct {statistics.mean(direct_tokens):.1f} (max tokens {args.max_tokens})")
    print(row("direct llama-cpp-python", direct_ms))
    print(row("LSP round trip (compilot)", lsp_ms))
    print(row("LSP cache hit", hit_ms))
    print(row("LSP after a keystroke", key_ms) + f"   (prompt tokens evaluated, mean: "
          f"{statistics.mean(key_evaluated):.1f})")
    print(f"ratio LSP / direct: p50 {pct(lsp_ms, .5) / pct(direct_ms, .5):.3f}, "
          f"p95 {pct(lsp_ms, .95) / pct(direct_ms, .95):.3f}  (target <= 1.10)")
    print(f"cache hit p50: {pct(hit_ms, .5):.2f} ms  (target <= 5 ms)")


if __name__ == "__main__":
    asyncio.run(main())
