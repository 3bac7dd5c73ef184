"""Where contacts are: the voxel faces between supervoxels, found by scans of the volume.

The region graph keeps only statistics per contact, not where it lies; a
candidate needs a point to show. The scans read the edited supervoxel
volume in slabs along z (one slice of overlap, so every face is seen once)
and keep per-row sums only (pass 1) or one best face per candidate (pass 2):
memory grows with the number of graph rows and candidates, not the volume.

Both passes depend only on the supervoxel voxels, which graph edits (merges,
graph-cut splits, their undo) leave alone. :func:`locate_faces` therefore
keeps, per proofreader and for as long as its supervoxel voxels stay the
same (the same overlay patches on), every row's face count, summed face
centres and the box its faces lie in, and every candidate's nearest face
keyed by the rows it takes faces from. After a graph edit only the
candidates whose rows are new are located again, by scanning just the boxes
their rows' faces lie in. A split inside a supervoxel switches a patch on
(or off, on undo) and so drops the cache. Results are identical to the
uncached scans (see :func:`locate_faces`). The row scan of the base
supervoxels (no patch on) is also written to the project's graph folder
(:data:`GEOMETRY_FILE`, stamped with the graph file's digest and the scan
grid), so the next session on the project reads it instead of scanning.
"""

from __future__ import annotations

import json
import threading
import weakref
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

#: Slices of z read at once by a scan.
SLAB_Z = 16
#: The row scan of the base supervoxels, kept in the project's graph folder for later sessions: the
#: supervoxel voxels never change without a split inside one, and a 1024³ scan takes minutes.
GEOMETRY_FILE = "contact_geometry.npz"
#: Whether :func:`locate_faces` reuses earlier scans of the same supervoxel
#: voxels (off: every call scans the whole volume twice, the reference).
LOCATE_CACHE = True
#: Least number of candidate locations kept from earlier calls (the most
#: recent are kept; an undo brings the candidates of one edit ago back).
MEMO_MIN_ENTRIES = 4096
#: Most candidates located by scanning their own boxes; more are located by
#: one scan of the whole volume.
MAX_BOXES = 256
#: Boxes adding up to more than this fraction of the volume: one whole-volume scan instead.
WHOLE_SCAN_FRACTION = 0.5

Box = tuple[tuple[int, int, int], tuple[int, int, int]]


def position_lookup(ids: np.ndarray, n_voxels: int):
    """``block -> np.searchsorted(ids, block)`` for label blocks, by a table where a table pays.

    A whole-volume scan maps every voxel to its supervoxel's position: at
    1024³ (1.5 M sorted ids) ``searchsorted`` was ~2.7 s a 16-slice slab, most
    of the scan. When the ids are not much sparser than the voxels to map,
    the answers for every value up to the largest id are made once (one
    ``searchsorted`` of ``0..max + 1``) and looked up; a value above the
    largest id maps to ``len(ids)``, as ``searchsorted`` maps it. The same
    positions either way (tested), so faces and their order do not change.
    """
    ids = np.asarray(ids, np.uint64)
    top = int(ids[-1]) if ids.size else 0
    if n_voxels < 4 * (top + 2) or top >= 1 << 28:
        return lambda block: np.searchsorted(ids, np.asarray(block).astype(np.uint64, copy=False))
    table = np.searchsorted(ids, np.arange(top + 2, dtype=np.uint64))
    cap = np.uint64(top + 1)

    def lookup(block: np.ndarray) -> np.ndarray:
        return table[np.minimum(np.asarray(block).astype(np.uint64, copy=False), cap)]

    return lookup


