"""The compiled trees, the ranker's column mapping and the strategies' tie-break: the same answers as the slow paths."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from napari_connectome.candidates.model import Candidate
from napari_connectome.rank import Ranker, SizeStrategy
from napari_connectome.rank.forest import CompiledForest
from napari_connectome.rank.strategies import _KeyOrder, _order, candidate_key_text


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6))
    x[rng.random(x.shape) < 0.15] = np.nan
    x[:, 4] = np.round(x[:, 4])  # few distinct values: thresholds that equal the data
    y = np.nan_to_num(x[:, 0]) + 0.5 * np.nan_to_num(x[:, 4]) + rng.normal(size=n) > 0.2
    return x, y


def test_compiled_trees_give_scikit_learns_scores_bit_for_bit():
    x, y = _data(1500, 0)
    usable = np.array([0, 2, 3, 4])
    model = HistGradientBoostingClassifier(max_iter=40, max_leaf_nodes=15, early_stopping=False,
                                           random_state=0).fit(x[:, usable], y)
    forest = CompiledForest(model, usable)
    test, _ = _data(3000, 1)
    test[::7, 0] = np.nan  # missing values at prediction time take the learnt side
    expected = model.decision_function(test[:, usable])
    np.testing.assert_array_equal(forest.decision_function(test), expected)
    with pytest.raises(ValueError):
        forest.decision_function(test[:, :3])


def _forest(seed: int) -> tuple[CompiledForest, HistGradientBoostingClassifier]:
    x, y = _data(1500, seed)
    model = HistGradientBoostingClassifier(max_iter=30, max_leaf_nodes=15, early_stopping=False,
                                           random_state=0).fit(x, y)
    return CompiledForest(model, np.arange(x.shape[1])), model


def _in_slices_on_threads(monkeypatch) -> None:
    """Score 5,003 rows as five slices of 1,000 and a short one, on two threads."""
    import napari_connectome.rank.forest as forest_module
    import napari_connectome.rank.threads as threads_module

    monkeypatch.setattr(forest_module, "CHUNK_ROWS", 1000)
    monkeypatch.setattr(threads_module.os, "cpu_count", lambda: 2)


def test_large_matrices_scored_in_slices_on_threads_give_the_same_scores(monkeypatch):
    forest, model = _forest(5)
    test, _ = _data(5003, 6)
    whole = forest.decision_function(test)
    _in_slices_on_threads(monkeypatch)
    np.testing.assert_array_equal(forest.decision_function(test), whole)
    np.testing.assert_array_equal(whole, model.decision_function(test))


def test_rows_scored_in_place_are_the_scores_of_the_gathered_rows(monkeypatch):
    """``decision_function(x, rows=r)`` reads ``x[r]`` where it lies: the same bits, in slices on threads too."""
    forest, model = _forest(13)
    store, _ = _data(4000, 14)
    rows = np.random.default_rng(15).integers(0, len(store), 5003)  # repeats, any order
    expected = model.decision_function(store[rows])
    np.testing.assert_array_equal(forest.decision_function(store, rows=rows), expected)
    _in_slices_on_threads(monkeypatch)
    np.testing.assert_array_equal(forest.decision_function(store, rows=rows), expected)
    assert forest.decision_function(store, rows=np.empty(0, np.int64)).shape == (0,)
    for bad in ([-1], [len(store)]):
        with pytest.raises(ValueError, match="rows"):
            forest.decision_function(store, rows=np.array(bad))


def test_a_model_with_categorical_splits_is_not_compiled():
    x, y = _data(600, 2)
    x[:, 1] = np.abs(np.round(np.nan_to_num(x[:, 1]) * 3))
    model = HistGradientBoostingClassifier(max_iter=10, categorical_features=[1], early_stopping=False,
                                           random_state=0).fit(x[:, :2], y)
    assert any(p[0].nodes["is_categorical"].any() for p in model._predictors)
    with pytest.raises(ValueError):
        CompiledForest(model, np.array([0, 1]))


@pytest.mark.parametrize("n_prior", [40, 400])  # few errors among them: not calibrated; enough: Platt-scaled
def test_the_rankers_mapped_columns_give_its_models_own_probabilities(n_prior):
    x, y = _data(n_prior, 3)
    if n_prior == 40:
        y = np.arange(n_prior) < 4
    x = np.hstack([x, np.zeros((n_prior, 1))])  # a constant column: not usable, mapped around
    ranker = Ranker(derived=False).fit(x, y)
    assert ranker._forest is not None
    assert ranker.training_info["calibrated"] == (n_prior == 400)
    test = np.hstack([_data(2000, 4)[0], np.zeros((2000, 1))])
    fast = ranker.predict_proba(test)
    slow_ranker = ranker.copy()
    slow_ranker._forest = None
    np.testing.assert_array_equal(fast, slow_ranker.predict_proba(test))
    ranker.partial_update(test[:3], [True, False, True])  # a refit compiles the new trees
    slow_ranker = ranker.copy()
    slow_ranker._forest = None
    np.testing.assert_array_equal(ranker.predict_proba(test), slow_ranker.predict_proba(test))


def _reference_order(score, candidates) -> np.ndarray:
    """The order as it was made before: ties resolved group by group on the keys' Python strings."""
    s = -np.asarray(score, dtype=np.float64)
    order = np.argsort(s, kind="stable")
    ranked = s[order]
    same = (ranked[1:] == ranked[:-1]) | (np.isnan(ranked[1:]) & np.isnan(ranked[:-1]))
    starts = np.flatnonzero(np.r_[True, ~same])
    stops = np.r_[starts[1:], ranked.size]
    for i0, i1 in zip(starts, stops, strict=True):
        idx = order[i0:i1]
        keys = np.array([candidate_key_text(candidates[j]) for j in idx.tolist()], dtype=object)
        order[i0:i1] = idx[np.argsort(keys, kind="stable")]
    return order


