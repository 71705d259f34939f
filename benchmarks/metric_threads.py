"""Metrics that fit with torch, beside training trials: torch's threads at the core count vs the trial's share.

Starts ``--busy`` processes that each train a small MLP on one thread (the trials
beside the metric), then times the metrics that fit with torch (the BetaVAE score's
and explicitness' logistic regressions) with torch's threads at the host's core count
(torch's default, what a metric got when nothing sized it) and at ``--share`` (a
trial's ``resources.cpus``, what ``trainers.evaluation.compute_metric`` now sets through
``trainers.metrics.threads.metric_threads``). Same code and sizes as
``metrics_suite.py``.

    python benchmarks/metric_threads.py [--busy 2] [--share 1]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time

import numpy as np
import torch
from metrics_suite import DSpritesFactors

from trainers.metrics import METRICS


def train_beside(stop: mp.synchronize.Event) -> None:
    """A trial's CPU load: one-thread MLP steps until told to stop."""
    torch.set_num_threads(1)
    model = torch.nn.Sequential(torch.nn.Linear(512, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(256, 512)
    while not stop.is_set():
        optimizer.zero_grad()
        model(x).pow(2).mean().backward()
        optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--busy", type=int, default=2, help="training processes beside the metric")
    parser.add_argument("--share", type=int, default=1, help="the trial's threads (resources.cpus)")
    parser.add_argument("--metrics", nargs="+", default=["beta_vae_score", "modularity_explicitness"])
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    data = DSpritesFactors()
    rng = np.random.default_rng(0)
    mixing = torch.as_tensor(np.eye(5, 10) + 0.2 * rng.normal(size=(5, 10)))
    sizes = torch.tensor(data.factor_sizes, dtype=torch.float64)

    def code(x: torch.Tensor) -> torch.Tensor:
        return (x / sizes) @ mixing + 0.05 * torch.randn(len(x), 10, dtype=torch.float64)

    stop = mp.get_context("spawn").Event()
    busy = [mp.get_context("spawn").Process(target=train_beside, args=(stop,)) for _ in range(args.busy)]
    for process in busy:
        process.start()
    try:
        time.sleep(2.0)  # let the trials start
        print(f"{args.busy} one-thread trials training beside, {cores} cores")
        print(f"{'metric':<26}{'threads':>8}{'seconds':>9}{'cpu s':>8}")
        for name in args.metrics:
            for threads in (cores, args.share):
                torch.set_num_threads(threads)
                began, cpu = time.perf_counter(), time.process_time()
                METRICS[name].compute(code, data, seed=0)
                seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
                print(f"{name:<26}{threads:>8}{seconds:>9.2f}{cpu:>8.2f}", flush=True)
    finally:
        stop.set()
        for process in busy:
            process.join()


if __name__ == "__main__":
    main()
