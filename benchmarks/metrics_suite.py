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

    def observations(self, factors, device="cpu", generator=None):
        return torch.as_tensor(factors, dtype=torch.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-reference", action="store_true", help="skip the scikit-learn DCI comparison")
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
    timings = []
    print(f"{'metric':<26}{'seconds':>9}  values")
    for name, metric in METRICS.items():
        rep = posterior if metric.representation == "posterior" else code
        began = time.perf_counter()
        values = metric.compute(rep, data, seed=0)
        seconds = time.perf_counter() - began
        total += seconds
        timings.append((name, seconds))
        shown = ", ".join(f"{k}={v:.3f}" for k, v in values.items())
        print(f"{name:<26}{seconds:>9.2f}  {shown}")
    print(f"{'all':<26}{total:>9.2f}  ({args.threads} threads)")
    fast_total = total - next(t for n, t in timings if n == "dci")
    print(f"{'all but reference dci':<26}{fast_total:>9.2f}")
    if not args.no_reference:
        compare_dci_with_scikit_learn(data, code)


def compare_dci_with_scikit_learn(data: GroundTruthData, code) -> None:
    """disentanglement_lib's DCI (scikit-learn GBT) against ours on the same codes."""
    try:
        from sklearn.ensemble import GradientBoostingClassifier
    except ImportError:
        print("scikit-learn not installed: reference comparison skipped")
        return
    from trainers.metrics.dci import dci_from_codes, disentanglement_completeness
    from trainers.metrics.sampling import codes_and_factors

    generator = torch.Generator().manual_seed(0)
    train = codes_and_factors(code, data, 10_000, generator)
    test = codes_and_factors(code, data, 5_000, generator)
    began = time.perf_counter()
    importance = np.zeros((10, 5))
    accuracy = []
    for k in range(5):
        model = GradientBoostingClassifier().fit(train[0], train[1][:, k])
        importance[:, k] = model.feature_importances_
        accuracy.append(model.score(test[0], test[1][:, k]))
    reference_seconds = time.perf_counter() - began
    d, c = disentanglement_completeness(importance)
    print(f"\nDCI on the same 10,000 / 5,000 points; scikit-learn (disentanglement_lib) {reference_seconds:.1f} s")
    print(f"{'importance':<22}{'seconds':>9}{'D':>9}{'C':>9}{'I':>9}{'|dD|':>8}{'|dC|':>8}{'|dI|':>8}")
    print(f"{'scikit-learn GBT':<22}{reference_seconds:>9.1f}{d:>9.4f}{c:>9.4f}{np.mean(accuracy):>9.4f}")
    for importance_name in ("gbt", "gbt_fast"):
        began = time.perf_counter()
        ours = dci_from_codes(*train, *test, importance=importance_name)
        seconds = time.perf_counter() - began
        dd = abs(ours["dci_disentanglement"] - d)
        dc = abs(ours["dci_completeness"] - c)
        di = abs(ours["dci_informativeness"] - np.mean(accuracy))
        print(
            f"{importance_name:<22}{seconds:>9.1f}{ours['dci_disentanglement']:>9.4f}{ours['dci_completeness']:>9.4f}"
            f"{ours['dci_informativeness']:>9.4f}{dd:>8.4f}{dc:>8.4f}{di:>8.4f}"
        )


if __name__ == "__main__":
    main()
