"""FactorVAE (Kim & Mnih 2018, "Disentangling by Factorising").

    loss_VAE = recon + KL + γ·TC_D,   TC_D = E_q(z)[log D(z) / (1 − D(z))]

D is a discriminator between samples of q(z) and of Π_d q(z_d), the latter made by
permuting each latent column of a second batch independently.  D is the 6 × 1000
LeakyReLU(0.2) MLP of the paper with two logits (``log D/(1−D) = logit₀ − logit₁``),
trained with its own Adam (lr 1e-4, betas (0.5, 0.9)) on
``½[CE(D(z), q) + CE(D(perm(z')), Πq)]`` with both latent batches detached.

Both backward passes run before either optimiser step (each restricted to its own
parameters): stepping the discriminator first would modify in place a tensor the
VAE's graph still needs.  γ default 40 (disentanglement_lib's grid: 10–100).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import nn

from trainers.models import BERNOULLI, GaussianVAE, Likelihood
from trainers.objectives.base import GaussianObjective, Terms, adam, register_objective


class Discriminator(nn.Module):
    def __init__(self, latent_dim: int, hidden: int = 1000, layers: int = 6) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        width = latent_dim
        for _ in range(layers):
            blocks += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
            width = hidden
        self.net = nn.Sequential(*blocks, nn.Linear(width, 2))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class FactorVAEModel(GaussianVAE):
    """The Gaussian VAE plus its total-correlation discriminator."""

    def __init__(
        self, latent_dim: int, in_channels: int = 1, kernels: str = "code", likelihood: Likelihood = BERNOULLI
    ) -> None:
        super().__init__(latent_dim, in_channels, kernels, likelihood)
        self.discriminator = Discriminator(latent_dim)


def permute_dims(z: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Shuffle each column of ``z [B, D]`` independently: samples of Π_d q(z_d)."""
    keys = torch.rand(z.shape, generator=generator, device=z.device)
    return torch.gather(z, 0, keys.argsort(dim=0))


@register_objective
class FactorVAE(GaussianObjective):
    name = "factor_vae"
    weight_defaults = MappingProxyType({"gamma": {"schedule": "constant", "value": 40.0}})
    extra_term_names = ("tc_discriminator", "discriminator_loss", "discriminator_accuracy")
    # The discriminator trains on permuted codes with an optimiser of its own.
    packable = False

    def build_model(self, latent_dim: int, in_channels: int, kernels: str) -> nn.Module:
        return FactorVAEModel(latent_dim, in_channels, kernels, self.likelihood)

    def make_optimizers(self, model: nn.Module, lr: float) -> dict[str, torch.optim.Optimizer]:
        vae = [p for name, p in model.named_parameters() if not name.startswith("discriminator.")]
        return {
            "vae": adam(vae, lr),
            "discriminator": adam(model.discriminator.parameters(), 1e-4, betas=(0.5, 0.9)),
        }

    def forward_terms(
        self,
        model: nn.Module,
        x: torch.Tensor,
        step: int,
        noise: torch.Generator,
        precision: str,
        x_other: torch.Tensor | None = None,
    ) -> Terms:
        """Terms on ``x``; the permuted samples come from ``x_other`` (default: ``x`` itself)."""
        mu, logvar, z, logits = self.encode_decode(model, x, noise, precision)
        terms = self.elbo_terms(x, mu, logvar, z, logits)
        logits_q = model.discriminator(z)
        terms["tc_discriminator"] = (logits_q[:, 0] - logits_q[:, 1]).mean()
        if x_other is None:
            z_other = z.detach()
        else:
            with torch.no_grad():
                z_other = self.encode_sample(model, x_other, noise, precision)[2]
        d_true = model.discriminator(z.detach())
        d_perm = model.discriminator(permute_dims(z_other, noise))
        q_class = torch.zeros(len(z), dtype=torch.long, device=z.device)
        perm_class = torch.ones(len(z_other), dtype=torch.long, device=z.device)
        terms["discriminator_loss"] = 0.5 * (F.cross_entropy(d_true, q_class) + F.cross_entropy(d_perm, perm_class))
        terms["discriminator_accuracy"] = 0.5 * (
            (d_true.argmax(1) == 0).float().mean() + (d_perm.argmax(1) == 1).float().mean()
        )
        return self.finish(terms, self.weights_at(step))

    def train_step(
        self,
        model: nn.Module,
        optimizers: Mapping[str, torch.optim.Optimizer],
        next_batch: Callable[[], torch.Tensor],
        step: int,
        noise: torch.Generator,
        precision: str,
    ) -> Terms:
        x, x_other = next_batch(), next_batch()
        terms = self.forward_terms(model, x, step, noise, precision, x_other)
        for optimizer in optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        vae_params = [p for group in optimizers["vae"].param_groups for p in group["params"]]
        terms["loss"].backward(inputs=vae_params)
        terms["discriminator_loss"].backward(inputs=list(model.discriminator.parameters()))
        optimizers["vae"].step()
        optimizers["discriminator"].step()
        return terms

    def loss(self, terms: Terms, weights: Mapping[str, float]) -> torch.Tensor:
        return terms["recon"] + terms["kl"] + weights["gamma"] * terms["tc_discriminator"]
