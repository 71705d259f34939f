"""IBP-VAE (Gyawali et al. 2019, "Improving Disentangled Representation Learning with the
Beta Bernoulli Process", arXiv 1909.01839; the model of Singh, Ling & Doshi-Velez 2017).

A truncated stick-breaking Beta–Bernoulli (Indian buffet) process decides which of
K latent dimensions an image uses (Teh et al. 2007):

    ν_k ~ Beta(α, 1),   π_k = Π_{j≤k} ν_j,   b_k ~ Bernoulli(π_k),   a_k ~ N(0, 1),   z = b ⊙ a,

so later dimensions are ever less likely to be used, and the number in use grows
with what the data need (E Σ_k π_k → α as K → ∞).  Posterior, per image (the
amortised mean-field form): ``q(ν_k|x) = Kumaraswamy(a_k, b_k)`` (Nalisnick & Smyth
2017), ``q(b_k|x) = Bernoulli(q_k)`` sampled as a relaxed Bernoulli (binary
Concrete, Maddison et al. 2017) with temperature λ, ``q(a_k|x) = N(μ_k, σ_k²)``.

    loss = recon + β · (KL_gaussian + KL_kumaraswamy + KL_bernoulli)

    KL_gaussian    = Σ_k ½ (μ² + σ² − 1 − log σ²)
    KL_kumaraswamy = Σ_k KL(Kuma(a, b) ‖ Beta(α, 1))
                   = Σ_k [(a − α)/a · (−γ_E − ψ(b) − 1/b) + log(ab) − log α − (b − 1)/b]
    KL_bernoulli   = Σ_k E_q(ν)[KL(Bern(q_k) ‖ Bern(π_k))],  π_k from one reparameterised ν sample

Terms: ``recon``, ``kl`` (the sum of the three), ``kl_gaussian``, ``kl_kumaraswamy``,
``kl_bernoulli``, ``active_dims`` = E_x Σ_k q_k (expected dimensions in use), ``loss``
and ``beta``.  Options: ``alpha`` (the IBP's α, 5), ``truncation`` (K; 0 means
``model.latent_dim``), ``temperature`` (λ, 0.67).  β (default 1) is a schedule.
These defaults are this implementation's, not values taken from the paper.

Pitfalls avoided:

- Nalisnick & Smyth's KL from a Kumaraswamy to a Beta(α, β) has an infinite series
  with factor (β − 1); the IBP's prior Beta(α, 1) makes it vanish, so the KL above is
  exact (no truncated Taylor sum, as the stick-breaking VAE's Beta(1, α) needs).
- π_k is a product of up to K fractions: it is kept as ``log π = cumsum(log ν)``, and
  ``log(1 − π)`` is ``log(−expm1(log π))``; ν is clamped to [1e-6, 1 − 1e-6] so both stay
  finite.
- The relaxed sample feeds only the decoder; the Bernoulli KL is the analytic KL
  between the unrelaxed Bernoullis, as in the paper (not a KL between Concretes).
- Where the reference code (Singh et al.'s) differs from the paper: it also offers a
  structured posterior with global ν; this is the paper's amortised form.

Evaluation codes: the posterior mean ``q·μ``; traversals show only dimensions whose
mean mask probability on the traversal images is ≥ ½ (trainers.models.ibp).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import nn

from trainers.models.ibp import IBPVAE
from trainers.objectives.base import Objective, Terms, register_objective, weight_terms
from trainers.objectives.gaussian import kl_normal_to_standard, reparameterize
from trainers.precision import autocast

EULER_GAMMA = 0.5772156649015329
#: ν is kept this far from 0 and 1 so that log π and log(1 − π) stay finite.
STICK_EPS = 1e-6


def kl_kumaraswamy_beta(a: torch.Tensor, b: torch.Tensor, alpha: float) -> torch.Tensor:
    """Elementwise ``KL(Kumaraswamy(a, b) ‖ Beta(α, 1))``, exact (Nalisnick & Smyth 2017, with β = 1)."""
    return (
        (a - alpha) / a * (-EULER_GAMMA - torch.digamma(b) - 1.0 / b)
        + torch.log(a * b)
        - math.log(alpha)
        - (b - 1.0) / b
    )


def sample_kumaraswamy(a: torch.Tensor, b: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Reparameterised ``ν = (1 − u^{1/b})^{1/a}``, u ~ Uniform(0, 1), clamped to [ε, 1 − ε]."""
    u = torch.rand(a.shape, generator=generator, device=a.device).clamp(STICK_EPS, 1.0 - STICK_EPS)
    log_nu = torch.log(-torch.expm1(torch.log(u) / b)) / a
    return log_nu.exp().clamp(STICK_EPS, 1.0 - STICK_EPS)


