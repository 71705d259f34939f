"""`vae-study resume` of an unpacked Optuna study after the driver, its local Ray and its workers
were killed: it ends with exactly its trials, the interrupted ones from their checkpoints.

Packed studies: test_resume_packed.py."""

import pytest
from scaffold import ResumeCheck, kill_midway, tiny_spec

pytestmark = [pytest.mark.integration, pytest.mark.long]


def test_an_unpacked_optuna_study_resumes_with_exactly_its_trials(cli):
    spec = tiny_spec(
        name="resumable",
        training={"steps": 150, "log_every": 5, "checkpoint_every": 25},
        weights={"beta": {"schedule": "constant", "value": {"low": 0.5, "high": 8, "log": True}}},
        search={"num_trials": 3, "max_concurrent": 2},
    )
    study_dir, ended, at_kill = kill_midway(cli, spec, packs=False)
    check = ResumeCheck(cli, study_dir, spec["name"])
    df = check.resume(3)
    assert set(ended) | set(at_kill) <= set(df["trial_id"])
    for trial_id, step in at_kill.items():
        # Resumed from its own checkpoint (the step counter did not restart at zero).
        assert int(df.loc[df["trial_id"] == trial_id, "resumed_from_step"].iloc[0]) >= step > 0
    check.one_finished_run_per_trial(df)
    check.optuna_matches_the_parquet(df)
    assert df["beta.value"].nunique() == 3  # the restarted sampler did not suggest the same configurations
