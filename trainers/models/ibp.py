"""IBP-VAE's model (Gyawali et al. 2019; Singh et al. 2017): a spike-and-slab code z = b ⊙ a.

Locatello et al.'s convolutional trunk; its head gives, for each of the K
(truncation) latent dimensions, the Gaussian value's ``(μ, log σ²)``, the logit of
the Bernoulli mask ``q(b_k = 1 | x)`` and the two Kumaraswamy parameters of the stick
fraction ``q(ν_k | x)`` (softplus, floored at :data:`KUMARASWAMY_FLOOR`).  The
decoder reads ``b ⊙ a``.  The sampling itself (relaxed masks, Kumaraswamy sticks)
is the objective's (:mod:`trainers.objectives.ibp_vae`).

Codes for the metrics: the posterior mean ``E_q[z] = q(b=1|x)·μ`` (``representation``)
or a sample with a hard Bernoulli mask (``sample_representation``).  Reconstructions
and traversals decode the MAP mask ``1[q > ½]`` times μ.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from trainers.models.conv import TRAVERSAL_VALUES, ConvDecoder, ConvFeatures
from trainers.models.likelihood import BERNOULLI, Likelihood

#: Lower bound of the Kumaraswamy parameters: below it samples pile up at 0 or 1 in float32.
KUMARASWAMY_FLOOR = 1e-2


@dataclass
class IBPPosterior:
    """Per-dimension posterior parameters, each ``[B, K]``."""

    mu: torch.Tensor
    logvar: torch.Tensor
    #: Logit of q(b_k = 1 | x).
    mask_logit: torch.Tensor
    #: Kumaraswamy(a, b) parameters of q(ν_k | x).
    kuma_a: torch.Tensor
    kuma_b: torch.Tensor


class IBPVAE(nn.Module):
    def __init__(
        self, truncation: int, in_channels: int = 1, kernels: str = "code", likelihood: Likelihood = BERNOULLI
    ) -> None:
        super().__init__()
        self.features = ConvFeatures(in_channels, kernels)
        self.head = nn.Linear(256, 5 * truncation)
        self.decoder = ConvDecoder(truncation, in_channels, likelihood)
        self.latent_dim = truncation

    def encode(self, x: torch.Tensor) -> IBPPosterior:
        mu, logvar, logit, a, b = self.head(self.features(x)).float().chunk(5, dim=1)
        return IBPPosterior(mu, logvar, logit, F.softplus(a) + KUMARASWAMY_FLOOR, F.softplus(b) + KUMARASWAMY_FLOOR)

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        return self.decoder(code)

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        """The posterior mean ``E_q[b ⊙ a] = q(b=1|x)·μ``."""
        posterior = self.encode(x)
        return torch.sigmoid(posterior.mask_logit) * posterior.mu

    def sample_representation(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """``b ⊙ a`` with ``b ~ Bernoulli(q)`` and ``a ~ N(μ, σ²)``."""
        posterior = self.encode(x)
        u = torch.rand(posterior.mu.shape, generator=generator, device=x.device)
        eps = torch.randn(posterior.mu.shape, generator=generator, device=x.device)
        mask = (u < torch.sigmoid(posterior.mask_logit)).float()
        return mask * (posterior.mu + torch.exp(0.5 * posterior.logvar) * eps)

    def map_code(self, x: torch.Tensor) -> torch.Tensor:
        """``1[q(b=1|x) > ½] · μ``: the most probable mask on the posterior mean values."""
        posterior = self.encode(x)
        return (posterior.mask_logit > 0).float() * posterior.mu

    def active_dims(self, x: torch.Tensor) -> list[int]:
        """Dimensions whose mask probability averaged over ``x`` is at least ½ (at least the likeliest one)."""
        probability = torch.sigmoid(self.encode(x).mask_logit).mean(0)
        active = torch.nonzero(probability >= 0.5).flatten().tolist()
        return active or [int(probability.argmax())]

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder.image(self.decode(self.map_code(x)))

    def traverse(self, x: torch.Tensor, values: tuple[float, ...] = TRAVERSAL_VALUES) -> torch.Tensor:
        """A row per **active** dimension (:meth:`active_dims` over ``x``): ``x[0]``'s MAP code
        with that dimension switched on and swept over ``values``; inactive ones are not shown."""
        base = self.map_code(x[:1])
        sweep = torch.tensor(values, device=base.device, dtype=base.dtype)
        rows = []
        for dim in self.active_dims(x):
            codes = base.repeat(len(values), 1)
            codes[:, dim] = sweep
            rows.append(codes)
        return self.decoder.image(self.decode(torch.cat(rows)))
