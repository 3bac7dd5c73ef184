"""Local shape descriptors (LSDs) of a label volume, an auxiliary training target (numpy + scipy).

Sheridan et al. (2022, "Local shape descriptors for neuron segmentation")
train a network to predict, at every voxel, statistics of the object it
belongs to within a Gaussian window around it. This module follows the
definition of funkelab/lsd (``get_local_shape_descriptors``, mode
``"gaussian"``) with its 10 channels, in this order:

====  =======================================================================
0-2   mean offset (z, y, x): Gaussian-weighted mean position of the voxel's own
      object around it, minus the voxel's position, divided by sigma (nm),
      mapped by ``0.5 + 0.5 * v`` to [0, 1]. **Sign**: a value above 0.5 means the
      object's local centre of mass lies at a *higher* coordinate along that axis,
      i.e. the offset points from the voxel towards the centre.
3-5   variance (zz, yy, xx) of the positions, divided by sigma^2 (nm^2).
6-8   Pearson correlation (zy, zx, yx), mapped by ``0.5 + 0.5 * v`` to [0, 1].
9     size: the Gaussian-weighted fraction of the window inside the object
      (the Gaussian sums to 1, so this lies in [0, 1]).
====  =======================================================================

Everything is clipped to [0, 1]; background (label 0) is 0 in every channel.

How it is computed (why it is fast enough for a training loop): the
statistics at voxel ``j`` of object ``l`` only involve voxels of ``l``, so for
each object the work is done on its bounding box alone -- outside it the
object's mask is 0, so a zero-padded filter of the box is exact there (the
Gaussian's 3-sigma truncation is the same as in scipy). Positions are taken
relative to ``j``: the sums ``sum_d G(d) m(j + d) d^p`` are correlations of
the mask with the separable kernels ``G(d) d^p`` (p = 0, 1, 2 per axis), which
needs 19 one-dimensional passes per object instead of lsd's 10 full 3D
Gaussian filters, and avoids subtracting large absolute coordinates.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: Channels of :func:`local_shape_descriptors`.
LSD_CHANNELS = 10
#: Gaussian truncation (in sigmas), as in lsd and ``scipy.ndimage.gaussian_filter(truncate=3.0)``.
TRUNCATE = 3.0
#: lsd clamps variances below this (nm^2) before dividing by them (Pearson coefficients).
MIN_VARIANCE = 1e-3


def _kernels(sigma_vox: float, spacing: float) -> list[np.ndarray]:
    """1D kernels ``G(d) * (d * spacing)^p`` for p = 0, 1, 2 (``G`` as scipy's, summing to 1)."""
    radius = int(TRUNCATE * float(sigma_vox) + 0.5)
    d = np.arange(-radius, radius + 1, dtype=np.float64)
    if sigma_vox > 0:
        g = np.exp(-0.5 * (d / sigma_vox) ** 2)
    else:
        g = (d == 0).astype(np.float64)
    g /= g.sum()
    dn = d * spacing  # offsets in nm
    return [g, g * dn, g * dn * dn]


def _filter(mask: np.ndarray, kernels, crop) -> dict[tuple[int, int, int], np.ndarray]:
    """``sum_d G(d) m(j + d) prod_a d_a^{p_a}`` for every order (p_z, p_y, p_x) with sum <= 2.

    ``crop`` (one slice per axis, in ``mask``'s coordinates) is where the result is
    wanted; each axis is cropped right after its pass so the next passes run on less.
    """
    # orders along z first, then y, then x: 3 + 6 + 10 passes
    out: dict[tuple[int, ...], np.ndarray] = {(): mask}
    for axis in range(3):
        nxt = {}
        for order, arr in out.items():
            for p in range(3 - sum(order)):
                f = ndimage.correlate1d(arr, kernels[axis][p], axis=axis, mode="constant", cval=0.0)
                sl = [slice(None)] * 3
                sl[axis] = crop[axis]
                nxt[(*order, p)] = f[tuple(sl)]
        out = nxt
    return out


def local_shape_descriptors(
    labels: np.ndarray,
    *,
    sigma_nm: float | tuple[float, float, float],
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0),
    roi: tuple[slice, slice, slice] | None = None,
) -> np.ndarray:
    """The 10 local shape descriptors of every voxel (see the module docstring).

    Parameters
    ----------
    labels
        Integer labels ``(z, y, x)``; 0 is background (no descriptors).
    sigma_nm
        Gaussian sigma in nm, one value or one per axis (Sheridan et al.: about 80 nm).
    voxel_size
        Voxel size in nm (z, y, x); an anisotropic size makes the window
        anisotropic in voxels and the statistics are in nm.
    roi
        Where descriptors are wanted (slices of ``labels`` with steps of 1;
        default: everywhere). Objects are still seen in the whole of ``labels``,
        so a training target cropped from a larger label patch is not truncated
        at the crop.

    Returns
    -------
    np.ndarray
        float32 ``(10, *roi shape)`` in [0, 1].
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be 3D (z, y, x), got shape {labels.shape}")
    sigma = np.broadcast_to(np.asarray(sigma_nm, dtype=np.float64), (3,))
    vs = np.asarray(voxel_size, dtype=np.float64).reshape(3)
    if np.any(sigma <= 0) or np.any(vs <= 0):
        raise ValueError(f"sigma_nm {sigma_nm} and voxel_size {voxel_size} must be positive")
    if roi is None:
        roi = tuple(slice(0, n) for n in labels.shape)
    roi = tuple(slice(*s.indices(n)[:2]) for s, n in zip(roi, labels.shape, strict=True))
    out_shape = tuple(s.stop - s.start for s in roi)
    lsd = np.zeros((LSD_CHANNELS, *out_shape), dtype=np.float32)
    kernels = [_kernels(s / v, v) for s, v in zip(sigma, vs, strict=True)]
    # consecutive ids 1..n (labels may be large ints); find_objects gives each one's bounding box
    ids, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(labels.shape)
    zero = np.searchsorted(ids, 0)
    has_zero = zero < len(ids) and ids[zero] == 0
    dense = inverse + (0 if has_zero else 1)  # background -> 0, objects -> 1..n
    for i, box in enumerate(ndimage.find_objects(dense)):
        if box is None:
            continue
        # the part of the roi inside this box, in box and in roi coordinates
        crop, dest = [], []
        for b, r in zip(box, roi, strict=True):
            lo, hi = max(b.start, r.start), min(b.stop, r.stop)
            crop.append(slice(lo - b.start, hi - b.start))
            dest.append(slice(lo - r.start, hi - r.start))
        if any(c.stop <= c.start for c in crop):
            continue
        mask = (dense[box] == i + 1).astype(np.float32)
        m = _filter(mask, kernels, crop)
        inside = mask[tuple(crop)] > 0
        count = m[(0, 0, 0)]
        safe = np.where(inside, count, 1.0)
        mean = [m[(1, 0, 0)] / safe, m[(0, 1, 0)] / safe, m[(0, 0, 1)] / safe]
        second = {(0, 0): (2, 0, 0), (1, 1): (0, 2, 0), (2, 2): (0, 0, 2),
                  (0, 1): (1, 1, 0), (0, 2): (1, 0, 1), (1, 2): (0, 1, 1)}
        cov = {k: m[o] / safe - mean[k[0]] * mean[k[1]] for k, o in second.items()}
        var = [np.maximum(cov[(a, a)], MIN_VARIANCE) for a in range(3)]
        desc = np.empty((LSD_CHANNELS, *inside.shape), dtype=np.float32)
        for a in range(3):
            desc[a] = 0.5 + 0.5 * mean[a] / sigma[a]
            desc[3 + a] = var[a] / sigma[a] ** 2  # lsd returns the clamped variance too
        for c, (a, b) in enumerate(((0, 1), (0, 2), (1, 2))):
            desc[6 + c] = 0.5 + 0.5 * cov[(a, b)] / np.sqrt(var[a] * var[b])
        desc[9] = count
        target = lsd[(slice(None), *dest)]
        target[:, inside] = desc[:, inside]
    np.clip(lsd, 0.0, 1.0, out=lsd)
    return lsd


__all__ = ["LSD_CHANNELS", "local_shape_descriptors"]
