"""RowCache (rows per candidate kept by identity) and the candidate cache's packed order keys."""

from __future__ import annotations

import numpy as np
import pytest

from napari_connectome.candidates import rows as candidate_rows
from napari_connectome.candidates.find import _full_order, _inserted, _order_columns, _without
from napari_connectome.candidates.model import Candidate
from napari_connectome.candidates.rows import RowCache, serials


def cand(i: int, kind: str = "false_split", impact: float = 1.0) -> Candidate:
    segs = (i, i + 1) if kind == "false_split" else (i,)
    return Candidate(id=f"c-{i}", kind=kind, location_nm=(0.0, 0.0, 0.0), segments=segs, supervoxels=(i,),
                     impact=impact)


class Counting:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, cands):
        self.seen.extend(c.id for c in cands)
        return np.array([[c.impact, len(c.segments)] for c in cands]).reshape(len(cands), 2)


def test_rows_are_computed_once_per_candidate_object():
    compute = Counting()
    rows = RowCache(compute)
    first = [cand(i, impact=float(i)) for i in range(6)]
    np.testing.assert_array_equal(rows(first), compute(first))
    compute.seen.clear()
    # the same list again: nothing computed
    np.testing.assert_array_equal(rows(first)[:, 0], np.arange(6.0))
    assert compute.seen == []
    # a new list sharing objects, reordered, with two new ones: only the new ones computed
    new = [cand(10, "false_merge", 7.5), cand(11, impact=2.5)]
    second = [first[3], new[0], first[0], new[1], first[5]]
    got = rows(second)
    assert compute.seen == ["c-10", "c-11"]
    np.testing.assert_array_equal(got[:, 0], [3.0, 7.5, 0.0, 2.5, 5.0])
    np.testing.assert_array_equal(got[:, 1], [2, 1, 2, 2, 2])
    # an object equal by value to a kept one but not the same: computed (rows follow objects)
    compute.seen.clear()
    twin = cand(3, impact=3.0)
    np.testing.assert_array_equal(rows([twin, second[1]])[:, 0], [3.0, 7.5])
    assert compute.seen == ["c-3"]


def test_rows_returned_cannot_be_changed_by_the_caller():
    rows = RowCache(Counting())
    lst = [cand(i, impact=float(i)) for i in range(4)]
    out = rows(lst)
    with pytest.raises(ValueError):
        out[:] = -1
    assert rows(lst) is out  # the same list again: the kept rows themselves, no copy
    np.testing.assert_array_equal(rows(lst)[:, 0], np.arange(4.0))
    with pytest.raises(ValueError):
        rows([lst[2], lst[0]])[0, 0] = 5.0


def test_rows_of_one_candidate_and_of_none():
    compute = Counting()
    rows = RowCache(compute)
    lst = [cand(i, impact=float(i)) for i in range(3)]
    rows(lst)
    compute.seen.clear()
    np.testing.assert_array_equal(rows([lst[1]]), [[1.0, 2.0]])  # a kept one: looked up
    assert compute.seen == []
    assert rows([]).shape == (0, 2)
    np.testing.assert_array_equal(rows(lst)[:, 0], np.arange(3.0))  # the kept list survived both calls
    assert compute.seen == []
    rows.clear()
    rows(lst)
    assert compute.seen == ["c-0", "c-1", "c-2"]


def test_packed_order_keys_sort_as_the_full_order():
    rng = np.random.default_rng(0)
    cands = []
    for _ in range(400):
        a = int(rng.integers(1, 2**31 - 1))
        if rng.random() < 0.5:
            b = int(rng.integers(1, 2**31 - 1))
            cands.append(Candidate(id=f"fs-{a}-{b}", kind="false_split", location_nm=(0, 0, 0), segments=(a, b),
                                   supervoxels=(1, 2)))
        else:
            k = int(rng.integers(0, 50))
            cands.append(Candidate(id=f"fm-{a}-{k}", kind="false_merge", location_nm=(0, 0, 0), segments=(a,),
                                   supervoxels=(1,), sinks=(2,)))
    keys, pairs = _order_columns(cands)
    by_tuple = sorted(range(len(cands)), key=lambda i: _full_order(cands[i]))
    assert np.argsort(keys, kind="stable").tolist() == by_tuple
    assert pairs.shape == (400, 2)
    assert all(pairs[i, 1] == -1 for i, c in enumerate(cands) if c.kind == "false_merge")
    assert pairs.tolist() == [[*c.segments, -1][:2] for c in cands]
    keys, pairs = _order_columns([])
    assert keys.shape == (0,) and pairs.shape == (0, 2)
    with pytest.raises(ValueError, match="2\\^31"):
        _order_columns([cand(2**31)])


