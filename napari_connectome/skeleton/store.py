"""The project's skeletons: one file of every segment's skeleton, kept in step with the edits.

The store lives in the project's ``skeletons`` component as ``skeletons.npz``
(all skeletons concatenated, plus per-supervoxel bounding boxes) and carries a
*signature*: a digest of the supervoxel → segment mapping it was built for,
the volume's geometry, the TEASAR parameters and the format version. Loading
against a proofreader whose state differs raises :class:`StaleSkeletonsError`
(ARCHITECTURE: caches carry a signature and refuse to load on a mismatch);
:meth:`SkeletonStore.open` rebuilds instead.

After an edit, :meth:`SkeletonStore.update_after_edit` drops the retired
segments and skeletonizes only the new ones, each in its bounding box (the
union of its supervoxels' boxes, cached at build time) plus a one-voxel
margin. The margin makes the result identical to a full rebuild: every
voxel's nearest non-segment voxel lies inside such a box, so the distance
transform, and so the TEASAR trace, are the same.

A volume larger than :data:`WHOLE_MAX_VOXELS` (or any, asked with
``method="blockwise"``) is skeletonized block by block, large segments from a
coarser level (:mod:`~napari_connectome.skeleton.blockwise`): nothing is read
whole, the supervoxel boxes are gathered block by block too, and an edit's
new segments are traced again on the same blocks of the same grids, masked to
each segment — the store again equals a rebuild. Its parameters are part of
the signature (``"blockwise"``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from napari_connectome.arrays import distinct
from napari_connectome.atomic import save_npz_atomic
from napari_connectome.errors import InputError, warn
from napari_connectome.skeleton.blockwise import (
    DEFAULT_BLOCK_VOXELS,
    DEFAULT_COARSE_BLOCK_VOXELS,
    DEFAULT_COARSE_MIN_VOXELS,
    DEFAULT_MAX_VOXEL_NM,
    coarse_level,
    count_blocks,
    mapped_mode_level,
    portable_labels,
    skeletonize_volume,
)
from napari_connectome.skeleton.model import Skeleton
from napari_connectome.skeleton.teasar import (
    DEFAULT_DUST_VOXELS,
    _teasar_params,
    skeletonize_voxels,
    to_world,
)
from napari_connectome.volume.roi import Roi

FILE = "skeletons.npz"
FORMAT_VERSION = 1
#: Voxels added around a segment's box when it is re-skeletonized (see the module notes).
MARGIN_VOXELS = 1
#: Level-0 voxels up to which ``method="auto"`` reads the segmentation whole (256³).
WHOLE_MAX_VOXELS = 256**3
METHODS = ("auto", "whole", "blockwise")


class StaleSkeletonsError(InputError):
    """The saved skeletons were built for another state of the segmentation."""


def _digest_mapping(sv_ids: np.ndarray, seg_ids: np.ndarray) -> str:
    h = hashlib.sha1()
    h.update(np.ascontiguousarray(sv_ids, dtype="<u8").tobytes())
    h.update(np.ascontiguousarray(seg_ids, dtype="<u8").tobytes())
    return h.hexdigest()


def _supervoxel_boxes(sv: np.ndarray, origin=(0, 0, 0)) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, boxes)``: each nonzero id and its ``(z0, y0, x0, z1, y1, x1)`` voxel box (end exclusive)."""
    import fastremap
    from scipy.ndimage import find_objects

    renum, remap = fastremap.renumber(np.ascontiguousarray(sv), in_place=False, preserve_zero=True)
    slices = find_objects(renum)
    new_to_old = {int(v): int(k) for k, v in remap.items() if int(k) != 0}
    ids, boxes = [], []
    o = np.asarray(origin, dtype=np.int64)
    for i, sl in enumerate(slices, start=1):
        if sl is None:
            continue
        ids.append(new_to_old[i])
        boxes.append([s.start for s in sl] + [s.stop for s in sl])
    boxes_arr = np.asarray(boxes, dtype=np.int64).reshape(-1, 6) + np.concatenate([o, o])
    ids_arr = np.asarray(ids, dtype=np.uint64)
    order = np.argsort(ids_arr)
    return ids_arr[order], boxes_arr[order]


