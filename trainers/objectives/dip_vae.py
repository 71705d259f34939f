"""DIP-VAE I and II (Kumar et al. 2018, "Variational Inference of Disentangled Latent Concepts").

    loss = recon + KL + λ_od Σ_{i≠j} Cov_ij² + λ_d Σ_i (Cov_ii − 1)²

DIP-VAE-I penalises ``Cov = Cov_{p(x)}[μ(x)]``; DIP-VAE-II penalises the covariance
of the aggregate posterior, ``Cov_q[z] = Cov[μ(x)] + E[diag σ²(x)]``.  Both
covariances are taken over the batch dimension with 1/B:
``Cov[μ] = E[μμᵀ] − E[μ]E[μ]ᵀ``.  Defaults follow disentanglement_lib's study:
λ_d = 10·λ_od for I and λ_d = λ_od for II (λ_od = 10 here).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import torch

from trainers.objectives.base import GaussianObjective, Terms, register_objective


def batch_covariance(v: torch.Tensor) -> torch.Tensor:
    """``E[vvᵀ] − E[v]E[v]ᵀ`` over the batch dimension (divides by B)."""
    centred = v - v.mean(0, keepdim=True)
    return centred.T @ centred / v.shape[0]


def dip_penalties(cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Σ_{i≠j} Cov_ij², Σ_i (Cov_ii − 1)²)``."""
    diag = torch.diagonal(cov)
    return (cov**2).sum() - (diag**2).sum(), ((diag - 1.0) ** 2).sum()


class _DIPVAE(GaussianObjective):
    extra_term_names = ("dip_offdiag", "dip_diag")

    def covariance(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def extra_terms(self, x, mu, logvar, z, terms, weights) -> Terms:
        offdiag, diag = dip_penalties(self.covariance(mu, logvar))
        return {"dip_offdiag": offdiag, "dip_diag": diag}

    def loss(self, terms: Terms, weights: Mapping[str, float]) -> torch.Tensor:
        return (
            terms["recon"]
            + terms["kl"]
            + weights["lambda_od"] * terms["dip_offdiag"]
            + weights["lambda_d"] * terms["dip_diag"]
        )


@register_objective
class DIPVAEI(_DIPVAE):
    name = "dip_vae_i"
    weight_defaults = MappingProxyType(
        {
            "lambda_od": {"schedule": "constant", "value": 10.0},
            "lambda_d": {"schedule": "constant", "value": 100.0},
        }
    )

    def covariance(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return batch_covariance(mu)


@register_objective
class DIPVAEII(_DIPVAE):
    name = "dip_vae_ii"
    weight_defaults = MappingProxyType(
        {
            "lambda_od": {"schedule": "constant", "value": 10.0},
            "lambda_d": {"schedule": "constant", "value": 10.0},
        }
    )

    def covariance(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return batch_covariance(mu) + torch.diag(logvar.exp().mean(0))
