"""The study's run log: one line per trial event, a running header, nothing of Ray's.

What a researcher watching a long study reads (stdout, and ``run.log`` in the study
folder)::

    06:12:03 started  t0004-beta_vae-beta=2.31-s1
    06:12:33 [3/8 done, 2 running, 0 failed] front 2 · ETA 1m40s · t0004 step 400/1200, t0005 step 380/1200
    06:13:10 finished t0004-beta_vae-beta=2.31-s1 in 1m07s: recon 91.2, mig 0.214
    06:13:10 failed   t0006-beta_vae-beta=linear(0..8)-s0: kl became nan at step 212

Lines are at most :data:`MAX_LINE` characters.  The header is printed after every
trial that ends and, while trials train, at most every ``every`` seconds with their
steps (read from their histories, as ``vae-study status`` does).  The ETA is the
study's own pace so far: the trials' work done in this run (ended trials, plus the
fraction of its steps each running trial has trained, when the header shows them) per
second, against the work left.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from ray import tune

from study.folder import StudyFolder, TrialPlan, TrialRecord, TrialStatus
from study.naming import trial_label
from study.searchers import MEMBERS, pack_plans
from study.spec import StudySpec

#: The longest line the run log prints.
MAX_LINE = 160

_VERBS = {
    TrialStatus.COMPLETED: "finished",
    TrialStatus.FAILED: "failed",
    TrialStatus.PRUNED: "pruned",
    TrialStatus.ERROR: "crashed",
}


#: The header :meth:`RunLog.header` writes (read back by ``study.jobs`` from a job's log).
HEADER = re.compile(r"\[(\d+)/(\d+) done, (\d+) running, (\d+) failed\]")


def last_progress(log: str) -> tuple[int, int] | None:
    """Trials ended and in all, from the last header in a run log's text (None: no header yet)."""
    headers = HEADER.findall(log)
    return (int(headers[-1][0]), int(headers[-1][1])) if headers else None


def clip(line: str, width: int = MAX_LINE) -> str:
    """``line`` cut to ``width`` characters, marked with ``…`` where cut."""
    return line if len(line) <= width else line[: width - 1] + "…"


