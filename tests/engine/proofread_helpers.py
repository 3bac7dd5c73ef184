"""Helpers shared by the proofreading tests."""

from __future__ import annotations

import numpy as np


def distinct_points(pr, sv: np.ndarray, k: int) -> list[tuple[int, int, int]]:
    """``k`` voxels (scan order) in ``k`` different segments of the current state."""
    out, segs = [], set()
    for p in map(tuple, np.argwhere(sv > 0)):
        s = pr.segment_of(int(sv[p]))
        if s not in segs:
            segs.add(s)
            out.append(p)
            if len(out) == k:
                return out
    raise AssertionError("not enough segments")
