"""The run log's pieces: trial names and numbers, the incremental front, line lengths."""

import io
import time
from types import SimpleNamespace

import numpy as np
import pytest
from scaffold import tiny_spec

from analysis.pareto import pareto_mask
from study.folder import StudyFolder, TrialRecord, TrialStatus
from study.naming import next_number, pack_id, trial_id, trial_label, weight_label
from study.progress import MAX_LINE, Front, RunLog, clip, duration, last_progress
from study.spec import parse_spec


def test_trial_names_say_id_variant_weights_and_seed():
    weights = {
        "beta": {"schedule": "constant", "value": 8.9612},
        "gamma": {"schedule": "linear", "start": 0.0, "end": 40},
    }
    assert trial_label("t0005", "beta_vae", weights, 0) == "t0005-beta_vae-beta=8.96-gamma=linear(0..40)-s0"
    cyclical = {"schedule": "cyclical", "start": 0.5, "end": 25.0, "period": 100}
    assert weight_label("C", cyclical) == "C=cyclical(0.5..25)"
    assert (trial_id(5), pack_id(12), trial_id(12345)) == ("t0005", "p0012", "t12345")


def test_a_resume_numbers_on_from_the_highest_id_and_ignores_older_ids():
    assert next_number([]) == 0
    assert next_number(["t0000", "t0007", "t0003", "a1b2c3d4", "a1b2c3d4-m1"]) == 8
    assert next_number(["t0000", "p0002", "p0000"], prefix="p") == 3
    assert next_number(["tea", "t12x"]) == 0  # not ids of this scheme


@pytest.mark.parametrize("modes", [("min", "max"), ("min", "min", "max")])
def test_the_incremental_front_has_the_size_of_the_brute_force_front(modes):
    rng = np.random.default_rng(len(modes))
    points = rng.integers(0, 12, size=(300, len(modes))).astype(float)  # ties and duplicates included
    front = Front(modes)
    for k, point in enumerate(points, start=1):
        front.add(point)
        unique = np.unique(points[:k], axis=0)
        assert len(front) == pareto_mask(unique, list(modes)).sum()
    front.add([float("nan")] * len(modes))  # an objective that is not a number is not a point
    assert len(front) == pareto_mask(np.unique(points, axis=0), list(modes)).sum()


def test_lines_are_cut_to_the_limit_and_durations_read_as_time():
    assert clip("x" * 500) == "x" * (MAX_LINE - 1) + "…" and len(clip("x" * 500)) == MAX_LINE
    assert clip("short") == "short"
    assert [duration(s) for s in (0, 59.6, 75, 3599, 4000)] == ["0s", "1m00s", "1m15s", "59m59s", "1h06m"]


def _record(trial_id, recon, mig, status=TrialStatus.COMPLETED, reason=None):
    return TrialRecord(trial_id, status, terms={"recon": recon}, metrics={"mig": mig}, failure_reason=reason,
                       started_at=100.0, finished_at=165.0)  # fmt: skip


