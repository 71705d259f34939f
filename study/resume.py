"""``vae-study resume STUDY_DIR``: finish a study whose driver died.

``Tuner.restore`` alone restores the searcher only to its last experiment snapshot,
so trials that finished after it would be suggested or run again.  Instead the
study is rebuilt from what its trials wrote and the searcher's own storage:

* a trial folder with ``result.json`` is **finished** and kept as it is;
* a trial folder with only ``trial_config.json`` was **interrupted**: it runs again
  under its own id, from the newer of its checkpoints, into the MLflow run it opened;
* Optuna is reconciled: finished trials its storage still shows as RUNNING (the
  driver died before telling it) are told their results now; with an in-memory
  storage the finished trials are added to the new searcher's study; RUNNING trials
  that never started a folder are told FAIL; interrupted trials are told when they end;
* then only as many new trials are asked for as the spec is short of (grid studies:
  the grid points no trial has taken).

So the final study has exactly the spec's number of trials and one MLflow run each.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from study.runner import (
    STUDY_RUN_FILE,
    FinalResultOptunaSearch,
    ResumeFirst,
    StudyOutcome,
    check_cluster,
    finish_study,
    init_ray,
    launch,
    make_optuna_searcher,
)
from study.space import grid_points
from study.spec import SpecError, StudySpec
from study.tracking import StudyRun
from study.trial import OPTUNA_KEY, RESULT_FILE, RESUME_KEY, TRIAL_CONFIG_FILE


def scan_trials(study_dir: Path) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """``(finished, interrupted)``: trial id → ``{"result": ..., "config": ...}``."""
    finished, interrupted = {}, {}
    for folder in sorted((study_dir / "trials").glob("*")):
        config_file, result_file = folder / TRIAL_CONFIG_FILE, folder / RESULT_FILE
        config = json.loads(config_file.read_text())["config"] if config_file.exists() else None
        if result_file.exists():
            finished[folder.name] = {"result": json.loads(result_file.read_text()), "config": config}
        elif config is not None:
            interrupted[folder.name] = {"config": config}
    return finished, interrupted


def _values(spec: StudySpec, record: dict[str, Any]) -> list[float] | None:
    if record.get("status") != "completed":
        return None
    known = {**record.get("terms", {}), **record.get("metrics", {})}
    return [float(known[o.name]) for o in spec.objectives]


class OptunaReconciler:
    """Brings the searcher's Optuna study in line with the trials' records.

    With a persistent storage the trials keep their Optuna numbers and are told in
    place; with an in-memory one the new study starts empty and each trial is added
    with its params, distributions and outcome."""

    def __init__(self, study: optuna.Study, persistent: bool) -> None:
        self.study = study
        self.persistent = persistent
        trials = study.get_trials(deepcopy=False)
        self.known = {t.number for t in trials} if persistent else set()
        self.running = {t.number for t in trials if t.state == TrialState.RUNNING} if persistent else set()

    def tell(self, info: dict[str, Any], state: TrialState, values: list[float] | None) -> None:
        number = info["number"]
        if number in self.running:
            self.study.tell(number, values if state == TrialState.COMPLETE else None, state=state)
            self.running.discard(number)
        elif number not in self.known:
            self.study.add_trial(
                optuna.trial.create_trial(
                    state=state,
                    values=values if state == TrialState.COMPLETE else None,
                    params=info["params"],
                    distributions={
                        k: optuna.distributions.json_to_distribution(v) for k, v in info["distributions"].items()
                    },
                )
            )
        # else: told before the driver died; the storage already has it.

    def reconcile(self, spec: StudySpec, finished: dict, interrupted: dict) -> None:
        for record in finished.values():
            info = (record["config"] or {}).get(OPTUNA_KEY)
            if info is not None:
                values = _values(spec, record["result"])
                pruned = record["result"].get("status") == "pruned"
                state = TrialState.COMPLETE if values else (TrialState.PRUNED if pruned else TrialState.FAIL)
                self.tell(info, state, values)
        waiting = {(r["config"] or {}).get(OPTUNA_KEY, {}).get("number") for r in interrupted.values()}
        for number in sorted(self.running - waiting):
            # Suggested, but the driver died before its trial started: it never ran.
            self.study.tell(number, state=TrialState.FAIL)
            self.running.discard(number)


def _canonical(point: dict[str, Any]) -> str:
    return json.dumps(point, sort_keys=True, default=str)


def _next_experiment() -> str:
    # A new Tune experiment per resume (its storage may be remote, so no listing).
    return f"ray-resume-{time.strftime('%Y%m%d-%H%M%S')}"


def resume_study(study_dir: Path, address: str | None = None) -> StudyOutcome:
    """See the module docstring."""
    study_dir = study_dir.resolve()
    spec_file, run_file = study_dir / "spec.json", study_dir / STUDY_RUN_FILE
    for needed in (spec_file, run_file):
        if not needed.is_file():
            raise SpecError(f"{study_dir}: not a resumable study folder (no {needed.name} inside)")
    spec = StudySpec.model_validate(json.loads(spec_file.read_text()))
    init_ray(address)
    check_cluster(spec)
    study_run = StudyRun(**json.loads(run_file.read_text()))
    MlflowClient(study_run.tracking_uri).update_run(study_run.parent_run_id, status="RUNNING")
    finished, interrupted = scan_trials(study_dir)
    pending = [{**record["config"], RESUME_KEY: trial_id} for trial_id, record in interrupted.items()]

    tell: Callable[[dict[str, Any], dict[str, Any] | None, bool], None]
    if spec.search.mode == "grid":
        taken = [_canonical(r["config"]["point"]) for r in [*finished.values(), *interrupted.values()] if r["config"]]
        remaining = [p for p in grid_points(spec) if _canonical(p) not in taken]
        pending += [{"point": p} for p in remaining]
        searcher: ResumeFirst = ResumeFirst(pending, None, lambda *_: None)
        num_samples = len(pending)
    else:
        inner: FinalResultOptunaSearch = make_optuna_searcher(spec, study_dir, len(finished) + len(interrupted))
        reconciler = OptunaReconciler(inner.optuna_study, persistent=spec.search.storage is not None)
        reconciler.reconcile(spec, finished, interrupted)
        new = max(0, spec.search.num_trials - len(finished) - len(interrupted))

        def tell(config: dict[str, Any], result: dict[str, Any] | None, error: bool) -> None:
            final = bool(result and result.get("final"))
            values = [float(result[o.name]) for o in spec.objectives] if final and result else None
            state = TrialState.COMPLETE if final else (TrialState.FAIL if error else TrialState.PRUNED)
            reconciler.tell(config[OPTUNA_KEY], state, values)

        searcher = ResumeFirst(pending, inner if new else None, tell, inner.metric, inner.mode)
        num_samples = len(pending) + new
    tracking_uri = study_run.tracking_uri
    if num_samples == 0:
        return finish_study(spec, study_dir, study_run, tracking_uri, "FINISHED")
    return launch(spec, study_dir, study_run, tracking_uri, searcher, {}, num_samples, address, _next_experiment())
