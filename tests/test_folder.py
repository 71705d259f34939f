"""The study folder's records: typed, round-tripped, and a malformed one named by its file."""

import json
import os
import subprocess
import sys
from dataclasses import asdict, replace

import pytest

from study.folder import (
    FolderInUse,
    LockOwner,
    RecordError,
    StudyFolder,
    StudyLock,
    TrialPlan,
    TrialRecord,
    TrialStatus,
    member_id,
)


def test_a_record_round_trips_and_flattens_into_its_parquet_row(tmp_path):
    trial = StudyFolder(tmp_path).trial("abc").create()
    record = TrialRecord(
        trial_id="abc", status=TrialStatus.COMPLETED, variant="beta_vae", seed=1,
        params={"beta.schedule": "constant", "beta.value": 4.0}, terms={"recon": 80.0}, metrics={"mig": 0.2},
        artifacts={"checkpoint": "/x/model.pt", "codes": "/x/codes.npz"},
    )  # fmt: skip
    trial.write_record(record)
    again = trial.read_record()
    assert again == record and again.status is TrialStatus.COMPLETED
    row = again.row()
    assert row["status"] == "completed" and row["beta.value"] == 4.0 and row["mig"] == 0.2
    assert row["checkpoint"] == "/x/model.pt" and row["codes"] == "/x/codes.npz"
    assert "params" not in row and "artifacts" not in row


@pytest.mark.parametrize(
    "text, problem",
    [
        ('{"trial_id": "abc", "status": "compl', "not a readable JSON file"),
        ('["abc"]', "expected a JSON object"),
        ('{"trial_id": "abc"}', "lacks status"),
        ('{"trial_id": "abc", "status": "finished"}', "'finished' is not a valid TrialStatus"),
        ('{"trial_id": "abc", "status": "completed", "terms": null}', "terms: must be a mapping"),
        ('{"trial_id": "abc", "status": "completed", "metrics": {"mig": "high"}}', "metrics.mig: must be a number"),
        ('{"trial_id": "abc", "status": "running"}', "status running"),
    ],
)
def test_a_malformed_record_names_its_file(tmp_path, text, problem):
    trial = StudyFolder(tmp_path).trial("abc").create()
    trial.result_file.write_text(text)
    with pytest.raises(RecordError, match=problem) as raised:
        trial.read_record()
    assert str(trial.result_file) in str(raised.value)


def test_export_status_and_resume_refuse_a_truncated_record_by_name(cli, tmp_path):
    folder = StudyFolder(tmp_path / "study")
    spec = {"name": "s", "variant": "beta_vae", "objectives": [{"name": "recon", "mode": "min"}]}
    folder.root.mkdir()
    folder.spec_json.write_text(json.dumps(spec))
    run = {"tracking_uri": "sqlite:///x.db", "experiment_id": "1", "parent_run_id": "p"}
    folder.study_run.write_text(json.dumps(run))
    trial = folder.trial("abc").create()
    trial.result_file.write_text('{"trial_id": "abc", "sta')
    for command in ("export", "status", "resume"):
        proc = cli.call(command, folder.root)
        assert proc.returncode == 2, (command, proc.stderr[-2000:])
        assert f"{trial.result_file}: not a readable JSON file" in proc.stderr, (command, proc.stderr[-2000:])
    assert not folder.results.exists() and not folder.lock_file.exists()  # nothing written, nothing held


def test_statuses_name_their_mlflow_ending():
    assert [s.mlflow_status for s in TrialStatus] == ["RUNNING", "FINISHED", "FAILED", "FAILED", "KILLED"]
    assert not TrialStatus.RUNNING.ended and all(s.ended for s in TrialStatus if s is not TrialStatus.RUNNING)


def test_plans_and_ids_of_packs(tmp_path):
    assert member_id("p", 0, 1) == "p" and member_id("p", 1, 3) == "p-m1"
    folder = StudyFolder(tmp_path)
    assert folder.run_dir("p", 1) == tmp_path / "trials" / "p" and folder.run_dir("p", 2) == tmp_path / "packs" / "p"
    trial = folder.trial("p-m1").create()
    plan = TrialPlan("p-m1", {"variant": "beta_vae", "seed": 0, "beta.value": 4}, "p", 1, 2, {"number": 3})
    trial.write_plan(plan)
    assert trial.read_plan() == plan
    trial.plan_file.write_text(json.dumps({"trial_id": "p-m1", "config": {}}))  # an older layout
    with pytest.raises(RecordError, match=r"trial_config\.json: lacks point, pack_id"):
        trial.read_plan()


