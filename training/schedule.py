"""When rounds run: the background trainer (`compilot trainer`), its window and its lock.

A round starts when the local clock is inside the nightly window and no round has started in
this night's window yet, or, outside it, once ``min_new_events`` new labelled candidates have
arrived since the last round. Each round runs as a child process (`compilot train`) at low CPU
priority: a crash or a leak in training never takes the trainer down, and its memory is
returned when the round ends. ``trainer.lock`` keeps one background trainer per data dir; the
round takes ``round.lock`` itself (``compilot.round_lock``). The kernel drops both locks when
their holder dies, so a killed trainer never blocks the next.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as dtime
from pathlib import Path

from compilot.paths import DataDir
from compilot.round_lock import locked, round_command
from compilot.settings import TrainerSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TimeWindow:
    """A daily local-time window; ``end`` before ``start`` wraps past midnight."""

    start: dtime
    end: dtime

    @classmethod
    def parse(cls, text: str) -> TimeWindow | None:
        """"02:00-06:00" → TimeWindow; "" → None (no window). ValueError names the setting."""
        if not text.strip():
            return None
        try:
            a, b = (datetime.strptime(part.strip(), "%H:%M").time() for part in text.split("-"))
        except ValueError as exc:
            raise ValueError(f"trainer.window must look like 02:00-06:00, not {text!r}") from exc
        return cls(a, b)

    def opened(self, now: datetime) -> datetime | None:
        """When the window containing ``now`` opened; None when ``now`` is outside it."""
        today = now.replace(hour=self.start.hour, minute=self.start.minute, second=0,
                            microsecond=0)
        opened = today if now >= today else today - timedelta(days=1)
        length = (datetime.combine(now.date(), self.end)
                  - datetime.combine(now.date(), self.start)) % timedelta(days=1)
        return opened if now < opened + length else None


def due(now: datetime, last_round: float | None, new_events: int,
        settings: TrainerSettings) -> str | None:
    """Why a round should start now, or None."""
    window = TimeWindow.parse(settings.window)
    opened = window.opened(now) if window else None
    if opened is not None and (last_round is None or last_round < opened.timestamp()):
        return f"the nightly window {settings.window} is open"
    if settings.min_new_events > 0 and new_events >= settings.min_new_events:
        return f"{new_events} new labelled completions (>= {settings.min_new_events})"
    return None


def read_state(data: DataDir) -> dict[str, object]:
    """The trainer's state file (empty when there is none or it is unreadable)."""
    try:
        state = json.loads(data.trainer_state.read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def write_state(data: DataDir, state: dict[str, object]) -> None:
    """Replace the trainer's state file."""
    path = data.trainer_state
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, indent=2), encoding="utf-8")
    os.replace(tmp, path)


def file_logging(data: DataDir) -> Path:
    """Send this process's logs to ``trainer.log`` in the data dir (rotated at 5 MB)."""
    path = data.trainer_log
    os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600))  # owner-only
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=5 << 20, backupCount=3)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    return path


def run_trainer(data: DataDir, settings: TrainerSettings, *, once: bool = False,
                stop: threading.Event | None = None) -> int:
    """The background loop; returns the number of rounds started. ``once``: stop after the
    first round (or at once when none is due)."""
    from compilot.feedback.store import Store

    stop = stop or threading.Event()
    TimeWindow.parse(settings.window)  # a bad window fails now, not at 2 am
    with locked(data.trainer_lock, "background trainer"):
        if settings.nice:
            os.nice(settings.nice)
        log.info("trainer started (pid %d, window %r, every %d new labelled completions)",
                 os.getpid(), settings.window, settings.min_new_events)
        store = Store.in_dir(data)
        rounds = 0
        while not stop.is_set():
            state = read_state(data)
            last = state.get("last_round")
            last_round = float(last) if isinstance(last, int | float) else None
            new = store.labelled_since(last_round or 0.0)
            reason = due(datetime.now(), last_round, new, settings)
            if reason:
                log.info("starting a round: %s", reason)
                write_state(data, {**state, "last_round": time.time(), "reason": reason})
                done = subprocess.run(round_command(), stdin=subprocess.DEVNULL,
                                      capture_output=True, text=True, errors="replace",
                                      check=False)
                rounds += 1
                for line in (done.stdout + done.stderr).strip().splitlines()[-40:]:
                    log.info("round: %s", line)
                outcome = "ok" if done.returncode == 0 else f"exit {done.returncode}"
                log.log(logging.INFO if done.returncode == 0 else logging.ERROR,
                        "round finished: %s", outcome)
                write_state(data, {**read_state(data), "last_outcome": outcome,
                                   "finished": time.time()})
                if once:
                    break
            elif once:
                log.info("no round due (%d new labelled completions)", new)
                break
            stop.wait(settings.poll_s)
        store.close()
        return rounds
