"""One Ray Tune trial: train one configuration, track it in MLflow, report to Tune.

Runs inside the trial's worker process.  The MLflow run id travels inside every
Tune checkpoint, so a retried trial resumes training from its last checkpoint and
re-attaches to the same nested run.  Each trial writes ``result.json`` (its row of
the results table) in its own folder before its final report, so the export reads
what trials wrote instead of querying MLflow.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune

from study.space import strip_variant_prefix
from study.spec import StudySpec
from study.tracking import SPILL_FILE, StudyRun, TrialTracker, find_trial_run
from trainers.checkpoint import load_checkpoint, save_checkpoint
from trainers.config import TrainConfig
from trainers.train import TrainingDiverged, TrainResult, train

RESULT_FILE = "result.json"
HISTORY_FILE = "history.jsonl"
STATE_FILE = "state.pt"
TRIAL_META_FILE = "trial.json"
#: The trial's config as the searcher suggested it, written before training starts:
#: ``vae-study resume`` re-runs an interrupted trial from it.
TRIAL_CONFIG_FILE = "trial_config.json"
#: The trial's own copy of its latest checkpoint (Tune keeps one per experiment).
CHECKPOINT_DIR = "checkpoint"
#: Keys of a trial's config that are bookkeeping, not hyperparameters.
RESUME_KEY, OPTUNA_KEY = "resume_trial_id", "optuna"
#: Key of a packed trial's config listing its members (study.packing).
PACK_KEY = "pack"


class TrialFailed(RuntimeError):
    """Raised so that Tune and Optuna record the trial as failed (not complete)."""


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a study shares (passed with ``tune.with_parameters``)."""

    spec: dict[str, Any]
    study_dir: str
    tracking: StudyRun

    @property
    def study_spec(self) -> StudySpec:
        return StudySpec.model_validate(self.spec)


def append_history(path: Path, step: int, terms: Mapping[str, float], split: str) -> None:
    """One JSON line per report: the trial's own record of its term histories."""
    with path.open("a") as out:
        out.write(json.dumps({"step": step, "split": split, "terms": dict(terms)}) + "\n")


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    os.replace(tmp, path)


class TrialReporter:
    """Bridges :func:`trainers.train.train` to MLflow and the trial's history file (every log)
    and to Tune (every checkpoint)."""

    def __init__(self, tracker: TrialTracker, trial_dir: Path) -> None:
        self.tracker = tracker
        self.trial_dir = trial_dir
        self.history_file = trial_dir / HISTORY_FILE
        self.last_terms: dict[str, float] = {}

    def on_terms(self, step: int, terms: Mapping[str, float]) -> None:
        self.last_terms = dict(terms)
        self.tracker.log_terms(step, terms)
        append_history(self.history_file, step, terms, "train")

    def on_checkpoint(self, step: int, state: dict[str, Any]) -> None:
        self.tracker.flush(step)
        # A scheduler may stop the trial at this report: let its metrics reach MLflow first.
        self.tracker.drain(timeout=10.0)
        staging = self.trial_dir / (CHECKPOINT_DIR + ".new")
        shutil.rmtree(staging, ignore_errors=True)  # left by a kill mid-write
        staging.mkdir()
        save_checkpoint(staging / STATE_FILE, state)
        write_json_atomic(staging / TRIAL_META_FILE, {"mlflow_run_id": self.tracker.run_id, "step": step})
        replace_dir(staging, self.trial_dir / CHECKPOINT_DIR)
        tune.report(
            {"step": step, "final": 0, **self.last_terms},
            checkpoint=tune.Checkpoint.from_directory(self.trial_dir / CHECKPOINT_DIR),
        )

    def on_end(self, result: TrainResult) -> None:
        pass


