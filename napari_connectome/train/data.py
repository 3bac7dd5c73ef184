"""Training volumes and random patches drawn from them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_connectome.train.augment import (
    AugmentConfig,
    crop_margin,
    draw_geometry,
    elastic,
    flip_transpose,
    intensity,
    misalign,
    source_shape,
)
from napari_connectome.train.targets import affinities_from_labels


@dataclass
class TrainingVolume:
    """Raw EM with labels, padded so that any patch around a labelled voxel can be read.

    Attributes
    ----------
    raw
        float32 in [0, 1], padded by ``pad`` voxels on every side (mirrored).
    labels
        Labels, padded with 0.
    known
        Where labels may be used (inside the volume and inside the training
        region), padded with False.
    pad
        Padding on each side.
    region
        ``(begin, end)`` of the labelled training region, in unpadded voxels.
    """

    raw: np.ndarray
    labels: np.ndarray
    known: np.ndarray
    pad: int
    region: tuple[tuple[int, int, int], tuple[int, int, int]]

    @classmethod
    def from_arrays(cls, raw: np.ndarray, labels: np.ndarray, *, pad: int,
                    region=None, known: np.ndarray | None = None) -> TrainingVolume:
        """Normalise raw (integers are divided by their dtype's maximum), pad, and mask outside ``region``.

        Parameters
        ----------
        raw, labels
            Same shape ``(z, y, x)``.
        pad
            Context + augmentation margin to pad by (mirrored raw, unknown labels).
        region
            ``((z0, y0, x0), (z1, y1, x1))``: only labels inside it are used
            (default: everything). Keeps a held-out part out of training.
        known
            Voxels whose labels may be used (default: all), e.g. the painted
            voxels of sparse labels; combined with ``region``.
        """
        if raw.shape != labels.shape:
            raise ValueError(f"raw {raw.shape} and labels {labels.shape} differ in shape")
        r = normalise_raw(raw)
        if region is None:
            region = ((0, 0, 0), tuple(raw.shape))
        inside = np.zeros(raw.shape, dtype=bool)
        inside[tuple(slice(b, e) for b, e in zip(*region, strict=True))] = True
        if known is not None:
            if known.shape != raw.shape:
                raise ValueError(f"known {known.shape} and raw {raw.shape} differ in shape")
            inside &= known.astype(bool)
        known = inside
        return cls(
            raw=np.pad(r, pad, mode="reflect"),
            labels=np.pad(labels, pad),
            known=np.pad(known, pad),
            pad=pad,
            region=(tuple(region[0]), tuple(region[1])),
        )


def normalise_raw(raw: np.ndarray) -> np.ndarray:
    """float32 in [0, 1]: integers divided by their dtype's maximum, floats as they are."""
    raw = np.asarray(raw)
    if np.issubdtype(raw.dtype, np.integer):
        return (raw / np.iinfo(raw.dtype).max).astype(np.float32)
    return raw.astype(np.float32)


@dataclass
class Patch:
    """One training example: network input and the targets of its output window."""

    raw: np.ndarray  # (z, y, x) input
    target: np.ndarray  # (C, *output)
    mask: np.ndarray  # (C, *output)
    labels: np.ndarray  # (z, y, x) input-sized labels after augmentation (for checks)
    known: np.ndarray
    lsd: np.ndarray | None = None  # (10, *output) local shape descriptors, when asked for
    lsd_mask: np.ndarray | None = None  # (1, *output) voxels whose LSDs are defined


def sample_patch(volume: TrainingVolume, rng: np.random.Generator, *, input_shape, output_shape,
                 offsets, augment: AugmentConfig | None, zero: str = "boundary",
                 lsd_sigma_nm: float | None = None, voxel_size=(1.0, 1.0, 1.0)) -> Patch:
    """Draw a random patch whose output window lies mostly in the training region.

    The output window's corner is uniform over the positions where at least
    about three quarters of it (per axis) lie in the region; the input around it is read from the padded volume,
    augmented, and the affinity targets are computed on the augmented labels
    of the whole input (so long-range offsets see their partners), then
    cropped to the output window.

    With ``lsd_sigma_nm``, the patch also carries local shape descriptors
    (:func:`~napari_connectome.train.lsd.local_shape_descriptors`) of the same
    augmented labels, seen in the whole input and cropped to the output
    window, and their mask: known voxels (with ``zero="unknown"``, known
    voxels of a body). ``voxel_size`` (nm, z, y, x, of the volume) follows the
    axis permutation. Computing them draws nothing from ``rng``, so the
    patches are the same with and without them.
    """
    input_shape = tuple(int(n) for n in input_shape)
    output_shape = tuple(int(n) for n in output_shape)
    ctx = [(i - o) // 2 for i, o in zip(input_shape, output_shape, strict=True)]
    cfg, perm, flips = draw_geometry(rng, augment)
    do_elastic = rng.random() < cfg.elastic_p
    m = cfg.margin if do_elastic else 0
    src = source_shape(input_shape, perm)
    src_out = source_shape(output_shape, perm)
    src_ctx = source_shape(ctx, perm)
    begin = []
    for a in range(3):
        # at least ~3/4 of the window inside the region along every axis
        lo = volume.region[0][a] - src_out[a] // 4
        hi = volume.region[1][a] - src_out[a] + src_out[a] // 4 + 1
        out0 = int(rng.integers(lo, max(hi, lo + 1)))
        begin.append(out0 - src_ctx[a] - m + volume.pad)
        if begin[a] < 0 or begin[a] + src[a] + 2 * m > volume.raw.shape[a]:
            raise ValueError(f"padding {volume.pad} is too small for input {input_shape}")
    sl = tuple(slice(b, b + n + 2 * m) for b, n in zip(begin, src, strict=True))
    raw, labels, known = volume.raw[sl], volume.labels[sl], volume.known[sl]
    raw, labels, known = flip_transpose([raw, labels, known], perm, flips)
    if do_elastic:
        raw, labels, known = elastic(raw, labels, known, rng, cfg, input_shape)
    if rng.random() < cfg.misalign_p:
        raw, labels, known = misalign(raw, labels, known, rng, cfg)
    if augment:
        raw = intensity(raw, rng, cfg)
    aff, mask = affinities_from_labels(labels, offsets, known=known, zero=zero)
    window = tuple(slice(c, c + o) for c, o in zip(ctx, output_shape, strict=True))
    crop = (slice(None), *window)
    lsd = lsd_mask = None
    if lsd_sigma_nm is not None:
        from napari_connectome.train.lsd import local_shape_descriptors

        vs = tuple(float(voxel_size[p]) for p in perm)  # flips keep sizes; transposes swap them
        lsd = local_shape_descriptors(labels, sigma_nm=lsd_sigma_nm, voxel_size=vs, roi=window)
        defined = known[window] if zero == "boundary" else known[window] & (labels[window] != 0)
        lsd_mask = defined[None].astype(np.float32)
    return Patch(raw=np.ascontiguousarray(raw, dtype=np.float32), target=aff[crop], mask=mask[crop],
                 labels=labels, known=known, lsd=lsd, lsd_mask=lsd_mask)


__all__ = ["Patch", "TrainingVolume", "normalise_raw", "sample_patch", "crop_margin"]
