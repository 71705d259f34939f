"""The β-VAE family: VAE, β-VAE and capacity-annealed β-VAE.

``vae``           loss = recon + KL                         (Kingma & Welling 2014)
``beta_vae``      loss = recon + β·KL                       (Higgins et al. 2017; β=4 on dSprites)
``annealed_vae``  loss = recon + γ·|KL − C(t)|              (Burgess et al. 2018; γ=1000,
                  C(t) ramped linearly 0 → 25 nats over 100,000 steps)

KL is the closed-form Gaussian KL summed over latent dimensions.  Each also reports
the MI / TC / dimension-wise KL decomposition (monitoring only, no gradient).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import torch

from trainers.objectives.base import GaussianObjective, Terms, register_objective


@register_objective
class VAE(GaussianObjective):
    name = "vae"

    def loss(self, terms: Terms, weights: Mapping[str, float]) -> torch.Tensor:
        return terms["recon"] + terms["kl"]


@register_objective
class BetaVAE(GaussianObjective):
    name = "beta_vae"
    weight_defaults = MappingProxyType({"beta": {"schedule": "constant", "value": 4.0}})

    def loss(self, terms: Terms, weights: Mapping[str, float]) -> torch.Tensor:
        return terms["recon"] + weights["beta"] * terms["kl"]


@register_objective
class AnnealedVAE(GaussianObjective):
    name = "annealed_vae"
    weight_defaults = MappingProxyType(
        {
            "gamma": {"schedule": "constant", "value": 1000.0},
            "capacity": {"schedule": "linear", "start": 0.0, "end": 25.0, "start_step": 0, "end_step": 100_000},
        }
    )

    def loss(self, terms: Terms, weights: Mapping[str, float]) -> torch.Tensor:
        return terms["recon"] + weights["gamma"] * (terms["kl"] - weights["capacity"]).abs()
