"""One Ray Tune trial: train a pack of members, track each in MLflow, report to Tune.

Runs inside the trial's worker process.  Every Ray trial trains a pack (a list of
one or more members, ``study.searchers``), and each member is a trial of the study
with its own folder, nested MLflow run and record.  The pack is trained by
:func:`trainers.members.train_members` (the plain loop for one member, the stacked
trainer for several) through one reporter, :class:`PackReporter`.

Restore policy: the pack's checkpoint lives in its run folder (``StudyFolder.run_dir``),
the only copy (Tune gets none); a retried or resumed pack continues from the newest
readable one that fits, each member in the MLflow run it opened (``trial.json``).
Members with a record (``result.json``) are not trained again.  When every member has
ended the checkpoints are removed: a finished trial keeps its final model
(``artifacts/model.pt``), once.

How a member ends: completed (record written after evaluation), failed (a term
became non-finite: record with the step and term; its pack mates go on), pruned (a
scheduler stopped the pack: its MLflow run ends KILLED here, the driver writes the
record with the reason) or error (the pack crashed: its run ends FAILED here, the
driver writes the record after the retries).
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune

from analysis.folder import CHECKPOINT_DIR, CHECKPOINT_META, CHECKPOINT_STATE
from study.folder import (
    StudyFolder,
    TrialFolder,
    TrialPlan,
    TrialRecord,
    TrialStatus,
    checkpoint_step,
    replace_dir,
    write_json_atomic,
)
from study.naming import trial_label
from study.searchers import MEMBERS, member_outcome, pack_plans
from study.spec import StudySpec
from study.tracking import StudyRun, TrialTracker, dotted, find_trial_run
from trainers.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from trainers.config import TrainConfig
from trainers.members import train_members
from trainers.reporting import TrainingDiverged, TrainResult

log = logging.getLogger(__name__)

#: Prefix of the held-out terms' MLflow keys (``heldout/recon``); training terms have none.
HELDOUT = "heldout"
#: Seconds a checkpoint waits for the pack's metrics to reach MLflow.
DRAIN_SECONDS = 10.0
#: Seconds between two looks for the study's stop request (``study.interrupt``).
STOP_POLL_SECONDS = 1.0
#: Artifacts kept only in the trial folder unless ``tracking.log_models``: the final model
#: and the UDR codes (read by export; the one copy on disk, named by the run's ``model`` tag).
FOLDER_ONLY_ARTIFACTS = ("checkpoint", "codes")


def learning_views(folder: TrialFolder, record: TrialRecord) -> tuple[list[Path], dict[str, float]]:
    """The ended trial's views for its MLflow run: its per-latent KL and MIG matrix as pictures
    in its ``artifacts/`` (:func:`analysis.learning.write_learning_pictures`; a few tenths of a
    second) and MIG per factor as metrics ``mig/<factor>`` (from its ``mig.npz``).  A view that
    cannot be made is logged and left out: it never fails the trial."""
    try:
        from analysis.learning import load_mig, write_learning_pictures  # matplotlib: once a trial ends

        pictures = write_learning_pictures(folder, record.trial_name or folder.trial_id)
        mig = load_mig(folder)
        names = [] if mig is None else zip(mig.factor_names, mig.per_factor, strict=True)
        per_factor = {f"mig/{name}": float(value) for name, value in names}
        return pictures, per_factor
    except Exception:  # a view, not the trial's result
        log.warning("trial %s: its per-latent KL and MIG views were not drawn", folder.trial_id, exc_info=True)
        return [], {}


class StudyStopping(Exception):
    """The study is being stopped (Ctrl+C): the pack checkpointed and returns without a record."""


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a study shares (passed with ``tune.with_parameters``)."""

    spec: dict[str, Any]
    study_dir: str
    tracking: StudyRun

    @property
    def study_spec(self) -> StudySpec:
        return StudySpec.model_validate(self.spec)


