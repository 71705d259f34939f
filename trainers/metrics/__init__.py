"""Disentanglement metrics, registered by name.

Each entry takes ``(representation, data, seed, **options)`` and returns named
values; the pure cores (e.g. :func:`mig_from_codes`) take arrays.
"""

from __future__ import annotations

from collections.abc import Callable

from trainers.metrics.mig import compute_mig, mig_from_codes

METRICS: dict[str, Callable[..., dict[str, float]]] = {
    "mig": compute_mig,
}

__all__ = ["METRICS", "compute_mig", "mig_from_codes"]
