"""The ladder VAE (Sønderby et al. 2016) on Locatello et al.'s convolutional trunk.

Generative model ``z_L → … → z_1 → x``: ``p(z_L) = N(0, I)``,
``p(z_l | z_{l+1}) = N(μ_p, σ_p²)`` from a small MLP, and the conv decoder reads
``z_1``.  Inference runs bottom-up through deterministic layers giving
``(μ̂_l, σ̂_l²)`` per layer, then top-down: ``q(z_L|x) = N(μ̂_L, σ̂_L²)`` and for
l < L the precision-weighted merge of the bottom-up and top-down Gaussians

    σ_q² = 1 / (σ̂⁻² + σ_p⁻²),   μ_q = (μ̂ σ̂⁻² + μ_p σ_p⁻²) σ_q².

Layers are indexed bottom (1) to top (L).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from trainers.distributions import reparameterize
from trainers.models.conv import TRAVERSAL_VALUES, ConvDecoder, ConvFeatures
from trainers.models.likelihood import BERNOULLI, Likelihood


@dataclass
class LadderLayer:
    """One stochastic layer of a pass: posterior, prior (None at the top) and sample."""

    mu_q: torch.Tensor
    logvar_q: torch.Tensor
    mu_p: torch.Tensor | None
    logvar_p: torch.Tensor | None
    z: torch.Tensor


def precision_weighted_merge(
    mu_a: torch.Tensor, logvar_a: torch.Tensor, mu_b: torch.Tensor, logvar_b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Product of two Gaussians, normalised: ``(μ, log σ²)``."""
    prec_a, prec_b = torch.exp(-logvar_a), torch.exp(-logvar_b)
    var = 1.0 / (prec_a + prec_b)
    return (mu_a * prec_a + mu_b * prec_b) * var, torch.log(var)


def _mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, outputs))


class LadderVAE(nn.Module):
    def __init__(
        self,
        layer_dims: tuple[int, ...],
        hidden: int = 256,
        in_channels: int = 1,
        kernels: str = "code",
        likelihood: Likelihood = BERNOULLI,
    ) -> None:
        super().__init__()
        self.layer_dims = tuple(layer_dims)
        self.features = ConvFeatures(in_channels, kernels)
        self.up = nn.ModuleList(
            nn.Sequential(nn.Linear(256 if i == 0 else hidden, hidden), nn.ReLU()) for i in range(len(layer_dims))
        )
        self.up_heads = nn.ModuleList(nn.Linear(hidden, 2 * d) for d in layer_dims)
        # down[l] gives p(z_l | z_{l+1}) for l = 0 .. L-2 (0-based)
        self.down = nn.ModuleList(
            _mlp(layer_dims[i + 1], hidden, 2 * layer_dims[i]) for i in range(len(layer_dims) - 1)
        )
        self.decoder = ConvDecoder(layer_dims[0], in_channels, likelihood)

    @property
    def latent_dim(self) -> int:
        return sum(self.layer_dims)

    def bottom_up(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        h = self.features(x)
        out = []
        for up, head in zip(self.up, self.up_heads, strict=True):
            h = up(h)
            mu, logvar = head(h).float().chunk(2, dim=1)
            out.append((mu, logvar))
        return out

    def prior(self, level: int, z_above: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``p(z_level | z_{level+1})`` (0-based level)."""
        mu, logvar = self.down[level](z_above).float().chunk(2, dim=1)
        return mu, logvar

    def infer(self, x: torch.Tensor, noise: torch.Generator | None, sample: bool = True) -> list[LadderLayer]:
        """Top-down inference; ``sample=False`` follows the posterior means."""
        up = self.bottom_up(x)
        layers: list[LadderLayer | None] = [None] * len(up)
        mu_q, logvar_q = up[-1]
        z = reparameterize(mu_q, logvar_q, noise) if sample else mu_q
        layers[-1] = LadderLayer(mu_q, logvar_q, None, None, z)
        for level in reversed(range(len(up) - 1)):
            mu_p, logvar_p = self.prior(level, z)
            mu_q, logvar_q = precision_weighted_merge(*up[level], mu_p, logvar_p)
            z = reparameterize(mu_q, logvar_q, noise) if sample else mu_q
            layers[level] = LadderLayer(mu_q, logvar_q, mu_p, logvar_p, z)
        return layers  # type: ignore[return-value]

    def decode(self, z1: torch.Tensor) -> torch.Tensor:
        return self.decoder(z1)

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior means of every layer along the mean path, bottom to top, concatenated."""
        return torch.cat([layer.z for layer in self.infer(x, None, sample=False)], 1)

    def sample_representation(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Samples of every layer from top-down inference, concatenated."""
        return torch.cat([layer.z for layer in self.infer(x, generator)], 1)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder.image(self.decode(self.infer(x, None, sample=False)[0].z))

    def traverse(self, x: torch.Tensor, values: tuple[float, ...] = TRAVERSAL_VALUES) -> torch.Tensor:
        """A row per latent of every layer: that latent moved by ``values`` from ``x[0]``'s mean path.

        Layers below the moved one are regenerated from their prior means, so a
        row shows what the latent controls through the generative model.
        """
        path = [layer.z for layer in self.infer(x[:1], None, sample=False)]
        sweep = torch.tensor(values, device=path[0].device)
        images = []
        for level, dim in ((lv, d) for lv, size in enumerate(self.layer_dims) for d in range(size)):
            z = path[level].repeat(len(values), 1)
            z[:, dim] = z[:, dim] + sweep
            for below in reversed(range(level)):
                z = self.prior(below, z)[0]
            images.append(self.decoder.image(self.decode(z)))
        return torch.cat(images)
