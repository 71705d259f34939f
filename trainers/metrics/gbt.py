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
All class trees of a stage and all nodes of a level are grown together. Per feature
and level, the split search either builds per-node bin histograms (one ``bincount``;
trees·width·bins cells) or walks each tree's samples in (node, bin) order, the
feature presorted once per fit (O(trees·n) however many distinct values; the exact
search of a continuous feature); ``split_search="auto"`` takes the cheaper. Both pick
the split of highest Friedman proxy, ties (proxies equal up to the rounding of the
order of summation: ``tie_tolerance``, relative 1e-9) to the lowest threshold, then
the lowest feature. With ``tie_tolerance=0`` (``dci_fast``, whose values predate the
walk) ties go by the computed floats, as they did before.
scikit-learn visits features in a random order and keeps the first of a tie
(``random_state``), so on exactly tied splits it may pick another feature; its
values agree to rounding elsewhere (``tests/test_metrics.py``).
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
class _Column:
    """One feature's bins, presorted once per fit for the sorted walk."""

    bins: np.ndarray  # [n] bin of each sample
    n_bins: int
    order: np.ndarray  # [n] samples by bin (stable)
    sorted_bins: np.ndarray  # [n] bins[order]
    #: Positions in ``order`` whose next sample has another bin: the root's candidate splits.
    root_candidates: np.ndarray

    @classmethod
    def of(cls, bins: np.ndarray, n_bins: int) -> _Column:
        order = np.argsort(bins, kind="stable")
        sorted_bins = bins[order]
        return cls(bins, n_bins, order, sorted_bins, np.flatnonzero(sorted_bins[:-1] != sorted_bins[1:]))


class _Level:
    """One level's routing of samples, and what every feature's sorted walk shares.

    A tree's walk visits its nodes' samples as consecutive runs (node 0's, node 1's,
    …); the walks of all trees lie end to end in one flat array of trees·n positions.
    Where the runs start, how long they are, and so the left count ``n_l`` and
    ``1 / (n_l·n_r)`` at every position, are the same for every feature.
    """

    def __init__(self, node: np.ndarray, residual: np.ndarray, rows: np.ndarray, width: int, tolerance: float) -> None:
        n, trees = node.shape
        self.tolerance = tolerance
        self.width, self.trees, self.n = width, trees, n
        self.rows = rows  # [trees, n]: residual.T, each tree's residuals in a row
        self.slot = np.arange(trees)[None, :] * width + node  # [n, trees]: (tree, node) of each sample
        self.flat_residual = residual.ravel()  # in the order of slot.ravel()
        self._walk_ready = False

    def prepare_walk(self) -> None:
        """Compute the run layout once per level, on the first sorted walk."""
        if self._walk_ready:
            return
        self._walk_ready = True
        trees, width, n = self.trees, self.width, self.n
        if width == 1:
            # At the root a split after position p leaves p + 1 samples on the left.
            left_count = np.arange(1.0, n)
            self.sums = self.rows.sum(axis=1)[:, None]
            self.left_count = left_count
            self.inverse = 1.0 / (left_count * (n - left_count))
            return
        self.node_rows = np.ascontiguousarray(self.slot.T - np.arange(trees)[:, None] * width).astype(
            np.uint8 if width <= 256 else np.uint16
        )
        self.row_offset = (np.arange(trees) * n)[:, None]
        self.counts = np.bincount(self.slot.ravel(), minlength=trees * width)
        self.starts = np.cumsum(self.counts) - self.counts  # flat positions of the runs
        self.filled = self.counts > 0
        node_sums = np.bincount(self.slot.ravel(), weights=self.flat_residual, minlength=trees * width)
        left_count = np.arange(1.0, trees * n + 1) - np.repeat(self.starts, self.counts)
        size = np.repeat(self.counts, self.counts).astype(np.float64)
        self.size = size
        self.left_count_sums = left_count * np.repeat(node_sums, self.counts)  # n_l·S
        with np.errstate(divide="ignore"):
            # Zero at each run's last sample (n_r = 0: no split).
            self.inverse = np.where(size > left_count, 1.0 / (left_count * (size - left_count)), 0.0)


