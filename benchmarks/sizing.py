"""Sizing a Locatello-sized study on paper: GPU-hours, disk, MLflow rows, Optuna rows, head-node load.

Counted here (on the CPU, in seconds): the FLOPs of one training step (forward,
backward, Adam) of each of the six variants of ``examples/locatello_grid.yaml`` at
batch 64 (``torch.utils.flop_counter``), the terms each reports per log, the bytes of
one ``history.jsonl`` line, the MLflow params and tags of a member run, and the rows an
Optuna RDB storage keeps per trial (a real SQLite storage, the default spec's
search space, two objectives).  Assumed, and printed as such: the GPU's rate
(``--peak`` × ``--utilisation``), the bytes of one metric row in PostgreSQL, the
finished trial's files (``--trial-mb``, from benchmarks/sweep_scale.py's table), and
the number of GPUs.

    python benchmarks/sizing.py [--gpus 8 64 256] [--utilisation 0.05] [--pack 64] [--log-every 10 100 1000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS, STRENGTHS, SEEDS, DATASETS = 6, 6, 50, 7
STEPS, BATCH = 300_000, 64
#: H200 SXM dense bf16, vendor data sheet (the same figure as benchmarks/throughput.py's NOMINAL_PEAKS).
H200_BF16 = 989e12
#: PostgreSQL bytes per MLflow metric row (key, value, timestamp, step, run id, is_nan) with its
#: primary-key index: an assumption, not a measurement.
METRIC_ROW_BYTES = 150
#: MLflow's own tags on a nested run (runName, parentRunId, user, source name and type).
MLFLOW_SYSTEM_TAGS = 5


def per_variant(batch: int) -> list[dict]:
    """Each variant's FLOPs per step, terms per log and history bytes per log (first grid point)."""
    from study.space import grid_points
    from study.spec import load_spec
    from trainers.data import make_dataset
    from trainers.setup import build, stream_seeds

    spec = load_spec(ROOT / "examples" / "locatello_grid.yaml")
    rows, seen = [], set()
    for point in grid_points(spec):
        if point["variant"] in seen:
            continue
        seen.add(point["variant"])
        params = {k: v for k, v in point.items() if k not in ("variant", "seed")}
        config = spec.train_config(params, point["seed"], point["variant"])
        config.batch_size, config.device = batch, "cpu"
        data = make_dataset(config.dataset, **config.dataset_options)
        torch.manual_seed(stream_seeds(0)["init"])
        objective, model = build(config, data)
        optimizers = objective.make_optimizers(model, config.lr)
        rng, noise = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)

        def next_batch(config=config, data=data, rng=rng):
            return data.observations(data.sample_factors(config.batch_size, rng), "cpu", rng)

        objective.train_step(model, optimizers, next_batch, 0, noise, "fp32")  # lazily built state
        with FlopCounterMode(display=False) as counter:
            terms = objective.train_step(model, optimizers, next_batch, 1, noise, "fp32")
        line = json.dumps({"step": STEPS, "split": "train", "terms": {k: float(v.detach()) for k, v in terms.items()}})
        mlflow_params = 2 + len(config.variant_options) + len(params)
        tags = 4 + sum(1 for k in params if k.endswith(".schedule")) + 1 + MLFLOW_SYSTEM_TAGS  # + model tag
        rows.append(
            {
                "variant": config.variant,
                "flops": float(counter.get_total_flops()),
                "terms": len(terms),
                "line_bytes": len(line) + 1,
                "params": mlflow_params,
                "tags": tags,
            }
        )
    return rows


