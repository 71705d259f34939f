"""Pareto stopping in real studies (local Ray, Optuna SQLite, MLflow): unpacked, packed, killed
and resumed; every trial ends completed or pruned, and the rungs explain every stop."""

import json

import optuna
import pytest
from optuna.trial import TrialState
from scaffold import kill_midway, tiny_spec

from analysis import load_results
from study.folder import StudyFolder

pytestmark = pytest.mark.integration

#: Rungs at steps 10 and 20 of 40, η = 2: at a rung the second arrival goes on only if it
#: dominates the first, so a handful of trials always loses some.
STOPPING = {"kind": "pareto", "grace_period": 10, "reduction_factor": 2, "recon_points": 32, "metric_points": 200}


def pareto_study(**training):
    return tiny_spec(
        training={"steps": 40, **training},
        search={"num_trials": 5, "seed": 3, "early_stopping": STOPPING},
    )


def decisions(study_dir):
    """Every rung decision, rung by rung in arrival order: ``(step, trial id, decision)``."""
    rungs = StudyFolder(study_dir).read_rungs()
    return [(int(step), d["trial_id"], d) for step, arrived in sorted(rungs["rungs"].items()) for d in arrived]


def check_every_stop_is_explained(study_dir, df):
    """Each trial completed or pruned, at least one pruned; each pruned record's rung, estimates and
    reason are its decision in rungs.json; its MLflow run KILLED; Optuna PRUNED with its estimates."""
    assert set(df["status"]) <= {"completed", "pruned"} and (df["status"] == "pruned").any(), df
    stops = {trial: (step, d) for step, trial, d in decisions(study_dir) if not d["go_on"]}
    folder = StudyFolder(study_dir)
    pruned = df[df["status"] == "pruned"]
    assert sorted(stops) == sorted(pruned["trial_id"])
    for trial_id in pruned["trial_id"]:
        record = folder.trial(trial_id).read_record()
        step, decision = stops[trial_id]
        assert record.rung == decision["rung"] and record.estimates[str(step)] == decision["values"]
        assert record.failure_reason.startswith(f"stopped at rung {decision['rung']} (step {step}): ")
        assert (
            f"dominated by {decision['dominated_by']} of {decision['reached']} trials" in record.failure_reason
            or "on the front" in record.failure_reason
        )
    assert pruned[["recon", "mig"]].isna().all().all()  # no final values for a stopped trial
    runs = {r.info.run_id: r for r in _client(study_dir).search_runs(["1"])}
    for _, row in df.iterrows():
        assert runs[row["mlflow_run_id"]].info.status == ("KILLED" if row["status"] == "pruned" else "FINISHED")
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{folder.optuna_db}")
    states = [t.state for t in study.get_trials()]
    assert states.count(TrialState.PRUNED) == len(pruned) and states.count(TrialState.COMPLETE) == len(df) - len(pruned)
    assert all("rung_estimates" in t.user_attrs for t in study.get_trials() if t.state == TrialState.PRUNED)


def _client(study_dir):
    from mlflow.tracking import MlflowClient

    return MlflowClient(f"sqlite:///{StudyFolder(study_dir).mlflow_db}")


def test_an_unpacked_study_stops_trials_at_rungs(cli):
    proc, study_dir = cli.study(pareto_study())
    df = load_results(study_dir)
    assert len(df) == 5
    check_every_stop_is_explained(study_dir, df)
    for reason in df.loc[df["status"] == "pruned", "failure_reason"]:
        assert reason[:60] in proc.stdout  # the run log says who stopped, where and why
    # The rungs are in the report.
    assert "Rungs" in (study_dir / "report.html").read_text()


def test_a_packed_study_cuts_stopped_members_and_trains_the_others_on(cli):
    proc, study_dir = cli.study(pareto_study(pack_size=3))
    df = load_results(study_dir)
    assert len(df) == 5 and set(df["pack_size"]) == {3, 2}
    check_every_stop_is_explained(study_dir, df)
    for reason in df.loc[df["status"] == "pruned", "failure_reason"]:
        assert reason[:60] in proc.stdout  # a member's stop is told too, at once or when its pack ends
    folder = StudyFolder(study_dir)
    last_step = {t: max(h["step"] for h in folder.trial(t).history() if h["split"] == "train") for t in df["trial_id"]}
    cut_and_went_on = [
        (trial, mate)
        for pack, members in df.groupby("pack_id")
        for trial in members.loc[members["status"] == "pruned", "trial_id"]
        for mate in members["trial_id"]
        if last_step[mate] > last_step[trial]
    ]
    # A stopped member trained no step after its rung, while a pack mate went on.
    assert cut_and_went_on, last_step


@pytest.mark.long
def test_a_killed_study_resumes_with_its_rungs(cli):
    spec = tiny_spec(
        training={"steps": 60, "checkpoint_every": 10},
        search={"num_trials": 4, "seed": 3, "early_stopping": {**STOPPING, "reduction_factor": 2}},
    )
    study_dir, _, _ = kill_midway(cli, spec, packs=False)
    before = decisions(study_dir)
    assert before
    proc = cli.run("resume", study_dir, "--take-over")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    after = decisions(study_dir)
    # Nothing decided before the kill is forgotten or decided again.
    assert [d for d in after if (d[0], d[1]) in {(s, t) for s, t, _ in before}] == before
    assert len({(s, t) for s, t, _ in after}) == len(after)
    # Arrivals after the resume were ranked among those before it: each rung counts on, 1, 2, 3, ...
    for step in {s for s, _, _ in after}:
        assert [d["reached"] for s, _, d in after if s == step] == list(
            range(1, 1 + sum(s == step for s, _, _ in after))
        )
    df = load_results(study_dir)
    assert len(df) == 4 and df["trial_id"].is_unique
    check_every_stop_is_explained(study_dir, df)
    assert json.loads(StudyFolder(study_dir).rungs.read_text())["steps"] == [10, 20, 40]
