"""Decoder likelihoods p(x | z): what a decoder's output parameterises (spec key ``model.decoder``).

Every variant reports ``recon = −log p(x | z)`` in **nats per image** (summed over
pixels and channels, averaged over the batch), whatever the likelihood, so terms stay
comparable across decoders.

``bernoulli`` (the default; Locatello et al. 2019, disentanglement_lib's
``bernoulli_loss``): the output is a logit ℓ per pixel and

    −log p(x | z) = Σ_pixels [softplus(ℓ) − x·ℓ]        (binary cross-entropy)

For binary images (dSprites) this is the exact negative log-likelihood.  For
grey-level or colour images (3dshapes, MPI3D, colour dSprites) it is the cross-entropy
disentanglement_lib uses, which is not a normalised density over [0, 1] (the
continuous Bernoulli's log C(λ) is missing, Loaiza-Ganem & Cunningham 2019).

``gaussian``: the output is the pre-sigmoid mean, ``m = sigmoid(output)`` ∈ [0, 1], and

    −log N(x; m, σ²) = Σ_pixels [½ log 2π + log σ + (x − m)² / (2σ²)]

with σ fixed (``model.decoder_sigma``, default 0.1) or learned
(``model.decoder_sigma_learned: true``: one log σ parameter per decoder, started at
``log decoder_sigma``, trained with the rest; the "σ-VAE" of Rybkin et al. 2021,
"Simple and Effective VAE Training with Calibrated Decoders").  The squashed mean
keeps reconstructions and traversals in the data's range.

Pitfalls: the constant ½ log 2π + log σ is kept, so a Gaussian ``recon`` is a true
NLL in nats and can be negative (a density, not a probability); with σ = 1 on images
in [0, 1] the reconstruction weighs almost nothing against the KL (posterior
collapse), hence the default 0.1; a learned σ shrinks towards the reconstruction's
RMSE (its optimum), which on binary images can be small.

The learned log σ travels with the decoder's output (appended as extra channels,
broadcast over pixels), so ``nll`` is a pure function of (output, x) and a pack
(trainers.pack) maps it over members unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

LIKELIHOODS = ("bernoulli", "gaussian")
LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class Likelihood:
    """A decoder likelihood; pure functions of the decoder's output."""

    name: str = "bernoulli"
    #: The Gaussian's σ (its start value when learned).
    sigma: float = 0.1
    #: Whether the Gaussian's log σ is a parameter of the decoder.
    learned: bool = False

    def __post_init__(self) -> None:
        if self.name not in LIKELIHOODS:
            raise ValueError(f"decoder: must be one of {', '.join(LIKELIHOODS)}, got {self.name!r}")
        number = isinstance(self.sigma, (int, float)) and not isinstance(self.sigma, bool)
        if not (number and math.isfinite(self.sigma) and self.sigma > 0):
            raise ValueError(f"decoder_sigma: must be a finite number > 0, got {self.sigma!r}")
        if not isinstance(self.learned, bool):
            raise ValueError(f"decoder_sigma_learned: must be true or false, got {self.learned!r}")
        if self.learned and self.name != "gaussian":
            raise ValueError("decoder_sigma_learned: only a gaussian decoder has a σ to learn")

    @property
    def learns_scale(self) -> bool:
        return self.name == "gaussian" and self.learned

    def output(self, net_output: torch.Tensor, log_sigma: torch.Tensor | None) -> torch.Tensor:
        """The decoder's output: the network's, plus the learned log σ as extra channels."""
        if not self.learns_scale:
            return net_output
        assert log_sigma is not None
        return torch.cat([net_output, log_sigma.to(net_output.dtype).expand_as(net_output)], 1)

    def _split(self, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | float]:
        output = output.float()
        if self.learns_scale:
            location, log_sigma = output.chunk(2, dim=1)
            return location, log_sigma
        return output, math.log(self.sigma)

    def nll(self, output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``−log p(x | z)`` per image ``[B]``, in nats (see the module docstring)."""
        location, log_sigma = self._split(output)
        if self.name == "bernoulli":
            per_pixel = F.binary_cross_entropy_with_logits(location, x, reduction="none")
        else:
            inv_var = torch.exp(-2.0 * log_sigma) if isinstance(log_sigma, torch.Tensor) else math.exp(-2 * log_sigma)
            per_pixel = 0.5 * LOG_2PI + log_sigma + 0.5 * (x - torch.sigmoid(location)) ** 2 * inv_var
        return per_pixel.flatten(1).sum(1)

    def recon(self, output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``recon``: the NLL per image averaged over the batch."""
        return self.nll(output, x).mean()

    def mean(self, output: torch.Tensor) -> torch.Tensor:
        """The image the output predicts: E[x | z] (Bernoulli) or the Gaussian's mean, in [0, 1]."""
        return torch.sigmoid(self._split(output)[0])


BERNOULLI = Likelihood()


def make_likelihood(decoder: str = "bernoulli", sigma: float = 0.1, learned: bool = False) -> Likelihood:
    """The likelihood of ``model.decoder`` with its σ options."""
    return Likelihood(decoder, sigma, learned)