class PackReporter:
    """Bridges :func:`trainers.members.train_members` to each member's MLflow run and files, and to Tune."""

    def __init__(
        self,
        trackers: Sequence[TrialTracker | None],
        records: Sequence[TrialRecord],
        folders: Sequence[TrialFolder],
        run_dir: Path,
        objectives: Sequence[str],
        stop_file: Path | None = None,
        log_models: bool = False,
    ) -> None:
        self.trackers, self.records, self.folders, self.run_dir = trackers, records, folders, run_dir
        self.objectives = list(objectives)
        self.last_terms: dict[str, float] = {}
        self.stop_file, self.stopping, self._next_look = stop_file, False, 0.0
        self.log_models = log_models

    def open_trackers(self) -> list[TrialTracker]:
        return [t for t, r in zip(self.trackers, self.records, strict=True) if t is not None and not r.status.ended]

    def on_terms(self, step: int, terms: Sequence[Mapping[str, float] | None]) -> None:
        for k, member_terms in enumerate(terms):
            tracker = self.trackers[k]
            if member_terms is not None and tracker is not None and not self.records[k].status.ended:
                tracker.log_terms(step, member_terms)
                self.folders[k].append_history(step, member_terms, "train")
        if len(terms) == 1 and terms[0] is not None:
            self.last_terms = dict(terms[0])

    def on_member_failed(self, member: int, error: TrainingDiverged) -> None:
        record, tracker = self.records[member], self.trackers[member]
        if record.status.ended or tracker is None:
            return
        record.status = TrialStatus.FAILED
        record.failure_reason, record.failed_step, record.failed_term = str(error), error.step, error.term
        self._close(member, tracker, {"failure_reason": str(error)})

    def on_member_end(self, member: int, result: TrainResult) -> None:
        record, tracker = self.records[member], self.trackers[member]
        if record.status.ended or tracker is None:
            return
        values = {**result.terms, **result.metrics}
        # Held-out terms under their own keys: the training charts keep only training values.
        tracker.log_terms(result.steps, {**{f"{HELDOUT}/{k}": v for k, v in result.terms.items()}, **result.metrics})
        self.folders[member].append_history(result.steps, values, "heldout")
        folder = self.folders[member]
        browsed = [p for k, p in result.artifacts.items() if self.log_models or k not in FOLDER_ONLY_ARTIFACTS]
        pictures, per_factor = learning_views(folder, record)
        tracker.log_terms(result.steps, per_factor)
        tracker.log_artifacts([*browsed, *pictures])
        if "checkpoint" in result.artifacts:
            tracker.set_tags({"model": folder.study_path(result.artifacts["checkpoint"])})
        record.terms, record.metrics = result.terms, result.metrics
        record.artifacts = {k: folder.study_path(v) for k, v in result.artifacts.items()}
        record.train_seconds, record.eval_seconds = result.train_seconds, result.eval_seconds
        record.images_per_second = result.images_per_second
        missing = [name for name in self.objectives if name not in values]
        record.status = TrialStatus.ERROR if missing else TrialStatus.COMPLETED
        extra = {}
        if missing:
            record.failure_reason = f"final result lacks objective(s) {', '.join(missing)}"
            extra["failure_reason"] = record.failure_reason
        self._close(member, tracker, extra)

    def _close(self, member: int, tracker: TrialTracker, tags: Mapping[str, str]) -> None:
        record = self.records[member]
        tracker.set_tags({"status": str(record.status), **tags})
        record.finished_at = time.time()
        record.undelivered_metrics = tracker.close(record.status.mlflow_status)
        self.folders[member].write_record(record)

    def wants_checkpoint(self, step: int) -> bool:
        """Checkpoint now if the study is being stopped (its stop file, looked for once a second)."""
        if not self.stopping and self.stop_file is not None and time.monotonic() >= self._next_look:
            self._next_look = time.monotonic() + STOP_POLL_SECONDS
            self.stopping = self.stop_file.exists()
        return self.stopping

    def on_checkpoint(self, step: int, state: dict[str, Any]) -> None:
        # A scheduler may stop the pack at this report: let its metrics reach MLflow first
        # (at most DRAIN_SECONDS for the whole pack, so an absent server cannot stall it).
        deadline = time.monotonic() + DRAIN_SECONDS
        for tracker in self.open_trackers():
            tracker.flush(step)
            tracker.drain(timeout=max(0.0, deadline - time.monotonic()))
        save_pack_checkpoint(self.run_dir, step, state)
        if self.stopping:
            raise StudyStopping(f"checkpointed at step {step}")
        # Tune gets the step and terms, not a copy of the checkpoint: the pack's own is the one.
        tune.report({"step": step, "final": 0, **self.last_terms, **ended_members(self.records)})

    def suspend(self, reason: str) -> None:
        """End the open members' MLflow runs KILLED without a record: a resume continues them."""
        for tracker in self.open_trackers():
            tracker.set_tags({"status": "interrupted", "failure_reason": reason})
            tracker.close("KILLED")

    def abort(self, status: TrialStatus, reason: str) -> None:
        """End the open members' MLflow runs: the pack stopped (pruned) or crashed (error)."""
        for tracker in self.open_trackers():
            tracker.set_tags({"status": str(status), "failure_reason": reason})
            tracker.close(status.mlflow_status)