def duration(seconds: float) -> str:
    """``75`` → ``1m15s``; ``4000`` → ``1h06m``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Front:
    """The non-dominated objective vectors seen so far, kept incrementally (O(front) per point)."""

    def __init__(self, modes: Sequence[str]) -> None:
        self.signs = [1.0 if mode == "min" else -1.0 for mode in modes]
        self.points: list[tuple[float, ...]] = []

    def add(self, values: Sequence[float]) -> None:
        cost = tuple(s * float(v) for s, v in zip(self.signs, values, strict=True))
        if any(v != v for v in cost):
            return

        def dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
            return all(x <= y for x, y in zip(a, b, strict=True)) and a != b

        if any(dominates(p, cost) or p == cost for p in self.points):
            return
        self.points = [p for p in self.points if not dominates(cost, p)] + [cost]

    def __len__(self) -> int:
        return len(self.points)


class RunLog(tune.Callback):
    """Prints the run log (see the module docstring) from Tune's trial events.

    ``total``: the study's trials; ``ended``: the records of those that had ended
    before this run (a resume).  ``quiet`` prints only failures."""

    def __init__(
        self,
        folder: StudyFolder,
        spec: StudySpec,
        total: int,
        ended: Sequence[TrialRecord] = (),
        every: float = 30.0,
        quiet: bool = False,
        out: TextIO | None = None,
    ) -> None:
        self.folder, self.spec, self.total, self.every, self.quiet = folder, spec, total, every, quiet
        self.out = out
        self.objectives = [(o.name, o.mode) for o in spec.objectives]
        self.front = Front([mode for _, mode in self.objectives])
        self.counts = dict.fromkeys(_VERBS, 0)
        self.counted: set[str] = set()
        #: Members whose end was told while their pack trained on (Pareto stopping's cut members).
        self.told_early: set[str] = set()
        for record in ended:
            self.count(record)
        self.ended_before = sum(self.counts.values())
        self.running: dict[str, list[TrialPlan]] = {}  # Ray trial id -> its members
        self.labels: dict[str, str] = {}
        self.started_at = time.monotonic()
        self._next_progress = self.started_at + every

    # -- output -------------------------------------------------------------------------
    def emit(self, text: str, always: bool = False) -> None:
        if self.quiet and not always:
            return
        line = clip(f"{time.strftime('%H:%M:%S')} {text}")
        print(line, file=self.out or sys.stdout, flush=True)
        try:
            with self.folder.run_log.open("a") as log:
                log.write(line + "\n")
        except OSError:
            pass  # the log on stdout stands; a full disk is reported by what writes results

    def header(self, steps: dict[str, int] | None = None) -> str:
        """The counts line, its ETA from the running trials' ``steps`` (read when not given)."""
        steps = self.running_steps() if steps is None else steps
        # A member told early is counted among the ended already.
        progress = sum(min(step / self.spec.training.steps, 1.0) for trial_id, step in steps.items()
                       if trial_id not in self.told_early)  # fmt: skip
        done = sum(self.counts.values())
        failed = self.counts[TrialStatus.FAILED] + self.counts[TrialStatus.ERROR]
        running = sum(p.trial_id not in self.told_early for members in self.running.values() for p in members)
        text = f"[{done}/{self.total} done, {running} running, {failed} failed]"
        if len(self.objectives) > 1:
            text += f" front {len(self.front)}"
        eta = self.eta(done, progress)
        if eta is not None:
            text += f" · ETA {duration(eta)}"
        return text

    def eta(self, done: int, progress: float = 0.0) -> float | None:
        """Seconds left: time so far per trial of work done, times the work left.  Without the
        running trials' ``progress`` the ETA would grow between two ends, since the time
        spent on them would count but not their work."""
        worked = done - self.ended_before + progress
        left = self.total - done - progress
        if worked <= 0 or left <= 0:
            return None
        return (time.monotonic() - self.started_at) / worked * left

    def label(self, plan: TrialPlan) -> str:
        if plan.trial_id not in self.labels:
            config = self.spec.point_train_config(plan.point)
            self.labels[plan.trial_id] = trial_label(plan.trial_id, config.variant, config.weights, config.seed)
        return self.labels[plan.trial_id]

    def count(self, record: TrialRecord) -> bool:
        """Count an ended trial once (False: counted already, e.g. a pack mate that ended before a resume)."""
        if record.trial_id in self.counted:
            return False
        self.counted.add(record.trial_id)
        self.counts[record.status] = self.counts.get(record.status, 0) + 1
        values = record.values
        if record.status == TrialStatus.COMPLETED and all(name in values for name, _ in self.objectives):
            self.front.add([values[name] for name, _ in self.objectives])
        return True

    def outcome(self, plan: TrialPlan) -> str | None:
        """The line of a member that ended (None: it has no record, i.e. it was stopped by Ctrl+C;
        empty: it had ended before this run)."""
        record = self.folder.trial(plan.trial_id).read_record()
        if record is None:
            return None
        if not self.count(record):
            return ""
        verb = f"{_VERBS.get(record.status, str(record.status)):<8} {self.label(plan)}"
        if record.status != TrialStatus.COMPLETED:
            return f"{verb}: {record.failure_reason or 'no reason recorded'}"
        values = record.values
        took = ""
        if record.started_at is not None and record.finished_at is not None:
            took = f" in {duration(record.finished_at - record.started_at)}"
        shown = ", ".join(f"{name} {values[name]:.4g}" for name, _ in self.objectives if name in values)
        return f"{verb}{took}: {shown}"

    # -- Tune's events ------------------------------------------------------------------
    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        plans = pack_plans(trial.config, trial.trial_id)
        self.running[trial.trial_id] = plans
        if len(plans) == 1:
            self.emit(f"started  {self.label(plans[0])}")
        else:
            members = " ".join(plan.trial_id for plan in plans)
            self.emit(f"started  pack {plans[0].pack_id} of {len(plans)} ({plans[0].point['variant']}): {members}")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        error = trial.get_error()
        reason = str(error).strip().splitlines()[-1] if error else "the trial's process died"
        name = " ".join(plan.trial_id for plan in self.running.get(trial.trial_id, []))
        self.emit(f"retrying {name or trial.trial_id} from its last checkpoint: {reason}", always=True)

    def _ended(self, trial: Any) -> None:
        plans = self.running.pop(trial.trial_id, None) or pack_plans(trial.config, trial.trial_id)
        ended = False
        for plan in plans:
            line = self.outcome(plan)
            if line is None:
                self.emit(f"stopped  {self.label(plan)} (resumable)")
                continue
            if not line:
                ended = ended or plan.trial_id in self.told_early
                continue
            ended = True
            self.emit(line, always=not line.startswith(_VERBS[TrialStatus.COMPLETED]))
        if ended:
            self.emit(self.header())

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        """A member of a pack stopped at a rung (Pareto stopping) is told at once; the pack trains on."""
        plans = self.running.get(trial.trial_id, [])
        # The pack's last report is told with its end (on_trial_complete).  Tune hands callbacks the
        # report as the pack made it (``members``) or flattened (``members/0/...``).
        if len(plans) < 2 or result.get("final"):
            return
        if not any(key == MEMBERS or key.startswith(MEMBERS + "/") for key in result):
            return
        told = False
        for plan in plans:
            line = self.outcome(plan)
            if line:
                self.told_early.add(plan.trial_id)
                self.emit(line, always=not line.startswith(_VERBS[TrialStatus.COMPLETED]))
                told = True
        if told:
            self.emit(self.header())

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended(trial)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.monotonic()
        if now < self._next_progress or not self.running:
            return
        self._next_progress = now + self.every
        steps = self.running_steps()
        text = ", ".join(f"{trial_id} step {step}/{self.spec.training.steps}" for trial_id, step in steps.items())
        self.emit(f"{self.header(steps)} · {text}")

    def running_steps(self) -> dict[str, int]:
        """The last step of every running trial, from its history."""
        return {plan.trial_id: self.folder.trial(plan.trial_id).last_step() for plans in self.running.values()
                for plan in plans}  # fmt: skip
