"""TrialTracker against a real MLflow SQLite store, and against a server that is not there."""

import contextlib
import json
import sqlite3
import time

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from analysis.folder import SPILL_FILE
from study.cli import main
from study.tracking import (
    MAX_METRICS_PER_BATCH,
    StudyRun,
    TrialTracker,
    open_study_run,
    spilled_metric_count,
    store_template,
)


@pytest.fixture()
def study(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: t\n")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    return open_study_run(uri, "t", tmp_path / "artifacts", {"study": "t"}, spec)


def test_nested_run_batches_and_reattaches(study):
    tracker = TrialTracker(study, "trial-a", {"variant": "beta_vae"}, {"beta.value": 4.0}, flush_every=10)
    # 300 steps x 5 terms = 1,500 metrics: more than one log_batch allows.
    for step in range(1, 301):
        tracker.log_terms(step, {f"t{i}": step + i for i in range(5)})
    assert 300 * 5 > MAX_METRICS_PER_BATCH
    assert tracker.close("KILLED") == 0
    client = MlflowClient(study.tracking_uri)
    run = client.get_run(tracker.run_id)
    assert run.data.tags["mlflow.parentRunId"] == study.parent_run_id
    assert run.data.params == {"beta.value": "4.0"}
    assert [m.step for m in client.get_metric_history(tracker.run_id, "t3")] == list(range(1, 301))

    # A retried trial re-attaches to its run and continues its histories.
    again = TrialTracker(study, "trial-a", {}, {"beta.value": 4.0}, run_id=tracker.run_id, flush_every=10)
    deadline = time.monotonic() + 30
    while client.get_run(tracker.run_id).info.status != "RUNNING":  # sent by the tracker's thread
        assert time.monotonic() < deadline
        time.sleep(0.05)
    again.log_terms(301, {"t3": 0.5})
    again.close("FINISHED")
    assert client.get_run(tracker.run_id).info.status == "FINISHED"
    assert len(client.get_metric_history(tracker.run_id, "t3")) == 301
    children = client.search_runs([study.experiment_id], "tags.`mlflow.parentRunId` != ''")
    assert [r.info.run_id for r in children] == [tracker.run_id]


def test_undeliverable_tracking_is_written_beside_the_trial(study, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    (tmp_path / "trials" / "t1").mkdir(parents=True)
    spill = tmp_path / "trials" / "t1" / SPILL_FILE
    tracker = TrialTracker(study, "trial-b", {}, {"beta.value": 2}, flush_every=1000, spill_file=spill)
    deadline = time.monotonic() + 30
    while not MlflowClient(study.tracking_uri).get_run(tracker.run_id).data.params:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # The tracking server goes away after the run and its params were created: nothing else reaches it.
    tracker.client = MlflowClient("http://127.0.0.1:9")
    tracker.log_terms(1, {"recon": 1.0, "kl": 2.0})
    tracker.log_terms(2, {"recon": 0.5, "kl": 2.5})
    tracker.set_tags({"status": "completed"})
    assert tracker.close("FINISHED", timeout=1.0) == 4
    records = [json.loads(line) for line in spill.read_text().splitlines()]
    assert [r["op"] for r in records] == ["tags", "metrics", "terminate"]
    assert {r["run_id"] for r in records} == {tracker.run_id}
    assert sorted((k, s, v) for k, v, _, s in records[1]["metrics"]) == [
        ("kl", 1, 2.0),
        ("kl", 2, 2.5),
        ("recon", 1, 1.0),
        ("recon", 2, 0.5),
    ]
    assert spilled_metric_count(spill) == 4
    # `vae-study sync` replays it against the study's store: the run is whole, the file gone.
    (tmp_path / "spec.json").write_text(json.dumps({"tracking": {"uri": study.tracking_uri}}))
    assert main(["sync", str(tmp_path)]) == 0
    assert "3 operations delivered" in capsys.readouterr().out
    assert not spill.exists()
    run = MlflowClient(study.tracking_uri).get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.data.params == {"beta.value": "2"}
    assert run.data.tags["status"] == "completed" and run.data.metrics == {"recon": 0.5, "kl": 2.5}


def test_study_run_carries_the_spec(study):
    client = MlflowClient(study.tracking_uri)
    assert [a.path for a in client.list_artifacts(study.parent_run_id)] == ["spec.yaml"]
    assert isinstance(study, StudyRun)


def _schema(db):
    """Tables, indexes and their definitions (clauses as a set: MLflow's migrations do not
    order constraints the same way twice), and the schema version."""
    with contextlib.closing(sqlite3.connect(db)) as store:
        rows = store.execute("SELECT type, name, sql FROM sqlite_master").fetchall()
        version = store.execute("SELECT version_num FROM alembic_version").fetchall()
    clauses = set()
    for kind, name, sql in rows:
        clauses.add((kind, name, frozenset(line.strip().rstrip(",") for line in (sql or "").splitlines())))
    return clauses, version


def test_a_new_study_store_is_a_copy_of_the_store_mlflow_migrates(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: t\n")
    first, second = (tmp_path / name for name in ("a", "b"))
    for folder in (first, second):
        folder.mkdir()
        study = open_study_run(f"sqlite:///{folder / 'mlflow.db'}", "t", folder / "art", {}, spec)
        client = MlflowClient(study.tracking_uri)
        assert client.get_run(study.parent_run_id).info.experiment_id == study.experiment_id
        # The Default experiment keeps its artifacts in the study folder, not in the working directory.
        assert client.get_experiment("0").artifact_location == str(folder / "art" / "0")
    template = store_template()
    assert template == tmp_path / "cache" / "vae-study" / f"mlflow-{mlflow.__version__}.db"
    # The template is exactly what MLflow's own migrations build in a store it creates.
    MlflowClient(f"sqlite:///{tmp_path / 'migrated.db'}").search_experiments()
    assert _schema(template) == _schema(tmp_path / "migrated.db")
    assert _schema(second / "mlflow.db") == _schema(tmp_path / "migrated.db")
