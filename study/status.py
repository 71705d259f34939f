"""``vae-study status STUDY_DIR``: where a study stands, from what its trials wrote.

Completed, failed and crashed trials have a ``result.json``; a trial folder without
one is running (or was interrupted), and its progress is the last step in its
``history.jsonl``; trials the search has not started have no folder yet.  The ETA
assumes the mean duration of the completed trials and the spec's concurrency.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from study.folder import ENDED_STATUSES, StudyFolder, TrialStatus
from study.space import grid_points
from study.spec import stored_spec


@dataclass
class StudyStatus:
    total: int
    counts: dict[TrialStatus, int]
    running: dict[str, int]  # trial id -> last logged step
    steps: int
    best: dict[str, tuple[float, str]] = field(default_factory=dict)  # objective -> (value, trial id)
    eta_seconds: float | None = None

    @property
    def pending(self) -> int:
        return max(0, self.total - sum(self.counts.values()) - len(self.running))


def study_status(study_dir: Path) -> StudyStatus:
    folder = StudyFolder(study_dir)
    spec = stored_spec(folder.read_spec(), str(folder.spec_json))
    total = len(grid_points(spec)) if spec.search.mode == "grid" else spec.search.num_trials
    counts = dict.fromkeys(ENDED_STATUSES, 0)
    running: dict[str, int] = {}
    completed = []
    for trial in folder.trials():
        record = trial.read_record()
        if record is None:
            running[trial.trial_id] = trial.last_step()
            continue
        counts[record.status] += 1
        if record.status == TrialStatus.COMPLETED:
            completed.append(record)
    status = StudyStatus(total, counts, running, spec.training.steps)
    for objective in spec.objectives:
        values = [(r.values[objective.name], r.trial_id) for r in completed if objective.name in r.values]
        if values:
            pick = min if objective.mode == "min" else max
            status.best[objective.name] = pick(values, key=lambda item: item[0])
    durations = [
        r.finished_at - r.started_at for r in completed if r.started_at is not None and r.finished_at is not None
    ]
    if durations:
        mean = sum(durations) / len(durations)
        left = status.pending + sum(1 - step / spec.training.steps for step in running.values())
        status.eta_seconds = mean * left / max(1, spec.search.max_concurrent)
    return status


def format_status(study_dir: Path, status: StudyStatus, objectives: dict[str, str]) -> str:
    c = status.counts
    lines = [
        f"study {study_dir}",
        f"  trials    {status.total} planned: {c[TrialStatus.COMPLETED]} completed, {c[TrialStatus.FAILED]} failed, "
        f"{c[TrialStatus.ERROR]} crashed, {len(status.running)} running, {status.pending} pending"
        + (f", {c[TrialStatus.PRUNED]} stopped early" if c[TrialStatus.PRUNED] else ""),
    ]
    for trial_id, step in sorted(status.running.items()):
        lines.append(f"  running   {trial_id} at step {step} of {status.steps}")
    for name, (value, trial_id) in status.best.items():
        lines.append(f"  best      {name} = {value:.6g} ({objectives.get(name, '?')}imised) in trial {trial_id}")
    if status.eta_seconds is not None and (status.pending or status.running):
        finish = time.strftime("%H:%M", time.localtime(time.time() + status.eta_seconds))
        lines.append(f"  eta       {status.eta_seconds / 60:.1f} min (about {finish})")
    return "\n".join(lines)
