"""``vae-study resume STUDY_DIR``: finish a study whose driver died.

``Tuner.restore`` alone restores the searcher only to its last experiment snapshot,
so trials that finished after it would be suggested or run again.  Instead the
study is rebuilt from what its trials wrote and the searcher's own storage:

* a trial with a record (``result.json``) **ended** and is kept as it is;
* a trial with only a plan (``trial_config.json``) was **interrupted**: its whole
  pack runs again as a pack, under its own ids, from the pack's newest readable
  checkpoint, each member into the MLflow run it opened (members that ended are not
  trained again);
* Optuna is reconciled: ended trials are told their outcome (by number where the
  storage persists; with an in-memory storage they are added to the new study with
  their params); trials the storage shows RUNNING that no folder will finish are
  told FAIL; interrupted trials are told when their pack ends;
* then only as many new trials are asked for as the spec is short of (grid studies:
  the grid points no trial has taken), packed as the spec says.

So the final study has exactly the spec's number of trials and one MLflow run each.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from study.cluster import connect, ray_address
from study.folder import StudyFolder, StudyLock, TrialPlan, TrialRecord
from study.naming import next_number
from study.preflight import check_before_ray, check_storage, check_study_dir, check_tracking
from study.progress import RunLog
from study.runner import Output, StudyOutcome, finish_study, launch
from study.searchers import (
    MEMBERS,
    PACK_ID,
    GridSource,
    OptunaSource,
    PackSearcher,
    make_storage,
    optuna_study,
    plan_member,
)
from study.space import grid_points
from study.spec import SpecError, StudySpec, stored_spec
from study.tracking import StudyRun, rebase_artifact_store


def scan_trials(folder: StudyFolder) -> tuple[list[tuple[TrialPlan | None, TrialRecord]], list[TrialPlan]]:
    """``(ended, interrupted)``: each ended trial's plan (None if it wrote none) and record,
    and the plan of each trial that started but has no record."""
    ended, interrupted = [], []
    for trial in folder.trials():
        plan, record = trial.read_plan(), trial.read_record()
        trial.mlflow_run_id()  # read now: a malformed trial.json stops the resume before it changes anything
        if record is not None:
            ended.append((plan, record))
        elif plan is not None:
            interrupted.append(plan)
    return ended, interrupted


def interrupted_packs(ended: list[tuple[TrialPlan | None, TrialRecord]], interrupted: list[TrialPlan]) -> list[dict]:
    """Each pack with an interrupted member, whole and in member order, to run again as it was."""
    plans_by_pack: dict[str, dict[int, TrialPlan]] = {}
    for plan in [*(p for p, _ in ended if p is not None), *interrupted]:
        plans_by_pack.setdefault(plan.pack_id, {})[plan.member] = plan
    waiting = sorted({plan.pack_id for plan in interrupted})
    return [
        {PACK_ID: pack_id, MEMBERS: [plan_member(p) for _, p in sorted(plans_by_pack[pack_id].items())]}
        for pack_id in waiting
    ]


def _canonical(point: dict[str, Any]) -> str:
    return json.dumps(point, sort_keys=True, default=str)


def _next_experiment() -> str:
    # A new Tune experiment per resume (its storage may be remote, so no listing).
    return f"ray-resume-{time.strftime('%Y%m%d-%H%M%S')}"


def resume_study(
    study_dir: Path,
    address: str | None = None,
    take_over: bool = False,
    command: str = "vae-study resume",
    dashboard: bool = False,
    output: Output | None = None,
) -> StudyOutcome:
    """See the module docstring.  Claims the folder first (``take_over``: from a run that died);
    then every trial file is read and the preflight passes before anything changes."""
    output = output or Output()
    folder = StudyFolder(study_dir.resolve())
    spec = stored_spec(folder.read_spec(), str(folder.spec_json))
    if not folder.study_run.is_file():
        raise SpecError(f"{folder.root}: not a resumable study folder (no {folder.study_run.name} inside)")
    with StudyLock(folder).claim(command, take_over=take_over):
        study_run = StudyRun.load(folder, spec.tracking.uri)
        # Every plan, record and run id is read before anything changes: a malformed one stops here.
        ended, interrupted = scan_trials(folder)
        queued = interrupted_packs(ended, interrupted)
        grid = remaining_grid(spec, ended, interrupted) if spec.search.mode == "grid" else None
        if queued or new_trial_budget(spec, ended, interrupted, grid):
            check_before_ray(spec, folder, ray_address(address) is None, "STUDY_DIR")
            connect(spec, address, dashboard, output.verbose)
        else:  # nothing left to train: no Ray and no device, only the records and their stores
            check_study_dir(folder, "STUDY_DIR")
            check_storage(spec, folder)
            check_tracking(spec)
        folder.stop_file.unlink(missing_ok=True)  # left by the Ctrl+C that stopped it
        rebase_artifact_store(study_run, folder)
        return _resume(spec, folder, study_run, ended, interrupted, queued, grid, address, output)


def remaining_grid(
    spec: StudySpec, ended: list[tuple[TrialPlan | None, TrialRecord]], interrupted: list[TrialPlan]
) -> list[dict[str, Any]]:
    """The grid points, in grid order, that no trial has taken (ended or interrupted): what a
    resumed grid study still asks for.  Points compare by their JSON form, as plans store them."""
    taken = {_canonical(plan.point) for plan in [*(p for p, _ in ended if p), *interrupted]}
    return [p for p in grid_points(spec) if _canonical(p) not in taken]


def new_trial_budget(
    spec: StudySpec,
    ended: list[tuple[TrialPlan | None, TrialRecord]],
    interrupted: list[TrialPlan],
    grid: list[dict[str, Any]] | None,
) -> int:
    """How many new trials a resume may ask for: the remaining grid points, or what the trials
    started so far leave of ``search.num_trials``."""
    return len(grid) if grid is not None else max(0, spec.search.num_trials - len(ended) - len(interrupted))


def resume_searcher(
    spec: StudySpec,
    folder: StudyFolder,
    ended: list[tuple[TrialPlan | None, TrialRecord]],
    interrupted: list[TrialPlan],
    queued: list[dict],
    grid: list[dict[str, Any]] | None,
) -> tuple[PackSearcher, int]:
    """The searcher a resume hands to Tune, and how many new trials it may ask for.

    It suggests the interrupted packs first (``queued``, whole, under their own ids), then new
    packs numbered on from the highest trial and pack ids in the folder: the remaining grid
    points (``grid``), or Optuna's suggestions up to ``search.num_trials`` with the ended
    trials told and the orphans failed.
    """
    budget = new_trial_budget(spec, ended, interrupted, grid)
    if grid is not None:
        source: GridSource | OptunaSource = GridSource(grid)
    else:
        storage = make_storage(spec, folder.root)
        study = optuna_study(spec, storage, seed_offset=len(ended) + len(interrupted))
        source = OptunaSource(spec, study, budget, persistent=storage is not None)
        for plan, record in ended:
            if plan is not None:
                # A pruned trial's rung estimates travel as ``<step>/<name>``, as its pack reported them.
                rungs = {f"{step}/{name}": v for step, est in record.estimates.items() for name, v in est.items()}
                source.tell(plan_member(plan), record.status, {**record.values, **rungs})
        source.fail_orphans({plan.optuna["number"] for plan in interrupted if plan.optuna})
    plans = [*(p for p, _ in ended if p is not None), *interrupted]
    first_trial = next_number([record.trial_id for _, record in ended] + [p.trial_id for p in interrupted])
    first_pack = next_number([p.pack_id for p in plans], prefix="p")
    return PackSearcher(source, spec.pack_size(), queued, first_trial, first_pack), budget


def _resume(
    spec: StudySpec,
    folder: StudyFolder,
    study_run: StudyRun,
    ended: list[tuple[TrialPlan | None, TrialRecord]],
    interrupted: list[TrialPlan],
    queued: list[dict],
    grid: list[dict[str, Any]] | None,
    address: str | None,
    output: Output,
) -> StudyOutcome:
    searcher, budget = resume_searcher(spec, folder, ended, interrupted, queued, grid)
    client = MlflowClient(study_run.tracking_uri)
    client.update_run(study_run.parent_run_id, status="RUNNING")
    client.set_tag(study_run.parent_run_id, "study_dir", str(folder.root))
    if not queued and not budget:
        return finish_study(spec, folder, study_run, "FINISHED")
    total = len(ended) + len(interrupted) + budget
    run_log = RunLog(folder, spec, total, [record for _, record in ended], every=output.every, quiet=output.quiet)
    return launch(spec, folder, study_run, searcher, len(queued) + budget, address, _next_experiment(), run_log, output)
