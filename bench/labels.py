"""Training rows per request from an editor session, with and without background labelling.

One session through `compilot serve` over LSP: standard-library function bodies, one inline
request each (the server's default 3 candidates), the top candidate accepted after every
``--accept-every``-th answer, as the demo's editor does it. Then the KTO rows, DPO pairs and SFT
rows the store yields, counted twice side by side: with every label, and with the background
labels (checks triggered by "answer") left out, which is what the same session yielded before.

    .venv/bin/python bench/labels.py [--requests 24] [--accept-every 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

from lsprotocol import types

from compilot.feedback import datasets as fd
from compilot.feedback.store import Store
from compilot.lsp_client import command, inline, start_server, stop
from compilot.settings import DatasetSettings
from compilot.training.corpus import stdlib_holes


def rows(db: Path) -> dict[str, int]:
    store = Store(db)
    settings = DatasetSettings(held_out=0.0, synthetic_negatives=False)
    out = {kind: len(fd.build(store, fd.Selection(kind=kind), settings)["train"])
           for kind in ("kto", "dpo", "sft")}
    store.close()
    return out


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=24)
    ap.add_argument("--accept-every", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="compilot-labels-"))
    client = await start_server({}, env={**os.environ, "COMPILOT_DATA_DIR": str(data_dir),
                                         "COMPILOT_CONFIG": str(data_dir / "none.toml")})
    try:
        for number, hole in enumerate(stdlib_holes(args.requests, seed=args.seed)):
            uri = Path(data_dir, f"s{number}.py").as_uri()
            client.text_document_did_open(types.DidOpenTextDocumentParams(
                text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1,
                                                     text=hole.prefix + hole.suffix)))
            answer = await inline(client, uri, *hole.cursor)
            if answer.items and number % args.accept_every == 0:
                item = answer.items[0]
                line, character = hole.cursor
                at = types.Position(line=line, character=character)
                client.text_document_did_change(types.DidChangeTextDocumentParams(
                    text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
                    content_changes=[types.TextDocumentContentChangePartial(
                        range=types.Range(start=at, end=at), text=str(item.insert_text))]))
                await command(client, "compilot.accepted",
                              *item.command.arguments)  # type: ignore[union-attr]
        assert await command(client, "compilot.settle") is True
    finally:
        await stop(client)
    db = data_dir / "events.db"
    before = data_dir / "without-background.db"
    shutil.copy(db, before)
    with sqlite3.connect(before) as raw:
        raw.execute("DELETE FROM checks WHERE trigger = 'answer'")
    with sqlite3.connect(db) as raw:
        candidates = raw.execute("SELECT count(*) FROM candidates").fetchone()[0]
        labelled = raw.execute("SELECT count(DISTINCT candidate_id) FROM checks "
                               "WHERE stage = 'compile'").fetchone()[0]
    old, new = rows(before), rows(db)
    n = args.requests
    print(f"{n} requests, {candidates} candidates; compile-checked: {labelled}")
    print(f"{'':<28} {'KTO rows':>9} {'DPO pairs':>10} {'SFT rows':>9} {'per request':>12}")
    for name, counts in (("accepted only (before)", old), ("every candidate (now)", new)):
        total = sum(counts.values())
        print(f"{name:<28} {counts['kto']:>9} {counts['dpo']:>10} {counts['sft']:>9} "
              f"{total / n:>12.2f}")


if __name__ == "__main__":
    asyncio.run(main())
