"""Running a study: Ray Tune + Tune's Optuna searcher + MLflow + export and the Pareto plot.

Multi-objective search lives only in the searcher (``OptunaSearch(metric=[...],
mode=[...])``) under Tune's FIFO scheduling: Tune's schedulers take one metric, and
a trial they stopped early would reach Optuna as complete and corrupt the front.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pyarrow.fs
import ray
import yaml
from mlflow.tracking import MlflowClient
from ray import tune
from ray.tune.schedulers import ASHAScheduler, MedianStoppingRule
from ray.tune.search import ConcurrencyLimiter, Searcher
from ray.tune.search.optuna import OptunaSearch

from analysis.plots import plot_pareto
from analysis.report import write_report
from analysis.results import load_results
from study.export import export_results
from study.packing import PackingSearcher, member_id, pack_points
from study.space import DefineByRun, grid_points, make_sampler, make_storage, strip_variant_prefix
from study.spec import SpecError, StudySpec
from study.tracking import (
    FAIL_FAST_HTTP_ENV,
    StudyRun,
    close_study_run,
    default_tracking_uri,
    log_params_and_tags,
    open_study_run,
)
from study.trial import (
    OPTUNA_KEY,
    PACK_KEY,
    RESULT_FILE,
    RESUME_KEY,
    TRIAL_META_FILE,
    TrialContext,
    run_trial,
    write_json_atomic,
)

log = logging.getLogger(__name__)

#: Keeps glibc from handing activation memory back to the OS after every step
#: (1.4–2× CPU training speed measured on 2-core hosts); set before workers start.
WORKER_ENV = {
    "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296",
    **FAIL_FAST_HTTP_ENV,
}


#: The study's MLflow coordinates (tracking URI, experiment, parent run), for resume.
STUDY_RUN_FILE = "study_run.json"


class StudyDirError(SpecError):
    """The study folder cannot be used (e.g. it already holds a study)."""


class FinalResultOptunaSearch(OptunaSearch):
    """Tune's ``OptunaSearch``, told only final results.

    Trials report checkpoints with their training terms before the final metrics
    (MIG) exist; the stock searcher would fail on the missing key.  A trial that
    ends without its final report (stopped early by a scheduler, or interrupted) is
    told to Optuna as PRUNED, never COMPLETE, so a truncated trial cannot enter the
    Pareto front.  Each suggestion carries its Optuna trial number, params and
    distributions under ``optuna`` so that ``vae-study resume`` can tell Optuna
    about trials the driver did not see finish.
    """

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        config = super().suggest(trial_id)
        if isinstance(config, dict):
            ot_trial = self._ot_trials[trial_id]
            config[OPTUNA_KEY] = {
                "number": ot_trial.number,
                "params": dict(ot_trial.params),
                "distributions": {
                    k: optuna.distributions.distribution_to_json(v) for k, v in ot_trial.distributions.items()
                },
            }
        return config

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        if all(m in result for m in metrics):
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if result is not None and not result.get("final"):
            result = None  # pruned (or FAIL with error=True)
        super().on_trial_complete(trial_id, result, error)

    @property
    def optuna_study(self) -> optuna.Study:
        return self._ot_study


class ResumeFirst(Searcher):
    """Suggests ``pending`` configs first (interrupted trials of a resumed study), then
    asks ``inner`` (None: nothing more).  Pending trials' outcomes go to ``tell``."""

    def __init__(
        self,
        pending: list[dict[str, Any]],
        inner: Searcher | None,
        tell: Callable[[dict[str, Any], dict[str, Any] | None, bool], None],
        metric: str | list[str] | None = None,
        mode: str | list[str] | None = None,
    ) -> None:
        super().__init__(metric=metric, mode=mode)
        self.pending = list(pending)
        self.inner = inner
        self.tell = tell
        self.resumed: dict[str, dict[str, Any]] = {}

    def set_search_properties(self, metric: Any, mode: Any, config: dict, **spec: Any) -> bool:
        if self.inner is not None:
            return self.inner.set_search_properties(metric, mode, config, **spec)
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.pending:
            config = self.pending.pop(0)
            self.resumed[trial_id] = config
            return config
        return self.inner.suggest(trial_id) if self.inner is not None else Searcher.FINISHED

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if trial_id not in self.resumed and self.inner is not None:
            self.inner.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if trial_id in self.resumed:
            self.tell(self.resumed.pop(trial_id), result, error)
        elif self.inner is not None:
            self.inner.on_trial_complete(trial_id, result, error)


