"""FactorVAE score (Kim & Mnih 2018), as disentanglement_lib computes it.

Codes are divided by their global standard deviation (from ``num_variance_estimate``
points); dimensions whose standard deviation is below ``prune_threshold`` (0.05,
disentanglement_lib's) are collapsed and dropped.  Each vote: pick a factor k, draw
``batch_size`` rows that all share one value of factor k, and vote for the (active) latent of least variance
(``ddof=1``).  A majority-vote classifier maps each latent to the factor it is
most often voted for on ``num_train`` votes and is scored on ``num_eval`` others.

Defaults (disentanglement_lib): 10,000 points for the variance estimate, batch 64,
10,000 train / 5,000 eval votes.  Returns ``factor_vae_score`` (eval accuracy),
``factor_vae_score_train`` and ``factor_vae_active_dims``.
"""

from __future__ import annotations

import numpy as np
import torch

from trainers.data.base import GroundTruthData
from trainers.metrics.sampling import (
    CodeFunction,
    FactorRows,
    Representation,
    codes_and_factors,
    encode,
    numpy_representation,
)

COLLAPSED_STD = 0.05


def factor_vae_votes(
    representation: Representation,
    data: GroundTruthData,
    num_votes: int,
    batch_size: int,
    global_std: np.ndarray,
    active: np.ndarray,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Vote counts ``[d, K]``: how often latent i had the least variance with factor k fixed."""
    labels = torch.randint(data.num_factors, (num_votes,), generator=generator)
    factors = data.sample_factors(num_votes * batch_size, generator).view(num_votes, batch_size, -1)
    fixed_values = factors[:, 0, :].gather(1, labels[:, None])  # [votes, 1]
    factors[torch.arange(num_votes), :, labels] = fixed_values.expand(-1, batch_size)
    codes = encode(representation, data, factors.view(-1, data.num_factors), device=device, generator=generator)
    codes = codes.reshape(num_votes, batch_size, -1) / global_std
    variances = codes[:, :, active].var(axis=1, ddof=1)
    winners = np.flatnonzero(active)[variances.argmin(axis=1)]
    votes = np.zeros((codes.shape[2], data.num_factors), dtype=np.int64)
    np.add.at(votes, (winners, labels.numpy()), 1)
    return votes


def factor_vae_accuracy(train_votes: np.ndarray, eval_votes: np.ndarray) -> dict[str, float]:
    """Majority-vote classifier fitted on ``train_votes`` and scored on both."""
    classifier = train_votes.argmax(axis=1)
    rows = np.arange(train_votes.shape[0])
    return {
        "factor_vae_score": float(eval_votes[rows, classifier].sum() / eval_votes.sum()),
        "factor_vae_score_train": float(train_votes[rows, classifier].sum() / train_votes.sum()),
    }


def compute_factor_vae_score(
    representation: Representation,
    data: GroundTruthData,
    seed: int,
    batch_size: int = 64,
    num_train: int = 10_000,
    num_eval: int = 5_000,
    num_variance_estimate: int = 10_000,
    prune_threshold: float = COLLAPSED_STD,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    generator = torch.Generator().manual_seed(seed)
    codes, _ = codes_and_factors(representation, data, num_variance_estimate, generator, device=device)
    global_std = codes.std(axis=0, ddof=1)
    active = global_std >= prune_threshold
    if not active.any():
        return {"factor_vae_score": 0.0, "factor_vae_score_train": 0.0, "factor_vae_active_dims": 0.0}
    scale = np.where(active, global_std, 1.0)
    train = factor_vae_votes(representation, data, num_train, batch_size, scale, active, generator, device)
    test = factor_vae_votes(representation, data, num_eval, batch_size, scale, active, generator, device)
    return {**factor_vae_accuracy(train, test), "factor_vae_active_dims": float(active.sum())}


def factor_vae_score_of(
    code: CodeFunction, factor_sizes: tuple[int, ...], seed: int = 0, **options: float
) -> dict[str, float]:
    """The FactorVAE score of ``code``, a numpy function from factor index rows ``[n, K]`` to codes ``[n, d]``
    (options as :func:`compute_factor_vae_score`'s)."""
    return compute_factor_vae_score(numpy_representation(code), FactorRows(factor_sizes), seed, **options)
