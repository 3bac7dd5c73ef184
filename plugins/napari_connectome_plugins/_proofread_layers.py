"""Lazy arrays and coordinate helpers behind the Proofread panel's layers.

napari keeps the array object it was given and reads from it whenever the
slice changes or :meth:`Layer.refresh` is called. The panel therefore gives
each layer a :class:`LiveArray` per level, never a new object: an edit only
changes the mapping behind it (the Proofreader's), and a re-based
threshold or a split preview only points the live array at another lazy
source. Nothing here reads more than napari asks for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from napari_connectome.arrays import distinct


class LiveArray:
    """A napari level array whose source can be swapped without a new object.

    Parameters
    ----------
    target
        Any numpy-like lazy array (``shape``, ``dtype``, ``__getitem__``).
    dtype
        The dtype napari sees; reads are cast to it (a swap may bring a
        source of another integer type).
    """

    def __init__(self, target, *, dtype=None) -> None:
        self.target = target
        self.dtype = np.dtype(dtype if dtype is not None else target.dtype)
        self.shape = tuple(int(s) for s in target.shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def chunks(self) -> tuple[int, ...]:
        return tuple(getattr(self.target, "chunks", self.shape))

    def retarget(self, target) -> None:
        """Read from ``target`` from now on (it must have the same shape)."""
        shape = tuple(int(s) for s in target.shape)
        if shape != self.shape:
            raise ValueError(f"a level of shape {shape} cannot replace one of shape {self.shape}")
        self.target = target

    def __getitem__(self, key) -> np.ndarray:
        return np.asarray(self.target[key]).astype(self.dtype, copy=False)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[tuple(slice(None) for _ in self.shape)]
        return out if dtype is None else out.astype(dtype, copy=False)

    def __len__(self) -> int:
        return self.shape[0]


class MappedArray:
    """A lazy array of ids read through a lookup table ``keys -> values``.

    Used for what the engine does not keep: the segmentation at a threshold
    being dragged on the slider (supervoxel -> segment) and the two sides of a
    split preview (supervoxel -> 1 or 2).

    Parameters
    ----------
    array
        Lazy supervoxel ids.
    keys, values
        The lookup; ``keys`` need not be sorted.
    default
        Value for ids not in ``keys``; None keeps such ids as they are.
    dtype
        Output dtype (default: ``values``' dtype).
    """

    def __init__(self, array, keys, values, *, default: int | None = None, dtype=None) -> None:
        keys = np.asarray(keys).ravel()
        values = np.asarray(values).ravel()
        if keys.shape != values.shape:
            raise ValueError("keys and values differ in length")
        order = np.argsort(keys, kind="stable")
        self.array = array
        self.keys = keys[order]
        self.values = values[order]
        self.default = default
        self.dtype = np.dtype(dtype if dtype is not None else self.values.dtype)
        self.shape = tuple(int(s) for s in array.shape)
        self.chunks = tuple(getattr(array, "chunks", self.shape))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, key) -> np.ndarray:
        block = np.asarray(self.array[key])
        # Map the distinct ids only: a slice holds few of them.
        ids, inverse = np.unique(block, return_inverse=True)
        if self.default is None:
            mapped = ids.astype(self.dtype)
        else:
            mapped = np.full(ids.shape, self.default, dtype=self.dtype)
        if self.keys.size and ids.size:
            at = np.searchsorted(self.keys, ids.astype(self.keys.dtype, copy=False))
            at = np.minimum(at, self.keys.size - 1)
            hit = self.keys[at] == ids
            mapped[hit] = self.values[at[hit]]
        return mapped[inverse.reshape(block.shape)]


def level_geometry(volume) -> tuple[np.ndarray, np.ndarray]:
    """``(voxel_size, offset)`` of a volume's level 0 in nm, as float arrays."""
    return (np.asarray(volume.voxel_size, dtype=float), np.asarray(volume.offset, dtype=float))


def nm_to_data(points_nm, volume) -> np.ndarray:
    """Points in nm -> level-0 voxel coordinates (floats), shape ``(n, 3)``."""
    size, offset = level_geometry(volume)
    pts = np.asarray(points_nm, dtype=float).reshape(-1, len(size))
    return (pts - offset) / size


def data_to_nm(points_data, volume) -> np.ndarray:
    """Level-0 voxel coordinates -> points in nm, shape ``(n, 3)``."""
    size, offset = level_geometry(volume)
    pts = np.asarray(points_data, dtype=float).reshape(-1, len(size))
    return pts * size + offset


def pick_point(layer, event, volume) -> tuple[float, ...] | None:
    """The point in nm a click on ``layer`` means, or None if it hit nothing.

    In 2D the click's world position is the point (world units are nm: the
    layer's scale is the voxel size). In 3D the click is a ray: the point is
    the centre of the first voxel along it whose label is not 0, read from
    ``layer``'s level 0 (what a person sees first).
    """
    ndim = len(volume.voxel_size)
    position = np.asarray(event.position, dtype=float)
    displayed = list(getattr(event, "dims_displayed", []) or [])
    if len(displayed) < 3:
        return tuple(float(v) for v in position[-ndim:])
    return _first_voxel_on_ray(layer, event, volume)


def _first_voxel_on_ray(layer, event, volume, *, max_steps: int = 4096) -> tuple[float, ...] | None:
    start, end = layer.get_ray_intersections(
        event.position, event.view_direction, event.dims_displayed, world=True
    )
    if start is None or end is None:
        return None
    start = np.asarray(start, dtype=float)[-3:]
    end = np.asarray(end, dtype=float)[-3:]
    data = layer.data[0] if layer.multiscale else layer.data
    shape = np.asarray(data.shape[-3:])
    length = float(np.linalg.norm(end - start))
    steps = int(min(max_steps, max(2, np.ceil(length * 2))))
    seen: set[tuple[int, ...]] = set()
    for t in np.linspace(0.0, 1.0, steps):
        voxel = np.round(start + t * (end - start)).astype(int)
        if np.any(voxel < 0) or np.any(voxel >= shape):
            continue
        key = tuple(int(v) for v in voxel)
        if key in seen:
            continue
        seen.add(key)
        if int(np.asarray(data[key])) != 0:
            return tuple(float(v) for v in data_to_nm(voxel, volume)[0])
    return None


def same_points(a: Sequence[Any], b: Sequence[Any]) -> bool:
    """True if two lists of points are equal (within a thousandth of a nm)."""
    a = np.asarray(a, dtype=float).reshape(-1, 3) if len(a) else np.empty((0, 3))
    b = np.asarray(b, dtype=float).reshape(-1, 3) if len(b) else np.empty((0, 3))
    return a.shape == b.shape and bool(np.all(np.abs(a - b) < 1e-3))


def segment_colormap(segment_ids, colours) -> Any:
    """A napari colormap giving each of ``segment_ids`` its colour from ``colours`` (a ``SegmentColours``).

    Other values are transparent: pass every segment id the layer can show
    (``proofreader.mapping()[1]``, or a threshold's mapping while dragging).

    napari's default colours come from the label value, and every edit mints
    new ids, so the body one follows would change colour at every merge,
    split or undo; these colours are handed on through the edits instead.
    """
    from napari.utils.colormaps import DirectLabelColormap

    from napari_connectome.tasks.colours import PALETTE

    segments = distinct(np.asarray(segment_ids))
    segments = segments[segments != 0]
    palette = np.asarray(PALETTE, dtype=np.float32)
    rgba = palette[colours.indices(segments)]
    color_dict: dict[Any, Any] = {None: "transparent", 0: "transparent"}
    color_dict.update(zip(segments.tolist(), rgba, strict=True))
    return DirectLabelColormap(color_dict=color_dict)
