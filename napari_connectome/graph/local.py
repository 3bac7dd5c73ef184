"""Where values stand in a sorted array of node labels: the index of a subgraph's nodes, fast."""

from __future__ import annotations

import numpy as np

#: A lookup table is used while the labels' span is at most this many times their number (plus a floor).
_SPAN_PER_NODE = 32
_SPAN_FLOOR = 4096


def local_index(nodes: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``np.searchsorted(nodes, values)`` for values that are all in ``nodes``, as int64.

    Parameters
    ----------
    nodes
        ``(N,)`` sorted, distinct integer labels (a segment's supervoxel positions).
    values
        Labels to look up, any shape; every one must be in ``nodes``.

    Returns
    -------
    numpy.ndarray
        The index of each value in ``nodes``, shaped like ``values``.

    Raises
    ------
    ValueError
        A value is not in ``nodes``.

    Notes
    -----
    A segment's positions are dense in a stretch of the state's table, so a table over that stretch
    answers a split's ~30,000 edge ends in a tenth of the time of binary searches (which jump about
    the array for every one).
    """
    nodes = np.asarray(nodes)
    values = np.asarray(values)
    if values.size == 0:
        return np.zeros(values.shape, np.int64)
    if nodes.size == 0:
        raise ValueError("a value is not among the nodes (there are none)")
    lo, hi = int(nodes[0]), int(nodes[-1])
    vlo, vhi = int(values.min()), int(values.max())
    if vlo < lo or vhi > hi:
        raise ValueError("a value is not among the nodes")
    if hi - lo <= _SPAN_PER_NODE * nodes.size + _SPAN_FLOOR:
        table = np.full(hi - lo + 1, -1, np.int64)
        table[nodes - lo] = np.arange(nodes.size)
        out = table[values - lo]
        if (out < 0).any():
            raise ValueError("a value is not among the nodes")
        return out
    out = np.searchsorted(nodes, values).astype(np.int64)
    if (nodes[out] != values).any():
        raise ValueError("a value is not among the nodes")
    return out
