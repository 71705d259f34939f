"""Objectives, one module per family, registered by name on import."""

from trainers.objectives import beta_vae  # noqa: F401  (registers vae, beta_vae, annealed_vae)
from trainers.objectives.base import OBJECTIVES, Objective, Terms, make_objective, register_objective

__all__ = ["OBJECTIVES", "Objective", "Terms", "make_objective", "register_objective"]
