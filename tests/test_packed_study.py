"""Packed studies end to end: each member of a pack is its own Optuna trial, MLflow run and parquet row."""

import json

import optuna
import pytest
from test_study_integration import TINY, _run, _runs

from analysis import load_results

pytestmark = pytest.mark.integration


def test_an_optuna_study_in_packs_tells_each_member_its_own_result(tmp_path):
    spec = {
        **TINY,
        "training": {**TINY["training"], "pack_size": 2},
        "search": {**TINY["search"], "num_trials": 4, "max_concurrent": 1},
    }
    proc, study_dir = _run(spec, tmp_path)
    assert "4 completed" in proc.stdout
    df = load_results(study_dir)
    assert len(df) == 4 and (df["status"] == "completed").all()
    assert df["pack_id"].nunique() == 2 and (df["pack_size"] == 2).all()
    assert sorted(df["trial_id"].str[-3:]) == ["-m0", "-m0", "-m1", "-m1"]

    # Optuna: four COMPLETE trials, each told the values its member wrote.
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{study_dir / 'optuna.db'}")
    trials = {t.number: t for t in study.get_trials()}
    assert len(trials) == 4 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials.values())
    for row in df.itertuples():
        config = json.loads((study_dir / "trials" / row.trial_id / "trial_config.json").read_text())
        told = trials[config["config"]["optuna"]["number"]]
        assert told.values == pytest.approx([row.recon, row.mig])
        assert told.params == config["config"]["optuna"]["params"]
    assert df[["beta.schedule", "seed"]].astype(str).agg("/".join, axis=1).nunique() >= 2

    # MLflow: one nested run per member, with its own term history and artifacts.
    client, _, children = _runs(study_dir)
    assert sorted(r.data.tags["trial_id"] for r in children) == sorted(df["trial_id"])
    for run in children:
        assert run.info.status == "FINISHED"
        assert len(client.get_metric_history(run.info.run_id, "recon")) >= 4
        assert "model.pt" in {a.path for a in client.list_artifacts(run.info.run_id)}
    assert len({round(v, 4) for v in df["recon"]}) == 4  # four trainings, not one four times


def test_a_diverging_member_is_recorded_failed_and_its_pack_finishes(tmp_path):
    spec = {
        **{k: v for k, v in TINY.items() if k != "weights"},
        "weights": {"beta": {"choices": [4.0, 1e39]}},
        "seeds": [0],
        "training": {**TINY["training"], "pack_size": 2},
        "objectives": [{"name": "recon", "mode": "min"}],
        "search": {"mode": "grid", "max_concurrent": 1},
    }
    proc, study_dir = _run(spec, tmp_path)
    assert "1 completed" in proc.stdout and "1 failed" in proc.stdout
    df = load_results(study_dir).set_index("beta.value")
    assert df["pack_id"].nunique() == 1
    assert df.loc[4.0, "status"] == "completed" and df.loc[4.0, "mig"] >= 0
    failed = df.loc[1e39]
    assert failed["status"] == "failed" and failed["failed_term"] == "loss" and failed["failed_step"] == 0
    _, _, children = _runs(study_dir)
    status = {r.data.tags["trial_id"]: (r.info.status, r.data.tags.get("failure_reason", "")) for r in children}
    assert status[failed["trial_id"]][0] == "FAILED" and "non-finite" in status[failed["trial_id"]][1]
    assert status[df.loc[4.0, "trial_id"]][0] == "FINISHED"