def save_pack_checkpoint(run_dir: Path, step: int, state: dict[str, Any]) -> None:
    """The pack's checkpoint in ``run_dir/checkpoint``, swapped in whole."""
    staging = run_dir / (CHECKPOINT_DIR + ".new")
    shutil.rmtree(staging, ignore_errors=True)  # left by a kill mid-write
    staging.mkdir(parents=True)
    save_checkpoint(staging / CHECKPOINT_STATE, state)
    write_json_atomic(staging / CHECKPOINT_META, {"step": step})
    replace_dir(staging, run_dir / CHECKPOINT_DIR)


def readable_checkpoints(run_dir: Path) -> list[dict[str, Any]]:
    """The pack's checkpoints that can be read, newest first (empty: start from zero): its own,
    and the previous one where a kill fell between the two renames of a swap."""
    candidates: list[tuple[int, dict[str, Any]]] = []
    for folder in (run_dir / CHECKPOINT_DIR, run_dir / (CHECKPOINT_DIR + ".old")):
        step = checkpoint_step(folder)
        if step is None:
            continue
        try:
            candidates.append((step, load_checkpoint(folder / CHECKPOINT_STATE)))
        except CheckpointError as error:  # a garbage file: fall back to the other copy, or to zero
            log.warning("ignoring unreadable checkpoint %s: %s", folder, error)
    return [state for _, state in sorted(candidates, key=lambda c: -c[0])]


def discard_checkpoints(run_dir: Path, pack_folder: bool) -> None:
    """Remove a pack's checkpoints once every member has ended (their final models are kept):
    the optimiser's state matters only while a trial may still resume."""
    for name in (CHECKPOINT_DIR, CHECKPOINT_DIR + ".old", CHECKPOINT_DIR + ".new"):
        shutil.rmtree(run_dir / name, ignore_errors=True)
    if pack_folder:
        with contextlib.suppress(OSError):
            run_dir.rmdir()


def run_trial(config: dict[str, Any], context: TrialContext) -> None:
    """The Tune function trainable: train the pack in ``config`` (see the module docstring)."""
    spec = context.study_spec
    folder = StudyFolder(context.study_dir)
    if folder.stop_file.exists():
        return  # started as the study was being stopped: the resume runs it
    plans = pack_plans(config, tune.get_context().get_trial_id())
    members = [folder.trial(plan.trial_id).create() for plan in plans]
    started_before = []
    for plan, member in zip(plans, members, strict=True):
        started_before.append(member.read_plan() is not None)
        if not started_before[-1]:
            member.write_plan(plan)
    ended = [member.read_record() for member in members]
    objectives = [o.name for o in spec.objectives]
    written = [record for record in ended if record is not None]
    if len(written) == len(members):
        # Finished before its driver learnt of it: report what the members wrote, train nothing.
        tune.report(final_report(spec, written))
        return

    train_configs = [spec.point_train_config(plan.point) for plan in plans]
    run_dir = folder.run_dir(plans[0].pack_id, plans[0].pack_size)
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoints = readable_checkpoints(run_dir)
    trackers: list[TrialTracker | None] = []
    records: list[TrialRecord] = []
    for k, (plan, member, train_config) in enumerate(zip(plans, members, train_configs, strict=True)):
        previous = ended[k]
        if previous is not None:  # ended before this retry: its record stands
            trackers.append(None)
            records.append(previous)
            continue
        run_id = member.mlflow_run_id()
        if run_id is None and started_before[k]:
            # Killed between opening its run and writing trial.json: find the run by its tag.
            run_id = find_trial_run(context.tracking, plan.trial_id)
        name = trial_label(plan.trial_id, train_config.variant, train_config.weights, train_config.seed)
        tracker, record = open_member_tracking(context, plan, name, train_config, member, run_id)
        trackers.append(tracker)
        records.append(record)
    reporter = PackReporter(trackers, records, members, run_dir, objectives, folder.stop_file, spec.tracking.log_models)
    try:
        train_from_checkpoints(train_configs, reporter, checkpoints, [m.artifacts for m in members])
    except StudyStopping as stop:
        reporter.suspend(f"study stopped; {stop}")
        return
    except SystemExit:
        # Tune ends a pack a scheduler stopped with sys.exit(0) inside tune.report; the
        # driver's callback writes the members' records with the reason.
        reporter.abort(TrialStatus.PRUNED, "stopped early")
        raise
    except BaseException as error:
        reporter.abort(TrialStatus.ERROR, f"{type(error).__name__}: {error}")
        raise
    discard_checkpoints(run_dir, pack_folder=len(plans) > 1)
    tune.report(final_report(spec, records))


