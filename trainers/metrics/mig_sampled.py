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

Cost: the pairwise densities q(z_n,j | x_m) for all n, m, j (5,000² × d); they are
computed in float32 in row chunks (the step is memory-bound) and summed in float64,
with per-factor group sums by ``index_add`` (K passes, not one per factor value).
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
    chunk: int = 128,
) -> np.ndarray:
    """``I[j, k]`` (nats) from posterior parameters ``[N, D]`` and factor indices ``[N, K]``."""
    mu, logvar = mu.double(), logvar.double()
    n, d = mu.shape
    z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=generator, dtype=torch.float64)
    factors_t = torch.as_tensor(factors, dtype=torch.int64)
    num_factors = factors_t.shape[1]
    counts = [torch.bincount(factors_t[:, k]).double() for k in range(num_factors)]
    marginal = torch.zeros(d, dtype=torch.float64)
    conditional = torch.zeros(d, num_factors, dtype=torch.float64)
    mu_t, logvar_t = mu.T[None].float(), logvar.T[None].float()
    for start in range(0, n, chunk):
        zs = z[start : start + chunk].float()
        rows = len(zs)
        log_q = gaussian_log_density(zs[:, :, None], mu_t, logvar_t)  # [R, D, N], float32: memory-bound
        # Shift by the row maximum: a row's own term sits in each of its groups, so
        # no group sum it needs underflows.
        peak = log_q.amax(dim=2, keepdim=True)
        weights = torch.exp(log_q - peak)
        peak = peak.double()
        marginal -= (torch.log(weights.sum(2, dtype=torch.float64)) + peak[..., 0] - np.log(n)).sum(0)
        for k in range(num_factors):
            values = factors_t[:, k]
            sums = torch.zeros(rows, d, len(counts[k])).index_add_(2, values, weights).double()
            mine = values[start : start + chunk]
            own = sums.gather(2, mine[:, None, None].expand(-1, d, 1))[..., 0]  # [R, D]
            conditional[:, k] -= (torch.log(own) + peak[..., 0] - torch.log(counts[k][mine])[:, None]).sum(0)
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
        mu, logvar = posterior(data.observations(factors[start : start + 256], device, generator))
        mus.append(mu.double().cpu())
        logvars.append(logvar.double().cpu())
    return mig_sampled_from_posterior(torch.cat(mus), torch.cat(logvars), factors.numpy(), data.factor_sizes, seed)
