"""``distinct``: np.unique's answer for every dtype, by sorting where the values are integers."""

from __future__ import annotations

import numpy as np
import pytest

from napari_connectome.arrays import distinct


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