class _RecordUnfinished(tune.Callback):
    """Writes ``result.json`` for a trial that ended without writing one, so it is counted:
    one that crashed (``error``) and one a scheduler stopped early (``pruned``, its MLflow
    run ended KILLED)."""

    def __init__(self, study_dir: Path, spec: StudySpec, tracking_uri: str) -> None:
        self.study_dir, self.spec, self.tracking_uri = study_dir, spec, tracking_uri

    def _record(self, trial: Any, status: str, reason: str) -> dict[str, Any] | None:
        if PACK_KEY in trial.config:
            for index, member in enumerate(trial.config[PACK_KEY]):
                self._record_one(member_id(trial.trial_id, index), member, str(trial), status, reason)
            return None
        trial_id = trial.config.get(RESUME_KEY) or trial.trial_id
        return self._record_one(trial_id, trial.config, str(trial), status, reason)

    def _record_one(
        self, trial_id: str, config: dict[str, Any], trial_name: str, status: str, reason: str
    ) -> dict[str, Any] | None:
        folder = self.study_dir / "trials" / trial_id
        if (folder / RESULT_FILE).exists():
            return None
        folder.mkdir(parents=True, exist_ok=True)
        config = {k: v for k, v in config.items() if k not in (RESUME_KEY, OPTUNA_KEY)}
        config = strip_variant_prefix(dict(config.get("point", config)))
        meta = folder / TRIAL_META_FILE
        record = {
            "trial_id": trial_id,
            "trial_name": trial_name,
            "status": status,
            "failure_reason": reason,
            "variant": config.pop("variant", None),
            "seed": config.pop("seed", None),
            "params": config,
            "steps": self.spec.training.steps,
            "mlflow_run_id": json.loads(meta.read_text())["mlflow_run_id"] if meta.exists() else None,
            "finished_at": time.time(),
        }
        write_json_atomic(folder / RESULT_FILE, record)
        return record

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        error = trial.get_error()
        reason = str(error).strip().splitlines()[-1] if error else "trial crashed"
        self._record(trial, "error", reason)

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
        record = self._record(trial, "pruned", reason)
        if record is None or record["mlflow_run_id"] is None:
            return
        run_id = record["mlflow_run_id"]
        try:
            client = MlflowClient(self.tracking_uri)
            log_params_and_tags(client, run_id, {}, {"status": "pruned", "failure_reason": reason})
            client.set_terminated(run_id, "KILLED")
        except Exception as error:  # the record is written; the tag is cosmetic
            log.warning("could not mark MLflow run %s pruned: %s", run_id, error)


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


