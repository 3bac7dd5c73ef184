"""Array helpers the whole engine shares: the sorted distinct values of an integer array, fast."""

from __future__ import annotations

import numpy as np


def distinct(values) -> np.ndarray:
    """``np.unique(values)``: the sorted distinct values, flattened.

    Integer and boolean arrays are sorted and their runs read off. NumPy 2.3+ answers a plain
    ``np.unique`` of integers from a hash table, which on this project's arrays (ids and serial numbers,
    mostly distinct) is ~60x slower than sorting: 1.7 s against 26 ms for 1.4 M candidates' serials, every
    time a list of candidates changed at 1024³. Other dtypes (NaN handling) go to ``np.unique``.
    """
    values = np.asarray(values)
    if values.dtype.kind not in "iub":
        return np.unique(values)
    flat = np.sort(values, axis=None)
    if flat.size < 2:
        return flat
    keep = np.empty(flat.size, bool)
    keep[0] = True
    np.not_equal(flat[1:], flat[:-1], out=keep[1:])
    return flat[keep]
