"""When rounds run: the background trainer (`compilot trainer`) and the locks around a round.

A round starts when the local clock is inside the nightly window and no round has started in
this night's window yet, or, outside it, once ``min_new_events`` new labelled candidates have
arrived since the last round. Each round runs as a child process (`compilot train`) at low CPU
priority: a crash or a leak in training never takes the trainer down, and its memory is
returned when the round ends. Two locks: ``trainer.lock`` (one background trainer per data
dir) and ``round.lock`` (one round at a time, whoever started it). Both are ``flock`` locks:
the kernel drops them when their holder dies, so a killed trainer never blocks the next.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import logging.handlers
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as dtime
from pathlib import Path

from compilot.settings import SETTINGS_ENV, Settings, TrainerSettings, as_dict

log = logging.getLogger(__name__)

TRAINER_LOCK = "trainer.lock"
ROUND_LOCK = "round.lock"
LOG_FILE = "trainer.log"
STATE_FILE = "trainer-state.json"


class Busy(RuntimeError):
    """Another process holds the lock; the message names it."""


@contextlib.contextmanager
def locked(path: Path, what: str) -> Iterator[None]:
    """Hold the flock at ``path`` (non-blocking), or raise Busy naming the holder's pid."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise Busy(f"another {what} is running (pid {holder}; lock {path})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


@dataclass(frozen=True)
class Window:
    """A daily local-time window; ``end`` before ``start`` wraps past midnight."""

    start: dtime
    end: dtime

    @classmethod
    def parse(cls, text: str) -> Window | None:
        """"02:00-06:00" → Window; "" → None (no window). ValueError names the setting."""
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
    window = Window.parse(settings.window)
    opened = window.opened(now) if window else None
    if opened is not None and (last_round is None or last_round < opened.timestamp()):
        return f"the nightly window {settings.window} is open"
    if settings.min_new_events > 0 and new_events >= settings.min_new_events:
        return f"{new_events} new labelled completions (>= {settings.min_new_events})"
    return None


def read_state(root: Path) -> dict[str, object]:
    try:
        return json.loads((root / STATE_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}


def write_state(root: Path, state: dict[str, object]) -> None:
    tmp = root / f".{STATE_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(state, indent=2), encoding="utf-8")
    os.replace(tmp, root / STATE_FILE)


def file_logging(root: Path) -> Path:
    """Send this process's logs to ``trainer.log`` in the data dir (rotated at 5 MB)."""
    path = root / LOG_FILE
    handler = logging.handlers.RotatingFileHandler(path, maxBytes=5 << 20, backupCount=3)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    return path


def round_command() -> list[str]:
    """The child that runs one round (the same interpreter and package as the trainer)."""
    return [sys.executable, "-m", "compilot", "train", "--quiet"]


def round_running(root: Path) -> bool:
    """Whether some process holds the round lock now."""
    try:
        with locked(root / ROUND_LOCK, "training round"):
            return False
    except Busy:
        return True


def start_round(root: Path, settings: Settings) -> int:
    """Start one round in a detached child at the trainer's CPU priority, its output appended
    to the trainer's log; returns its pid. Raises Busy when a round is running already (the
    child takes the round lock itself, so a race between two starts still runs one round).

    The child gets ``settings`` through ``COMPILOT_SETTINGS`` (the editor's options included)
    and this data dir through ``COMPILOT_DATA_DIR``.
    """
    if round_running(root):
        raise Busy(f"a training round is running already (lock {root / ROUND_LOCK})")
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    env = {**os.environ, SETTINGS_ENV: json.dumps(as_dict(settings)),
           "COMPILOT_DATA_DIR": str(root)}
    nice = settings.trainer.nice
    with open(root / LOG_FILE, "ab") as out:
        out.write(f"{datetime.now():%Y-%m-%d %H:%M:%S} round started on request\n".encode())
        out.flush()
        child = subprocess.Popen(round_command(), stdin=subprocess.DEVNULL, stdout=out,
                                 stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                 preexec_fn=(lambda: os.nice(nice)) if nice else None)
    threading.Thread(target=child.wait, name="round-reaper", daemon=True).start()  # no zombie
    return child.pid


def run_trainer(root: Path, settings: TrainerSettings, *, once: bool = False,
                stop: threading.Event | None = None) -> int:
    """The background loop; returns the number of rounds started. ``once``: stop after the
    first round (or at once when none is due)."""
    from compilot.feedback.store import Store

    stop = stop or threading.Event()
    Window.parse(settings.window)  # a bad window fails now, not at 2 am
    with locked(root / TRAINER_LOCK, "background trainer"):
        if settings.nice:
            os.nice(settings.nice)
        log.info("trainer started (pid %d, window %r, every %d new labelled completions)",
                 os.getpid(), settings.window, settings.min_new_events)
        store = Store.in_dir(root)
        rounds = 0
        while not stop.is_set():
            state = read_state(root)
            last = state.get("last_round")
            last_round = float(last) if isinstance(last, int | float) else None
            new = store.labelled_since(last_round or 0.0)
            reason = due(datetime.now(), last_round, new, settings)
            if reason:
                log.info("starting a round: %s", reason)
                write_state(root, {**state, "last_round": time.time(), "reason": reason})
                done = subprocess.run(round_command(), stdin=subprocess.DEVNULL,
                                      capture_output=True, text=True, errors="replace",
                                      check=False)
                rounds += 1
                for line in (done.stdout + done.stderr).strip().splitlines()[-40:]:
                    log.info("round: %s", line)
                outcome = "ok" if done.returncode == 0 else f"exit {done.returncode}"
                log.log(logging.INFO if done.returncode == 0 else logging.ERROR,
                        "round finished: %s", outcome)
                write_state(root, {**read_state(root), "last_outcome": outcome,
                                   "finished": time.time()})
                if once:
                    break
            elif once:
                log.info("no round due (%d new labelled completions)", new)
                break
            stop.wait(settings.poll_s)
        store.close()
        return rounds
