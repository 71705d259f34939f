"""`vae-study resume` after the driver was killed, and Optuna reconciliation on its own."""

import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from analysis import load_results
from study.resume import OptunaReconciler
from study.spec import StudySpec

SPEC = {
    "name": "resumable",
    "variant": "beta_vae",
    "model": {"latent_dim": 4},
    "training": {"steps": 600, "batch_size": 16, "lr": 1e-3, "log_every": 10, "checkpoint_every": 50},
    "evaluation": {"recon_points": 64, "metric_options": {"mig": {"num_points": 500}}},
    "seeds": [0, 1],
    "weights": {"beta": {"schedule": "constant", "value": {"low": 0.5, "high": 8, "log": True}}},
    "objectives": [{"name": "recon", "mode": "min"}, {"name": "mig", "mode": "max"}],
    "search": {"num_trials": 4, "max_concurrent": 2, "storage": "sqlite"},
    "tracking": {"flush_every": 10},
}


def _state(study_dir, max_step=600):
    """Finished trials, and unfinished ones with a checkpoint at or below ``max_step``."""
    finished, interrupted = [], []
    for folder in (study_dir / "trials").glob("*"):
        meta = folder / "checkpoint" / "trial.json"
        if (folder / "result.json").exists():
            finished.append(folder.name)
        elif meta.exists() and json.loads(meta.read_text())["step"] <= max_step:
            interrupted.append(folder.name)
    return finished, interrupted


def _kill_study(driver, study_dir):
    """The driver, its local Ray and the trial workers die at once, as on a lost machine."""
    os.killpg(driver.pid, signal.SIGKILL)
    for results in study_dir.glob("ray/*/result.json"):
        for line in results.read_text().splitlines():
            try:
                os.kill(json.loads(line)["pid"], signal.SIGKILL)
            except (ProcessLookupError, ValueError, KeyError):
                pass
    driver.wait()


@pytest.mark.integration
def test_resume_after_the_driver_is_killed_gives_exactly_the_specified_trials(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    study_dir = tmp_path / "study"
    driver = subprocess.Popen(
        [sys.executable, "-m", "study.cli", "run", str(path), "--study-dir", str(study_dir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 400
    while time.monotonic() < deadline and driver.poll() is None:
        finished, interrupted = _state(study_dir, 200) if (study_dir / "trials").exists() else ([], [])
        if finished and interrupted:
            break
        time.sleep(0.1)
    assert driver.poll() is None, driver.communicate()[0][-3000:]
    _kill_study(driver, study_dir)
    finished, interrupted = _state(study_dir)
    assert finished and interrupted
    step_at_kill = {t: json.loads((study_dir / "trials" / t / "checkpoint" / "trial.json").read_text())["step"]
                    for t in interrupted}  # fmt: skip

    proc = subprocess.run(
        [sys.executable, "-m", "study.cli", "resume", str(study_dir)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "4 completed" in proc.stdout

    df = load_results(study_dir)
    assert len(df) == 4 and df["trial_id"].is_unique and (df["status"] == "completed").all()
    assert set(finished) | set(interrupted) <= set(df["trial_id"])
    for trial_id, step in step_at_kill.items():
        # Resumed from its own checkpoint (the step counter did not restart at zero).
        assert int(df.loc[df["trial_id"] == trial_id, "resumed_from_step"].iloc[0]) >= step > 0

    client = MlflowClient(f"sqlite:///{study_dir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("resumable")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(c.data.tags["trial_id"] for c in children) == sorted(df["trial_id"])  # no duplicate runs
    assert {c.info.run_id for c in children} == set(df["mlflow_run_id"])
    assert all(c.info.status == "FINISHED" for c in children)

    study = optuna.load_study(study_name="resumable", storage=f"sqlite:///{study_dir / 'optuna.db'}")
    states = [t.state for t in study.get_trials()]
    assert states.count(TrialState.COMPLETE) == 4 and TrialState.RUNNING not in states
    told = sorted(tuple(t.values) for t in study.get_trials() if t.state == TrialState.COMPLETE)
    assert told == sorted(zip(df["recon"], df["mig"], strict=True))
    # The restarted sampler did not suggest the same configurations again.
    assert df["beta.value"].nunique() == 4


def _record(number, beta, status, recon=None, mig=None):
    dist = optuna.distributions.FloatDistribution(0.5, 8, log=True)
    return {
        "result": {"status": status, "terms": {"recon": recon} if recon else {},
                   "metrics": {"mig": mig} if mig else {}},
        "config": {"optuna": {"number": number, "params": {"beta.value": beta},
                              "distributions": {"beta.value": optuna.distributions.distribution_to_json(dist)}}},
    }  # fmt: skip


def test_reconciling_an_in_memory_study_adds_every_finished_trial():
    spec = StudySpec.model_validate(SPEC)
    study = optuna.create_study(directions=["minimize", "maximize"])
    finished = {"a": _record(0, 1.5, "completed", 90.0, 0.2), "b": _record(1, 6.0, "failed")}
    OptunaReconciler(study, persistent=False).reconcile(spec, finished, {})
    trials = study.get_trials()
    assert [(t.state, t.values, t.params) for t in trials] == [
        (TrialState.COMPLETE, [90.0, 0.2], {"beta.value": 1.5}),
        (TrialState.FAIL, None, {"beta.value": 6.0}),
    ]


def test_reconciling_a_persistent_study_tells_running_trials_and_fails_orphans(tmp_path):
    spec = StudySpec.model_validate(SPEC)
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    study = optuna.create_study(study_name="s", storage=storage, directions=["minimize", "maximize"])
    dist = {"beta.value": optuna.distributions.FloatDistribution(0.5, 8, log=True)}
    told, unknown_end, interrupted, orphan = (study.ask(dist) for _ in range(4))
    study.tell(told, [80.0, 0.3])  # told before the driver died
    finished = {"t": _record(told.number, 1.0, "completed", 80.0, 0.3),
                "u": _record(unknown_end.number, 2.0, "completed", 70.0, 0.4)}  # fmt: skip
    waiting = {"i": {"config": _record(interrupted.number, 3.0, "completed")["config"]}}
    OptunaReconciler(optuna.load_study(study_name="s", storage=storage), persistent=True).reconcile(
        spec, finished, waiting
    )
    trials = {t.number: t for t in optuna.load_study(study_name="s", storage=storage).get_trials()}
    assert len(trials) == 4  # nothing added: the storage kept them
    assert trials[told.number].values == [80.0, 0.3]
    assert trials[unknown_end.number].state == TrialState.COMPLETE and trials[unknown_end.number].values == [70.0, 0.4]
    assert trials[interrupted.number].state == TrialState.RUNNING  # told when its resumed run ends
    assert trials[orphan.number].state == TrialState.FAIL
