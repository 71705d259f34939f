"""Pareto stopping against no stopping and single-objective ASHA, and what a rung's estimate costs.

**Comparison.**  One spec (a β-VAE on dSprites, β searched over three decades, recon
against MIG) is run three ways for each search seed: without early stopping, with
ASHA on the training ``recon`` (a single-objective study: Tune's ASHA takes one metric)
and with ``early_stopping: {kind: pareto}``.  Every run uses Optuna's random sampler
with the same seed, so the three see the same configurations in the same order and
differ only in what they stop.  For each run: the hypervolume of the completed trials'
front on (recon, MIG) against a fixed reference point, and the training steps consumed
(a completed trial its ``training.steps``; a stopped one the last step it trained).  The
table gives each way's mean over the seeds and its ratios to no stopping.

**Estimate cost.**  The wall time of :func:`trainers.evaluation.estimate` (held-out recon
on ``recon_points`` images, MIG on ``metric_points`` points) against the final
evaluation (:func:`trainers.evaluation.evaluate`: ``evaluation.recon_points`` and MIG's
``num_points``) of the spec's model, median of ``--repeats``, on this host's CPU.

    python benchmarks/early_stopping.py [--quick] [--seeds 0 1 2] [--out build/early_stopping]
    python benchmarks/early_stopping.py --cost-only

``--quick`` shrinks everything (40 steps, 6 trials) to check that the script runs; its
figures mean nothing.  Each study runs as ``vae-study run`` in its own process.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analysis.pareto import hypervolume  # noqa: E402
from study.folder import StudyFolder, TrialStatus  # noqa: E402
from study.spec import parse_spec  # noqa: E402
from trainers.data import make_dataset  # noqa: E402
from trainers.evaluation import estimate, evaluate  # noqa: E402
from trainers.reporting import EstimateRequest  # noqa: E402
from trainers.setup import build  # noqa: E402

#: The reference point of the hypervolume: recon (nats, minimised) and MIG (maximised).
REFERENCE = {"recon": 200.0, "mig": 0.0}
#: ``--quick``'s: 40 steps leave recon in the hundreds.
QUICK_REFERENCE = {"recon": 3000.0, "mig": 0.0}

FULL: dict[str, Any] = {
    "name": "early_stopping",
    "variant": "beta_vae",
    "training": {"steps": 3000, "batch_size": 64, "log_every": 100, "checkpoint_every": 100},
    "evaluation": {"metrics": ["mig"], "metric_options": {"mig": {"num_points": 10000}}},
    "weights": {"beta": {"schedule": "constant", "value": {"low": 0.1, "high": 100, "log": True}}},
    "objectives": [
        {"name": "recon", "mode": "min", "reference": REFERENCE["recon"]},
        {"name": "mig", "mode": "max", "reference": REFERENCE["mig"]},
    ],
    "search": {"num_trials": 27, "max_concurrent": 2, "sampler": "random", "storage": "sqlite"},
    "resources": {"cpus": 1},
}
GRACE, ETA = 300, 3.0


def quick(spec: dict[str, Any]) -> dict[str, Any]:
    """The script's smoke-test size: seconds per study, figures meaningless."""
    spec = copy.deepcopy(spec)
    spec["model"] = {"latent_dim": 4}
    spec["training"] = {"steps": 40, "batch_size": 16, "log_every": 10, "checkpoint_every": 10}
    spec["evaluation"] = {"recon_points": 64, "udr_points": 100, "metric_options": {"mig": {"num_points": 500}}}
    spec["search"]["num_trials"] = 6
    for objective in spec["objectives"]:
        objective["reference"] = QUICK_REFERENCE[objective["name"]]
    return spec


def variant(spec: dict[str, Any], way: str, seed: int, grace: int) -> dict[str, Any]:
    """``spec`` stopped ``way`` (``none``, ``asha``, ``pareto``) with search seed ``seed``."""
    spec = copy.deepcopy(spec)
    spec["name"] = f"{spec['name']}-{way}-{seed}"
    spec["search"]["seed"] = seed
    if way == "asha":
        spec["objectives"] = [spec["objectives"][0]]  # ASHA ranks one metric: a single-objective study
        spec["search"]["early_stopping"] = {
            "kind": "asha", "metric": "recon", "grace_period": grace, "reduction_factor": ETA,
        }  # fmt: skip
    elif way == "pareto":
        # A rung's estimate: an eighth of the final evaluation's images, a tenth of its MIG points.
        recon = spec["evaluation"].get("recon_points", 2048) // 8
        mig = spec["evaluation"]["metric_options"]["mig"]["num_points"] // 10
        spec["search"]["early_stopping"] = {
            "kind": "pareto", "grace_period": grace, "reduction_factor": ETA,
            "recon_points": recon, "metric_points": mig,
        }  # fmt: skip
    return spec


