"""Mutual Information Gap (Chen et al. 2018), as disentanglement_lib computes it.

For each factor k, with ``I(z_i; v_k)`` the mutual information between the
discretised mean code ``z_i`` and the factor,

    MIG = 1/K Σ_k (I(z_(1); v_k) − I(z_(2); v_k)) / H(v_k)

where ``z_(1)``, ``z_(2)`` are the latents with the largest and second-largest
information about ``v_k``.  Defaults of disentanglement_lib
(``mig.py``, ``discretizer.py``; Locatello et al. 2019 study configs):

- representation: the encoder's mean ``μ(x)``;
- 10,000 points sampled uniformly from the factor grid;
- 20 equal-width bins per latent over the observed range;
- factors taken as their discrete indices, entropies and MIs in nats.

Chen et al.'s own estimator integrates over sampled codes of the whole data set
instead; its values differ and it is not this function.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from trainers.data.base import GroundTruthData
from trainers.metrics.information import discretize, entropy, mutual_information_matrix
from trainers.metrics.sampling import seeded_codes

NUM_POINTS = 10_000
NUM_BINS = 20


def mig_from_codes(codes: np.ndarray, factors: np.ndarray, num_bins: int = NUM_BINS) -> dict[str, float]:
    """MIG of continuous ``codes [n, d]`` against discrete ``factors [n, K]``.

    Needs ``d >= 2`` (a gap between two latents) and non-constant factors.
    """
    codes, factors = np.asarray(codes), np.asarray(factors)
    if codes.shape[1] < 2:
        raise ValueError("MIG needs at least two latent dimensions")
    m = mutual_information_matrix(discretize(codes, num_bins), factors)
    h = np.array([entropy(factors[:, k]) for k in range(factors.shape[1])])
    if np.any(h <= 0):
        raise ValueError("MIG is undefined for a constant factor (zero entropy)")
    top = np.sort(m, axis=0)[::-1]
    return {"mig": float(np.mean((top[0] - top[1]) / h))}


def compute_mig(
    representation: Callable[[torch.Tensor], torch.Tensor],
    data: GroundTruthData,
    seed: int,
    num_points: int = NUM_POINTS,
    num_bins: int = NUM_BINS,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """MIG of ``representation`` (images → codes) on ``num_points`` sampled points."""
    codes, factors = seeded_codes(representation, data, seed, num_points, device)
    return mig_from_codes(codes, factors, num_bins)
