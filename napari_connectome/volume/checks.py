"""Checks every opened volume passes, and the small rules shared by backends."""

from __future__ import annotations

import math
import re

import numpy as np

from napari_connectome.config import SETTINGS, check_voxel_size
from napari_connectome.errors import InputError
from napari_connectome.volume.model import MultiscaleVolume

# Names that mark a uint8 volume as a segmentation rather than an image.
_LABEL_NAME = re.compile(r"(label|seg|gt|groundtruth|ground_truth|fragment|supervox|\bws\b|ws$|mask)", re.I)


def infer_kind(dtype, name: str = "") -> str:
    """Guess ``"image"`` or ``"labels"`` when the metadata does not say.

    Integers of 32 or 64 bits are segment ids (no EM detector writes them);
    8- and 16-bit volumes are images (EM intensities) unless their name says
    labels (``*labels*``, ``*seg*``, ``*gt*``, ``*fragments*``, ``*ws*``, ...).
    Pass ``kind=`` to :func:`open_volume` to decide explicitly.
    """
    dtype = np.dtype(dtype)
    if dtype.kind in "iu" and dtype.itemsize > 2:
        return "labels"
    if dtype.kind in "iu" and _LABEL_NAME.search(name or ""):
        return "labels"
    if dtype.kind == "b":
        return "labels"
    return "image"


def assumed_voxel_size(ndim: int, axes=None) -> tuple[float, ...]:
    """The voxel size assumed for a format that stores none (nm per axis)."""
    default = SETTINGS.default_voxel_size
    axes = tuple(axes) if axes is not None else ("z", "y", "x")[-ndim:]
    spatial = [a for a in axes if a in ("z", "y", "x")]
    values = list(default[-len(spatial):]) if spatial else []
    out = []
    for a in axes:
        out.append(values.pop(0) if a in ("z", "y", "x") and values else 1.0)
    return tuple(out)


def assumed_note(voxel_size) -> str:
    """The sentence that tells a person a voxel size was assumed."""
    vs = " × ".join(f"{v:g}" for v in voxel_size)
    return (
        f"voxel size not stored in the file; assumed {vs} nm "
        "(give the real one with --voxel-size or in the Connectome panel)"
    )


def level_offset(offset0, voxel_size0, voxel_size_k) -> tuple[float, ...]:
    """Centre of voxel 0 of a downsampled level whose voxels start at level 0's corner.

    A level downsampled by factor ``f`` from level 0 covers the same box; the
    centre of its first voxel lies ``(f - 1) / 2`` level-0 voxels further.
    """
    return tuple(
        o + (vk - v0) / 2.0 for o, v0, vk in zip(offset0, voxel_size0, voxel_size_k, strict=True)
    )


def check_volume(volume: MultiscaleVolume) -> None:
    """Refuse volumes a person could not work with, with one clear line.

    Checks: at least one level; no empty level; voxel sizes > 0 and finite;
    level 0 largest; every level covers level 0's extent (within one of its own
    voxels); levels agree on axes; labels are integers.
    """
    src = volume.source
    if not volume.levels:
        raise InputError(src, "no resolution levels found")
    first = volume.levels[0]
    for i, level in enumerate(volume.levels):
        where = "" if len(volume.levels) == 1 else f"level {i}: "
        if any(s == 0 for s in level.shape) or level.ndim == 0:
            raise InputError(src, f"{where}the array is empty (shape {level.shape})")
        if level.ndim != first.ndim or tuple(level.axes) != tuple(first.axes):
            raise InputError(
                src,
                f"inconsistent pyramid metadata: level {i} has axes {level.axes}, level 0 has {first.axes}",
            )
        check_voxel_size(level.voxel_size, source=src, ndim=level.ndim)
        if not all(math.isfinite(o) for o in level.offset) or len(level.offset) != level.ndim:
            raise InputError(src, f"{where}offset {level.offset} is not one finite number per axis")
        if level.dtype != first.dtype:
            raise InputError(
                src, f"inconsistent pyramid metadata: level {i} is {level.dtype}, level 0 is {first.dtype}"
            )
        if i == 0:
            continue
        for ax, n0, v0, nk, vk in zip(level.axes, first.shape, first.voxel_size, level.shape, level.voxel_size, strict=True):
            extent0, extentk = n0 * v0, nk * vk
            if vk < v0 or abs(extentk - extent0) > vk + 1e-6 * extent0:
                raise InputError(
                    src,
                    f"inconsistent pyramid metadata: level {i} axis {ax} spans {nk} × {vk:g} nm "
                    f"= {extentk:g} nm but level 0 spans {n0} × {v0:g} nm = {extent0:g} nm",
                )
    if volume.kind == "labels" and first.dtype.kind not in "iub":
        raise InputError(
            src,
            f"{first.dtype} data cannot be labels: segment ids must be integers "
            "(open it as an image, or convert the ids to uint32/uint64)",
        )
