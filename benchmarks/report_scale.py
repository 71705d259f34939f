"""Report speed and size at study scale: ``report.html`` for N synthetic trials.

Writes a version-2 ``results.parquet`` of N trials (two variants, constant and linear β
schedules, three seeds per configuration for a third of them, recon and MIG objectives)
to a temporary study folder and times :func:`analysis.report.write_report` (median of
three runs; wall and CPU seconds), then prints the page's size.  No trial folders: the
front trials' pictures are reported missing, which costs nothing.

With ``--pictures`` it times what those pictures cost instead: one front trial's labelled
traversal figure (:func:`analysis.pictures.traversal_figure` of 10 latents × 9 values of
64×64 tiles, half of the latents inactive) rendered to PNG as the report embeds it (median of
five).  A report shows at most ``MAX_PICTURED`` (12) such figures.

    python benchmarks/report_scale.py [--trials 10000]
    python benchmarks/report_scale.py --pictures
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
from study.folder import StudyFolder

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
    pq.write_table(results_table(synthetic_rows(trials), OBJECTIVES), StudyFolder(root).results)
    return root


def time_pictures(repeats: int = 5) -> None:
    from analysis.pictures import TrialPictures, traversal_figure
    from analysis.report import MAX_PICTURED, _png

    rng = np.random.default_rng(0)
    pictures = TrialPictures(
        inputs=rng.random((8, 64, 64)), reconstructions=rng.random((8, 64, 64)),
        traversals=rng.random((10, 9, 64, 64)), values=np.linspace(-2.5, 2.5, 9),
        latent=np.arange(10), kl=np.r_[rng.uniform(0.5, 3, 5), rng.uniform(0, 0.005, 5)],
    )  # fmt: skip
    wall, size = [], 0
    for _ in range(repeats):
        began = time.perf_counter()
        size = len(_png(traversal_figure(pictures, "t0000-beta_vae-beta=4-s0"), tight=False))
        wall.append(time.perf_counter() - began)
    each = statistics.median(wall)
    print(f"traversal figure (10 latents x 9 values): {each:.3f} s wall (median of {repeats}), "
          f"PNG {size / 1e3:.0f} kB; {MAX_PICTURED} front trials: {MAX_PICTURED * each:.1f} s")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--pictures", action="store_true", help="time one front trial's traversal figure")
    args = parser.parse_args()
    if args.pictures:
        time_pictures()
        return
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
