"""MIG with Chen et al.'s own estimator (Chen et al. 2018, Section 5 and their code).

Mutual information between each latent and each factor is estimated from the
posterior densities rather than from binned mean codes:

    I(z_j; v_k) = H(z_j) − Σ_v p(v) H(z_j | v_k = v),
    H(z_j) ≈ −E_{x, z~q(z_j|x)} log (1/N Σ_n q(z_j | x_n)),

with the conditional entropies using only the points that share the factor value.
MIG is then ``mean_k (I_(1)k − I_(2)k) / H(v_k)`` with ``H(v_k) = log(#values)``.
Chen et al. sum over the whole data set; here the sums run over ``num_points``
uniformly sampled images (default 5,000), one z sample each, which makes the
estimate feasible per trial.  Values differ widely from disentanglement_lib's
binned ``mig``: both exist in the literature under one name, so this one is
reported as ``mig_sampled``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from trainers.data.base import GroundTruthData
from trainers.distributions import gaussian_log_density

Posterior = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def sampled_mutual_information(
    mu: torch.Tensor,
    logvar: torch.Tensor,
    factors: np.ndarray,
    generator: torch.Generator,
    chunk: int = 1024,
) -> np.ndarray:
    """``I[j, k]`` (nats) from posterior parameters ``[N, D]`` and factor indices ``[N, K]``."""
    mu, logvar = mu.double(), logvar.double()
    n, d = mu.shape
    z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=generator, dtype=torch.float64)
    factors_t = torch.as_tensor(factors)
    marginal = torch.zeros(d, dtype=torch.float64)
    conditional = torch.zeros(d, factors.shape[1], dtype=torch.float64)
    group_sizes = [torch.bincount(factors_t[:, k]).double() for k in range(factors.shape[1])]
    for start in range(0, n, chunk):
        zs = z[start : start + chunk]  # [R, D]
        log_q = gaussian_log_density(zs[:, None, :], mu[None], logvar[None])  # [R, N, D]
        marginal -= (torch.logsumexp(log_q, dim=1) - np.log(n)).sum(0)
        for k in range(factors.shape[1]):
            same = factors_t[start : start + chunk, k, None] == factors_t[None, :, k]  # [R, N]
            masked = log_q.masked_fill(~same[:, :, None], float("-inf"))
            sizes = group_sizes[k][factors_t[start : start + chunk, k]]
            conditional[:, k] -= (torch.logsumexp(masked, dim=1) - sizes.log()[:, None]).sum(0)
    return ((marginal[:, None] - conditional) / n).numpy()


def mig_sampled_from_posterior(
    mu: torch.Tensor, logvar: torch.Tensor, factors: np.ndarray, factor_sizes: tuple[int, ...], seed: int
) -> dict[str, float]:
    mi = sampled_mutual_information(mu, logvar, factors, torch.Generator().manual_seed(seed))
    top = np.sort(mi, axis=0)[::-1]
    entropy = np.log(np.asarray(factor_sizes, dtype=np.float64))
    return {"mig_sampled": float(np.mean((top[0] - top[1]) / entropy))}


@torch.no_grad()
def compute_mig_sampled(
    posterior: Posterior,
    data: GroundTruthData,
    seed: int,
    num_points: int = 5_000,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """``posterior(x) -> (μ, log σ²)``."""
    generator = torch.Generator().manual_seed(seed)
    factors = data.sample_factors(num_points, generator)
    mus, logvars = [], []
    for start in range(0, num_points, 256):
        mu, logvar = posterior(data.observations(factors[start : start + 256], device))
        mus.append(mu.double().cpu())
        logvars.append(logvar.double().cpu())
    return mig_sampled_from_posterior(torch.cat(mus), torch.cat(logvars), factors.numpy(), data.factor_sizes, seed)