def _fold_boxes(ids: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One box per id: the union of its rows' boxes; ids sorted."""
    if ids.size == 0:
        return ids.astype(np.uint64), boxes.reshape(-1, 6).astype(np.int64)
    order = np.argsort(ids, kind="stable")
    ids, boxes = ids[order], boxes[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    lo = np.minimum.reduceat(boxes[:, :3], starts, axis=0)
    hi = np.maximum.reduceat(boxes[:, 3:], starts, axis=0)
    return ids[starts].astype(np.uint64), np.concatenate([lo, hi], axis=1).astype(np.int64)


def _supervoxel_boxes_blockwise(level, *, block_voxels=DEFAULT_BLOCK_VOXELS) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_supervoxel_boxes` of a level read block by block (a block's memory, whatever the volume)."""
    from napari_connectome.blockwise.grid import BlockGrid

    ids, boxes = [], []
    for block in BlockGrid.of_level(level, block_voxels=block_voxels):
        key = level.voxel_slices(block.write_roi)
        i, b = _supervoxel_boxes(np.asarray(level.array[key]), origin=[k.start for k in key])
        ids.append(i)
        boxes.append(b)
    if not ids:
        return np.empty(0, np.uint64), np.empty((0, 6), np.int64)
    return _fold_boxes(np.concatenate(ids), np.concatenate(boxes))


def _sources(proofreader, scheduler="threads"):
    """``(labels, supervoxels)`` the blocks read: the proofreader's, or volumes that pickle for Dask workers.

    On workers: the project's supervoxel input mapped chunk by chunk, which
    is what the proofreader reads while no split inside a supervoxel is in force.
    """
    if scheduler in ("threads", "synchronous"):
        return proofreader.labels_volume(), proofreader.supervoxel_volume()
    if proofreader._reader.overlay.active:  # noqa: SLF001 (splits inside supervoxels in force)
        raise InputError("scheduler", "this project has splits inside supervoxels, which Dask workers cannot "
                                      "read yet; skeletonize on threads")
    supervoxels = proofreader.project.open_input("supervoxels")
    return portable_labels(supervoxels, proofreader.mapping()), supervoxels


def _coarse_of(proofreader, settings: dict, labels, supervoxels):
    """The coarse level a blockwise store traces large segments at (see the module notes).

    The labels' own pyramid level when it has one fine enough; else the
    mode of the supervoxels' windows, mapped to segments now — not the mode
    of the segment labels, which an edit would change around its neighbours.
    """
    found = coarse_level(labels, max_voxel_nm=settings["max_voxel_nm"])
    if found is None or any(found is lv for lv in labels.levels):
        return found
    return mapped_mode_level(supervoxels.levels[0], proofreader.mapping(), max_voxel_nm=settings["max_voxel_nm"])


def _blockwise_params(blockwise: dict | None) -> dict:
    """The blockwise settings with their defaults, checked."""
    params = {"max_voxel_nm": DEFAULT_MAX_VOXEL_NM, "coarse_min_voxels": DEFAULT_COARSE_MIN_VOXELS,
              "block_voxels": DEFAULT_BLOCK_VOXELS, "coarse_block_voxels": DEFAULT_COARSE_BLOCK_VOXELS}
    unknown = set(blockwise or {}) - set(params)
    if unknown:
        raise InputError("blockwise", f"unknown setting(s) {sorted(unknown)}; known: {sorted(params)}")
    params.update(blockwise or {})
    params["max_voxel_nm"] = float(params["max_voxel_nm"])
    params["coarse_min_voxels"] = int(params["coarse_min_voxels"])
    params["block_voxels"] = int(params["block_voxels"])
    params["coarse_block_voxels"] = int(params["coarse_block_voxels"])
    if (not params["max_voxel_nm"] > 0 or params["coarse_min_voxels"] < 1
            or min(params["block_voxels"], params["coarse_block_voxels"]) < 8):
        raise InputError("blockwise", f"settings out of range: {params} (need a positive voxel edge, at least "
                                      "1 coarse voxel, blocks of at least 8 voxels)")
    return params


class SkeletonStore:
    """Every segment's skeleton, saved in the project and updated edit by edit.

    Build with :meth:`rebuild` (or :meth:`open`, which loads a current store
    or rebuilds a stale one); keep it current with
    ``proofreader.add_listener(lambda r: store.update_after_edit(proofreader, r))``.

    Attributes
    ----------
    skeletons
        ``segment_id -> Skeleton``; segments with no skeleton (smaller than
        the dust threshold) are absent.
    signature
        What the store was built for (see the module notes).
    """

    def __init__(self, project, *, skeletons: dict[int, Skeleton], signature: dict,
                 sv_ids: np.ndarray, sv_boxes: np.ndarray) -> None:
        self.project = project
        self.skeletons = skeletons
        self.signature = signature
        self._sv_ids = np.asarray(sv_ids, dtype=np.uint64)
        self._sv_boxes = np.asarray(sv_boxes, dtype=np.int64).reshape(-1, 6)

    # ------------------------------------------------------------ signature
    @staticmethod
    def signature_of(proofreader, *, teasar: dict | None = None, dust_voxels: int = DEFAULT_DUST_VOXELS,
                     blockwise: dict | None = None) -> dict:
        """The signature a store built now for ``proofreader`` would carry.

        ``blockwise``: the blockwise settings (:func:`_blockwise_params`), or
        None for a store traced whole.
        """
        from napari_connectome import __version__

        lv = proofreader.supervoxel_volume().levels[0]
        sv_ids, seg_ids = proofreader.mapping()
        extra = {} if blockwise is None else {"blockwise": _blockwise_params(blockwise)}
        return extra | {
            "format_version": FORMAT_VERSION,
            "package_version": __version__,
            "mapping_sha1": _digest_mapping(sv_ids, seg_ids),
            "shape": [int(s) for s in lv.shape],
            "voxel_size_nm": [float(v) for v in lv.voxel_size],
            "offset_nm": [float(v) for v in lv.offset],
            "teasar": _teasar_params(teasar),
            "dust_voxels": int(dust_voxels),
        }

    def is_current(self, proofreader) -> bool:
        """True if the store matches the proofreader's segmentation now."""
        return self.signature == self.signature_of(
            proofreader, teasar=self.signature.get("teasar"), dust_voxels=self.signature.get("dust_voxels", 0),
            blockwise=self.signature.get("blockwise"),
        )

    # ------------------------------------------------------------ access
    def get(self, segment_id: int) -> Skeleton | None:
        """The skeleton of a segment, or None (too small, or no such segment)."""
        return self.skeletons.get(int(segment_id))

    def __len__(self) -> int:
        return len(self.skeletons)

    @staticmethod
    def path(project) -> Path:
        """Where a project's store is saved."""
        return Path(project.component_path("skeletons")) / FILE

    # ------------------------------------------------------------ building
    @classmethod
    def rebuild(cls, proofreader, *, teasar: dict | None = None, dust_voxels: int = DEFAULT_DUST_VOXELS,
                method: str = "auto", blockwise: dict | None = None, scheduler="threads",
                workers: int | None = None, progress=None, cancel=None, save: bool = True) -> SkeletonStore:
        """Skeletonize every segment of the proofreader's segmentation now.

        Parameters
        ----------
        teasar, dust_voxels
            As :func:`~napari_connectome.skeleton.skeletonize`.
        method
            ``"whole"``: level 0 read whole, one kimimaro call; ``"blockwise"``:
            :func:`~napari_connectome.skeleton.blockwise.skeletonize_volume`;
            ``"auto"`` (default): whole up to :data:`WHOLE_MAX_VOXELS` voxels.
        blockwise
            Settings of the blockwise method: ``max_voxel_nm``,
            ``coarse_min_voxels``, ``block_voxels`` (defaults of
            :mod:`~napari_connectome.skeleton.blockwise`).
        scheduler, workers
            Where the blockwise method's blocks run (the result is the same).
        progress
            A :class:`~napari_connectome.progress.Progress`.
        cancel
            A callable that returns True to stop (blockwise, between blocks).
        save
            Write the store into the project (atomically).
        """
        from napari_connectome.progress import NullProgress, PartOf
        from napari_connectome.provenance import Recorder, record_in_project, volume_identity

        if method not in METHODS:
            raise InputError("method", f"unknown skeleton method {method!r}; choose one of {', '.join(METHODS)}")
        sv_level = proofreader.supervoxel_volume().levels[0]
        if method == "auto":
            method = "whole" if int(np.prod(sv_level.shape)) <= WHOLE_MAX_VOXELS else "blockwise"
        settings = _blockwise_params(blockwise) if method == "blockwise" else None
        progress = progress or NullProgress()
        labels, supervoxels = _sources(proofreader, scheduler) if settings is not None else (None, None)
        coarse = None if settings is None else _coarse_of(proofreader, settings, labels, supervoxels)
        progress.start(3 if settings is None else 2 + count_blocks(
            labels, max_voxel_nm=settings["max_voxel_nm"],
            block_voxels=settings["block_voxels"], coarse_block_voxels=settings["coarse_block_voxels"],
            coarse=coarse), "skeletons")
        rec = Recorder("skeletons", parameters={"teasar": teasar, "dust_voxels": dust_voxels, "method": method,
                                                "blockwise": settings},
                       extra_software=("kimimaro",))
        try:
            rec.input("supervoxels", volume_identity(proofreader.project.open_input("supervoxels")))
            signature = cls.signature_of(proofreader, teasar=teasar, dust_voxels=dust_voxels, blockwise=settings)
            if settings is None:
                sv = np.asarray(sv_level.array[...])
                sv_ids, sv_boxes = _supervoxel_boxes(sv)
                del sv
                progress.advance()
                labels = np.asarray(proofreader.labels_volume().levels[0].array[...])
                parts = skeletonize_voxels(labels, voxel_size=signature["voxel_size_nm"], teasar=teasar,
                                           dust_voxels=dust_voxels)
                del labels
                progress.advance()
                skeletons = {
                    seg: to_world(seg, p, voxel_size=signature["voxel_size_nm"], offset=signature["offset_nm"])
                    for seg, p in sorted(parts.items())
                }
            else:
                sv_ids, sv_boxes = _supervoxel_boxes_blockwise(sv_level, block_voxels=settings["block_voxels"])
                progress.advance()
                skeletons, _levels = skeletonize_volume(
                    labels, teasar=teasar, dust_voxels=dust_voxels, coarse=coarse,
                    scheduler=scheduler, workers=workers, progress=PartOf(progress), cancel=cancel,
                    **settings)
            store = cls(proofreader.project, skeletons=skeletons, signature=signature,
                        sv_ids=sv_ids, sv_boxes=sv_boxes)
            if save:
                rec.set("outputs", {"segments": len(skeletons), "signature": signature})
                record_in_project(proofreader.project, "skeletons", rec.finish())
                store.save()
                proofreader.project.save()  # the record (save() writes the manifest only the first time)
            progress.advance()
        finally:
            progress.close()
        return store

    @classmethod
    def open(cls, proofreader, *, teasar: dict | None = None, dust_voxels: int = DEFAULT_DUST_VOXELS,
             progress=None) -> SkeletonStore:
        """The project's store if it matches the proofreader now, else a fresh rebuild (saved)."""
        project = proofreader.project
        if cls.path(project).is_file():
            try:
                store = cls.load(project)
            except StaleSkeletonsError:
                store = None  # another format version: rebuilding loses nothing
            except InputError as exc:
                warn(f"{exc}; rebuilding the skeletons")
                store = None  # a damaged cache: rebuilt, said so
            # A store traced blockwise (by `skeletonize`, or a volume too large to read whole) stays so.
            if store is not None and store.signature == cls.signature_of(
                    proofreader, teasar=teasar, dust_voxels=dust_voxels,
                    blockwise=store.signature.get("blockwise")):
                return store
        return cls.rebuild(proofreader, teasar=teasar, dust_voxels=dust_voxels, progress=progress)

    # ------------------------------------------------------------ updating
    def _boxes_of(self, svs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos = np.searchsorted(self._sv_ids, svs)
        pos = np.minimum(pos, max(len(self._sv_ids) - 1, 0))
        known = (self._sv_ids[pos] == svs) if len(self._sv_ids) else np.zeros(len(svs), bool)
        return self._sv_boxes[pos[known]], svs[~known]

    def _learn_boxes(self, proofreader, bbox_nm) -> None:
        """Add boxes of supervoxels minted inside ``bbox_nm`` (a split inside a supervoxel)."""
        lv = proofreader.supervoxel_volume().levels[0]
        # The voxels the box touches and one more on every side, inside the volume.
        box = lv.snap(Roi.from_bounds(bbox_nm[0], bbox_nm[1]).grow(lv.spatial_voxel_size), mode="grow")
        key = lv.voxel_slices(box.intersect(lv.roi))
        lo = np.array([s.start for s in key], np.int64)
        crop = np.asarray(lv.array[key])
        ids, boxes = _supervoxel_boxes(crop, origin=lo)
        new = ~np.isin(ids, self._sv_ids)
        if new.any():
            all_ids = np.concatenate([self._sv_ids, ids[new]])
            all_boxes = np.concatenate([self._sv_boxes, boxes[new]])
            order = np.argsort(all_ids)
            self._sv_ids, self._sv_boxes = all_ids[order], all_boxes[order]

    def segment_box(self, proofreader, segment_id: int, *, bbox_nm=None) -> tuple[slice, slice, slice]:
        """Level-0 voxel slices holding a segment with :data:`MARGIN_VOXELS` around it."""
        shape = np.asarray(self.signature["shape"], dtype=np.int64)
        svs = np.asarray(proofreader.segment_supervoxels(segment_id), dtype=np.uint64)
        boxes, missing = self._boxes_of(svs)
        if missing.size and bbox_nm is not None:
            self._learn_boxes(proofreader, bbox_nm)
            boxes, missing = self._boxes_of(svs)
        if missing.size or len(boxes) == 0:
            return tuple(slice(0, int(s)) for s in shape)  # unknown extent: the whole volume is right
        lo = np.maximum(boxes[:, :3].min(axis=0) - MARGIN_VOXELS, 0)
        hi = np.minimum(boxes[:, 3:].max(axis=0) + MARGIN_VOXELS, shape)
        return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))

    def update_after_edit(self, proofreader, edit_result, *, save: bool = True) -> list[int]:
        """Drop the edit's retired segments and skeletonize only its new ones.

        Call it for every committed edit (a listener does), in order: the
        store then stays equal to a rebuild.

        Returns
        -------
        list of int
            The new segments that got a skeleton.
        """
        sig = self.signature
        for seg in edit_result.before_segments:
            self.skeletons.pop(int(seg), None)
        labels, supervoxels = _sources(proofreader)
        labels_level = labels.levels[0]
        settings = sig.get("blockwise")
        coarse = None if settings is None else _coarse_of(proofreader, settings, labels, supervoxels)
        segments = [int(seg) for seg in edit_result.after_segments]
        if coarse is not None and edit_result.bbox_nm is not None:
            segments += self._window_neighbours(labels_level, coarse, edit_result, exclude=segments)
        made = []
        for seg in segments:
            box = self.segment_box(proofreader, seg, bbox_nm=edit_result.bbox_nm)
            self.skeletons.pop(seg, None)
            if settings is not None:
                # The same blocks of the same grids as a rebuild, masked to the segment.
                traced, _levels = skeletonize_volume(
                    labels, segment_ids=[seg], roi=labels_level.roi_of(box), coarse=coarse, teasar=sig["teasar"],
                    dust_voxels=sig["dust_voxels"], scheduler="synchronous",
                    **settings)
                if seg in traced:
                    self.skeletons[seg] = traced[seg]
                    made.append(seg)
                continue
            crop = np.asarray(labels_level.array[box]) == seg
            origin = [s.start for s in box]
            parts = skeletonize_voxels(crop.view(np.uint8), voxel_size=sig["voxel_size_nm"], origin=origin,
                                       teasar=sig["teasar"], dust_voxels=sig["dust_voxels"])
            if 1 in parts:
                self.skeletons[seg] = to_world(seg, parts[1], voxel_size=sig["voxel_size_nm"],
                                               offset=sig["offset_nm"])
                made.append(seg)
        self.skeletons = dict(sorted(self.skeletons.items()))
        self.signature = self.signature_of(proofreader, teasar=sig["teasar"], dust_voxels=sig["dust_voxels"],
                                           blockwise=settings)
        if save:
            self.save()
        return made

    def _window_neighbours(self, level, coarse, edit_result, *, exclude) -> list[int]:
        """Segments beside an edit that minted supervoxels: their coarse windows may have changed.

        A split inside a supervoxel changes the mode of the coarse windows it
        cuts, and a window's mode may pass to a neighbour; their skeletons are
        traced again (a merge or a graph split moves no window of a neighbour).
        """
        lo, hi = (np.asarray(v, dtype=np.float64) for v in edit_result.bbox_nm)
        grow = np.asarray(coarse.spatial_voxel_size, dtype=np.float64)
        box = level.snap(Roi.from_bounds(lo - grow, hi + grow), mode="grow").intersect(level.roi)
        if box.empty:
            return []
        near = distinct(np.asarray(level.array[level.voxel_slices(box)]))
        skip = {0, *exclude, *(int(s) for s in edit_result.before_segments)}
        return [int(s) for s in near if int(s) not in skip]

    # ------------------------------------------------------------ disk
    def save(self) -> Path:
        """Write the store into the project atomically (temporary file, fsync, rename)."""
        project = self.project
        if "skeletons" not in project.manifest.get("components", {}):
            project.register_component("skeletons")
        path = self.path(project)
        path.parent.mkdir(parents=True, exist_ok=True)
        sks = list(self.skeletons.values())
        arrays = {
            "signature": np.array(json.dumps(self.signature, sort_keys=True)),
            "segment_ids": np.array([s.segment_id for s in sks], dtype=np.uint64),
            "vertex_counts": np.array([len(s.vertices_nm) for s in sks], dtype=np.int64),
            "edge_counts": np.array([len(s.edges) for s in sks], dtype=np.int64),
            "vertices_nm": np.concatenate([s.vertices_nm for s in sks]) if sks else np.zeros((0, 3), np.float32),
            "edges": np.concatenate([s.edges for s in sks]) if sks else np.zeros((0, 2), np.int32),
            "radii_nm": np.concatenate([s.radii_nm for s in sks]) if sks else np.zeros(0, np.float32),
            "sv_ids": self._sv_ids,
            "sv_boxes": self._sv_boxes,
        }
        return save_npz_atomic(path, arrays)

    @classmethod
    def load(cls, project, *, proofreader=None) -> SkeletonStore:
        """Read the project's store.

        Parameters
        ----------
        proofreader
            When given, refuse a store built for another state of its
            segmentation (:class:`StaleSkeletonsError`).
        """
        from napari_connectome.project import Project, open_project

        if not isinstance(project, Project):
            project = open_project(project)
        path = cls.path(project)
        if not path.is_file():
            raise InputError(path, "the project has no skeletons yet; build them (SkeletonStore.rebuild)")
        try:
            # Our own handle: np.load leaves its file open when the zip is unreadable.
            with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
            signature = json.loads(str(data["signature"]))
            if not isinstance(signature, dict):
                raise ValueError("the signature is not a mapping")
            counts = [np.asarray(data[k]).reshape(-1) for k in ("segment_ids", "vertex_counts", "edge_counts")]
            if len({c.size for c in counts}) != 1 or (counts[1] < 0).any() or (counts[2] < 0).any() \
                    or int(counts[1].sum()) != len(data["vertices_nm"]) or int(counts[2].sum()) != len(data["edges"]):
                raise ValueError("its skeleton counts do not match its arrays")
        except MemoryError:
            raise
        except Exception as exc:  # zip, zlib, EOF, JSON, missing keys: every kind of damage reads the same
            text = " ".join(str(exc).split())[:120]
            raise InputError(path, f"is not a readable skeleton store ({type(exc).__name__}: {text})") from None
        if signature.get("format_version") != FORMAT_VERSION:
            raise StaleSkeletonsError(path, f"has format version {signature.get('format_version')}, "
                                            f"this suite reads {FORMAT_VERSION}; rebuild it")
        skeletons: dict[int, Skeleton] = {}
        v0 = e0 = 0
        for seg, nv, ne in zip(data["segment_ids"].tolist(), data["vertex_counts"].tolist(),
                               data["edge_counts"].tolist(), strict=True):
            skeletons[int(seg)] = Skeleton(int(seg), data["vertices_nm"][v0:v0 + nv], data["edges"][e0:e0 + ne],
                                           data["radii_nm"][v0:v0 + nv])
            v0, e0 = v0 + nv, e0 + ne
        store = cls(project, skeletons=skeletons, signature=signature,
                    sv_ids=data["sv_ids"], sv_boxes=data["sv_boxes"])
        if proofreader is not None and not store.is_current(proofreader):
            raise StaleSkeletonsError(path, "was built for another state of the segmentation "
                                            "(an edit since, or other parameters); rebuild it")
        return store
