"""Random edit sequences on the demo project, shared by the property tests (merges, splits, undos, redos)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

VS = np.array([20.0, 10.0, 10.0])
SHAPE = (6, 24, 24)
KW = {"shape": SHAPE, "n_bodies": 4, "n_supervoxels": 24, "seed": 11}


def nm(idx):
    return tuple(float(x) for x in np.asarray(idx) * VS)


OPS = st.one_of(
    st.tuples(st.just("merge"), st.integers(0, 47), st.integers(0, 47)),
    st.tuples(st.just("split"), st.integers(0, 47), st.integers(0, 1000)),
    st.tuples(st.just("inside"), st.integers(0, 47), st.integers(0, 1000)),
    st.tuples(st.just("new"), st.integers(0, 1000), st.integers(0, 1000)),
    st.tuples(st.just("undo"), st.just(0), st.just(0)),
    st.tuples(st.just("redo"), st.just(0), st.just(0)),
)


def partition(mapping):
    ids, segs = mapping
    groups: dict[int, set[int]] = {}
    for s, g in zip(ids.tolist(), segs.tolist(), strict=True):
        groups.setdefault(g, set()).add(s)
    return {frozenset(v) for v in groups.values()}


def run_op(pr, op, points):
    """Apply one drawn operation to the proofreader ``pr`` (an edit it refuses raises InputError)."""
    kind, i, k = op
    p = points[i % len(points)]
    if kind == "merge":
        pr.merge(nm(p), nm(points[k]))
    elif kind == "undo":
        pr.undo()
    elif kind == "redo":
        pr.redo()
    elif kind == "split":
        seg = pr.segment_at(nm(p))
        same = [q for q in points if q != p and pr.segment_at(nm(q)) == seg]
        if not same:
            return
        pr.split(sources_nm=[nm(p)], sinks_nm=[nm(same[k % len(same)])])
    elif kind == "new":  # merge two supervoxels minted by splits inside (links beyond the base graph)
        volume = pr.supervoxel_volume().levels[0].array[:, :, :]
        minted = np.unique(volume[volume > pr.state.ids[pr.state.n_base - 1]])
        if minted.size < 2:
            return
        a, b = minted[i % minted.size], minted[k % minted.size]
        pr.merge(nm(np.argwhere(volume == a)[0]), nm(np.argwhere(volume == b)[0]))
    else:  # inside: two voxels of the supervoxel under p, as it is now
        volume = pr.supervoxel_volume().levels[0].array[:, :, :]
        sv = volume[p]
        voxels = np.argwhere(volume == sv)
        q = voxels[k % len(voxels)]
        pr.split(sources_nm=[nm(p)], sinks_nm=[nm(q)], inside=True)
