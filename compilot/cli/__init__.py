"""The `compilot` command: thin commands over the server, the feedback store and the trainer.

Each command module registers its commands on ``app`` when imported: ``serve`` (the server and
the demo), ``bootstrap`` (data from the user's own repository), ``data`` (stats, checks,
exports), ``training`` (rounds, the trainer, adapters, evaluation), ``models`` (what the
embedded and the configured GGUF are), ``doctor`` (whether the set-up works).
"""

from __future__ import annotations

import os

from compilot.cli import bootstrap, data, doctor, models, serve, training
from compilot.cli.app import app, err
from compilot.feedback.store import StoreError

__all__ = ["app", "main"]
# imported for the commands they register
_COMMANDS = (bootstrap, data, doctor, models, serve, training)


def main() -> None:
    """Run the command line; a damaged event store is an error naming the file (exit 2).

    Everything compilot writes (the store, logs, adapters, reports, exports) holds the user's
    code: it is created owner-only (umask 077) whatever the shell's umask.
    """
    os.umask(0o077)
    try:
        app()
    except StoreError as exc:
        err.print(f"[red]compilot:[/] {exc}")
        raise SystemExit(2) from exc
