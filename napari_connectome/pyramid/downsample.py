"""2× downsampling that respects anisotropy: mean for images, mode for labels.

The level plan halves an axis only while its voxel is finer than twice the
finest voxel of the level (so 40 × 8 × 8 nm goes to 40 × 16 × 16, then
40 × 32 × 32, and only then halves z too: 80 × 64 × 64). Odd lengths round
up: the last voxel of a halved axis summarises the one voxel left, never
zero padding.

Both reductions work on any block whose start is a multiple of the factors,
so a level computed block by block equals the level computed in one go.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from napari_connectome.errors import InputError
from napari_connectome.volume.model import spatial_indices


@dataclass(frozen=True)
class LevelPlan:
    """Shape and voxel size of one pyramid level, and the factors that made it.

    Attributes
    ----------
    shape
        Voxels per axis.
    voxel_size
        nm per axis (1 for non-spatial axes).
    factors
        Per-axis factor (1 or 2) from the previous level; all 1 for level 0.
    """

    shape: tuple[int, ...]
    voxel_size: tuple[float, ...]
    factors: tuple[int, ...]


def next_factors(shape, voxel_size, axes) -> tuple[int, ...]:
    """Per-axis factor (1 or 2) of the next level, by the anisotropy rule.

    A spatial axis is halved when it has more than one voxel and its voxel is
    finer than twice the finest voxel among the spatial axes that can still be
    halved. Non-spatial axes (channels, time) are never halved.
    """
    spatial = [i for i in spatial_indices(axes) if shape[i] > 1]
    factors = [1] * len(shape)
    if not spatial:
        return tuple(factors)
    finest = min(voxel_size[i] for i in spatial)
    for i in spatial:
        # A relative tolerance: 40 nm stays "not finer than 2 × 20 nm" even
        # after float round-off in earlier levels.
        if voxel_size[i] < 2.0 * finest * (1.0 - 1e-9):
            factors[i] = 2
    return tuple(factors)


def plan_levels(shape, voxel_size, axes, chunks, levels: int | None = None) -> list[LevelPlan]:
    """The levels of a pyramid, largest first.

    Parameters
    ----------
    shape, voxel_size, axes
        Level 0.
    chunks
        Chunk shape of the arrays (one value per axis).
    levels
        Number of levels including level 0. None: as many as it takes for
        every spatial axis of the coarsest level to fit in one chunk (at
        least one level).
    """
    shape = tuple(int(s) for s in shape)
    voxel_size = tuple(float(v) for v in voxel_size)
    if levels is not None and int(levels) < 1:
        raise InputError("levels", f"a pyramid needs at least 1 level, got {levels}")
    plans = [LevelPlan(shape, voxel_size, (1,) * len(shape))]
    spatial = spatial_indices(axes)
    while True:
        cur = plans[-1]
        if levels is not None:
            if len(plans) >= int(levels):
                break
        elif all(cur.shape[i] <= chunks[i] for i in spatial):
            break
        factors = next_factors(cur.shape, cur.voxel_size, axes)
        if all(f == 1 for f in factors):
            break  # nothing left to halve: every spatial axis is one voxel
        plans.append(
            LevelPlan(
                tuple(math.ceil(s / f) for s, f in zip(cur.shape, factors, strict=True)),
                tuple(v * f for v, f in zip(cur.voxel_size, factors, strict=True)),
                factors,
            )
        )
    return plans


def _pad_edge(data: np.ndarray, factors) -> np.ndarray:
    """Repeat the last plane of each odd-length halved axis.

    Every real voxel of a window then appears the same number of times, so the
    mean and the mode of the window are those of its real voxels.
    """
    pad = [(0, (-n) % f) for n, f in zip(data.shape, factors, strict=True)]
    if any(p[1] for p in pad):
        data = np.pad(data, pad, mode="edge")
    return data


def _window_views(data: np.ndarray, factors) -> list[np.ndarray]:
    """One strided view per position inside the window, each of the output shape."""
    return [
        data[tuple(slice(o, None, f) for o, f in zip(offs, factors, strict=True))]
        for offs in itertools.product(*(range(f) for f in factors))
    ]


def output_shape(shape, factors) -> tuple[int, ...]:
    return tuple(math.ceil(n / f) for n, f in zip(shape, factors, strict=True))


def downsample_mean(data: np.ndarray, factors) -> np.ndarray:
    """Mean over ``factors`` windows, in the input's dtype.

    Integers are rounded half up (``floor(mean + 1/2)``), exactly, whatever
    their width; floats keep their dtype (the mean is taken in float64).
    Booleans are averaged as 0/1 and rounded back.
    """
    data = np.asarray(data)
    factors = tuple(int(f) for f in factors)
    if all(f == 1 for f in factors):
        return data.copy()
    dtype = data.dtype
    views = _window_views(_pad_edge(data, factors), factors)
    n = len(views)
    if dtype.kind == "f":
        acc = views[0].astype(np.float64)
        for v in views[1:]:
            acc += v
        acc /= n
        return acc.astype(dtype)
    if dtype.kind == "b":
        acc = views[0].astype(np.uint8)
        for v in views[1:]:
            acc += v
        return acc * 2 >= n
    if dtype.kind not in "iu":
        raise InputError(None, f"cannot average {dtype} data")
    if dtype.itemsize <= 4:
        # Narrow sums are exact; uint8 (EM) stays in uint16 for speed.
        acc_type = np.uint16 if dtype == np.uint8 else np.int64
        acc = views[0].astype(acc_type)
        for v in views[1:]:
            acc += v
        acc += n // 2
        acc //= n
        return acc.astype(dtype)
    # 64-bit: sum quotients and remainders apart, so nothing overflows.
    quot = views[0] // n
    rem = (views[0] % n).astype(np.int64)
    for v in views[1:]:
        quot += v // n
        rem += (v % n).astype(np.int64)
    return (quot + ((rem + n // 2) // n).astype(dtype)).astype(dtype)


def downsample_mode(data: np.ndarray, factors) -> np.ndarray:
    """Most frequent value of each ``factors`` window (ties: the smallest value).

    So a downsampled segmentation only ever contains ids of the input. Only
    windows that are not uniform are counted (a small fraction in a
    segmentation), with ``n²`` vectorised comparisons for windows of ``n``
    voxels.
    """
    data = np.asarray(data)
    factors = tuple(int(f) for f in factors)
    if all(f == 1 for f in factors):
        return data.copy()
    views = _window_views(_pad_edge(data, factors), factors)
    first = views[0]
    out = first.copy()  # a copy: never write into the caller's data
    mixed = np.zeros(out.shape, dtype=bool)
    for v in views[1:]:
        mixed |= v != first
    where = np.flatnonzero(mixed)
    if not where.size:
        return out
    idx = np.unravel_index(where, out.shape)
    cand = np.stack([v[idx] for v in views])  # (n, m): the windows that need counting
    counts = np.zeros(cand.shape, dtype=np.uint8)
    for k in range(len(views)):
        counts += cand == cand[k]
    best = cand[0].copy()
    best_count = counts[0].copy()
    for j in range(1, len(views)):
        better = (counts[j] > best_count) | ((counts[j] == best_count) & (cand[j] < best))
        best[better] = cand[j][better]
        best_count[better] = counts[j][better]
    out.reshape(-1)[where] = best
    return out