def steps_consumed(study_dir: Path, steps: int) -> int:
    """Training steps of every trial: a completed one's ``steps``, a stopped one's last trained step."""
    folder = StudyFolder(study_dir)
    total = 0
    for trial in folder.trials():
        record = trial.read_record()
        total += steps if record is not None and record.status == TrialStatus.COMPLETED else trial.last_step()
    return total


def front_hypervolume(study_dir: Path, reference: dict[str, float]) -> float:
    """The hypervolume of the completed trials on (recon, MIG) against ``reference``."""
    points = []
    for trial in StudyFolder(study_dir).trials():
        record = trial.read_record()
        if record is not None and record.status == TrialStatus.COMPLETED:
            values = record.values
            points.append([values["recon"], values["mig"]])
    if not points:
        return 0.0
    return hypervolume(np.array(points), ["min", "max"], [reference["recon"], reference["mig"]])


def run(spec: dict[str, Any], study_dir: Path) -> float:
    """``vae-study run`` of ``spec`` into ``study_dir``; its wall time."""
    spec_file = study_dir.with_suffix(".yaml")
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    began = time.perf_counter()
    command = [sys.executable, "-m", "study.cli", "run", str(spec_file), "--study-dir", str(study_dir), "--quiet"]
    subprocess.run(command, check=True, cwd=ROOT)
    return time.perf_counter() - began


def compare(base: dict[str, Any], seeds: list[int], out: Path, grace: int) -> list[dict[str, Any]]:
    rows = []
    for seed in seeds:
        for way in ("none", "asha", "pareto"):
            study_dir = out / f"{way}-{seed}"
            if not StudyFolder(study_dir).results.exists():
                run(variant(base, way, seed, grace), study_dir)
            rows.append(
                {
                    "way": way,
                    "seed": seed,
                    "hypervolume": front_hypervolume(
                        study_dir, {o["name"]: o["reference"] for o in base["objectives"]}
                    ),
                    "steps": steps_consumed(study_dir, base["training"]["steps"]),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """Mean hypervolume and steps per way, and their ratios to no stopping (markdown)."""
    mean = {
        way: {k: statistics.mean(r[k] for r in rows if r["way"] == way) for k in ("hypervolume", "steps")}
        for way in ("none", "asha", "pareto")
    }
    lines = [
        "| stopping | hypervolume | steps | hypervolume / none | steps / none |",
        "|---|---|---|---|---|",
    ]
    for way, m in mean.items():
        hv_ratio = m["hypervolume"] / mean["none"]["hypervolume"] if mean["none"]["hypervolume"] else float("nan")
        lines.append(
            f"| {way} | {m['hypervolume']:.4g} | {m['steps']:.0f} | {hv_ratio:.2f} | "
            f"{m['steps'] / mean['none']['steps']:.2f} |"
        )
    return "\n".join(lines)


def estimate_cost(base: dict[str, Any], repeats: int, grace: int) -> dict[str, float]:
    """Seconds of a rung's estimate and of the final evaluation (medians), and their ratio."""
    spec = parse_spec(variant(base, "pareto", 0, grace))
    stopping = spec.search.early_stopping
    assert stopping is not None
    config = spec.point_train_config({"variant": "beta_vae", "seed": 0, "beta.schedule": "constant", "beta.value": 1})
    torch.set_num_threads(1)
    data = make_dataset(config.dataset, **config.dataset_options)
    torch.manual_seed(0)
    objective, model = build(config, data)
    cpu = torch.device("cpu")
    request = EstimateRequest(("recon", "mig"), stopping.recon_points, stopping.metric_points)

    def timed(fn: Any) -> float:
        times = []
        for _ in range(repeats):
            began = time.perf_counter()
            fn()
            times.append(time.perf_counter() - began)
        return statistics.median(times)

    cheap = timed(lambda: estimate(model, objective, data, config, cpu, request, config.steps))
    full = timed(lambda: evaluate(model, objective, data, config, cpu))
    return {
        "estimate_s": cheap,
        "evaluation_s": full,
        "ratio": cheap / full,
        "recon_points": stopping.recon_points,
        "metric_points": stopping.metric_points,
        "evaluation_recon_points": config.eval.recon_points,
        "evaluation_mig_points": config.eval.metric_options.get("mig", {}).get("num_points", 10000),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny studies: checks the script runs, figures mean nothing"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="search seeds (at least 3)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "early_stopping", help="where the studies go")
    parser.add_argument("--cost-only", action="store_true", help="only time a rung's estimate against the evaluation")
    parser.add_argument("--repeats", type=int, default=3, help="timings per measurement (median)")
    args = parser.parse_args()
    base = quick(FULL) if args.quick else FULL
    grace = 10 if args.quick else GRACE
    cost = estimate_cost(base, args.repeats, grace)
    print(json.dumps({"estimate_cost": cost}), flush=True)
    if args.cost_only:
        return
    args.out.mkdir(parents=True, exist_ok=True)
    rows = compare(base, args.seeds, args.out, grace)
    text = table(rows)
    (args.out / "results.json").write_text(json.dumps({"rows": rows, "estimate_cost": cost}, indent=2))
    (args.out / "table.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
