"""Diagonal-Gaussian primitives: density, closed-form KL to N(0, I), reparameterised sample."""

from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2.0 * math.pi)


def gaussian_log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise ``log N(z; μ, exp(logvar)) = −½ (log 2π + logvar + (z − μ)² e^{−logvar})``."""
    return -0.5 * (LOG_2PI + logvar + (z - mu) ** 2 * torch.exp(-logvar))


def kl_normal_to_standard(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-dimension ``KL(N(μ, σ²) ‖ N(0, 1)) = ½ (μ² + σ² − 1 − log σ²)``."""
    return 0.5 * (mu**2 + torch.exp(logvar) - 1.0 - logvar)


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """``z = μ + σ ε`` with ``ε ~ N(0, I)`` (Kingma & Welling 2014)."""
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps
