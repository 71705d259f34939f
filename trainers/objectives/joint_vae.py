"""JointVAE (Dupont 2018, "Learning Disentangled Joint Continuous and Discrete Representations").

    loss = recon + γ·|KL_z − C_z(t)| + γ·|KL_c − C_c(t)|

``KL_z`` is the closed-form Gaussian KL of the continuous latents; ``KL_c`` the
analytic KL of each categorical posterior α_i to the uniform prior,
``Σ_i [log K_i + Σ_k α_ik log α_ik]``.  The discrete capacity is capped at the
discrete latents' maximum entropy ``Σ_i log K_i`` (beyond it the target is
unreachable), and the capped value is what is reported as ``capacity_discrete``.
Dupont's dSprites setting: γ = 150, C_z 0 → 40 nats and C_c 0 → 1.1 nats over
300,000 steps, one 3-way discrete latent, temperature 0.67.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from types import MappingProxyType

import torch
from torch import nn

from trainers.models.joint import JointVAE
from trainers.objectives.base import Objective, Terms, register_objective, weight_terms
from trainers.objectives.gaussian import kl_normal_to_standard, reparameterize
from trainers.precision import autocast


@dataclasses.dataclass(frozen=True)
class JointVAEOptions:
    discrete_sizes: tuple[int, ...] = (3,)
    temperature: float = 0.67

    def __post_init__(self) -> None:
        object.__setattr__(self, "discrete_sizes", tuple(self.discrete_sizes))
        if not self.discrete_sizes or any(not isinstance(k, int) or k < 2 for k in self.discrete_sizes):
            raise ValueError(
                f"variant_options.discrete_sizes: one or more integers >= 2, got {list(self.discrete_sizes)}"
            )
        if not isinstance(self.temperature, (int, float)) or not self.temperature > 0:
            raise ValueError(f"variant_options.temperature: must be > 0, got {self.temperature!r}")


def kl_categorical_to_uniform(logits: torch.Tensor) -> torch.Tensor:
    """``KL(Cat(α) ‖ Uniform(K)) = log K + Σ_k α_k log α_k`` per row, α = softmax(logits)."""
    log_alpha = torch.log_softmax(logits.float(), dim=1)
    return math.log(logits.shape[1]) + (log_alpha.exp() * log_alpha).sum(1)


@register_objective
class JointVAEObjective(Objective):
    name = "joint_vae"
    Options = JointVAEOptions
    weight_defaults = MappingProxyType(
        {
            "gamma": {"schedule": "constant", "value": 150.0},
            "capacity_continuous": {
                "schedule": "linear", "start": 0.0, "end": 40.0, "start_step": 0, "end_step": 300_000
            },
            "capacity_discrete": {
                "schedule": "linear", "start": 0.0, "end": 1.1, "start_step": 0, "end_step": 300_000
            },
        }
    )  # fmt: skip

    @property
    def max_discrete_capacity(self) -> float:
        return sum(math.log(k) for k in self.options.discrete_sizes)

    def term_names(self) -> tuple[str, ...]:
        return ("recon", "kl", "kl_continuous", "kl_discrete", "loss", *self.weight_defaults)

    def weights_at(self, step: int) -> dict[str, float]:
        weights = super().weights_at(step)
        weights["capacity_discrete"] = min(weights["capacity_discrete"], self.max_discrete_capacity)
        return weights

    def build_model(self, latent_dim: int, in_channels: int, kernels: str) -> nn.Module:
        o = self.options
        return JointVAE(latent_dim, o.discrete_sizes, o.temperature, in_channels, kernels, self.likelihood)

    def forward_terms(
        self, model: nn.Module, x: torch.Tensor, step: int, noise: torch.Generator, precision: str
    ) -> Terms:
        with autocast(x.device, precision):
            posterior = model.encode(x)
        mu, logvar = posterior.mu.float(), posterior.logvar.float()
        z = reparameterize(mu, logvar, noise)
        c = model.discrete_sample(posterior.logits, noise)
        with autocast(x.device, precision):
            logits = model.decode(torch.cat([z, c], 1))
        kl_z = kl_normal_to_standard(mu, logvar).sum(1).mean()
        kl_c = sum(kl_categorical_to_uniform(lg) for lg in posterior.logits).mean()
        terms: Terms = {
            "recon": self.recon(logits, x),
            "kl": kl_z + kl_c,
            "kl_continuous": kl_z,
            "kl_discrete": kl_c,
        }
        weights = self.weights_at(step)
        terms["loss"] = self.loss(terms, weights)
        terms.update(weight_terms(weights, x.device))
        return terms

    def loss(self, terms: Terms, weights: Mapping[str, float]) -> torch.Tensor:
        gamma = weights["gamma"]
        return (
            terms["recon"]
            + gamma * (terms["kl_continuous"] - weights["capacity_continuous"]).abs()
            + gamma * (terms["kl_discrete"] - weights["capacity_discrete"]).abs()
        )
