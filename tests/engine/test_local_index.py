"""``local_index``: the index of labels in a sorted array, by table or binary search, as searchsorted."""

from __future__ import annotations

import numpy as np
import pytest

from napari_connectome.graph.local import local_index


@pytest.mark.parametrize("seed", range(20))
def test_local_index_is_searchsorted_for_members(seed):
    rng = np.random.default_rng(seed)
    span = int(rng.choice([50, 10_000, 10**7]))  # dense (a table) and sparse (binary search) labels
    n = int(rng.integers(1, 400))
    nodes = np.sort(rng.choice(span, size=min(n, span), replace=False)).astype(rng.choice([np.int64, np.uint64]))
    values = nodes[rng.integers(0, nodes.size, size=(int(rng.integers(0, 300)), 2))]
    got = local_index(nodes, values)
    assert got.dtype == np.int64 and got.shape == values.shape
    np.testing.assert_array_equal(got, np.searchsorted(nodes, values))


@pytest.mark.parametrize("nodes", [np.array([3, 5, 9]), np.array([3, 10**9, 10**12])])
def test_local_index_refuses_a_value_not_among_the_nodes(nodes):
    for bad in (4, 2, 10**13):
        with pytest.raises(ValueError, match="not among the nodes"):
            local_index(nodes, np.array([3, bad]))
    with pytest.raises(ValueError, match="none"):
        local_index(np.empty(0, np.int64), np.array([1]))
    assert local_index(nodes, np.empty((0, 2), np.int64)).shape == (0, 2)
