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

:func:`mig_details` keeps what the score is computed from: the latent × factor matrix
``I(z_i; v_k)``, the entropies ``H(v_k)`` and each factor's normalised gap (the trial's
``mig.npz``, :mod:`trainers.artifacts`; the report's heat map).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from trainers.data.base import GroundTruthData
from trainers.metrics.information import discretize, entropy, mutual_information_matrix
from trainers.metrics.sampling import seeded_codes

NUM_POINTS = 10_000
NUM_BINS = 20


@dataclass(frozen=True)
class MigDetails:
    """What MIG is computed from (nats): ``matrix[i, k] = I(z_i; v_k)`` of the discretised
    latent ``z_i`` and factor ``v_k``, ``entropy[k] = H(v_k)``, and ``per_factor[k] =
    (I(z_(1); v_k) − I(z_(2); v_k)) / H(v_k)``, whose mean is the MIG."""

    matrix: np.ndarray  # [d, K]
    entropy: np.ndarray  # [K]
    per_factor: np.ndarray  # [K]

    @property
    def mig(self) -> float:
        """``1/K Σ_k per_factor[k]``."""
        return float(np.mean(self.per_factor))


def mig_details(codes: np.ndarray, factors: np.ndarray, num_bins: int = NUM_BINS) -> MigDetails:
    """The mutual-information matrix, factor entropies and per-factor gaps of continuous
    ``codes [n, d]`` against discrete ``factors [n, K]`` (codes binned by :func:`discretize`).

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
    return MigDetails(matrix=m, entropy=h, per_factor=(top[0] - top[1]) / h)


def mig_from_codes(codes: np.ndarray, factors: np.ndarray, num_bins: int = NUM_BINS) -> dict[str, float]:
    """MIG of continuous ``codes [n, d]`` against discrete ``factors [n, K]`` (:func:`mig_details`)."""
    return {"mig": mig_details(codes, factors, num_bins).mig}


def compute_mig(
    representation: Callable[[torch.Tensor], torch.Tensor],
    data: GroundTruthData,
    seed: int,
    num_points: int = NUM_POINTS,
    num_bins: int = NUM_BINS,
    device: torch.device | str = "cpu",
    *,
    details: dict[str, np.ndarray] | None = None,
) -> dict[str, float]:
    """MIG of ``representation`` (images → codes) on ``num_points`` sampled points.

    ``details``, when given (the evaluation's, not a spec option), is filled with what the
    score was computed from, once: ``matrix`` ``[d, K]`` (``I(z_i; v_k)``, nats),
    ``entropy`` ``[K]``, ``mig_per_factor`` ``[K]`` and ``factor_names`` ``[K]``.
    """
    codes, factors = seeded_codes(representation, data, seed, num_points, device)
    result = mig_details(codes, factors, num_bins)
    if details is not None:
        details.update(
            matrix=result.matrix,
            entropy=result.entropy,
            mig_per_factor=result.per_factor,
            factor_names=np.asarray(data.factor_names, dtype=str),
        )
    return {"mig": result.mig}
