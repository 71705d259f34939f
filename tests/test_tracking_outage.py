"""A real ``mlflow server`` that goes away while a trial trains and comes back."""

import json
import time

import pytest
from mlflow.tracking import MlflowClient

from analysis.folder import SPILL_FILE
from study.tracking import TrialTracker, open_study_run, replay_spill

pytestmark = pytest.mark.integration


def _study(url, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: outage\n")
    return open_study_run(url, f"outage-{time.monotonic_ns()}", tmp_path, {"study": "outage"}, spec)


def _wait(predicate, seconds=60.0):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_metrics_logged_during_an_outage_arrive_when_the_server_returns(restartable_mlflow_server, tmp_path):
    server = restartable_mlflow_server
    study = _study(server.url, tmp_path)
    spill = tmp_path / SPILL_FILE
    tracker = TrialTracker(study, "t", {}, {"beta.value": 4}, flush_every=5, spill_file=spill, max_backoff=1.0)
    for step in range(1, 11):
        tracker.log_terms(step, {"recon": float(step)})
    _wait(lambda: tracker.backlog == 0)

    server.stop()
    began = time.monotonic()
    for step in range(11, 41):
        tracker.log_terms(step, {"recon": float(step)})
    tracker.log_artifacts([tmp_path / "spec.yaml"])
    assert time.monotonic() - began < 1.0  # training does not wait for the server
    time.sleep(2.0)  # several failed deliveries
    assert tracker.backlog > 0

    server.start()
    _wait(lambda: tracker.backlog == 0)
    assert tracker.close("FINISHED", timeout=30) == 0
    assert not spill.exists()
    client = MlflowClient(server.url)
    assert [m.step for m in client.get_metric_history(tracker.run_id, "recon")] == list(range(1, 41))
    assert [a.path for a in client.list_artifacts(tracker.run_id)] == ["spec.yaml"]
    assert client.get_run(tracker.run_id).info.status == "FINISHED"


def test_a_full_buffer_and_a_server_still_away_at_the_end_spill_then_sync(restartable_mlflow_server, tmp_path):
    server = restartable_mlflow_server
    study = _study(server.url, tmp_path)
    spill = tmp_path / SPILL_FILE
    tracker = TrialTracker(
        study, "t", {}, {}, flush_every=1, spill_file=spill, max_buffered=20, max_backoff=0.5
    )  # fmt: skip
    server.stop()
    for step in range(1, 101):
        tracker.log_terms(step, {"recon": float(step), "kl": -float(step)})
        assert tracker.backlog <= 20  # bounded: the rest goes to disk as it comes
    assert spill.exists()
    assert tracker.close("FINISHED", timeout=0.5) == 200
    assert {json.loads(line)["op"] for line in spill.read_text().splitlines()} == {"metrics", "terminate"}

    server.start()
    delivered, left = replay_spill(server.url, spill)
    assert left == 0 and delivered > 0 and not spill.exists()
    client = MlflowClient(server.url)
    for key in ("recon", "kl"):
        assert sorted(m.step for m in client.get_metric_history(tracker.run_id, key)) == list(range(1, 101))
    assert client.get_run(tracker.run_id).info.status == "FINISHED"
