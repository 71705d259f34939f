"""Ray Tune's experiment state in S3: a moto S3 server on loopback as the bucket."""

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from scaffold import free_port, tiny_spec

from analysis import load_results

pytestmark = pytest.mark.integration

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture()
def s3_endpoint(tmp_path):
    pytest.importorskip("moto", reason="needs moto[server] (pip install '.[dev]')")
    port = free_port()
    log = (tmp_path / "moto.log").open("w")
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
                pytest.fail((tmp_path / "moto.log").read_text()[-2000:])
            time.sleep(0.2)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def test_tunes_experiment_state_goes_to_the_bucket(s3_endpoint, cli, monkeypatch):
    import boto3

    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="studies")
    spec = tiny_spec(
        name="in-s3",
        training={"steps": 40, "log_every": 10, "checkpoint_every": 20},
        weights={"beta": {"schedule": "constant", "value": {"low": 1, "high": 4}}},
        objectives=[{"name": "recon", "mode": "min"}],
        search={"num_trials": 2, "max_concurrent": 2, "storage": None},
        storage={"path": "s3://studies/in-s3", "endpoint": s3_endpoint},
    )
    _, study_dir = cli.study(spec)
    df = load_results(study_dir)
    assert len(df) == 2 and (df["status"] == "completed").all()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="studies", Prefix="in-s3/")["Contents"]]
    assert any("/experiment_state" in k for k in keys)
    # Checkpoints are the trials' own, once, in the study folder (removed when a trial ends): none in S3.
    assert not any(k.endswith("state.pt") for k in keys), keys
    assert not (study_dir / "ray").exists()  # nothing of Tune's in the local folder


def test_an_endpoint_needs_an_s3_path():
    from study.spec import SpecError, StudySpec, check_spec

    base = yaml.safe_load((Path(__file__).parents[1] / "examples" / "default.yaml").read_text())
    spec = StudySpec.model_validate({**base, "storage": {"path": "/tmp/x", "endpoint": "http://127.0.0.1:1"}})
    with pytest.raises(SpecError, match=r"storage\.endpoint: only for an s3:// storage\.path"):
        check_spec(spec)
