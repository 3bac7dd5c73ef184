"""Synful-style synapse targets: a post-synaptic mask and, inside it, the vector to the pre point.

For a table of pre→post connections (one row each: pre point, post point in
world nm, and the post neuron's label) and the label volume:

* a voxel is in the **mask** when its centre lies within ``mask_radius_nm``
  (Euclidean, in nm, so anisotropic voxels are respected) of a row's post
  point and the voxel carries that row's ``post_id`` label (the mask stays
  inside the post-synaptic neuron, as in Buhmann et al. 2021);
* its **vector** is ``(pre - voxel centre) / 100`` (z, y, x, units of
  100 nm) for that row; where balls of several rows overlap, the row with
  the nearest post point wins (the first in table order on an exact tie);
* outside every mask the mask is 0 and the vector is 0 (the loss ignores it).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

#: Length of one unit of the vectors, in nm (the network's convention).
VECTOR_UNIT_NM = 100.0


def _columns(rows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(pre, post, post_id)`` of a synapse table: a mapping of columns or an object with ``rows()``."""
    if not isinstance(rows, Mapping) and hasattr(rows, "rows"):
        rows = rows.rows()
    pre = np.asarray(rows["pre"], dtype=np.float64).reshape(-1, 3)
    post = np.asarray(rows["post"], dtype=np.float64).reshape(-1, 3)
    post_id = np.asarray(rows["post_id"]).reshape(-1)
    if not len(pre) == len(post) == len(post_id):
        raise ValueError(f"pre ({len(pre)}), post ({len(post)}) and post_id ({len(post_id)}) differ in length")
    return pre, post, post_id


def synapse_targets(rows, labels: np.ndarray, *, voxel_size, offset=(0.0, 0.0, 0.0), box=None,
                    mask_radius_nm: float = 80.0) -> tuple[np.ndarray, np.ndarray]:
    """The post-synaptic mask and the vectors to the pre points for the voxels of ``labels``.

    Parameters
    ----------
    rows
        The synapse table: a mapping with columns ``pre`` and ``post``
        (``(n, 3)`` world nm, z, y, x) and ``post_id`` (``(n,)``), or an
        object with a ``rows()`` method returning one (e.g.
        :class:`~napari_connectome.synthetic.synapses.SyntheticSynapses`).
    labels
        ``(z, y, x)`` labels of the voxels in ``box``.
    voxel_size
        Voxel size in nm (z, y, x).
    offset
        World position (nm) of the centre of voxel ``(0, 0, 0)`` of the volume.
    box
        ``((z0, z1), (y0, y1), (x0, x1))``: where ``labels`` lies in the
        volume's voxel grid (default: at its origin, the whole of ``labels``).
    mask_radius_nm
        Radius of the ball around each post point, in nm.

    Returns
    -------
    mask
        ``(z, y, x)`` uint8, 1 in the post-synaptic mask.
    vectors
        ``(3, z, y, x)`` float32, ``(pre - voxel centre) / 100`` in the mask, 0 elsewhere.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be (z, y, x), got shape {labels.shape}")
    vs = np.asarray(voxel_size, dtype=np.float64).reshape(3)
    off = np.asarray(offset, dtype=np.float64).reshape(3)
    lo = np.zeros(3, dtype=np.int64) if box is None else np.array([int(b[0]) for b in box])
    if box is not None and tuple(int(b[1]) - int(b[0]) for b in box) != labels.shape:
        raise ValueError(f"box {box} does not match labels of shape {labels.shape}")
    shape = np.array(labels.shape)
    pre, post, post_id = _columns(rows)
    mask = np.zeros(labels.shape, dtype=np.uint8)
    vectors = np.zeros((3, *labels.shape), dtype=np.float32)
    best = np.full(labels.shape, np.inf)  # squared distance (nm²) to the post point that owns the voxel
    r2 = float(mask_radius_nm) ** 2
    reach = np.ceil(float(mask_radius_nm) / vs).astype(np.int64)
    for k in range(len(post)):
        # the ball's voxel bounding box, in the local indices of ``labels``
        centre = (post[k] - off) / vs - lo
        b0 = np.maximum(np.floor(centre).astype(np.int64) - reach, 0)
        b1 = np.minimum(np.ceil(centre).astype(np.int64) + reach + 1, shape)
        if np.any(b1 <= b0):
            continue
        sl = tuple(slice(int(a), int(b)) for a, b in zip(b0, b1, strict=True))
        world = [off[a] + (lo[a] + np.arange(b0[a], b1[a])) * vs[a] for a in range(3)]
        dz, dy, dx = (w - p for w, p in zip(world, post[k], strict=True))
        d2 = (dz * dz)[:, None, None] + (dy * dy)[None, :, None] + (dx * dx)[None, None, :]
        take = (d2 <= r2) & (labels[sl] == post_id[k]) & (d2 < best[sl])
        if not take.any():
            continue
        best[sl] = np.where(take, d2, best[sl])
        mask[sl][take] = 1
        for a, grid in enumerate(np.meshgrid(*world, indexing="ij")):
            vectors[a][sl][take] = ((pre[k, a] - grid[take]) / VECTOR_UNIT_NM).astype(np.float32)
    return mask, vectors


def transform_vectors(vectors: np.ndarray, perm, flips) -> np.ndarray:
    """Vector components after the voxels were moved by :func:`~napari_connectome.train.augment.flip_transpose`.

    The arrays are transposed by ``perm`` (new axis ``a`` is old axis
    ``perm[a]``), then flipped along ``flips``; a vector field moved that way
    must also have its components permuted the same way, and the component
    of every flipped axis negated, to point at the same (moved) pre points.

    Parameters
    ----------
    vectors
        ``(3, z, y, x)`` (or ``(..., 3, z, y, x)``) already moved spatially.
    perm, flips
        The permutation and flipped axes given to ``flip_transpose``.
    """
    lead = vectors.ndim - 4
    out = np.take(vectors, list(perm), axis=lead)
    for a in flips:
        idx = (slice(None),) * lead + (a,)
        out[idx] = -out[idx]
    return out
