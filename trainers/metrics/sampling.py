"""Drawing (code, factor) pairs from a ground-truth data set through a representation."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from trainers.data.base import GroundTruthData

Representation = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def encode(
    representation: Representation,
    data: GroundTruthData,
    factors: torch.Tensor,
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> np.ndarray:
    """Codes ``[n, d]`` (float64) of the observations of ``factors``."""
    codes = []
    for start in range(0, len(factors), batch_size):
        x = data.observations(factors[start : start + batch_size], device, generator)
        codes.append(representation(x).double().cpu())
    return torch.cat(codes).numpy()


def codes_and_factors(
    representation: Representation,
    data: GroundTruthData,
    num_points: int,
    generator: torch.Generator,
    batch_size: int = 1024,
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """``num_points`` uniform factor draws and their codes: ``(codes [n, d], factors [n, K])``."""
    factors = data.sample_factors(num_points, generator)
    return encode(representation, data, factors, batch_size, device, generator), factors.numpy()


def seeded_codes(
    representation: Representation,
    data: GroundTruthData,
    seed: int,
    num_points: int,
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`codes_and_factors` from a fresh generator seeded with ``seed``."""
    return codes_and_factors(representation, data, num_points, torch.Generator().manual_seed(seed), device=device)


def train_test_codes(
    representation: Representation,
    data: GroundTruthData,
    seed: int,
    num_train: int,
    num_test: int,
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(codes_train, factors_train, codes_test, factors_test)``, drawn in that order from one seeded stream."""
    generator = torch.Generator().manual_seed(seed)
    train = codes_and_factors(representation, data, num_train, generator, device=device)
    test = codes_and_factors(representation, data, num_test, generator, device=device)
    return (*train, *test)


CodeFunction = Callable[[np.ndarray], np.ndarray]


class FactorRows(GroundTruthData):
    """A data set whose observations are its factor index rows (float64 ``[n, K]``), for array-level metrics."""

    observation_shape = (1, 1, 1)

    def __init__(self, factor_sizes: tuple[int, ...]) -> None:
        self.factor_sizes = tuple(int(s) for s in factor_sizes)
        self.factor_names = tuple(f"factor_{k}" for k in range(len(self.factor_sizes)))

    def observations(
        self, factors: torch.Tensor, device: torch.device | str = "cpu", generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return torch.as_tensor(factors, dtype=torch.float64)


def numpy_representation(code: CodeFunction) -> Representation:
    """A representation of :class:`FactorRows` from ``code``: factor rows ``[n, K]`` (int) → codes ``[n, d]``."""
    return lambda rows: torch.as_tensor(np.asarray(code(rows.long().numpy()), dtype=np.float64))
