"""`vae-study resume` after the driver and every process under it were killed: unpacked and packed,
Optuna and grid studies end with exactly their trials, the interrupted ones from their checkpoints."""

import optuna
import pytest
from optuna.trial import TrialState
from scaffold import checkpoint_steps, ended_trials, kill_study, tiny_spec, wait_for

from analysis import load_results
from study.folder import StudyFolder

pytestmark = pytest.mark.integration


def _interrupted(study_dir, steps: int, packs: bool) -> dict[str, int]:
    """The checkpoint step of each Ray trial that has one and has not ended (packs: by pack id)."""
    ended = ended_trials(study_dir)
    ended_runs = {t.rsplit("-m", 1)[0] for t in ended} if packs else set(ended)
    return {k: v for k, v in checkpoint_steps(study_dir).items() if k not in ended_runs and v < steps}


def _kill_midway(cli, spec, packs: bool):
    """Run ``spec`` until a trial has ended and another Ray trial has a checkpoint, then kill it all."""
    study_dir = cli.cwd / "study"
    driver = cli.popen("run", cli.write_spec(spec), "--study-dir", study_dir)
    steps = spec["training"]["steps"]
    reached = wait_for(lambda: bool(ended_trials(study_dir) and _interrupted(study_dir, steps, packs)), 400, driver)
    assert reached and driver.poll() is None, driver.communicate()[0][-3000:] if driver.poll() is not None else ""
    kill_study(driver, study_dir)
    return study_dir, ended_trials(study_dir), _interrupted(study_dir, steps, packs)


def _resume(cli, study_dir, expected: int):
    proc = cli.run("resume", study_dir)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert f"{expected} completed" in proc.stdout, proc.stdout[-2000:]
    df = load_results(study_dir)
    assert len(df) == expected and df["trial_id"].is_unique and (df["status"] == "completed").all()
    return df


def _one_finished_run_per_trial(df, mlflow_runs, study_dir, name):
    runs = mlflow_runs(study_dir, name)
    assert runs.parent.info.status == "FINISHED"
    assert sorted(runs.by_trial) == sorted(df["trial_id"]) and len(runs.children) == len(df)  # no duplicate runs
    assert {c.info.run_id for c in runs.children} == set(df["mlflow_run_id"])
    assert all(c.info.status == "FINISHED" for c in runs.children)
    return runs


def _optuna_matches_the_parquet(study_dir, name, df):
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{study_dir / 'optuna.db'}")
    states = [t.state for t in study.get_trials()]
    assert states.count(TrialState.COMPLETE) == len(df) and TrialState.RUNNING not in states
    told = sorted(tuple(t.values) for t in study.get_trials() if t.state == TrialState.COMPLETE)
    assert told == sorted(zip(df["recon"], df["mig"], strict=True))


def test_an_unpacked_optuna_study_resumes_with_exactly_its_trials(cli, mlflow_runs):
    spec = tiny_spec(
        name="resumable",
        training={"steps": 150, "log_every": 5, "checkpoint_every": 25},
        weights={"beta": {"schedule": "constant", "value": {"low": 0.5, "high": 8, "log": True}}},
        search={"num_trials": 4, "max_concurrent": 2},
    )
    study_dir, ended, at_kill = _kill_midway(cli, spec, packs=False)
    df = _resume(cli, study_dir, 4)
    assert set(ended) | set(at_kill) <= set(df["trial_id"])
    for trial_id, step in at_kill.items():
        # Resumed from its own checkpoint (the step counter did not restart at zero).
        assert int(df.loc[df["trial_id"] == trial_id, "resumed_from_step"].iloc[0]) >= step > 0
    _one_finished_run_per_trial(df, mlflow_runs, study_dir, "resumable")
    _optuna_matches_the_parquet(study_dir, "resumable", df)
    assert df["beta.value"].nunique() == 4  # the restarted sampler did not suggest the same configurations


def test_a_packed_grid_study_resumes_its_packs_as_packs(cli, mlflow_runs):
    spec = tiny_spec(
        name="packed-grid",
        training={"steps": 150, "log_every": 5, "checkpoint_every": 25, "pack_size": 2},
        weights={"beta": [1, 4, 8]},
        search={"mode": "grid", "max_concurrent": 1, "storage": None},
    )
    study_dir, ended, at_kill = _kill_midway(cli, spec, packs=True)
    df = _resume(cli, study_dir, 6)
    assert sorted(zip(df["beta.value"], df["seed"], strict=True)) == [(b, s) for b in (1, 4, 8) for s in (0, 1)]
    assert (df["pack_size"] == 2).all() and (df.groupby("pack_id").size() == 2).all()  # every member still packed
    assert set(ended) <= set(df["trial_id"])
    for pack_id, step in at_kill.items():
        members = df[df["pack_id"] == pack_id]
        assert len(members) == 2 and (members["resumed_from_step"] >= step).all() and step > 0
    _one_finished_run_per_trial(df, mlflow_runs, study_dir, "packed-grid")


def test_a_packed_optuna_study_resumes_its_packs_and_asks_the_rest_packed(cli, mlflow_runs):
    spec = tiny_spec(
        name="packed-optuna",
        training={"steps": 150, "log_every": 5, "checkpoint_every": 25, "pack_size": 2},
        search={"num_trials": 6, "max_concurrent": 1},
    )
    study_dir, ended, at_kill = _kill_midway(cli, spec, packs=True)
    before = set(p.name for p in (study_dir / "packs").iterdir())
    df = _resume(cli, study_dir, 6)
    assert set(ended) <= set(df["trial_id"])
    assert (df["pack_size"] == 2).all() and (df.groupby("pack_id").size() == 2).all()
    for pack_id, step in at_kill.items():
        members = df[df["pack_id"] == pack_id]
        assert len(members) == 2 and (members["resumed_from_step"] >= step).all() and step > 0
    assert set(df["pack_id"]) - before, "the trials missing at the kill were asked for, packed"
    _one_finished_run_per_trial(df, mlflow_runs, study_dir, "packed-optuna")
    _optuna_matches_the_parquet(study_dir, "packed-optuna", df)
    plans = [StudyFolder(study_dir).trial(t).read_plan() for t in df["trial_id"]]
    assert len({p.optuna["number"] for p in plans}) == 6
