"""On-policy data without an editor: the serving model completes function bodies of a corpus,
the real checker labels the candidates, and the reference body plays the user's fix.

What lands in the store is what an editor session would leave there (the server's window,
ranking and records; the monitor's compile-stage blame; survival of a kept completion; the
revision of a broken one), so the same dataset builders and rounds run on it. The benchmark,
the tests and headless experiments use it; the demo drives a real LSP session instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from compilot.feedback.blame import blame
from compilot.feedback.diagnostics import CheckStatus
from compilot.feedback.records import EventKind, Request, Source, Trigger, identified
from compilot.feedback.store import Store
from compilot.languages import language_for
from compilot.server.completion import generate_ranked
from compilot.server.engine import Engine, Sampling
from compilot.server.prompt import window
from compilot.settings import Settings
from compilot.training.corpus import Hole


@dataclass
class Collected:
    """What one collection recorded."""

    requests: int = 0
    candidates: int = 0
    compiled: int = 0
    failed: int = 0
    accepted_broken: int = 0
    """Accepted completions that broke the code; each gets the reference as its revision."""


def _uri(task: Hole) -> str:
    # One "file" per task: the split by file hash then holds out tasks, not whole modules.
    return f"file://{task.path}/{task.name}.py"


def collect(store: Store, engine: Engine, tasks: Sequence[Hole], *, adapter: str,
            settings: Settings, sampling: Sampling | None = None,
            progress: Callable[[], None] = lambda: None) -> Collected:
    """Complete every task with ``engine`` (serving ``adapter``) and record the outcome, with
    the window, sampling and check limits of ``settings`` (``sampling`` overrides the
    latter)."""
    python = language_for("python")
    c = settings.completion
    sampling = sampling or Sampling.from_settings(c)
    out = Collected()
    for task in tasks:
        document, offset = task.document, len(task.prefix)
        win = window(document, offset, prefix_chars=c.prefix_chars, suffix_chars=c.suffix_chars)
        started = time.perf_counter()
        ranked, _ = generate_ranked(engine, win.prefix, win.suffix, python, sampling,
                                    before=task.prefix, after=task.suffix)
        offered = identified(ranked)
        line, character = task.cursor
        store.record_request(
            Request(uri=_uri(task), language=python.id, line=line, character=character,
                    prefix=win.prefix, suffix=win.suffix,
                    latency_ms=(time.perf_counter() - started) * 1000, model=engine.name,
                    adapter=adapter, source=Source.MODEL),
            offered)
        out.requests += 1
        accepted = next((r.id for r in offered if r.shown and r.text.strip()), None)
        for r in offered:
            if not r.text.strip():
                continue
            out.candidates += 1
            verdict = blame(document, task.prefix + r.text + task.suffix, python.id,
                            settings=settings.checks)
            store.record_check(r.id, verdict, Trigger.ACCEPT)
            broken = verdict.introduced
            out.failed += broken
            out.compiled += not broken and verdict.result.status.conclusive
            if r.id == accepted:
                store.record_event(r.id, EventKind.SHOWN)
                store.record_event(r.id, EventKind.ACCEPTED)
                if broken:
                    # The user repairs it: the reference body is the minimal correct revision.
                    out.accepted_broken += 1
                    store.record_revision(r.id, broken=r.text, fixed=task.reference,
                                          status=CheckStatus.OK)
                else:
                    store.record_survival(r.id, at="30s", share=1.0, text=r.text)
            elif r.shown:
                store.record_event(r.id, EventKind.SHOWN)
                store.record_event(r.id, EventKind.REJECTED)
        progress()
    return out
