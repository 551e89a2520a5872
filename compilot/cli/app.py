"""The `compilot` command's application object and what its commands share: output, logging."""

from __future__ import annotations

import logging
import os
import sys
import warnings

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="compilot: local code completion that learns from the compiler.",
                  no_args_is_help=True, add_completion=False)
adapters_app = typer.Typer(help="Versioned LoRA adapters: list, promote, roll back.",
                           no_args_is_help=True)
app.add_typer(adapters_app, name="adapters")
err = Console(stderr=True)


def log_to_stderr(level: str) -> None:
    """Send log records at ``level`` and above to stderr."""
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def quiet_libraries() -> None:
    """Silence the libraries' own progress bars and deprecation chatter, which would bury ours."""
    import datasets
    import transformers

    os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF loader uses plain tqdm
    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="trl")


def fmt(value: float | None) -> str:
    """A figure with three decimals, "-" for none."""
    return "-" if value is None else f"{value:.3f}"


def share(part: int | None, whole: int | None) -> str:
    """``part / whole`` as a percentage, "-" when there is no whole."""
    return f"{(part or 0) / whole:.0%}" if whole else "-"


def figures_table(title: str, figures: dict[str, dict[str, object]]) -> Table:
    """A table of evaluation figures: one row per metric, one column per mode."""
    table = Table(title=title)
    table.add_column("metric")
    for mode in figures:
        table.add_column(mode, justify="right")
    metrics = list(dict.fromkeys(key for values in figures.values() for key in values))
    for metric in metrics:
        cells = [figures[mode].get(metric) for mode in figures]
        table.add_row(metric, *("-" if v is None else fmt(v) if isinstance(v, float)
                                else str(v) for v in cells))
    return table
