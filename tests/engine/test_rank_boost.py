"""The ranker's compiled boosted trees grow scikit-learn's trees: the same scores, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from napari_connectome.rank import Ranker
from napari_connectome.rank import ranker as ranker_module
from napari_connectome.rank.boost import BoostedTrees, available


def _columns(rng, n: int, kinds) -> np.ndarray:
    cols = []
    for kind in kinds:
        col = rng.normal(size=n)
        if kind == "few":
            col = rng.integers(0, 4, n).astype(float)  # thresholds between few values, many ties
        elif kind == "missing":
            col[rng.random(n) < 0.3] = np.nan
        elif kind == "one_value_and_missing":
            col = np.where(rng.random(n) < 0.5, 1.0, np.nan)
        elif kind == "constant":
            col = np.full(n, 2.5)
        elif kind == "rounded":
            col = np.round(col, 1)
        elif kind == "many":
            col = rng.normal(size=n) * 1e3  # more distinct values than bins: quantile thresholds
        cols.append(col)
    return np.column_stack(cols)


def _same(x, y, **options) -> None:
    expected = HistGradientBoostingClassifier(early_stopping=False, **options).fit(x, y).decision_function(x)
    got = BoostedTrees(**options).fit(x, y).decision_function(x)
    np.testing.assert_array_equal(got, expected)


def test_the_scikit_learn_internals_it_reuses_are_here():
    # CI must notice when a scikit-learn release moves them: the ranker would silently be slow again.
    assert available()


@pytest.mark.parametrize("seed", range(40))
def test_random_data_give_scikit_learns_scores_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 600))
    kinds = rng.choice(["normal", "few", "missing", "one_value_and_missing", "rounded", "many"],
                       size=int(rng.integers(1, 7)))
    x = _columns(rng, n, kinds)
    y = rng.random(n) < rng.uniform(0.05, 0.6)
    y[0], y[-1] = True, False
    _same(x, y, max_iter=int(rng.integers(1, 40)), learning_rate=float(rng.choice([0.05, 0.1, 0.3])),
          max_leaf_nodes=int(rng.integers(2, 32)), min_samples_leaf=int(rng.integers(1, 25)),
          l2_regularization=float(rng.choice([0.0, 1.0])), random_state=int(rng.integers(0, 5)))


@pytest.mark.parametrize("kinds", [("constant", "normal"), ("constant", "few"), ("one_value_and_missing",),
                                   ("few", "few", "few")])
def test_degenerate_columns(kinds):
    rng = np.random.default_rng(7)
    x = _columns(rng, 300, kinds)
    y = rng.random(300) < 0.3
    _same(x, y, max_iter=20, max_leaf_nodes=15, min_samples_leaf=5, l2_regularization=1.0, random_state=0)


def test_equal_gains_pick_the_first_feature_and_heapq_order():
    # Two copies of each column: every gain ties with its copy's; mirrored halves tie across nodes.
    rng = np.random.default_rng(3)
    half = rng.integers(0, 6, size=(100, 2)).astype(float)
    x = np.vstack([half, half])
    x = np.hstack([x, x])
    y = np.r_[half[:, 0] > 2, half[:, 0] > 2]
    _same(x, y, max_iter=15, max_leaf_nodes=31, min_samples_leaf=1, l2_regularization=0.0, random_state=0)


def test_equal_gains_of_two_nodes_split_the_one_heapq_pops_first():
    # Mirrored halves: both children of the root have the same best gain (to the last bit), and the
    # leaf budget lets only one of them split: scikit-learn splits the one its heap pops first.
    x2 = np.tile(np.arange(10.0), 20)
    x1 = np.repeat([0.0, 1.0], 100)
    y = np.where(x1 == 0, x2 > 7, x2 <= 7)
    x = np.column_stack([x1, x2])
    for leaves in (3, 4):
        _same(x, y, max_iter=2, max_leaf_nodes=leaves, min_samples_leaf=1, l2_regularization=1.0, random_state=0)


def test_a_root_that_cannot_split_is_one_leaf():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(30, 3))
    y = np.arange(30) < 10
    _same(x, y, max_iter=5, max_leaf_nodes=15, min_samples_leaf=20, random_state=0)


def test_it_refuses_what_it_does_not_grow():
    x = np.zeros((4, 1))
    with pytest.raises(ValueError):
        BoostedTrees(max_leaf_nodes=1)
    with pytest.raises(ValueError):
        BoostedTrees().fit(x, [True] * 4)
    with pytest.raises(ValueError):
        BoostedTrees().fit(x, [True, False])


@pytest.mark.parametrize("n_prior", [40, 400])  # few errors: not calibrated; enough: Platt-scaled
def test_the_ranker_gives_the_probabilities_it_gave_with_scikit_learns_trees(n_prior, monkeypatch):
    rng = np.random.default_rng(5)
    x = _columns(rng, n_prior, ["normal", "missing", "few", "rounded", "constant"])
    y = np.nan_to_num(x[:, 0]) + rng.normal(size=n_prior) > 0.8
    if n_prior == 40:
        y = np.arange(n_prior) < 4
    test = _columns(np.random.default_rng(6), 1000, ["normal", "missing", "few", "rounded", "constant"])

    def run() -> list[np.ndarray]:
        ranker = Ranker(derived=False).fit(x, y)
        assert ranker.training_info["calibrated"] == (n_prior == 400)
        out = [ranker.predict_proba(test)]
        for i in range(4):  # answers: refits (and Platt scaling refitted each time once calibrated)
            ranker.partial_update(test[i:i + 1], [i % 2 == 0])
            out.append(ranker.predict_proba(test))
        return out

    compiled = run()
    monkeypatch.setattr(ranker_module, "boost_available", lambda: False)
    with_scikit_learn = run()
    for a, b in zip(compiled, with_scikit_learn, strict=True):
        np.testing.assert_array_equal(a, b)


def test_above_scikit_learns_bin_subsample_the_bins_come_from_its_draw():
    rng = np.random.default_rng(8)
    n = 200_500
    x = np.column_stack([rng.normal(size=n), np.round(rng.normal(size=n), 2)])
    y = x[:, 0] + rng.normal(size=n) > 1.0
    _same(x, y, max_iter=2, max_leaf_nodes=4, min_samples_leaf=20, random_state=3)


def test_a_forked_child_refits_with_threads_of_its_own():
    import multiprocessing

    rng = np.random.default_rng(9)
    x = _columns(rng, 300, ["normal", "missing", "few"])
    y = np.nan_to_num(x[:, 0]) + rng.normal(size=300) > 0.5
    ranker = Ranker(derived=False).fit(x, y)  # the parent's fitting threads now exist
    expected = ranker.predict_proba(x)
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.apply_async(_refit_in_child, (x, y)).get(timeout=120)  # hung before the pools were reset
    np.testing.assert_array_equal(got, expected)


def _refit_in_child(x, y):
    return Ranker(derived=False).fit(x, y).predict_proba(x)


@pytest.mark.parametrize("seed", range(20))
def test_bin_thresholds_are_scikit_learns_on_awkward_columns(seed):
    from sklearn.ensemble._hist_gradient_boosting.binning import _find_binning_thresholds

    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 300))
    one = 1.0 + np.finfo(float).eps
    pool = np.array([0.0, -0.0, 1.0, one, one + np.finfo(float).eps, -2.5, np.inf, -np.inf, np.nan, 1e308, 3.0,
                     1.7e308])
    cols = [rng.choice(pool[: int(rng.integers(2, pool.size + 1))], n), rng.normal(size=n),
            np.round(rng.normal(size=n), 1), rng.choice([np.nan, 4.0], n)]
    x = np.column_stack(cols)
    x[0, 3] = 4.0  # the last column: one value and NaN
    _, got = BoostedTrees()._bin(x)
    for f, thresholds in enumerate(got):
        want = np.asarray(_find_binning_thresholds(x[:, f], 255), dtype=np.float64)
        np.testing.assert_array_equal(thresholds, want)
