"""ASHA early stopping of a single-objective Optuna study, on a real local Ray."""

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from analysis import load_results
from study.spec import SpecError, StudySpec, check_spec

BASE = {
    "name": "stopping",
    "variant": "beta_vae",
    "model": {"latent_dim": 4},
    "training": {"steps": 100, "batch_size": 16, "lr": 1e-3, "log_every": 10, "checkpoint_every": 20},
    "evaluation": {"recon_points": 64, "udr_points": 100, "metric_options": {"mig": {"num_points": 500}}},
    # β spans three decades: high-β trials reconstruct far worse and are the ones to stop.
    "weights": {"beta": {"schedule": "constant", "value": {"low": 0.1, "high": 500, "log": True}}},
    "objectives": [{"name": "recon", "mode": "min"}],
    "search": {
        "num_trials": 5, "max_concurrent": 2, "storage": "sqlite", "sampler": "random", "seed": 3,
        "early_stopping": {"scheduler": "asha", "metric": "loss", "grace_period": 20, "reduction_factor": 2},
    },
    "tracking": {"flush_every": 10},
}  # fmt: skip


def test_early_stopping_is_refused_for_multi_objective_studies():
    spec = {**BASE, "objectives": [{"name": "recon", "mode": "min"}, {"name": "mig", "mode": "max"}]}
    with pytest.raises(SpecError, match=r"search\.early_stopping: only for single-objective"):
        check_spec(StudySpec.model_validate(spec))


def test_early_stopping_names_an_unknown_term():
    spec = {**BASE, "search": {**BASE["search"], "early_stopping": {"metric": "mig"}}}
    with pytest.raises(SpecError, match=r"search\.early_stopping\.metric: 'mig' is not a training term"):
        check_spec(StudySpec.model_validate(spec))


@pytest.mark.integration
def test_stopped_trials_are_pruned_everywhere_and_never_complete(cli):
    _, study_dir = cli.study(BASE)
    df = load_results(study_dir)
    assert len(df) == 5 and set(df["status"]) <= {"completed", "pruned"}
    pruned = df[df["status"] == "pruned"]
    assert len(pruned) >= 1, df[["trial_id", "status", "beta.value"]]
    assert pruned["failure_reason"].str.match(r"stopped early by asha at step (20|40|60|80) \(loss=").all()
    assert pruned["recon"].isna().all()  # no final value for a truncated trial
    # Stopped for a worse loss: every pruned trial had a larger β than the best completed one.
    completed = df[df["status"] == "completed"]
    assert pruned["beta.value"].min() > completed.loc[completed["recon"].idxmin(), "beta.value"]

    client = MlflowClient(f"sqlite:///{study_dir / 'mlflow.db'}")  # the study's own store
    for _, row in df.iterrows():
        run = client.get_run(row["mlflow_run_id"])
        expected = ("KILLED", "pruned") if row["status"] == "pruned" else ("FINISHED", "completed")
        assert (run.info.status, run.data.tags["status"]) == expected

    study = optuna.load_study(study_name="stopping", storage=f"sqlite:///{study_dir / 'optuna.db'}")
    states = sorted(t.state.name for t in study.get_trials())
    assert states == sorted(["PRUNED"] * len(pruned) + ["COMPLETE"] * len(completed))
    # Each stopped trial keeps the objective it had at its checkpoints as Optuna's intermediate values.
    assert all(t.intermediate_values for t in study.get_trials() if t.state == TrialState.PRUNED)
    complete_values = sorted(t.value for t in study.get_trials() if t.state == TrialState.COMPLETE)
    assert complete_values == pytest.approx(sorted(completed["recon"]))
