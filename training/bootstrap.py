"""`compilot bootstrap PATH`: training data from the user's own code, before any editing.

It walks a repository (``training.repository``: ignore rules, and binary, generated, vendored,
minified and huge files skipped and counted), cuts the function bodies of each source file
(``training.bodies``), hides each body and lets the serving model write it through the
server's own pipeline (window, prompt, cut, ranking: ``server.completion.generate_ranked``).
Every candidate is labelled by the real checks against the file without the body (syntax, then
the compiler; C and C++ with the project's include paths, ``repository.include_flags``), the
first one shown plays the accepted suggestion: where it breaks the file the real body is
recorded as the user's revision (SEED's fix of the model's own error), where it compiles its
survival is the share of it the real body keeps. So what lands in the store is what an editor
session would leave there, marked ``origin = bootstrap``, and the same datasets, rounds,
exports and ``compilot stats`` read it. The user's code is never run: a check only compiles.

A function is done once: (file content hash, function name) goes to the store's
``bootstrapped`` table after its records, so a second run (or one after Ctrl-C) goes on where
the first stopped and a changed file is done again.
"""

from __future__ import annotations

import hashlib
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from compilot.feedback.blame import blame
from compilot.feedback.compilers import available, check_compile
from compilot.feedback.diagnostics import CheckStatus, Stage
from compilot.feedback.records import EventKind, Origin, Request, Source, Trigger, identified
from compilot.feedback.store import Store
from compilot.feedback.tracker import survival
from compilot.languages import language_for
from compilot.server.completion import generate_ranked
from compilot.server.engine import Engine, Sampling
from compilot.server.prompt import window
from compilot.settings import CheckSettings, Settings
from compilot.training.bodies import LANGUAGES, bodies
from compilot.training.corpus import Hole
from compilot.training.repository import Skipped as SkippedFile
from compilot.training.repository import SourceFile, include_flags, walk

DOES_NOT_PARSE = "does_not_parse"
"""The skip reason of a source file that tree-sitter cannot parse."""
C_FAMILY = frozenset({"c", "cpp"})


@dataclass(frozen=True)
class Task:
    """One function of one file, its body hidden."""

    file: SourceFile
    hole: Hole

    @property
    def key(self) -> tuple[str, str]:
        """What the store remembers it by: the file's content hash and the function."""
        return self.file.sha256, self.hole.name


@dataclass
class Plan:
    """What a run would do: the tasks, and what it found and left out on the way."""

    tasks: list[Task] = field(default_factory=list)
    files: Counter[str] = field(default_factory=Counter)
    """Source files read, by language."""
    functions: int = 0
    """Function bodies found within the line bounds."""
    done_before: int = 0
    """Of those, done by an earlier run."""
    over_limit: int = 0
    """Of those, left for a later run by ``limit``."""
    skipped: Counter[str] = field(default_factory=Counter)
    """Files (and folders) left out, by reason."""


def _spread(task: Task) -> str:
    # An order by hash: a --limit takes functions from all over the repository, not the first
    # files in name order, and the same ones each time.
    return hashlib.sha256("\0".join(task.key).encode()).hexdigest()


def plan(root: Path, settings: Settings, *, languages: Collection[str] | None = None,
         limit: int | None = None, max_body_lines: int = 12, min_body_lines: int = 2,
         done: Collection[tuple[str, str]] = ()) -> Plan:
    """The functions of the repository at ``root`` to complete, at most ``limit``, leaving out
    those in ``done``; ``languages``: LSP ids (default: every language bodies are found in)."""
    wanted = LANGUAGES if languages is None else frozenset(languages)
    unknown = sorted(wanted - LANGUAGES)
    if unknown:
        raise ValueError(f"bootstrap cannot cut function bodies of {', '.join(unknown)}; "
                         f"languages: {', '.join(sorted(LANGUAGES))}")
    out = Plan()
    todo: list[Task] = []
    for item in walk(root, languages=wanted, ignore=settings.logging.ignore):
        if isinstance(item, SkippedFile):
            out.skipped[str(item.reason)] += 1
            continue
        holes = bodies(item.text, item.language, str(item.path), min_lines=min_body_lines,
                       max_lines=max_body_lines)
        if holes is None:
            out.skipped[DOES_NOT_PARSE] += 1
            continue
        out.files[item.language] += 1
        for hole in holes:
            out.functions += 1
            task = Task(item, hole)
            if task.key in done:
                out.done_before += 1
            else:
                todo.append(task)
    todo.sort(key=_spread)
    out.tasks = todo if limit is None else todo[:limit]
    out.over_limit = len(todo) - len(out.tasks)
    return out


@dataclass
class Tally:
    """What a run recorded."""

    tasks: int = 0
    candidates: int = 0
    """Non-empty candidates, each labelled."""
    compiled: int = 0
    """Candidates the compile check passed (unresolved names included)."""
    failed: int = 0
    """Candidates that brought in a syntax or type error."""
    revisions: int = 0
    """Candidates that broke the file: the real body recorded as the fix of each."""
    kept: int = 0
    """Accepted candidates that compile, with their survival in the real body recorded."""
    empty: int = 0
    """Tasks where the model offered nothing."""
    broken_files: int = 0
    """Files whose own code fails the compile check here (for C and C++: headers the include
    paths did not find, or flags the project needs): their labels say little."""
    seconds: float = 0.0

    def rate(self) -> float:
        """Tasks per minute."""
        return self.tasks / self.seconds * 60 if self.seconds else 0.0


