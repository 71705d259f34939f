"""MLflow tracking with a PostgreSQL backend store (PostgreSQL runs on 127.0.0.1:5432 here).

The test creates a fresh database, tracks a study run and a nested trial run through
the project's tracker, and drops the database.  Where no PostgreSQL answers it is
skipped with the reason; ``.ci/run`` sets ``VAE_STUDY_REQUIRE_POSTGRES=1`` so that
CI fails instead of skipping.
"""

import pytest
from mlflow.tracking import MlflowClient

from study.tracking import TrialTracker, open_study_run

pytestmark = pytest.mark.integration


def test_study_and_trial_runs_in_a_postgres_store(postgres_uri, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: pg\n")
    study = open_study_run(postgres_uri, "pg", tmp_path / "artifacts", {"study": "pg"}, spec)
    tracker = TrialTracker(study, "trial-0", {"variant": "beta_vae"}, {"beta.value": 4.0}, flush_every=5)
    for step in range(1, 31):
        tracker.log_terms(step, {"recon": 100.0 / step, "kl": 0.1 * step})
    assert tracker.close("FINISHED") == 0
    client = MlflowClient(postgres_uri)
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["mlflow.parentRunId"] == study.parent_run_id
    assert [m.value for m in client.get_metric_history(tracker.run_id, "kl")] == pytest.approx(
        [0.1 * s for s in range(1, 31)]
    )
    assert [a.path for a in client.list_artifacts(study.parent_run_id)] == ["spec.yaml"]
