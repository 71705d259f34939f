"""A trial's restore: a garbage checkpoint costs steps, never the trial."""

import logging

from analysis.folder import CHECKPOINT_META, CHECKPOINT_STATE
from study.folder import StudyFolder, TrialFolder, TrialRecord, TrialStatus, write_json_atomic
from study.trial import (
    PackReporter,
    learning_views,
    readable_checkpoints,
    save_pack_checkpoint,
    train_from_checkpoints,
)
from trainers.config import EvalConfig, TrainConfig

CONFIG = TrainConfig(
    variant="beta_vae", weights={"beta": {"schedule": "constant", "value": 2.0}}, latent_dim=4, steps=6,
    batch_size=8, log_every=2, num_threads=1, eval=EvalConfig(recon_points=16, udr_points=16, metrics=[]),
)  # fmt: skip


def test_an_unreadable_checkpoint_is_skipped_for_the_older_copy(tmp_path, caplog):
    run_dir = tmp_path / "run"
    save_pack_checkpoint(run_dir, 4, {"step": 4, "marker": "older"})
    (run_dir / "checkpoint").rename(run_dir / "checkpoint.old")  # a kill between the swap's renames
    newer = run_dir / "checkpoint"
    newer.mkdir()
    (newer / CHECKPOINT_STATE).write_bytes(b"\x00garbage")
    write_json_atomic(newer / CHECKPOINT_META, {"step": 8})
    with caplog.at_level(logging.WARNING):
        found = readable_checkpoints(run_dir)
    assert [state["marker"] for state in found] == ["older"]
    assert "ignoring unreadable checkpoint" in caplog.text


def test_a_readable_checkpoint_that_does_not_fit_falls_back_to_step_0(tmp_path, caplog):
    member = StudyFolder(tmp_path).trial("t").create()
    record = TrialRecord(trial_id="t", status=TrialStatus.RUNNING)
    reporter = PackReporter([None], [record], [member], tmp_path / "run", ["recon"])
    alien = {"step": 4, "model": {"not": "this model"}}
    with caplog.at_level(logging.WARNING):
        train_from_checkpoints([CONFIG], reporter, [alien], [member.artifacts])
    assert "checkpoint of step 4 does not fit" in caplog.text and "starting from step 0" in caplog.text
    assert record.resumed_from_step == 0
    assert (member.artifacts / "model.pt").exists()  # trained to the end from scratch


def test_a_trials_views_that_cannot_be_drawn_leave_the_trial_alone(tmp_path, caplog):
    folder = TrialFolder(tmp_path / "trials" / "t0").create()
    folder.artifacts.mkdir()
    folder.mig.write_bytes(b"not an npz")
    assert learning_views(folder, TrialRecord(trial_id="t0", status=TrialStatus.COMPLETED)) == ([], {})
    assert "views were not drawn" in caplog.text
