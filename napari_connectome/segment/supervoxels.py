"""Supervoxels from predicted affinities: distance-transform watershed or mutex watershed."""

from __future__ import annotations

import numpy as np


def nearest_channels(offsets) -> list[int]:
    """Indices of the offsets ``-e_z, -e_y, -e_x`` in that order (ValueError if one is missing)."""
    offsets = [tuple(int(v) for v in o) for o in offsets]
    out = []
    for axis in range(3):
        want = tuple(-1 if a == axis else 0 for a in range(3))
        if want not in offsets:
            raise ValueError(f"affinities have no nearest-neighbour channel {want} (offsets {offsets})")
        out.append(offsets.index(want))
    return out


def boundary_from_affinities(affinities: np.ndarray, offsets, *, symmetric: bool = True) -> np.ndarray:
    """Boundary map ``1 - mean`` of a voxel's nearest-neighbour affinities.

    Parameters
    ----------
    affinities
        ``(C, z, y, x)``; channel for offset ``-e_d`` at voxel ``j`` links ``j`` and ``j - e_d``.
    offsets
        The channels' offsets; the three nearest ones are used.
    symmetric
        Average over all six links of a voxel (the three stored at ``j`` and the
        three stored at ``j + e_d``), so a one-voxel membrane is centred on
        itself; False uses only the three stored at ``j``. At the volume's
        edge only the links that exist are averaged.

    Returns
    -------
    float32 ``(z, y, x)`` in [0, 1], 1 = membrane.
    """
    idx = nearest_channels(offsets)
    nn = affinities[idx].astype(np.float32)
    total = nn.sum(axis=0)
    count = np.full(nn.shape[1:], 3.0, dtype=np.float32)
    if symmetric:
        for d in range(3):
            lo = [slice(None)] * 3
            hi = [slice(None)] * 3
            lo[d], hi[d] = slice(0, -1), slice(1, None)
            total[tuple(lo)] += nn[d][tuple(hi)]
            count[tuple(lo)] += 1
    return np.clip(1.0 - total / count, 0.0, 1.0)


def watershed_supervoxels(boundary: np.ndarray, *, threshold: float = 0.5, sigma: float = 1.0,
                          min_distance: int = 2) -> np.ndarray:
    """Supervoxels by a seeded watershed of the boundary map, seeds from its distance transform.

    Voxels with ``boundary < threshold`` are inside cells; the maxima of their
    (Gaussian-smoothed) distance to the nearest boundary voxel seed a
    watershed of ``boundary`` over the whole volume, so every voxel gets a
    supervoxel (no background 0).

    Parameters
    ----------
    boundary
        ``(z, y, x)`` in [0, 1], 1 = membrane.
    threshold
        Boundary level below which a voxel counts as inside.
    sigma
        Smoothing of the distance transform before finding maxima (voxels; 0 = none).
    min_distance
        Minimum distance between seeds (voxels).

    Returns
    -------
    uint32 labels from 1.
    """
    from scipy import ndimage as ndi
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    inside = boundary < threshold
    dist = ndi.distance_transform_edt(inside).astype(np.float32)
    if sigma > 0:
        dist = ndi.gaussian_filter(dist, sigma)
    peaks = peak_local_max(dist, min_distance=min_distance, labels=inside.astype(np.int32),
                           exclude_border=False)
    if len(peaks) == 0:  # nothing inside a cell (skimage then gives a (0, 2) array even in 3D)
        return np.ones(boundary.shape, dtype=np.uint32)
    markers = np.zeros(boundary.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(boundary, markers).astype(np.uint32)


def mutex_supervoxels(affinities: np.ndarray, offsets, *, bias_short: float = 0.5,
                      bias_long: float = 0.5) -> np.ndarray:
    """Supervoxels (or a segmentation) by the mutex watershed (``mwatershed``) on all offsets.

    Edge weight ``affinity - bias`` (positive attracts, negative repels), nearest
    offsets with ``bias_short``, the long-range ones with ``bias_long`` (a
    higher bias makes long-range edges repulsive more often: more splits).

    Returns
    -------
    uint32 labels from 1 (every voxel labelled).
    """
    try:
        import mwatershed
    except ImportError as exc:  # optional extra
        raise ImportError("mutex watershed needs mwatershed: pip install napari-connectome[segment]") from exc
    offsets = [list(int(v) for v in o) for o in offsets]
    near = set(nearest_channels(offsets))
    bias = np.array([bias_short if c in near else bias_long for c in range(len(offsets))], dtype=np.float64)
    weights = affinities.astype(np.float64) - bias[:, None, None, None]
    labels = np.asarray(mwatershed.agglom(weights, offsets))
    _, inverse = np.unique(labels, return_inverse=True)
    return (inverse.reshape(labels.shape) + 1).astype(np.uint32)
