"""BetaVAE score (Higgins et al. 2017), as disentanglement_lib computes it.

Each point: pick a factor k uniformly, draw two batches of ``batch_size`` factor
rows that agree on factor k (and are independent elsewhere), encode both, and take
the mean absolute difference of the codes over the batch; the label is k.  A
multinomial logistic regression (scikit-learn's defaults: L2, C = 1) is trained on
``num_train`` points and scored on ``num_eval`` fresh ones.

Defaults (disentanglement_lib): batch 64, 10,000 train / 5,000 eval points, mean code.
Returns ``beta_vae_score`` (eval accuracy) and ``beta_vae_score_train``.
"""

from __future__ import annotations

import numpy as np
import torch

from trainers.data.base import GroundTruthData
from trainers.metrics.linear import fit_logistic_regression
from trainers.metrics.sampling import CodeFunction, FactorRows, Representation, encode, numpy_representation


def beta_vae_points(
    representation: Representation,
    data: GroundTruthData,
    num_points: int,
    batch_size: int,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """Features ``[n, d]`` (mean |z1 − z2| over a batch) and the fixed factor of each."""
    labels = torch.randint(data.num_factors, (num_points,), generator=generator)
    first = data.sample_factors(num_points * batch_size, generator)
    second = data.sample_factors(num_points * batch_size, generator)
    fixed = labels.repeat_interleave(batch_size)
    rows = torch.arange(len(first))
    second[rows, fixed] = first[rows, fixed]
    z1 = encode(representation, data, first, device=device, generator=generator)
    z2 = encode(representation, data, second, device=device, generator=generator)
    features = np.abs(z1 - z2).reshape(num_points, batch_size, -1).mean(1)
    return features, labels.numpy()


def beta_vae_score_from_points(
    train_x: np.ndarray, train_y: np.ndarray, eval_x: np.ndarray, eval_y: np.ndarray
) -> dict[str, float]:
    classifier = fit_logistic_regression(train_x, train_y)
    return {
        "beta_vae_score": classifier.accuracy(eval_x, eval_y),
        "beta_vae_score_train": classifier.accuracy(train_x, train_y),
    }


def compute_beta_vae_score(
    representation: Representation,
    data: GroundTruthData,
    seed: int,
    batch_size: int = 64,
    num_train: int = 10_000,
    num_eval: int = 5_000,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    generator = torch.Generator().manual_seed(seed)
    train = beta_vae_points(representation, data, num_train, batch_size, generator, device)
    test = beta_vae_points(representation, data, num_eval, batch_size, generator, device)
    return beta_vae_score_from_points(*train, *test)


def beta_vae_score_of(
    code: CodeFunction, factor_sizes: tuple[int, ...], seed: int = 0, **options: int
) -> dict[str, float]:
    """The BetaVAE score of ``code``, a numpy function from factor index rows ``[n, K]`` to codes ``[n, d]``
    (options as :func:`compute_beta_vae_score`'s)."""
    return compute_beta_vae_score(numpy_representation(code), FactorRows(factor_sizes), seed, **options)