def _proxy(sl: np.ndarray, cl: np.ndarray, sr: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """Friedman's improvement proxy of a split, ``(n_r·s_l − n_l·s_r)² / (n_l·n_r)``.

    scikit-learn's ``FriedmanMSE.proxy_impurity_improvement``: the impurity decrease
    times the node's size, up to a term constant within a node.
    """
    return (cr * sl - cl * sr) ** 2 / (cl * cr)


def _tie_floor(peak: np.ndarray, tolerance: float) -> np.ndarray:
    """The least proxy that ties with ``peak``: ``peak − tolerance·(|peak| + 10⁻³)``.

    Ties go to the lowest threshold and then the lowest feature. A tolerance above the
    rounding of summing the same residuals in another order (relative 1e-13 here)
    makes that choice independent of the order in which a search adds them, so the
    sorted walk and the histograms grow the same trees; 0 compares the computed floats.
    """
    return peak - tolerance * (np.abs(peak) + 1e-3)


def _histogram_split(column: _Column, level: _Level) -> tuple[np.ndarray, np.ndarray]:
    """Best proxy and split bin per (tree, node) from per-node bin histograms: ``[trees, width]`` each.

    Costs trees·width·bins cells: the straightforward search, and the cheaper one for
    features with few distinct values.
    """
    trees, width, n_bins = level.trees, level.width, column.n_bins
    size = trees * width * n_bins
    shape = (trees, width, n_bins)
    keys = (level.slot * n_bins).ravel() + np.repeat(column.bins, trees)
    sl = np.bincount(keys, weights=level.flat_residual, minlength=size).reshape(shape).cumsum(2)
    if width == 1:
        # At the root every tree holds every sample: one count histogram serves all.
        cl = np.broadcast_to(np.bincount(column.bins, minlength=n_bins).cumsum()[None, None, :], shape)
    else:
        cl = np.bincount(keys, minlength=size).reshape(shape).cumsum(2)
    sr, cr = sl[..., -1:] - sl, cl[..., -1:] - cl
    with np.errstate(divide="ignore", invalid="ignore"):
        proxy = np.where((cl > 0) & (cr > 0), _proxy(sl, cl, sr, cr), -1.0)
    # First proxy tied with the maximum: the lowest threshold.
    at = (proxy >= _tie_floor(proxy.max(axis=2), level.tolerance)[..., None]).argmax(axis=2)
    return np.take_along_axis(proxy, at[..., None], axis=2)[..., 0], at


def _sorted_split(column: _Column, level: _Level) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_histogram_split`'s splits in O(trees·n): walk each tree's samples in (node, bin) order.

    Within a node's run, the cumulative sum ``s_l`` and count ``n_l`` of the samples
    walked so far are the left child's; a split is a candidate only at a node's last
    sample of a bin, where they equal the histogram's cumulative sums at that bin, and
    the first maximum in a run is the lowest bin, as the histogram's argmax. The proxy
    is computed as ``(n·s_l − n_l·S)² / (n_l·n_r)`` (node size n, sum S): the same
    value, which ties absorb (:func:`_tie_floor`). A position that is no candidate
    scores 0, a node without candidates 0 at its first bin (the histogram: −1 at bin
    0); neither splits.
    """
    trees, width, n = level.trees, level.width, level.n
    level.prepare_walk()
    distinct = len(column.root_candidates) == n - 1  # every sample its own bin: every position a candidate
    if width == 1:
        candidates = column.root_candidates
        if len(candidates) == 0:
            return np.zeros((trees, 1)), np.zeros((trees, 1), dtype=np.int64)
        left = np.cumsum(level.rows[:, column.order], axis=1)  # every tree walks the same order
        if distinct:
            proxy = n * left[:, :-1] - level.left_count[None, :] * level.sums
            proxy *= proxy
            proxy *= level.inverse[None, :]
        else:
            left_count = candidates + 1.0
            proxy = (n * left[:, candidates] - left_count[None, :] * level.sums) ** 2 / (left_count * (n - left_count))
        at = (proxy >= _tie_floor(proxy.max(axis=1), level.tolerance)[:, None]).argmax(axis=1)
        value = np.take_along_axis(proxy, at[:, None], axis=1)
        return value, column.sorted_bins[candidates[at]][:, None]
    # Stable sort of each tree's nodes in bin order: samples by (node, bin), per tree.
    walk = np.argsort(level.node_rows[:, column.order], axis=1, kind="stable")
    proxy = np.cumsum(np.take(level.rows, column.order[walk] + level.row_offset), axis=1).ravel()
    counts, starts, filled = level.counts, level.starts, level.filled
    # Sums before each run, read off the same running sums, make them the run's own.
    before = np.zeros(trees * width)
    inside = filled & (starts % n > 0)
    before[inside] = proxy[starts[inside] - 1]
    proxy -= np.repeat(before, counts)  # s_l
    proxy *= level.size
    proxy -= level.left_count_sums
    proxy *= proxy
    proxy *= level.inverse
    walk = walk.ravel()
    if not distinct:
        # Only a node's last sample of a bin is a candidate: the walk's next bin differs.
        walked_bins = column.sorted_bins[walk]
        proxy[:-1] *= walked_bins[:-1] != walked_bins[1:]
    # First maximum of each node's run (within ties): its maximum, then the first position reaching it.
    run_starts = starts[filled]
    peak = np.maximum.reduceat(proxy, run_starts)
    reached = np.flatnonzero(proxy >= np.repeat(_tie_floor(peak, level.tolerance), counts[filled]))
    run_of = np.searchsorted(run_starts, reached, side="right") - 1
    first = reached[np.r_[True, run_of[1:] != run_of[:-1]]]
    value = np.full(trees * width, -1.0)
    at = np.zeros(trees * width, dtype=np.int64)
    value[filled] = proxy[first]
    at[filled] = column.sorted_bins[walk[first]]
    return value.reshape(trees, width), at.reshape(trees, width)


@dataclass
class GradientBoostedTrees:
    n_estimators: int = 100
    learning_rate: float = 0.1
    max_depth: int = 3
    #: Quantile bins per feature; None: every midpoint between distinct values (exact).
    max_bins: int | None = None
    #: How splits are searched: ``sorted`` walks presorted samples (O(trees·n) per feature and
    #: level), ``histogram`` builds per-node bin histograms (O(trees·width·bins)), ``auto`` picks
    #: the cheaper per feature and level. All three find the same splits.
    split_search: str = "auto"
    #: Relative difference under which two split proxies tie (:func:`_tie_floor`); 0: exact
    #: comparison of the floats, whose rounding then depends on the search.
    tie_tolerance: float = 1e-9
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
        columns = [_Column.of(bins[:, f], len(self.edges[f]) + 1) for f in range(d)]
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
            splits, node, tree_importance = self._grow(bins, columns, residual)
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
        self, bins: np.ndarray, columns: list[_Column], residual: np.ndarray
    ) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray, np.ndarray]:
        """Grow one depth-limited tree per column of ``residual``, level by level, all at once."""
        n, trees = residual.shape
        d = len(columns)
        node = np.zeros((n, trees), dtype=np.int64)
        features = np.full((trees, 2**self.max_depth), -1)
        thresholds = np.zeros((trees, 2**self.max_depth), dtype=np.int64)
        importance = np.zeros((trees, d))
        # The sorted walk reads each tree's residuals as one row: [trees, n].
        rows = np.ascontiguousarray(residual.T)
        for depth in range(self.max_depth):
            width = 2**depth
            level = _Level(node, residual, rows, width, self.tie_tolerance)
            best_proxy = np.full((trees, width), -np.inf)
            feature = np.zeros((trees, width), dtype=np.int64)
            split_bin = np.zeros((trees, width), dtype=np.int64)
            for f, column in enumerate(columns):
                if self._walks(column, width):
                    value, at = _sorted_split(column, level)
                else:
                    value, at = _histogram_split(column, level)
                # Strictly better only (beyond a tie): ties keep the lower feature.
                better = _tie_floor(value, self.tie_tolerance) > best_proxy
                best_proxy = np.where(better, value, best_proxy)
                feature = np.where(better, f, feature)
                split_bin = np.where(better, at, split_bin)
            # Node and child impurities from sums over samples (no per-bin squares needed).
            slot = level.slot
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
            # A node that does not split keeps threshold 0, whichever search found nothing.
            thresholds[:, level_ids] = np.where(splits, split_bin, 0)
            # Route samples: right child when the sample's bin is above its node's split bin.
            node = 2 * node + (splits[tree_of, node] & goes_right)
        return (features, thresholds), node, importance

    def _walks(self, column: _Column, width: int) -> bool:
        """Whether ``column``'s split search at a level of ``width`` nodes walks sorted samples.

        A histogram costs a few passes over the samples and about ten over its
        trees·width·bins cells, the walk about fifteen over the samples: measured on
        10,000 samples and 40 trees, histograms win while their cells per tree are
        under about 0.8·n (few distinct values, e.g. a discrete code, or the root).
        """
        if self.split_search != "auto":
            return self.split_search == "sorted"
        return 5 * width * column.n_bins > 4 * len(column.order)

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
