"""A study on the services a shared cluster gives it: a real ``mlflow server`` process on a free
loopback port tracks it, and Tune's experiment state goes to an S3 bucket (a moto S3 server on
loopback)."""

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from scaffold import Cli, free_port, tiny_spec

from analysis import load_results

pytestmark = pytest.mark.integration

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory):
    """The URL of a moto S3 server on loopback, with the bucket ``studies``."""
    import boto3  # moto[server] and boto3 come with the dev extras

    root, port = tmp_path_factory.mktemp("moto"), free_port()
    log = (root / "moto.log").open("w")
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail((root / "moto.log").read_text()[-2000:])
            time.sleep(0.2)
    try:
        boto3.client("s3", endpoint_url=url, **_boto_credentials()).create_bucket(Bucket="studies")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def _boto_credentials() -> dict[str, str]:
    return {
        "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        "region_name": CREDENTIALS["AWS_DEFAULT_REGION"],
    }


@pytest.fixture(scope="module")
def served_study(mlflow_server, s3_endpoint, tmp_path_factory):
    """A finished two-trial study tracked by the server, its Tune state in the bucket:
    (server URL, S3 endpoint, study folder)."""
    spec = tiny_spec(
        name="served",
        weights={"beta": {"schedule": "constant", "value": {"low": 1, "high": 4}}},
        training={"steps": 20, "checkpoint_every": 10},  # a checkpoint mid-trial, which must not reach S3
        search={"num_trials": 2, "max_concurrent": 2, "storage": None},
        evaluation={"traversal_gif": True},
        tracking={"uri": mlflow_server, "log_models": True},  # the server holds a copy of every model
        storage={"path": "s3://studies/served", "endpoint": s3_endpoint},
    )
    cli = Cli(tmp_path_factory.mktemp("served"), env={**os.environ, **CREDENTIALS})
    proc, study_dir = cli.study(spec)
    assert f"browse runs  : {mlflow_server}" in proc.stdout
    return mlflow_server, s3_endpoint, study_dir


def _runs(url):
    client = MlflowClient(url)
    experiment = client.get_experiment_by_name("served")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return experiment, parents, children


def test_a_study_logs_runs_histories_and_artifacts_to_a_tracking_server(served_study, tmp_path):
    mlflow_server, _, study_dir = served_study
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


def test_tunes_experiment_state_goes_to_the_bucket(served_study):
    import boto3

    _, s3_endpoint, study_dir = served_study
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, **_boto_credentials())
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="studies", Prefix="served/").get("Contents", [])]
    assert any("/experiment_state" in k for k in keys), keys
    # Checkpoints are the trials' own, once, in the study folder (removed when a trial ends): none in S3.
    assert not any(k.endswith("state.pt") for k in keys), keys
    assert not (study_dir / "ray").exists()  # nothing of Tune's in the local folder


def test_the_mlflow_ui_shows_the_study_its_trials_and_term_charts(served_study, browser, tmp_path):
    url, _, _ = served_study
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
