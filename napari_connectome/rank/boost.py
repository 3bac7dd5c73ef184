"""The ranker's gradient-boosted trees grown by compiled loops: scikit-learn's trees, several times faster.

The ranker refits after every answer: four fits of scikit-learn's
``HistGradientBoostingClassifier`` (three Platt calibration folds and the final
model), ~40 ms each on the ~2,600 rows of the prior set and the answers. On
data this small most of a fit is Python around each node (a ``TreeNode``
object, a heap entry, a histogram array, a ``SplitInfo``: ~0.35 ms a tree with
150 rows, ~0.65 ms with 2,100), and that made the refit 60 % of an ``active``
decision.

:class:`BoostedTrees` grows the same trees in one numba call per tree. It keeps
every rule that decides what scikit-learn grows, so the trees and the scores
are the same bits (``tests/engine/test_rank_boost.py`` holds that against
scikit-learn on random data with ties, missing values, constant and
single-valued columns):

* the bins are scikit-learn's own (its ``_BinMapper`` thresholds and
  ``_map_to_bins``), the baseline and every iteration's float32 gradients and
  hessians its loss's (``HalfBinomialLoss``): those are not re-implemented;
* histograms sum float32 gradients in float64 in sample order; the smaller
  child's is built from its samples, the larger one's is the parent's minus
  it; a node's sums are the pairwise sum NumPy makes over the 256 bins of
  the first feature;
* splits are scanned left to right (missing values right) and, where the
  feature has missing values, right to left (missing values left), with
  scikit-learn's gain, value, ``min_samples_leaf``, minimum hessian (1e-3) and
  strict-improvement rules; the first feature with the largest gain wins;
* nodes are split best-first from a heap with ``heapq``'s exact sift rules
  (equal gains are popped in the order ``heapq`` pops them), up to
  ``max_leaf_nodes`` leaves; samples are partitioned stably;
* leaf values are shrunk by the learning rate after the tree is grown, and
  each training sample's raw score gets its leaf's value.

Only what the ranker fits is compiled: binary labels, numeric features, no
sample weights, no early stopping, a leaf budget. Anything else is
scikit-learn's, as is every fit when scikit-learn's internals are not where
this module looks for them (:func:`available`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from napari_connectome.arrays import distinct
from napari_connectome.rank.forest import CompiledForest

#: scikit-learn's bin count: 255 bins for values and the last one for missing values.
N_BINS = 256
MISSING_BIN = N_BINS - 1
#: scikit-learn's ``min_hessian_to_split`` default.
MIN_HESSIAN = 1e-3
#: Rows above which scikit-learn bins from a random subsample (``_BinMapper.subsample``).
BIN_SUBSAMPLE = 200_000


def available() -> bool:
    """Whether the scikit-learn internals this module reuses are importable."""
    try:
        from sklearn._loss.loss import HalfBinomialLoss  # noqa: F401
        from sklearn.ensemble._hist_gradient_boosting._binning import _map_to_bins  # noqa: F401
        from sklearn.ensemble._hist_gradient_boosting.binning import (  # noqa: F401
            _BinMapper,
            _find_binning_thresholds,
        )
    except ImportError:
        return False
    return True


# --------------------------------------------------------------------------- compiled parts
@njit(cache=True, nogil=True)
def _block_sum(a, lo, n):
    """``a[lo:lo + n].sum()`` for ``n`` ≤ 128 as NumPy adds float64: 8 accumulators, then the rest."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[lo + i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    whole = n - n % 8
    while i < whole:
        r0 += a[lo + i]
        r1 += a[lo + i + 1]
        r2 += a[lo + i + 2]
        r3 += a[lo + i + 3]
        r4 += a[lo + i + 4]
        r5 += a[lo + i + 5]
        r6 += a[lo + i + 6]
        r7 += a[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@njit(cache=True, nogil=True)
def _bins_sum(a):
    """``a.sum()`` of one feature's 256 bins as NumPy makes it: its pairwise sum halves above 128.

    Written out for 256 rather than recursively: numba's cached recursive functions crash when loaded.
    """
    return _block_sum(a, 0, N_BINS // 2) + _block_sum(a, N_BINS // 2, N_BINS // 2)


@njit(cache=True, nogil=True)
def _sift_down(heap, start, pos, gain):
    # heapq._siftdown with ``a < b`` meaning gain[a] > gain[b] (scikit-learn's TreeNode.__lt__).
    item = heap[pos]
    while pos > start:
        parent_pos = (pos - 1) >> 1
        parent = heap[parent_pos]
        if gain[item] > gain[parent]:
            heap[pos] = parent
            pos = parent_pos
            continue
        break
    heap[pos] = item


@njit(cache=True, nogil=True)
def _heap_pop(heap, size, gain):
    """heapq.heappop of a heap of ``size`` items: the item and the new size."""
    last = heap[size - 1]
    size -= 1
    if size == 0:
        return last, size
    top = heap[0]
    heap[0] = last
    # heapq._siftup
    pos = 0
    item = heap[0]
    child = 1
    while child < size:
        right = child + 1
        if right < size and not gain[heap[child]] > gain[heap[right]]:
            child = right
        heap[pos] = heap[child]
        pos = child
        child = 2 * pos + 1
    heap[pos] = item
    _sift_down(heap, 0, pos, gain)
    return top, size


@njit(cache=True, nogil=True)
def _histogram(xb, grad, hess, part, start, stop, hist, slot, n_bins_non_missing, ordered):
    """The node's histograms from its samples ``part[start:stop]``, in that order.

    ``hist[slot, f, b]`` holds (sum of gradients, sum of hessians, count) of bin ``b`` of feature
    ``f``; only the bins a feature can have (its value bins and the missing-value bin) are written.
    """
    rows = part[start:stop]
    n = rows.size
    for k in range(n):
        ordered[k, 0] = grad[rows[k]]
        ordered[k, 1] = hess[rows[k]]
    for f in range(xb.shape[0]):
        h = hist[slot, f]
        for b in range(n_bins_non_missing[f]):
            h[b, 0] = 0.0
            h[b, 1] = 0.0
            h[b, 2] = 0.0
        h[MISSING_BIN, 0] = 0.0
        h[MISSING_BIN, 1] = 0.0
        h[MISSING_BIN, 2] = 0.0
        col = xb[f]
        for k in range(n):
            b = col[rows[k]]
            h[b, 0] += ordered[k, 0]
            h[b, 1] += ordered[k, 1]
            h[b, 2] += 1.0


@njit(cache=True, nogil=True)
def _subtract(hist, out, parent, small, n_bins_non_missing):
    for f in range(hist.shape[1]):
        for b in range(n_bins_non_missing[f]):
            for k in range(3):
                hist[out, f, b, k] = hist[parent, f, b, k] - hist[small, f, b, k]
        for k in range(3):
            hist[out, f, MISSING_BIN, k] = hist[parent, f, MISSING_BIN, k] - hist[small, f, MISSING_BIN, k]


@njit(cache=True, nogil=True)
def _node_value(sum_g, sum_h, l2):
    return -sum_g / (sum_h + l2 + 1e-15)


@njit(cache=True, nogil=True)
def _scan(hist, slot, f, first, stop, step, offset, near_is_left, n_samples, sum_g, sum_h, loss_node,
          min_samples_leaf, l2, best):
    """One of scikit-learn's two split scans of feature ``f``: bins ``first, first + step, … (≠ stop)``,
    each reading bin ``b + offset`` into the *near* side (left when ``near_is_left``); the far side is
    the node minus it. Returns ``(gain, bin, sum of gradients left, sum of hessians left)`` of the first
    bin whose gain beats ``best`` and every earlier one (``best`` itself and -1 where none does)."""
    gain_f, bin_f, sgl_f, shl_f = best, 0, 0.0, 0.0
    sg_near = 0.0
    sh_near = 0.0
    n_near = 0.0
    for b in range(first, stop, step):
        n_near += hist[slot, f, b + offset, 2]
        sh_near += hist[slot, f, b + offset, 1]
        sg_near += hist[slot, f, b + offset, 0]
        n_far = n_samples - n_near
        sh_far = sum_h - sh_near
        sg_far = sum_g - sg_near
        if n_near < min_samples_leaf:
            continue
        if n_far < min_samples_leaf:
            break
        if sh_near < MIN_HESSIAN:
            continue
        if sh_far < MIN_HESSIAN:
            break
        if near_is_left:
            sgl, shl, sgr, shr = sg_near, sh_near, sg_far, sh_far
        else:
            sgl, shl, sgr, shr = sg_far, sh_far, sg_near, sh_near
        # scikit-learn's order of operations: the node's loss, minus the left child's, minus the right's
        gain = loss_node
        gain -= sgl * _node_value(sgl, shl, l2)
        gain -= sgr * _node_value(sgr, shr, l2)
        if gain > gain_f and gain > 0.0:
            gain_f, bin_f, sgl_f, shl_f = gain, b, sgl, shl
    return gain_f, bin_f, sgl_f, shl_f


@njit(cache=True, nogil=True)
def _find_split(hist, slot, n_bins_non_missing, has_missing, n_samples, sum_g, sum_h, value,
                min_samples_leaf, l2, split_f, split_g):
    """The node's best split into ``split_f`` (feature, bin, missing values left) and ``split_g``
    (gain, sum of gradients left, sum of hessians left); gain -1 where there is none."""
    loss_node = sum_g * value
    best_gain = -1.0
    best_f = 0
    best_bin = 0
    best_missing_left = 0
    best_sgl = 0.0
    best_shl = 0.0
    for f in range(hist.shape[1]):
        # left to right, missing values (if any) to the right
        gain_f, bin_f, sgl_f, shl_f = _scan(hist, slot, f, 0, n_bins_non_missing[f] - 1 + has_missing[f], 1, 0,
                                            True, n_samples, sum_g, sum_h, loss_node, min_samples_leaf, l2, -1.0)
        missing_left_f = 0
        if has_missing[f]:
            # right to left, missing values to the left; only a strictly better gain replaces the first scan's
            gain_r, bin_r, sgl_r, shl_r = _scan(hist, slot, f, n_bins_non_missing[f] - 2, -1, -1, 1, False,
                                                n_samples, sum_g, sum_h, loss_node, min_samples_leaf, l2, gain_f)
            if gain_r > gain_f:
                gain_f, bin_f, missing_left_f, sgl_f, shl_f = gain_r, bin_r, 1, sgl_r, shl_r
        if f == 0 or gain_f > best_gain:
            best_gain, best_f, best_bin, best_missing_left = gain_f, f, bin_f, missing_left_f
            best_sgl, best_shl = sgl_f, shl_f
    split_f[0], split_f[1], split_f[2] = best_f, best_bin, best_missing_left
    split_g[0], split_g[1], split_g[2] = best_gain, best_sgl, best_shl


@njit(cache=True, nogil=True)
def _grow(xb, grad, hess, n_bins_non_missing, has_missing, min_samples_leaf, max_leaf_nodes, l2, shrinkage,
          part, buffer, hist, ordered, raw, feature, threshold_bin, missing_left, left, right, leaf, value):
    """Grow one tree into the node arrays (node 0 the root, children in creation order); add its leaves
    to ``raw``. Returns the number of nodes."""
    n = xb.shape[1]
    max_nodes = feature.size
    start = np.empty(max_nodes, np.int64)
    stop = np.empty(max_nodes, np.int64)
    sum_g = np.empty(max_nodes, np.float64)
    sum_h = np.empty(max_nodes, np.float64)
    gain = np.full(max_nodes, -1.0)
    split_f = np.zeros((max_nodes, 3), np.int64)
    split_g = np.zeros((max_nodes, 3), np.float64)
    heap = np.empty(max_nodes, np.int64)
    for i in range(n):
        part[i] = i
    for k in range(max_nodes):
        leaf[k] = False
        left[k] = -1
        right[k] = -1
        feature[k] = 0
        threshold_bin[k] = 0
        missing_left[k] = False
        value[k] = 0.0
    start[0], stop[0] = 0, n
    # the first feature's unused bins are zeros in NumPy's sum of all 256
    hist[0, 0] = 0.0
    _histogram(xb, grad, hess, part, 0, n, hist, 0, n_bins_non_missing, ordered)
    sum_g[0] = _bins_sum(hist[0, 0, :, 0])
    sum_h[0] = _bins_sum(hist[0, 0, :, 1])
    n_nodes = 1
    n_leaves = 0
    size = 0
    if n < 2 * min_samples_leaf or sum_h[0] < MIN_HESSIAN:
        leaf[0] = True
        n_leaves = 1
    else:
        _find_split(hist, 0, n_bins_non_missing, has_missing, n, sum_g[0], sum_h[0], 0.0,
                    min_samples_leaf, l2, split_f[0], split_g[0])
        gain[0] = split_g[0, 0]
        if gain[0] <= 0.0:
            leaf[0] = True
            n_leaves = 1
        else:
            heap[0] = 0
            size = 1
    while size > 0:
        node, size = _heap_pop(heap, size, gain)
        f, b, goes_missing = split_f[node, 0], split_f[node, 1], split_f[node, 2]
        # stable partition of the node's samples: left ones first
        col = xb[f]
        n_left = 0
        n_right = 0
        for k in range(start[node], stop[node]):
            i = part[k]
            v = col[i]
            if (goes_missing == 1 and v == MISSING_BIN) or v <= b:
                part[start[node] + n_left] = i
                n_left += 1
            else:
                buffer[n_right] = i
                n_right += 1
        for k in range(n_right):
            part[start[node] + n_left + k] = buffer[k]
        a, c = n_nodes, n_nodes + 1
        n_nodes += 2
        left[node], right[node] = a, c
        feature[node], threshold_bin[node] = f, b
        missing_left[node] = goes_missing == 1 if has_missing[f] else n_left > n_right
        start[a], stop[a] = start[node], start[node] + n_left
        start[c], stop[c] = start[node] + n_left, stop[node]
        sum_g[a], sum_h[a] = split_g[node, 1], split_g[node, 2]
        sum_g[c], sum_h[c] = sum_g[node] - split_g[node, 1], sum_h[node] - split_g[node, 2]
        value[a] = _node_value(sum_g[a], sum_h[a], l2)
        value[c] = _node_value(sum_g[c], sum_h[c], l2)
        if n_leaves + size + 2 == max_leaf_nodes:
            leaf[a] = True
            leaf[c] = True
            for k in range(size):
                leaf[heap[k]] = True
            n_leaves += size + 2
            size = 0
            break
        leaf_a = n_left < 2 * min_samples_leaf
        leaf_c = n_right < 2 * min_samples_leaf
        if not (leaf_a and leaf_c):
            small, large = (a, c) if n_left < n_right else (c, a)
            _histogram(xb, grad, hess, part, start[small], stop[small], hist, small, n_bins_non_missing, ordered)
            _subtract(hist, large, node, small, n_bins_non_missing)
        for child, is_leaf in ((a, leaf_a), (c, leaf_c)):
            if is_leaf:
                leaf[child] = True
                n_leaves += 1
                continue
            _find_split(hist, child, n_bins_non_missing, has_missing, stop[child] - start[child],
                        sum_g[child], sum_h[child], value[child], min_samples_leaf, l2, split_f[child],
                        split_g[child])
            gain[child] = split_g[child, 0]
            if gain[child] <= 0.0:
                leaf[child] = True
                n_leaves += 1
            else:
                heap[size] = child
                size += 1
                _sift_down(heap, 0, size - 1, gain)
    for k in range(n_nodes):
        if leaf[k]:
            value[k] *= shrinkage
            for j in range(start[k], stop[k]):
                raw[part[j]] += value[k]
    return n_nodes


def _midpoints(values: np.ndarray) -> np.ndarray:
    """scikit-learn's bin thresholds of a column with 2 to 255 distinct values (``values``, ascending).

    What ``_find_binning_thresholds`` returns there: the midpoints of neighbouring values, duplicates
    (neighbours one float apart) dropped, clipped below +inf. Its own path costs ~0.2 ms a column (two
    sorts and a hash-table ``np.unique`` each), and a correction fitted after every answer bins 26
    columns: 6 of its 10 ms.
    """
    from sklearn.ensemble._hist_gradient_boosting.common import ALMOST_INF

    mid = (values[:-1] + values[1:]) / 2.0
    mid = mid[np.r_[True, mid[1:] != mid[:-1]]]
    np.clip(mid, a_min=None, a_max=ALMOST_INF, out=mid)
    return mid


# --------------------------------------------------------------------------- the classifier
class BoostedTrees:
    """A binary ``HistGradientBoostingClassifier`` with these options, grown by :func:`_grow`.

    Parameters
    ----------
    max_iter, learning_rate, max_leaf_nodes, min_samples_leaf, l2_regularization, random_state
        As scikit-learn's (``early_stopping=False``, everything else its default).
    """

    def __init__(self, *, max_iter: int = 100, learning_rate: float = 0.1, max_leaf_nodes: int = 31,
                 min_samples_leaf: int = 20, l2_regularization: float = 0.0, random_state: int | None = None) -> None:
        if max_leaf_nodes is None or int(max_leaf_nodes) < 2:
            raise ValueError(f"max_leaf_nodes must be at least 2, got {max_leaf_nodes}")
        self.max_iter = int(max_iter)
        self.learning_rate = float(learning_rate)
        self.max_leaf_nodes = int(max_leaf_nodes)
        self.min_samples_leaf = int(min_samples_leaf)
        self.l2_regularization = float(l2_regularization)
        self.random_state = random_state

    def fresh(self) -> BoostedTrees:
        """An unfitted copy with the same options (what ``sklearn.base.clone`` gives)."""
        return BoostedTrees(max_iter=self.max_iter, learning_rate=self.learning_rate,
                            max_leaf_nodes=self.max_leaf_nodes, min_samples_leaf=self.min_samples_leaf,
                            l2_regularization=self.l2_regularization, random_state=self.random_state)

    def fit(self, x, y, *, offset=None) -> BoostedTrees:
        """Grow the trees on rows ``x`` and binary labels ``y``.

        ``offset``: each row's starting log-odds (another model's scores) instead of the fitted
        baseline; the trees then learn a correction to it, the baseline is 0, and ``y`` may hold
        one class only (a boolean, True the positive class).
        """
        from sklearn._loss.loss import HalfBinomialLoss

        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y).reshape(-1)
        if x.ndim != 2 or x.shape[0] != y.size or x.shape[0] == 0:
            raise ValueError(f"expected rows × features and one label per row, got {x.shape} and {y.shape}")
        self._loss = HalfBinomialLoss()
        n, n_features = x.shape
        if offset is None:
            classes, encoded = np.unique(y, return_inverse=True)
            if classes.size != 2:
                raise ValueError(f"binary labels expected, got {classes.size} classes")
            self.classes_ = classes
            y_train = encoded.astype(np.float64)
            self._baseline = self._loss.fit_intercept_only(y_true=y_train).reshape(-1)
            raw = np.zeros(n, dtype=np.float64) + self._baseline[0]
        else:
            raw = np.array(offset, dtype=np.float64).reshape(-1)
            if raw.size != n or not np.isfinite(raw).all():
                raise ValueError(f"offset must hold one finite score per row ({n}), got {raw.size}")
            self.classes_ = np.array([False, True])
            y_train = y.astype(bool).astype(np.float64)
            self._baseline = np.zeros(1)
        binned, self._thresholds = self._bin(x, constant_ok=offset is not None)
        n_bins_non_missing = np.array([t.size + 1 for t in self._thresholds], dtype=np.int64)
        has_missing = (binned == MISSING_BIN).any(axis=0).astype(np.int64)
        xb = np.ascontiguousarray(binned.T)
        grad = np.empty(n, dtype=np.float32)
        hess = np.empty(n, dtype=np.float32)
        max_nodes = 2 * self.max_leaf_nodes - 1
        shape = (self.max_iter, max_nodes)
        feature, bins = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
        missing_left, leaf = np.zeros(shape, np.bool_), np.zeros(shape, np.bool_)
        left, right, value = np.zeros(shape, np.int64), np.zeros(shape, np.int64), np.zeros(shape, np.float64)
        hist = np.empty((max_nodes, n_features, N_BINS, 3), np.float64)
        ordered = np.empty((n, 2), np.float64)
        part, buffer = np.empty(n, np.int64), np.empty(n, np.int64)
        for t in range(self.max_iter):
            self._loss.gradient_hessian(y_true=y_train, raw_prediction=raw, gradient_out=grad, hessian_out=hess,
                                        n_threads=1)
            _grow(xb, grad, hess, n_bins_non_missing, has_missing, self.min_samples_leaf, self.max_leaf_nodes,
                  self.l2_regularization, self.learning_rate, part, buffer, hist, ordered, raw, feature[t], bins[t],
                  missing_left[t], left[t], right[t], leaf[t], value[t])
        self._trees = (feature, bins, missing_left, left, right, leaf, value, n_bins_non_missing)
        self._forest = self.compiled(np.arange(n_features))
        return self

    def _bin(self, x: np.ndarray, *, constant_ok: bool = False) -> tuple[np.ndarray, list[np.ndarray]]:
        """scikit-learn's bins of ``x`` (uint8, Fortran order) and each feature's thresholds.

        ``constant_ok``: a column with fewer than two distinct values gets no threshold (it is never
        split on) where scikit-learn's binner refuses it. A correction fitted on a handful of answers
        has such columns; the prior's fit is given only columns that vary.
        """
        from sklearn.ensemble._hist_gradient_boosting._binning import _map_to_bins
        from sklearn.ensemble._hist_gradient_boosting.binning import (
            _BinMapper,
            _find_binning_thresholds,
        )
        from sklearn.utils import check_random_state

        if x.shape[0] > BIN_SUBSAMPLE:
            # Thresholds from a random subsample: the draw scikit-learn makes (the fit's first seed).
            seed = check_random_state(self.random_state).randint(np.iinfo(np.uint32).max, dtype="u8")
            mapper = _BinMapper(n_bins=N_BINS, random_state=seed, n_threads=1)
            binned = mapper.fit_transform(x)
            return binned, [np.asarray(t, dtype=np.float64) for t in mapper.bin_thresholds_]
        # What _BinMapper.fit does below its subsample size, without its per-feature job dispatch
        # (a few ms a fit: most of the binning's cost on the ranker's rows).
        thresholds = []
        for f in range(x.shape[1]):
            values = distinct(x[:, f][~np.isnan(x[:, f])])
            if constant_ok and values.size < 2:
                thresholds.append(np.empty(0))
            elif 2 <= values.size <= N_BINS - 1:
                thresholds.append(_midpoints(values))
            else:
                thresholds.append(np.asarray(_find_binning_thresholds(x[:, f], N_BINS - 1), dtype=np.float64))
        binned = np.zeros_like(x, dtype=np.uint8, order="F")
        _map_to_bins(x, thresholds, np.zeros(x.shape[1], dtype=np.uint8), MISSING_BIN, 1, binned)
        return binned, thresholds

    def compiled(self, columns) -> CompiledForest:
        """The fitted trees as a :class:`CompiledForest` reading feature ``i`` from column ``columns[i]``."""
        feature, bins, missing_left, left, right, leaf, value, n_bins_non_missing = self._trees
        n_trees, max_nodes = feature.shape
        threshold = np.full(feature.shape, np.inf)
        for t, k in zip(*np.nonzero(~leaf & (left >= 0)), strict=True):
            f, b = feature[t, k], bins[t, k]
            if b != n_bins_non_missing[f] - 1:
                threshold[t, k] = self._thresholds[f][b]
        roots = np.arange(n_trees, dtype=np.int64) * max_nodes
        shift = roots[:, None]
        return CompiledForest.from_arrays(
            column=np.asarray(columns, dtype=np.int64)[feature].ravel(), threshold=threshold.ravel(),
            missing_left=missing_left.ravel(), left=(left + shift).ravel(), right=(right + shift).ravel(),
            leaf=leaf.ravel(), value=value.ravel(), roots=roots, baseline=float(self._baseline[0]))

    def decision_function(self, x, *, rows: np.ndarray | None = None) -> np.ndarray:
        """Raw scores (log-odds of the second class) of ``x`` (of ``x[rows]``, read in place)."""
        return self._forest.decision_function(np.asarray(x, dtype=np.float64), rows=rows)

    def predict_proba(self, x) -> np.ndarray:
        return self._loss.predict_proba(self.decision_function(x))
