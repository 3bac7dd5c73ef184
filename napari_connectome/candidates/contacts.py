"""Where contacts are: the voxel faces between supervoxels, found by one or two scans of the volume.

The region graph keeps only statistics per contact, not where it lies; a
candidate needs a point to show. The scans read the edited supervoxel
volume in slabs along z (one slice of overlap, so every face is seen once)
and keep per-row sums only (pass 1) or one best face per candidate (pass 2):
memory grows with the number of graph rows and candidates, not the volume.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

#: Slices of z read at once by a scan.
SLAB_Z = 16


def _faces(proofreader, want: np.ndarray, *, slab_z: int = SLAB_Z) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(rows, coords)`` per slab: region-graph rows of faces between two supervoxels, and face centres.

    ``coords`` are ``(F, 3)`` float64 voxel coordinates (level 0) of the face
    centres (half a voxel past the low voxel along the face's axis). Only
    rows with ``want[row]`` are yielded.
    """
    st = proofreader.state
    arr = proofreader.supervoxel_volume().levels[0].array
    shape = tuple(int(s) for s in arr.shape)
    for z0 in range(0, shape[0], slab_z):
        z_core = min(shape[0], z0 + slab_z)
        z1 = min(shape[0], z_core + 1)
        block = np.asarray(arr[z0:z1, :, :])
        pos = np.searchsorted(st.ids, block.astype(np.uint64, copy=False))
        n_core = z_core - z0
        for ax in range(3):
            if ax == 0:
                a, b = pos[:-1][:n_core], pos[1:][:n_core]
            else:
                core = pos[:n_core]
                lo = [slice(None)] * 3
                hi = [slice(None)] * 3
                lo[ax] = slice(0, -1)
                hi[ax] = slice(1, None)
                a, b = core[tuple(lo)], core[tuple(hi)]
            mask = (a != b) & (a > 0) & (b > 0)
            if not mask.any():
                continue
            u, v = a[mask], b[mask]
            rows = st.rag_rows(np.minimum(u, v), np.maximum(u, v))
            keep = rows >= 0
            keep[keep] = want[rows[keep]]
            if not keep.any():
                continue
            idx = np.argwhere(mask)[keep].astype(np.float64)
            idx[:, 0] += z0
            idx[:, ax] += 0.5
            yield rows[keep], idx


def row_centroids(proofreader, want: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Faces and summed face centres (voxel coordinates) of every wanted region-graph row."""
    n = want.size
    count = np.zeros(n, np.int64)
    total = np.zeros((n, 3), np.float64)
    for rows, coords in _faces(proofreader, want):
        count += np.bincount(rows, minlength=n)
        for d in range(3):
            total[:, d] += np.bincount(rows, weights=coords[:, d], minlength=n)
    return count, total


def nearest_faces(proofreader, want: np.ndarray, row_of: np.ndarray, cand_of: np.ndarray,
                  targets: np.ndarray) -> np.ndarray:
    """For every candidate, the low voxel of its face nearest to its target point (voxel coordinates).

    Parameters
    ----------
    row_of, cand_of
        Pairs (region-graph row, candidate index), sorted by row: the rows
        whose faces a candidate may take.
    targets
        ``(C, 3)`` target points (voxel coordinates), e.g. contact centroids.

    Returns
    -------
    np.ndarray
        ``(C, 3)`` int64 voxel index; -1 for a candidate with no face.
    """
    c = targets.shape[0]
    best_d = np.full(c, np.inf)
    best = np.full((c, 3), -1, np.int64)
    for rows, coords in _faces(proofreader, want):
        lo = np.searchsorted(row_of, rows, side="left")
        hi = np.searchsorted(row_of, rows, side="right")
        reps = hi - lo
        if not reps.any():
            continue
        face = np.repeat(np.arange(rows.size), reps)
        starts = np.repeat(lo - (np.cumsum(reps) - reps), reps)
        cand = cand_of[starts + np.arange(face.size)]
        d = ((coords[face] - targets[cand]) ** 2).sum(axis=1)
        order = np.lexsort((d, cand))
        cand_s, d_s, face_s = cand[order], d[order], face[order]
        first = np.ones(cand_s.size, bool)
        first[1:] = cand_s[1:] != cand_s[:-1]
        cand_s, d_s, face_s = cand_s[first], d_s[first], face_s[first]
        better = d_s < best_d[cand_s]
        best_d[cand_s[better]] = d_s[better]
        # The low voxel of the face: a real voxel of one of the two supervoxels.
        best[cand_s[better]] = np.floor(coords[face_s[better]]).astype(np.int64)
    return best
