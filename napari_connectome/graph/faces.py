"""The face pass of the region graph, compiled (numba): one sweep per work unit, no sort of faces.

For every pair of face-adjacent voxels with two different non-zero labels,
the face's value (the boundary map combined over the two voxels, or one
minus the affinity) is added to its edge's count, sum, minimum, maximum and
histogram bin. The NumPy version this replaces built index masks per axis
and sorted every face by its edge (about 60 % of the graph's time at 8
Mvoxels); here each face is visited once and looked up in a hash table of
the unit's label pairs, and only the unit's edges (a few per hundred faces)
are sorted afterwards. Per-edge sums may differ from a sort-then-add in the
last bit (another order of float64 additions); nothing else does.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: How a face combines its two voxels: the boundary map's max, mean or min, or 1 - affinity.
FACE_CODES = {"max": 0, "mean": 1, "min": 2, "affinities": 3}


@njit(cache=True, inline="always")
def _mix(key: np.uint64) -> np.uint64:
    z = key + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True, nogil=True)
def _slot(keys, vals, key):
    """The slot of ``key`` in an open-addressing table (``vals < 0``: empty), or the empty slot it would take."""
    mask = np.uint64(keys.shape[0] - 1)
    i = _mix(key) & mask
    while vals[i] >= 0 and keys[i] != key:
        i = (i + np.uint64(1)) & mask
    return i


@njit(cache=True, nogil=True)
def _boundary_faces(labels, dz, dy, dx):
    """How many faces of the box have two different non-zero labels."""
    n = 0
    sz, sy, sx = labels.shape
    zero = labels.dtype.type(0)
    for z in range(dz):
        for y in range(dy):
            for x in range(dx):
                a = labels[z, y, x]
                if a == zero:
                    continue
                if z + 1 < sz:
                    b = labels[z + 1, y, x]
                    if b != zero and b != a:
                        n += 1
                if y + 1 < sy:
                    b = labels[z, y + 1, x]
                    if b != zero and b != a:
                        n += 1
                if x + 1 < sx:
                    b = labels[z, y, x + 1]
                    if b != zero and b != a:
                        n += 1
    return n


@njit(cache=True, nogil=True)
def _face_edges(labels, values, dz, dy, dx, code, n_faces, cap):
    """Every boundary face's edge (unit-local index) and value, and each edge's two labels.

    Labels are below 2**32 here (the caller compacts larger ones), so a pair is one uint64 key.
    ``cap`` (a power of two) sizes the pair table: small enough to stay in cache; when the unit has
    more than ``cap / 2`` edges the sweep stops and returns no pairs (the caller asks again, larger).
    """
    keys = np.zeros(cap, dtype=np.uint64)
    vals = np.full(cap, -1, dtype=np.int64)
    pairs = np.empty((n_faces, 2), dtype=np.uint64)
    face_edge = np.empty(n_faces, dtype=np.int64)
    face_value = np.empty(n_faces, dtype=np.float32)
    sz, sy, sx = labels.shape
    zero = labels.dtype.type(0)
    n_edges = 0
    f = 0
    last_key = np.uint64(0)
    last_e = -1
    # Axis by axis: the faces of one contact then come in runs, and the last pair is remembered.
    for axis in range(3):
        hz = min(dz, sz - 1) if axis == 0 else dz
        hy = min(dy, sy - 1) if axis == 1 else dy
        hx = min(dx, sx - 1) if axis == 2 else dx
        oz, oy, ox = (1, 0, 0) if axis == 0 else ((0, 1, 0) if axis == 1 else (0, 0, 1))
        for z in range(hz):
            for y in range(hy):
                for x in range(hx):
                    a = labels[z, y, x]
                    if a == zero:
                        continue
                    b = labels[z + oz, y + oy, x + ox]
                    if b == zero or b == a:
                        continue
                    if code == 3:
                        v = np.float32(1.0) - np.float32(values[axis, z + oz, y + oy, x + ox])
                    else:
                        va = np.float32(values[0, z, y, x])
                        vb = np.float32(values[0, z + oz, y + oy, x + ox])
                        if code == 0:
                            v = va if va > vb else vb
                        elif code == 1:
                            v = (va + vb) * np.float32(0.5)
                        else:
                            v = va if va < vb else vb
                    lo, hi = (np.uint64(a), np.uint64(b)) if a < b else (np.uint64(b), np.uint64(a))
                    key = (lo << np.uint64(32)) | hi
                    if key == last_key and last_e >= 0:
                        e = last_e
                    else:
                        i = _slot(keys, vals, key)
                        if vals[i] < 0:
                            if 2 * (n_edges + 1) > cap:
                                return face_edge[:0], face_value[:0], pairs[:0]
                            keys[i] = key
                            vals[i] = n_edges
                            pairs[n_edges, 0] = lo
                            pairs[n_edges, 1] = hi
                            n_edges += 1
                        e = vals[i]
                        last_key, last_e = key, e
                    face_edge[f] = e
                    face_value[f] = v
                    f += 1
    return face_edge, face_value, pairs[:n_edges]


@njit(cache=True, nogil=True)
def _edge_rows(face_edge, face_value, pairs, node_ids, n_bins):
    """Edges keyed by global node positions, in key order, with their statistics and histogram rows."""
    n_edges = pairs.shape[0]
    big_n = np.int64(node_ids.shape[0])
    e_key = np.empty(n_edges, dtype=np.int64)
    for e in range(n_edges):
        gu = np.int64(np.searchsorted(node_ids, pairs[e, 0]))
        gv = np.int64(np.searchsorted(node_ids, pairs[e, 1]))
        e_key[e] = gu * big_n + gv if gu < gv else gv * big_n + gu
    order = np.argsort(e_key)
    rank = np.empty(n_edges, dtype=np.int64)
    for r in range(n_edges):
        rank[order[r]] = r
    count, total, vmin, vmax, h_edge, h_bin, h_count = _edge_stats(face_edge, face_value, rank, n_edges, n_bins)
    return e_key[order], count, total, vmin, vmax, e_key[order][h_edge], h_bin, h_count


@njit(cache=True, nogil=True)
def _edge_stats(face_edge, face_value, rank, n_edges, n_bins):
    """Count, sum, min, max and histogram rows of every edge, edges numbered by ``rank``.

    Faces are bucketed by edge (a counting sort), then each edge's histogram is counted in one
    small scratch row that stays in cache and is emptied as its rows are written: no
    ``edges × bins`` array.
    """
    n_faces = face_edge.shape[0]
    count = np.zeros(n_edges, dtype=np.int64)
    for f in range(n_faces):
        count[rank[face_edge[f]]] += 1
    start = np.zeros(n_edges + 1, dtype=np.int64)
    for e in range(n_edges):
        start[e + 1] = start[e] + count[e]
    fill = start[:-1].copy()
    bucket = np.empty(n_faces, dtype=np.int64)
    for f in range(n_faces):
        e = rank[face_edge[f]]
        bucket[fill[e]] = f
        fill[e] += 1
    total = np.zeros(n_edges, dtype=np.float64)
    vmin = np.empty(n_edges, dtype=np.float32)
    vmax = np.empty(n_edges, dtype=np.float32)
    scratch = np.zeros(n_bins, dtype=np.int64)
    h_edge = np.empty(n_faces, dtype=np.int64)
    h_bin = np.empty(n_faces, dtype=np.uint8)
    h_count = np.empty(n_faces, dtype=np.int64)
    nb = np.float32(n_bins)
    r = 0
    for e in range(n_edges):
        lo_v = np.float32(np.inf)
        hi_v = np.float32(-np.inf)
        acc = 0.0
        for j in range(start[e], start[e + 1]):
            v = face_value[bucket[j]]
            acc += np.float64(v)
            if v < lo_v:
                lo_v = v
            if v > hi_v:
                hi_v = v
            bin_ = np.int64(v * nb)
            if bin_ > n_bins - 1:
                bin_ = n_bins - 1
            scratch[bin_] += 1
        total[e] = acc
        vmin[e] = lo_v
        vmax[e] = hi_v
        for k in range(n_bins):
            if scratch[k]:
                h_edge[r] = e
                h_bin[r] = k
                h_count[r] = scratch[k]
                scratch[k] = 0
                r += 1
    return count, total, vmin, vmax, h_edge[:r], h_bin[:r], h_count[:r]


@njit(cache=True, nogil=True)
def _bincount(flat, hi):
    counts = np.zeros(hi + 1, dtype=np.int64)
    for i in range(flat.shape[0]):
        counts[flat[i]] += 1
    return counts


def dense_counts(flat: np.ndarray, hi: int) -> np.ndarray:
    """``np.bincount`` of non-negative integer labels ``<= hi``, compiled and without the GIL."""
    return _bincount(np.ascontiguousarray(flat), int(hi))


def unit_rows(labels: np.ndarray, values: np.ndarray, core: tuple[int, int, int], *, kind: str, face: str,
              node_ids: np.ndarray, n_bins: int, count_dtype) -> tuple | None:
    """Edge and histogram rows (sorted runs keyed by global node positions) of one unit's faces.

    Rows as :class:`~napari_connectome.graph.rag._EdgeAccumulator` keeps them:
    ``[edge key, count, total, vmin, vmax]`` and ``[hist key, bin, count]``, sorted by key.

    Parameters
    ----------
    labels
        ``(z, y, x)`` supervoxel ids of the unit with one voxel more than ``core`` along each axis where
        the block has it.
    values
        The boundary map on the same box, or affinities ``(3, z, y, x)``.
    core
        The unit's own voxels (faces whose low voxel lies there are its own).
    """
    code = FACE_CODES["affinities"] if kind == "affinities" else FACE_CODES[face]
    vals = np.ascontiguousarray(values if kind == "affinities" else values[None])
    labs = np.ascontiguousarray(labels)
    dz, dy, dx = (int(c) for c in core)
    n_faces = _boundary_faces(labs, dz, dy, dx)
    if n_faces == 0:
        return None
    local = None
    if labs.dtype.itemsize > 4 and int(labs.max()) >= 2**32:
        # Ids of 2**32 and more: number the unit's labels 1.. (0 stays background) for the pair keys.
        local, inverse = np.unique(labs, return_inverse=True)
        labs = inverse.reshape(labs.shape).astype(np.uint32) + np.uint32(local[0] != 0)
        if local[0] != 0:
            local = np.concatenate([[0], local])
    # Contacts span many faces (~40 per edge in compact supervoxels): a table for n_faces / 4 edges
    # stays in cache; a unit with more edges than that is swept again with room for every face.
    cap = 1024
    while cap < n_faces // 2:
        cap *= 2
    face_edge, face_value, pairs = _face_edges(labs, vals, dz, dy, dx, code, n_faces, cap)
    if len(pairs) == 0:
        while cap < 2 * n_faces + 2:
            cap *= 2
        face_edge, face_value, pairs = _face_edges(labs, vals, dz, dy, dx, code, n_faces, cap)
    if local is not None:
        pairs = local[pairs.astype(np.int64)]
    e_key, count, total, vmin, vmax, h_key, h_bin, h_count = _edge_rows(
        face_edge, face_value, pairs.astype(np.uint64), np.ascontiguousarray(node_ids, dtype=np.uint64),
        int(n_bins))
    return ([e_key, count.astype(count_dtype), total, vmin, vmax], [h_key, h_bin, h_count.astype(count_dtype)])
