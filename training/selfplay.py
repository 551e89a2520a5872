"""On-policy data without an editor: the serving model completes function bodies of a corpus,
the real checker labels the candidates, and the reference body plays the user's fix.

What lands in the store is what an editor session would leave there (the server's window,
ranking and records; the monitor's compile-stage blame; survival of a kept completion; the
revision of a broken one), so the same dataset builders and rounds run on it. The benchmark,
the tests and headless experiments use it; the demo drives a real LSP session instead.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from compilot.feedback.checks import blame
from compilot.feedback.store import CandidateRecord, RequestRecord, Store
from compilot.server.completion import generate_ranked
from compilot.server.engine import Engine, Sampling
from compilot.server.languages import language_for
from compilot.server.prompt import window
from compilot.training.corpus import Task


@dataclass
class Collected:
    """What one collection recorded."""

    requests: int = 0
    candidates: int = 0
    compiled: int = 0
    failed: int = 0
    accepted_broken: int = 0
    """Accepted completions that broke the code; each gets the reference as its revision."""


def _uri(task: Task) -> str:
    # One "file" per task: the split by file hash then holds out tasks, not whole modules.
    return f"file://{task.path}/{task.name}.py"


def collect(store: Store, engine: Engine, tasks: Sequence[Task], *, adapter: str,
            sampling: Sampling, prefix_chars: int = 3000, suffix_chars: int = 1000,
            timeout: float = 10.0, progress: Callable[[], None] = lambda: None) -> Collected:
    """Complete every task with ``engine`` (serving ``adapter``) and record the outcome."""
    python = language_for("python")
    out = Collected()
    for task in tasks:
        document, offset = task.document, len(task.prefix)
        win = window(document, offset, prefix_chars=prefix_chars, suffix_chars=suffix_chars)
        started = time.perf_counter()
        ranked, _ = generate_ranked(engine, win.prefix, win.suffix, python, sampling,
                                    before=task.prefix, after=task.suffix)
        latency = (time.perf_counter() - started) * 1000
        request_id = uuid.uuid4().hex
        ids = [uuid.uuid4().hex for _ in ranked]
        line, character = task.cursor
        store.record_request(
            RequestRecord(id=request_id, uri=_uri(task), language="python", line=line,
                          character=character, prefix=win.prefix, suffix=win.suffix,
                          latency_ms=latency, model=engine.name, adapter=adapter,
                          source="model", created_at=time.time()),
            [CandidateRecord(id=cid, rank=i, text=r.text, raw=r.raw, logprob=r.logprob,
                             tokens=r.tokens, parsed=r.parsed, shown=r.shown)
             for i, (cid, r) in enumerate(zip(ids, ranked, strict=True))])
        out.requests += 1
        accepted = next((cid for cid, r in zip(ids, ranked, strict=True)
                         if r.shown and r.text.strip()), None)
        for cid, r in zip(ids, ranked, strict=True):
            if not r.text.strip():
                continue
            out.candidates += 1
            verdict = blame(document, task.prefix + r.text + task.suffix, "python",
                            timeout=timeout)
            res = verdict.result
            store.record_check(cid, stage=res.stage, trigger="accept", status=res.status,
                               tool=res.tool, introduced=verdict.introduced,
                               diagnostics=[{"line": d.line, "column": d.column,
                                             "message": d.message} for d in verdict.new],
                               duration_ms=res.duration_ms)
            broken = verdict.introduced
            out.failed += broken
            out.compiled += not broken and res.status not in ("timeout", "error")
            if cid == accepted:
                store.record_event(cid, "shown")
                store.record_event(cid, "accepted")
                if broken:
                    # The user repairs it: the reference body is the minimal correct revision.
                    out.accepted_broken += 1
                    store.record_revision(cid, broken=r.text, fixed=task.reference,
                                          status="ok")
                else:
                    store.record_survival(cid, at="30s", share=1.0, text=r.text)
            elif r.shown:
                store.record_event(cid, "shown")
                store.record_event(cid, "rejected")
        progress()
    return out
