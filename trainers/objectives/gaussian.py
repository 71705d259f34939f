"""Minibatch estimators of log q(z) and the ELBO's KL decomposition.

All functions are pure: tensors in, tensors (or named tensors) out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from trainers.distributions import gaussian_log_density, kl_normal_to_standard, reparameterize

__all__ = [
    "ESTIMATORS",
    "gaussian_log_density",
    "grouped_kl_decomposition",
    "kl_decomposition",
    "kl_normal_to_standard",
    "log_importance_weights",
    "reparameterize",
    "total_correlation_dlib",
]

ESTIMATORS = ("mss", "mws", "hfvae")


def log_importance_weights(
    batch_size: int,
    dataset_size: int,
    estimator: str = "mss",
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Log weights ``log w_ij`` with ``log q(z_i) ≈ logsumexp_j(log w_ij + log q(z_i | x_j))``.

    ``mss`` — minibatch stratified sampling, Chen et al. (2018), Appendix C.2: with
    ``M = B − 1`` other items in the batch,

        q(z_i) ≈ (1/N) q(z_i|x_i) + (1/M) Σ_{j ∉ {i, s(i)}} q(z_i|x_j) + (N−M)/(NM) q(z_i|x_s(i))

    i.e. the item's own weight 1/N sits on the diagonal, one stratum element
    ``s(i) = (i+1) mod B`` carries (N−M)/(NM), the other B−2 carry 1/M, and every
    row sums to 1.

    ``mws`` — minibatch weighted sampling: every weight is ``1/(N·B)``; the data-set
    size N stays in the estimator (dropping it shifts TC by ``(D−1)·log(N·B)``).

    ``hfvae`` — Esmaeili et al. (2019): the item's own weight 1/N on the diagonal and
    the rest of the mass spread evenly, ``(N−1)/(N·(B−1))``, over the other B−1 items
    (the (N−1)/(B−1) correction of the batch estimate of the other items' sum).
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if batch_size < 2:
        raise ValueError("the minibatch TC estimators need batch_size >= 2")
    n, b = float(dataset_size), batch_size
    if estimator == "mws":
        return torch.full((b, b), -math.log(n * b), device=device, dtype=dtype)
    m = b - 1
    if estimator == "hfvae":
        weights = torch.full((b, b), (n - 1) / (n * m), dtype=torch.float64)
        weights.fill_diagonal_(1.0 / n)
        return weights.log().to(device=device, dtype=dtype)
    if n < m:
        raise ValueError(f"dataset_size {dataset_size} must be >= batch_size - 1 = {m}")
    weights = torch.full((b, b), 1.0 / m, dtype=torch.float64)
    idx = torch.arange(b)
    weights[idx, (idx + 1) % b] = (n - m) / (n * m)
    weights[idx, idx] = 1.0 / n
    return weights.log().to(device=device, dtype=dtype)


def kl_decomposition(
    z: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    dataset_size: int,
    estimator: str = "mss",
) -> dict[str, torch.Tensor]:
    """Split the single-sample KL into index-code MI, total correlation and dimension-wise KL.

    Chen et al. (2018), eq. 2, with ``q(z)`` and ``q(z_d)`` estimated on the minibatch:

        index_code_mi     = E[log q(z|x) − log q(z)]
        total_correlation = E[log q(z) − Σ_d log q(z_d)]
        dimwise_kl        = E[Σ_d log q(z_d) − Σ_d log p(z_d)]

    The three sum exactly (telescoping) to ``E[log q(z|x) − log p(z)]``, the
    single-sample Monte-Carlo estimate of KL(q(z|x) ‖ p(z)).  Each term is averaged
    over the batch.
    """
    log_qz_x = gaussian_log_density(z, mu, logvar).sum(1)
    log_pz = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)
    # pairwise[i, j, d] = log q(z_id | x_j)
    pairwise = gaussian_log_density(z[:, None, :], mu[None, :, :], logvar[None, :, :])
    log_w = log_importance_weights(z.shape[0], dataset_size, estimator, z.device, z.dtype)
    log_qz = torch.logsumexp(log_w + pairwise.sum(2), dim=1)
    log_prod_qzd = torch.logsumexp(log_w[:, :, None] + pairwise, dim=1).sum(1)
    return {
        "index_code_mi": (log_qz_x - log_qz).mean(),
        "total_correlation": (log_qz - log_prod_qzd).mean(),
        "dimwise_kl": (log_prod_qzd - log_pz).mean(),
    }


def total_correlation_dlib(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """disentanglement_lib's minibatch TC estimate (``vae.total_correlation``), without log-N constants:

        TC_dlib = E_i[logsumexp_j Σ_d log q(z_id|x_j) − Σ_d logsumexp_j log q(z_id|x_j)]

    It is minibatch weighted sampling with every weight 1 instead of 1/(N·B), so

        TC_mws − TC_dlib = (D − 1) · log(N·B)

    exactly (the D marginals each lose log(N·B), the joint once), where TC_mws is
    :func:`kl_decomposition`'s ``total_correlation`` with ``estimator="mws"``.
    """
    pairwise = gaussian_log_density(z[:, None, :], mu[None, :, :], logvar[None, :, :])
    log_qz = torch.logsumexp(pairwise.sum(2), dim=1)
    log_prod_qzd = torch.logsumexp(pairwise, dim=1).sum(1)
    return (log_qz - log_prod_qzd).mean()


def grouped_kl_decomposition(
    z: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    group_sizes: Sequence[int],
    dataset_size: int,
    estimator: str = "hfvae",
) -> dict[str, torch.Tensor]:
    """The KL split over latent groups of Esmaeili et al. (2019), "Structured Disentangled Representations".

        index_code_mi      = E[log q(z|x) − log q(z)]
        tc_between_groups  = E[log q(z) − Σ_g log q(z_g)]
        tc_within_groups   = E[Σ_g log q(z_g) − Σ_d log q(z_d)]
        dimwise_kl         = E[Σ_d log q(z_d) − log p(z)]

    (the prior N(0, I) factorises, so its own total correlations vanish).  The four
    sum exactly to the single-sample KL; ``total_correlation`` is reported as the sum
    of the two TCs.  With one group the between-group TC is exactly 0 and the
    within-group TC is the total correlation, as in β-TCVAE.
    """
    if sum(group_sizes) != z.shape[1] or min(group_sizes) < 1:
        raise ValueError(f"group sizes {list(group_sizes)} do not partition {z.shape[1]} latents")
    log_qz_x = gaussian_log_density(z, mu, logvar).sum(1)
    log_pz = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z)).sum(1)
    pairwise = gaussian_log_density(z[:, None, :], mu[None, :, :], logvar[None, :, :])
    log_w = log_importance_weights(z.shape[0], dataset_size, estimator, z.device, z.dtype)
    log_qz = torch.logsumexp(log_w + pairwise.sum(2), dim=1)
    groups = pairwise.split(list(group_sizes), dim=2)
    log_prod_qzg = sum(torch.logsumexp(log_w + g.sum(2), dim=1) for g in groups)
    log_prod_qzd = torch.logsumexp(log_w[:, :, None] + pairwise, dim=1).sum(1)
    between = (log_qz - log_prod_qzg).mean()
    within = (log_prod_qzg - log_prod_qzd).mean()
    return {
        "index_code_mi": (log_qz_x - log_qz).mean(),
        "tc_between_groups": between,
        "tc_within_groups": within,
        "total_correlation": between + within,
        "dimwise_kl": (log_prod_qzd - log_pz).mean(),
    }
