"""Augmentations for training patches, applied to raw and labels together.

Geometry (flips, axis permutations, elastic deformation, misaligned sections)
moves raw, labels and the ``known`` mask identically, so affinity targets
computed afterwards stay aligned with the image. Intensity changes (scale,
shift, gamma, missing sections) touch raw only. All randomness comes from the
``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations, and how strong.

    Attributes
    ----------
    isotropic_axes
        Axes that may be permuted among themselves: ``(0, 1, 2)`` for isotropic
        data, ``(1, 2)`` when z is anisotropic (only y and x are exchanged).
    flip
        Random flip of every axis.
    elastic_p, elastic_sigma, elastic_spacing
        Probability of an elastic deformation; displacement standard deviation
        (voxels) on a control grid of ``elastic_spacing`` voxels, interpolated
        linearly between control points.
    scale, shift, gamma
        Raw intensity ``raw * s + t`` with ``s`` in ``1 +- scale``, ``t`` in
        ``+- shift``, then ``raw ** g`` with ``log g`` in ``+- log(gamma)``.
    missing_p
        Probability that one z section is blanked (0 or the patch mean).
    misalign_p, misalign_max
        Probability that the sections from a random z on are shifted in y, x by
        up to ``misalign_max`` voxels (labels move with them).
    """

    isotropic_axes: tuple[int, ...] = (0, 1, 2)
    flip: bool = True
    elastic_p: float = 0.3
    elastic_sigma: float = 1.5
    elastic_spacing: int = 12
    scale: float = 0.15
    shift: float = 0.1
    gamma: float = 1.3
    missing_p: float = 0.05
    misalign_p: float = 0.05
    misalign_max: int = 3

    @property
    def margin(self) -> int:
        """Voxels of extra input read around a patch for the elastic deformation."""
        return int(np.ceil(3 * self.elastic_sigma)) + 1 if self.elastic_p > 0 else 0


def random_permutation(rng: np.random.Generator, config: AugmentConfig) -> tuple[int, int, int]:
    """A permutation of (0, 1, 2) that only exchanges ``config.isotropic_axes``."""
    perm = [0, 1, 2]
    axes = list(config.isotropic_axes)
    shuffled = list(rng.permutation(axes))
    for a, b in zip(axes, shuffled, strict=True):
        perm[a] = int(b)
    return tuple(perm)


def draw_geometry(rng: np.random.Generator, augment: AugmentConfig | None):
    """``(config, axis permutation, flipped axes)`` of one patch; without ``augment`` none and nothing drawn.

    The draws (permutation, then one coin per axis) come first in every
    sampler, so a patch's geometry depends on its seed only.
    """
    cfg = augment or AugmentConfig(isotropic_axes=(), flip=False, elastic_p=0.0, scale=0.0, shift=0.0,
                                   gamma=1.0, missing_p=0.0, misalign_p=0.0)
    perm = random_permutation(rng, cfg) if augment else (0, 1, 2)
    flips = [a for a in range(3) if cfg.flip and rng.random() < 0.5]
    return cfg, perm, flips


def source_shape(shape, perm) -> tuple[int, ...]:
    """Shape to read so that ``np.transpose(x, perm)`` has ``shape``."""
    inv = np.argsort(perm)
    return tuple(int(shape[inv[k]]) for k in range(3))


def flip_transpose(arrays, perm, flips) -> list[np.ndarray]:
    """Transpose every array's last three axes by ``perm``, then flip the axes in ``flips``."""
    out = []
    for x in arrays:
        lead = x.ndim - 3
        y = np.transpose(x, (*range(lead), *(lead + p for p in perm)))
        for a in flips:
            y = np.flip(y, axis=lead + a)
        out.append(np.ascontiguousarray(y))
    return out


def elastic(raw, labels, known, rng: np.random.Generator, config: AugmentConfig, out_shape):
    """Deform a patch read with ``config.margin`` extra voxels on each side; returns ``out_shape`` arrays."""
    from scipy import ndimage as ndi

    m = config.margin
    coarse = [max(2, int(np.ceil(n / config.elastic_spacing)) + 1) for n in out_shape]
    grid = np.meshgrid(*[np.arange(n, dtype=np.float32) + m for n in out_shape], indexing="ij")
    coords = []
    for a in range(3):
        d = rng.normal(0.0, config.elastic_sigma, size=coarse).astype(np.float32)
        d = np.clip(d, -m + 1, m - 1)
        zoom = [n / c for n, c in zip(out_shape, coarse, strict=True)]
        d = ndi.zoom(d, zoom, order=1, mode="nearest", grid_mode=True)[tuple(slice(0, n) for n in out_shape)]
        coords.append(grid[a] + d)
    coords = np.stack(coords)
    raw_o = ndi.map_coordinates(raw, coords, order=1, mode="reflect").astype(np.float32)
    lab_o = ndi.map_coordinates(labels, coords, order=0, mode="nearest")
    kn_o = ndi.map_coordinates(known.astype(np.uint8), coords, order=0, mode="constant", cval=0) > 0
    return raw_o, lab_o.astype(labels.dtype), kn_o


def crop_margin(arrays, margin: int) -> list[np.ndarray]:
    """Drop ``margin`` voxels on each side of the last three axes."""
    if margin == 0:
        return list(arrays)
    s = (Ellipsis, *(slice(margin, -margin),) * 3)
    return [x[s] for x in arrays]


def misalign(raw, labels, known, rng: np.random.Generator, config: AugmentConfig):
    """Shift all sections from a random z on by a random (dy, dx); wrapped-in voxels become unknown."""
    z = int(rng.integers(1, raw.shape[0]))
    dy, dx = (int(v) for v in rng.integers(-config.misalign_max, config.misalign_max + 1, size=2))
    raw, labels, known = raw.copy(), labels.copy(), known.copy()
    for x in (raw, labels, known):
        x[z:] = np.roll(x[z:], (dy, dx), axis=(1, 2))
    # voxels that wrapped around are not real: their labels are unknown
    if dy > 0:
        known[z:, :dy] = False
    elif dy < 0:
        known[z:, dy:] = False
    if dx > 0:
        known[z:, :, :dx] = False
    elif dx < 0:
        known[z:, :, dx:] = False
    return raw, labels, known


def intensity(raw: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """Scale, shift and gamma of a raw patch in [0, 1]; a blank section with ``missing_p``."""
    s = 1.0 + rng.uniform(-config.scale, config.scale)
    t = rng.uniform(-config.shift, config.shift)
    g = float(np.exp(rng.uniform(-np.log(config.gamma), np.log(config.gamma))))
    raw = np.clip(raw * s + t, 0.0, 1.0) ** g
    if rng.random() < config.missing_p:
        z = int(rng.integers(0, raw.shape[0]))
        raw[z] = 0.0 if rng.random() < 0.5 else float(raw.mean())
    return raw.astype(np.float32)
