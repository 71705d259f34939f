"""The objective interface and registry.

An objective (one per VAE variant) owns what differs between variants: the model
it trains, its optimisers, the forward pass, and the mapping of named scalar terms
plus the total ``loss`` it returns.  The names are data: they flow unchanged to the
training log, MLflow, the results parquet and the plots.

Loss scale, for every variant: reconstruction is the decoder likelihood's negative
log-likelihood summed over pixels (nats per image, :mod:`trainers.models.likelihood`)
and KL is summed over latent dimensions, each then averaged over the batch, so that
published β, γ and C values carry over (Higgins et al. 2017; Burgess et al. 2018).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import torch
from torch import nn

from trainers.models import BERNOULLI, GaussianVAE, Likelihood
from trainers.models.init import init_weights
from trainers.objectives.gaussian import ESTIMATORS, kl_decomposition, kl_normal_to_standard, reparameterize
from trainers.precision import autocast
from trainers.schedules import Schedule

Terms = dict[str, torch.Tensor]


def weight_terms(weights: Mapping[str, float], device: torch.device) -> Terms:
    """The weights in force as terms, on the device of the other terms (they are stacked together)."""
    return {name: torch.tensor(float(value), device=device) for name, value in weights.items()}


def adam(parameters: Any, lr: float, betas: tuple[float, float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    """Adam as in disentanglement_lib: betas (0.9, 0.999), eps 1e-8."""
    return torch.optim.Adam(parameters, lr=lr, betas=betas, eps=1e-8)


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """A variant without options of its own."""


class Objective(ABC):
    """Base of every variant; subclasses register themselves by name.

    ``weight_defaults`` declares the schedules a variant takes (e.g. ``beta``) with
    their default configs; the value in force at each step is reported as a term
    of the same name, so the schedule can be plotted next to its effect.
    ``Options`` is the dataclass of the variant's structural options (latent
    groups, discrete latent sizes, ...), validated in ``__post_init__``.
    ``likelihood`` is the decoder likelihood (``model.decoder``) its models are built
    with and its ``recon`` is measured by.
    """

    name: ClassVar[str]
    weight_defaults: ClassVar[Mapping[str, Mapping[str, object]]] = {}
    Options: ClassVar[type] = NoOptions
    #: Estimator of log q(z) used when the config says ``auto``.
    preferred_estimator: ClassVar[str] = "mss"
    #: Whether K members can train stacked in one step (trainers.pack): one model
    #: class, one optimiser, and terms that are a pure function of one forward pass.
    packable: ClassVar[bool] = False
    #: Latent dimensions of the network this objective trains, when it was made for one
    #: (``make_objective(latent_dim=...)``, as both training loops do); Gaussian variants
    #: then also report each latent's KL.
    latent_dim: int | None = None

    def __init__(
        self,
        weights: Mapping[str, Schedule],
        dataset_size: int,
        estimator: str = "auto",
        options: Any = None,
        likelihood: Likelihood = BERNOULLI,
    ) -> None:
        self.weights = dict(weights)
        self.likelihood = likelihood
        self.dataset_size = dataset_size
        self.estimator = self.preferred_estimator if estimator == "auto" else estimator
        self.options = options if options is not None else self.Options()

    def check_latent_dim(self, latent_dim: int) -> None:  # noqa: B027 - optional hook
        """Raise ``ValueError`` naming the option if ``latent_dim`` does not fit the options."""

    @abstractmethod
    def term_names(self) -> tuple[str, ...]:
        """Every term this objective reports, in report order."""

    def weights_at(self, step: int) -> dict[str, float]:
        return {name: schedule(step) for name, schedule in self.weights.items()}

    def build_model(self, latent_dim: int, in_channels: int, kernels: str) -> nn.Module:
        """The variant's network (its layers; :meth:`new_model` initialises them)."""
        return GaussianVAE(latent_dim, in_channels, kernels, self.likelihood)

    def new_model(self, latent_dim: int, in_channels: int, kernels: str) -> nn.Module:
        """A freshly initialised network: :meth:`build_model`'s layers, He-initialised
        (:func:`trainers.models.init.init_weights`; torch's default starts dSprites collapsed)."""
        return init_weights(self.build_model(latent_dim, in_channels, kernels))

    def recon(self, output: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``−log p(x|z)`` in nats per image, averaged over the batch."""
        return self.likelihood.recon(output, x)

    def make_optimizers(self, model: nn.Module, lr: float) -> dict[str, torch.optim.Optimizer]:
        return {"model": adam(model.parameters(), lr)}

    @abstractmethod
    def forward_terms(
        self, model: nn.Module, x: torch.Tensor, step: int, noise: torch.Generator, precision: str
    ) -> Terms:
        """Terms of one batch (differentiable where the loss needs it)."""

    def train_step(
        self,
        model: nn.Module,
        optimizers: Mapping[str, torch.optim.Optimizer],
        next_batch: Callable[[], torch.Tensor],
        step: int,
        noise: torch.Generator,
        precision: str,
    ) -> Terms:
        """One optimisation step; returns the step's terms."""
        terms = self.forward_terms(model, next_batch(), step, noise, precision)
        for optimizer in optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        for optimizer in optimizers.values():
            optimizer.step()
        return terms


class GaussianObjective(Objective):
    """Variants of one diagonal-Gaussian latent layer with a single sample per image.

    The terms are ``recon``, the closed-form ``kl``, its decomposition (Chen et al.
    2018) into ``index_code_mi``, ``total_correlation`` and ``dimwise_kl``, any
    :meth:`extra_terms`, ``loss``, and the weights in force.
    """

    #: Whether the decomposition enters the loss (and so needs gradients).
    decomposition_in_loss: ClassVar[bool] = False
    decomposition_terms: ClassVar[tuple[str, ...]] = ("index_code_mi", "total_correlation", "dimwise_kl")
    extra_term_names: ClassVar[tuple[str, ...]] = ()
    packable = True

    def term_names(self) -> tuple[str, ...]:
        return (
            "recon",
            "kl",
            *self.latent_kl_names(),
            *self.decomposition_terms,
            *self.extra_term_names,
            "loss",
            *self.weight_defaults,
        )

    def latent_kl_names(self) -> tuple[str, ...]:
        """``kl_z0, kl_z1, ...``: each latent's KL(q(z_i|x) ‖ N(0, 1)), batch-averaged, when
        :attr:`latent_dim` is known (the emergence curves of Burgess et al. 2018, Fig. 3)."""
        return tuple(f"kl_z{i}" for i in range(self.latent_dim or 0))

    def forward_terms(
        self, model: nn.Module, x: torch.Tensor, step: int, noise: torch.Generator, precision: str
    ) -> Terms:
        return self(x, *self.encode_decode(model, x, noise, precision), step)

    @staticmethod
    def encode_sample(
        model: nn.Module, x: torch.Tensor, noise: torch.Generator, precision: str
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(μ, log σ², z)`` with z ~ q(z|x) reparameterised; latents in float32."""
        with autocast(x.device, precision):
            posterior = model.encode(x)
        mu, logvar = posterior.mu.float(), posterior.logvar.float()
        return mu, logvar, reparameterize(mu, logvar, noise)

    @classmethod
    def encode_decode(
        cls, model: nn.Module, x: torch.Tensor, noise: torch.Generator, precision: str
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(μ, log σ², z, logits)`` of one reparameterised pass; latents in float32."""
        mu, logvar, z = cls.encode_sample(model, x, noise, precision)
        with autocast(x.device, precision):
            logits = model.decode(z)
        return mu, logvar, z, logits

    def elbo_terms(
        self, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, z: torch.Tensor, logits: torch.Tensor
    ) -> Terms:
        """``recon``, the closed-form ``kl`` (and per latent, :meth:`latent_kl_names`) and the
        decomposition terms."""
        per_latent = kl_normal_to_standard(mu, logvar)
        terms: Terms = {"recon": self.recon(logits, x), "kl": per_latent.sum(1).mean()}
        if self.latent_dim:
            terms.update(zip(self.latent_kl_names(), per_latent.detach().mean(0).unbind(), strict=True))
        with torch.set_grad_enabled(self.decomposition_in_loss and torch.is_grad_enabled()):
            terms.update(self.decompose(z, mu, logvar))
        return terms

    def finish(self, terms: Terms, weights: Mapping[str, float]) -> Terms:
        """Add ``loss`` and the weights in force."""
        terms["loss"] = self.loss(terms, weights)
        terms.update(weight_terms(weights, terms["loss"].device))
        return terms

    def __call__(
        self,
        x: torch.Tensor,
        mu: torch.Tensor,
        logvar: torch.Tensor,
        z: torch.Tensor,
        logits: torch.Tensor,
        step: int,
    ) -> Terms:
        """Terms from one forward pass's tensors (the pure part of the objective)."""
        weights = self.weights_at(step)
        terms = self.pass_terms(x, mu, logvar, z, logits, weights)
        terms.update(weight_terms(weights, terms["loss"].device))
        return terms

    def pass_terms(
        self,
        x: torch.Tensor,
        mu: torch.Tensor,
        logvar: torch.Tensor,
        z: torch.Tensor,
        logits: torch.Tensor,
        weights: Mapping[str, float | torch.Tensor],
    ) -> Terms:
        """The terms and ``loss`` of one pass under ``weights`` (floats, or 0-d tensors
        when a pack maps this over its members with ``torch.func.vmap``)."""
        mu, logvar, z = mu.float(), logvar.float(), z.float()
        terms = self.elbo_terms(x, mu, logvar, z, logits)
        terms.update(self.extra_terms(x, mu, logvar, z, terms, weights))
        terms["loss"] = self.loss(terms, weights)
        return terms

    def decompose(self, z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> Terms:
        return kl_decomposition(z, mu, logvar, self.dataset_size, self.estimator)

    def extra_terms(
        self,
        x: torch.Tensor,
        mu: torch.Tensor,
        logvar: torch.Tensor,
        z: torch.Tensor,
        terms: Terms,
        weights: Mapping[str, float],
    ) -> Terms:
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


def make_options(variant: str, options: Mapping[str, Any] | None) -> Any:
    """Validate a variant's options mapping into its ``Options`` dataclass."""
    cls = OBJECTIVES[variant].Options
    options = dict(options or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        accepted = ", ".join(sorted(known)) or "none"
        raise ValueError(f"variant_options.{unknown[0]}: variant {variant!r} has no such option (it has: {accepted})")
    try:
        return cls(**options)
    except TypeError as error:
        raise ValueError(f"variant_options: {error}") from None


def variant_term_names(variant: str, options: Mapping[str, Any] | None = None) -> tuple[str, ...]:
    """The terms ``variant`` reports with ``options`` (they do not depend on the weights)."""
    return make_objective(variant, {}, dataset_size=2, options=options).term_names()


def make_objective(
    variant: str,
    weights: Mapping[str, object],
    dataset_size: int,
    estimator: str = "auto",
    options: Mapping[str, Any] | None = None,
    latent_dim: int | None = None,
    likelihood: Likelihood = BERNOULLI,
) -> Objective:
    """Build the registered objective ``variant`` with validated schedules and options,
    its models decoding with ``likelihood``.

    ``weights`` maps a weight name to a schedule config; missing weights take the
    variant's defaults.  Errors name the offending field (``weights.beta.end``).
    """
    if variant not in OBJECTIVES:
        raise ValueError(f"variant: unknown variant {variant!r}; known: {', '.join(sorted(OBJECTIVES))}")
    if estimator != "auto" and estimator not in ESTIMATORS:
        raise ValueError(f"estimator: must be auto or one of {ESTIMATORS}, got {estimator!r}")
    cls = OBJECTIVES[variant]
    unknown = sorted(set(weights) - set(cls.weight_defaults))
    if unknown:
        accepted = ", ".join(cls.weight_defaults) or "none"
        raise ValueError(f"weights.{unknown[0]}: variant {variant!r} takes no such weight (it takes: {accepted})")
    schedules = {
        name: Schedule.from_config(weights.get(name, default), f"weights.{name}")
        for name, default in cls.weight_defaults.items()
    }
    objective = cls(schedules, dataset_size, estimator, make_options(variant, options), likelihood)
    if latent_dim is not None:
        objective.check_latent_dim(latent_dim)
        objective.latent_dim = latent_dim
    return objective
