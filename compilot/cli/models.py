"""`compilot models`: the embedded and the configured GGUF, and what each one is."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from compilot import settings as settings_mod
from compilot.cli.app import app, err
from compilot.models import (
    GGUFInfo,
    ModelNotFound,
    NotAGGUF,
    describe,
    embedded_model_path,
    resolve_model_path,
)
from compilot.training.gguf_adapter import ARCHITECTURES


@dataclass(frozen=True)
class Entry:
    """One model file compilot knows of: where it comes from, and what it is or why not."""

    role: str
    """"embedded" or "configured" (``model.path``)."""
    serving: bool
    """Whether the server runs it (the configured one when set, else the embedded one)."""
    path: Path | None
    info: GGUFInfo | None = None
    error: str | None = None


def trainable(architecture: str) -> tuple[bool, str]:
    """Whether compilot can train adapters for ``architecture``, and why not."""
    if architecture in ARCHITECTURES:
        return True, "yes"
    return False, (f"no: architecture {architecture!r} is not supported for adapters "
                   f"(supported: {', '.join(ARCHITECTURES)})")


def entries(configured: str | None) -> list[Entry]:
    """The embedded model, and the configured one when ``model.path`` is set, each described
    (a file that cannot be read gets its error instead)."""
    sources: list[tuple[str, bool, Callable[[], Path]]] = [
        ("embedded", not configured, embedded_model_path)]
    if configured:
        sources.append(("configured", True, lambda: resolve_model_path(configured)))
    found: list[Entry] = []
    for role, serving, locate in sources:
        try:
            path = locate()
        except ModelNotFound as exc:
            found.append(Entry(role, serving, None, error=str(exc)))
            continue
        seen = [i for i, e in enumerate(found) if e.path and e.path.resolve() == path.resolve()]
        if seen:  # model.path names the embedded file itself
            found[seen[0]] = replace(found[seen[0]], serving=True)
            continue
        try:
            found.append(Entry(role, serving, path, info=describe(path)))
        except NotAGGUF as exc:
            found.append(Entry(role, serving, path, error=str(exc)))
    return found


def _millions(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def as_dict(entry: Entry) -> dict[str, Any]:
    """One entry as `compilot models --json` prints it."""
    out: dict[str, Any] = {"role": entry.role, "serving": entry.serving,
                           "path": None if entry.path is None else str(entry.path),
                           "error": entry.error}
    if entry.info is not None:
        i = entry.info
        can, why = trainable(i.architecture)
        out.update(size_bytes=i.size_bytes, architecture=i.architecture, name=i.name,
                   parameters=i.parameters, quantization=i.quantization,
                   context_length=i.context_length, fim=i.fim is not None, fim_tokens=i.fim,
                   repo_tokens=i.repo_tokens, chat_template=i.chat_template, trainable=can,
                   trainable_reason=None if can else why)
    return out


def _column(entry: Entry) -> dict[str, str]:
    """The table cells of one entry, markup escaped (token texts hold brackets)."""
    assert entry.info is not None
    i = entry.info
    return {k: escape(str(v)) for k, v in {
        "file": i.path.name,
        "size": f"{i.size_bytes / 2**20:.1f} MiB",
        "architecture": i.architecture,
        "parameters": _millions(i.parameters),
        "quantization": i.quantization,
        "context length": i.context_length or "-",
        "FIM": f"yes: {' '.join(i.fim.values())}" if i.fim else "no (prefix-only completions)",
        "repository tokens": " ".join(i.repo_tokens.values()) or "-",
        "chat template": "yes" if i.chat_template else "no",
        "trainable": trainable(i.architecture)[1],
    }.items()}


def _table(described: list[Entry]) -> Table:
    """One row per fact, one column per model."""
    table = Table(title="models")
    table.add_column("")
    columns = [_column(e) for e in described]
    for e in described:
        table.add_column(f"{e.role}{' (serving)' if e.serving else ''}", overflow="fold")
    for fact in columns[0]:
        table.add_row(fact, *(str(c[fact]) for c in columns))
    return table


@app.command()
def models(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
) -> None:
    """The embedded model and the configured one (model.path): architecture, parameters,
    quantization, context, FIM tokens, chat template, size, and whether adapters can be
    trained for it. Exit 1 if one of them cannot be read."""
    settings, _ = settings_mod.load()
    found = entries(settings.model.path)
    if as_json:
        print(json.dumps([as_dict(e) for e in found], indent=2))
    else:
        described = [e for e in found if e.info is not None]
        if described:
            Console().print(_table(described))
        for e in found:
            if e.error is not None:
                err.print(f"[red]✗ {e.role}:[/] {escape(e.error)}", soft_wrap=True)
    if any(e.error is not None for e in found):
        raise typer.Exit(1)
