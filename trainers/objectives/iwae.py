"""IWAE (Burda et al. 2016, "Importance Weighted Autoencoders").

With K samples ``z_k ~ q(z|x)`` and weights ``w_k = p(x|z_k) p(z_k) / q(z_k|x)``,

    iwae_bound = E_x[log (1/K) Σ_k w_k]        loss = −iwae_bound

a lower bound on log p(x) that tightens as K grows (K = 1 is the ELBO).  Also
reported: ``effective_sample_size`` ``(Σ w)² / Σ w²`` ∈ [1, K] averaged over the
batch, ``recon`` (mean over the K samples) and the closed-form ``kl``.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from trainers.objectives.base import Objective, Terms, register_objective
from trainers.objectives.gaussian import gaussian_log_density, kl_normal_to_standard
from trainers.precision import autocast


@dataclasses.dataclass(frozen=True)
class IWAEOptions:
    num_samples: int = 5

    def __post_init__(self) -> None:
        if not isinstance(self.num_samples, int) or self.num_samples < 1:
            raise ValueError(f"variant_options.num_samples: must be an integer >= 1, got {self.num_samples!r}")


def iwae_terms(log_w: torch.Tensor) -> dict[str, torch.Tensor]:
    """Bound and effective sample size from log weights ``[K, B]``."""
    k = log_w.shape[0]
    bound = (torch.logsumexp(log_w, dim=0) - math.log(k)).mean()
    normalised = torch.softmax(log_w, dim=0)
    ess = (1.0 / (normalised**2).sum(0)).mean()
    return {"iwae_bound": bound, "effective_sample_size": ess}


@register_objective
class IWAE(Objective):
    name = "iwae"
    Options = IWAEOptions

    def term_names(self) -> tuple[str, ...]:
        return ("recon", "kl", "iwae_bound", "effective_sample_size", "loss")

    def forward_terms(
        self, model: nn.Module, x: torch.Tensor, step: int, noise: torch.Generator, precision: str
    ) -> Terms:
        k = self.options.num_samples
        with autocast(x.device, precision):
            posterior = model.encode(x)
        mu, logvar = posterior.mu.float(), posterior.logvar.float()
        eps = torch.randn((k, *mu.shape), generator=noise, device=mu.device)
        z = mu + torch.exp(0.5 * logvar) * eps  # [K, B, D]
        with autocast(x.device, precision):
            logits = model.decode(z.flatten(0, 1)).float()
        target = x.repeat(k, *([1] * (x.dim() - 1)))
        log_px_z = -self.likelihood.nll(logits, target).view(k, -1)
        log_pz = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z)).sum(2)
        log_qz_x = gaussian_log_density(z, mu, logvar).sum(2)
        terms: Terms = {
            "recon": -log_px_z.mean(),
            "kl": kl_normal_to_standard(mu, logvar).sum(1).mean(),
            **iwae_terms(log_px_z + log_pz - log_qz_x),
        }
        terms["loss"] = -terms["iwae_bound"]
        return terms
