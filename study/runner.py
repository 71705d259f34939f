"""Running a study: Ray Tune + Tune's Optuna searcher + MLflow + export and the Pareto plot.

Multi-objective search lives only in the searcher (``OptunaSearch(metric=[...],
mode=[...])``) under Tune's FIFO scheduling: Tune's schedulers take one metric, and
a trial they stopped early would reach Optuna as complete and corrupt the front.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import yaml
from ray import tune
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from analysis.plots import plot_pareto
from analysis.report import write_report
from analysis.results import load_results
from study.export import export_results
from study.space import DefineByRun, grid_points, make_sampler, make_storage, strip_variant_prefix
from study.spec import SpecError, StudySpec
from study.tracking import FAIL_FAST_HTTP_ENV, close_study_run, default_tracking_uri, open_study_run
from study.trial import RESULT_FILE, TrialContext, run_trial, write_json_atomic

log = logging.getLogger(__name__)

#: Keeps glibc from handing activation memory back to the OS after every step
#: (1.4–2× CPU training speed measured on 2-core hosts); set before workers start.
WORKER_ENV = {
    "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296",
    **FAIL_FAST_HTTP_ENV,
}


class StudyDirError(SpecError):
    """The study folder cannot be used (e.g. it already holds a study)."""


class FinalResultOptunaSearch(OptunaSearch):
    """Tune's ``OptunaSearch`` that ignores intermediate results lacking the objective.

    Trials report checkpoints with their training terms before the final metrics
    (MIG) exist; the stock searcher would fail on the missing key.
    """

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        if all(m in result for m in metrics):
            super().on_trial_result(trial_id, result)


class _RecordCrashes(tune.Callback):
    """Writes a ``result.json`` for a trial that crashed without writing one, so it is counted."""

    def __init__(self, study_dir: Path, spec: StudySpec) -> None:
        self.study_dir, self.spec = study_dir, spec

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        folder = self.study_dir / "trials" / trial.trial_id
        if (folder / RESULT_FILE).exists():
            return
        folder.mkdir(parents=True, exist_ok=True)
        error = trial.get_error()
        reason = str(error).strip().splitlines()[-1] if error else "trial crashed"
        config = strip_variant_prefix(dict(trial.config.get("point", trial.config)))
        write_json_atomic(
            folder / RESULT_FILE,
            {
                "trial_id": trial.trial_id,
                "trial_name": str(trial),
                "status": "error",
                "failure_reason": reason,
                "variant": config.pop("variant", None),
                "seed": config.pop("seed", None),
                "params": config,
                "steps": self.spec.training.steps,
                "finished_at": time.time(),
            },
        )


@dataclass
class StudyOutcome:
    study_dir: Path
    tracking_uri: str
    results: Path
    pareto: Path | None
    counts: dict[str, int] = field(default_factory=dict)


def prepare_study_dir(study_dir: Path) -> None:
    if study_dir.exists() and any(study_dir.iterdir()):
        raise StudyDirError(
            f"{study_dir}: the study folder already holds files; choose another with --study-dir "
            "(finished trials are never overwritten)"
        )
    study_dir.mkdir(parents=True, exist_ok=True)


def init_ray(address: str | None) -> None:
    """Connect to ``address`` (or ``RAY_ADDRESS``), else start a local Ray in-process."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    options: dict[str, Any] = {"runtime_env": {"env_vars": WORKER_ENV}, "logging_level": logging.WARNING}
    if not address:
        options["include_dashboard"] = False
    ray.init(address=address, **options)


def run_study(
    spec: StudySpec, study_dir: Path, address: str | None = None, spec_text: str | None = None
) -> StudyOutcome:
    """Run ``spec`` to completion in ``study_dir``; see the module docstring."""
    study_dir = study_dir.resolve()
    prepare_study_dir(study_dir)
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

    if spec.search.mode == "grid":
        points = grid_points(spec)
        param_space: dict[str, Any] = {"point": tune.grid_search(points)}
        tune_config = tune.TuneConfig(num_samples=1, max_concurrent_trials=spec.search.max_concurrent)
    else:
        searcher = FinalResultOptunaSearch(
            space=DefineByRun(spec),
            metric=names if spec.multi_objective else names[0],
            mode=modes if spec.multi_objective else modes[0],
            sampler=make_sampler(spec),
            study_name=spec.name,
            storage=make_storage(spec, study_dir),
        )
        param_space = {}
        tune_config = tune.TuneConfig(
            search_alg=ConcurrencyLimiter(searcher, max_concurrent=spec.search.max_concurrent),
            num_samples=spec.search.num_trials,
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
            name="ray",
            storage_path=str(study_dir),
            failure_config=tune.FailureConfig(max_failures=spec.search.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
            callbacks=[_RecordCrashes(study_dir, spec)],
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
