"""``vae-study status STUDY_DIR``: where a study stands, from what its trials wrote.

Completed, failed and crashed trials have a ``result.json``; a trial folder without
one is running (or was interrupted), and its progress is the last step in its
``history.jsonl``; trials the search has not started have no folder yet.  The ETA
assumes the mean duration of the completed trials and the spec's concurrency.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from study.spec import SpecError, StudySpec

STATUSES = ("completed", "failed", "error", "pruned")


@dataclass
class StudyStatus:
    total: int
    counts: dict[str, int]
    running: dict[str, int]  # trial id -> last logged step
    steps: int
    best: dict[str, tuple[float, str]] = field(default_factory=dict)  # objective -> (value, trial id)
    eta_seconds: float | None = None

    @property
    def pending(self) -> int:
        return max(0, self.total - sum(self.counts.values()) - len(self.running))


def _last_step(history: Path) -> int:
    if not history.exists():
        return 0
    lines = [line for line in history.read_text().splitlines() if line.strip()]
    return json.loads(lines[-1])["step"] if lines else 0


def study_status(study_dir: Path) -> StudyStatus:
    spec_file = study_dir / "spec.json"
    if not spec_file.is_file():
        raise SpecError(f"{study_dir}: not a study folder (no spec.json inside)")
    spec = StudySpec.model_validate(json.loads(spec_file.read_text()))
    if spec.search.mode == "grid":
        from study.space import grid_points

        total = len(grid_points(spec))
    else:
        total = spec.search.num_trials
    counts = dict.fromkeys(STATUSES, 0)
    running: dict[str, int] = {}
    results: list[dict[str, Any]] = []
    for folder in sorted((study_dir / "trials").glob("*")) if (study_dir / "trials").is_dir() else []:
        result = folder / "result.json"
        if result.exists():
            record = json.loads(result.read_text())
            counts[record.get("status", "error")] = counts.get(record.get("status", "error"), 0) + 1
            results.append(record)
        else:
            running[folder.name] = _last_step(folder / "history.jsonl")
    status = StudyStatus(total, counts, running, spec.training.steps)
    completed = [r for r in results if r.get("status") == "completed"]
    for objective in spec.objectives:
        values = [
            (r.get("terms", {}).get(objective.name, r.get("metrics", {}).get(objective.name)), r["trial_id"])
            for r in completed
        ]
        values = [(v, t) for v, t in values if v is not None]
        if values:
            pick = min if objective.mode == "min" else max
            status.best[objective.name] = pick(values, key=lambda item: item[0])
    durations = [r["finished_at"] - r["started_at"] for r in completed if "started_at" in r and "finished_at" in r]
    if durations:
        mean = sum(durations) / len(durations)
        left = status.pending + sum(1 - step / spec.training.steps for step in running.values())
        status.eta_seconds = mean * left / max(1, spec.search.max_concurrent)
    return status


def format_status(study_dir: Path, status: StudyStatus, objectives: dict[str, str]) -> str:
    c = status.counts
    lines = [
        f"study {study_dir}",
        f"  trials    {status.total} planned: {c['completed']} completed, {c['failed']} failed, "
        f"{c['error']} crashed, {len(status.running)} running, {status.pending} pending"
        + (f", {c['pruned']} stopped early" if c["pruned"] else ""),
    ]
    for trial_id, step in sorted(status.running.items()):
        lines.append(f"  running   {trial_id} at step {step} of {status.steps}")
    for name, (value, trial_id) in status.best.items():
        lines.append(f"  best      {name} = {value:.6g} ({objectives.get(name, '?')}imised) in trial {trial_id}")
    if status.eta_seconds is not None and (status.pending or status.running):
        finish = time.strftime("%H:%M", time.localtime(time.time() + status.eta_seconds))
        lines.append(f"  eta       {status.eta_seconds / 60:.1f} min (about {finish})")
    return "\n".join(lines)
