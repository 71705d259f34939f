"""A study tracked by a real ``mlflow server`` process on a free loopback port."""

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from scaffold import Cli, tiny_spec

from analysis import load_results

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def served_study(mlflow_server, tmp_path_factory):
    """A finished two-trial study tracked by the server: (server URL, study folder)."""
    spec = tiny_spec(
        name="served",
        training={"checkpoint_every": 0},
        weights={"beta": {"schedule": "constant", "value": {"low": 1, "high": 4}}},
        search={"num_trials": 2, "max_concurrent": 2, "storage": None},
        evaluation={"traversal_gif": True},
        tracking={"uri": mlflow_server, "log_models": True},  # the server holds a copy of every model
    )
    proc, study_dir = Cli(tmp_path_factory.mktemp("served")).study(spec)
    assert f"browse runs  : {mlflow_server}" in proc.stdout
    return mlflow_server, study_dir


def _runs(url):
    client = MlflowClient(url)
    experiment = client.get_experiment_by_name("served")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return experiment, parents, children


def test_a_study_logs_runs_histories_and_artifacts_to_a_tracking_server(served_study, tmp_path):
    mlflow_server, study_dir = served_study
    assert not (study_dir / "mlflow.db").exists()  # nothing tracked locally

    client = MlflowClient(mlflow_server)
    _, parents, children = _runs(mlflow_server)
    assert len(parents) == 1 and len(children) == 2
    df = load_results(study_dir)
    assert {c.info.run_id for c in children} == set(df["mlflow_run_id"])
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert [m.step for m in client.get_metric_history(child.info.run_id, "kl")] == [5, 10, 15, 20]
        assert [m.step for m in client.get_metric_history(child.info.run_id, "heldout/kl")] == [20]
        names = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"model.pt", "traversals.gif", "metrics.json"} <= names
        local = client.download_artifacts(child.info.run_id, "metrics.json", str(tmp_path))
        assert (
            Path(local).read_text()
            == (study_dir / "trials" / child.data.tags["trial_id"] / "artifacts" / "metrics.json").read_text()
        )


def test_the_mlflow_ui_shows_the_study_its_trials_and_term_charts(served_study, browser, tmp_path):
    url, _ = served_study
    experiment, (parent,), children = _runs(url)
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    # The address the run prints opens the experiment on its runs table, not on GenAI traces.
    page.goto(f"{url}/#/experiments/{experiment.experiment_id}?workflowType=machine_learning")
    parent_link = page.locator(f'a[href$="/runs/{parent.info.run_id}"]')
    parent_link.wait_for(timeout=60_000)
    assert parent_link.inner_text() == "served"
    page.get_by_text("3 matching runs").wait_for(timeout=10_000)
    # Trials are nested under the study's run: hidden until it is expanded.
    child_links = [page.locator(f'a[href$="/runs/{c.info.run_id}"]') for c in children]
    assert all(link.count() == 0 for link in child_links)
    page.locator(".ag-row").filter(has=parent_link).locator("button").first.click()
    for link, child in zip(child_links, children, strict=True):
        link.wait_for(timeout=10_000)
        assert link.inner_text() == child.info.run_name
    page.screenshot(path=str(tmp_path / "runs.png"))

    # A trial's metric charts: one per training term, plotted from its history, and the held-out
    # values in a section of their own (their heldout/ keys).
    child = children[0]
    page.goto(f"{url}/#/experiments/{experiment.experiment_id}/runs/{child.info.run_id}/model-metrics")
    page.get_by_text("heldout", exact=True).first.wait_for(timeout=60_000)
    page.get_by_text("Model metrics", exact=True).first.wait_for(timeout=10_000)
    for term in ("kl", "recon", "index_code_mi"):
        page.get_by_text(term, exact=True).first.wait_for(timeout=10_000)
    page.screenshot(path=str(tmp_path / "trial-metrics.png"), full_page=True)
    for name in ("runs.png", "trial-metrics.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
