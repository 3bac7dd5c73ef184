"""TEASAR skeletonization (kimimaro) of a labels array, anisotropic, in world nm.

Default parameters (:data:`DEFAULT_TEASAR`) are kimimaro's own, which its
authors chose for EM neurons in physical units (nm): a path's invalidation
ball around each vertex has radius ``scale * DBF + const`` = 1.5 × the
distance to the boundary + 300 nm, so side branches shorter than about 300 nm
beyond the parent's surface are not traced (spines and boundary noise are
not branches); ``pdrf_scale = 100000`` and ``pdrf_exponent = 4`` make the
path-finding penalty keep paths in the middle of the object; the soma
settings (detection at a distance to the boundary of 750 nm, acceptance at
3500 nm) only apply to cell bodies, which the crops we proofread rarely hold.
Objects (connected pieces of a label) with at most
:data:`DEFAULT_DUST_VOXELS` voxels get no skeleton: they are too small for a
centre line to mean anything, and their size is a feature of its own.

kimimaro's ``fix_borders`` is off: it roots each skeleton at a point picked
from a Python set, whose order changes when the array is cropped, so the same
segment would get a different skeleton in a crop than in the whole volume,
and an incremental update would not equal a rebuild. Without it the root is
found from the segment alone, and any crop holding the segment with a
one-voxel margin gives identical vertices.
"""

from __future__ import annotations

import numpy as np

from napari_connectome.config import check_voxel_size
from napari_connectome.errors import InputError
from napari_connectome.skeleton.model import Skeleton
from napari_connectome.volume.model import voxel_centre

DEFAULT_TEASAR: dict[str, float] = {
    "scale": 1.5,
    "const": 300.0,  # nm
    "pdrf_scale": 100000.0,
    "pdrf_exponent": 4,
    "soma_acceptance_threshold": 3500.0,  # nm
    "soma_detection_threshold": 750.0,  # nm
    "soma_invalidation_const": 300.0,  # nm
    "soma_invalidation_scale": 2.0,
}
DEFAULT_DUST_VOXELS = 1000


def _teasar_params(teasar: dict | None) -> dict:
    params = dict(DEFAULT_TEASAR)
    if teasar:
        unknown = set(teasar) - set(DEFAULT_TEASAR)
        if unknown:
            raise InputError("teasar", f"unknown parameter(s) {sorted(unknown)}; known: {sorted(DEFAULT_TEASAR)}")
        params.update(teasar)
    return params


def skeletonize_voxels(labels: np.ndarray, *, voxel_size, origin=(0, 0, 0), segment_ids=None,
                       teasar: dict | None = None, dust_voxels: int = DEFAULT_DUST_VOXELS,
                       fix_branching: bool = True) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Skeletons in voxel indices, canonical order (for exact comparisons between crops).

    Returns
    -------
    dict
        ``segment_id -> (index (N, 3) int64 voxel indices + origin, edges (M, 2)
        int32, radii (N,) float32 nm)``, vertices sorted lexicographically and
        edges sorted, so the same object skeletonized in any crop that holds it
        with a margin gives identical arrays.
    """
    import kimimaro

    if labels.ndim != 3:
        raise InputError("labels", f"need a 3D array (z, y, x), got shape {labels.shape}")
    vs = np.asarray(check_voxel_size(voxel_size), dtype=np.float64)
    params = _teasar_params(teasar)
    object_ids = None if segment_ids is None else [int(s) for s in segment_ids if int(s) != 0]
    if object_ids is not None and not object_ids:
        return {}
    if labels.dtype.kind not in "ui":
        raise InputError("labels", f"need integer labels, got {labels.dtype}")
    raw = kimimaro.skeletonize(
        np.ascontiguousarray(labels),
        teasar_params=params,
        anisotropy=tuple(float(x) for x in vs),
        object_ids=object_ids,
        dust_threshold=int(dust_voxels),
        progress=False,
        fix_branching=fix_branching,
        fix_borders=False,
        parallel=1,
    )
    origin = np.asarray(origin, dtype=np.int64)
    out = {}
    for seg, sk in raw.items():
        if len(sk.vertices) == 0:
            continue
        idx = np.rint(np.asarray(sk.vertices, dtype=np.float64) / vs).astype(np.int64) + origin
        uniq, first, inverse = np.unique(idx, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        radii = np.asarray(sk.radius, dtype=np.float32)[first]
        edges = inverse[np.asarray(sk.edges, dtype=np.int64).reshape(-1, 2)]
        edges = np.sort(edges, axis=1)
        edges = edges[edges[:, 0] != edges[:, 1]]
        edges = np.unique(edges, axis=0).astype(np.int32).reshape(-1, 2)
        out[int(seg)] = (uniq, edges, radii)
    return out


def to_world(segment_id: int, parts, *, voxel_size, offset) -> Skeleton:
    """A :class:`Skeleton` from :func:`skeletonize_voxels` output (voxel centres in world nm)."""
    idx, edges, radii = parts
    return Skeleton(segment_id, voxel_centre(idx, voxel_size=voxel_size, offset=offset).astype(np.float32),
                    edges, radii)


def skeletonize(labels: np.ndarray, *, voxel_size, offset=(0.0, 0.0, 0.0), segment_ids=None,
                teasar: dict | None = None, dust_voxels: int = DEFAULT_DUST_VOXELS,
                fix_branching: bool = True) -> dict[int, Skeleton]:
    """Skeletonize every label (or the given ones) of a 3D array with TEASAR.

    Parameters
    ----------
    labels
        ``(z, y, x)`` integer labels; 0 is background.
    voxel_size
        nm per voxel (z, y, x); the distance transform and the path lengths
        use it, so anisotropic data give physical skeletons.
    offset
        World position (nm) of the centre of voxel ``(0, 0, 0)``.
    segment_ids
        Only these labels (default: all).
    teasar
        Overrides of :data:`DEFAULT_TEASAR` (lengths in nm).
    dust_voxels
        Connected pieces with at most this many voxels get no skeleton.
    fix_branching
        Let branches leave the trunk at the best place rather than the first
        one found (slower, cleaner junctions).

    Returns
    -------
    dict
        ``segment_id -> Skeleton`` with vertices in world nm. A label made
        of several disconnected pieces gets one skeleton with several
        components.
    """
    vs = check_voxel_size(voxel_size)
    parts = skeletonize_voxels(labels, voxel_size=vs, segment_ids=segment_ids, teasar=teasar,
                               dust_voxels=dust_voxels, fix_branching=fix_branching)
    return {seg: to_world(seg, p, voxel_size=vs, offset=offset) for seg, p in sorted(parts.items())}