def train_from_checkpoints(
    configs: Sequence[TrainConfig], reporter: PackReporter, checkpoints: list[dict[str, Any]], outputs: list[Path]
) -> None:
    """Train from the newest checkpoint that fits the pack, falling back to older ones, then to step 0.

    A checkpoint can be readable and still not fit (written by other code, or damaged in a
    way the file format does not catch); that costs steps, never the trial."""
    for state in [*checkpoints, None]:
        for record in reporter.records:
            if not record.status.ended:
                record.resumed_from_step = int(state["step"]) if state else 0
        try:
            train_members(configs, reporter, resume=state, output_dirs=outputs)
            return
        except CheckpointError as error:
            if state is None:
                raise
            fallback = "an older checkpoint" if state is not checkpoints[-1] else "step 0"
            log.warning("checkpoint of step %s does not fit (%s); starting from %s", state.get("step"), error, fallback)


def ended_members(records: Sequence[TrialRecord]) -> dict[str, Any]:
    """``{"members": {k: outcome}}`` for every member that has ended (read by ``study.searchers``)."""
    return {
        MEMBERS: {
            str(k): member_outcome(r.status, r.values if r.status == TrialStatus.COMPLETED else None)
            for k, r in enumerate(records)
            if r.status.ended
        }
    }


def final_report(spec: StudySpec, records: Sequence[TrialRecord]) -> dict[str, Any]:
    """The pack's last report: every member's outcome; a pack of one also reports its values at the top."""
    report: dict[str, Any] = {"step": spec.training.steps, "final": 1, **ended_members(records)}
    if len(records) == 1 and records[0].status == TrialStatus.COMPLETED:
        report.update(records[0].values)
    return report


def open_member_tracking(
    context: TrialContext,
    plan: TrialPlan,
    trial_name: str,
    train_config: TrainConfig,
    member: TrialFolder,
    run_id: str | None,
) -> tuple[TrialTracker, TrialRecord]:
    """Open (or re-attach to) a member's nested MLflow run; return it and the member's running record."""
    spec = context.study_spec
    params = flat_weights(train_config.weights)
    tracker = TrialTracker(
        context.tracking,
        run_name=trial_name,
        tags={
            "trial_id": plan.trial_id,
            "variant": train_config.variant,
            "seed": train_config.seed,
            "status": str(TrialStatus.RUNNING),
            **{f"{name}.schedule": cfg["schedule"] for name, cfg in train_config.weights.items()},
        },
        params=config_params(train_config),
        run_id=run_id,
        flush_every=spec.tracking.flush_every,
        spill_file=member.spill_file,
        close_timeout=spec.tracking.close_timeout,
    )
    member.write_mlflow_run_id(tracker.run_id, trial_name)
    record = TrialRecord(
        trial_id=plan.trial_id,
        status=TrialStatus.RUNNING,
        trial_name=trial_name,
        variant=train_config.variant,
        seed=train_config.seed,
        params=params,
        steps=train_config.steps,
        mlflow_run_id=tracker.run_id,
        mlflow_parent_run_id=context.tracking.parent_run_id,
        started_at=time.time(),
        pack_id=plan.pack_id,
        pack_size=plan.pack_size,
    )
    return tracker, record


def config_params(config: TrainConfig) -> dict[str, Any]:
    """Every resolved value of a trial's config as MLflow params: ``lr``, ``steps``,
    ``latent_dim``, ``architecture``, ``precision``, ... by field name, nested sections
    dotted (``eval.recon_points``, ``variant_options.groups``), and the weights as
    ``<weight>.<param>`` (:func:`flat_weights`, the parquet's column names)."""
    data = config.to_dict()
    return {**flat_weights(data.pop("weights")), **dotted(data)}


def flat_weights(weights: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``{"beta": {"schedule": "constant", "value": 4}}`` → ``{"beta.schedule": "constant", "beta.value": 4}``."""
    return {f"{name}.{param}": value for name, cfg in weights.items() for param, value in cfg.items()}