def _faces(proofreader, want: np.ndarray, *, slab_z: int = SLAB_Z,
           box: Box | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(rows, coords)`` per slab and axis: region-graph rows of faces between two supervoxels, face centres.

    ``coords`` are ``(F, 3)`` float64 voxel coordinates (level 0) of the face
    centres (half a voxel past the low voxel along the face's axis). Only
    rows with ``want[row]`` are yielded.

    Parameters
    ----------
    box
        ``(lo, hi)``: only faces whose low voxel lies in ``[lo, hi)`` are
        needed (more may be yielded). Slabs stay on the same grid of
        ``slab_z`` slices as a whole-volume scan and a crop keeps C order, so
        every face in the box comes in the same order as in a whole-volume
        scan (ties between equally near faces break the same way).
    """
    st = proofreader.state
    arr = proofreader.supervoxel_volume().levels[0].array
    shape = tuple(int(s) for s in arr.shape)
    if box is None:
        lo, hi = (0, 0, 0), shape
    else:
        lo = tuple(max(0, int(a)) for a in box[0])
        hi = tuple(min(s, int(b)) for s, b in zip(shape, box[1], strict=True))
        if any(a >= b for a, b in zip(lo, hi, strict=True)):
            return
    # The high voxel of a face is one past its low voxel.
    y_sl = slice(lo[1], min(shape[1], hi[1] + 1))
    x_sl = slice(lo[2], min(shape[2], hi[2] + 1))
    positions = position_lookup(st.ids, (hi[0] - lo[0] + 1) * (y_sl.stop - y_sl.start) * (x_sl.stop - x_sl.start))
    for z0 in range((lo[0] // slab_z) * slab_z, hi[0], slab_z):
        z_core = min(hi[0], z0 + slab_z)
        z1 = min(shape[0], z_core + 1)
        block = np.asarray(arr[z0:z1, y_sl, x_sl])
        pos = positions(block)
        n_core = z_core - z0
        for ax in range(3):
            if ax == 0:
                a, b = pos[:-1][:n_core], pos[1:][:n_core]
            else:
                core = pos[:n_core]
                lo_k = [slice(None)] * 3
                hi_k = [slice(None)] * 3
                lo_k[ax] = slice(0, -1)
                hi_k[ax] = slice(1, None)
                a, b = core[tuple(lo_k)], core[tuple(hi_k)]
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
            idx[:, 1] += y_sl.start
            idx[:, 2] += x_sl.start
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
                  targets: np.ndarray, *, box: Box | None = None) -> np.ndarray:
    """For every candidate, the low voxel of its face nearest to its target point (voxel coordinates).

    Parameters
    ----------
    row_of, cand_of
        Pairs (region-graph row, candidate index), sorted by row: the rows
        whose faces a candidate may take.
    targets
        ``(C, 3)`` target points (voxel coordinates), e.g. contact centroids.
    box
        Scan only this box of low voxels (see :func:`_faces`); it must hold
        every face of the wanted rows for the result to be the whole volume's.

    Returns
    -------
    np.ndarray
        ``(C, 3)`` int64 voxel index; -1 for a candidate with no face. Among
        equally near faces, the first in scan order (slab, axis, C order).
    """
    c = targets.shape[0]
    best_d = np.full(c, np.inf)
    best = np.full((c, 3), -1, np.int64)
    for rows, coords in _faces(proofreader, want, box=box):
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


# ------------------------------------------------------------------ the cache
@dataclass
class _Geometry:
    """What one state of the supervoxel voxels says about every region-graph row, and located candidates."""

    key: tuple
    count: np.ndarray  # (R,) faces per row
    total: np.ndarray  # (R, 3) summed face centres, summed in scan order (as row_centroids)
    lo: np.ndarray  # (R, 3) smallest low-voxel index of a face, per axis (the shape where none)
    hi: np.ndarray  # (R, 3) largest low-voxel index + 1 (0 where none)
    located: OrderedDict = field(default_factory=OrderedDict)  # candidate rows (bytes) -> (3,) low voxel


@dataclass
class _Entry:
    """One proofreader's cache: the scans of its supervoxel voxels now, and the lock of their use."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    geometry: _Geometry | None = None


_entries: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_entries_lock = threading.Lock()


def _entry(proofreader) -> _Entry:
    with _entries_lock:
        e = _entries.get(proofreader)
        if e is None:
            e = _entries[proofreader] = _Entry()
        return e


def geometry_key(proofreader) -> tuple:
    """What the supervoxel voxels depend on besides the base volume: the overlay patches on, in order.

    Patches are never rewritten (one per logged operation) and the base
    volume is never written, so equal keys mean equal voxels.
    """
    ov = proofreader.overlay
    active = tuple(ov.active)
    return tuple((int(i), id(ov.patches.get(i))) for i in active)


def clear_locate_cache(proofreader=None) -> None:
    """Forget the cached scans of one proofreader (default: of all).

    Not needed for correctness (a change of the supervoxel voxels is seen
    by :func:`geometry_key`); it frees the memory, about 56 bytes per
    region-graph row plus the remembered locations.
    """
    with _entries_lock:
        if proofreader is None:
            _entries.clear()
        else:
            _entries.pop(proofreader, None)


def _scan_rows(proofreader, n_rows: int, shape) -> tuple[np.ndarray, ...]:
    """Per-row face count, summed face centres and low-voxel box of every row, in one scan."""
    want = np.ones(n_rows, bool)
    count = np.zeros(n_rows, np.int64)
    total = np.zeros((n_rows, 3), np.float64)
    # One contiguous array per axis: ufunc.at is fast on those.
    lo = np.repeat(np.asarray(shape, np.float64)[:, None], n_rows, axis=1)
    hi = np.full((3, n_rows), -1.0)
    for rows, coords in _faces(proofreader, want):
        # The same bincounts, in the same order, as row_centroids: the sums are bit-identical.
        count += np.bincount(rows, minlength=n_rows)
        for d in range(3):
            total[:, d] += np.bincount(rows, weights=coords[:, d], minlength=n_rows)
            np.minimum.at(lo[d], rows, coords[:, d])
            np.maximum.at(hi[d], rows, coords[:, d])
    # Face centres are half a voxel past the low voxel along one axis: floor gives the low voxel.
    # int32 where it fits: the boxes are kept as long as the cache, 24 bytes a row.
    itype = np.int32 if max(shape) < 2**31 - 1 else np.int64
    return count, total, np.floor(lo.T).astype(itype), (np.floor(hi.T) + 1).astype(itype)


def _stamp(proofreader, key: tuple) -> str | None:
    """What a stored row scan must match to be this one's: the graph file, its supervoxels, the scan grid.

    None when nothing is stored for this state: overlay patches are on (a split inside a supervoxel
    changed the voxels; such states are not kept), or the project records no graph file to match.
    """
    project = getattr(proofreader, "project", None)
    graph = project.manifest.get("graph") if project is not None else None
    if key[0] or not isinstance(graph, dict) or not graph.get("sha256"):
        return None
    return json.dumps({"version": 1, "graph_sha256": graph["sha256"], "supervoxels": graph.get("supervoxels"),
                       "shape": list(key[1]), "slab_z": key[2], "n_rows": key[3]}, sort_keys=True)


def _rows_file(proofreader):
    return proofreader.project.component_path("graph") / GEOMETRY_FILE


def _load_rows(proofreader, stamp: str | None, n_rows: int) -> tuple[np.ndarray, ...] | None:
    """The stored row scan when it was made for ``stamp``; None otherwise (missing, stale or unreadable)."""
    if stamp is None:
        return None
    try:
        with np.load(_rows_file(proofreader), allow_pickle=False) as f:
            if str(f["stamp"]) != stamp:
                return None
            rows = tuple(np.array(f[k]) for k in ("count", "total", "lo", "hi"))
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None  # a cache: scanning again is always right
    shapes = [(n_rows,), (n_rows, 3), (n_rows, 3), (n_rows, 3)]
    return rows if [r.shape for r in rows] == shapes else None


def _save_rows(proofreader, stamp: str | None, rows: tuple[np.ndarray, ...]) -> None:
    """Keep a base-volume row scan for the next session on this project (not from a read-only one)."""
    if stamp is None or getattr(proofreader, "read_only", True):
        return
    from napari_connectome.atomic import save_npz_atomic

    try:
        save_npz_atomic(_rows_file(proofreader), dict(zip(("count", "total", "lo", "hi"), rows, strict=True),
                                                      stamp=np.array(stamp)))
    except OSError:
        pass  # a full disk or a read-only folder: the next session scans again


def _targets(count, total, row_of, cand_of, n: int) -> np.ndarray:
    """Centroid of each candidate's faces (voxel coordinates); summed in row order, as ever."""
    c_count = np.bincount(cand_of, weights=count[row_of], minlength=n)
    targets = np.zeros((n, 3))
    for d in range(3):
        targets[:, d] = np.bincount(cand_of, weights=total[row_of, d], minlength=n)
    targets /= np.maximum(c_count, 1)[:, None]
    return targets


def _groups(boxes: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[list[int], np.ndarray, np.ndarray]]:
    """Boxes ``[lo, hi)`` joined into bounding boxes until no two overlap: ``(members, lo, hi)``.

    A box scan reads its whole box, so overlapping boxes would read (and
    search) the same voxels twice.
    """
    from scipy.sparse import coo_array
    from scipy.sparse.csgraph import connected_components

    if not boxes:
        return []
    lo = np.array([b[0] for b in boxes], np.int64)
    hi = np.array([b[1] for b in boxes], np.int64)
    label = np.arange(len(boxes))
    while True:
        overlap = ((lo[:, None, :] < hi[None, :, :]) & (lo[None, :, :] < hi[:, None, :])).all(axis=2)
        k, comp = connected_components(coo_array(overlap), directed=False)
        if k == lo.shape[0]:
            break  # only self-overlaps: done
        new_lo = np.full((k, 3), np.iinfo(np.int64).max)
        new_hi = np.full((k, 3), np.iinfo(np.int64).min)
        np.minimum.at(new_lo, comp, lo)
        np.maximum.at(new_hi, comp, hi)
        lo, hi, label = new_lo, new_hi, comp[label]
    return [(np.flatnonzero(label == g).tolist(), lo[g], hi[g]) for g in range(lo.shape[0])]


def locate_faces(proofreader, row_of: np.ndarray, cand_of: np.ndarray, n: int) -> np.ndarray:
    """For each of ``n`` candidates, the low voxel of its face nearest to the centroid of its faces.

    Parameters
    ----------
    proofreader
        An open :class:`~napari_connectome.proofread.Proofreader`.
    row_of, cand_of
        Pairs (region-graph row, candidate index), sorted by row (stable):
        the rows whose faces a candidate may take.
    n
        Number of candidates.

    Returns
    -------
    np.ndarray
        ``(n, 3)`` int64 voxel index; -1 for a candidate with no face.

    Notes
    -----
    With :data:`LOCATE_CACHE` the answer is the same, bit for bit, as two
    whole-volume scans (:func:`row_centroids`, then :func:`nearest_faces`):
    a row's sums add the same face centres in the same order (slabs without
    its faces add exact zeros), a candidate's centroid adds its rows in row
    order either way, and its nearest face is the first nearest in scan
    order, which a box scan on the same slab grid keeps.
    """
    n_rows = int(proofreader.state.rag_u.size)
    if not LOCATE_CACHE:
        want = np.zeros(n_rows, bool)
        want[row_of] = True
        count, total = row_centroids(proofreader, want)
        return nearest_faces(proofreader, want, row_of, cand_of, _targets(count, total, row_of, cand_of, n))

    entry = _entry(proofreader)
    # One locate at a time per proofreader: a second caller waits and then
    # finds the first's scans instead of repeating them.
    with entry.lock:
        key = geometry_key(proofreader)
        shape = tuple(int(s) for s in proofreader.supervoxel_volume().levels[0].array.shape)
        key = (key, shape, SLAB_Z, n_rows)
        geo = entry.geometry
        if geo is None or geo.key != key:
            entry.geometry = None  # drop the old arrays before the scan allocates new ones
            stamp = _stamp(proofreader, key)
            rows = _load_rows(proofreader, stamp, n_rows)
            if rows is None:
                rows = _scan_rows(proofreader, n_rows, shape)
                _save_rows(proofreader, stamp, rows)
            geo = _Geometry(key, *rows)
        targets = _targets(geo.count, geo.total, row_of, cand_of, n)

        # Each candidate's rows, ascending (what its location depends on).
        by_cand = np.argsort(cand_of, kind="stable")
        bounds = np.searchsorted(cand_of[by_cand], np.arange(n + 1))
        rows_sorted = row_of[by_cand].astype(np.int64, copy=False)
        keys = [rows_sorted[bounds[i]:bounds[i + 1]].tobytes() for i in range(n)]
        best = np.full((n, 3), -1, np.int64)
        missing = []
        for i, k in enumerate(keys):
            hit = geo.located.get(k)
            if hit is None:
                missing.append(i)
            else:
                best[i] = hit
        if missing:
            _locate_missing(proofreader, geo, best, missing, rows_sorted, bounds, row_of, cand_of, targets, shape)

        if geometry_key(proofreader) == key[0]:
            # Keep this call's locations (most recently used last) and a bounded tail of older ones.
            for i, k in enumerate(keys):
                geo.located[k] = best[i].copy()
                geo.located.move_to_end(k)
            while len(geo.located) > max(MEMO_MIN_ENTRIES, 2 * n):
                geo.located.popitem(last=False)
            entry.geometry = geo
        # Else the voxels changed during the scans (an edit raced this call):
        # the answer is as good as an uncached one, but nothing is kept.
    return best


def _locate_missing(proofreader, geo: _Geometry, best: np.ndarray, missing: list[int], rows_sorted, bounds,
                    row_of, cand_of, targets, shape) -> None:
    """Nearest faces of the candidates in ``missing``, scanning only the boxes their rows' faces lie in.

    ``rows_sorted[bounds[i]:bounds[i + 1]]`` are candidate ``i``'s rows.
    Many candidates, or boxes that add up to much of the volume: one scan
    of the whole volume for all of them (cheaper than many boxes' reads).
    """
    volume = int(np.prod(shape))
    groups: list[tuple[list[int], np.ndarray, np.ndarray]] | None = None
    if len(missing) <= MAX_BOXES:
        boxes, placed = [], []
        for i in missing:
            r = rows_sorted[bounds[i]:bounds[i + 1]]
            if r.size == 0:
                continue  # no rows: no face
            lo, hi = geo.lo[r].min(axis=0), geo.hi[r].max(axis=0)
            if (hi > lo).all():  # else none of its rows has a face: it stays -1
                boxes.append((lo, hi))
                placed.append(i)
        groups = [([placed[j] for j in members], lo, hi) for members, lo, hi in _groups(boxes)]
        if sum(int(np.prod(hi - lo)) for _, lo, hi in groups) > volume * WHOLE_SCAN_FRACTION:
            groups = None
    if groups is None:
        groups = [(missing, None, None)]
    is_miss = np.zeros(best.shape[0], bool)
    is_miss[np.asarray(missing, np.int64)] = True
    sel = is_miss[cand_of]
    m_rows, m_cands = row_of[sel], cand_of[sel]
    for members, lo, hi in groups:
        cands = np.asarray(members, np.int64)
        local = np.full(best.shape[0], -1, np.int64)
        local[cands] = np.arange(cands.size)
        keep = local[m_cands] >= 0
        g_rows, g_cands = m_rows[keep], local[m_cands[keep]]
        want = np.zeros(geo.count.size, bool)
        want[g_rows] = True
        box = None if lo is None else (tuple(int(x) for x in lo), tuple(int(x) for x in hi))
        best[cands] = nearest_faces(proofreader, want, g_rows, g_cands, targets[cands], box=box)
