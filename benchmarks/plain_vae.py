"""An independent β-VAE trainer in plain PyTorch, to check ``trainers/`` against.

It shares nothing with ``trainers/`` but the images (``trainers.data``'s procedural
dSprites): its own network (Locatello et al. 2019, Table 1, with disentanglement_lib's
2×2 kernels in encoder layers 3–4), its own loss

    loss = BCE(x, decoder(z)) summed over pixels + β · Σ_d ½ (μ² + σ² − 1 − log σ²),
    each averaged over the batch, z = μ + σ ε,

and plain Adam (betas 0.9/0.999, eps 1e-8).  ``tests/test_independent_trainer.py`` runs it
step by step beside the product's trainer from the same weights, batches and noise;
``benchmarks/learning_check.py`` trains it from its own initialisation to the end.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PlainBetaVAE(nn.Module):
    """Encoder to (μ, log σ²) and decoder to Bernoulli logits, as two ``nn.Sequential``."""

    def __init__(self, latent_dim: int = 10) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 32, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 64, 2, 2), nn.ReLU(), nn.Conv2d(64, 64, 2, 2), nn.ReLU(),
            nn.Flatten(), nn.Linear(1024, 256), nn.ReLU(), nn.Linear(256, 2 * latent_dim),
        )  # fmt: skip
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, 256), nn.ReLU(), nn.Linear(256, 1024), nn.ReLU(), nn.Unflatten(1, (64, 4, 4)),
            nn.ConvTranspose2d(64, 64, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, 1, 4, 2, 1),
        )  # fmt: skip

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar

    def he_init(self) -> PlainBetaVAE:
        """torch's own He-normal (fan-in, ReLU gain) and zero biases."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)
        return self


def beta_vae_terms(model: PlainBetaVAE, x: torch.Tensor, eps: torch.Tensor, beta: float) -> dict[str, torch.Tensor]:
    """``recon``, ``kl`` and ``loss`` of one batch with reparameterisation noise ``eps``."""
    mu, logvar = model.posterior(x)
    z = mu + torch.exp(0.5 * logvar) * eps
    logits = model.decoder(z)
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum() / x.shape[0]
    return {"recon": recon, "kl": kl, "loss": recon + beta * kl}


def adam(model: nn.Module, lr: float) -> torch.optim.Adam:
    return torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8)
