"""A study tracked by a real ``mlflow server`` process on a free loopback port."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from analysis import load_results

pytestmark = pytest.mark.integration


def test_a_study_logs_runs_histories_and_artifacts_to_a_tracking_server(mlflow_server, tmp_path):
    spec = {
        "name": "served",
        "variant": "beta_vae",
        "model": {"latent_dim": 4},
        "training": {"steps": 20, "batch_size": 16, "lr": 1e-3, "log_every": 5},
        "evaluation": {"recon_points": 64, "mig_points": 500},
        "weights": {"beta": {"schedule": "constant", "value": {"low": 1, "high": 4}}},
        "objectives": [{"name": "recon", "mode": "min"}, {"name": "mig", "mode": "max"}],
        "search": {"num_trials": 2, "max_concurrent": 2},
        "tracking": {"uri": mlflow_server, "flush_every": 10},
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    study_dir = tmp_path / "study"
    proc = subprocess.run(
        [sys.executable, "-m", "study.cli", "run", str(path), "--study-dir", str(study_dir)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert f"--backend-store-uri {mlflow_server}" in proc.stdout
    assert not (study_dir / "mlflow.db").exists()  # nothing tracked locally

    client = MlflowClient(mlflow_server)
    experiment = client.get_experiment_by_name("served")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 2
    df = load_results(study_dir)
    assert {c.info.run_id for c in children} == set(df["mlflow_run_id"])
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert [m.step for m in client.get_metric_history(child.info.run_id, "kl")] == [5, 10, 15, 20, 20]
        names = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"model.pt", "traversals.gif", "metrics.json"} <= names
        local = client.download_artifacts(child.info.run_id, "metrics.json", str(tmp_path))
        assert (
            Path(local).read_text()
            == (study_dir / "trials" / child.data.tags["trial_id"] / "artifacts" / "metrics.json").read_text()
        )