def refuse_used_study_dir(study_dir: Path) -> None:
    if study_dir.exists() and any(study_dir.iterdir()):
        raise StudyDirError(
            f"{study_dir}: the study folder already holds files; choose another with --study-dir "
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
    study_dir = study_dir.resolve()
    refuse_used_study_dir(study_dir)
    init_ray(address)
    check_cluster(spec)
    study_dir.mkdir(parents=True, exist_ok=True)  # only now: a refused run writes nothing
    spec_file = study_dir / "spec.yaml"
    spec_file.write_text(
        spec_text if spec_text is not None else yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
    )
    (study_dir / "spec.json").write_text(json.dumps(spec.model_dump(mode="json"), indent=2))

    tracking_uri = spec.tracking.uri or default_tracking_uri(study_dir)
    names = [o.name for o in spec.objectives]
    modes = [o.mode for o in spec.objectives]
    study_run = open_study_run(
        tracking_uri,
        spec.name,
        study_dir / "mlartifacts",
        tags={
            "study": spec.name,
            "dataset": spec.dataset,
            "variant": ",".join(spec.variant_specs()),
            "search_algorithm": "grid" if spec.search.mode == "grid" else f"optuna-{spec.search.sampler}",
            "objectives": ",".join(f"{n}:{m}" for n, m in zip(names, modes, strict=True)),
            "study_dir": str(study_dir),
        },
        spec_file=spec_file,
    )

    write_json_atomic(study_dir / STUDY_RUN_FILE, dataclasses.asdict(study_run))

    pack_size = spec.pack_size()
    if spec.search.mode == "grid":
        searcher: Searcher | None = None
        points = grid_points(spec)
        if pack_size > 1:
            param_space: dict[str, Any] = {PACK_KEY: tune.grid_search(pack_points(points, pack_size))}
        else:
            param_space = {"point": tune.grid_search(points)}
        num_samples = 1
    else:
        searcher = make_optuna_searcher(spec, study_dir)
        param_space, num_samples = {}, spec.search.num_trials
        if pack_size > 1:
            # num_samples bounds the packs; the searcher finishes once num_trials members were asked for.
            searcher = PackingSearcher(searcher, pack_size, spec.search.num_trials, study_dir)
    return launch(spec, study_dir, study_run, tracking_uri, searcher, param_space, num_samples, address, "ray")


def make_optuna_searcher(spec: StudySpec, study_dir: Path, seed_offset: int = 0) -> FinalResultOptunaSearch:
    return FinalResultOptunaSearch(
        space=DefineByRun(spec),
        metric=[o.name for o in spec.objectives] if spec.multi_objective else spec.objectives[0].name,
        mode=[o.mode for o in spec.objectives] if spec.multi_objective else spec.objectives[0].mode,
        sampler=make_sampler(spec, seed_offset),
        study_name=spec.name,
        storage=make_storage(spec, study_dir),
    )


def launch(
    spec: StudySpec,
    study_dir: Path,
    study_run: StudyRun,
    tracking_uri: str,
    searcher: Searcher | None,
    param_space: dict[str, Any],
    num_samples: int,
    address: str | None,
    experiment: str,
) -> StudyOutcome:
    """Run the trials with Tune, then :func:`finish_study`."""
    if searcher is not None:
        tune_config = tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=spec.search.max_concurrent),
            num_samples=num_samples,
            scheduler=make_scheduler(spec),
        )
    else:
        tune_config = tune.TuneConfig(
            num_samples=num_samples, max_concurrent_trials=spec.search.max_concurrent, scheduler=make_scheduler(spec)
        )
    context = TrialContext(spec=spec.model_dump(mode="json"), study_dir=str(study_dir), tracking=study_run)
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, context=context),
        {"cpu": spec.resources.cpus, "gpu": spec.resources.gpus},
    )
    # Checkpoint reports carry training terms but not the final metrics (MIG is
    # computed once, at the end); Tune's strict check would reject them.  The
    # final report always carries every objective: run_trial checks it.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    init_ray(address)
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune_config,
        run_config=tune.RunConfig(
            name=experiment,
            **storage_options(spec, study_dir),
            failure_config=tune.FailureConfig(max_failures=spec.search.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            callbacks=[_RecordUnfinished(study_dir, spec, tracking_uri)],
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
        outcome = finish_study(spec, study_dir, study_run, tracking_uri, status)
    return outcome


def finish_study(spec: StudySpec, study_dir: Path, study_run: Any, tracking_uri: str, status: str) -> StudyOutcome:
    """Export the parquet, draw the Pareto plot, and close the parent run."""
    objectives = [o.model_dump() for o in spec.objectives]
    results = export_results(study_dir, objectives)
    df = load_results(results)
    counts = df["status"].value_counts().to_dict() if len(df) else {}
    pareto = None
    if len(spec.objectives) >= 2:
        x, y = spec.objectives[0], spec.objectives[1]
        pareto = plot_pareto(
            df, (x.name, x.mode), (y.name, y.mode), study_dir / "pareto.png", title=f"{spec.name}: {x.name} vs {y.name}"
        )
    summary = {f"trials_{k}": float(v) for k, v in counts.items()}
    report = None
    try:
        report = write_report(study_dir)
    except Exception as error:  # the results are written; a figure that cannot be drawn must not lose them
        log.warning("report.html could not be written: %s", error)
    close_study_run(study_run, [p for p in (results, pareto, report) if p], summary, status)
    return StudyOutcome(study_dir, tracking_uri, results, pareto, {str(k): int(v) for k, v in counts.items()})
