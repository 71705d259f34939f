"""Interventional Robustness Score (Suter et al. 2019), as disentanglement_lib computes it.

For each latent i and factor k: intervening on k (fixing it to each of its
values v) should move latent i by at most a little; the deviation of latent i from
its mean within the rows with v_k = v is summarised by its ``diff_quantile`` (99 %)
quantile, averaged over v, and normalised by latent i's largest deviation from its
overall mean.  ``IRS_i = 1 − min_k normalised deviation``; the score is the average
of IRS_i weighted by each latent's largest deviation.  Constant latents are dropped.

Defaults (disentanglement_lib): 10,000 points, quantile 0.99, mean code.
Returns ``irs`` and ``irs_active_dims``.
"""

from __future__ import annotations

import numpy as np
import torch

from trainers.data.base import GroundTruthData
from trainers.metrics.sampling import Representation, seeded_codes


def irs_from_codes(codes: np.ndarray, factors: np.ndarray, diff_quantile: float = 0.99) -> dict[str, float]:
    active = codes.std(axis=0) > 0
    if not active.any():
        return {"irs": 0.0, "irs_active_dims": 0.0}
    latents = codes[:, active]
    max_deviations = np.abs(latents - latents.mean(0)).max(0)
    deviations = np.zeros((latents.shape[1], factors.shape[1]))
    for k in range(factors.shape[1]):
        values = np.unique(factors[:, k])
        for v in values:
            group = latents[factors[:, k] == v]
            deviations[:, k] += np.quantile(np.abs(group - group.mean(0)), diff_quantile, axis=0)
        deviations[:, k] /= len(values)
    scores = (1.0 - deviations / max_deviations[:, None]).max(axis=1)
    score = np.average(scores, weights=max_deviations) if max_deviations.sum() > 0 else scores.mean()
    return {"irs": float(score), "irs_active_dims": float(active.sum())}


def compute_irs(
    representation: Representation,
    data: GroundTruthData,
    seed: int,
    num_points: int = 10_000,
    diff_quantile: float = 0.99,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    return irs_from_codes(*seeded_codes(representation, data, seed, num_points, device), diff_quantile)