def replace_dir(source: Path, target: Path) -> None:
    """Put ``source`` at ``target`` so that a reader sees the old or the new folder, whole."""
    old = target.with_name(target.name + ".old")
    if target.exists():
        os.replace(target, old)
    os.replace(source, target)
    shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(trial_dir: Path, tune_checkpoint: tune.Checkpoint | None) -> tuple[dict, str] | None:
    """``(state, mlflow_run_id)`` of the newer of Tune's checkpoint and the trial's own copy."""
    found = []
    if tune_checkpoint is not None:
        with tune_checkpoint.as_directory() as folder:
            found.append(_read_checkpoint(Path(folder)))
    own = trial_dir / CHECKPOINT_DIR
    if not own.is_dir() and own.with_name(CHECKPOINT_DIR + ".old").is_dir():
        own = own.with_name(CHECKPOINT_DIR + ".old")  # killed between the two renames
    if (own / TRIAL_META_FILE).exists():
        found.append(_read_checkpoint(own))
    return max(found, key=lambda f: int(f[0]["step"])) if found else None


def _read_checkpoint(folder: Path) -> tuple[dict, str]:
    return load_checkpoint(folder / STATE_FILE), json.loads((folder / TRIAL_META_FILE).read_text())["mlflow_run_id"]


def run_trial(config: dict[str, Any], context: TrialContext) -> None:
    """The Tune function trainable."""
    spec = context.study_spec
    tune_context = tune.get_context()
    config = dict(config)
    # A trial resumed by `vae-study resume` keeps the folder (and MLflow run) it started with.
    resumed_id = config.pop(RESUME_KEY, None)
    trial_id = resumed_id or tune_context.get_trial_id()
    trial_name = tune_context.get_trial_name()
    if PACK_KEY in config:
        from study.pack_trial import run_pack  # it builds on this module

        run_pack(config, context, trial_id, trial_name)
        return
    trial_dir = Path(context.study_dir) / "trials" / trial_id
    trial_dir.mkdir(parents=True, exist_ok=True)
    result_file = trial_dir / RESULT_FILE
    if not (trial_dir / TRIAL_CONFIG_FILE).exists():
        write_json_atomic(trial_dir / TRIAL_CONFIG_FILE, {"trial_id": trial_id, "config": config})
    config.pop(OPTUNA_KEY, None)

    if result_file.exists():
        previous = json.loads(result_file.read_text())
        if previous.get("status") == "failed":
            # Divergence is deterministic: a retry would diverge again.
            raise TrialFailed(previous.get("failure_reason", "failed"))
        if previous.get("status") == "completed":
            # Finished before its driver learnt of it: report what it wrote, train nothing.
            tune.report({"step": previous["steps"], "final": 1, **previous["terms"], **previous["metrics"]})
            return

    train_config = suggested_train_config(spec, config)

    resume, run_id = None, None
    checkpoint = latest_checkpoint(trial_dir, tune.get_checkpoint())
    if checkpoint is not None:
        resume, run_id = checkpoint
    elif (trial_dir / TRIAL_META_FILE).exists():
        # Interrupted before its first checkpoint: train from zero, in the run it opened.
        run_id = json.loads((trial_dir / TRIAL_META_FILE).read_text())["mlflow_run_id"]
    elif resumed_id is not None:
        # Killed between opening its run and writing trial.json: find the run by its tag.
        run_id = find_trial_run(context.tracking, trial_id)

    tracker, row = open_trial_tracking(context, trial_id, trial_name, train_config, trial_dir, run_id)
    row["resumed_from_step"] = int(resume["step"]) if resume else 0
    try:
        reporter = TrialReporter(tracker, trial_dir)
        result = train(train_config, reporter, resume=resume, output_dir=trial_dir / "artifacts")
    except TrainingDiverged as error:
        record_diverged(tracker, row, error, result_file)
        raise TrialFailed(str(error)) from None
    except SystemExit:
        # Tune ends a trial a scheduler stopped with sys.exit(0) inside tune.report; the
        # driver's callback writes its result.json with the reason.
        tracker.set_tags({"status": "pruned"})
        tracker.close("KILLED")
        raise
    except BaseException as error:
        tracker.set_tags({"status": "error", "failure_reason": f"{type(error).__name__}: {error}"})
        tracker.close("FAILED")
        raise

    record_completed(tracker, row, result, trial_dir)
    final = {"step": result.steps, "final": 1, **result.terms, **result.metrics}
    missing = [o.name for o in spec.objectives if o.name not in final]
    if missing:
        raise TrialFailed(f"final result lacks objective(s) {', '.join(missing)}")
    tune.report(final)


