"""Running a study: Ray Tune over packs (``study.searchers``) + Optuna + MLflow, then export and plots.

Every Ray trial trains a pack of members (``study.trial``); the searcher asks a grid
or an Optuna study for the members and tells Optuna each member's outcome.
Multi-objective search lives only in Optuna under Tune's FIFO scheduling: Tune's
schedulers take one metric, and a trial they stopped early reaches Optuna as
PRUNED, never COMPLETE, so it cannot corrupt the front.  Ray itself (starting or
joining it, and the environment its trial processes get) is :mod:`study.cluster`'s.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.fs
import ray
import yaml
from mlflow.tracking import MlflowClient
from ray import tune
from ray.tune.schedulers import ASHAScheduler, MedianStoppingRule
from ray.tune.search import ConcurrencyLimiter

from analysis.pareto import hypervolume_of
from analysis.plots import plot_pareto
from analysis.report import write_report
from analysis.results import load_results
from study.cluster import connect, init_ray, link_ray_logs, ray_address
from study.export import export_results
from study.folder import FolderInUse, StudyFolder, StudyLock, TrialRecord, TrialStatus
from study.interrupt import StudyInterrupt
from study.naming import trial_label
from study.preflight import check_before_ray
from study.progress import RunLog
from study.rung_keeper import start_keeper
from study.searchers import (
    PACK_ID,
    GridSource,
    OptunaSource,
    PackSearcher,
    make_storage,
    optuna_study,
    pack_plans,
    storage_url,
)
from study.space import grid_points
from study.spec import SpecError, StudySpec
from study.tracking import (
    StudyRun,
    close_study_run,
    default_tracking_uri,
    dotted,
    log_params_and_tags,
    open_study_run,
)
from study.trial import TrialContext, flat_weights, run_trial

log = logging.getLogger(__name__)


class StudyDirError(SpecError):
    """The study folder cannot be used (e.g. it already holds a study)."""


class RecordUnended(tune.Callback):
    """Writes the record of every member of a pack that ended without writing one, so it is
    counted: members of a pack that crashed (``error``) and of one a scheduler stopped early
    (``pruned``, its MLflow run ended KILLED)."""

    def __init__(self, folder: StudyFolder, spec: StudySpec, tracking_uri: str, interrupt: StudyInterrupt) -> None:
        self.folder, self.spec, self.tracking_uri, self.interrupt = folder, spec, tracking_uri, interrupt

    def _record(self, trial: Any, status: TrialStatus, reason: str) -> None:
        if self.interrupt.requested.is_set():
            return  # stopped by Ctrl+C, not ended: no record, so that a resume runs it on
        for plan in pack_plans(trial.config, trial.trial_id):
            member = self.folder.trial(plan.trial_id).create()
            if member.result_file.exists():
                continue
            if not member.plan_file.exists():  # crashed before it wrote its plan: resume must see it taken
                member.write_plan(plan)
            config = self.spec.point_train_config(plan.point)
            record = TrialRecord(
                trial_id=plan.trial_id,
                status=status,
                trial_name=trial_label(plan.trial_id, config.variant, config.weights, config.seed),
                failure_reason=reason,
                variant=plan.point["variant"],
                seed=plan.point["seed"],
                params=flat_weights(config.weights),
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
            reason = f"stopped early by {stopping.kind} at step {step} ({stopping.metric}={last[stopping.metric]:.6g})"
        self._record(trial, TrialStatus.PRUNED, reason)


def make_scheduler(spec: StudySpec) -> tune.schedulers.TrialScheduler | None:
    """ASHA or the median stopping rule on the spec's training term, by step."""
    stopping = spec.search.early_stopping
    if stopping is None or stopping.pareto:
        return None  # Pareto stopping decides in the trials (study.rung_keeper), under FIFO scheduling
    if stopping.kind == "asha":
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


@dataclass(frozen=True)
class Output:
    """How much a study prints: the run log (default), only failures and the summary
    (``quiet``), or also Ray's own output (``verbose``); progress at most every ``every`` s."""

    quiet: bool = False
    verbose: bool = False
    every: float = 30.0