@contextmanager
def interruptible() -> Iterator[Callable[[], bool]]:
    """``stop`` for ``Bootstrap.run`` that turns true at Ctrl-C, for the duration of the block.

    A flag, read between two functions: an exception raised by the handler could land in a
    ctypes callback of llama.cpp, which swallows it (the run went on, then exited 0). A second
    Ctrl-C raises KeyboardInterrupt at once."""
    interrupted = threading.Event()

    def on_interrupt(_signum: int, _frame: object) -> None:
        if interrupted.is_set():
            raise KeyboardInterrupt
        interrupted.set()

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        yield interrupted.is_set
    finally:
        signal.signal(signal.SIGINT, previous)


class Bootstrap:
    """Completes tasks with ``engine`` (serving ``adapter``) and records them in ``store``."""

    def __init__(self, store: Store, engine: Engine, *, adapter: str, settings: Settings,
                 root: Path, sampling: Sampling | None = None) -> None:
        self.store = store
        self.engine = engine
        self.adapter = adapter
        self.settings = settings
        self.root = root
        self.sampling = sampling or Sampling.from_settings(settings.completion)
        self.tally = Tally()
        self._files: dict[str, tuple[CheckSettings, CheckStatus]] = {}

    def run(self, tasks: list[Task], progress: Callable[[], None] = lambda: None, *,
            stop: Callable[[], bool] = lambda: False) -> Tally:
        """Every task in turn, until ``stop()`` says so between two tasks. A KeyboardInterrupt
        in a task leaves it undone (each record is one transaction, and a task is marked done
        only after its last), so a second run does it again."""
        started = time.perf_counter() - self.tally.seconds
        try:
            for task in tasks:
                if stop():
                    break
                self.complete(task)
                progress()
        finally:
            self.tally.seconds = time.perf_counter() - started
        return self.tally

    def _file(self, file: SourceFile) -> tuple[CheckSettings, CheckStatus]:
        """The check settings of a file (C and C++ with its include flags) and the compile
        status of the file as it is (every body in place), worked out once a file."""
        if file.sha256 not in self._files:
            checks = self.settings.checks
            if file.language in C_FAMILY:
                checks = replace(checks, c_flags=[*checks.c_flags,
                                                  *include_flags(self.root, file.path)])
            status = (check_compile(file.text, file.language, checks).status
                      if available(file.language) else CheckStatus.TOOLCHAIN_MISSING)
            self.tally.broken_files += status.failed
            self._files[file.sha256] = checks, status
        return self._files[file.sha256]

    def complete(self, task: Task) -> None:
        """One task: generate, record, label, play the accept, mark done."""
        hole, file = task.hole, task.file
        language = language_for(file.language)
        checks, status = self._file(file)
        c = self.settings.completion
        document = hole.prefix + hole.suffix  # the body hidden: what the model sees
        win = window(document, len(hole.prefix), prefix_chars=c.prefix_chars,
                     suffix_chars=c.suffix_chars)
        started = time.perf_counter()
        ranked, _ = generate_ranked(self.engine, win.prefix, win.suffix, language,
                                    self.sampling, before=hole.prefix, after=hole.suffix)
        offered = identified(ranked)
        line, character = hole.cursor
        request = Request(uri=file.path.as_uri(), language=language.id, line=line,
                          character=character, prefix=win.prefix, suffix=win.suffix,
                          latency_ms=(time.perf_counter() - started) * 1000,
                          model=self.engine.name, adapter=self.adapter, source=Source.MODEL,
                          origin=Origin.BOOTSTRAP)
        self.store.record_request(request, offered)
        accepted = next((r.id for r in offered if r.shown and r.text.strip()), None)
        self.tally.empty += accepted is None
        for r in offered:
            if r.shown:
                self.store.record_event(r.id, EventKind.SHOWN)
            if not r.text.strip():
                continue
            self.tally.candidates += 1
            trigger = Trigger.ACCEPT if r.id == accepted else Trigger.ANSWER
            broken = self._label(r.id, document, hole.prefix + r.text + hole.suffix,
                                 language.id, checks, trigger)
            if r.id == accepted:
                self.store.record_event(r.id, EventKind.ACCEPTED)
            if broken:
                # The fix of the model's error is the body the user wrote (for every candidate
                # that broke the file, accepted or not: the fix is known for each).
                self.tally.revisions += 1
                self.store.record_revision(r.id, broken=r.text, fixed=hole.reference,
                                           status=status, source="bootstrap")
            elif r.id == accepted:
                self.tally.kept += 1
                self.store.record_survival(r.id, at="bootstrap",
                                           share=survival(r.text, hole.reference),
                                           text=r.text)
        self.store.record_bootstrapped(*task.key, request.id)
        self.tally.tasks += 1

    def _label(self, candidate_id: str, before: str, after: str, language_id: str,
               checks: CheckSettings, trigger: Trigger) -> bool:
        """Both checks of one candidate, recorded; whether it brought in a failure."""
        syntax = blame(before, after, language_id, stage=Stage.SYNTAX, settings=checks)
        self.store.record_check(candidate_id, syntax, trigger)
        if syntax.introduced:
            self.tally.failed += 1
            return True
        if not available(language_id):
            return False
        compiled = blame(before, after, language_id, stage=Stage.COMPILE, settings=checks)
        self.store.record_check(candidate_id, compiled, trigger)
        self.tally.failed += compiled.introduced
        self.tally.compiled += (not compiled.introduced and compiled.result.status.conclusive)
        return compiled.introduced

