"""What a volume is: a list of lazy arrays that know where they are in the world.

Conventions (funlib.persistence / OME-NGFF / napari):

* axes are named (``"z", "y", "x"``, optionally ``"c"`` or ``"t"`` first);
* ``voxel_size`` is in nm per axis (1.0 for non-spatial axes);
* ``offset`` is the world position in nm of the *centre* of voxel index 0,
  which is what napari's ``translate`` and NGFF's ``translation`` mean;
* levels are ordered largest first (napari's multiscale order).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

import numpy as np

Kind = Literal["image", "labels"]
SPATIAL_AXES = ("z", "y", "x")


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

    def read(self) -> np.ndarray:
        """Read the whole level into memory."""
        return np.asarray(self.array[tuple(slice(None) for _ in self.shape)])


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
