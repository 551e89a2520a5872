"""The `compilot` command."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from typing import Annotated

import typer
from rich.console import Console

from compilot import __version__
from compilot import settings as settings_mod

app = typer.Typer(help="compilot: local code completion that learns from the compiler.",
                  no_args_is_help=True, add_completion=False)
err = Console(stderr=True)


def _logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


@app.command()
def serve(
    tcp: Annotated[str | None, typer.Option(help="Listen on HOST:PORT instead of stdio.")] = None,
    log_level: Annotated[str, typer.Option(help="Log level (to stderr).")] = "warning",
) -> None:
    """Run the language server (stdio by default)."""
    _logging(log_level)
    from compilot.server.lsp import server

    if tcp:
        host, _, port = tcp.rpartition(":")
        server.start_tcp(host or "127.0.0.1", int(port))
        return
    # Keep stdout for LSP frames only: whatever else writes to fd 1 (a stray print, a C
    # library's printf) goes to stderr instead.
    lsp_out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    server.start_io(sys.stdin.buffer, lsp_out)


@app.command()
def demo(
    size: Annotated[int, typer.Option(help="Number of functions to complete.")] = 8,
    seed: Annotated[int, typer.Option(help="Which functions (reproducible).")] = 0,
    max_tokens: Annotated[int, typer.Option(help="Tokens per candidate at most.")] = 64,
) -> None:
    """A scripted editor session against `compilot serve` on the embedded model."""
    from compilot.demo import run_demo

    asyncio.run(run_demo(size=size, seed=seed, max_tokens=max_tokens))


@app.command()
def stats(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What the event store holds."""
    from rich.table import Table

    from compilot.feedback.store import Store

    settings, _ = settings_mod.load()
    store = Store.in_dir(settings_mod.data_dir(settings))
    counts = store.counts()
    if as_json:
        print(json.dumps({"path": str(store.path), **counts}))
        return
    table = Table(title=f"compilot events ({store.path})")
    table.add_column("what")
    table.add_column("count", justify="right")
    for key, value in counts.items():
        table.add_row(key, str(value))
    Console().print(table)


@app.command()
def version() -> None:
    """Print the version."""
    print(__version__)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
