"""Unsupervised scores of a representation (disentanglement_lib's ``unsupervised_metrics``).

On the codes' covariance Σ (over 10,000 points):

``gaussian_total_correlation``       KL(N(0, Σ) ‖ N(0, diag Σ)) = ½ (Σ_i log Σ_ii − log det Σ)
``gaussian_wasserstein_correlation`` W₂²(N(0, Σ), N(0, diag Σ)) = 2 tr Σ − 2 tr (Σ ⊙ diag(Σ) 1ᵀ)^½
                                     (the square root of ``diag(Σ)·Σ``, similar to
                                     ``D^½ Σ D^½`` and so computed from its eigenvalues)
``gaussian_wasserstein_correlation_norm``  the same divided by tr Σ
``mutual_info_score``                mean pairwise MI between discretised latents (20 bins)

disentanglement_lib computes these on the sampled representation, z ~ q(z|x).
``active_units`` (Burda et al. 2016) counts latents whose mean code μ_i(x) varies
across x with variance above 0.01, and is computed on the mean code.
"""

from __future__ import annotations

import numpy as np
import torch

from trainers.data.base import GroundTruthData
from trainers.metrics.information import discretize, mutual_information
from trainers.metrics.sampling import Representation, seeded_codes

ACTIVE_VARIANCE = 0.01


def gaussian_total_correlation(cov: np.ndarray) -> float:
    _, logdet = np.linalg.slogdet(cov)
    return float(0.5 * (np.sum(np.log(np.diag(cov))) - logdet))


def gaussian_wasserstein_correlation(cov: np.ndarray) -> float:
    root_d = np.sqrt(np.diag(cov))
    similar = root_d[:, None] * cov * root_d[None, :]
    eigenvalues = np.clip(np.linalg.eigvalsh((similar + similar.T) / 2), 0.0, None)
    return float(2 * np.trace(cov) - 2 * np.sum(np.sqrt(eigenvalues)))


def unsupervised_from_codes(codes: np.ndarray, num_bins: int = 20) -> dict[str, float]:
    cov = np.cov(codes.T)
    binned = discretize(codes, num_bins)
    d = codes.shape[1]
    mi = [mutual_information(binned[:, i], binned[:, j]) for i in range(d) for j in range(d) if i != j]
    wasserstein = gaussian_wasserstein_correlation(cov)
    return {
        "gaussian_total_correlation": gaussian_total_correlation(cov),
        "gaussian_wasserstein_correlation": wasserstein,
        "gaussian_wasserstein_correlation_norm": wasserstein / float(np.trace(cov)),
        "mutual_info_score": float(np.mean(mi)),
    }


def active_units(mean_codes: np.ndarray, threshold: float = ACTIVE_VARIANCE) -> int:
    return int((mean_codes.var(axis=0) > threshold).sum())


def compute_unsupervised(
    representation: Representation,
    data: GroundTruthData,
    seed: int,
    num_points: int = 10_000,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Pass the *sampled* representation (see the module docstring)."""
    return unsupervised_from_codes(seeded_codes(representation, data, seed, num_points, device)[0])


def compute_active_units(
    representation: Representation,
    data: GroundTruthData,
    seed: int,
    num_points: int = 10_000,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Pass the *mean* representation."""
    return {"active_units": float(active_units(seeded_codes(representation, data, seed, num_points, device)[0]))}
