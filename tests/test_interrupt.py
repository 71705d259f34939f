"""A study in a user's hands, with real processes: two runs into one folder, the network a running
study opens, Ctrl+C, and the resume.  One study serves all four (each needs a study running).

It is also the suite's resume of an unpacked Optuna study (packs of one); killed drivers and
packed studies: test_resume_packed.py.
"""

import json
import os
import signal

import pytest
from scaffold import (
    ResumeCheck,
    StudyRuns,
    checkpoint_steps,
    is_loopback,
    listening_addresses,
    session_processes,
    tiny_spec,
    wait_for,
)

from analysis import load_results
from study.folder import StudyFolder

pytestmark = [pytest.mark.integration, pytest.mark.long]


def test_one_owner_a_closed_network_ctrl_c_and_resume(cli):
    # No periodic checkpoints: the only ones are those the trials write as Ctrl+C stops them.
    spec = tiny_spec(training={"steps": 150, "log_every": 5, "checkpoint_every": 0}, search={"num_trials": 2})
    path, study_dir = cli.write_spec(spec), cli.cwd / "study"
    folder = StudyFolder(study_dir)

    # Two runs into one new folder at once: one claims it, the other is refused naming the owner.
    # --verbose: Ray's own output too (its word on token auth, below).
    first, second = (cli.popen("run", path, "--study-dir", study_dir, "--verbose") for _ in range(2))
    assert wait_for(lambda: first.poll() is not None or second.poll() is not None, 120)
    loser, winner = (first, second) if first.poll() is not None else (second, first)
    refusal = loser.communicate()[0]
    assert loser.returncode == 2 and "the study folder is in use by `vae-study run" in refusal, refusal[-3000:]
    assert f"(pid {winner.pid} on " in refusal and "Traceback" not in refusal
    assert json.loads(folder.lock_file.read_text())["pid"] == winner.pid

    # While it trains, the driver, its local Ray and the workers listen on loopback only.
    training = lambda: any(t.last_step() > 0 and not t.result_file.exists() for t in folder.trials())  # noqa: E731
    assert wait_for(training, 300, winner), "no trial started training"
    addresses = listening_addresses(session_processes(winner.pid))
    assert addresses and all(is_loopback(a) for a in addresses), addresses

    # Ctrl+C: the terminal sends SIGINT to the foreground process group.
    os.killpg(winner.pid, signal.SIGINT)
    out = winner.communicate(timeout=300)[0]
    assert winner.returncode == 130, out[-4000:]
    assert "resume with  : vae-study resume study" in out and "Traceback" not in out, out[-4000:]
    assert not folder.lock_file.exists()
    assert StudyRuns.of(study_dir).parent.info.status == "KILLED"
    assert "Token authentication is enabled" in out  # Ray's own word that its local cluster wants a token
    stopped = {t.trial_id: t for t in folder.trials() if not t.result_file.exists()}
    assert stopped, "every trial had ended before Ctrl+C"
    # Each stopped trial checkpointed as it stopped (at its next step, not its last periodic checkpoint).
    steps, runs = checkpoint_steps(study_dir), StudyRuns.of(study_dir)
    for trial_id in stopped:
        run = runs.by_trial[trial_id]
        assert run.info.status == "KILLED" and run.data.tags["status"] == "interrupted"
        assert run.data.tags["failure_reason"] == f"study stopped; checkpointed at step {steps[trial_id]}"

    # The resume goes on from those checkpoints and ends with exactly the spec's trials.
    proc = cli.run("resume", study_dir)
    assert proc.returncode == 0 and "2 completed" in proc.stdout, proc.stdout[-3000:] + proc.stderr[-3000:]
    df = load_results(study_dir)
    assert len(df) == 2 and (df["status"] == "completed").all()
    for trial_id in stopped:
        assert int(df.loc[df["trial_id"] == trial_id, "resumed_from_step"].iloc[0]) == steps[trial_id]
    check = ResumeCheck(cli, study_dir, spec["name"])
    check.one_finished_run_per_trial(df)
    check.optuna_matches_the_parquet(df)
