"""Which end of a detected connection is the pre-synaptic one: the end whose neuron holds the darker density.

The synapse network mistakes a T-bar for a post-synaptic density about as
often as it finds the density itself (on held-out synthetic volumes some 40 %
of its detections are a true connection reversed): both are dark patches at
a contact, and the mask and its vectors are symmetric in them. A proofreader
tells them apart by the T-bar — a thicker, darker density than the PSD, on the
side of the vesicles. This module asks the same of the image: for each row,
the darkest grey of its pre neuron within ``radius_nm`` of the pre point and
that of its post neuron within ``radius_nm`` of the post point, after a ~30 nm
box smoothing that averages out single noisy voxels; a row whose pre end is
the brighter one is reversed.

Only the order of two grey levels counts, so the rule holds under any
contrast and brightness; it assumes densities darker than cytoplasm (the
usual EM contrast, fly T-bars). Whether it helps a model is chosen on held-out
data with the threshold (:mod:`napari_connectome.synapses.select`), and a
person can switch it off (``--orient off``) for a domain where post-synaptic
densities are the darker ones.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from napari_connectome.errors import InputError

#: Edge of the box filter applied before taking the darkest voxel, nm.
SMOOTH_NM = 30.0

#: ``read(box)``: a voxel box (z, y, x slices, already clipped to the volume) → (grey levels, neuron ids).
CropReader = Callable[[tuple[slice, slice, slice]], tuple[np.ndarray, np.ndarray]]


def smoothing_voxels(voxel_size) -> tuple[int, ...]:
    """Odd box-filter edges (voxels per axis) covering about :data:`SMOOTH_NM`."""
    return tuple(max(1, int(2 * np.floor((SMOOTH_NM / v - 1) / 2 + 0.5) + 1))
                 for v in np.asarray(voxel_size, dtype=float))


def darkest_near(raw: np.ndarray, labels: np.ndarray, *, origin_nm, voxel_size, point, neuron: int,
                 radius_nm: float) -> float:
    """The darkest smoothed grey level of ``neuron`` within ``radius_nm`` of ``point`` in a crop.

    Parameters
    ----------
    raw, labels
        A crop (z, y, x): grey levels, already smoothed, and neuron ids.
    origin_nm
        World position of the crop's voxel (0, 0, 0).
    voxel_size
        nm.
    point
        nm.
    neuron
        The neuron whose voxels count.
    radius_nm
        Ball radius.

    Returns
    -------
    float
        NaN when the ball holds no voxel of the neuron.
    """
    vs = np.asarray(voxel_size, float)
    centres = np.asarray(origin_nm, float) + np.stack(np.indices(raw.shape), axis=-1) * vs
    ball = (np.linalg.norm(centres - np.asarray(point, float), axis=-1) <= radius_nm) & (labels == neuron)
    return float(raw[ball].min()) if ball.any() else float("nan")


def reversed_rows(pre: np.ndarray, post: np.ndarray, pre_id: np.ndarray, post_id: np.ndarray, *, read: CropReader,
                  shape, voxel_size, offset=(0.0, 0.0, 0.0), radius_nm: float) -> np.ndarray:
    """Rows whose pre end is brighter than their post end (see the module notes): they point the wrong way.

    Parameters
    ----------
    pre, post
        ``(n, 3)`` nm.
    pre_id, post_id
        ``(n,)`` neuron ids at those points.
    read
        Reads a clipped voxel box of the grey levels and the neuron ids (:data:`CropReader`).
    shape, voxel_size, offset
        The volume's grid.
    radius_nm
        How far from each point its neuron's darkest voxel is looked for.

    Returns
    -------
    ``(n,)`` bool: True where the row is reversed; False where it is not, or where a ball holds no voxel of
    its neuron (nothing to compare).
    """
    from scipy.ndimage import uniform_filter

    if not np.isfinite(radius_nm) or radius_nm <= 0:
        raise InputError("orientation", f"the radius must be a distance > 0 nm, got {radius_nm}")
    pre = np.asarray(pre, float).reshape(-1, 3)
    post = np.asarray(post, float).reshape(-1, 3)
    out = np.zeros(len(pre), dtype=bool)
    vs, off, shape = np.asarray(voxel_size, float), np.asarray(offset, float), np.asarray(shape, int)
    smooth = smoothing_voxels(vs)
    margin = np.asarray(smooth) // 2 + 1
    for k in range(len(pre)):
        lo = np.floor((np.minimum(pre[k], post[k]) - radius_nm - off) / vs).astype(int) - margin
        hi = np.ceil((np.maximum(pre[k], post[k]) + radius_nm - off) / vs).astype(int) + 1 + margin
        lo, hi = np.clip(lo, 0, shape), np.clip(hi, 0, shape)
        if np.any(hi <= lo):
            continue
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
        raw, labels = read(box)
        grey = uniform_filter(np.asarray(raw, dtype=np.float32), size=smooth, mode="reflect")
        origin = off + lo * vs
        dark = [darkest_near(grey, labels, origin_nm=origin, voxel_size=vs, point=p, neuron=int(n),
                             radius_nm=radius_nm)
                for p, n in ((pre[k], pre_id[k]), (post[k], post_id[k]))]
        out[k] = bool(dark[0] > dark[1])  # False when either is NaN
    return out


def array_reader(raw: np.ndarray, labels: np.ndarray) -> CropReader:
    """A :data:`CropReader` over two in-memory volumes on one grid."""
    if tuple(np.shape(raw)) != tuple(np.shape(labels)):
        raise InputError("orientation", f"the raw volume has shape {tuple(np.shape(raw))}, the labels "
                                        f"{tuple(np.shape(labels))}: they must share one grid")
    return lambda box: (np.asarray(raw[box]), np.asarray(labels[box]))
