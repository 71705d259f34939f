"""Studies as Ray Jobs on a real loopback cluster (``ray start --head``, dashboard on
127.0.0.1, token auth): submit two at once, list them, follow one, stop one and resume it
through ``submit --resume``; both end with exactly their trials after every submitting
process has exited."""

import re
import time
from pathlib import Path

import pandas as pd
import pytest
from scaffold import Cli, LoopbackCluster, StudyRuns, free_port, tiny_spec

from analysis import load_results
from study.folder import StudyFolder, checkpoint_dir, checkpoint_step

pytestmark = [pytest.mark.integration, pytest.mark.long]

#: One trial long enough to be stopped mid-way (checkpoints every 50 steps) even when the stop
#: takes tens of seconds to arrive, as on a loaded 2-core host.
SLOW = tiny_spec(
    name="slow",
    training={"steps": 1000, "log_every": 10, "checkpoint_every": 50},
    weights={"beta": {"schedule": "constant", "value": {"low": 0.5, "high": 8, "log": True}}},
    search={"num_trials": 1, "max_concurrent": 1},
)
QUICK = tiny_spec(
    name="quick",
    training={"steps": 300, "log_every": 10, "checkpoint_every": 50},
    weights={"beta": {"schedule": "constant", "value": {"low": 0.5, "high": 8, "log": True}}},
    search={"num_trials": 3, "max_concurrent": 1},
)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = LoopbackCluster(tmp_path_factory.mktemp("jobs-cluster"))
    # Room for more trials than the studies' caps allow together: a cap that did not hold would show.
    cluster.start_head(dashboard=True, cpus=4)
    try:
        cluster.wait_for_nodes(1)
        yield cluster
    finally:
        cluster.stop()


def running_trials(study_dir: Path) -> list[str]:
    """Trials whose worker has opened their run (``trial.json``) and that have no record yet."""
    return [t.trial_id for t in StudyFolder(study_dir).trials() if t.meta_file.exists() and not t.result_file.exists()]


def step_of(study_dir: Path, trial_id: str) -> int:
    """The step of the trial's checkpoint (0: none)."""
    return checkpoint_step(checkpoint_dir(study_dir / "trials" / trial_id)) or 0


def job_id_of(out: str) -> str:
    found = re.search(r"^submitted (\S+):", out, re.M)
    assert found, out
    return found.group(1)


def test_bad_submissions_are_refused_before_anything_is_submitted(cluster, tmp_path):
    cli = Cli(tmp_path, env=cluster.env)
    spec = cli.write_spec(QUICK)
    relative = cli.call("submit", spec, "--study-dir", "studies/quick", "--address", cluster.dashboard_url)
    assert relative.returncode == 2 and "--study-dir: a submitted study's folder is a path on" in relative.stderr
    no_token = cli.run(
        "submit", spec, "--study-dir", tmp_path / "q", "--address", cluster.dashboard_url,
        env={**cluster.env, "RAY_AUTH_TOKEN": "0" * 32},
    )  # fmt: skip
    assert no_token.returncode == 2 and "token" in no_token.stderr, no_token.stderr
    gcs = cli.call("jobs", "--address", cluster.address)
    assert gcs.returncode == 2 and "an http(s):// address" in gcs.stderr
    nobody = cli.call("jobs", "--address", f"http://127.0.0.1:{free_port()}")
    assert nobody.returncode == 2 and "cannot use Ray's job API" in nobody.stderr and "Traceback" not in nobody.stderr
    for spec_changes, extra, expected in (
        ({"storage": {"path": "ray-state"}}, (), "storage.path: 'ray-state' would lie in the job's temporary folder"),
        ({"tracking": {"uri": "sqlite:///mlflow.db"}}, (), "tracking.uri: 'sqlite:///mlflow.db' would lie"),
        ({}, ("--progress-every", 0), "--progress-every: must be > 0"),
    ):
        refused = cli.call("submit", cli.write_spec({**QUICK, **spec_changes}, "bad.yaml"), "--study-dir",
                           tmp_path / "q", *extra, "--address", cluster.dashboard_url)  # fmt: skip
        assert refused.returncode == 2 and expected in refused.stderr, refused.stderr
    resumed = cli.call("submit", "--resume", tmp_path / "q", "--num-trials", 0, "--address", cluster.dashboard_url)
    assert resumed.returncode == 2 and "--resume: a resumed study keeps its folder" in resumed.stderr
    unknown = cli.run("logs", "no-such-study", "--address", cluster.dashboard_url)
    assert unknown.returncode == 2 and "no study job or study named 'no-such-study'" in unknown.stderr
    listed = cli.run("jobs", "--address", cluster.dashboard_url)
    assert listed.returncode == 0 and "quick" not in listed.stdout  # nothing was submitted
    assert not (tmp_path / "q").exists()


