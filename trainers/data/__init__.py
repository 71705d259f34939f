"""Ground-truth data sets, registered by name."""

from __future__ import annotations

from collections.abc import Callable

from trainers.data.base import GroundTruthData
from trainers.data.dsprites import ProceduralDSprites

DATASETS: dict[str, Callable[..., GroundTruthData]] = {
    "dsprites": ProceduralDSprites,
}


def make_dataset(name: str, **options: object) -> GroundTruthData:
    """Build the data set registered under ``name``."""
    try:
        factory = DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}") from None
    return factory(**options)


__all__ = ["DATASETS", "GroundTruthData", "ProceduralDSprites", "make_dataset"]
