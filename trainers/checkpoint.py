"""Checkpoints: atomic writes, ``weights_only`` loads, errors that name the file, and the one
rule of which checkpoint a run may resume from (:func:`check_fit`, for both loops)."""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from trainers.config import ModelOptions, TrainConfig

FORMAT = "vae-study-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, or not one of ours."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``path`` atomically (a reader never sees half a file)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, **state}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError) as error:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(error).__name__}: {error})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a vae-study checkpoint (expected format {FORMAT!r})")
    return state


#: What a run trains: a checkpoint fits a run when these agree, so the resumed run continues
#: the same training.  How it runs (device, compile, threads, log and checkpoint cadence) and
#: how it is evaluated (``eval``) may differ.
FIT_FIELDS = (
    "variant",
    "variant_options",
    "dataset",
    "dataset_options",
    "latent_dim",
    "kernels",
    "decoder",
    "decoder_sigma",
    "decoder_sigma_learned",
    "estimator",
    "weights",
    "seed",
    "steps",
    "batch_size",
    "lr",
    "precision",
)

#: Fit fields that checkpoints written before the field existed lack: they were trained with its default.
FIELD_DEFAULTS = {name: getattr(ModelOptions, name) for name in ("decoder", "decoder_sigma", "decoder_sigma_learned")}


def check_fit(saved: Mapping[str, Any], config: TrainConfig, what: str = "checkpoint") -> None:
    """Raise :class:`CheckpointError` naming the first :data:`FIT_FIELDS` field in which the
    config a checkpoint was written for (``saved``, as ``TrainConfig.to_dict``) differs from
    ``config``; ``what`` names the checkpoint in the message (``checkpoint member 1``)."""
    current = config.to_dict()
    for name in FIT_FIELDS:
        if name not in saved and name not in FIELD_DEFAULTS:
            raise CheckpointError(f"{what} does not record {name}; this run has {current[name]!r}")
        old = saved.get(name, FIELD_DEFAULTS.get(name))
        if old != current[name]:
            raise CheckpointError(f"{what} was written for {name}={old!r}, this run has {current[name]!r}")
