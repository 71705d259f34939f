"""Gradient-boosted decision trees in numpy, for DCI's importance matrix.

Mirrors scikit-learn's ``GradientBoostingClassifier()`` defaults, which
disentanglement_lib uses: log-loss (one regression tree per class per stage for
K > 2 classes, one for two), ``n_estimators = 100``, ``learning_rate = 0.1``,
``max_depth = 3``, trees fitted to the negative gradient with Friedman's MSE split
criterion, leaves set by one Newton step (scaled by (K−1)/K for K > 2), the
initial score the log class prior; ``feature_importances_`` is the MSE impurity
decrease of every split, summed per tree (weighted by node size), averaged over the
trees and normalised to sum to 1.

Splits are searched over per-feature bins: every midpoint between sorted distinct
values (scikit-learn's exact splits) with ``max_bins=None``, or ``max_bins`` quantile
bins, which is exact too when a feature has at most ``max_bins`` distinct values.
All class trees of a stage and all nodes of a level are grown together with one
``bincount`` per feature and level.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _bin_edges(column: np.ndarray, max_bins: int | None) -> np.ndarray:
    """Split thresholds of a feature: midpoints between distinct values, or quantiles."""
    values = np.unique(column)
    if max_bins is None or len(values) <= max_bins:
        return (values[:-1] + values[1:]) / 2.0
    quantiles = np.quantile(column, np.linspace(0, 1, max_bins + 1)[1:-1])
    return np.unique(quantiles)


@dataclass
class GradientBoostedTrees:
    n_estimators: int = 100
    learning_rate: float = 0.1
    max_depth: int = 3
    #: Quantile bins per feature; None: every midpoint between distinct values (exact).
    max_bins: int | None = None
    classes: np.ndarray = field(default_factory=lambda: np.empty(0))
    feature_importances: np.ndarray = field(default_factory=lambda: np.empty(0))

    def fit(self, x: np.ndarray, y: np.ndarray) -> GradientBoostedTrees:
        x = np.asarray(x, dtype=np.float64)
        self.classes, labels = np.unique(np.asarray(y), return_inverse=True)
        n, d = x.shape
        k = len(self.classes)
        trees = 1 if k == 2 else k
        self.edges = [_bin_edges(x[:, f], self.max_bins) for f in range(d)]
        bins = np.stack([np.searchsorted(self.edges[f], x[:, f], side="left") for f in range(d)], 1)
        n_bins = max(len(e) for e in self.edges) + 1
        onehot = np.eye(k)[labels]
        prior = np.clip(onehot.mean(0), 1e-12, None)
        if k == 2:
            self.init = np.array([np.log(prior[1] / prior[0])])
            targets = onehot[:, 1:]
        else:
            self.init = np.log(prior)
            targets = onehot
        raw = np.tile(self.init, (n, 1))
        #: Per stage: split features and bins per tree node, and leaf values: ``[trees, 2**depth]`` each.
        self.stages: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        importances = np.zeros(d)
        for _ in range(self.n_estimators):
            prob = self._probabilities(raw)
            residual = targets - prob
            hessian = np.abs(residual) * (1.0 - np.abs(residual)) if k > 2 else prob * (1.0 - prob)
            splits, node, tree_importance = self._grow(bins, residual, n_bins, d)
            leaves = 2**self.max_depth
            keys = (np.arange(trees)[None, :] * leaves + node).ravel()
            num = np.bincount(keys, weights=residual.ravel(), minlength=trees * leaves)
            den = np.bincount(keys, weights=hessian.ravel(), minlength=trees * leaves)
            scale = (k - 1.0) / k if k > 2 else 1.0
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                values = np.where(np.abs(den) < 1e-150, 0.0, scale * num / den).reshape(trees, leaves)
            self.stages.append((splits[0], splits[1], values))
            raw += self.learning_rate * np.take_along_axis(values.T, node, axis=0)
            # Averaging over trees and normalising (scikit-learn) leaves only the sum to keep.
            importances += tree_importance.sum(axis=0) / n
        total = importances.sum()
        self.feature_importances = importances / total if total > 0 else importances
        return self

    def _probabilities(self, raw: np.ndarray) -> np.ndarray:
        if raw.shape[1] == 1:
            return 1.0 / (1.0 + np.exp(-raw))
        shifted = np.exp(raw - raw.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    def _grow(
        self, bins: np.ndarray, residual: np.ndarray, n_bins: int, d: int
    ) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray, np.ndarray]:
        """Grow one depth-limited tree per column of ``residual``, level by level, all at once."""
        n, trees = residual.shape
        node = np.zeros((n, trees), dtype=np.int64)
        features = np.full((trees, 2**self.max_depth), -1)
        thresholds = np.zeros((trees, 2**self.max_depth), dtype=np.int64)
        importance = np.zeros((trees, d))
        flat_residual = residual.ravel()
        for depth in range(self.max_depth):
            width = 2**depth
            slot = np.arange(trees)[None, :] * width + node  # [n, trees]: (tree, node) of each sample
            slot_base = (slot * n_bins).ravel()
            size = trees * width * n_bins
            shape = (trees, width, n_bins)
            # One feature at a time keeps the temporaries at trees·width·n_bins, not ·d: with
            # exact splits n_bins is the number of distinct values (up to n).
            best_proxy = np.full((trees, width), -np.inf)
            feature = np.zeros((trees, width), dtype=np.int64)
            split_bin = np.zeros((trees, width), dtype=np.int64)
            for f in range(d):
                keys = slot_base + np.repeat(bins[:, f], trees)
                sl = np.bincount(keys, weights=flat_residual, minlength=size).reshape(trees, width, n_bins).cumsum(2)
                if depth == 0:
                    # At the root every tree holds every sample: one count histogram serves all.
                    cl = np.broadcast_to(np.bincount(bins[:, f], minlength=n_bins).cumsum()[None, None, :], shape)
                else:
                    cl = np.bincount(keys, minlength=size).reshape(trees, width, n_bins).cumsum(2)
                sr, cr = sl[..., -1:] - sl, cl[..., -1:] - cl
                with np.errstate(divide="ignore", invalid="ignore"):
                    proxy = np.where((cl > 0) & (cr > 0), (cr * sl - cl * sr) ** 2 / (cl * cr), -1.0)
                at = proxy.argmax(axis=2)
                value = np.take_along_axis(proxy, at[..., None], axis=2)[..., 0]
                # Strictly better only: ties keep the lower feature, as one argmax over all would.
                better = value > best_proxy
                best_proxy = np.where(better, value, best_proxy)
                feature = np.where(better, f, feature)
                split_bin = np.where(better, at, split_bin)
            # Node and child impurities from sums over samples (no per-bin squares needed).
            tree_of = np.broadcast_to(np.arange(trees)[None, :], node.shape)
            goes_right = np.take_along_axis(bins, feature[tree_of, node], axis=1) > split_bin[tree_of, node]
            side_slot = (slot * 2 + goes_right).ravel()
            sums = np.bincount(side_slot, weights=residual.ravel(), minlength=trees * width * 2).reshape(
                trees, width, 2
            )
            squares = np.bincount(side_slot, weights=(residual**2).ravel(), minlength=trees * width * 2).reshape(
                trees, width, 2
            )
            counts = np.bincount(side_slot, minlength=trees * width * 2).reshape(trees, width, 2).astype(np.float64)
            count = counts.sum(2)
            with np.errstate(divide="ignore", invalid="ignore"):
                impurity = np.where(count > 0, squares.sum(2) / count - (sums.sum(2) / count) ** 2, 0.0)
                child = np.where(counts > 0, squares / counts - (sums / counts) ** 2, 0.0)
            splits = (best_proxy > 1e-12) & (impurity > 1e-12)
            # MSE impurity decrease, weighted by node sizes (scikit-learn's importances).
            decrease = np.where(splits, count * impurity - (counts * child).sum(2), 0.0)
            np.add.at(importance, (np.repeat(np.arange(trees), width), feature.ravel()), decrease.ravel())
            # Heap layout: the nodes of this level are ids width-1 .. 2·width-2.
            level_ids = np.arange(width) + (width - 1)
            features[:, level_ids] = np.where(splits, feature, -1)
            thresholds[:, level_ids] = split_bin
            # Route samples: right child when the sample's bin is above its node's split bin.
            node = 2 * node + (splits[tree_of, node] & goes_right)
        return (features, thresholds), node, importance

    def _stage_values(
        self, bins: np.ndarray, features: np.ndarray, thresholds: np.ndarray, values: np.ndarray
    ) -> np.ndarray:
        """Each row's leaf value in every tree of one stage: ``[n, trees]``."""
        trees = values.shape[0]
        node = np.zeros((len(bins), trees), dtype=np.int64)
        for depth in range(self.max_depth):
            ids = node + 2**depth - 1
            f = features[np.arange(trees)[None, :], ids]
            b = thresholds[np.arange(trees)[None, :], ids]
            go_right = (f >= 0) & (np.take_along_axis(bins, np.maximum(f, 0), axis=1) > b)
            node = 2 * node + go_right
        return np.take_along_axis(values.T, node, axis=0)

    def decision(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        bins = np.stack([np.searchsorted(self.edges[f], x[:, f], side="left") for f in range(x.shape[1])], 1)
        raw = np.tile(self.init, (len(x), 1))
        for features, thresholds, values in self.stages:
            raw += self.learning_rate * self._stage_values(bins, features, thresholds, values)
        return raw

    def predict(self, x: np.ndarray) -> np.ndarray:
        raw = self.decision(x)
        if raw.shape[1] == 1:
            return self.classes[(raw[:, 0] > 0).astype(int)]
        return self.classes[raw.argmax(axis=1)]

    def accuracy(self, x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean(self.predict(x) == np.asarray(y)))
