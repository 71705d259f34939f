"""The objective interface and registry.

An objective turns one forward pass into a mapping of named scalar terms plus the
total ``loss``.  The names are data: they flow unchanged to the training log,
MLflow, the results parquet and the plots.

Loss scale, for every variant: reconstruction is summed over pixels and KL over
latent dimensions, each then averaged over the batch, so that β, γ and C mean what
they mean in the papers (Higgins et al. 2017; Burgess et al. 2018).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import ClassVar

import torch
import torch.nn.functional as F

from trainers.objectives.gaussian import kl_decomposition, kl_normal_to_standard
from trainers.schedules import Schedule

Terms = dict[str, torch.Tensor]


def bernoulli_recon(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``−log p(x|z)`` of a Bernoulli decoder, summed over pixels, averaged over the batch."""
    nll = F.binary_cross_entropy_with_logits(logits.float(), x, reduction="none")
    return nll.flatten(1).sum(1).mean()


class Objective(ABC):
    """Base of every objective; subclasses register themselves by name.

    ``weight_defaults`` declares the schedules a variant takes (e.g. ``beta``) with
    their default configs; the value in force at each step is reported as a term
    of the same name so the schedule can be plotted next to its effect.
    """

    name: ClassVar[str]
    weight_defaults: ClassVar[Mapping[str, Mapping[str, object]]] = {}
    #: Whether the MI/TC/dimwise-KL decomposition enters the loss (needs gradients).
    decomposition_in_loss: ClassVar[bool] = False
    #: Names of the terms :meth:`extra_terms` adds.
    extra_term_names: ClassVar[tuple[str, ...]] = ()
    ELBO_TERMS: ClassVar[tuple[str, ...]] = ("recon", "kl", "index_code_mi", "total_correlation", "dimwise_kl")

    @classmethod
    def term_names(cls) -> tuple[str, ...]:
        """Every term this objective reports, in report order."""
        return (*cls.ELBO_TERMS, *cls.extra_term_names, "loss", *cls.weight_defaults)

    def __init__(
        self,
        weights: Mapping[str, Schedule],
        dataset_size: int,
        estimator: str = "mss",
    ) -> None:
        self.weights = dict(weights)
        self.dataset_size = dataset_size
        self.estimator = estimator

    def weights_at(self, step: int) -> dict[str, float]:
        return {name: schedule(step) for name, schedule in self.weights.items()}

    def __call__(
        self,
        x: torch.Tensor,
        mu: torch.Tensor,
        logvar: torch.Tensor,
        z: torch.Tensor,
        logits: torch.Tensor,
        step: int,
    ) -> Terms:
        mu, logvar, z = mu.float(), logvar.float(), z.float()
        terms: Terms = {
            "recon": bernoulli_recon(logits, x),
            "kl": kl_normal_to_standard(mu, logvar).sum(1).mean(),
        }
        with torch.set_grad_enabled(self.decomposition_in_loss and torch.is_grad_enabled()):
            terms.update(kl_decomposition(z, mu, logvar, self.dataset_size, self.estimator))
        weights = self.weights_at(step)
        terms.update(self.extra_terms(terms, weights))
        terms["loss"] = self.loss(terms, weights)
        for name, value in weights.items():
            terms[name] = torch.tensor(value)
        return terms

    def extra_terms(self, terms: Terms, weights: Mapping[str, float]) -> Terms:
        """Terms beyond the ELBO's that the loss uses (none by default)."""
        return {}

    @abstractmethod
    def loss(self, terms: Terms, weights: Mapping[str, float]) -> torch.Tensor:
        """The scalar minimised, from the terms and the weights in force."""


OBJECTIVES: dict[str, type[Objective]] = {}


def register_objective(cls: type[Objective]) -> type[Objective]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if cls.name in OBJECTIVES:
        raise ValueError(f"objective {cls.name!r} registered twice")
    OBJECTIVES[cls.name] = cls
    return cls


def make_objective(
    variant: str,
    weights: Mapping[str, object],
    dataset_size: int,
    estimator: str = "mss",
) -> Objective:
    """Build the registered objective ``variant`` with validated schedules.

    ``weights`` maps a weight name to a schedule config; missing weights take the
    variant's defaults.  Errors name the offending field (``weights.beta.end``).
    """
    if variant not in OBJECTIVES:
        raise ValueError(f"variant: unknown variant {variant!r}; known: {', '.join(sorted(OBJECTIVES))}")
    cls = OBJECTIVES[variant]
    unknown = sorted(set(weights) - set(cls.weight_defaults))
    if unknown:
        accepted = ", ".join(cls.weight_defaults) or "none"
        raise ValueError(f"weights.{unknown[0]}: variant {variant!r} takes no such weight (it takes: {accepted})")
    schedules = {
        name: Schedule.from_config(weights.get(name, default), f"weights.{name}")
        for name, default in cls.weight_defaults.items()
    }
    return cls(schedules, dataset_size, estimator)
