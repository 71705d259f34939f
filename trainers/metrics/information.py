"""Discrete information quantities on integer arrays (nats), as disentanglement_lib uses them."""

from __future__ import annotations

import numpy as np


def discretize(codes: np.ndarray, num_bins: int) -> np.ndarray:
    """Bin each column of ``codes [n, d]`` into ``num_bins`` equal-width bins over its range.

    Matches disentanglement_lib's ``_histogram_discretize``: edges from
    ``np.histogram(column, num_bins)``, then ``np.digitize`` against all but the last
    edge, giving labels 1..num_bins.
    """
    codes = np.asarray(codes, dtype=np.float64)
    out = np.empty(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram_bin_edges(codes[:, j], num_bins)
        out[:, j] = np.digitize(codes[:, j], edges[:-1])
    return out


def mutual_information(a: np.ndarray, b: np.ndarray) -> float:
    """``I(a; b) = Σ p(a,b) log p(a,b) / (p(a) p(b))`` of two label arrays, from counts."""
    _, a = np.unique(np.asarray(a), return_inverse=True)
    _, b = np.unique(np.asarray(b), return_inverse=True)
    n = a.shape[0]
    joint = np.bincount(a * (b.max() + 1) + b, minlength=(a.max() + 1) * (b.max() + 1))
    joint = joint.reshape(a.max() + 1, b.max() + 1).astype(np.float64) / n
    pa, pb = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    nz = joint > 0
    return float(np.sum(joint[nz] * np.log(joint[nz] / (pa @ pb)[nz])))


def entropy(a: np.ndarray) -> float:
    """``H(a) = −Σ p log p`` of a label array."""
    _, counts = np.unique(np.asarray(a), return_counts=True)
    p = counts / counts.sum()
    return float(-np.sum(p * np.log(p)))


def mutual_information_matrix(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """``m[i, k] = I(code_i; factor_k)`` for discrete ``codes [n, d]`` and ``factors [n, K]``."""
    return np.array(
        [[mutual_information(codes[:, i], factors[:, k]) for k in range(factors.shape[1])]
         for i in range(codes.shape[1])]
    )  # fmt: skip
