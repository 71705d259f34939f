"""Running a study: Ray Tune over packs (``study.searchers``) + Optuna + MLflow, then export and plots.

Every Ray trial trains a pack of members (``study.trial``); the searcher asks a grid
or an Optuna study for the members and tells Optuna each member's outcome.
Multi-objective search lives only in Optuna under Tune's FIFO scheduling: Tune's
schedulers take one metric, and a trial they stopped early reaches Optuna as
PRUNED, never COMPLETE, so it cannot corrupt the front.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.fs
import ray
import yaml
from mlflow.tracking import MlflowClient
from ray import tune
from ray.tune.schedulers import ASHAScheduler, MedianStoppingRule
from ray.tune.search import ConcurrencyLimiter

from analysis.plots import plot_pareto
from analysis.report import write_report
from analysis.results import load_results
from study.export import export_results
from study.folder import StudyFolder, TrialRecord, TrialStatus, member_name, write_json_atomic
from study.searchers import GridSource, OptunaSource, PackSearcher, optuna_study, pack_plans
from study.space import grid_points, make_storage
from study.spec import SpecError, StudySpec
from study.tracking import (
    FAIL_FAST_HTTP_ENV,
    StudyRun,
    close_study_run,
    default_tracking_uri,
    log_params_and_tags,
    open_study_run,
)
from study.trial import TrialContext, flat_weights, run_trial

log = logging.getLogger(__name__)

#: Keeps glibc from handing activation memory back to the OS after every step
#: (1.4–2× CPU training speed measured on 2-core hosts); set before workers start.
WORKER_ENV = {
    "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296",
    **FAIL_FAST_HTTP_ENV,
}


class StudyDirError(SpecError):
    """The study folder cannot be used (e.g. it already holds a study)."""


class RecordUnended(tune.Callback):
    """Writes the record of every member of a pack that ended without writing one, so it is
    counted: members of a pack that crashed (``error``) and of one a scheduler stopped early
    (``pruned``, its MLflow run ended KILLED)."""

    def __init__(self, folder: StudyFolder, spec: StudySpec, tracking_uri: str) -> None:
        self.folder, self.spec, self.tracking_uri = folder, spec, tracking_uri

    def _record(self, trial: Any, status: TrialStatus, reason: str) -> None:
        for plan in pack_plans(trial.config, trial.trial_id):
            member = self.folder.trial(plan.trial_id).create()
            if member.result_file.exists():
                continue
            if not member.plan_file.exists():  # crashed before it wrote its plan: resume must see it taken
                member.write_plan(plan)
            record = TrialRecord(
                trial_id=plan.trial_id,
                status=status,
                trial_name=member_name(str(trial), plan.member, plan.pack_size),
                failure_reason=reason,
                variant=plan.point["variant"],
                seed=plan.point["seed"],
                params=flat_weights(self.spec.point_train_config(plan.point).weights),
                steps=self.spec.training.steps,
                mlflow_run_id=member.mlflow_run_id(),
                finished_at=time.time(),
                pack_id=plan.pack_id,
                pack_size=plan.pack_size,
            )
            member.write_record(record)
            if record.mlflow_run_id is not None:
                self._end_run(record)

    def _end_run(self, record: TrialRecord) -> None:
        """The member's MLflow run ends as its record says (the worker that would have ended it is gone)."""
        try:
            client = MlflowClient(self.tracking_uri)
            tags = {"status": str(record.status), "failure_reason": record.failure_reason or ""}
            log_params_and_tags(client, record.mlflow_run_id, {}, tags)  # type: ignore[arg-type]
            client.set_terminated(record.mlflow_run_id, record.status.mlflow_status)  # type: ignore[arg-type]
        except Exception as error:  # the record is written; the run's status is cosmetic
            log.warning("could not end MLflow run %s as %s: %s", record.mlflow_run_id, record.status, error)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        error = trial.get_error()
        reason = str(error).strip().splitlines()[-1] if error else "trial crashed"
        self._record(trial, TrialStatus.ERROR, reason)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        last = trial.last_result or {}
        if last.get("final"):
            return
        stopping = self.spec.search.early_stopping
        step = last.get("step", 0)
        reason = "stopped early"
        if stopping is not None and stopping.metric in last:
            reason = (
                f"stopped early by {stopping.scheduler} at step {step} ({stopping.metric}={last[stopping.metric]:.6g})"
            )
        self._record(trial, TrialStatus.PRUNED, reason)


