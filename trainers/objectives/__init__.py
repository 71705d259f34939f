"""Objectives, one module per family, registered by name on import."""

from trainers.objectives import beta_vae  # noqa: F401  (registers vae, beta_vae, annealed_vae)
from trainers.objectives.base import (
    OBJECTIVES,
    GaussianObjective,
    Objective,
    Terms,
    make_objective,
    make_options,
    register_objective,
    variant_term_names,
)

__all__ = [
    "OBJECTIVES",
    "GaussianObjective",
    "Objective",
    "Terms",
    "make_objective",
    "make_options",
    "register_objective",
    "variant_term_names",
]
