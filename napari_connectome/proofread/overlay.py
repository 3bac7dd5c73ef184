"""Reading the edited segmentation: base supervoxels + overlay patches, remapped through the mapping.

Nothing is ever written back into the supervoxel volume. A split inside a
supervoxel stores a small patch (its bounding box, new ids where the old
supervoxel was, 0 elsewhere); reads apply the active patches, in the order
they were made, on top of the base volume. Segment ids come from one gather
through the current mapping: a region's *positions* (index of each voxel's
supervoxel in the sorted id table) are cached, so after an edit that changes
only the mapping, showing a region again costs one ``take`` and no disk read.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from napari_connectome.proofread.ops import Patch
from napari_connectome.volume.lazy import _LazyBase, normalize_key
from napari_connectome.volume.model import Level, MultiscaleVolume

#: Bytes of cached supervoxel positions kept for redraws (per proofreader).
POSITION_CACHE_BYTES = 256 * 2**20


class Overlay:
    """The patches of splits inside supervoxels, and which of them are on."""

    def __init__(self) -> None:
        self.patches: dict[int, Patch] = {}
        self.active: list[int] = []
        self._levels: dict[tuple, tuple] = {}

    def add(self, op_id: int, patch: Patch) -> None:
        self.patches[op_id] = patch

    def switch(self, on: list[int], off: list[int]) -> None:
        for op_id in off:
            self.active.remove(op_id)
        for op_id in on:
            if op_id not in self.patches:
                raise KeyError(op_id)
            self.active.append(op_id)
        # Patches apply in the order they were made: a later one can only
        # divide a supervoxel an earlier one minted.
        self.active.sort()

    def apply(self, out: np.ndarray, index: list[np.ndarray], factors) -> None:
        """Write the active patches into ``out``.

        ``index[i]`` are the voxel indices along axis ``i`` of a level whose
        voxels are ``factors`` level-0 voxels wide (level 0: all 1). A voxel
        changes only where it shows the supervoxel its patch divides.
        """
        key_f = tuple(int(round(f)) for f in factors)
        for op_id in self.active:
            patch = self.patches[op_id]
            cached = self._levels.get((op_id, key_f))
            if cached is None:
                cached = patch.at_level(key_f)
                self._levels[(op_id, key_f)] = cached
            offset, data = cached
            sel, src = [], []
            for c, o, s in zip(index, offset, data.shape, strict=True):
                inside = (c >= o) & (c < o + s)
                if not inside.any():
                    break
                sel.append(np.flatnonzero(inside))
                src.append(c[inside] - o)
            else:
                sub = data[np.ix_(*src)]
                where = np.ix_(*sel)
                region = out[where]
                out[where] = np.where((sub != 0) & (region == np.uint64(patch.replaces)), sub, region)

    def boxes(self, op_ids) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        return [(self.patches[i].offset, self.patches[i].stop) for i in op_ids if i in self.patches]


class LabelReader:
    """Reads supervoxels (with the overlay) and segments from a base supervoxel volume.

    Parameters
    ----------
    volume
        The base supervoxel volume (any number of levels).
    overlay
        The patches.
    table
        ``table() -> (ids, segment_of_position)``: the sorted supervoxel ids
        (position 0 = background) and the segment id of each position.
    """

    def __init__(self, volume: MultiscaleVolume, overlay: Overlay, table: Callable) -> None:
        self.volume = volume
        self.overlay = overlay
        self.table = table
        self._cache: OrderedDict = OrderedDict()
        self._cache_bytes = 0
        self._lock = threading.Lock()
        v0 = np.asarray(volume.levels[0].voxel_size, dtype=np.float64)
        # Level k's voxel i covers level-0 voxels [i * f, (i + 1) * f) (the
        # pyramid writer's mode downsampling; offsets follow from it).
        self._factors = [np.asarray(lv.voxel_size, np.float64) / v0 for lv in volume.levels]

    # ------------------------------------------------------------ reads
    def supervoxels(self, level: int, norm) -> np.ndarray:
        """Supervoxel ids of a region (``norm``: one int or slice per axis)."""
        full, squeeze = _keep_dims(norm)
        data = np.asarray(self.volume.levels[level].array[full]).astype(np.uint64, copy=False)
        if self.overlay.active:
            data = np.array(data, dtype=np.uint64, copy=True)
            self.overlay.apply(data, self._index(full), self._factors[level])
        return np.asarray(data[squeeze])

    def segments(self, level: int, norm) -> np.ndarray:
        """Segment ids of a region through the current mapping."""
        ids, seg = self.table()
        pos, missing = self._positions(level, norm, ids)
        # clip: a redraw racing an edit may see positions one table newer
        # than ``seg``; it shows a stale colour until the next redraw, never fails.
        out = seg.take(pos, mode="clip")
        if missing is not None:
            flat_idx, values = missing
            out.reshape(-1)[flat_idx] = values
        return out

    def _positions(self, level: int, norm, ids: np.ndarray):
        key = (level, _hashable(norm))
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit[0], hit[1]
        sv = self.supervoxels(level, norm)
        pos = np.minimum(np.asarray(np.searchsorted(ids, sv)), ids.size - 1)
        pos = pos.astype(np.int32 if ids.size < 2**31 else np.int64)
        found = ids.take(pos) == sv
        missing = None
        if not found.all():
            flat = np.flatnonzero(~found.reshape(-1))
            missing = (flat, sv.reshape(-1)[flat])
        with self._lock:
            self._cache[key] = (pos, missing)
            self._cache_bytes += pos.nbytes
            while self._cache_bytes > POSITION_CACHE_BYTES and len(self._cache) > 1:
                _, (old, _) = self._cache.popitem(last=False)
                self._cache_bytes -= old.nbytes
        return pos, missing

    def invalidate(self, boxes) -> None:
        """Forget cached regions that overlap level-0 boxes ``[(start, stop), ...]``."""
        if not boxes:
            return
        with self._lock:
            for key in list(self._cache):
                level, hkey = key
                full, _ = _keep_dims(_unhash(hkey))
                f = self._factors[level]
                lo, hi = [], []
                for k, fk in zip(full, f, strict=True):
                    r = range(k.start, k.stop, k.step)
                    a, b = (min(r[0], r[-1]), max(r[0], r[-1]) + 1) if len(r) else (0, 0)
                    lo.append(int(np.floor(a * fk)))
                    hi.append(int(np.ceil(b * fk)))
                for start, stop in boxes:
                    if all(a < s1 and s0 < b for a, b, s0, s1 in zip(lo, hi, start, stop, strict=True)):
                        pos, _ = self._cache.pop(key)
                        self._cache_bytes -= pos.nbytes
                        break

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()
            self._cache_bytes = 0

    @staticmethod
    def _index(full) -> list[np.ndarray]:
        return [np.arange(k.start, k.stop, k.step, dtype=np.int64) for k in full]


def _hashable(norm) -> tuple:
    # slices are unhashable before Python 3.12
    return tuple(k if isinstance(k, int) else (k.start, k.stop, k.step) for k in norm)


def _unhash(key) -> tuple:
    return tuple(k if isinstance(k, int) else slice(*k) for k in key)


def _keep_dims(norm) -> tuple[tuple[slice, ...], tuple]:
    full = []
    squeeze = []
    for k in norm:
        if isinstance(k, int):
            full.append(slice(k, k + 1, 1))
            squeeze.append(0)
        else:
            full.append(k)
            squeeze.append(slice(None))
    return tuple(full), tuple(squeeze)


class ProofreadArray(_LazyBase):
    """A lazy level of the edited segmentation (segment or supervoxel ids, uint64)."""

    def __init__(self, reader: LabelReader, level: int, *, what: str, source: str) -> None:
        super().__init__(source=source)
        base = reader.volume.levels[level].array
        self.reader = reader
        self.level = level
        self.what = what
        self.shape = tuple(int(s) for s in base.shape)
        self.dtype = np.dtype(np.uint64)
        self.chunks = tuple(int(c) for c in base.chunks)

    def __getitem__(self, key) -> np.ndarray:
        norm = normalize_key(key, self.shape)
        if self.what == "segments":
            return self.reader.segments(self.level, norm)
        return self.reader.supervoxels(self.level, norm)


def proofread_volume(reader: LabelReader, *, what: str, name: str) -> MultiscaleVolume:
    """A multiscale volume (kind ``labels``) whose levels read through ``reader``."""
    base = reader.volume
    levels = [
        Level(ProofreadArray(reader, i, what=what, source=f"{base.source} ({what})"), lv.voxel_size, lv.offset, lv.axes)
        for i, lv in enumerate(base.levels)
    ]
    return MultiscaleVolume(
        levels=levels,
        kind="labels",
        source=base.source,
        format="proofread",
        name=name,
        voxel_size_assumed=base.voxel_size_assumed,
        notes=list(base.notes),
    )