@dataclass
class StudyOutcome:
    study_dir: Path
    tracking_uri: str
    results: Path
    pareto: Path | None
    counts: dict[str, int] = field(default_factory=dict)
    #: Stopped by Ctrl+C (or SIGTERM) before every trial ended; resumable.
    interrupted: bool = False
    #: The study's MLflow experiment (for the address that opens its runs table).
    experiment_id: str | None = None


def refuse_used_study_dir(folder: StudyFolder, claimed: bool = False) -> None:
    """A new study needs a folder that holds nothing (one claimed by another run names its owner)."""
    owner = StudyLock(folder).read_owner() if folder.lock_file.exists() and not claimed else None
    if owner is not None and owner.alive() is not False:
        raise FolderInUse(f"{folder.root}: the study folder is in use by {owner.describe()}")
    if folder.is_used():
        what = "holds a study" if folder.spec_json.exists() else "already holds files"
        raise StudyDirError(
            f"{folder.root}: the study folder {what} (finished trials are never overwritten); resume it with "
            f"`vae-study resume {folder.root}` or choose another folder with --study-dir"
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
    spec: StudySpec,
    study_dir: Path,
    address: str | None = None,
    spec_text: str | None = None,
    command: str = "vae-study run",
    dashboard: bool = False,
    output: Output | None = None,
) -> StudyOutcome:
    """Run ``spec`` to completion in ``study_dir``; see the module docstring.

    Checks everything it can before writing (``study.preflight``), then claims the folder
    (``study.lock``) for as long as it runs.  Raises ``KeyboardInterrupt`` on a second Ctrl+C."""
    output = output or Output()
    folder = StudyFolder(study_dir.resolve())
    check_before_ray(spec, folder, ray_address(address) is None, "--study-dir")
    refuse_used_study_dir(folder)
    # Claimed before Ray starts: of two runs into one folder, the second is refused at once.
    lock = StudyLock(folder).claim(command)
    try:
        refuse_used_study_dir(folder, claimed=True)  # another run may have used it since the first check
        try:
            connect(spec, address, dashboard, output.verbose)
        except BaseException:
            lock.withdraw()  # refused: leave nothing behind
            raise
        return _start_study(spec, folder, address, spec_text, output)
    finally:
        lock.release()


def _start_study(
    spec: StudySpec, folder: StudyFolder, address: str | None, spec_text: str | None, output: Output
) -> StudyOutcome:
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
            "study_dir": str(folder.root),  # where it runs now; a resume of a moved folder updates it
        },
        spec_file=folder.spec_yaml,
        params=dotted(spec.model_dump(mode="json")),
    )
    study_run.save(folder)

    if spec.search.mode == "grid":
        source: GridSource | OptunaSource = GridSource(grid_points(spec))
        budget = len(source.points)
    else:
        budget = spec.search.num_trials
        study = optuna_study(spec, make_storage(spec, folder.root))
        source = OptunaSource(spec, study, budget, persistent=storage_url(spec, folder.root) is not None)
    searcher = PackSearcher(source, spec.pack_size())
    run_log = RunLog(folder, spec, budget, every=output.every, quiet=output.quiet)
    return launch(spec, folder, study_run, searcher, budget, address, folder.ray.name, run_log, output)


