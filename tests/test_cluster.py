"""A study on a real two-node Ray cluster on loopback (token auth), and the loss of a node.

Each node is its own ``ray start --block`` process group with its own temp dir, so
killing a group kills that node's raylet and the trial workers it started, as when
a machine is lost: Tune retries the lost trial from its checkpoint, in its MLflow run.
"""

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
from scaffold import Cli, StudyRuns, free_port, tiny_spec

from analysis import load_results
from study.folder import StudyFolder, checkpoint_dir, checkpoint_step

pytestmark = [pytest.mark.integration, pytest.mark.long]

RAY = str(Path(sys.executable).with_name("ray"))


class LoopbackCluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        token = secrets.token_hex(16)
        # Every node and the driver share the token; trials inherit it from their node.
        self.env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
        self.nodes: dict[str, subprocess.Popen] = {}
        # Ray's socket paths must stay under 107 bytes: a short folder, not pytest's.
        self.temp = tempfile.mkdtemp(prefix="vs-ray-", dir="/tmp")

    def start_node(self, name: str, *args: str) -> None:
        log = (self.root / f"{name}.log").open("w")
        self.nodes[name] = subprocess.Popen(
            [RAY, "start", "--block", "--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats",
             f"--temp-dir={self.temp}/{name}", *args],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def wait_for_nodes(self, count: int, timeout: float = 120) -> None:
        probe = f"import ray; ray.init(address='{self.address}'); print(sum(n['Alive'] for n in ray.nodes()))"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [name for name, proc in self.nodes.items() if proc.poll() is not None]
            if dead:
                pytest.fail(f"ray node {dead[0]} exited: {(self.root / f'{dead[0]}.log').read_text()[-3000:]}")
            out = subprocess.run([sys.executable, "-c", probe], env=self.env, capture_output=True, text=True)
            if out.returncode == 0 and out.stdout.strip().splitlines()[-1:] == [str(count)]:
                return
            time.sleep(1)
        pytest.fail(f"cluster did not reach {count} nodes: {out.stdout[-500:]} {out.stderr[-2000:]}")

    def kill_node(self, name: str) -> None:
        """SIGKILL the node: its raylet and every process it started (workers may leave the group)."""
        proc = self.nodes.pop(name)
        family = descendants(proc.pid)
        os.killpg(proc.pid, signal.SIGKILL)
        for pid in family:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()

    def stop(self) -> None:
        for name in list(self.nodes):
            self.kill_node(name)
        shutil.rmtree(self.temp, ignore_errors=True)


@pytest.fixture()
def cluster(tmp_path):
    cluster = LoopbackCluster(tmp_path)
    cluster.start_node("head", "--head", f"--port={cluster.port}", "--include-dashboard=false")
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


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def descendants(root: int) -> set[int]:
    """Every live process below ``root`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                children.setdefault(_parent(int(entry)), []).append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    found, stack = set(), [root]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


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
