"""Cost of tracking a trial: the same training with and without MLflow logging.

Trains one configuration repeatedly in this process, alternating a no-op reporter
with the study's real trial reporter (terms averaged every ``log_every`` steps, sent
to MLflow in one ``log_batch`` every ``flush_every`` steps from a background thread,
and appended to the trial's history file), against a SQLite MLflow store in a
temporary folder.  Prints wall seconds per variant (median of the repeats) and the
overhead as a percentage of the untracked time.

    python benchmarks/tracking_overhead.py [--steps 600] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from study.folder import StudyFolder, TrialRecord, TrialStatus
from study.tracking import TrialTracker, default_tracking_uri, open_study_run
from study.trial import PackReporter
from trainers.config import EvalConfig, TrainConfig
from trainers.members import train_members
from trainers.reporting import NullReporter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--flush-every", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = TrainConfig(
        variant="beta_vae", steps=args.steps, batch_size=64, precision="bf16", num_threads=1,
        log_every=args.log_every, eval=EvalConfig(recon_points=256, metric_options={"mig": {"num_points": 1000}}),
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as folder:
        root = StudyFolder(folder)
        root.spec_yaml.write_text("name: overhead\n")
        study = open_study_run(default_tracking_uri(root.root), "overhead", root.mlflow_artifacts, {}, root.spec_yaml)
        times: dict[str, list[float]] = {"untracked": [], "tracked": []}
        train_members([TrainConfig(**{**config.__dict__, "steps": 20})], NullReporter())  # warm-up
        for repeat in range(args.repeats):
            began = time.perf_counter()
            train_members([config], NullReporter())
            times["untracked"].append(time.perf_counter() - began)

            began = time.perf_counter()
            tracker = TrialTracker(study, f"trial-{repeat}", {}, {"beta.value": 4.0}, flush_every=args.flush_every)
            member = root.trial(f"trial-{repeat}").create()
            record = TrialRecord(trial_id=member.trial_id, status=TrialStatus.RUNNING)
            # The study's reporter: MLflow, history.jsonl, and the record (the run closes at the end).
            train_members([config], PackReporter([tracker], [record], [member], member.path, objectives=[]))
            times["tracked"].append(time.perf_counter() - began)
    base, tracked = statistics.median(times["untracked"]), statistics.median(times["tracked"])
    print(f"{args.steps} steps, batch 64, bf16, 1 thread, log_every {args.log_every}, flush_every {args.flush_every}")
    print(f"untracked {base:8.2f} s   (runs: {', '.join(f'{t:.2f}' for t in times['untracked'])})")
    print(f"tracked   {tracked:8.2f} s   (runs: {', '.join(f'{t:.2f}' for t in times['tracked'])})")
    print(f"overhead  {100 * (tracked - base) / base:+8.2f} %  (median against median, same process)")


if __name__ == "__main__":
    main()