def make_scheduler(spec: StudySpec) -> tune.schedulers.TrialScheduler | None:
    """ASHA or the median stopping rule on the spec's training term, by step."""
    stopping = spec.search.early_stopping
    if stopping is None:
        return None
    if stopping.scheduler == "asha":
        return ASHAScheduler(
            time_attr="step",
            metric=stopping.metric,
            mode=stopping.mode,
            max_t=spec.training.steps,
            grace_period=stopping.grace_period,
            reduction_factor=stopping.reduction_factor,
        )
    return MedianStoppingRule(
        time_attr="step", metric=stopping.metric, mode=stopping.mode, grace_period=stopping.grace_period
    )


@dataclass
class StudyOutcome:
    study_dir: Path
    tracking_uri: str
    results: Path
    pareto: Path | None
    counts: dict[str, int] = field(default_factory=dict)


def refuse_used_study_dir(folder: StudyFolder) -> None:
    if folder.is_used():
        raise StudyDirError(
            f"{folder.root}: the study folder already holds files; choose another with --study-dir "
            "(finished trials are never overwritten)"
        )


#: What trials need from the driver's environment to reach cloud storage and a
#: password-protected tracking server; it travels in the runtime_env, not the shell.
FORWARDED_ENV = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION",
    "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
)  # fmt: skip


def init_ray(address: str | None) -> None:
    """Connect to ``address`` (or ``RAY_ADDRESS``), else start a local Ray in-process."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    env = {**WORKER_ENV, **{k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}}
    options: dict[str, Any] = {"runtime_env": {"env_vars": env}, "logging_level": logging.WARNING}
    if not address:
        options["include_dashboard"] = False
    ray.init(address=address, **options)


def check_cluster(spec: StudySpec) -> None:
    """A multi-node cluster needs the study folder on shared storage (see StorageSpec)."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) > 1 and not spec.storage.shared:
        raise SpecError(
            f"storage.shared: this Ray cluster has {len(nodes)} nodes; trials on every node write to the study "
            "folder, so put --study-dir on a filesystem all nodes mount (and storage.path on it or in the cloud, "
            "e.g. s3://bucket/studies), then set storage.shared: true"
        )


def storage_options(spec: StudySpec, study_dir: Path) -> dict[str, Any]:
    """``storage_path`` (and ``storage_filesystem``) for Tune's RunConfig."""
    path = spec.storage.path
    if path is None:
        return {"storage_path": str(study_dir)}
    if path.startswith("s3://") and (spec.storage.endpoint or spec.storage.region):
        endpoint = spec.storage.endpoint
        options: dict[str, Any] = {"region": spec.storage.region or os.environ.get("AWS_DEFAULT_REGION", "us-east-1")}
        if endpoint:
            scheme, _, host = endpoint.partition("://")
            options.update(endpoint_override=host or scheme, scheme=scheme if host else "https")
        # With a filesystem given, Tune wants the path without its scheme.
        return {"storage_path": path[len("s3://") :], "storage_filesystem": pyarrow.fs.S3FileSystem(**options)}
    return {"storage_path": path}


