"""Seconds per metric at disentanglement_lib's default sizes, on the dSprites factor grid.

The representation is a fixed 10-latent code of the factors (a random mixing of the
five normalised factors plus noise), computed from the factor rows directly, so the
times are the metrics' own cost; encoding images costs extra, the same for every
metric per image it needs (the sizes column: 10,000 points, or 2 x 64 x 15,000 =
1.92 M images for the BetaVAE score).

    python benchmarks/metrics_suite.py [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from trainers.data import ProceduralDSprites
from trainers.data.base import GroundTruthData
from trainers.metrics import METRICS


class DSpritesFactors(GroundTruthData):
    """dSprites' factor grid whose observations are the factor rows themselves."""

    factor_names = ProceduralDSprites.factor_names
    factor_sizes = ProceduralDSprites.factor_sizes
    observation_shape = (1, 1, 5)

    def observations(self, factors, device="cpu"):
        return torch.as_tensor(factors, dtype=torch.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = DSpritesFactors()
    rng = np.random.default_rng(0)
    mixing = torch.as_tensor(np.eye(5, 10) + 0.2 * rng.normal(size=(5, 10)))
    sizes = torch.tensor(data.factor_sizes, dtype=torch.float64)

    def code(x: torch.Tensor) -> torch.Tensor:
        return (x / sizes) @ mixing + 0.05 * torch.randn(len(x), 10, dtype=torch.float64)

    def posterior(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (x / sizes) @ mixing, torch.full((len(x), 10), -6.0, dtype=torch.float64)

    total = 0.0
    print(f"{'metric':<26}{'seconds':>9}  values")
    for name, metric in METRICS.items():
        rep = posterior if metric.representation == "posterior" else code
        began = time.perf_counter()
        values = metric.compute(rep, data, seed=0)
        seconds = time.perf_counter() - began
        total += seconds
        shown = ", ".join(f"{k}={v:.3f}" for k, v in values.items())
        print(f"{name:<26}{seconds:>9.2f}  {shown}")
    print(f"{'all':<26}{total:>9.2f}  ({args.threads} threads)")


if __name__ == "__main__":
    main()