def _many(n: int, seed: int, *, repeats: bool = True) -> list[Candidate]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        # Supervoxel ids of 1 to 6 digits: string order is not numeric order ("(12," < "(2,").
        # Some with many supervoxels (a cut's side): long keys.
        size = 2 if rng.random() < 0.95 else int(rng.integers(50, 400))
        sv = tuple(sorted(int(v) for v in rng.integers(1, 10 ** int(rng.integers(1, 7)), size=size)))
        kind = "false_split" if rng.random() < 0.7 else "false_merge"
        out.append(Candidate(id=f"m{i}", kind=kind, location_nm=(0.0, 0.0, 0.0), segments=(i,), supervoxels=sv,
                             sinks=() if kind == "false_split" else (int(rng.integers(1, 999)),),
                             impact=float(rng.integers(1, 5))))
    if repeats:
        out.extend(out[: n // 10])  # the same objects twice: equal keys keep list order
    return out


def test_ties_are_broken_by_key_as_before_with_nan_and_signed_zero():
    cands = _many(3000, 5)
    rng = np.random.default_rng(6)
    by_key = _KeyOrder()
    for _ in range(3):
        score = rng.integers(0, 6, len(cands)).astype(np.float64)
        score[rng.random(score.size) < 0.1] = np.nan
        score[score == 0] = -0.0
        score[rng.random(score.size) < 0.05] = 0.0
        np.testing.assert_array_equal(_order(score, cands, by_key), _reference_order(score, cands))
    distinct = rng.permutation(len(cands)).astype(np.float64)
    np.testing.assert_array_equal(_order(distinct, cands, _KeyOrder()), np.argsort(-distinct))
    few = distinct.copy()  # a few ties among distinct scores: only those are sorted by key
    few[rng.random(few.size) < 0.1] = 7.0
    few[rng.random(few.size) < 0.05] = np.nan
    np.testing.assert_array_equal(_order(few, cands, _KeyOrder()), _reference_order(few, cands))


def test_a_list_whose_key_order_is_kept_is_ordered_by_it_with_or_without_ties():
    """Once the key order of a list is kept, every order of that list is one stable sort of it by score."""
    cands = _many(3000, 21)
    rng = np.random.default_rng(22)
    by_key = _KeyOrder()
    tied = rng.integers(0, 3, len(cands)).astype(np.float64)  # most tied: the key order is made and kept
    np.testing.assert_array_equal(_order(tied, cands, by_key), _reference_order(tied, cands))
    assert by_key.holds(cands)
    distinct = rng.permutation(len(cands)).astype(np.float64)
    np.testing.assert_array_equal(_order(distinct, cands, by_key), np.argsort(-distinct))
    few = distinct.copy()
    few[rng.random(few.size) < 0.1] = 5.5
    few[rng.random(few.size) < 0.05] = np.nan
    few[rng.random(few.size) < 0.05] = -0.0
    few[rng.random(few.size) < 0.05] = 0.0
    np.testing.assert_array_equal(_order(few, cands, by_key), _reference_order(few, cands))


def test_the_kept_key_order_follows_a_new_list():
    cands = _many(500, 7)
    by_key = _KeyOrder()
    score = np.ones(len(cands))
    first = _order(score, cands, by_key)
    np.testing.assert_array_equal(first, _reference_order(score, cands))
    changed = cands[100:] + _many(50, 8)  # an edit: some candidates gone, new ones found
    score = np.ones(len(changed))
    np.testing.assert_array_equal(_order(score, changed, by_key), _reference_order(score, changed))
    shuffled = [changed[i] for i in np.random.default_rng(9).permutation(len(changed))]
    np.testing.assert_array_equal(_order(score, shuffled, by_key), _reference_order(score, shuffled))
    strategy = SizeStrategy()  # the strategies keep one each
    impact = np.array([c.impact for c in cands])
    for listed in (cands, cands[::-1], cands):
        np.testing.assert_array_equal(strategy.order(listed), _reference_order(impact[: len(listed)] if listed is cands
                                                                                else impact[::-1], listed))


def test_a_list_after_an_edit_is_sorted_from_the_last_one(monkeypatch):
    """Most objects kept, some gone, some new, reordered: sorted from the last order, equal to a fresh sort."""
    from napari_connectome.rank import strategies

    full = []
    real = strategies._sorted_keys
    monkeypatch.setattr(strategies, "_sorted_keys", lambda keys: full.append(len(keys)) or real(keys))
    rng = np.random.default_rng(11)
    by_key = _KeyOrder()
    cands = _many(2000, 12, repeats=False)
    for made in range(1, 7):
        score = rng.integers(0, 3, len(cands)).astype(np.float64)
        np.testing.assert_array_equal(_order(score, cands, by_key), _reference_order(score, cands))
        kept = [c for c in cands if rng.random() < 0.9]
        cands = [kept[i] for i in rng.permutation(len(kept))] + _many(100, 100 + made, repeats=False)
    assert full == [2000]  # one sort from scratch; every later list from the one before
    twice = cands + cands[:3]  # an object listed twice: sorted from scratch, list order among equal keys
    score = np.zeros(len(twice))
    np.testing.assert_array_equal(_order(score, twice, by_key), _reference_order(score, twice))
    assert len(full) == 2


def test_key_text_is_the_repr_of_the_key():
    """The text kept per candidate is ``repr(candidate_key(c))``, however the supervoxels are given."""
    from napari_connectome.rank.strategies import candidate_key

    made = [
        Candidate(id="a", kind="false_split", location_nm=(0, 0, 0), segments=(1, 2), supervoxels=(9, 3)),
        Candidate(id="b", kind="false_split", location_nm=(0, 0, 0), segments=(1, 2),
                  supervoxels=(np.uint64(2**40 + 1), np.int64(7))),
        Candidate(id="c", kind="false_split", location_nm=(0, 0, 0), segments=(1, 2), supervoxels=(5, 5)),
        Candidate(id="d", kind="false_merge", location_nm=(0, 0, 0), segments=(1,), supervoxels=(4,), sinks=(8, 2)),
        Candidate(id="e", kind="false_split", location_nm=(0, 0, 0), segments=(1, 2), supervoxels=(1, 2, 3)),
    ]
    for c in made:
        assert candidate_key_text(c) == repr(candidate_key(c))
        assert candidate_key_text(c) is candidate_key_text(c)  # made once, kept on the object
