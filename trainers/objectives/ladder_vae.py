"""Ladder VAE (Sønderby et al. 2016; the hierarchy of Rezende et al. 2014).

    loss = recon + β · Σ_l KL_l

with ``KL_L = KL(q(z_L|x) ‖ N(0, I))`` and, for l < L,
``KL_l = KL(q(z_l|·) ‖ p(z_l|z_{l+1}))`` at the sampled ``z_{l+1}``, each in closed
form between diagonal Gaussians:

    ½ Σ [log σ_p² − log σ_q² + (σ_q² + (μ_q − μ_p)²)/σ_p² − 1].

Sønderby et al. warm β up from 0 to 1: use ``beta: {schedule: linear, ...}``.
Terms ``kl_layer_1`` (bottom) … ``kl_layer_L`` (top).
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType

import torch
from torch import nn

from trainers.models.ladder import LadderVAE
from trainers.objectives.base import Objective, Terms, register_objective, weight_terms
from trainers.objectives.gaussian import kl_normal_to_standard
from trainers.precision import autocast


def kl_gaussians(
    mu_q: torch.Tensor, logvar_q: torch.Tensor, mu_p: torch.Tensor, logvar_p: torch.Tensor
) -> torch.Tensor:
    """Per-dimension ``KL(N(μ_q, σ_q²) ‖ N(μ_p, σ_p²))``."""
    return 0.5 * (logvar_p - logvar_q + (logvar_q.exp() + (mu_q - mu_p) ** 2) / logvar_p.exp() - 1.0)


@dataclasses.dataclass(frozen=True)
class LadderOptions:
    #: Number of stochastic layers L.
    num_layers: int = 2
    #: Latent size of each layer, bottom to top; empty means ``latent_dim`` for every layer.
    layer_dims: tuple[int, ...] = ()
    #: Width of the deterministic layers.
    hidden: int = 256

    def __post_init__(self) -> None:
        object.__setattr__(self, "layer_dims", tuple(self.layer_dims))
        if not isinstance(self.num_layers, int) or self.num_layers < 1:
            raise ValueError(f"variant_options.num_layers: must be an integer >= 1, got {self.num_layers!r}")
        if self.layer_dims and len(self.layer_dims) != self.num_layers:
            raise ValueError(
                f"variant_options.layer_dims: {len(self.layer_dims)} sizes for num_layers {self.num_layers}"
            )
        if any(not isinstance(d, int) or d < 1 for d in self.layer_dims):
            raise ValueError(f"variant_options.layer_dims: sizes must be integers >= 1, got {list(self.layer_dims)}")
        if not isinstance(self.hidden, int) or self.hidden < 1:
            raise ValueError(f"variant_options.hidden: must be an integer >= 1, got {self.hidden!r}")


@register_objective
class LadderVAEObjective(Objective):
    name = "ladder_vae"
    Options = LadderOptions
    weight_defaults = MappingProxyType({"beta": {"schedule": "constant", "value": 1.0}})

    def term_names(self) -> tuple[str, ...]:
        layers = tuple(f"kl_layer_{i}" for i in range(1, self.options.num_layers + 1))
        return ("recon", "kl", *layers, "loss", "beta")

    def build_model(self, latent_dim: int, in_channels: int, kernels: str) -> nn.Module:
        o = self.options
        dims = o.layer_dims or (latent_dim,) * o.num_layers
        return LadderVAE(dims, o.hidden, in_channels, kernels, self.likelihood)

    def forward_terms(
        self, model: nn.Module, x: torch.Tensor, step: int, noise: torch.Generator, precision: str
    ) -> Terms:
        with autocast(x.device, precision):
            layers = model.infer(x, noise)
            logits = model.decode(layers[0].z)
        kls = []
        for layer in layers:
            if layer.mu_p is None:
                kl = kl_normal_to_standard(layer.mu_q, layer.logvar_q)
            else:
                kl = kl_gaussians(layer.mu_q, layer.logvar_q, layer.mu_p, layer.logvar_p)
            kls.append(kl.float().sum(1).mean())
        terms: Terms = {"recon": self.recon(logits, x), "kl": sum(kls)}
        terms.update({f"kl_layer_{i}": kl for i, kl in enumerate(kls, start=1)})
        weights = self.weights_at(step)
        terms["loss"] = terms["recon"] + weights["beta"] * terms["kl"]
        terms.update(weight_terms(weights, x.device))
        return terms
