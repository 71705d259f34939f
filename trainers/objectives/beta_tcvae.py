"""β-TCVAE (Chen et al. 2018, "Isolating Sources of Disentanglement in VAEs").

``regulariser: chen`` (the default, the paper's):

    loss = recon + α·I_q(x; z) + β·TC(z) + γ·Σ_d KL(q(z_d) ‖ p(z_d))

with the three terms estimated on the minibatch (``estimator``: ``mss``, minibatch
stratified sampling, the default; or ``mws``, minibatch weighted sampling), the
data-set size N kept in the estimate of log q(z).  Chen et al.'s dSprites setting:
α = γ = 1, β = 6.

``regulariser: disentanglement_lib`` (Locatello et al. 2019's code, ``BetaTCVAE``):

    loss = recon + KL + (β − 1)·TC_dlib

with KL the closed-form Gaussian KL and ``TC_dlib`` the minibatch-weighted estimate
without its log-N constants (:func:`~trainers.objectives.gaussian.total_correlation_dlib`,
reported as ``total_correlation_dlib``).  The constants shift it:
``TC_mws − TC_dlib = (D − 1)·log(N·B)`` for D latents, data-set size N and batch B
(≈ 9 · log(737,280 · 64) ≈ 159 nats for dSprites, d = 10, B = 64), a constant that
leaves the gradient unchanged but makes logged TCs incomparable across the two
forms.  In this form only β is in force (α and γ are not used, nor reported); the
reported ``total_correlation`` is still the ``estimator``'s, for monitoring.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import torch

from trainers.objectives.base import GaussianObjective, Terms, register_objective
from trainers.objectives.gaussian import total_correlation_dlib

REGULARISERS = ("chen", "disentanglement_lib")


@dataclasses.dataclass(frozen=True)
class BetaTCVAEOptions:
    #: ``chen`` (the paper's α·MI + β·TC + γ·dimKL) or ``disentanglement_lib`` (KL + (β−1)·TC_dlib).
    regulariser: str = "chen"

    def __post_init__(self) -> None:
        if self.regulariser not in REGULARISERS:
            raise ValueError(
                f"variant_options.regulariser: must be one of {', '.join(REGULARISERS)}, got {self.regulariser!r}"
            )


@register_objective
class BetaTCVAE(GaussianObjective):
    name = "beta_tcvae"
    Options = BetaTCVAEOptions
    decomposition_in_loss = True
    weight_defaults = MappingProxyType(
        {
            "alpha": {"schedule": "constant", "value": 1.0},
            "beta": {"schedule": "constant", "value": 6.0},
            "gamma": {"schedule": "constant", "value": 1.0},
        }
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dlib = self.options.regulariser == "disentanglement_lib"
        # In disentanglement_lib's form the decomposition is monitoring only.
        self.decomposition_in_loss = not self.dlib

    def term_names(self) -> tuple[str, ...]:
        if not self.dlib:
            return super().term_names()
        latents = self.latent_kl_names()
        return ("recon", "kl", *latents, *self.decomposition_terms, "total_correlation_dlib", "loss", "beta")

    def weights_at(self, step: int) -> dict[str, float]:
        weights = super().weights_at(step)
        return {"beta": weights["beta"]} if self.dlib else weights

    def extra_terms(self, x, mu, logvar, z, terms, weights) -> Terms:
        return {"total_correlation_dlib": total_correlation_dlib(z, mu, logvar)} if self.dlib else {}

    def loss(self, terms: Terms, weights: Mapping[str, float]) -> torch.Tensor:
        if self.dlib:
            return terms["recon"] + terms["kl"] + (weights["beta"] - 1.0) * terms["total_correlation_dlib"]
        return (
            terms["recon"]
            + weights["alpha"] * terms["index_code_mi"]
            + weights["beta"] * terms["total_correlation"]
            + weights["gamma"] * terms["dimwise_kl"]
        )
