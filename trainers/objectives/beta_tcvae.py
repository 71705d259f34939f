"""β-TCVAE (Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs").

    loss = recon + α·I_q(x; z) + β·TC(z) + γ·Σ_d KL(q(z_d) ‖ p(z_d))

with the three terms estimated on the minibatch (``estimator``: ``mss``, minibatch
stratified sampling, the default; or ``mws``, minibatch weighted sampling), the
data-set size N kept in the estimate of log q(z).  Chen et al.'s dSprites setting:
α = γ = 1, β = 6.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import torch

from trainers.objectives.base import GaussianObjective, Terms, register_objective


@register_objective
class BetaTCVAE(GaussianObjective):
    name = "beta_tcvae"
    decomposition_in_loss = True
    weight_defaults = MappingProxyType(
        {
            "alpha": {"schedule": "constant", "value": 1.0},
            "beta": {"schedule": "constant", "value": 6.0},
            "gamma": {"schedule": "constant", "value": 1.0},
        }
    )

    def loss(self, terms: Terms, weights: Mapping[str, float]) -> torch.Tensor:
        return (
            terms["recon"]
            + weights["alpha"] * terms["index_code_mi"]
            + weights["beta"] * terms["total_correlation"]
            + weights["gamma"] * terms["dimwise_kl"]
        )
