"""DIP-VAE I and II (Kumar et al. 2018, "Variational Inference of Disentangled Latent Concepts").

    loss = recon + KL + λ_od Σ_{i≠j} Cov_ij² + λ_d Σ_i (Cov_ii − 1)²

DIP-VAE-I penalises ``Cov = Cov_{p(x)}[μ(x)]``; DIP-VAE-II penalises the covariance
of the aggregate posterior, ``Cov_q[z] = Cov[μ(x)] + E[diag σ²(x)]``.  Both
covariances are taken over the batch dimension with 1/B:
``Cov[μ] = E[μμᵀ] − E[μ]E[μ]ᵀ``.

As in disentanglement_lib, λ_d is tied to λ_od by ``lambda_d_factor`` (an option:
10 for I, 1 for II), so a sweep over λ_od keeps the published ratio; the λ_d in
force is reported as the term ``lambda_d``.  λ_od defaults to 10.
"""

from __future__ import annotations

import dataclasses
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


@dataclasses.dataclass(frozen=True)
class DIPOptions:
    lambda_d_factor: float = 10.0

    def __post_init__(self) -> None:
        if not isinstance(self.lambda_d_factor, (int, float)) or self.lambda_d_factor < 0:
            raise ValueError(f"variant_options.lambda_d_factor: must be >= 0, got {self.lambda_d_factor!r}")


@dataclasses.dataclass(frozen=True)
class DIPIIOptions(DIPOptions):
    lambda_d_factor: float = 1.0


class _DIPVAE(GaussianObjective):
    extra_term_names = ("dip_offdiag", "dip_diag")
    weight_defaults = MappingProxyType({"lambda_od": {"schedule": "constant", "value": 10.0}})

    def term_names(self) -> tuple[str, ...]:
        return (*super().term_names(), "lambda_d")

    def weights_at(self, step: int) -> dict[str, float]:
        weights = super().weights_at(step)
        weights["lambda_d"] = self.options.lambda_d_factor * weights["lambda_od"]
        return weights

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
    Options = DIPOptions

    def covariance(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return batch_covariance(mu)


@register_objective
class DIPVAEII(_DIPVAE):
    name = "dip_vae_ii"
    Options = DIPIIOptions

    def covariance(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return batch_covariance(mu) + torch.diag(logvar.exp().mean(0))