def log_stick_breaking(nu: torch.Tensor) -> torch.Tensor:
    """``log π_k = Σ_{j≤k} log ν_j`` along the last dimension."""
    return torch.cumsum(torch.log(nu), dim=-1)


def kl_bernoulli(logit_q: torch.Tensor, log_pi: torch.Tensor) -> torch.Tensor:
    """Elementwise ``KL(Bern(q) ‖ Bern(π))`` with ``q = sigmoid(logit_q)``, from ``log π`` (< 0)."""
    q = torch.sigmoid(logit_q)
    log_1m_pi = torch.log(-torch.expm1(log_pi))
    return q * (F.logsigmoid(logit_q) - log_pi) + (1.0 - q) * (F.logsigmoid(-logit_q) - log_1m_pi)


def relaxed_bernoulli(logit: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """Binary Concrete sample ``sigmoid((logit + log u − log(1 − u)) / λ)``; P(sample > ½) = sigmoid(logit)."""
    u = torch.rand(logit.shape, generator=generator, device=logit.device).clamp(STICK_EPS, 1.0 - STICK_EPS)
    return torch.sigmoid((logit + torch.log(u) - torch.log1p(-u)) / temperature)


@dataclasses.dataclass(frozen=True)
class IBPOptions:
    #: The IBP's concentration α of the Beta(α, 1) stick fractions.
    alpha: float = 5.0
    #: Truncation level K (latent dimensions available); 0 means ``model.latent_dim``.
    truncation: int = 0
    #: Temperature λ of the relaxed Bernoulli masks.
    temperature: float = 0.67

    def __post_init__(self) -> None:
        for name in ("alpha", "temperature"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"variant_options.{name}: must be a number > 0, got {value!r}")
        if isinstance(self.truncation, bool) or not isinstance(self.truncation, int) or self.truncation < 0:
            raise ValueError(f"variant_options.truncation: must be an integer >= 0, got {self.truncation!r}")
        if self.truncation == 1:
            raise ValueError("variant_options.truncation: needs at least 2 dimensions (MIG needs a gap), got 1")


@register_objective
class IBPVAEObjective(Objective):
    name = "ibp_vae"
    Options = IBPOptions
    weight_defaults = MappingProxyType({"beta": {"schedule": "constant", "value": 1.0}})

    def term_names(self) -> tuple[str, ...]:
        kls = ("kl_gaussian", "kl_kumaraswamy", "kl_bernoulli")
        return ("recon", "kl", *kls, "active_dims", "loss", *self.weight_defaults)

    def build_model(self, latent_dim: int, in_channels: int, kernels: str) -> nn.Module:
        return IBPVAE(self.options.truncation or latent_dim, in_channels, kernels, self.likelihood)

    def forward_terms(
        self, model: nn.Module, x: torch.Tensor, step: int, noise: torch.Generator, precision: str
    ) -> Terms:
        with autocast(x.device, precision):
            posterior = model.encode(x)
        mu, logvar = posterior.mu.float(), posterior.logvar.float()
        logit, a, b = posterior.mask_logit.float(), posterior.kuma_a.float(), posterior.kuma_b.float()
        values = reparameterize(mu, logvar, noise)
        mask = relaxed_bernoulli(logit, self.options.temperature, noise)
        log_pi = log_stick_breaking(sample_kumaraswamy(a, b, noise))
        with autocast(x.device, precision):
            output = model.decode(mask * values)
        terms: Terms = {"recon": self.recon(output, x)}
        kls = {
            "kl_gaussian": kl_normal_to_standard(mu, logvar).sum(1).mean(),
            "kl_kumaraswamy": kl_kumaraswamy_beta(a, b, self.options.alpha).sum(1).mean(),
            "kl_bernoulli": kl_bernoulli(logit, log_pi).sum(1).mean(),
        }
        terms["kl"] = sum(kls.values())
        terms.update(kls)
        terms["active_dims"] = torch.sigmoid(logit).sum(1).mean().detach()
        weights = self.weights_at(step)
        terms["loss"] = self.loss(terms, weights)
        terms.update(weight_terms(weights, x.device))
        return terms

    def loss(self, terms: Terms, weights: Mapping[str, float]) -> torch.Tensor:
        return terms["recon"] + weights["beta"] * terms["kl"]
