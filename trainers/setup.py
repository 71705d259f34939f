"""What a run is made of before its first step: its device, its random streams, its
objective and its freshly initialised network (the same for both loops)."""

from __future__ import annotations

import numpy as np
import torch

from trainers.config import TrainConfig
from trainers.data import GroundTruthData
from trainers.objectives import Objective, make_objective


def resolve_device(name: str) -> torch.device:
    """``auto``: CUDA when available, else the CPU; any other name as torch reads it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def stream_seeds(seed: int) -> dict[str, int]:
    """Independent seeds for parameter init, the data stream and the sampling noise.

    A run's streams depend on its seed only, so member k of a pack sees the same
    initial weights, batches and noise as the plain run of its config."""
    init, data, noise = np.random.SeedSequence(seed).generate_state(3)
    return {"init": int(init), "data": int(data), "noise": int(noise)}


def make_run_objective(config: TrainConfig, data: GroundTruthData) -> Objective:
    """The objective of ``config`` on ``data`` (schedules, options and ``latent_dim`` checked)."""
    return make_objective(
        config.variant,
        config.weights,
        data.size,
        config.estimator,
        config.variant_options,
        config.latent_dim,
        likelihood=config.likelihood(),
    )


def build(config: TrainConfig, data: GroundTruthData) -> tuple[Objective, torch.nn.Module]:
    """The objective and the freshly initialised network of ``config`` on ``data``
    (:meth:`~trainers.objectives.base.Objective.new_model`: He-initialised), drawn from
    torch's current RNG (the loops seed it from :func:`stream_seeds` first)."""
    objective = make_run_objective(config, data)
    return objective, objective.new_model(config.latent_dim, data.observation_shape[0], config.kernels)