def test_two_studies_side_by_side_one_stopped_and_resumed(cluster, tmp_path):
    cli = Cli(tmp_path, env=cluster.env)
    address = ("--address", cluster.dashboard_url)
    slow_dir, quick_dir = tmp_path / "shared" / "slow", tmp_path / "shared" / "quick"
    # Both studies at once, and the watch right after: on a loaded host each CLI call takes
    # seconds, and a call between the two submissions lets the quick study end before the slow
    # one starts, one between the slow one and the watch lets its trial end before the stop.
    submitted = cli.run("submit", cli.write_spec(QUICK, "quick.yaml"), "--study-dir", quick_dir, *address)
    assert submitted.returncode == 0, submitted.stderr
    quick_job = job_id_of(submitted.stdout)
    assert f"study folder : {quick_dir}" in submitted.stdout
    submitted = cli.run("submit", cli.write_spec(SLOW, "slow.yaml"), "--study-dir", slow_dir,
                        "--progress-every", 2, *address)  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    slow_job = job_id_of(submitted.stdout)

    # Side by side, each study at its own max_concurrent (1): watch the trial folders until the
    # slow study's trial is mid-way (checkpointed at step 50 or later), then stop that study.
    most, together = {"slow": 0, "quick": 0}, []
    deadline, victim = time.monotonic() + 300, None
    while victim is None and time.monotonic() < deadline:
        running = {"slow": running_trials(slow_dir), "quick": running_trials(quick_dir)}
        most.update({name: max(most[name], len(trials)) for name, trials in running.items()})
        together += [time.monotonic()] if running["slow"] and running["quick"] else []
        victim = next((t for t in running["slow"] if step_of(slow_dir, t) >= 50), None)
        time.sleep(0.3)
    assert victim, cli.run("logs", slow_job, *address).stdout[-3000:]
    asked = time.monotonic()
    stopped = cli.run("stop", slow_job, *address)
    stop_seconds = time.monotonic() - asked
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert f"job {slow_job}: STOPPED" in stopped.stdout and f"submit --resume {slow_dir}" in stopped.stdout
    done_before = {p.parent.name for p in (slow_dir / "trials").glob("*/result.json")}
    log = cli.run("logs", "slow", *address)  # by the study's name: its latest job
    assert victim not in done_before and step_of(slow_dir, victim) >= 50, f"{stop_seconds:.0f} s: {log.stdout[-3000:]}"
    assert log.returncode == 0 and re.search(r"started +t0000-beta_vae-beta=", log.stdout), log.stdout[-2000:]
    assert re.search(r"\[0/1 done, [01] running, 0 failed\]", log.stdout), log.stdout[-3000:]
    assert "Study 'slow' stopped" in log.stdout, log.stdout[-2000:]

    # The submitting processes have exited; the studies run on the cluster without them, listed
    # with their progress: one stopped, the other running or done.
    listed = cli.run("jobs", *address)
    assert listed.returncode == 0, listed.stderr
    assert re.search(rf"^{slow_job}\s+slow\s+STOPPED\s+0/1\s", listed.stdout, re.M), listed.stdout
    assert re.search(rf"^{quick_job}\s+quick\s+(RUNNING|SUCCEEDED)\s+\d/3\s", listed.stdout, re.M), listed.stdout

    resumed = cli.run("submit", "--resume", slow_dir, *address)
    assert resumed.returncode == 0, resumed.stderr
    resumed_job = job_id_of(resumed.stdout)
    again = cli.run("submit", "--resume", f"{slow_dir}/", *address)  # while the resume runs: refused
    assert again.returncode == 2 and f"in use by job {resumed_job}" in again.stderr, again.stderr
    # The resume, listed while it runs (about 950 steps to go); its count shows once its log has one.
    listed = cli.run("jobs", *address).stdout
    assert re.search(rf"^{resumed_job}\s+slow\s+(PENDING|RUNNING)\s+(0/1|\?)\s", listed, re.M), listed
    # A trial no node can hold: a note here (an autoscaler may exist); the driver on the head refuses.
    too_big = cli.run("submit", cli.write_spec({**QUICK, "name": "toobig", "resources": {"cpus": 64}}, "big.yaml"),
                      "--study-dir", tmp_path / "shared" / "toobig", *address)  # fmt: skip
    assert too_big.returncode == 0 and "note: resources.cpus: no node has 64 CPU(s)" in too_big.stderr, too_big.stderr

    followed = cli.run("logs", quick_job, "--follow", *address, timeout=600)
    assert followed.returncode == 0 and "Study 'quick' done: 3 completed" in followed.stdout, followed.stdout[-3000:]
    followed = cli.run("logs", resumed_job, "-f", *address, timeout=600)
    assert followed.returncode == 0 and "Study 'slow' done: 1 completed" in followed.stdout, followed.stdout[-3000:]

    assert together and most == {"slow": 1, "quick": 1}  # side by side, each at its own cap
    for study_dir, name, count in ((slow_dir, "slow", 1), (quick_dir, "quick", 3)):
        df = load_results(study_dir)
        assert len(df) == count and df["trial_id"].is_unique and (df["status"] == "completed").all()
        runs = StudyRuns.of(study_dir, name)
        assert sorted(runs.by_trial) == sorted(df["trial_id"]) and len(runs.children) == count
    # The stopped trial went on from its checkpoint, every step of its history once.
    row = load_results(slow_dir).set_index("trial_id").loc[victim]
    assert row["resumed_from_step"] >= 50
    history = pd.read_parquet(slow_dir / "history.parquet")
    recon = history[(history["trial_id"] == victim) & (history["split"] == "train") & (history["term"] == "recon")]
    assert list(recon["step"]) == list(range(10, 1001, 10))

    cli.run("logs", "toobig", "-f", *address, timeout=600)  # its driver has refused and exited
    listed = cli.run("jobs", *address).stdout
    assert re.search(rf"^{slow_job}\s+slow\s+STOPPED", listed, re.M), listed
    assert re.search(rf"^{resumed_job}\s+slow\s+SUCCEEDED\s+1/1\s", listed, re.M), listed
    assert re.search(rf"^{quick_job}\s+quick\s+SUCCEEDED\s+3/3\s", listed, re.M), listed
    assert re.search(r"^toobig-\S+\s+toobig\s+FAILED \(exit 2: bad input\)\s+0/3\s", listed, re.M), listed
    assert not (tmp_path / "shared" / "toobig").exists()
