"""DCI: the fast importances (``dci_fast``) against the reference (``dci``, exact splits) on several codes.

Codes of the dSprites factor grid, computed from the factor rows (as in
``metrics_suite.py``), each a kind a trained model may give:

- ``perfect``: latent k a monotone function of factor k (5 latents);
- ``jittered``: ``perfect`` plus uniform noise within half a factor step;
- ``rotated``: ``perfect`` mixed by a random rotation of the 5 latents;
- ``noisy``: ``perfect`` plus Gaussian noise (σ = 0.05 of the factor range);
- ``nuisance``: ``noisy`` plus 5 latents of pure noise.

Prints, per code, both sets of values, their differences and the seconds each took
(wall clock, and CPU seconds of all threads: the figure to compare on a busy host),
then the worst absolute difference per value.

    python benchmarks/dci_fast_vs_reference.py [--threads 2] [--num-train 10000 --num-test 5000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from trainers.data import ProceduralDSprites
from trainers.metrics.dci import dci_from_codes

VALUES = ("dci_disentanglement", "dci_completeness", "dci_informativeness")


def codes(factors: np.ndarray, kind: str, rng: np.random.Generator, rotation: np.ndarray) -> np.ndarray:
    sizes = np.array(ProceduralDSprites.factor_sizes)
    scaled = factors / (sizes - 1)
    perfect = np.tanh(3 * scaled - 1.5)
    if kind == "perfect":
        return perfect
    if kind == "jittered":
        return np.tanh(3 * (factors + rng.uniform(-0.25, 0.25, factors.shape)) / (sizes - 1) - 1.5)
    if kind == "rotated":
        return perfect @ rotation
    noisy = perfect + 0.05 * 2 * rng.normal(size=perfect.shape)
    if kind == "noisy":
        return noisy
    return np.concatenate([noisy, rng.normal(size=noisy.shape)], 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--num-train", type=int, default=10_000)
    parser.add_argument("--num-test", type=int, default=5_000)
    parser.add_argument("--kinds", nargs="+", default=["perfect", "jittered", "rotated", "noisy", "nuisance"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    sizes = ProceduralDSprites.factor_sizes
    rotation = np.linalg.qr(rng.normal(size=(5, 5)))[0]
    worst = dict.fromkeys(VALUES, 0.0)
    print(f"{'code':<10}{'importance':<12}{'seconds':>8}{'cpu s':>8}" + "".join(f"{v[4:]:>17}" for v in VALUES))
    for kind in args.kinds:
        f_train = np.stack([rng.integers(0, s, args.num_train) for s in sizes], 1)
        f_test = np.stack([rng.integers(0, s, args.num_test) for s in sizes], 1)
        c_train, c_test = codes(f_train, kind, rng, rotation), codes(f_test, kind, rng, rotation)
        results = {}
        for importance in ("gbt", "gbt_fast"):
            began, cpu = time.perf_counter(), time.process_time()
            results[importance] = dci_from_codes(c_train, f_train, c_test, f_test, importance=importance)
            seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
            shown = "".join(f"{results[importance][v]:>17.4f}" for v in VALUES)
            print(f"{kind:<10}{importance:<12}{seconds:>8.1f}{cpu:>8.1f}{shown}", flush=True)
        diffs = {v: abs(results["gbt_fast"][v] - results["gbt"][v]) for v in VALUES}
        print(f"{kind:<10}{'|diff|':<12}{'':>16}" + "".join(f"{diffs[v]:>17.4f}" for v in VALUES), flush=True)
        worst = {v: max(worst[v], diffs[v]) for v in VALUES}
    print(f"{'worst':<10}{'|diff|':<12}{'':>16}" + "".join(f"{worst[v]:>17.4f}" for v in VALUES))


if __name__ == "__main__":
    main()