def test_a_resumed_packs_run_log_counts_each_trial_once(tmp_path):
    """A pack resumed after a kill had one member ended before: the header counts it once."""
    spec = parse_spec(tiny_spec(training={"pack_size": 2}))
    folder = StudyFolder(tmp_path)
    before = _record("t0002", 90.0, 0.1)
    folder.trial("t0002").create().write_record(before)
    out = io.StringIO()
    log = RunLog(folder, spec, total=4, ended=[before], out=out)
    point = {"variant": "beta_vae", "seed": 0, "beta.schedule": "constant", "beta.value": 2.0}
    pack = SimpleNamespace(trial_id="ray-1", config={"pack_id": "p0001", "members": [
        {"trial_id": "t0002", "point": point}, {"trial_id": "t0003", "point": {**point, "seed": 1}}]})  # fmt: skip
    log.on_trial_start(0, [], pack)
    folder.trial("t0003").create().write_record(_record("t0003", 80.0, 0.05))
    log.on_trial_complete(0, [], pack)
    lines = [line.split(" ", 1)[1] for line in out.getvalue().splitlines()]  # without the time
    assert lines == [
        "started  pack p0001 of 2 (beta_vae): t0002 t0003",
        "finished t0003-beta_vae-beta=2-s1 in 1m05s: recon 80, mig 0.05",
        "[2/4 done, 0 running, 0 failed] front 2 · ETA " + lines[-1].rsplit("ETA ", 1)[1],
    ]
    assert (tmp_path / "run.log").read_text().splitlines() == out.getvalue().splitlines()
    assert last_progress(out.getvalue()) == (2, 4)  # what `vae-study jobs` reads from a job's log
    assert last_progress("started  t0000-beta_vae-beta=2-s0\n") is None
    failed = _record("t0004", float("nan"), 0.0, TrialStatus.FAILED, "term 'kl' became non-finite at step 3")
    folder.trial("t0004").create().write_record(failed)
    quiet = io.StringIO()
    alone = SimpleNamespace(trial_id="ray-2", config={"pack_id": "t0004", "members": [
        {"trial_id": "t0004", "point": point}]})  # fmt: skip
    log.out, log.quiet = quiet, True
    log.on_trial_start(0, [], alone)
    log.on_trial_complete(0, [], alone)
    # Quiet: only the failure (no start line, no header).
    expected = "failed   t0004-beta_vae-beta=2-s0: term 'kl' became non-finite at step 3\n"
    assert quiet.getvalue().split(" ", 1)[1] == expected


def test_a_pack_member_stopped_at_a_rung_is_told_at_once_and_counted_once(tmp_path):
    spec = parse_spec(tiny_spec(training={"pack_size": 2}))
    folder = StudyFolder(tmp_path)
    out = io.StringIO()
    log = RunLog(folder, spec, total=2, out=out)
    point = {"variant": "beta_vae", "seed": 0, "beta.schedule": "constant", "beta.value": 2.0}
    pack = SimpleNamespace(trial_id="ray-1", config={"pack_id": "p0000", "members": [
        {"trial_id": "t0000", "point": point}, {"trial_id": "t0001", "point": {**point, "seed": 1}}]})  # fmt: skip
    log.on_trial_start(0, [], pack)
    reason = "stopped at rung 0 (step 10): dominated by 1 of 2 trials (place 2, the best 1 go on)"
    folder.trial("t0001").create().write_record(_record("t0001", float("nan"), 0.0, TrialStatus.PRUNED, reason))
    log.on_trial_result(0, [], pack, {"step": 10, "final": 0, "members": {"1": {"status": "pruned"}}})
    folder.trial("t0000").create().write_record(_record("t0000", 80.0, 0.05))
    log.on_trial_result(0, [], pack, {"step": 20, "final": 1, "members": {}})  # the end is told at completion
    log.on_trial_complete(0, [], pack)
    lines = [line.split(" ", 1)[1] for line in out.getvalue().splitlines()]
    assert lines[1] == f"pruned   t0001-beta_vae-beta=2-s1: {reason}"
    assert lines[2].startswith("[1/2 done, 1 running, 0 failed] front 0")  # its pack mate trains on
    assert lines[3].startswith("finished t0000-beta_vae-beta=2-s0 in ")
    assert lines[4].startswith("[2/2 done, 0 running, 0 failed] front 1") and len(lines) == 5


def test_the_eta_counts_the_running_trials_work(tmp_path):
    """Between two trial ends the ETA falls as the running trials train, instead of growing
    with the time spent on them (two of four trials ended in 100 s; two halfway through)."""
    log = RunLog(StudyFolder(tmp_path), parse_spec(tiny_spec()), total=4, out=io.StringIO())
    log.started_at = time.monotonic() - 100.0
    assert log.eta(2) == pytest.approx(100.0, rel=1e-2)  # 50 s per trial, 2 left
    assert log.eta(2, progress=1.0) == pytest.approx(100.0 / 3, rel=1e-2)  # 3 trials' work done, 1 left
    assert log.eta(2, progress=1.0) < log.eta(2, progress=0.5) < log.eta(2)
    assert log.eta(0) is None and log.eta(4) is None
