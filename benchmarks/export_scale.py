"""Export and status speed at study scale: ``vae-study export`` and ``vae-study status`` over N trials.

Writes N ended trial folders in the format trials write them (``trial_config.json``,
``trial.json``, ``result.json`` as :meth:`study.folder.TrialFolder.write_record` writes
it, and a ``history.jsonl`` of ``--logs`` training reports plus the held-out line, as
:meth:`~study.folder.TrialFolder.append_history` writes them) and the resolved
``spec.json`` to a temporary study folder, then times

* :func:`study.export.export_results` (``results.parquet`` and ``history.parquet``):
  the first export of the folder, and the median of ``--repeat`` more (which keep the
  unchanged ``history.parquet``);
* :func:`study.status.study_status` + :func:`study.status.format_status`: median of
  ``--repeat`` runs;

and reads both files back with plain pandas.  Wall and CPU seconds (all threads) are printed,
with the load average: on a shared host the CPU figure is the steadier one.  Records carry no ``codes`` artifact
(UDR would read every trial's ``codes.npz``; it is timed by the UDR benchmarks).

    python benchmarks/export_scale.py [--trials 1000] [--logs 120] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from study.export import export_results
from study.folder import StudyFolder, TrialPlan, TrialRecord, TrialStatus, write_json_atomic
from study.naming import trial_id, trial_label
from study.spec import parse_spec
from study.status import format_status, study_status
from trainers.outputs import MODEL_PT

#: The training terms a beta-VAE logs (``trainers``' objective terms and its weight's value).
TERMS = ("recon", "kl", "index_code_mi", "total_correlation", "dimwise_kl", "loss", "beta")
OBJECTIVES = [{"name": "recon", "mode": "min"}, {"name": "mig", "mode": "max"}]
LOG_EVERY = 10


def write_spec(root: Path, trials: int, logs: int) -> None:
    """The resolved spec a study folder stores (``spec.json``): an Optuna search of ``trials`` trials."""
    spec = parse_spec(
        {
            "name": "export-scale",
            "variant": "beta_vae",
            "training": {"steps": logs * LOG_EVERY, "log_every": LOG_EVERY},
            "objectives": OBJECTIVES,
            "search": {"num_trials": trials, "max_concurrent": 8},
        }
    )
    StudyFolder(root).spec_json.write_text(json.dumps(spec.model_dump(mode="json"), indent=2, sort_keys=True))


def write_trials(root: Path, trials: int, logs: int) -> None:
    """``trials`` completed trials, each with ``logs`` training reports and its held-out line."""
    folder = StudyFolder(root)
    rng = np.random.default_rng(0)
    steps = logs * LOG_EVERY
    for i in range(trials):
        trial = folder.trial(trial_id(i)).create()
        beta = float(rng.uniform(1, 16))
        weights = {"beta": {"schedule": "constant", "value": beta}}
        name = trial_label(trial.trial_id, "beta_vae", weights, i % 5)
        optuna = {"number": i, "params": {"beta.value": beta}, "distributions": {}}
        trial.write_plan(
            TrialPlan(trial.trial_id, {"variant": "beta_vae", "seed": i % 5}, trial.trial_id, optuna=optuna)
        )
        write_json_atomic(trial.meta_file, {"mlflow_run_id": f"{i:032x}", "trial_name": name, "host": "h", "pid": 1})
        terms = {t: float(v) for t, v in zip(TERMS, rng.random(len(TERMS)), strict=True)}
        # append_history's lines, written at once (the same bytes; one open per trial, not per line).
        lines = [
            json.dumps({"step": LOG_EVERY * (k + 1), "split": "train", "terms": dict(zip(TERMS, row, strict=True))})
            for k, row in enumerate(rng.random((logs, len(TERMS))).tolist())
        ]
        lines.append(json.dumps({"step": steps, "split": "heldout", "terms": {**terms, "mig": 0.1}}))
        trial.history_file.write_text("\n".join(lines) + "\n")
        started = 1_800_000_000.0 + 60 * i
        record = TrialRecord(
            trial_id=trial.trial_id, status=TrialStatus.COMPLETED, trial_name=name, variant="beta_vae", seed=i % 5,
            params={"beta.schedule": "constant", "beta.value": beta}, steps=steps, terms=terms,
            metrics={"mig": float(rng.random())},
            artifacts={"checkpoint": trial.study_path(trial.artifacts / MODEL_PT)},
            mlflow_run_id=f"{i:032x}", mlflow_parent_run_id="f" * 32, started_at=started, finished_at=started + 105.0,
            train_seconds=100.0, eval_seconds=5.0, images_per_second=1000.0, pack_id=trial.trial_id,
        )  # fmt: skip
        trial.write_record(record)


def _timed(action: object) -> float:
    began, cpu = time.perf_counter(), time.process_time()
    action()  # type: ignore[operator]
    _cpu.append(time.process_time() - cpu)
    return time.perf_counter() - began


#: CPU seconds of each timed action (all threads): on a shared host they vary less than wall times.
_cpu: list[float] = []


def _status(root: Path) -> str:
    return format_status(root, study_status(root), {o["name"]: o["mode"] for o in OBJECTIVES})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--logs", type=int, default=120)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs after the first export (default 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        wrote = _timed(lambda: (write_spec(root, args.trials, args.logs), write_trials(root, args.trials, args.logs)))
        os.sync()  # the first export should not pay for the writer's dirty pages
        load = os.getloadavg()[0]
        first = _timed(lambda: export_results(root, OBJECTIVES))
        first_cpu = _cpu[-1]
        again = [_timed(lambda: export_results(root, OBJECTIVES)) for _ in range(args.repeat)]
        again_cpu = statistics.median(_cpu[-args.repeat :])
        status = [_timed(lambda: _status(root)) for _ in range(args.repeat)]
        status_cpu = statistics.median(_cpu[-args.repeat :])
        load = max(load, os.getloadavg()[0])
        results = pd.read_parquet(StudyFolder(root).results)
        history = pd.read_parquet(StudyFolder(root).history)
        summary = _status(root).splitlines()[1].strip()
    print(f"{args.trials} trials, {len(history):,} history rows ({args.logs} logs x {len(TERMS)} terms + held-out)")
    print(f"wrote the folder in {wrote:.1f} s")
    print(f"export: first {first:.2f} s ({first_cpu:.2f} s CPU), then {statistics.median(again):.2f} s "
          f"({again_cpu:.2f} s CPU; median of {_list(again)})")  # fmt: skip
    print(f"status: {statistics.median(status):.2f} s ({status_cpu:.2f} s CPU; median of {_list(status)}): {summary}")
    print(f"load average (1 min) up to {load:.1f} on {os.cpu_count()} CPUs")
    print(f"results.parquet: {len(results)} rows x {results.shape[1]} columns")


def _list(seconds: list[float]) -> str:
    return ", ".join(f"{s:.2f}" for s in seconds)


if __name__ == "__main__":
    main()
