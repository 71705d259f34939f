"""Modularity and explicitness (Ridgeway & Zemel 2018), as disentanglement_lib computes them.

Modularity: with ``m[i, k]`` the mutual information between discretised latent i
(20 equal-width bins) and factor k, and θ_i = max_k m[i, k],

    δ_i = (Σ_k m[i,k]² − θ_i²) / (θ_i² (K − 1)),   modularity = mean_i (1 − δ_i)

(latents with no information score 0).  Explicitness: for each factor, a
multinomial logistic regression (L2, C = 1) on the standardised codes; the score is
the macro one-vs-rest ROC AUC of its predicted probabilities, averaged over factors.

Defaults: 10,000 train / 5,000 test points, mean code.  Returns ``modularity``,
``explicitness`` (test) and ``explicitness_train``.
"""

from __future__ import annotations

import numpy as np
import torch

from trainers.data.base import GroundTruthData
from trainers.metrics.information import discretize, mutual_information_matrix
from trainers.metrics.linear import fit_logistic_regression, macro_roc_auc
from trainers.metrics.sampling import Representation, train_test_codes

NUM_BINS = 20


def modularity_from_mi(mi: np.ndarray) -> float:
    squared = mi**2
    top = squared.max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = (squared.sum(axis=1) - top) / (top * (squared.shape[1] - 1.0))
    score = np.where(top > 0, 1.0 - delta, 0.0)
    return float(score.mean())


def explicitness_from_codes(
    codes_train: np.ndarray, factors_train: np.ndarray, codes_test: np.ndarray, factors_test: np.ndarray
) -> tuple[float, float]:
    mean, std = codes_train.mean(0), codes_train.std(0)
    std = np.where(std > 0, std, 1.0)
    train, test = (codes_train - mean) / std, (codes_test - mean) / std
    train_scores, test_scores = [], []
    for k in range(factors_train.shape[1]):
        clf = fit_logistic_regression(train, factors_train[:, k])
        train_scores.append(macro_roc_auc(factors_train[:, k], clf.predict_proba(train), clf.classes))
        test_scores.append(macro_roc_auc(factors_test[:, k], clf.predict_proba(test), clf.classes))
    return float(np.mean(train_scores)), float(np.mean(test_scores))


def modularity_explicitness_from_codes(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    num_bins: int = NUM_BINS,
) -> dict[str, float]:
    mi = mutual_information_matrix(discretize(codes_train, num_bins), factors_train)
    train, test = explicitness_from_codes(codes_train, factors_train, codes_test, factors_test)
    return {"modularity": modularity_from_mi(mi), "explicitness": test, "explicitness_train": train}


def compute_modularity_explicitness(
    representation: Representation,
    data: GroundTruthData,
    seed: int,
    num_train: int = 10_000,
    num_test: int = 5_000,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    return modularity_explicitness_from_codes(
        *train_test_codes(representation, data, seed, num_train, num_test, device)
    )
