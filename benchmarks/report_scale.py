"""Report speed and size at study scale: ``report.html`` for N synthetic trials.

Writes a version-2 ``results.parquet`` of N trials (two variants, constant and linear β
schedules, three seeds per configuration for a third of them, recon and MIG objectives)
to a temporary study folder and times :func:`analysis.report.write_report` (median of
three runs; wall and CPU seconds), then prints the page's size.  No trial folders: the
front trials' pictures are reported missing, which costs nothing.

    python benchmarks/report_scale.py [--trials 10000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from analysis.report import write_report
from study.export import results_table

OBJECTIVES = [{"name": "recon", "mode": "min"}, {"name": "mig", "mode": "max"}]


def synthetic_rows(trials: int, seed: int = 0) -> list[dict]:
    """``trials`` result rows like a large β sweep's."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(trials):
        beta = float(rng.uniform(0.5, 16)) if i % 3 else float(1 + (i // 9) % 8)  # a third repeated over seeds
        linear = i % 4 == 0
        params = (
            {"beta.schedule": "linear", "beta.start": 0.0, "beta.end": beta, "beta.start_step": 0, "beta.end_step": 500}
            if linear
            else {"beta.schedule": "constant", "beta.value": beta}
        )
        status = "failed" if i % 97 == 0 else "completed"
        rows.append({
            "trial_id": f"t{i:05d}", "trial_name": f"t{i:05d}-beta_vae-beta={beta:.2f}-s{i % 3}",
            "status": status, "variant": ["beta_vae", "beta_tcvae"][i % 2], "seed": i % 3, "steps": 1000, **params,
            **({} if status == "failed" else {
                "recon": 60 + 4 * beta + rng.normal(), "kl": 30 / beta, "mig": 0.02 * beta + 0.05 * rng.random()}),
            "mlflow_run_id": f"{i:032x}", "started_at": 1.8e9 + i, "finished_at": 1.8e9 + i + 60.0,
            "train_seconds": 55.0, "eval_seconds": 5.0,
        })  # fmt: skip
    return rows


def write_study(root: Path, trials: int) -> Path:
    """A study folder holding only the results parquet of ``trials`` synthetic trials."""
    root.mkdir(parents=True, exist_ok=True)
    pq.write_table(results_table(synthetic_rows(trials), OBJECTIVES), root / "results.parquet")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = write_study(Path(folder) / "study", args.trials)
        wall, cpu = [], []
        for _ in range(3):
            began, began_cpu = time.perf_counter(), time.process_time()
            page = write_report(root)
            wall.append(time.perf_counter() - began)
            cpu.append(time.process_time() - began_cpu)
        size = page.stat().st_size
    print(f"{args.trials} trials: write_report {statistics.median(wall):.2f} s wall, "
          f"{statistics.median(cpu):.2f} s CPU (median of 3); report.html {size / 1e6:.2f} MB")  # fmt: skip


if __name__ == "__main__":
    main()