def suggested_train_config(spec: StudySpec, config: Mapping[str, Any]) -> TrainConfig:
    """The training config of a suggestion: a grid ``point`` or an Optuna config (bookkeeping keys ignored)."""
    point = strip_variant_prefix(dict(config.get("point", config)))
    params = {k: v for k, v in point.items() if k not in ("seed", "variant", OPTUNA_KEY, RESUME_KEY)}
    return spec.train_config(params, int(point["seed"]), point["variant"])


def open_trial_tracking(
    context: TrialContext,
    trial_id: str,
    trial_name: str,
    train_config: TrainConfig,
    trial_dir: Path,
    run_id: str | None,
) -> tuple[TrialTracker, dict[str, Any]]:
    """Open (or re-attach to) the trial's nested MLflow run; return it and the start of its row."""
    spec = context.study_spec
    variant, seed = train_config.variant, train_config.seed
    tags = {
        "trial_id": trial_id,
        "variant": variant,
        "seed": seed,
        "status": "running",
        **{f"{name}.schedule": cfg["schedule"] for name, cfg in train_config.weights.items()},
    }
    tracker = TrialTracker(
        context.tracking,
        run_name=trial_name,
        tags=tags,
        params={
            "variant": variant,
            "seed": seed,
            **{f"options.{k}": v for k, v in train_config.variant_options.items()},
            **_flat_weights(train_config.weights),
        },
        run_id=run_id,
        flush_every=spec.tracking.flush_every,
        spill_file=trial_dir / SPILL_FILE,
        close_timeout=spec.tracking.close_timeout,
    )
    write_json_atomic(trial_dir / TRIAL_META_FILE, {"mlflow_run_id": tracker.run_id, "trial_name": trial_name})
    row: dict[str, Any] = {
        "trial_id": trial_id,
        "trial_name": trial_name,
        "variant": variant,
        "seed": seed,
        "params": _flat_weights(train_config.weights),
        "steps": train_config.steps,
        "mlflow_run_id": tracker.run_id,
        "mlflow_parent_run_id": context.tracking.parent_run_id,
        "started_at": time.time(),
    }
    return tracker, row


def record_diverged(tracker: TrialTracker, row: dict[str, Any], error: TrainingDiverged, result_file: Path) -> None:
    """Tag the run failed with the step and term, close it, and write the trial's ``result.json``."""
    reason = str(error)
    row.update(status="failed", failure_reason=reason, failed_step=error.step, failed_term=error.term)
    row["finished_at"] = time.time()
    tracker.set_tags({"status": "failed", "failure_reason": reason})
    row["undelivered_metrics"] = tracker.close("FAILED")
    write_json_atomic(result_file, row)


def record_completed(tracker: TrialTracker, row: dict[str, Any], result: TrainResult, trial_dir: Path) -> None:
    """Log the held-out terms and artifacts, close the run, and write the trial's ``result.json``."""
    # The held-out terms are the final point of each term's history.
    tracker.log_terms(result.steps, {**result.terms, **result.metrics})
    append_history(trial_dir / HISTORY_FILE, result.steps, {**result.terms, **result.metrics}, "heldout")
    tracker.log_artifacts(result.artifacts.values())
    row.update(
        status="completed",
        terms=result.terms,
        metrics=result.metrics,
        checkpoint=str(result.artifacts.get("checkpoint", "")),
        artifacts={k: str(v) for k, v in result.artifacts.items()},
        train_seconds=result.train_seconds,
        eval_seconds=result.eval_seconds,
        images_per_second=result.images_per_second,
        finished_at=time.time(),
    )
    tracker.set_tags({"status": "completed"})
    row["undelivered_metrics"] = tracker.close("FINISHED")
    write_json_atomic(trial_dir / RESULT_FILE, row)


def _flat_weights(weights: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    return {f"{name}.{param}": value for name, cfg in weights.items() for param, value in cfg.items()}
