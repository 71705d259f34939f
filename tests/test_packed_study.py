"""Packed studies end to end: each member of a pack is its own Optuna trial, MLflow run and parquet row."""

import optuna
import pytest

from analysis import load_results
from study.folder import StudyFolder

pytestmark = pytest.mark.integration


def test_an_optuna_study_in_packs_tells_each_member_its_own_result(cli, make_spec, mlflow_runs):
    spec = make_spec(training={"pack_size": 2}, search={"num_trials": 4, "max_concurrent": 1})
    proc, study_dir = cli.study(spec)
    assert "4 completed" in proc.stdout
    df = load_results(study_dir)
    assert len(df) == 4 and (df["status"] == "completed").all()
    assert df["pack_id"].nunique() == 2 and (df["pack_size"] == 2).all()
    assert sorted(df["trial_id"].str[-3:]) == ["-m0", "-m0", "-m1", "-m1"]

    # Optuna: four COMPLETE trials, each told the values its member wrote.
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{study_dir / 'optuna.db'}")
    trials = {t.number: t for t in study.get_trials()}
    assert len(trials) == 4 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials.values())
    folder = StudyFolder(study_dir)
    for row in df.itertuples():
        plan = folder.trial(row.trial_id).read_plan()
        told = trials[plan.optuna["number"]]
        assert told.values == pytest.approx([row.recon, row.mig])
        assert told.params == plan.optuna["params"]
    assert df[["beta.schedule", "seed"]].astype(str).agg("/".join, axis=1).nunique() >= 2

    # MLflow: one nested run per member, with its own term history and artifacts.
    runs = mlflow_runs(study_dir)
    assert sorted(runs.by_trial) == sorted(df["trial_id"])
    for run in runs.children:
        assert run.info.status == "FINISHED"
        assert len(runs.history(run, "recon")) >= 4
        assert "model.pt" in runs.artifacts(run)
    assert len({round(v, 4) for v in df["recon"]}) == 4  # four trainings, not one four times


def test_diverging_members_fail_alone_in_a_pack_and_as_a_pack_of_one(cli, make_spec, mlflow_runs):
    # Three grid points in packs of two: [4, 1e39] trains stacked, [2e39] alone (the plain loop).
    spec = make_spec(
        weights={"beta": {"choices": [4.0, 1e39, 2e39]}},
        seeds=[0],
        training={"pack_size": 2},
        objectives=[{"name": "recon", "mode": "min"}],
        search={"mode": "grid", "max_concurrent": 1, "storage": None},
    )
    proc, study_dir = cli.study(spec)
    assert "1 completed" in proc.stdout and "2 failed" in proc.stdout
    df = load_results(study_dir).set_index("beta.value")
    assert sorted(df["pack_size"]) == [1, 2, 2] and df["pack_id"].nunique() == 2
    assert df.loc[4.0, "status"] == "completed" and df.loc[4.0, "mig"] >= 0
    runs = mlflow_runs(study_dir)
    assert len(runs.children) == 3  # no retry opened a second run
    for beta in (1e39, 2e39):
        failed = df.loc[beta]
        assert failed["status"] == "failed" and failed["failed_term"] == "loss" and failed["failed_step"] == 0
        assert failed["failure_reason"] == "term 'loss' became non-finite at step 0"
        run = runs.by_trial[failed["trial_id"]]
        assert run.info.status == "FAILED" and "non-finite" in run.data.tags["failure_reason"]
    assert runs.by_trial[df.loc[4.0, "trial_id"]].info.status == "FINISHED"
