"""``distinct`` and ``overlaps``: NumPy's answers for every dtype, by sorting where the values are integers."""

from __future__ import annotations

import numpy as np
import pytest

from napari_connectome.arrays import distinct, overlaps


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint64, np.uint32, np.uint8, np.bool_, np.float32,
                                   np.float64])
@pytest.mark.parametrize("seed", range(5))
def test_distinct_is_np_unique(dtype, seed):
    rng = np.random.default_rng(seed)
    shape = [(0,), (1,), (7,), (50, 3), (1000,)][seed]
    values = rng.integers(0, 20, size=shape).astype(dtype)
    if np.dtype(dtype).kind == "f" and values.size:
        values.flat[0] = np.nan
        values.flat[-1] = np.nan
    got, want = distinct(values), np.unique(values)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(distinct(values.tolist()), np.unique(values.tolist()))  # lists too


@pytest.mark.parametrize("dtypes", [(np.int64, np.int64), (np.uint64, np.uint64), (np.int64, np.uint64),
                                    (np.uint64, np.int64), (np.int32, np.int64)])
@pytest.mark.parametrize("seed", range(40))
def test_overlaps_is_intersect1d(dtypes, seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(-3 if np.dtype(dtypes[0]).kind == "i" else 0, 30, rng.integers(0, 12)).astype(dtypes[0])
    b = rng.integers(-3 if np.dtype(dtypes[1]).kind == "i" else 0, 30, rng.integers(0, 12)).astype(dtypes[1])
    want = bool(np.intersect1d(a.astype(np.int64), b.astype(np.int64)).size)
    assert overlaps(a, b) is want


def test_overlaps_keeps_large_ids_apart():
    # As float64 both would round to 2**63: they are different ids.
    a = np.array([2**63 + 1], np.uint64)
    b = np.array([2**63 + 2], np.uint64)
    assert not overlaps(a, b)
    assert not overlaps(np.array([-1, 5], np.int64), np.array([2**64 - 1], np.uint64))
    assert overlaps(np.array([5, 2**62], np.int64), np.array([2**62], np.uint64))
