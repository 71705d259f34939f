"""A study tracked by a real ``mlflow server`` process on a free loopback port."""

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from analysis import load_results

pytestmark = pytest.mark.integration


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    mlflow = Path(sys.executable).with_name("mlflow")
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(
        [
            str(mlflow), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{root / 'backend.db'}",
            "--artifacts-destination", str(root / "artifacts"),
        ],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {(root / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


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
