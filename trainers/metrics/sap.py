"""SAP, the Separated Attribute Predictability score (Kumar et al. 2018).

A score matrix ``S[i, k]`` says how well latent i alone predicts factor k; SAP is
the mean over factors of the gap between the two best latents,
``1/K Σ_k (S_(1)k − S_(2)k)``.  Two variants, each under its own name:

``sap_discrete``   S = test accuracy of a linear SVM on the single latent
                   (scikit-learn's ``LinearSVC(C=0.01, class_weight="balanced")``,
                   here :func:`fit_linear_svc`), as in disentanglement_lib's study
                   configs (``continuous_factors = False``); fitted by exact Newton
                   steps (:func:`fit_linear_svc_1d`), the input being one latent.
``sap_continuous`` S = R² of a linear regression of the factor on the latent,
                   ``Cov(z_i, v_k)² / (Var z_i · Var v_k)`` (0 for a constant latent).

Defaults (disentanglement_lib): 10,000 train / 5,000 test points, mean code.
"""

from __future__ import annotations

import numpy as np
import torch

from trainers.data.base import GroundTruthData
from trainers.metrics.linear import fit_linear_svc_1d
from trainers.metrics.sampling import Representation, train_test_codes


def sap_matrix_discrete(
    codes_train: np.ndarray, factors_train: np.ndarray, codes_test: np.ndarray, factors_test: np.ndarray
) -> np.ndarray:
    d, k = codes_train.shape[1], factors_train.shape[1]
    scores = np.zeros((d, k))
    for i in range(d):
        for j in range(k):
            svm = fit_linear_svc_1d(codes_train[:, i], factors_train[:, j], c=0.01)
            scores[i, j] = svm.accuracy(codes_test[:, i : i + 1], factors_test[:, j])
    return scores


def sap_matrix_continuous(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    z = codes - codes.mean(0)
    v = factors - factors.mean(0)
    n = len(codes) - 1
    cov = z.T @ v / n
    var_z, var_v = (z**2).sum(0) / n, (v**2).sum(0) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = cov**2 / (var_z[:, None] * var_v[None, :])
    return np.where(var_z[:, None] > 1e-12, r2, 0.0)


def sap_from_matrix(scores: np.ndarray) -> float:
    """Mean over factors (columns) of the gap between the two largest entries."""
    top = np.sort(scores, axis=0)
    return float(np.mean(top[-1] - top[-2]))


def sap_from_codes(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
) -> dict[str, float]:
    return {
        "sap_discrete": sap_from_matrix(sap_matrix_discrete(codes_train, factors_train, codes_test, factors_test)),
        "sap_continuous": sap_from_matrix(sap_matrix_continuous(codes_train, factors_train)),
    }


def compute_sap(
    representation: Representation,
    data: GroundTruthData,
    seed: int,
    num_train: int = 10_000,
    num_test: int = 5_000,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    return sap_from_codes(*train_test_codes(representation, data, seed, num_train, num_test, device))
