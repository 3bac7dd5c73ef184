"""From engine volumes to napari layer data, and back to what a layer came from.

A layer made here carries ``metadata["napari_connectome"]``: where it came
from (source, format, project role and root) and how it was read (voxel size,
whether that was assumed, notes). The dock widget reads it from there.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from napari_connectome.volume import MultiscaleVolume

META_KEY = "napari_connectome"
# Largest number of voxels read to choose an image's contrast limits.
CONTRAST_SAMPLE_VOXELS = 1 << 21
SPATIAL = ("z", "y", "x")


def contrast_limits(volume: MultiscaleVolume) -> tuple[float, float]:
    """Contrast limits for an image volume from a small read of its coarsest level.

    ``uint8`` data gets ``(0, 255)`` without reading. Otherwise at most
    :data:`CONTRAST_SAMPLE_VOXELS` voxels from the middle of the coarsest level
    are read and the 0.5 and 99.5 percentiles taken; the whole volume is never
    read.
    """
    dtype = volume.dtype
    if dtype == np.uint8:
        return (0.0, 255.0)
    if dtype == np.bool_:
        return (0.0, 1.0)
    level = volume.levels[-1]
    shape = level.shape
    # The largest central box with at most CONTRAST_SAMPLE_VOXELS voxels.
    factor = max(1.0, (float(np.prod(shape, dtype=np.float64)) / CONTRAST_SAMPLE_VOXELS) ** (1 / max(1, len(shape))))
    key = []
    for n in shape:
        size = max(1, min(n, int(math.floor(n / factor))))
        start = (n - size) // 2
        key.append(slice(start, start + size))
    sample = np.asarray(level.array[tuple(key)])
    finite = sample[np.isfinite(sample)] if np.issubdtype(sample.dtype, np.floating) else sample.ravel()
    if finite.size == 0:
        return (0.0, 1.0)
    lo, hi = (float(v) for v in np.percentile(finite, (0.5, 99.5)))
    if not hi > lo:
        lo, hi = float(finite.min()), float(finite.max())
    if not hi > lo:
        hi = lo + 1.0
    return (lo, hi)


def volume_metadata(
    volume: MultiscaleVolume, *, role: str | None = None, project: str | None = None
) -> dict[str, Any]:
    """What the plugin records about a volume in its layer's metadata."""
    return {
        "source": volume.source,
        "format": volume.format,
        "name": volume.name,
        "kind": volume.kind,
        "role": role,
        "project": project,
        "axes": list(volume.axes),
        "shape": list(volume.shape),
        "dtype": str(volume.dtype),
        "levels": [list(level.shape) for level in volume.levels],
        "voxel_size": list(volume.voxel_size),
        "offset": list(volume.offset),
        "voxel_size_assumed": bool(volume.voxel_size_assumed),
        "voxel_size_set": None,
        "notes": list(volume.notes),
    }


def layer_data(
    volume: MultiscaleVolume,
    *,
    role: str | None = None,
    project: str | None = None,
    name: str | None = None,
    visible: bool = True,
    opacity: float | None = None,
) -> tuple[Any, dict[str, Any], str]:
    """A napari layer data tuple ``(data, add_kwargs, layer_type)`` for a volume.

    Parameters
    ----------
    volume
        The (lazy) volume.
    role
        The project role (``raw``, ``supervoxels``, ...), if from a project.
    project
        The project folder, if from a project.
    name
        Layer name (default: the volume's name).
    visible, opacity
        Initial display state.

    Returns
    -------
    tuple
        Multiscale data (a list, largest first) when the volume has several
        levels, else its single lazy array; add kwargs with ``scale`` and
        ``translate`` in nm; ``"labels"`` or ``"image"``.
    """
    arrays = [_sliced_lazily(a) for a in volume.arrays]
    multiscale = len(arrays) > 1
    data = list(arrays) if multiscale else arrays[0]
    kwargs: dict[str, Any] = {
        "name": name or volume.name or role or "volume",
        "scale": tuple(float(v) for v in volume.voxel_size),
        "translate": tuple(float(v) for v in volume.offset),
        "metadata": {META_KEY: volume_metadata(volume, role=role, project=project)},
        "visible": bool(visible),
    }
    if multiscale:
        kwargs["multiscale"] = True
    axes = tuple(str(a) for a in volume.axes)
    if _takes_axis_labels() and len(axes) == volume.ndim:
        # The dims slider then reads "z" rather than napari's "-3".
        kwargs["axis_labels"] = axes
    if opacity is not None:
        kwargs["opacity"] = float(opacity)
    if volume.kind == "labels":
        return data, kwargs, "labels"
    kwargs["contrast_limits"] = contrast_limits(volume)
    if role == "boundaries":
        kwargs["colormap"] = "magma"
        kwargs["blending"] = "additive"
    return data, kwargs, "image"


def _sliced_lazily(array):
    """``array`` as a dask array of its own chunks, read through it chunk by chunk.

    napari 0.9 slices a multiscale level with the whole range of the
    non-displayed axes (``level[:, y0:y1, x0:x1]``) and picks the plane
    afterwards, which a lazy (dask, zarr-backed) array turns into a read of
    one plane's chunks but which our arrays, reading at once, turned into a
    read of the whole level: 82 ms per z-step on a 520³ volume against 25 ms
    for napari's own reader (benchmarks/bench_gui.py). Wrapped, it is 25 ms.
    Chunks still come through our array, so a corrupt chunk still reads as
    its fill value with one warning.
    """
    import dask.array as da

    chunks = tuple(int(c) for c in (getattr(array, "chunks", None) or array.shape))
    return da.from_array(array, chunks=chunks, asarray=True, fancy=False, lock=False,
                         name=False, meta=np.empty((0,) * len(array.shape), dtype=array.dtype))


@functools.cache
def _takes_axis_labels() -> bool:
    """Whether napari's layers take ``axis_labels`` (napari 0.6 and later; we accept 0.5)."""
    import inspect

    from napari.layers import Image

    return "axis_labels" in inspect.signature(Image.__init__).parameters


def layer_meta(layer) -> dict[str, Any] | None:
    """The plugin's metadata of a layer, or None if the layer did not come from it."""
    meta = getattr(layer, "metadata", None)
    if not isinstance(meta, dict):
        return None
    value = meta.get(META_KEY)
    return value if isinstance(value, dict) else None


def spatial_axes(layer) -> list[int]:
    """Indices of the layer's z, y, x axes (the last three when not recorded)."""
    ndim = int(layer.ndim)
    meta = layer_meta(layer) or {}
    axes = meta.get("axes")
    if isinstance(axes, list) and len(axes) == ndim:
        found = [i for i, a in enumerate(axes) if a in SPATIAL]
        if found:
            return found
    return list(range(max(0, ndim - 3), ndim))