def launch(
    spec: StudySpec,
    folder: StudyFolder,
    study_run: StudyRun,
    searcher: PackSearcher,
    num_packs: int,
    address: str | None,
    experiment: str,
    run_log: RunLog,
    output: Output,
) -> StudyOutcome:
    """Run the packs ``searcher`` suggests (at most ``num_packs``) with Tune, then :func:`finish_study`;
    ``run_log`` prints the trials' events.

    Ctrl+C or SIGTERM stops the study gracefully (``study.interrupt``): the outcome is
    ``interrupted`` and the parent run KILLED; a second Ctrl+C raises ``KeyboardInterrupt``
    after marking the parent run KILLED."""
    interrupt = StudyInterrupt(folder)
    searcher.stopping = interrupt.requested
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
    # Ctrl+C is the study's (study.interrupt), not Tune's: Tune's would end the study as finished.
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    # Tune's per-trial JSON, CSV and TensorBoard files: nothing here reads them (the trial folders
    # hold every record), and they cost disk and time per trial; only where the spec asks.
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "0" if spec.tracking.tune_loggers else "1"
    if not output.verbose:
        # Tune's newer console output prints its configuration box even at verbose=0; the older one is silent.
        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    init_ray(address, verbose=output.verbose)
    link_ray_logs(folder, address)
    keeper = start_keeper(spec, folder)  # Pareto stopping's rungs, from rungs.json on a resume
    tuner = tune.Tuner(
        trainable,
        tune_config=tune_config,
        run_config=tune.RunConfig(
            name=experiment,
            **storage_options(spec, folder.root),
            failure_config=tune.FailureConfig(max_failures=spec.search.max_failures),
            # RecordUnended first: the run log reads the records it writes.
            callbacks=[RecordUnended(folder, spec, study_run.tracking_uri, interrupt), interrupt.callback, run_log],
            stop=interrupt,
            # Tune's own status table and per-trial config tables only with --verbose: the run log says it all.
            verbose=1 if output.verbose else 0,
        ),
    )
    with interrupt.installed():
        try:
            tuner.fit()
        except BaseException:
            # The second Ctrl+C or a crash of the driver: the trials' own records stand.
            close_study_run(study_run, [], {}, "KILLED")
            raise
        finally:
            if keeper is not None:
                ray.kill(keeper)  # every decision is in rungs.json already
        interrupted = interrupt.requested.is_set()
        outcome = finish_study(spec, folder, study_run, "KILLED" if interrupted else "FINISHED")
    outcome.interrupted = interrupted
    # Ray's shutdown lines come now, not after the closing summary.
    ray.shutdown()
    return outcome


def trial_dirname(trial: Any) -> str:
    """Ray's folder of a trial: its pack's id, ``t0005`` or ``p0002`` (Ray's default spells out the whole config)."""
    return str((trial.config or {}).get(PACK_ID) or trial.trial_id)


def study_summary(df: pd.DataFrame, spec: StudySpec) -> dict[str, float]:
    """The parent run's metrics: trials by status (``trials_completed``, ``trials_failed``, ...),
    ``front_size`` (completed trials no other dominates on the spec's objectives), the best
    value of each objective (``best_<name>``) and, where every objective has a
    ``reference``, the front's ``hypervolume`` against that point."""
    summary = {f"trials_{status}": float(n) for status, n in df["status"].value_counts().items()} if len(df) else {}
    pairs = [(o.name, o.mode) for o in spec.objectives]
    done = df[df["status"] == "completed"] if len(df) else df
    if not len(done) or any(name not in done.columns for name, _ in pairs):
        return summary
    summary["front_size"] = float(df["on_front"].sum())  # the export's column, on the spec's objectives
    for name, mode in pairs:
        values = pd.to_numeric(done[name], errors="coerce")
        best = values.min() if mode == "min" else values.max()
        if pd.notna(best):
            summary[f"best_{name}"] = float(best)
    if all(o.reference is not None for o in spec.objectives):
        reference = {o.name: float(o.reference) for o in spec.objectives}  # type: ignore[arg-type]
        summary["hypervolume"] = float(hypervolume_of(done, pairs, reference))
    return summary


def finish_study(spec: StudySpec, folder: StudyFolder, study_run: StudyRun, status: str) -> StudyOutcome:
    """Export the parquet, draw the Pareto plot, and close the parent run."""
    objectives = [o.model_dump() for o in spec.objectives]
    results = export_results(folder.root, objectives)
    df = load_results(results)
    counts = df["status"].value_counts().to_dict() if len(df) else {}
    pareto = None
    if len(spec.objectives) >= 2 and len(df):
        x, y = spec.objectives[0], spec.objectives[1]
        pareto = plot_pareto(
            df, (x.name, x.mode), (y.name, y.mode), folder.pareto, title=f"{spec.name}: {x.name} vs {y.name}"
        )
    summary = study_summary(df, spec)
    report = None
    try:
        report = write_report(folder.root) if len(df) else None
    except Exception as error:  # the results are written; a figure that cannot be drawn must not lose them
        log.warning("report.html could not be written: %s", error)
    close_study_run(study_run, [p for p in (results, pareto, report) if p], summary, status)
    return StudyOutcome(
        folder.root,
        study_run.tracking_uri,
        results,
        pareto,
        {str(k): int(v) for k, v in counts.items()},
        experiment_id=study_run.experiment_id,
    )
