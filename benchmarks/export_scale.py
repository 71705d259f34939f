"""Export speed at study scale: ``results.parquet`` and ``history.parquet`` for N trials.

Writes N trial folders in the format trials write (``result.json`` and a
``history.jsonl`` of ``--logs`` reports of 8 terms each, plus the held-out line) to a
temporary study folder, then times :func:`study.export.export_results` (median of
three runs) and reads both files back with plain pandas.

    python benchmarks/export_scale.py [--trials 1000] [--logs 120]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from study.export import export_results

TERMS = ("recon", "kl", "index_code_mi", "total_correlation", "dimwise_kl", "loss", "beta")


def write_trials(root: Path, trials: int, logs: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(trials):
        folder = root / "trials" / f"{i:08x}"
        folder.mkdir(parents=True)
        terms = {t: float(v) for t, v in zip(TERMS, rng.random(len(TERMS)), strict=True)}
        record = {
            "trial_id": folder.name, "trial_name": f"run_trial_{folder.name}", "status": "completed",
            "variant": "beta_vae", "seed": i % 5, "steps": logs * 10,
            "params": {"beta.schedule": "constant", "beta.value": float(rng.uniform(1, 16))},
            "terms": terms, "metrics": {"mig": float(rng.random())}, "mlflow_run_id": f"{i:032x}",
            "artifacts": {"checkpoint": str(folder / "artifacts" / "model.pt")},
            "train_seconds": 100.0, "eval_seconds": 5.0,
            "images_per_second": 1000.0, "started_at": 0.0, "finished_at": 105.0, "resumed_from_step": 0,
        }  # fmt: skip
        (folder / "result.json").write_text(json.dumps(record))
        lines = [
            json.dumps({"step": 10 * (k + 1), "split": "train", "terms": dict(zip(TERMS, rng.random(8), strict=False))})
            for k in range(logs)
        ]
        lines.append(json.dumps({"step": 10 * logs, "split": "heldout", "terms": {**terms, "mig": 0.1}}))
        (folder / "history.jsonl").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--logs", type=int, default=120)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_trials(root, args.trials, args.logs)
        seconds = []
        for _ in range(3):
            began = time.perf_counter()
            export_results(root, [{"name": "recon", "mode": "min"}, {"name": "mig", "mode": "max"}])
            seconds.append(time.perf_counter() - began)
        results = pd.read_parquet(root / "results.parquet")
        history = pd.read_parquet(root / "history.parquet")
    print(f"{args.trials} trials, {len(history):,} history rows ({args.logs} logs x {len(TERMS)} terms + held-out)")
    print(f"export: {statistics.median(seconds):.2f} s (median of {', '.join(f'{s:.2f}' for s in seconds)})")
    print(f"results.parquet: {len(results)} rows x {results.shape[1]} columns")


if __name__ == "__main__":
    main()
