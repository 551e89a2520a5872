"""The `compilot` command: thin commands over the server, the feedback store and the trainer.

Each command module registers its commands on ``app`` when imported: ``serve`` (the server and
the demo), ``data`` (stats, checks, exports), ``training`` (rounds, the trainer, adapters,
evaluation).
"""

from __future__ import annotations

from compilot.cli import data, serve, training
from compilot.cli.app import app, err
from compilot.feedback.store import StoreError

__all__ = ["app", "main"]
_COMMANDS = (data, serve, training)  # imported for the commands they register


def main() -> None:
    """Run the command line; a damaged event store is an error naming the file (exit 2)."""
    try:
        app()
    except StoreError as exc:
        err.print(f"[red]compilot:[/] {exc}")
        raise SystemExit(2) from exc
