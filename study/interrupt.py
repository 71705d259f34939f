"""Stopping a study on Ctrl+C (SIGINT) or SIGTERM, so that it resumes where it stopped.

The first signal:

1. stops scheduling: the searcher suggests nothing more;
2. writes ``stop_requested`` in the study folder; every running trial sees it within
   a second (``study.trial.PackReporter.wants_checkpoint``), checkpoints at its next
   step and returns without a record (its MLflow runs end KILLED until a resume);
   a trial already evaluating finishes and keeps its record;
3. waits up to :data:`GRACE_SECONDS` for the running trials to end, then stops Tune
   (:meth:`StudyInterrupt.stop_all`, a Tune ``Stopper``).

The study's MLflow run then ends KILLED, the driver exits 130, and
``vae-study resume`` continues each interrupted trial from its checkpoint.  A second
signal stops at once (``KeyboardInterrupt``): trials lose the steps since their
last checkpoint, nothing that ended is lost.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from ray.tune import Callback
from ray.tune.stopper import Stopper

from study.folder import StudyFolder

#: Seconds the running trials have to checkpoint after the first Ctrl+C.
GRACE_SECONDS = 120.0
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSwitch(threading.Event):
    """A ``threading.Event`` that pickles (as a new event in the same state): Tune pickles its
    stopper and search algorithm with the experiment (``tuner.pkl``), and a plain Event does not."""

    def __init__(self, is_set: bool = False) -> None:
        super().__init__()
        if is_set:
            self.set()

    def __reduce__(self) -> tuple[type, tuple[bool]]:
        return (type(self), (self.is_set(),))


class StudyInterrupt(Stopper):
    """The study's stop switch (see the module docstring); a Tune ``Stopper``."""

    def __init__(self, folder: StudyFolder, grace_seconds: float = GRACE_SECONDS) -> None:
        self.folder, self.grace_seconds = folder, grace_seconds
        self.requested = StopSwitch()
        self.running: set[str] = set()
        self.deadline = float("inf")
        self.callback = _TrackRunning(self.running)

    def request(self, why: str = "interrupted") -> None:
        """Stop scheduling and ask the running trials to checkpoint and return."""
        if self.requested.is_set():
            return
        self.deadline = time.monotonic() + self.grace_seconds
        self.folder.stop_file.write_text(why + "\n")
        self.requested.set()
        print(
            f"\n{why}: no new trials; {len(self.running)} running trial(s) checkpoint and stop "
            f"(up to {self.grace_seconds:.0f} s). Press Ctrl+C again to stop at once.",
            file=sys.stderr,
            flush=True,
        )

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.requested.is_set():
            raise KeyboardInterrupt  # the second signal: stop at once
        self.request(f"{signal.Signals(signum).name} received")

    @contextlib.contextmanager
    def installed(self) -> Iterator[StudyInterrupt]:
        """Handle SIGINT and SIGTERM while the study runs (main thread only), then restore."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.signal(s, self._on_signal) for s in SIGNALS}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    # -- Tune's Stopper -------------------------------------------------------------------
    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.requested.is_set() and (not self.running or time.monotonic() > self.deadline)


class _TrackRunning(Callback):
    """Keeps the set of Tune trials that are running (the ones a stop waits for)."""

    def __init__(self, running: set[str]) -> None:
        self.running = running

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.add(trial.trial_id)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.discard(trial.trial_id)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.running.discard(trial.trial_id)
