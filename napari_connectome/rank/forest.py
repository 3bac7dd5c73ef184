"""A fitted gradient-boosted classifier's trees evaluated by one compiled loop.

scikit-learn's ``HistGradientBoostingClassifier.decision_function`` walks the
rows once per tree (a Cython call, an output array and an in-place add per
tree) and needs the usable columns copied out of the feature matrix first. At
1.36 M candidates (a 1024³ volume) that was 3.3 s of each ``active``
decision's ordering, every decision, since the model changes after every
answer. :class:`CompiledForest` flattens the trees into arrays once per fit
and walks every row through all of them in one numba loop, reading the
feature matrix where it lies (the usable columns are mapped, not copied).

The sum is made the way scikit-learn makes it (the baseline, then each tree's
leaf value in boosting order, in float64) and a split is taken the way its
predictor takes it (NaN follows ``missing_go_to_left``, otherwise ``x ≤
threshold`` goes left), so the scores are the same bits
(``tests/engine/test_rank_forest.py`` holds that against scikit-learn).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from napari_connectome.rank import threads


@njit(cache=True, nogil=True)
def _row_score(x, r, column, threshold, missing_left, left, right, leaf, value, roots, baseline):
    acc = baseline
    for t in range(roots.size):
        node = roots[t]
        while not leaf[node]:
            v = x[r, column[node]]
            if np.isnan(v):
                node = left[node] if missing_left[node] else right[node]
            elif v <= threshold[node]:
                node = left[node]
            else:
                node = right[node]
        acc += value[node]
    return acc


@njit(cache=True, nogil=True)
def _decision(x, column, threshold, missing_left, left, right, leaf, value, roots, baseline, out):
    for i in range(x.shape[0]):
        out[i] = _row_score(x, i, column, threshold, missing_left, left, right, leaf, value, roots, baseline)


@njit(cache=True, nogil=True)
def _decision_rows(x, rows, column, threshold, missing_left, left, right, leaf, value, roots, baseline, out):
    # _decision of x[rows] without making x[rows]
    for i in range(rows.shape[0]):
        out[i] = _row_score(x, rows[i], column, threshold, missing_left, left, right, leaf, value, roots, baseline)


class CompiledForest:
    """The trees of a fitted binary ``HistGradientBoostingClassifier`` as flat arrays.

    Parameters
    ----------
    model
        The fitted classifier (numeric features only, one tree per iteration).
    columns
        For each feature the model was fitted on, its column in the matrices
        :meth:`decision_function` will be given.

    Raises
    ------
    ValueError
        The model has no trees, categorical splits or more than one tree per
        iteration (it is not what the ranker fits): the caller uses scikit-learn's own path.
    """

    def __init__(self, model, columns) -> None:
        columns = np.asarray(columns, dtype=np.int64)
        trees = []
        for per_iteration in model._predictors:
            if len(per_iteration) != 1:
                raise ValueError("only binary classifiers (one tree per iteration) are compiled")
            trees.append(per_iteration[0].nodes)
        if any(t["is_categorical"].any() for t in trees):
            raise ValueError("categorical splits are not compiled")
        baseline = np.asarray(model._baseline_prediction, dtype=np.float64)
        if baseline.size != 1:
            raise ValueError("only binary classifiers (one baseline) are compiled")
        if not trees:
            raise ValueError("the model has no trees")
        sizes = np.array([t.size for t in trees], dtype=np.int64)
        self.roots = np.r_[0, np.cumsum(sizes)[:-1]].astype(np.int64)
        nodes = np.concatenate(trees)
        shift = np.repeat(self.roots, sizes)
        self.leaf = nodes["is_leaf"].astype(np.bool_)
        # A leaf's feature index is 0 and never read; mapping it keeps the array uniform.
        self.column = columns[nodes["feature_idx"]]
        self.threshold = nodes["num_threshold"].astype(np.float64)
        self.missing_left = nodes["missing_go_to_left"].astype(np.bool_)
        self.left = nodes["left"].astype(np.int64) + shift
        self.right = nodes["right"].astype(np.int64) + shift
        self.value = nodes["value"].astype(np.float64)
        self.baseline = float(baseline.reshape(-1)[0])
        self.n_columns = int(self.column.max()) + 1

    @classmethod
    def from_arrays(cls, *, column, threshold, missing_left, left, right, leaf, value, roots,
                    baseline: float) -> CompiledForest:
        """A forest from flat node arrays (trees grown elsewhere: :mod:`~napari_connectome.rank.boost`).

        ``left``/``right`` index the flat arrays; ``roots`` holds each tree's root in boosting order.
        """
        self = cls.__new__(cls)
        self.column = np.asarray(column, dtype=np.int64)
        self.threshold = np.asarray(threshold, dtype=np.float64)
        self.missing_left = np.asarray(missing_left, dtype=np.bool_)
        self.left = np.asarray(left, dtype=np.int64)
        self.right = np.asarray(right, dtype=np.int64)
        self.leaf = np.asarray(leaf, dtype=np.bool_)
        self.value = np.asarray(value, dtype=np.float64)
        self.roots = np.asarray(roots, dtype=np.int64)
        self.baseline = float(baseline)
        self.n_columns = int(self.column.max()) + 1 if self.column.size else 0
        return self

    def decision_function(self, x: np.ndarray, *, rows: np.ndarray | None = None) -> np.ndarray:
        """The raw score (log-odds) of every row of ``x`` (float64, NaN = missing).

        ``rows``: score ``x[rows]`` instead, read in place (the same scores, no copy of those rows).
        """
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] < self.n_columns:
            raise ValueError(f"expected a 2D matrix with at least {self.n_columns} columns, got shape {x.shape}")
        if rows is not None:
            rows = np.asarray(rows, dtype=np.int64).reshape(-1)
            if rows.size and (rows.min() < 0 or rows.max() >= x.shape[0]):
                raise ValueError(f"rows must index the {x.shape[0]} rows of x")
        n = x.shape[0] if rows is None else rows.size
        out = np.empty(n, dtype=np.float64)
        args = (self.column, self.threshold, self.missing_left, self.left, self.right, self.leaf, self.value,
                self.roots, self.baseline)

        def run(a: int, b: int) -> None:
            if rows is None:
                _decision(x[a:b], *args, out[a:b])
            else:
                _decision_rows(x, rows[a:b], *args, out[a:b])

        pool = threads.pool() if n >= 2 * CHUNK_ROWS else None
        if pool is None:
            run(0, n)
            return out
        # Rows are independent: slices on threads (the loop holds no GIL) give the same scores.
        bounds = list(range(0, n, CHUNK_ROWS)) + [n]
        jobs = [pool.submit(run, a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        for job in jobs:
            job.result()
        return out


#: Rows per slice when a large matrix is scored on several threads.
CHUNK_ROWS = 65_536
