"""DCI: disentanglement, completeness, informativeness (Eastwood & Williams 2018).

For each factor k a classifier predicts v_k from the code; ``R[i, k]`` is latent i's
importance for factor k (each column sums to 1).  With ``P_ik = R_ik / Σ_k R_ik``
and ``ρ_i = Σ_k R_ik / Σ R``,

    disentanglement = Σ_i ρ_i (1 − H_K(P_i·)),
    completeness    = Σ_k ρ̃_k (1 − H_D(R̃_·k)),   ρ̃_k = Σ_i R_ik / Σ R,

entropies in base K (factors) and D (latents).  As in disentanglement_lib,
``dci_informativeness`` is the classifiers' mean **test accuracy** (not the paper's
prediction error); ``dci_informativeness_train`` is their train accuracy.

Importances (``importance=``):

``gbt``       the reference, disentanglement_lib's choice: gradient-boosted trees
              with scikit-learn's ``GradientBoostingClassifier()`` defaults
              (:mod:`trainers.metrics.gbt`) and its exact splits (every midpoint
              between a latent's sorted distinct values), so a code whose every
              latent is a function of one factor scores 1.000.  (Earlier versions
              binned each latent into 256 quantiles, which cannot separate the
              classes of a latent with more distinct values than that.)
``gbt_fast``  the same model with 32 bins and 20 stages at learning rate 0.5; its
              difference from ``gbt`` is measured by ``benchmarks/metrics_suite.py``
              on the same inputs, never substituted silently.

Defaults (disentanglement_lib): 10,000 train / 5,000 test points, mean code.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from trainers.data.base import GroundTruthData
from trainers.metrics.gbt import GradientBoostedTrees
from trainers.metrics.sampling import Representation, train_test_codes

IMPORTANCE_MODELS = {
    "gbt": {"n_estimators": 100, "learning_rate": 0.1, "max_bins": None},
    # Exact comparison of proxies (no tie tolerance): dci_fast's recorded values depend on it.
    "gbt_fast": {"n_estimators": 20, "learning_rate": 0.5, "max_bins": 32, "tie_tolerance": 0.0},
}


def _entropy(p: np.ndarray, base: int, axis: int) -> np.ndarray:
    """Entropy along ``axis`` of the normalised ``p`` (scipy.stats.entropy's convention)."""
    p = p / p.sum(axis=axis, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=axis) / np.log(base)


def disentanglement_completeness(importance: np.ndarray) -> tuple[float, float]:
    """``(disentanglement, completeness)`` of an importance matrix ``[latents, factors]``."""
    importance = np.abs(np.asarray(importance, dtype=np.float64))
    d, k = importance.shape
    weights = importance if importance.sum() > 0 else np.ones_like(importance)
    # disentanglement_lib adds 1e-11 so that an all-zero row has maximal entropy.
    per_code = 1.0 - _entropy(importance + 1e-11, base=k, axis=1)
    per_factor = 1.0 - _entropy(importance + 1e-11, base=d, axis=0)
    code_weight = weights.sum(axis=1) / weights.sum()
    factor_weight = weights.sum(axis=0) / weights.sum()
    return float(np.sum(per_code * code_weight)), float(np.sum(per_factor * factor_weight))


def dci_from_codes(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    importance: str = "gbt",
) -> dict[str, float]:
    if importance not in IMPORTANCE_MODELS:
        raise ValueError(f"importance: must be one of {', '.join(IMPORTANCE_MODELS)}, got {importance!r}")
    num_factors = factors_train.shape[1]

    def fit(k: int) -> tuple[np.ndarray, float, float]:
        model = GradientBoostedTrees(**IMPORTANCE_MODELS[importance]).fit(codes_train, factors_train[:, k])
        return (
            model.feature_importances,
            model.accuracy(codes_train, factors_train[:, k]),
            model.accuracy(codes_test, factors_test[:, k]),
        )

    # Factors are independent problems and numpy releases the GIL in its loops: fit them
    # in as many threads as torch may use here, the most classes first to balance the load.
    order = sorted(range(num_factors), key=lambda k: -len(np.unique(factors_train[:, k])))
    with ThreadPoolExecutor(max_workers=max(1, torch.get_num_threads())) as pool:
        fitted = dict(zip(order, pool.map(fit, order), strict=True))
    matrix = np.stack([fitted[k][0] for k in range(num_factors)], 1)
    train_acc = [fitted[k][1] for k in range(num_factors)]
    test_acc = [fitted[k][2] for k in range(num_factors)]
    disentanglement, completeness = disentanglement_completeness(matrix)
    return {
        "dci_disentanglement": disentanglement,
        "dci_completeness": completeness,
        "dci_informativeness": float(np.mean(test_acc)),
        "dci_informativeness_train": float(np.mean(train_acc)),
    }


def compute_dci(
    representation: Representation,
    data: GroundTruthData,
    seed: int,
    num_train: int = 10_000,
    num_test: int = 5_000,
    importance: str = "gbt",
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    codes = train_test_codes(representation, data, seed, num_train, num_test, device)
    return dci_from_codes(*codes, importance=importance)


def compute_dci_fast(
    representation: Representation, data: GroundTruthData, seed: int, **options: object
) -> dict[str, float]:
    """DCI with the ``gbt_fast`` importances; values keep the ``dci_*`` names plus ``_fast``."""
    values = compute_dci(representation, data, seed, importance="gbt_fast", **options)  # type: ignore[arg-type]
    return {f"{name}_fast": value for name, value in values.items()}
