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

With ``--end-to-end N`` it runs one study of N tiny trials (packs of ``--pack``'s first K)
the way a long sweep lives: ``status`` while it runs (at a quarter of the trials), a
SIGKILL of the driver with its local Ray and workers once half have ended, ``resume
--take-over``, then ``export`` and ``report``; it checks that the study ends with exactly
N completed trials (parquet rows and MLflow runs) and prints each phase's figures.

    python benchmarks/sweep_scale.py --trials 30 100 300 --pack 1 8 [--synthetic 10000]
    python benchmarks/sweep_scale.py --end-to-end 1000 --pack 8
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
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

from study.folder import StudyFolder

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


def write_spec(trials: int, pack: int, root: Path) -> Path:
    """The tiny study's spec with N trials in packs of K, as ``root/sweep.yaml`` (beside the study folder)."""
    spec = json.loads(json.dumps(TINY))
    spec["search"]["num_trials"] = trials
    spec["training"]["pack_size"] = pack
    path = root / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def run_sweep(trials: int, pack: int, root: Path) -> dict[str, object]:
    path = write_spec(trials, pack, root)
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
    df = pd.read_parquet(StudyFolder(study).results)
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
    StudyFolder(study).spec_json.write_text(json.dumps(spec))
    export = cli("export", study, cwd=root)
    return {
        "trials": trials,
        "pack": "synthetic",
        "export_s": round(export, 2),
        "status_s": round(cli("status", study, cwd=root), 2),
        "report_s": round(cli("report", study, cwd=root), 2),
        "report_mb": round(StudyFolder(study).report.stat().st_size / 2**20, 2),
    }


def ended_trials(study: Path) -> int:
    return sum(1 for trial in StudyFolder(study).trials() if trial.result_file.exists())


def descendants(root: int) -> list[int]:
    """Every live process below ``root``, from /proc (a local Ray's GCS, raylet and workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a driver and every process below it, as when its machine dies."""
    for pid in [proc.pid, *descendants(proc.pid)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def run_end_to_end(trials: int, pack: int, root: Path) -> dict[str, object]:
    path = write_spec(trials, pack, root)
    study = root / "study"
    row: dict[str, object] = {"trials": trials, "pack": pack}
    began = time.perf_counter()
    driver = subprocess.Popen(
        [sys.executable, "-m", "study.cli", "run", str(path), "--study-dir", str(study), "--quiet"],
        cwd=root, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    sampler = ProcessSampler(driver.pid)
    sampler.start()
    while ended_trials(study) < trials // 4 and driver.poll() is None:
        time.sleep(1)
    row["status_while_running_s"] = round(cli("status", study, cwd=root), 2)
    while ended_trials(study) < trials // 2 and driver.poll() is None:
        time.sleep(0.5)
    row["ended_at_kill"] = ended_trials(study)
    row["run_wall_s"] = round(time.perf_counter() - began, 1)
    kill_tree(driver)
    sampler.join()
    row["driver_cpu_s"], row["driver_peak_mb"] = round(sampler.cpu_seconds, 1), round(sampler.peak_mb)
    began = time.perf_counter()
    resume = subprocess.Popen(
        [sys.executable, "-m", "study.cli", "resume", str(study), "--take-over", "--quiet"],
        cwd=root, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    sampler = ProcessSampler(resume.pid)
    sampler.start()
    out = resume.communicate()[0]
    sampler.join()
    if resume.returncode != 0:
        raise SystemExit(f"the resume failed ({resume.returncode}):\n{out[-4000:]}")
    row["resume_wall_s"] = round(time.perf_counter() - began, 1)
    row["resume_driver_cpu_s"], row["resume_driver_peak_mb"] = round(sampler.cpu_seconds, 1), round(sampler.peak_mb)
    df = pd.read_parquet(StudyFolder(study).results)
    with sqlite3.connect(StudyFolder(study).mlflow_db) as db:
        nested = db.execute("SELECT count(*) FROM tags WHERE key = 'mlflow.parentRunId'").fetchone()[0]
    if len(df) != trials or not df["trial_id"].is_unique or nested != trials:
        raise SystemExit(f"the study ended with {len(df)} rows ({df['trial_id'].nunique()} ids), {nested} MLflow runs")
    row["completed"] = int((df["status"] == "completed").sum())
    row["resumed_trials"] = int((df["resumed_from_step"].fillna(0) > 0).sum())
    row["disk_mb_per_trial"] = round(disk_bytes(study) / trials / 2**20, 2)
    row["export_s"] = round(cli("export", study, cwd=root), 2)
    row["status_s"] = round(cli("status", study, cwd=root), 2)
    row["report_s"] = round(cli("report", study, cwd=root), 2)
    row["report_mb"] = round(StudyFolder(study).report.stat().st_size / 2**20, 2)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, nargs="+", default=[30])
    parser.add_argument("--pack", type=int, nargs="+", default=[1])
    parser.add_argument("--synthetic", type=int, default=0, help="also time export/status/report on N records")
    parser.add_argument("--end-to-end", type=int, default=0, metavar="N", help="one N-trial study, killed and resumed")
    args = parser.parse_args()
    if args.end_to_end:
        with tempfile.TemporaryDirectory() as folder:
            row = run_end_to_end(args.end_to_end, args.pack[0], Path(folder))
        print(json.dumps(row), flush=True)
        return
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
