"""Hierarchical VAE of the seed notes ("Hierarchical VAE基本结构与损失函数", in the style of
Rezende et al. 2014's deep latent Gaussian models; model in trainers.models.hierarchical).

With L levels of independent latents (prior N(0, I) each, posterior N(μ_l, C_l)
from the encoder feature F_l), the top-down generator
``h_L = G_L z_L, h_l = Dec_{l+1}(h_{l+1}) + G_l z_l`` and ``x ~ p(x | g(h_1))``,
the notes' negative ELBO with a Gaussian prior N(0, κI) on the generator's
parameters θ_g is

    loss = −(1/K) Σ_k log p(x | h_1(z^(k)))  +  ‖θ_g‖² / (2κ)  +  β · Σ_l KL(q(z_l|x) ‖ N(0, I))

(β = 1 is the notes' objective; it is a schedule like every weight).  Because the
levels are independent in prior and posterior, each KL_l is the closed-form
diagonal-Gaussian KL and their sum is the KL of the concatenated code.

Terms: ``recon`` (the K-sample average, nats per image), ``kl``, ``kl_level_1`` (bottom)
… ``kl_level_L`` (top), ``weight_prior`` (‖θ_g‖²/2κ), ``loss``, ``beta``.

Options: ``num_levels`` L (2), ``level_dims`` (sizes bottom to top; empty means
``model.latent_dim`` for every level), ``num_samples`` K (1), ``kappa`` κ (1000;
``.inf`` drops the prior), ``hidden`` (width of F_l, h_l and Dec, 256).  σ is the
decoder's: the notes' ``x ~ N(g(h_1), σ²)`` is ``model.decoder: gaussian`` with
``model.decoder_sigma: σ`` (or learned); the Bernoulli default also works.

Pitfalls and choices where the notes are silent: the weight prior enters once per
image, as in the notes' per-image ELBO (the MAP of a whole data set of N images
would use κ·N); the notes give no κ, and at κ = 1 the prior (≈ 420 nats for the
default generator at initialisation) would outweigh a trained dSprites
reconstruction, hence 1000.  The generator's ``G_l`` are linear without bias, as the
notes' "linear matrix".  Traversals are per level, bottom level first.
"""

from __future__ import annotations

import dataclasses
import math
from types import MappingProxyType

import torch
from torch import nn

from trainers.models.hierarchical import HierarchicalVAE
from trainers.objectives.base import Objective, Terms, register_objective, weight_terms
from trainers.objectives.gaussian import kl_normal_to_standard
from trainers.precision import autocast


def gaussian_weight_prior(parameters: list[torch.Tensor], kappa: float) -> torch.Tensor:
    """``‖θ‖² / (2κ)``: −log N(θ; 0, κI) without its constant."""
    return sum(p.float().square().sum() for p in parameters) / (2.0 * kappa)


@dataclasses.dataclass(frozen=True)
class HierarchicalOptions:
    #: Number of levels L.
    num_levels: int = 2
    #: Latent size of each level, bottom to top; empty means ``latent_dim`` for every level.
    level_dims: tuple[int, ...] = ()
    #: Posterior samples K averaged in the reconstruction term.
    num_samples: int = 1
    #: Variance κ of the Gaussian prior on the generator's parameters (``inf``: no prior).
    kappa: float = 1000.0
    #: Width of the feature blocks, h_l and the Dec MLPs.
    hidden: int = 256

    def __post_init__(self) -> None:
        object.__setattr__(self, "level_dims", tuple(self.level_dims))
        for name in ("num_levels", "num_samples", "hidden"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"variant_options.{name}: must be an integer >= 1, got {value!r}")
        if self.level_dims and len(self.level_dims) != self.num_levels:
            raise ValueError(
                f"variant_options.level_dims: {len(self.level_dims)} sizes for num_levels {self.num_levels}"
            )
        if any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in self.level_dims):
            raise ValueError(f"variant_options.level_dims: sizes must be integers >= 1, got {list(self.level_dims)}")
        kappa = self.kappa
        if isinstance(kappa, bool) or not isinstance(kappa, (int, float)) or not kappa > 0 or math.isnan(kappa):
            raise ValueError(f"variant_options.kappa: must be a number > 0 (or .inf), got {kappa!r}")


@register_objective
class HierarchicalVAEObjective(Objective):
    name = "hierarchical_vae"
    Options = HierarchicalOptions
    weight_defaults = MappingProxyType({"beta": {"schedule": "constant", "value": 1.0}})

    def term_names(self) -> tuple[str, ...]:
        levels = tuple(f"kl_level_{i}" for i in range(1, self.options.num_levels + 1))
        return ("recon", "kl", *levels, "weight_prior", "loss", *self.weight_defaults)

    def build_model(self, latent_dim: int, in_channels: int, kernels: str) -> nn.Module:
        o = self.options
        dims = o.level_dims or (latent_dim,) * o.num_levels
        return HierarchicalVAE(dims, o.hidden, in_channels, kernels, self.likelihood)

    def forward_terms(
        self, model: nn.Module, x: torch.Tensor, step: int, noise: torch.Generator, precision: str
    ) -> Terms:
        k = self.options.num_samples
        with autocast(x.device, precision):
            levels = model.encode_levels(x)
        # K samples of every level, stacked along the batch: [K·B, d_l].
        repeated = [(mu.repeat(k, 1), logvar.repeat(k, 1)) for mu, logvar in levels]
        with autocast(x.device, precision):
            output = model.generate(model.sample_levels(repeated, noise))
        target = x.repeat(k, *([1] * (x.dim() - 1)))
        kls = [kl_normal_to_standard(mu, logvar).sum(1).mean() for mu, logvar in levels]
        terms: Terms = {"recon": self.likelihood.nll(output, target).view(k, -1).mean(0).mean(), "kl": sum(kls)}
        terms.update({f"kl_level_{i}": kl for i, kl in enumerate(kls, start=1)})
        terms["weight_prior"] = gaussian_weight_prior(model.generator_parameters(), self.options.kappa)
        weights = self.weights_at(step)
        terms["loss"] = terms["recon"] + terms["weight_prior"] + weights["beta"] * terms["kl"]
        terms.update(weight_terms(weights, x.device))
        return terms
