"""A member of a pack fails alone: divergence in a stacked pack and in a pack of one (the plain loop).

Packed Optuna studies are checked by the tiny study (test_study_integration.py)."""

import pytest

from analysis import load_results

pytestmark = pytest.mark.integration


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
