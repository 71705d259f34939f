"""HFVAE (Esmaeili et al. 2019, "Structured Disentangled Representations").

The KL term of the ELBO split hierarchically over latent groups (see
:func:`~trainers.objectives.gaussian.grouped_kl_decomposition`) and reweighted:

    loss = recon + α·I_q(x; z) + β·TC_between_groups + γ·TC_within_groups + Σ_d KL(q(z_d) ‖ p(z_d))

(terms ① and ③ of the paper's decomposition: the data term ② is constant).  The
minibatch estimator is the paper's: weight 1/N for the item's own density and
(N−1)/(N·(B−1)) for each other item of the batch.  ``group_sizes`` partitions the
latents in order; by default each latent is its own group (β then weighs the total
correlation and γ has nothing to act on).  With one group it is β-TCVAE with
(α, γ, 1).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType

import torch

from trainers.objectives.base import GaussianObjective, Terms, register_objective
from trainers.objectives.gaussian import grouped_kl_decomposition


@dataclasses.dataclass(frozen=True)
class HFVAEOptions:
    #: Sizes of consecutive latent groups; empty means one group per latent.
    group_sizes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "group_sizes", tuple(self.group_sizes))
        if any(not isinstance(n, int) or n < 1 for n in self.group_sizes):
            raise ValueError(f"variant_options.group_sizes: sizes must be integers >= 1, got {list(self.group_sizes)}")


@register_objective
class HFVAE(GaussianObjective):
    name = "hfvae"
    Options = HFVAEOptions
    preferred_estimator = "hfvae"
    decomposition_in_loss = True
    decomposition_terms = ("index_code_mi", "tc_between_groups", "tc_within_groups", "total_correlation", "dimwise_kl")
    weight_defaults = MappingProxyType(
        {
            "alpha": {"schedule": "constant", "value": 1.0},
            "beta": {"schedule": "constant", "value": 1.0},
            "gamma": {"schedule": "constant", "value": 1.0},
        }
    )

    def check_latent_dim(self, latent_dim: int) -> None:
        sizes = self.options.group_sizes
        if sizes and sum(sizes) != latent_dim:
            raise ValueError(
                f"variant_options.group_sizes: {list(sizes)} sums to {sum(sizes)}, not latent_dim {latent_dim}"
            )

    def decompose(self, z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> Terms:
        sizes = self.options.group_sizes or (1,) * z.shape[1]
        return grouped_kl_decomposition(z, mu, logvar, sizes, self.dataset_size, self.estimator)

    def loss(self, terms: Terms, weights: Mapping[str, float]) -> torch.Tensor:
        return (
            terms["recon"]
            + weights["alpha"] * terms["index_code_mi"]
            + weights["beta"] * terms["tc_between_groups"]
            + weights["gamma"] * terms["tc_within_groups"]
            + terms["dimwise_kl"]
        )