def test_rows_stay_right_over_many_edits_with_compaction_and_repeats():
    """Lists that change like a list after edits (some gone, some new, reordered, one object twice)."""
    compute = Counting()
    rows = RowCache(compute)
    rng = np.random.default_rng(0)
    lst = [cand(i, impact=float(i)) for i in range(200)]
    rows(lst)
    made = 200
    for _ in range(90):
        keep = [c for c in lst if rng.random() < 0.8]
        new = [cand(made + j, impact=float(made + j)) for j in range(int(rng.integers(0, 60)))]
        made += len(new)
        lst = [keep[i] for i in rng.permutation(len(keep))] + new
        if rng.random() < 0.3 and lst:
            lst.append(lst[0])  # the same object twice
        compute.seen.clear()
        got = rows(lst)
        np.testing.assert_array_equal(got[:, 0], [c.impact for c in lst])
        assert len(compute.seen) == len({c.id for c in new})  # only new objects are computed
        assert rows._used <= 2 * len(lst) + 1024 + len(new)
    assert rows._used < made  # compacted along the way: the rows of candidates gone are dropped


def test_serials_are_shared_by_the_caches_asked_about_one_list():
    lst = [cand(i, impact=float(i)) for i in range(5)]
    first = serials(lst)
    assert serials(list(lst)) is first  # an equal list of the same objects: no second pass
    assert len(set(first.tolist())) == 5
    other = [cand(i, impact=float(i)) for i in range(5)]  # other objects (equal by value)
    np.testing.assert_array_equal(serials([*other, lst[0]])[-1], first[0])
    with pytest.raises(ValueError):
        first[0] = 7


def test_a_cache_whose_rows_change_dtype_keeps_them_exact():
    calls = iter([np.array([1, 2]), np.array([0.5])])
    rows = RowCache(lambda cands: next(calls))
    a, b, c = (cand(i, impact=float(i)) for i in range(3))
    np.testing.assert_array_equal(rows([a, b]), [1, 2])
    np.testing.assert_array_equal(rows([a, b, c]), [1.0, 2.0, 0.5])


def test_indexed_rows_are_the_rows_without_a_gather():
    """``store[slots]`` from :meth:`RowCache.indexed` is what the cache gives, over edits and compactions."""
    compute = Counting()
    rows, reference = RowCache(compute), RowCache(Counting())
    rng = np.random.default_rng(3)
    lst = [cand(i, impact=float(i)) for i in range(300)]
    made = 300
    for step in range(60):
        store, slots = rows.indexed(lst)
        np.testing.assert_array_equal(store[slots], reference(lst))
        again = rows.indexed(list(lst))  # the same list again: what was kept for it, no pass
        assert again[0] is store and again[1] is slots
        with pytest.raises(ValueError):
            store[0, 0] = -1.0
        with pytest.raises(ValueError):
            slots[0] = 0
        if step % 3 == 0:  # the two ways of asking, mixed
            np.testing.assert_array_equal(rows(lst), reference(lst))
        keep = [c for c in lst if rng.random() < 0.8]
        new = [cand(made + j, impact=float(made + j)) for j in range(int(rng.integers(0, 80)))]
        made += len(new)
        lst = [keep[i] for i in rng.permutation(len(keep))] + new
        compute.seen.clear()
        rows.indexed(lst)
        assert len(compute.seen) == len(new)  # only new objects are computed
    assert rows._used < made  # compacted along the way


def test_rows_of_a_few_leave_the_latest_list_alone():
    rows = RowCache(Counting())
    lst = [cand(i, impact=float(i)) for i in range(50)]
    numbers = serials(lst)
    extra = cand(99, impact=9.5)
    np.testing.assert_array_equal(rows.rows_of([lst[7], extra])[:, 0], [7.0, 9.5])
    assert candidate_rows._LATEST[1] is numbers  # the whole list's serials are still the ones looked up
    np.testing.assert_array_equal(rows(lst)[:, 0], np.arange(50.0))
    assert rows.rows_of([]).shape[0] == 0


def test_splicing_a_sorted_list_equals_a_stable_sort():
    """What the candidate cache does after an edit: drop some, put the new ones in key order, ties after the kept."""
    rng = np.random.default_rng(4)
    for _ in range(200):
        n = int(rng.integers(0, 40))
        old_keys = np.sort(rng.integers(0, 15, n))
        old = [("old", i) for i in range(n)]
        drop = np.flatnonzero(rng.random(n) < 0.3)
        new_keys = rng.integers(0, 16, int(rng.integers(0, 10)))
        new = [("new", i) for i in range(new_keys.size)]
        kept = np.setdiff1d(np.arange(n), drop)
        both_keys = np.concatenate([old_keys[kept], new_keys])
        both = [old[i] for i in kept.tolist()] + new
        expected = [both[i] for i in np.argsort(both_keys, kind="stable").tolist()]
        first = np.argsort(new_keys, kind="stable")
        at = np.searchsorted(np.delete(old_keys, drop), new_keys[first], side="right")
        assert _inserted(_without(old, drop), at, [new[i] for i in first.tolist()]) == expected