def optuna_rows_per_trial(trials: int = 20) -> dict[str, float]:
    """Rows per trial in each table of a real Optuna RDB storage (the default spec, two objectives)."""
    import optuna
    import sqlalchemy

    from study.folder import StudyFolder
    from study.space import DefineByRun
    from study.spec import load_spec

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = load_spec(ROOT / "examples" / "default.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{StudyFolder(Path(tmp)).optuna_db}"
        study = optuna.create_study(storage=url, directions=["minimize", "maximize"])
        space = DefineByRun(spec)
        for _ in range(trials):
            trial = study.ask()
            space(trial)
            study.tell(trial.number, [0.1, 0.2])
        engine = sqlalchemy.create_engine(url)
        with engine.connect() as connection:
            tables = sqlalchemy.inspect(engine).get_table_names()
            counts = {t: connection.execute(sqlalchemy.text(f"SELECT COUNT(*) FROM {t}")).scalar() for t in tables}
        engine.dispose()
    return {t: n / trials for t, n in counts.items() if n and t.startswith("trial")}


def human(n: float) -> str:
    for unit, size in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.3g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", type=int, nargs="+", default=[8, 64, 256])
    parser.add_argument("--peak", type=float, default=H200_BF16, help="GPU peak FLOP/s (default: H200 dense bf16)")
    parser.add_argument("--utilisation", type=float, nargs="+", default=[0.02, 0.05, 0.15], help="assumed")
    parser.add_argument("--pack", type=int, default=64, help="members per pack (pack_size)")
    parser.add_argument("--log-every", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--flush-every", type=int, default=100)
    parser.add_argument("--checkpoint-every", type=int, default=10_000)
    parser.add_argument("--trial-mb", type=float, default=3.31, help="a finished trial's files (sweep_scale.py)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    trials = VARIANTS * STRENGTHS * SEEDS * DATASETS
    rows = per_variant(BATCH)
    flops_step = sum(r["flops"] for r in rows) / len(rows)
    terms = sum(r["terms"] for r in rows) / len(rows)
    line_bytes = sum(r["line_bytes"] for r in rows) / len(rows)
    total_flops = trials * STEPS * flops_step

    print(f"study: {VARIANTS} variants x {STRENGTHS} strengths x {SEEDS} seeds x {DATASETS} data sets = {trials:,}")
    print(f"trials of {STEPS:,} steps at batch {BATCH}; packs of {args.pack} -> {-(-trials // args.pack):,} Ray trials")
    print("\nper variant (counted on the CPU, fp32 step: forward + backward + Adam):")
    print(f"{'variant':<14}{'GFLOP/step':>12}{'terms/log':>11}{'history B/log':>15}{'params':>8}{'tags':>6}")
    for r in rows:
        print(
            f"{r['variant']:<14}{r['flops'] / 1e9:>12.2f}{r['terms']:>11}{r['line_bytes']:>15}"
            f"{r['params']:>8}{r['tags']:>6}"
        )
    print(f"mean: {flops_step / 1e9:.2f} GFLOP per step; whole study {total_flops:.3g} FLOP")

    print(f"\nGPU time (ESTIMATE: peak {args.peak / 1e12:.0f} TFLOP/s x an assumed utilisation):")
    print(f"{'utilisation':>12}{'GPU-hours':>12}" + "".join(f"{f'h on {g} GPUs':>14}" for g in args.gpus))
    for u in args.utilisation:
        hours = total_flops / (args.peak * u) / 3600
        print(f"{u:>12.0%}{hours:>12,.0f}" + "".join(f"{hours / g:>14.1f}" for g in args.gpus))

    print(f"\ntracking and disk per log_every (flush_every {args.flush_every}):")
    head = f"{'log_every':>10}{'points/trial':>14}{'metric rows':>13}{'PG metrics GB':>15}"
    print(head + f"{'history GB':>12}{'study folder GB':>17}")
    for every in args.log_every:
        reports = STEPS // every
        points = reports * terms + terms + 1  # + held-out terms and the metric(s) at the end
        history_gb = trials * reports * line_bytes / 1e9
        folder_gb = trials * args.trial_mb / 1e3 + history_gb
        pg_gb = trials * points * METRIC_ROW_BYTES / 1e9
        print(
            f"{every:>10,}{points:>14,.0f}{human(trials * points):>13}{pg_gb:>15,.0f}"
            f"{history_gb:>12,.1f}{folder_gb:>17,.0f}"
        )
    params = sum(r["params"] for r in rows) / len(rows)
    tags = sum(r["tags"] for r in rows) / len(rows)
    print(
        f"MLflow runs {trials + 1:,}; params rows {trials * params:,.0f}; tags rows {trials * tags:,.0f};"
        f" log_batch calls {trials * STEPS // args.flush_every:,} (every {args.flush_every} steps per trial)"
    )

    packs = -(-trials // args.pack)
    reports = packs * (STEPS // args.checkpoint_every + 1)
    print(
        f"\nhead node: {packs:,} Ray trials, {reports:,} Tune results (one per checkpoint, every"
        f" {args.checkpoint_every:,} steps, and one at the end); per hour at the 5 % row:"
    )
    hours = total_flops / (args.peak * 0.05) / 3600
    for g in args.gpus:
        wall = hours / g
        calls = trials * STEPS / args.flush_every / wall / 3600
        print(
            f"  {g:>4} GPUs: {reports / wall:,.0f} Tune results/h, {calls:,.0f} log_batch calls/s at the MLflow"
            f" server, {trials / wall:,.0f} trials finished/h"
        )

    print("\nOptuna RDB rows per trial (real SQLite storage, default.yaml's space, 2 objectives):")
    optuna_rows = optuna_rows_per_trial()
    print("  " + ", ".join(f"{t} {n:g}" for t, n in sorted(optuna_rows.items())))
    print(
        f"  an Optuna study of {trials:,} trials: {trials * sum(optuna_rows.values()):,.0f} rows"
        " (a grid study like Locatello's keeps none: its points are a list)"
    )


if __name__ == "__main__":
    main()
