"""One Ray Tune trial that trains a pack: K members at once (trainers.pack), each tracked as a trial.

Every member gets what an unpacked trial gets: its folder ``trials/<trial id>-m<k>``
with ``trial_config.json``, ``trial.json``, ``history.jsonl``, ``result.json`` and
artifacts, and its own nested MLflow run.  A member that diverges is recorded
failed (its step and term) while the pack goes on.  The pack's checkpoint (every
member) lives in ``packs/<trial id>/checkpoint``; a retried pack resumes all its
members from it, each into the MLflow run it opened.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ray import tune

from study.packing import PACKS_DIR, member_id
from study.tracking import TrialTracker
from study.trial import (
    CHECKPOINT_DIR,
    HISTORY_FILE,
    PACK_KEY,
    RESULT_FILE,
    STATE_FILE,
    TRIAL_CONFIG_FILE,
    TRIAL_META_FILE,
    TrialContext,
    append_history,
    latest_checkpoint,
    open_trial_tracking,
    record_completed,
    record_diverged,
    replace_dir,
    suggested_train_config,
    write_json_atomic,
)
from trainers.checkpoint import save_checkpoint
from trainers.config import TrainConfig
from trainers.pack import train_pack
from trainers.train import TrainingDiverged, TrainResult


class PackTrialReporter:
    """Bridges :func:`trainers.pack.train_pack` to each member's MLflow run and files, and to Tune."""

    def __init__(
        self,
        trackers: Sequence[TrialTracker | None],
        rows: Sequence[dict[str, Any]],
        member_dirs: Sequence[Path],
        pack_dir: Path,
    ) -> None:
        self.trackers, self.rows, self.member_dirs, self.pack_dir = trackers, rows, member_dirs, pack_dir
        self.alive = [not (d / RESULT_FILE).exists() for d in member_dirs]

    def on_terms(self, step: int, terms: Sequence[Mapping[str, float] | None]) -> None:
        for k, member_terms in enumerate(terms):
            if member_terms is not None and self.alive[k]:
                self.trackers[k].log_terms(step, member_terms)
                append_history(self.member_dirs[k] / HISTORY_FILE, step, member_terms, "train")

    def on_member_failed(self, member: int, error: TrainingDiverged) -> None:
        if self.alive[member]:
            self.alive[member] = False
            record_diverged(self.trackers[member], self.rows[member], error, self.member_dirs[member] / RESULT_FILE)

    def on_checkpoint(self, step: int, state: dict[str, Any]) -> None:
        for tracker in self._open():
            tracker.flush(step)
        staging = self.pack_dir / (CHECKPOINT_DIR + ".new")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        save_checkpoint(staging / STATE_FILE, state)
        write_json_atomic(staging / TRIAL_META_FILE, {"mlflow_run_id": "", "step": step})
        replace_dir(staging, self.pack_dir / CHECKPOINT_DIR)
        tune.report(
            {"step": step, "final": 0, "members_alive": sum(self.alive)},
            checkpoint=tune.Checkpoint.from_directory(self.pack_dir / CHECKPOINT_DIR),
        )

    def _open(self) -> list[TrialTracker]:
        return [t for t, alive in zip(self.trackers, self.alive, strict=True) if alive and t is not None]

    def on_member_end(self, member: int, result: TrainResult) -> None:
        if self.alive[member]:
            record_completed(self.trackers[member], self.rows[member], result, self.member_dirs[member])


def run_pack(config: dict[str, Any], context: TrialContext, trial_id: str, trial_name: str) -> None:
    """Train the members listed under ``config["pack"]`` (called by ``study.trial.run_trial``)."""
    spec = context.study_spec
    study_dir = Path(context.study_dir)
    pack_dir = study_dir / PACKS_DIR / trial_id
    pack_dir.mkdir(parents=True, exist_ok=True)
    members: list[dict[str, Any]] = config[PACK_KEY]
    ids = [member_id(trial_id, k) for k in range(len(members))]
    dirs = [study_dir / "trials" / i for i in ids]
    train_configs: list[TrainConfig] = []
    for member, folder, mid in zip(members, dirs, ids, strict=True):
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / TRIAL_CONFIG_FILE).exists():
            write_json_atomic(folder / TRIAL_CONFIG_FILE, {"trial_id": mid, "pack": trial_id, "config": member})
        train_configs.append(suggested_train_config(spec, member))

    records = [json.loads((d / RESULT_FILE).read_text()) if (d / RESULT_FILE).exists() else None for d in dirs]
    if all(r is not None for r in records):
        # Finished before its driver learnt of it: report, train nothing.
        tune.report({"step": spec.training.steps, "final": 1, **_counts(records)})
        return

    resume = None
    checkpoint = latest_checkpoint(pack_dir, tune.get_checkpoint())
    if checkpoint is not None:
        resume = checkpoint[0]
    trackers: list[TrialTracker | None] = []
    rows: list[dict[str, Any]] = []
    for k, (train_config, folder, mid) in enumerate(zip(train_configs, dirs, ids, strict=True)):
        if records[k] is not None:  # failed before this retry: its record stands
            trackers.append(None)
            rows.append(records[k])
            continue
        meta = folder / TRIAL_META_FILE
        run_id = json.loads(meta.read_text())["mlflow_run_id"] if meta.exists() else None
        tracker, row = open_trial_tracking(context, mid, f"{trial_name}-m{k}", train_config, folder, run_id)
        row.update(resumed_from_step=int(resume["step"]) if resume else 0, pack_id=trial_id, pack_size=len(members))
        trackers.append(tracker)
        rows.append(row)
    reporter = PackTrialReporter(trackers, rows, dirs, pack_dir)
    try:
        train_pack(train_configs, reporter, resume=resume, output_dirs=[d / "artifacts" for d in dirs])
    except BaseException as error:
        for tracker in reporter._open():
            tracker.set_tags({"status": "error", "failure_reason": f"{type(error).__name__}: {error}"})
            tracker.close("FAILED")
        raise
    records = [json.loads((d / RESULT_FILE).read_text()) for d in dirs]
    tune.report({"step": spec.training.steps, "final": 1, **_counts(records)})


def _counts(records: Sequence[dict[str, Any] | None]) -> dict[str, int]:
    statuses = [r.get("status") for r in records if r is not None]
    return {"members_completed": statuses.count("completed"), "members_failed": statuses.count("failed")}
