"""The ground-truth data interface shared by training and metrics.

A ground-truth data set is a finite grid of discrete factors of variation and a
deterministic map from a factor combination to an observation (the interface of
disentanglement_lib's ``GroundTruthData``). Training draws observations; metrics
draw factors, render the observations for them and compare codes to factors.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
import torch


class GroundTruthData(ABC):
    """Factors ``f ∈ Π_k {0..n_k−1}`` and observations ``x = g(f)``."""

    #: Name of each factor, in column order of every factor tensor.
    factor_names: tuple[str, ...]
    #: Number of values of each factor.
    factor_sizes: tuple[int, ...]
    #: Shape of one observation, channels first.
    observation_shape: tuple[int, int, int]
    #: Whether ``observations`` is a function of the factors alone (it ignores the
    #: generator), so that several streams' factors may be rendered in one call.
    deterministic_observations: bool = False

    @property
    def num_factors(self) -> int:
        return len(self.factor_sizes)

    @property
    def size(self) -> int:
        """Number of distinct factor combinations (N in the TC estimators)."""
        return int(np.prod(self.factor_sizes, dtype=np.int64))

    def sample_factors(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` factor index rows drawn uniformly from the grid, int64 ``[n, K]``."""
        sizes = torch.tensor(self.factor_sizes, dtype=torch.float64)
        u = torch.rand(n, self.num_factors, generator=generator, dtype=torch.float64)
        return (u * sizes).floor().to(torch.int64)

    @abstractmethod
    def observations(
        self,
        factors: torch.Tensor,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Observations for factor index rows, float32 in [0, 1], ``[n, *observation_shape]``.

        ``generator`` drives nuisance randomness that is not a factor (colour-dSprites'
        colour, noisy-dSprites' background); data sets without any ignore it.
        """

    def sample(
        self, n: int, generator: torch.Generator, device: torch.device | str = "cpu"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Factors and their observations for ``n`` uniform draws."""
        factors = self.sample_factors(n, generator)
        return factors, self.observations(factors, device, generator)

    def factors_to_index(self, factors: torch.Tensor) -> torch.Tensor:
        """Row-major flat index of each factor row (last factor varies fastest)."""
        factors = torch.as_tensor(factors, dtype=torch.int64)
        self._check_factors(factors)
        index = torch.zeros(factors.shape[0], dtype=torch.int64)
        for k, n_k in enumerate(self.factor_sizes):
            index = index * n_k + factors[:, k].cpu()
        return index

    def index_to_factors(self, index: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`factors_to_index`."""
        index = torch.as_tensor(index, dtype=torch.int64).clone()
        if index.numel() and (index.min() < 0 or index.max() >= self.size):
            raise ValueError(f"index out of range [0, {self.size})")
        out = torch.empty(index.shape[0], self.num_factors, dtype=torch.int64)
        for k in reversed(range(self.num_factors)):
            n_k = self.factor_sizes[k]
            out[:, k] = index % n_k
            index = index // n_k
        return out

    def _check_factors(self, factors: torch.Tensor) -> None:
        if factors.ndim != 2 or factors.shape[1] != self.num_factors:
            raise ValueError(f"factors must have shape [n, {self.num_factors}], got {tuple(factors.shape)}")
        sizes = torch.tensor(self.factor_sizes, device=factors.device)
        if factors.numel() and ((factors < 0).any() or (factors >= sizes).any()):
            raise ValueError(f"factor indices out of range for sizes {self.factor_sizes}")
