"""JointVAE's model (Dupont 2018): continuous Gaussian z plus Gumbel-softmax discrete c.

The encoder trunk is Locatello et al.'s; its head gives ``2·d`` Gaussian parameters
and one logit vector per discrete latent.  The decoder reads ``[z, c₁, …, c_n]``.
In training each ``c_i`` is a Gumbel-softmax relaxed sample (Jang et al. 2017;
Maddison et al. 2017) at the configured temperature; in evaluation (``model.eval()``)
it is the one-hot argmax.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from trainers.models.conv import TRAVERSAL_VALUES, ConvDecoder, ConvFeatures
from trainers.models.likelihood import BERNOULLI, Likelihood


@dataclass
class JointPosterior:
    mu: torch.Tensor
    logvar: torch.Tensor
    #: Unnormalised log-probabilities of each discrete latent, ``[B, K_i]`` each.
    logits: list[torch.Tensor]


def gumbel_softmax(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """``softmax((logits + g)/τ)`` with ``g = −log(−log U)``, ``U ~ Uniform(0, 1)``."""
    u = torch.rand(logits.shape, generator=generator, device=logits.device).clamp(1e-10, 1.0 - 1e-7)
    return torch.softmax((logits - torch.log(-torch.log(u))) / temperature, dim=-1)


class JointVAE(nn.Module):
    def __init__(
        self,
        latent_dim: int,
        discrete_sizes: tuple[int, ...],
        temperature: float,
        in_channels: int = 1,
        kernels: str = "code",
        likelihood: Likelihood = BERNOULLI,
    ) -> None:
        super().__init__()
        self.features = ConvFeatures(in_channels, kernels)
        self.head = nn.Linear(256, 2 * latent_dim + sum(discrete_sizes))
        self.decoder = ConvDecoder(latent_dim + sum(discrete_sizes), in_channels, likelihood)
        self.latent_dim, self.discrete_sizes, self.temperature = latent_dim, tuple(discrete_sizes), temperature

    def encode(self, x: torch.Tensor) -> JointPosterior:
        out = self.head(self.features(x))
        mu, logvar = out[:, : self.latent_dim], out[:, self.latent_dim : 2 * self.latent_dim]
        logits = list(out[:, 2 * self.latent_dim :].split(list(self.discrete_sizes), dim=1))
        return JointPosterior(mu, logvar, logits)

    def discrete_sample(self, logits: list[torch.Tensor], generator: torch.Generator | None) -> torch.Tensor:
        if self.training:
            return torch.cat([gumbel_softmax(lg.float(), self.temperature, generator) for lg in logits], 1)
        return self.one_hot(logits)

    def one_hot(self, logits: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([F.one_hot(lg.argmax(1), lg.shape[1]).float() for lg in logits], 1)

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        return self.decoder(code)

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        """``[μ, one-hot argmax of each discrete latent]``."""
        posterior = self.encode(x)
        return torch.cat([posterior.mu, self.one_hot(posterior.logits)], 1)

    def sample_representation(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``[z ~ q(z|x), one-hot argmax]``."""
        posterior = self.encode(x)
        eps = torch.randn(posterior.mu.shape, generator=generator, device=x.device, dtype=posterior.mu.dtype)
        z = posterior.mu + torch.exp(0.5 * posterior.logvar) * eps
        return torch.cat([z, self.one_hot(posterior.logits)], 1)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder.image(self.decode(self.representation(x)))

    def traverse(self, x: torch.Tensor, values: tuple[float, ...] = TRAVERSAL_VALUES) -> torch.Tensor:
        """A row per continuous latent (swept over ``values``) and per discrete latent (its categories)."""
        base = self.representation(x[:1])
        n = len(values)
        rows = []
        sweep = torch.tensor(values, device=base.device, dtype=base.dtype)
        for dim in range(self.latent_dim):
            codes = base.repeat(n, 1)
            codes[:, dim] = sweep
            rows.append(codes)
        offset = self.latent_dim
        for size in self.discrete_sizes:
            codes = base.repeat(n, 1)
            codes[:, offset : offset + size] = F.one_hot(torch.arange(n, device=base.device) % size, size).float()
            rows.append(codes)
            offset += size
        return self.decoder.image(self.decode(torch.cat(rows)))