def run_study(
    spec: StudySpec, study_dir: Path, address: str | None = None, spec_text: str | None = None
) -> StudyOutcome:
    """Run ``spec`` to completion in ``study_dir``; see the module docstring."""
    folder = StudyFolder(study_dir.resolve())
    refuse_used_study_dir(folder)
    init_ray(address)
    check_cluster(spec)
    folder.root.mkdir(parents=True, exist_ok=True)  # only now: a refused run writes nothing
    folder.spec_yaml.write_text(
        spec_text if spec_text is not None else yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
    )
    folder.spec_json.write_text(json.dumps(spec.model_dump(mode="json"), indent=2))

    tracking_uri = spec.tracking.uri or default_tracking_uri(folder.root)
    names = [o.name for o in spec.objectives]
    modes = [o.mode for o in spec.objectives]
    study_run = open_study_run(
        tracking_uri,
        spec.name,
        folder.mlflow_artifacts,
        tags={
            "study": spec.name,
            "dataset": spec.dataset,
            "variant": ",".join(spec.variant_specs()),
            "search_algorithm": "grid" if spec.search.mode == "grid" else f"optuna-{spec.search.sampler}",
            "objectives": ",".join(f"{n}:{m}" for n, m in zip(names, modes, strict=True)),
            "study_dir": str(folder.root),
        },
        spec_file=folder.spec_yaml,
    )
    write_json_atomic(folder.study_run, dataclasses.asdict(study_run))

    if spec.search.mode == "grid":
        source: GridSource | OptunaSource = GridSource(grid_points(spec))
        budget = len(source.points)
    else:
        budget = spec.search.num_trials
        study = optuna_study(spec, make_storage(spec, folder.root))
        source = OptunaSource(spec, study, budget, persistent=spec.search.storage is not None)
    searcher = PackSearcher(source, spec.pack_size())
    return launch(spec, folder, study_run, searcher, budget, address, folder.ray.name)


def launch(
    spec: StudySpec,
    folder: StudyFolder,
    study_run: StudyRun,
    searcher: PackSearcher,
    num_packs: int,
    address: str | None,
    experiment: str,
) -> StudyOutcome:
    """Run the packs ``searcher`` suggests (at most ``num_packs``) with Tune, then :func:`finish_study`."""
    tune_config = tune.TuneConfig(
        search_alg=ConcurrencyLimiter(searcher, max_concurrent=spec.search.max_concurrent),
        num_samples=max(1, num_packs),
        scheduler=make_scheduler(spec),
        trial_dirname_creator=trial_dirname,
        # A finished trial's worker process trains the next one: no process start and imports per trial.
        reuse_actors=True,
    )
    context = TrialContext(spec=spec.model_dump(mode="json"), study_dir=str(folder.root), tracking=study_run)
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, context=context),
        {"cpu": spec.resources.cpus, "gpu": spec.resources.gpus},
    )
    # Checkpoint reports carry training terms but not the final metrics (MIG is
    # computed once, at the end); Tune's strict check would reject them.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    init_ray(address)
    tuner = tune.Tuner(
        trainable,
        tune_config=tune_config,
        run_config=tune.RunConfig(
            name=experiment,
            **storage_options(spec, folder.root),
            failure_config=tune.FailureConfig(max_failures=spec.search.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            callbacks=[RecordUnended(folder, spec, study_run.tracking_uri)],
            verbose=1,
        ),
    )
    status = "FINISHED"
    try:
        tuner.fit()
    except BaseException:
        status = "KILLED"
        raise
    finally:
        outcome = finish_study(spec, folder, study_run, status)
    return outcome


def trial_dirname(trial: Any) -> str:
    """Ray's folder of a trial: its id (Ray's default spells out the whole config)."""
    return str(trial.trial_id)


def finish_study(spec: StudySpec, folder: StudyFolder, study_run: StudyRun, status: str) -> StudyOutcome:
    """Export the parquet, draw the Pareto plot, and close the parent run."""
    objectives = [o.model_dump() for o in spec.objectives]
    results = export_results(folder.root, objectives)
    df = load_results(results)
    counts = df["status"].value_counts().to_dict() if len(df) else {}
    pareto = None
    if len(spec.objectives) >= 2:
        x, y = spec.objectives[0], spec.objectives[1]
        pareto = plot_pareto(
            df, (x.name, x.mode), (y.name, y.mode), folder.pareto, title=f"{spec.name}: {x.name} vs {y.name}"
        )
    summary = {f"trials_{k}": float(v) for k, v in counts.items()}
    report = None
    try:
        report = write_report(folder.root)
    except Exception as error:  # the results are written; a figure that cannot be drawn must not lose them
        log.warning("report.html could not be written: %s", error)
    close_study_run(study_run, [p for p in (results, pareto, report) if p], summary, status)
    return StudyOutcome(
        folder.root, study_run.tracking_uri, results, pareto, {str(k): int(v) for k, v in counts.items()}
    )