def test_a_history_line_cut_short_by_a_kill_is_ended_and_skipped(tmp_path):
    trial = StudyFolder(tmp_path).trial("t").create()
    trial.append_history(10, {"recon": 1.0}, "train")
    with trial.history_file.open("a") as out:
        out.write('{"step": 20, "spl')  # killed mid-write
    assert trial.last_step() == 10
    trial.append_history(20, {"recon": 0.5}, "train")  # the resumed trial writes on
    assert [entry["step"] for entry in trial.history()] == [10, 20]
    trial.history_file.write_text('{"step": 10, "split": "train", "terms": {"recon": 1}, }\n{"step": 20}\n')
    with pytest.raises(RecordError, match=r"history\.jsonl: line 1 is not JSON"):
        list(trial.history())


def _dead_pid() -> int:
    """The PID of a process that has exited (and was reaped)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def test_one_owner_per_study_folder(tmp_path):
    folder = StudyFolder(tmp_path / "new" / "study")
    lock = StudyLock(folder).claim("vae-study run spec.yaml")  # creates the folder
    owner = json.loads(folder.lock_file.read_text())
    assert owner["pid"] == os.getpid() and owner["command"] == "vae-study run spec.yaml"
    assert not folder.is_used()  # the lock alone is not a study
    with pytest.raises(FolderInUse, match=rf"in use by `vae-study run spec.yaml` \(pid {os.getpid()} on "):
        StudyLock(folder).claim("vae-study resume", take_over=True)  # a live owner is never taken over
    lock.release()
    assert not folder.lock_file.exists()
    with StudyLock(folder).claim("again"):
        assert folder.lock_file.exists()
    assert not folder.lock_file.exists()


def test_a_stale_lock_is_reported_with_the_command_that_takes_it_over(tmp_path):
    folder = StudyFolder(tmp_path / "study")
    folder.root.mkdir()
    dead = replace(LockOwner.me("vae-study run spec.yaml"), pid=_dead_pid(), process_start=None)
    folder.lock_file.write_text(json.dumps(asdict(dead)))
    assert dead.alive() is False
    with pytest.raises(FolderInUse, match="which is no longer running") as refused:
        StudyLock(folder).claim("vae-study resume")
    assert f"vae-study resume {folder.root} --take-over" in str(refused.value)
    with StudyLock(folder).claim("vae-study resume --take-over", take_over=True) as lock:
        assert lock.read_owner().pid == os.getpid()
    # A reused PID is told apart by its start time.
    reused = replace(LockOwner.me("old"), process_start="1")
    assert reused.alive() is False and LockOwner.me("now").alive() is True


def test_a_lock_from_another_host_is_only_taken_over_when_asked(tmp_path):
    folder = StudyFolder(tmp_path / "study")
    folder.root.mkdir()
    elsewhere = LockOwner("gpu-node-7", 4242, "vae-study run spec.yaml", 0.0, None)
    folder.lock_file.write_text(json.dumps(asdict(elsewhere)))
    with pytest.raises(FolderInUse, match="runs on another host"):
        StudyLock(folder).claim("vae-study resume")
    StudyLock(folder).claim("vae-study resume --take-over", take_over=True).release()
    folder.lock_file.write_text("not json")
    with pytest.raises(RecordError, match=r"study\.lock: not a study lock"):
        StudyLock(folder).claim("vae-study resume")


def test_the_last_step_read_from_the_end_is_the_last_training_step_of_the_whole_history(tmp_path):
    trial = StudyFolder(tmp_path).trial("t").create()
    assert trial.last_step() == 0  # no history yet
    terms = {f"term_{k}": 1.0 / (k + 1) for k in range(30)}  # wide lines: many 64 KB blocks
    for step in range(10, 40_001, 10):
        trial.append_history(step, terms, "train")
    trial.append_history(40_000, terms, "heldout")  # the held-out line at the end is not a training step
    with trial.history_file.open("a") as out:
        out.write('{"step": 40010, "spl')  # and a line cut short by a kill
    full = [entry["step"] for entry in trial.history() if entry.get("split") == "train"][-1]
    assert trial.last_step() == full == 40_000 and trial.history_file.stat().st_size > 1 << 20
    # A training line far behind the end (beyond the first 64 KB block read): still found.
    far = StudyFolder(tmp_path).trial("far").create()
    far.append_history(7, terms, "train")
    for step in range(300):
        far.append_history(step, terms, "heldout")
    assert far.history_file.stat().st_size > 1 << 17 and far.last_step() == 7
    only_heldout = StudyFolder(tmp_path).trial("h").create()
    only_heldout.append_history(5, terms, "heldout")
    assert only_heldout.last_step() == 0
