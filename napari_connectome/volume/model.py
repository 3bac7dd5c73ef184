"""What a volume is: a list of lazy arrays that know where they are in the world.

Conventions (funlib.persistence / OME-NGFF / napari):

* axes are named (``"z", "y", "x"``, optionally ``"c"`` or ``"t"`` first);
* ``voxel_size`` is in nm per axis (1.0 for non-spatial axes);
* ``offset`` is the world position in nm of the *centre* of voxel index 0,
  which is what napari's ``translate`` and NGFF's ``translation`` mean;
* levels are ordered largest first (napari's multiscale order).

nm become voxels in one place, :class:`Level` (``roi``, ``voxel_slices``,
``roi_of``, ``voxel_at``, ``centre_of``, ``read``): voxel ``i`` of a spatial
axis covers ``[offset + (i - 0.5) · voxel_size, offset + (i + 0.5) ·
voxel_size)``. Regions are :class:`~napari_connectome.volume.roi.Roi` boxes
over the spatial axes; channel and time axes are always read whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from napari_connectome.errors import InputError
from napari_connectome.volume.roi import Roi, SnapMode, snap_indices

Kind = Literal["image", "labels"]
SPATIAL_AXES = ("z", "y", "x")
OUTSIDE_MODES = ("error", "constant", "reflect")


def spatial_indices(axes) -> list[int]:
    """Indices of the spatial axes (``z``, ``y``, ``x``); every axis but ``c`` / ``t`` if none is named so."""
    idx = [i for i, a in enumerate(axes) if a in SPATIAL_AXES]
    return idx or [i for i, a in enumerate(axes) if a not in ("c", "t")]


def voxel_index(points_nm, *, voxel_size, offset) -> np.ndarray:
    """Index of the voxel holding each world point (nm); may lie outside the array.

    ``points_nm`` is ``(..., n)`` with ``voxel_size`` and ``offset`` of ``n``
    spatial axes. For helpers that hold a voxel size and offset but no
    :class:`Level`; a level's own is :meth:`Level.voxel_at`.
    """
    p = np.asarray(points_nm, dtype=np.float64)
    return np.floor((p - np.asarray(offset)) / np.asarray(voxel_size) + 0.5).astype(np.int64)


def voxel_centre(index, *, voxel_size, offset) -> np.ndarray:
    """World position (nm, float64) of the centre of each voxel ``index`` (``(..., n)``)."""
    idx = np.asarray(index)
    return np.asarray(offset, dtype=np.float64) + idx * np.asarray(voxel_size, dtype=np.float64)


def _reflect(index: np.ndarray, n: int) -> np.ndarray:
    """Mirror indices into ``[0, n)`` without repeating the border voxel (numpy's ``reflect``)."""
    if n == 1:
        return np.zeros_like(index)
    period = 2 * (n - 1)
    j = np.abs(index) % period
    return np.where(j >= n, period - j, j)


@runtime_checkable
class LazyArray(Protocol):
    """A numpy-like array that reads from disk only what is indexed.

    napari and dask accept it as it is: it has ``shape``, ``dtype``, ``ndim``
    and ``__getitem__`` returning a NumPy array.
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    chunks: tuple[int, ...]

    @property
    def ndim(self) -> int: ...

    def __getitem__(self, key) -> np.ndarray: ...


@dataclass(frozen=True)
class Level:
    """One resolution level of a volume.

    Parameters
    ----------
    array
        The lazy array of voxels.
    voxel_size
        Size of a voxel in nm, one value per axis.
    offset
        World position in nm of the centre of voxel index 0, one value per axis.
    axes
        Axis names, e.g. ``("z", "y", "x")``.
    """

    array: LazyArray
    voxel_size: tuple[float, ...]
    offset: tuple[float, ...]
    axes: tuple[str, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.array.dtype)

    @property
    def chunks(self) -> tuple[int, ...]:
        return tuple(int(c) for c in self.array.chunks)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    # ------------------------------------------------------------ world boxes
    # Cached: a level's axes, voxel size, offset and shape never change, and
    # block-wise loops ask for them once per block.
    @cached_property
    def spatial(self) -> tuple[int, ...]:
        """Indices of the spatial axes, the axes a :class:`Roi` of this level spans."""
        return tuple(spatial_indices(self.axes))

    @cached_property
    def spatial_voxel_size(self) -> tuple[float, ...]:
        return tuple(float(self.voxel_size[i]) for i in self.spatial)

    @cached_property
    def spatial_offset(self) -> tuple[float, ...]:
        return tuple(float(self.offset[i]) for i in self.spatial)

    @cached_property
    def _spatial_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[i] for i in self.spatial)

    @cached_property
    def roi(self) -> Roi:
        """The level's box in nm: from the first voxel's lower face to the last voxel's upper face."""
        return self.roi_of(tuple(slice(0, self.shape[i]) for i in self.spatial))

    def _source(self) -> str:
        return str(getattr(self.array, "source", None) or "roi")

    def _bounds(self, roi: Roi, snap: SnapMode | None) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Voxel index bounds ``[lo, hi)`` of ``roi`` on the spatial axes (may lie outside the level)."""
        if not isinstance(roi, Roi):
            raise InputError(self._source(), f"{roi!r} is not a Roi")
        vs, off = self.spatial_voxel_size, self.spatial_offset
        if roi.dims != len(vs):
            raise InputError(self._source(), f"box {roi} has {roi.dims} axes; the level has {len(vs)} spatial axes")
        # Voxel boundary i lies at offset + (i - 0.5) · voxel size.
        lo = [(b - o) / v + 0.5 for b, o, v in zip(roi.begin, off, vs, strict=True)]
        hi = [(e - o) / v + 0.5 for e, o, v in zip(roi.end, off, vs, strict=True)]
        try:
            return snap_indices(lo, hi, mode=snap, what=f"{roi} nm")
        except InputError as exc:
            if snap is None:
                raise InputError(
                    self._source(),
                    f"box {roi} nm is not on the voxel grid (voxel size {vs} nm, offset {off} nm); "
                    "snap it (mode 'grow', 'shrink' or 'closest')",
                ) from None
            raise exc from None

    def _key(self, lo, hi) -> tuple[slice, ...]:
        """Index over every axis: the spatial ones from ``lo``/``hi``, the others whole."""
        key = [slice(None)] * self.ndim
        for i, a, b in zip(self.spatial, lo, hi, strict=True):
            key[i] = slice(a, b)
        return tuple(key)

    def snap(self, roi: Roi, *, mode: SnapMode | None = "grow") -> Roi:
        """``roi`` with its corners on this level's voxel faces (see :meth:`Roi.snap_to_grid`).

        ``mode=None`` snaps nothing: a box off the grid is an
        :class:`~napari_connectome.errors.InputError`, one on it comes back
        with the level's own arithmetic for its corners.
        """
        lo, hi = self._bounds(roi, mode)
        return self.roi_of(tuple(slice(a, b) for a, b in zip(lo, hi, strict=True)))

    def voxel_slices(self, roi: Roi, *, snap: SnapMode | None = None) -> tuple[slice, ...]:
        """The index (one slice per axis; channel and time axes whole) of the voxels of ``roi``.

        Parameters
        ----------
        roi
            A box in nm over the spatial axes.
        snap
            None (default): the box must lie on voxel faces, else an
            :class:`~napari_connectome.errors.InputError` names it.
            ``"grow"``, ``"shrink"`` or ``"closest"``: snapped first.

        Raises
        ------
        InputError
            The box is off the grid (strict), or reaches outside the level
            (read such a box with :meth:`read` and ``outside=``).
        """
        lo, hi = self._bounds(roi, snap)
        if any(a < 0 or b > n for a, b, n in zip(lo, hi, self._spatial_shape, strict=True)):
            raise InputError(
                self._source(),
                f"box {roi} nm reaches outside the volume's box {self.roi} nm; read it with outside='constant' or 'reflect'",
            )
        return self._key(lo, hi)

    def roi_of(self, slices) -> Roi:
        """The box in nm of voxel ``slices`` (one per axis, or one per spatial axis; step 1).

        Bounds are voxel indices as they stand, so a box may reach outside
        the level (a negative start is before voxel 0); None is the level's edge.
        """
        slices = tuple(slices)
        if len(slices) == self.ndim:
            slices = tuple(slices[i] for i in self.spatial)
        elif len(slices) != len(self.spatial):
            raise InputError(self._source(), f"{len(slices)} slices for a level of axes {self.axes}")
        lo, hi = [], []
        for s, i in zip(slices, self.spatial, strict=True):
            if not isinstance(s, slice):
                raise InputError(self._source(), f"{s!r} is not a slice")
            # Bounds are voxel indices as they stand (a negative start lies
            # before voxel 0, not at the far end as in numpy); None is the edge.
            a = 0 if s.start is None else int(s.start)
            b = self.shape[i] if s.stop is None else int(s.stop)
            if (s.step or 1) != 1:
                raise InputError(self._source(), f"slice {s} has a step; a box has none")
            lo.append(int(a))
            hi.append(int(max(a, b)))
        vs = np.asarray(self.spatial_voxel_size)
        off = np.asarray(self.spatial_offset)
        # The same arithmetic as the voxel centres: faces at offset + (i - 0.5) · voxel size.
        return Roi.from_bounds(
            tuple(float(x) for x in off + (np.asarray(lo, np.float64) - 0.5) * vs),
            tuple(float(x) for x in off + (np.asarray(hi, np.float64) - 0.5) * vs),
        )

    def voxel_at(self, points_nm) -> np.ndarray:
        """Index (int64, spatial axes) of the voxel holding each world point; may lie outside the level."""
        return voxel_index(points_nm, voxel_size=self.spatial_voxel_size, offset=self.spatial_offset)

    def centre_of(self, index) -> np.ndarray:
        """World position (nm, float64) of the centre of each voxel ``index`` (spatial axes)."""
        return voxel_centre(index, voxel_size=self.spatial_voxel_size, offset=self.spatial_offset)

    def read(self, roi: Roi | None = None, *, outside: str = "error", fill=0) -> np.ndarray:
        """Read the level, or the voxels of a box of it, into memory.

        Parameters
        ----------
        roi
            A box in nm on this level's voxel grid (see :meth:`voxel_slices`);
            None: the whole level. Channel and time axes are read whole.
        outside
            What a box reaching outside the level gets there: ``"error"``
            (default; an :class:`~napari_connectome.errors.InputError` naming
            both boxes), ``"constant"`` (``fill``), or ``"reflect"`` (the
            volume mirrored at its border, the border voxel not repeated:
            numpy's and torch's ``reflect``; context for inference).
        fill
            The value outside for ``outside="constant"``.

        Returns
        -------
        numpy.ndarray
            Shape: the box in voxels on the spatial axes, whole on the others.
        """
        if roi is None:
            return np.asarray(self.array[tuple(slice(None) for _ in self.shape)])
        if outside not in OUTSIDE_MODES:
            raise InputError("outside", f"{outside!r} is not one of {OUTSIDE_MODES}")
        lo, hi = self._bounds(roi, None)
        shape = self._spatial_shape
        inside = all(a >= 0 and b <= n for a, b, n in zip(lo, hi, shape, strict=True))
        if inside:
            return np.asarray(self.array[self._key(lo, hi)])
        if outside == "error":
            raise InputError(
                self._source(),
                f"box {roi} nm reaches outside the volume's box {self.roi} nm "
                "(read it with outside='constant' or 'reflect')",
            )
        out_shape = list(self.shape)
        for i, a, b in zip(self.spatial, lo, hi, strict=True):
            out_shape[i] = b - a
        if outside == "constant":
            try:
                out = np.full(out_shape, fill, dtype=self.dtype)
            except (OverflowError, TypeError, ValueError):
                raise InputError("fill", f"{fill!r} is not a value of {self.dtype}") from None
            c_lo = [min(max(a, 0), n) for a, n in zip(lo, shape, strict=True)]
            c_hi = [max(min(b, n), c) for b, n, c in zip(hi, shape, c_lo, strict=True)]
            if all(b > a for a, b in zip(c_lo, c_hi, strict=True)):
                dst = [slice(None)] * self.ndim
                for i, a, c, d in zip(self.spatial, lo, c_lo, c_hi, strict=True):
                    dst[i] = slice(c - a, d - a)
                out[tuple(dst)] = np.asarray(self.array[self._key(c_lo, c_hi)])
            return out
        # reflect: read the span of mirrored indices once, then gather per axis.
        maps = [_reflect(np.arange(a, b), n) for a, b, n in zip(lo, hi, shape, strict=True)]
        s_lo = [int(m.min()) if m.size else 0 for m in maps]
        s_hi = [int(m.max()) + 1 if m.size else 0 for m in maps]
        data = np.asarray(self.array[self._key(s_lo, s_hi)])
        for i, m, a in zip(self.spatial, maps, s_lo, strict=True):
            data = np.take(data, m - a, axis=i)
        return data


@dataclass
class MultiscaleVolume:
    """A multiscale volume: lazy levels, largest first, in world units.

    Attributes
    ----------
    levels
        The resolution levels, largest first.
    kind
        ``"image"`` (intensities) or ``"labels"`` (segment ids).
    source
        The URI or path it was opened from.
    format
        Name of the format backend that opened it (e.g. ``"ome-zarr"``).
    name
        A short name for display (layer name).
    voxel_size_assumed
        True when the format stored no voxel size and the suite assumed one.
    notes
        Things a person should be told about how it was read.
    """

    levels: list[Level]
    kind: Kind
    source: str
    format: str
    name: str = ""
    voxel_size_assumed: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def level0(self) -> Level:
        return self.levels[0]

    @property
    def shape(self) -> tuple[int, ...]:
        return self.level0.shape

    @property
    def dtype(self) -> np.dtype:
        return self.level0.dtype

    @property
    def ndim(self) -> int:
        return self.level0.ndim

    @property
    def axes(self) -> tuple[str, ...]:
        return self.level0.axes

    @property
    def voxel_size(self) -> tuple[float, ...]:
        return self.level0.voxel_size

    @property
    def offset(self) -> tuple[float, ...]:
        return self.level0.offset

    @property
    def chunks(self) -> tuple[int, ...]:
        return self.level0.chunks

    @property
    def arrays(self) -> list[LazyArray]:
        """The level arrays, largest first (napari's multiscale data)."""
        return [level.array for level in self.levels]

    def info(self) -> dict:
        """A JSON-ready description (what ``napari-connectome info`` prints)."""
        return {
            "source": self.source,
            "format": self.format,
            "name": self.name,
            "kind": self.kind,
            "axes": list(self.axes),
            "shape": list(self.shape),
            "dtype": str(self.dtype),
            "voxel_size_nm": list(self.voxel_size),
            "voxel_size_assumed": self.voxel_size_assumed,
            "offset_nm": list(self.offset),
            "levels": [
                {
                    "shape": list(lv.shape),
                    "voxel_size_nm": list(lv.voxel_size),
                    "offset_nm": list(lv.offset),
                    "chunks": list(lv.chunks),
                    "dtype": str(lv.dtype),
                }
                for lv in self.levels
            ],
            "notes": list(self.notes),
        }

    def with_voxel_size(self, voxel_size) -> MultiscaleVolume:
        """The same volume with level 0 at ``voxel_size`` nm (levels keep their ratios)."""
        from napari_connectome.config import check_voxel_size

        new0 = check_voxel_size(voxel_size, source=self.source, ndim=self.ndim)
        old0 = self.voxel_size
        levels = []
        for lv in self.levels:
            factor = [v / o for v, o in zip(lv.voxel_size, old0, strict=True)]
            vs = tuple(f * n for f, n in zip(factor, new0, strict=True))
            off = tuple(
                o / ov * nv for o, ov, nv in zip(lv.offset, old0, new0, strict=True)
            )
            levels.append(Level(lv.array, vs, off, lv.axes))
        return MultiscaleVolume(
            levels=levels,
            kind=self.kind,
            source=self.source,
            format=self.format,
            name=self.name,
            voxel_size_assumed=False,
            notes=[n for n in self.notes if "assumed" not in n],
        )
