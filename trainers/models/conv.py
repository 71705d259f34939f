"""The standard 64×64 convolutional VAE of Locatello et al. (2019), Table 1.

Encoder: conv 32 4×4 s2 → conv 32 4×4 s2 → conv 64 k×k s2 → conv 64 k×k s2 (ReLU)
→ FC 256 (ReLU) → FC 2·d (mean and log-variance of a diagonal Gaussian).
Decoder: FC 256 → FC 4·4·64 (ReLU) → upconv 64 → upconv 32 → upconv 32 → upconv c,
all 4×4 stride 2, giving per pixel the parameter of the decoder likelihood
(Bernoulli logits by default; see :mod:`trainers.models.likelihood`).

The paper lists 4×4 kernels for every encoder convolution, while
disentanglement_lib's ``conv_encoder`` uses 2×2 kernels in the third and fourth
layers.  ``kernels="code"`` (the default, what the published models were trained
with) follows the code; ``kernels="paper"`` follows the table.  With TF's "same"
padding both give 32, 16, 8, 4 pixel feature maps; here that is padding 1 for the
4×4 kernels and 0 for the 2×2 ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from trainers.models.likelihood import BERNOULLI, Likelihood

KERNEL_CHOICES = ("code", "paper")
#: Latent values a traversal sweeps through (in prior standard deviations).
TRAVERSAL_VALUES = tuple(torch.linspace(-2.5, 2.5, 9).tolist())


@dataclass
class EncoderOutput:
    """Diagonal Gaussian posterior parameters, each ``[B, d]``."""

    mu: torch.Tensor
    logvar: torch.Tensor


class ConvFeatures(nn.Module):
    """The encoder's convolutional trunk up to the 256-unit hidden layer."""

    def __init__(self, in_channels: int = 1, kernels: str = "code") -> None:
        super().__init__()
        if kernels not in KERNEL_CHOICES:
            raise ValueError(f"kernels must be one of {KERNEL_CHOICES}, got {kernels!r}")
        k, p = (2, 0) if kernels == "code" else (4, 1)
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, 32, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 32, 4, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 64, k, 2, p), nn.ReLU(),
            nn.Conv2d(64, 64, k, 2, p), nn.ReLU(),
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 256), nn.ReLU(),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvEncoder(nn.Module):
    """Trunk plus a linear head to ``2·latent_dim`` Gaussian parameters."""

    def __init__(self, latent_dim: int, in_channels: int = 1, kernels: str = "code") -> None:
        super().__init__()
        self.features = ConvFeatures(in_channels, kernels)
        self.head = nn.Linear(256, 2 * latent_dim)
        self.latent_dim = latent_dim

    def forward(self, x: torch.Tensor) -> EncoderOutput:
        mu, logvar = self.head(self.features(x)).chunk(2, dim=1)
        return EncoderOutput(mu=mu, logvar=logvar)


class ConvDecoder(nn.Module):
    """The decoder network and the likelihood its output parameterises (a learned σ is its parameter)."""

    def __init__(self, latent_dim: int, out_channels: int = 1, likelihood: Likelihood = BERNOULLI) -> None:
        super().__init__()
        self.likelihood = likelihood
        self.log_sigma = nn.Parameter(torch.tensor(math.log(likelihood.sigma))) if likelihood.learns_scale else None
        self.net = nn.Sequential(
            nn.Linear(latent_dim, 256), nn.ReLU(),
            nn.Linear(256, 64 * 4 * 4), nn.ReLU(),
            nn.Unflatten(1, (64, 4, 4)),
            nn.ConvTranspose2d(64, 64, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(32, 32, 4, 2, 1), nn.ReLU(),
            nn.ConvTranspose2d(32, out_channels, 4, 2, 1),
        )  # fmt: skip

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """The likelihood's parameters ``[B, c, 64, 64]`` (``[B, 2c, 64, 64]`` with a learned σ)."""
        return self.likelihood.output(self.net(z), self.log_sigma)

    def image(self, output: torch.Tensor) -> torch.Tensor:
        """The mean image ``[B, c, 64, 64]`` in [0, 1] of a decoder output."""
        return self.likelihood.mean(output)


class GaussianVAE(nn.Module):
    """Encoder to a diagonal Gaussian, decoder from a sample."""

    def __init__(
        self, latent_dim: int, in_channels: int = 1, kernels: str = "code", likelihood: Likelihood = BERNOULLI
    ) -> None:
        super().__init__()
        self.encoder = ConvEncoder(latent_dim, in_channels, kernels)
        self.decoder = ConvDecoder(latent_dim, in_channels, likelihood)
        self.latent_dim = latent_dim

    def encode(self, x: torch.Tensor) -> EncoderOutput:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        """The code metrics score: the posterior mean."""
        return self.encode(x).mu

    def sample_representation(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A sample z ~ q(z|x)."""
        posterior = self.encode(x)
        eps = torch.randn(posterior.mu.shape, generator=generator, device=x.device, dtype=posterior.mu.dtype)
        return posterior.mu + torch.exp(0.5 * posterior.logvar) * eps

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(μ, log σ²)`` of q(z|x)."""
        posterior = self.encode(x)
        return posterior.mu, posterior.logvar

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Mean images decoded from the posterior mean."""
        return self.decoder.image(self.decode(self.encode(x).mu))

    def traverse(self, x: torch.Tensor, values: tuple[float, ...] = TRAVERSAL_VALUES) -> torch.Tensor:
        """One row per latent: ``x[0]``'s mean code with that latent swept over ``values``."""
        base = self.encode(x[:1]).mu
        codes = base.repeat(self.latent_dim * len(values), 1)
        sweep = torch.tensor(values, device=base.device, dtype=base.dtype)
        for dim in range(self.latent_dim):
            codes[dim * len(values) : (dim + 1) * len(values), dim] = sweep
        return self.decoder.image(self.decode(codes))
