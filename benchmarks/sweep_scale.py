"""Sweeps at the size they are run, through the real CLI.

For each N (trials) and K (members per pack) it runs ``vae-study run`` of a tiny study
(20 steps, batch 16, latent_dim 10, MIG on 1,000 points, ``max_concurrent: 2``) in a
fresh folder and prints, in one table:

* wall time, and the overhead per trial: the slot time a trial costs beyond its own
  training and evaluation, ``(wall × max_concurrent − Σ_packs (train + eval)) / N``;
* the driver's CPU seconds and peak memory (from /proc, sampled while it runs);
* disk per trial (the whole study folder, MLflow's store included, over N);
* the wall times of ``vae-study export``, ``status`` and ``report`` on the finished study.

With ``--synthetic N`` it also writes N synthetic trial records (the trials' format) and
times export, status and report on them.

    python benchmarks/sweep_scale.py --trials 30 100 300 --pack 1 8 [--synthetic 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from export_scale import write_trials  # the trials' record format, shared

TINY = {
    "name": "sweep",
    "variant": "beta_vae",
    "model": {"latent_dim": 10},
    "training": {"steps": 20, "batch_size": 16, "lr": 1e-3, "log_every": 10},
    "evaluation": {"metric_options": {"mig": {"num_points": 1000}}},
    "seeds": [0, 1, 2],
    "weights": {"beta": {"schedule": "constant", "value": {"low": 0.5, "high": 8, "log": True}}},
    "objectives": [{"name": "recon", "mode": "min"}, {"name": "mig", "mode": "max"}],
    "search": {"num_trials": 30, "max_concurrent": 2, "sampler": "random"},
}
CONCURRENT = TINY["search"]["max_concurrent"]
ENV = {
    **os.environ,
    "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296",
}


class ProcessSampler(threading.Thread):
    """Samples a process's CPU seconds and peak resident memory until it exits."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.cpu_seconds, self.peak_mb = pid, 0.0, 0.0

    def run(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        while True:
            try:
                stat = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
                status = Path(f"/proc/{self.pid}/status").read_text()
            except OSError:
                return
            if stat[0] == "Z":
                return
            self.cpu_seconds = (int(stat[11]) + int(stat[12])) / tick
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_mb = int(line.split()[1]) / 1024
            time.sleep(0.2)


def cli(*args: object, cwd: Path) -> float:
    """Wall seconds of one ``vae-study`` command (it must succeed)."""
    began = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "study.cli", *map(str, args)], cwd=cwd, env=ENV, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"vae-study {args[0]} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - began


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def run_sweep(trials: int, pack: int, root: Path) -> dict[str, object]:
    spec = json.loads(json.dumps(TINY))
    spec["search"]["num_trials"] = trials
    spec["training"]["pack_size"] = pack
    path = root / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    study = root / "study"
    began = time.perf_counter()
    driver = subprocess.Popen(
        [sys.executable, "-m", "study.cli", "run", str(path), "--study-dir", str(study)],
        cwd=root, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    sampler = ProcessSampler(driver.pid)
    sampler.start()
    out = driver.communicate()[0]
    wall = time.perf_counter() - began
    sampler.join()
    if driver.returncode != 0:
        raise SystemExit(f"the study failed ({driver.returncode}):\n{out[-4000:]}")
    df = pd.read_parquet(study / "results.parquet")
    # A pack's members share its training; each evaluates in turn.
    packs = df.groupby("pack_id").agg(train=("train_seconds", "max"), evaluate=("eval_seconds", "sum"))
    busy = float((packs["train"] + packs["evaluate"]).sum())
    return {
        "trials": trials,
        "pack": pack,
        "completed": int((df["status"] == "completed").sum()),
        "wall_s": round(wall, 1),
        "overhead_s_per_trial": round((wall * CONCURRENT - busy) / trials, 2),
        "train_eval_s_per_trial": round(busy / trials, 2),
        "driver_cpu_s": round(sampler.cpu_seconds, 1),
        "driver_peak_mb": round(sampler.peak_mb),
        "disk_mb_per_trial": round(disk_bytes(study) / trials / 2**20, 2),
        "export_s": round(cli("export", study, cwd=root), 2),
        "status_s": round(cli("status", study, cwd=root), 2),
        "report_s": round(cli("report", study, cwd=root), 2),
    }


def run_synthetic(trials: int, root: Path) -> dict[str, object]:
    study = root / "synthetic"
    write_trials(study, trials, logs=20)
    spec = {**TINY, "search": {**TINY["search"], "num_trials": trials}}
    (study / "spec.json").write_text(json.dumps(spec))
    export = cli("export", study, cwd=root)
    return {
        "trials": trials,
        "pack": "synthetic",
        "export_s": round(export, 2),
        "status_s": round(cli("status", study, cwd=root), 2),
        "report_s": round(cli("report", study, cwd=root), 2),
        "report_mb": round((study / "report.html").stat().st_size / 2**20, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, nargs="+", default=[30])
    parser.add_argument("--pack", type=int, nargs="+", default=[1])
    parser.add_argument("--synthetic", type=int, default=0, help="also time export/status/report on N records")
    args = parser.parse_args()
    rows = []
    for pack in args.pack:
        for trials in args.trials:
            with tempfile.TemporaryDirectory() as folder:
                rows.append(run_sweep(trials, pack, Path(folder)))
            print(json.dumps(rows[-1]), flush=True)
    if args.synthetic:
        with tempfile.TemporaryDirectory() as folder:
            rows.append(run_synthetic(args.synthetic, Path(folder)))
        print(json.dumps(rows[-1]), flush=True)
    print()
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
