"""A tiny study through the real thing: `vae-study run` → local Ray Tune + Optuna → MLflow SQLite → parquet."""

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest
import yaml
from mlflow.tracking import MlflowClient

from analysis import load_results
from trainers.checkpoint import load_checkpoint

pytestmark = pytest.mark.integration

TINY = {
    "name": "tiny",
    "variant": "beta_vae",
    "model": {"latent_dim": 4},
    "training": {"steps": 20, "batch_size": 16, "lr": 1e-3, "log_every": 5, "checkpoint_every": 10},
    "evaluation": {"recon_points": 64, "metric_options": {"mig": {"num_points": 500}}},
    "seeds": [0, 1],
    "weights": {
        "beta": {
            "schedule": ["constant", "linear"],
            "value": {"low": 0.5, "high": 8, "log": True},
            "end": {"low": 0.5, "high": 8, "log": True},
            "end_step": {"low": 5, "high": 15},
        }
    },
    "objectives": [{"name": "recon", "mode": "min"}, {"name": "mig", "mode": "max"}],
    "search": {"num_trials": 3, "max_concurrent": 2, "storage": "sqlite"},
    "tracking": {"flush_every": 10},
}


def _run(spec: dict, folder):
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    study_dir = folder / "study"
    proc = subprocess.run(
        [sys.executable, "-m", "study.cli", "run", str(path), "--study-dir", str(study_dir)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc, study_dir


def _runs(study_dir):
    client = MlflowClient(f"sqlite:///{study_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    return _run(TINY, tmp_path_factory.mktemp("tiny"))


def test_run_prints_where_the_results_are(tiny_study):
    proc, study_dir = tiny_study
    assert "3 completed" in proc.stdout
    assert f"mlflow ui --backend-store-uri sqlite:///{study_dir}/mlflow.db" in proc.stdout
    assert (study_dir / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_results_parquet_has_one_row_per_trial(tiny_study):
    _, study_dir = tiny_study
    df = load_results(study_dir)
    assert len(df) == 3 and (df["status"] == "completed").all()
    terms = ["recon", "kl", "index_code_mi", "total_correlation", "dimwise_kl", "loss", "beta", "mig"]
    for column in [*terms, "beta.schedule", "seed", "mlflow_run_id", "checkpoint", "images_per_second"]:
        assert column in df.columns, column
    assert df[terms].notna().all().all()
    assert set(df["seed"]) <= {0, 1}
    assert set(df["beta.schedule"]) <= {"constant", "linear"}
    assert df.attrs["objectives"] == [{"name": "recon", "mode": "min"}, {"name": "mig", "mode": "max"}]
    # The decomposition sums to the single-sample KL, which is close to the analytic KL.
    decomposed = df["index_code_mi"] + df["total_correlation"] + df["dimwise_kl"]
    assert (decomposed - df["kl"]).abs().max() < 0.5 + 0.2 * df["kl"].max()
    for path in df["checkpoint"]:
        assert load_checkpoint(path)["step"] == 20


def test_mlflow_has_a_parent_run_and_one_nested_run_per_trial(tiny_study):
    _, study_dir = tiny_study
    client, parents, children = _runs(study_dir)
    assert len(parents) == 1 and len(children) == 3
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["search_algorithm"] == "optuna-tpe"
    assert {a.path for a in client.list_artifacts(parent.info.run_id)} >= {
        "spec.yaml",
        "results.parquet",
        "pareto.png",
        "report.html",
    }
    df = load_results(study_dir)
    assert {c.info.run_id for c in children} == set(df["mlflow_run_id"])
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.status == "FINISHED" and child.data.tags["status"] == "completed"
        assert child.data.params["variant"] == "beta_vae" and "beta.schedule" in child.data.params
        history = client.get_metric_history(child.info.run_id, "recon")
        assert [m.step for m in history] == [5, 10, 15, 20, 20]  # every log, then the held-out value
        assert {a.path for a in client.list_artifacts(child.info.run_id)} == {
            "model.pt",
            "codes.npz",
            "reconstructions.png",
            "traversals.png",
            "traversals.gif",
            "config.json",
            "metrics.json",
        }
        row = df[df["mlflow_run_id"] == child.info.run_id].iloc[0]
        assert child.data.metrics["mig"] == pytest.approx(row["mig"])
        assert child.data.metrics["recon"] == pytest.approx(row["recon"])


def test_history_parquet_holds_every_logged_term(tiny_study):
    import pandas as pd

    _, study_dir = tiny_study
    history = pd.read_parquet(study_dir / "history.parquet")
    df = load_results(study_dir)
    assert set(history["trial_id"]) == set(df["trial_id"])
    train = history[history["split"] == "train"]
    for _, rows in train.groupby("trial_id"):
        assert sorted(rows[rows["term"] == "recon"]["step"]) == [5, 10, 15, 20]
        assert {"recon", "kl", "total_correlation", "beta", "loss"} <= set(rows["term"])
    heldout = history[(history["split"] == "heldout") & (history["term"] == "mig")].set_index("trial_id")["value"]
    assert heldout.to_dict() == pytest.approx(df.set_index("trial_id")["mig"].to_dict())


def test_status_of_a_finished_study(tiny_study):
    _, study_dir = tiny_study
    proc = subprocess.run([sys.executable, "-m", "study.cli", "status", str(study_dir)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "3 planned: 3 completed, 0 failed, 0 crashed, 0 running, 0 pending" in proc.stdout
    assert "best      mig = " in proc.stdout


def test_the_searchers_history_is_in_the_optuna_storage(tiny_study):
    import optuna

    _, study_dir = tiny_study
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{study_dir / 'optuna.db'}")
    assert [d.name for d in study.directions] == ["MINIMIZE", "MAXIMIZE"]
    assert len(study.trials) == 3 and all(t.state.name == "COMPLETE" for t in study.trials)
    df = load_results(study_dir)
    import numpy as np

    told = np.array(sorted(tuple(t.values) for t in study.trials))
    np.testing.assert_allclose(told, np.array(sorted(zip(df["recon"], df["mig"], strict=True))))
    assert {t.user_attrs["seed"] for t in study.trials} <= {0, 1}


def test_export_is_idempotent(tiny_study):
    _, study_dir = tiny_study
    before = pq.read_table(study_dir / "results.parquet")
    history = pq.read_table(study_dir / "history.parquet")
    proc = subprocess.run([sys.executable, "-m", "study.cli", "export", str(study_dir)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert pq.read_table(study_dir / "results.parquet").equals(before)
    assert pq.read_table(study_dir / "history.parquet").equals(history)


def test_diverging_trials_are_recorded_failed_and_the_study_finishes(tmp_path):
    spec = {**TINY, "training": {**TINY["training"], "lr": 100.0}, "search": {"num_trials": 2, "max_concurrent": 2}}
    proc, study_dir = _run(spec, tmp_path)
    assert "2 failed" in proc.stdout
    df = load_results(study_dir)
    assert len(df) == 2 and (df["status"] == "failed").all()
    assert (df["failed_term"] == "recon").all() and (df["failed_step"] == 1).all()
    assert df["failure_reason"].str.contains("non-finite at step 1").all()
    _, _, children = _runs(study_dir)
    assert len(children) == 2  # the retry did not open a second run
    for child in children:
        assert child.info.status == "FAILED" and "non-finite" in child.data.tags["failure_reason"]


def test_a_killed_trial_resumes_from_its_checkpoint_in_the_same_mlflow_run(tmp_path):
    spec = {
        **TINY,
        "training": {**TINY["training"], "steps": 600, "log_every": 10, "checkpoint_every": 100},
        "search": {"num_trials": 1, "max_concurrent": 1, "max_failures": 2},
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    study_dir = tmp_path / "study"
    proc = subprocess.Popen(
        [sys.executable, "-m", "study.cli", "run", str(path), "--study-dir", str(study_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Wait for the first checkpoint, then SIGKILL the worker process training the trial.
    deadline = time.monotonic() + 240
    killed_pid = None
    while killed_pid is None and time.monotonic() < deadline and proc.poll() is None:
        for trial_dir in (study_dir / "ray").glob("run_trial_*"):
            results = trial_dir / "result.json"
            if list(trial_dir.glob("checkpoint_*")) and results.exists() and results.read_text().strip():
                killed_pid = json.loads(results.read_text().strip().splitlines()[-1])["pid"]
                os.kill(killed_pid, signal.SIGKILL)
                break
        time.sleep(0.05)
    stdout, stderr = proc.communicate(timeout=300)
    assert killed_pid is not None, stdout[-2000:] + stderr[-3000:]
    assert proc.returncode == 0, stdout[-2000:] + stderr[-3000:]

    df = load_results(study_dir)
    assert len(df) == 1 and df["status"].iloc[0] == "completed"
    resumed = int(df["resumed_from_step"].iloc[0])
    assert resumed in (100, 200, 300, 400, 500)  # it did not restart at zero
    client, _, children = _runs(study_dir)
    assert len(children) == 1  # re-attached, no second run
    child = children[0]
    assert child.info.status == "FINISHED" and child.info.run_id == df["mlflow_run_id"].iloc[0]
    steps = [m.step for m in client.get_metric_history(child.info.run_id, "recon")]
    assert set(steps) == set(range(10, 601, 10))
    import pandas as pd

    history = pd.read_parquet(study_dir / "history.parquet")
    recon = history[(history["split"] == "train") & (history["term"] == "recon")]
    assert list(recon["step"]) == list(range(10, 601, 10))  # re-logged steps after the resume count once


def test_a_grid_over_variants_runs_every_combination(tmp_path):
    spec = {
        **{k: v for k, v in TINY.items() if k not in ("weights",)},
        "variants": {
            "beta_tcvae": {"weights": {"beta": [2, 6]}},
            "factor_vae": {"weights": {"gamma": [10]}},
        },
        "seeds": [3, 4],
        "search": {"mode": "grid", "max_concurrent": 2},
    }
    spec.pop("variant", None)
    proc, study_dir = _run({**spec, "name": "tiny"}, tmp_path)
    assert "6 completed" in proc.stdout
    df = load_results(study_dir)
    assert sorted(
        zip(df["variant"], df["beta.value"].fillna(0), df["gamma.value"].fillna(0), df["seed"], strict=True)
    ) == [
        ("beta_tcvae", 2.0, 0.0, 3),
        ("beta_tcvae", 2.0, 0.0, 4),
        ("beta_tcvae", 6.0, 0.0, 3),
        ("beta_tcvae", 6.0, 0.0, 4),
        ("factor_vae", 0.0, 10.0, 3),
        ("factor_vae", 0.0, 10.0, 4),
    ]
    factor = df[df["variant"] == "factor_vae"].iloc[0]
    assert 0.0 <= factor["discriminator_accuracy"] <= 1.0 and factor["tc_discriminator"] == factor["tc_discriminator"]
    # Two seeds of each configuration: UDR compares them; with two, both get the pair's score.
    assert df["udr"].between(0, 1).all()
    for _, pair in df.groupby(["variant", df["beta.value"].fillna(0)]):
        assert pair["udr"].nunique() == 1
    assert "UDR" in (study_dir / "report.html").read_text()
    _, parents, children = _runs(study_dir)
    assert parents[0].data.tags["search_algorithm"] == "grid" and len(children) == 6
    assert "report.html" in {
        a.path for a in MlflowClient(f"sqlite:///{study_dir / 'mlflow.db'}").list_artifacts(parents[0].info.run_id)
    }
