"""A study on a real two-node Ray cluster on loopback (token auth), and the loss of a node.

Each node is its own ``ray start --block`` process group with its own temp dir, so
killing a group kills that node's raylet and the trial workers it started, as when
a machine is lost: Tune retries the lost trial from its checkpoint, in its MLflow run.
"""

import json
import time
from pathlib import Path

import pandas as pd
import pytest
from scaffold import Cli, LoopbackCluster, StudyRuns, descendants, tiny_spec

from analysis import load_results
from study.folder import StudyFolder, checkpoint_dir, checkpoint_step

pytestmark = [pytest.mark.integration, pytest.mark.long]


@pytest.fixture()
def cluster(tmp_path):
    cluster = LoopbackCluster(tmp_path)
    cluster.start_head()
    cluster.start_node("worker", f"--address={cluster.address}")
    try:
        cluster.wait_for_nodes(2)
        yield cluster
    finally:
        cluster.stop()


SPEC = tiny_spec(
    name="clustered",
    training={"steps": 200, "log_every": 10, "checkpoint_every": 50},
    weights={"beta": {"schedule": "constant", "value": {"low": 0.5, "high": 8, "log": True}}},
    search={"num_trials": 3, "max_concurrent": 2, "max_failures": 3},
    storage={"shared": True},  # one machine: the study folder is on every node's filesystem
)


def _trial_on(study_dir: Path, node_pid: int) -> str | None:
    """A trial whose worker process runs under the node started as ``node_pid`` and has checkpointed."""
    family = descendants(node_pid)
    for trial in StudyFolder(study_dir).trials():
        try:
            meta = json.loads(trial.meta_file.read_text())
        except (OSError, ValueError):
            continue
        if meta.get("pid") in family and (checkpoint_step(checkpoint_dir(trial.path)) or 0) >= 50:
            return trial.trial_id
    return None


def test_a_study_survives_losing_a_worker_node(cluster, tmp_path):
    cli = Cli(tmp_path, env=cluster.env)
    # Without shared storage declared, a multi-node run is refused before anything is written.
    refused = cli.run("run", cli.write_spec({**SPEC, "storage": {}}, "unshared.yaml"), "--study-dir",
                      tmp_path / "refused", "--address", cluster.address, timeout=300)  # fmt: skip
    assert refused.returncode == 2 and "storage.shared: this Ray cluster has 2 nodes" in refused.stderr
    assert not (tmp_path / "refused").exists()

    study_dir = tmp_path / "study"
    worker_node = cluster.nodes["worker"].pid
    driver = cli.popen("run", cli.write_spec(SPEC), "--study-dir", study_dir, "--address", cluster.address)
    deadline = time.monotonic() + 300
    victim = None
    while victim is None and time.monotonic() < deadline and driver.poll() is None:
        victim = _trial_on(study_dir, worker_node)
        time.sleep(0.1)
    assert victim is not None, driver.communicate()[0][-4000:]
    cluster.kill_node("worker")  # its raylet and the trial worker on it die mid-trial

    out, _ = driver.communicate(timeout=600)
    assert driver.returncode == 0, out[-4000:]
    df = load_results(study_dir)
    assert len(df) == 3 and (df["status"] == "completed").all(), out[-3000:]
    # The trial of the lost node was retried on the head from its checkpoint ...
    row = df.set_index("trial_id").loc[victim]
    assert row["resumed_from_step"] in (50, 100, 150)
    # ... into the MLflow run it opened (no second run), its histories whole and each step once.
    runs = StudyRuns.of(study_dir, "clustered")
    assert len(runs.children) == 3 and runs.by_trial[victim].info.run_id == row["mlflow_run_id"]
    assert runs.by_trial[victim].info.status == "FINISHED"
    assert set(runs.history(runs.by_trial[victim], "recon")) == set(range(10, 201, 10))
    history = pd.read_parquet(study_dir / "history.parquet")
    recon = history[(history["trial_id"] == victim) & (history["split"] == "train") & (history["term"] == "recon")]
    assert list(recon["step"]) == list(range(10, 201, 10))
