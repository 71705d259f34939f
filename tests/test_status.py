"""`vae-study status` on a study folder written as trials write it."""

import json

from study.spec import parse_spec
from study.status import study_status

SPEC = {
    "name": "s",
    "variant": "beta_vae",
    "training": {"steps": 100, "log_every": 10},
    "objectives": [{"name": "recon", "mode": "min"}, {"name": "mig", "mode": "max"}],
    "search": {"num_trials": 6, "max_concurrent": 2},
}


def _study(tmp_path):
    spec = parse_spec(SPEC)
    (tmp_path / "spec.json").write_text(json.dumps(spec.model_dump(mode="json")))
    trials = tmp_path / "trials"
    done = [("a", "completed", 90.0, 0.10, 0, 100), ("b", "completed", 80.0, 0.05, 0, 300), ("c", "failed", 0, 0, 0, 5)]
    for trial_id, status, recon, mig, start, end in done:
        (trials / trial_id).mkdir(parents=True)
        record = {"trial_id": trial_id, "status": status, "started_at": start, "finished_at": end}
        if status == "completed":
            record.update(terms={"recon": recon}, metrics={"mig": mig})
        (trials / trial_id / "result.json").write_text(json.dumps(record))
    (trials / "d").mkdir()
    (trials / "d" / "history.jsonl").write_text(
        "\n".join(json.dumps({"step": s, "split": "train", "terms": {"recon": 1.0}}) for s in (10, 20, 30, 40)) + "\n"
    )
    return tmp_path


def test_status_counts_best_and_eta(tmp_path):
    status = study_status(_study(tmp_path))
    assert status.counts == {"completed": 2, "failed": 1, "error": 0, "pruned": 0}
    assert status.running == {"d": 40} and status.pending == 2
    assert status.best == {"recon": (80.0, "b"), "mig": (0.10, "a")}
    # mean completed duration 200 s; work left = 2 pending + 0.6 of "d"; 2 at a time
    assert status.eta_seconds == 200 * 2.6 / 2


def test_status_command(cli, tmp_path):
    study_dir = _study(tmp_path)
    result = cli.call("status", study_dir)
    assert result.returncode == 0, result.stderr
    assert "6 planned: 2 completed, 1 failed, 0 crashed, 1 running, 2 pending" in result.stdout
    assert "running   d at step 40 of 100" in result.stdout
    assert "best      recon = 80 (minimised) in trial b" in result.stdout
    bad = cli.call("status", tmp_path / "trials")
    assert bad.returncode == 2 and "not a study folder" in bad.stderr
