"""Neuron ids at synapse points, read from a label volume."""

from __future__ import annotations

import numpy as np

from napari_connectome.errors import InputError
from napari_connectome.volume import Level, MultiscaleVolume


def _level0(volume: MultiscaleVolume) -> Level:
    level = volume.levels[0]
    if len(level.spatial) != level.ndim or level.ndim != 3:
        raise InputError(volume.source,
                         f"label volume has axes {level.axes}; neuron ids need three spatial axes (z, y, x)")
    return level


def points_outside(volume: MultiscaleVolume, points_nm: np.ndarray) -> np.ndarray:
    """A mask of the points (``(n, 3)`` nm) whose voxel lies outside ``volume``'s finest level."""
    level = _level0(volume)
    idx = level.voxel_at(np.asarray(points_nm, dtype=np.float64).reshape(-1, 3))
    return ((idx < 0) | (idx >= np.asarray(level.shape))).any(axis=1)


def labels_at(volume: MultiscaleVolume, points_nm: np.ndarray) -> np.ndarray:
    """The label (uint64) of ``volume``'s finest level at each point (``(n, 3)`` nm, z y x).

    Reads one chunk at a time, only the chunks the points fall in, so a few
    synapses in a large volume cost a few chunk reads.

    Raises
    ------
    InputError
        Points outside the volume (how many, and the volume's extent).
    """
    level = _level0(volume)
    points = np.asarray(points_nm, dtype=np.float64).reshape(-1, 3)
    out = np.zeros(len(points), np.uint64)
    if not len(points):
        return out
    outside = points_outside(volume, points)
    if outside.any():
        extent = ", ".join(f"{a:g}–{b:g}" for a, b in zip(level.roi.begin, level.roi.end, strict=True))
        raise InputError(volume.source,
                         f"{int(outside.sum())} of {len(points)} points lie outside the label volume "
                         f"(z, y, x extent {extent} nm)")
    idx = level.voxel_at(points)
    chunks = np.asarray(level.chunks, dtype=np.int64)
    block = idx // chunks
    blocks, which = np.unique(block, axis=0, return_inverse=True)
    which = which.reshape(-1)
    for b, lo in enumerate(blocks * chunks):
        hi = np.minimum(lo + chunks, level.shape)
        data = level.read(level.roi_of(tuple(slice(int(a), int(z)) for a, z in zip(lo, hi, strict=True))))
        rows = np.flatnonzero(which == b)
        local = idx[rows] - lo
        out[rows] = data[local[:, 0], local[:, 1], local[:, 2]].astype(np.uint64)
    return out


def volume_labeller(volume: MultiscaleVolume):
    """A callable ``points_nm -> ids`` over ``volume`` (for ``gt_labels`` and ``read_cremi(labels=)``)."""
    return lambda points_nm: labels_at(volume, points_nm)
