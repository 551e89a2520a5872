"""`compilot serve`, `compilot demo` and `compilot version`."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Annotated

import typer

from compilot import __version__
from compilot.cli.app import app, log_to_stderr, quiet_libraries


@app.command()
def serve(
    tcp: Annotated[str | None, typer.Option(help="Listen on HOST:PORT instead of stdio.")] = None,
    log_level: Annotated[str, typer.Option(help="Log level (to stderr).")] = "warning",
) -> None:
    """Run the language server (stdio by default)."""
    log_to_stderr(log_level)
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
    rounds: Annotated[int, typer.Option(help="Training rounds after the first session.")] = 2,
    size: Annotated[str, typer.Option(help="tiny | small | default: tasks per round, "
                                           "held-out sizes and training budget.")
                    ] = "default",
    seed: Annotated[int, typer.Option(help="Which functions, and the training seed.")] = 0,
) -> None:
    """The whole loop on the embedded model, headless: editor sessions over LSP, compile
    checks, the user's fixes, training rounds, the gate, live swaps; a report at the end."""
    from compilot.demo import SIZES, run_demo

    if size not in SIZES:
        raise typer.BadParameter(f"--size must be one of {', '.join(SIZES)}, not {size!r}")
    if rounds < 1:
        raise typer.BadParameter("--rounds must be at least 1")
    log_to_stderr("warning")
    quiet_libraries()
    asyncio.run(run_demo(rounds=rounds, size=size, seed=seed))


@app.command()
def version() -> None:
    """Print the version."""
    print(__version__)
