"""Ground-truth data sets, registered by name."""

from __future__ import annotations

from collections.abc import Callable

from trainers.data.base import GroundTruthData
from trainers.data.dsprites import ColorDSprites, NoisyDSprites, ProceduralDSprites
from trainers.data.files import DataFileError, load_dsprites_file, load_mpi3d, load_shapes3d

#: Procedural sets take no options; file-backed ones take ``path`` (MPI3D also ``factor_sizes``).
DATASETS: dict[str, Callable[..., GroundTruthData]] = {
    "dsprites": ProceduralDSprites,
    "color_dsprites": ColorDSprites,
    "noisy_dsprites": NoisyDSprites,
    "dsprites_file": load_dsprites_file,
    "shapes3d": load_shapes3d,
    "mpi3d": load_mpi3d,
}


def make_dataset(name: str, **options: object) -> GroundTruthData:
    """Build the data set registered under ``name``."""
    try:
        factory = DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}") from None
    try:
        return factory(**options)
    except TypeError as error:
        raise ValueError(f"dataset_options: {name} does not take these options ({error})") from None


__all__ = [
    "DATASETS",
    "ColorDSprites",
    "DataFileError",
    "GroundTruthData",
    "NoisyDSprites",
    "ProceduralDSprites",
    "make_dataset",
]
