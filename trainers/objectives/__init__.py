"""Objectives, one module per family, registered by name on import."""

from trainers.objectives import (  # noqa: F401  (each module registers its variants)
    beta_tcvae,
    beta_vae,
    dip_vae,
    factor_vae,
    hfvae,
    hierarchical_vae,
    ibp_vae,
    iwae,
    joint_vae,
    ladder_vae,
)
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
