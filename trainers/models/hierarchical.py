"""The hierarchical VAE of the seed notes ("Hierarchical VAE基本结构与损失函数") on Locatello et al.'s trunk.

Inference, bottom-up: the convolutional trunk, then L feature blocks giving
``F_1, …, F_L`` (each a 256-wide ReLU layer on the one below), and from each
``F_l`` an independent diagonal Gaussian ``q(z_l | x) = N(μ_l, C_l)``:
``q(z | x) = Π_l q(z_l | x)``, and the prior ``p(z) = Π_l N(0, I)``.

Generation, top-down (levels 1 = bottom … L = top)::

    h_L = G_L z_L
    h_l = Dec_{l+1}(h_{l+1}) + G_l z_l        l = L−1, …, 1
    x   ~ p(x | g(h_1))                        (N(g(h_1), σ²) in the notes: model.decoder: gaussian)

with ``G_l`` linear maps without bias, ``Dec_{l+1}`` two-layer ReLU MLPs of the
hidden width, and ``g`` Locatello et al.'s convolutional decoder reading ``h_1``.
The generator's parameters θ_g (``G``, ``Dec``, ``g``; not a learned decoder σ) are
what the objective's Gaussian weight prior acts on.
"""

from __future__ import annotations

import torch
from torch import nn

from trainers.distributions import reparameterize
from trainers.models.conv import TRAVERSAL_VALUES, ConvDecoder, ConvFeatures
from trainers.models.likelihood import BERNOULLI, Likelihood


class HierarchicalVAE(nn.Module):
    def __init__(
        self,
        level_dims: tuple[int, ...],
        hidden: int = 256,
        in_channels: int = 1,
        kernels: str = "code",
        likelihood: Likelihood = BERNOULLI,
    ) -> None:
        super().__init__()
        self.level_dims = tuple(level_dims)
        self.features = ConvFeatures(in_channels, kernels)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(256 if level == 0 else hidden, hidden), nn.ReLU()) for level in range(self.levels)
        )
        self.heads = nn.ModuleList(nn.Linear(hidden, 2 * d) for d in self.level_dims)
        self.lift = nn.ModuleList(nn.Linear(d, hidden, bias=False) for d in self.level_dims)  # G_l
        # dec[l] is Dec_{l+2} (0-based l): it maps h_{l+2} to level l+1's input.
        self.dec = nn.ModuleList(
            nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
            for _ in range(self.levels - 1)
        )
        self.decoder = ConvDecoder(hidden, in_channels, likelihood)  # g

    @property
    def levels(self) -> int:
        return len(self.level_dims)

    @property
    def latent_dim(self) -> int:
        return sum(self.level_dims)

    def generator_parameters(self) -> list[nn.Parameter]:
        """θ_g: every weight and bias of ``G``, ``Dec`` and ``g`` (a learned decoder σ excluded)."""
        modules = (self.lift, self.dec, self.decoder)
        return [p for m in modules for name, p in m.named_parameters() if not name.endswith("log_sigma")]

    def encode_levels(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(μ_l, log σ_l²)`` of every level, bottom (1) to top (L), in float32."""
        f = self.features(x)
        out = []
        for block, head in zip(self.blocks, self.heads, strict=True):
            f = block(f)
            mu, logvar = head(f).float().chunk(2, dim=1)
            out.append((mu, logvar))
        return out

    def generate(self, zs: list[torch.Tensor]) -> torch.Tensor:
        """The decoder output from per-level codes ``z_1 … z_L`` (the top-down generator)."""
        h = self.lift[-1](zs[-1])
        for level in reversed(range(self.levels - 1)):
            h = self.dec[level](h) + self.lift[level](zs[level])
        return self.decoder(h)

    def sample_levels(
        self, levels: list[tuple[torch.Tensor, torch.Tensor]], generator: torch.Generator | None
    ) -> list[torch.Tensor]:
        return [reparameterize(mu, logvar, generator) for mu, logvar in levels]

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(μ, log σ²)`` of every level, concatenated bottom to top (independent Gaussians)."""
        levels = self.encode_levels(x)
        return torch.cat([mu for mu, _ in levels], 1), torch.cat([lv for _, lv in levels], 1)

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        return self.posterior(x)[0]

    def sample_representation(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.cat(self.sample_levels(self.encode_levels(x), generator), 1)

    def split(self, code: torch.Tensor) -> list[torch.Tensor]:
        return list(code.split(list(self.level_dims), dim=1))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder.image(self.generate(self.split(self.representation(x))))

    def traverse_level(self, x: torch.Tensor, level: int, values: tuple[float, ...] = TRAVERSAL_VALUES) -> torch.Tensor:
        """A row per latent of ``level`` (0-based): ``x[0]``'s mean code with that latent swept over ``values``."""
        base = self.representation(x[:1])
        offset = sum(self.level_dims[:level])
        sweep = torch.tensor(values, device=base.device, dtype=base.dtype)
        rows = []
        for dim in range(offset, offset + self.level_dims[level]):
            codes = base.repeat(len(values), 1)
            codes[:, dim] = sweep
            rows.append(codes)
        return self.decoder.image(self.generate(self.split(torch.cat(rows))))

    def traverse(self, x: torch.Tensor, values: tuple[float, ...] = TRAVERSAL_VALUES) -> torch.Tensor:
        """Every level's traversal (:meth:`traverse_level`), bottom level first."""
        return torch.cat([self.traverse_level(x, level, values) for level in range(self.levels)])
