"""`vae-study resume` of a packed study after the driver, its local Ray and its workers were killed:
interrupted packs resume as packs from their checkpoints, in their members' MLflow runs, and the
trials still missing are asked for packed.  Which packs and grid points a resume takes up, from
the folder's files alone: test_resume_plan.py; an unpacked study's resume: test_interrupt.py."""

import pytest
from scaffold import ResumeCheck, kill_midway, tiny_spec

from study.folder import StudyFolder

pytestmark = [pytest.mark.integration, pytest.mark.long]


def test_a_packed_optuna_study_resumes_its_packs_and_asks_the_rest_packed(cli):
    spec = tiny_spec(
        name="packed-optuna",
        training={"steps": 60, "log_every": 5, "checkpoint_every": 15, "pack_size": 2},
        search={"num_trials": 6, "max_concurrent": 1},
    )
    study_dir, ended, at_kill = kill_midway(cli, spec, packs=True)
    check = ResumeCheck(cli, study_dir, spec["name"])
    before = set(p.name for p in (study_dir / "packs").iterdir())
    df = check.resume(6)
    assert set(ended) <= set(df["trial_id"])
    assert (df["pack_size"] == 2).all() and (df.groupby("pack_id").size() == 2).all()
    for pack_id, step in at_kill.items():
        members = df[df["pack_id"] == pack_id]
        assert len(members) == 2 and (members["resumed_from_step"] >= step).all() and step > 0
    assert set(df["pack_id"]) - before, "the trials missing at the kill were asked for, packed"
    # The resume numbered its new trials and packs on from the highest: no gap, no clash.
    assert sorted(df["trial_id"]) == [f"t{i:04d}" for i in range(6)]
    assert sorted(set(df["pack_id"])) == ["p0000", "p0001", "p0002"]
    check.one_finished_run_per_trial(df)
    check.optuna_matches_the_parquet(df)
    plans = [StudyFolder(study_dir).trial(t).read_plan() for t in df["trial_id"]]
    assert len({p.optuna["number"] for p in plans}) == 6
