"""Skeletons of a whole volume, block by block, from a coarser level where a segment is large enough.

igneous's recipe for whole datasets, kept: every block of a level is
skeletonized on its own with kimimaro's ``fix_borders`` (a segment that
crosses a block face is traced to the point of its cross-section furthest
from the section's edge), blocks overlap by one voxel on their high side, so
the two blocks beside a face compute that face's target from the same plane
and their skeletons meet in the same voxel; the fragments of a segment are
then joined by their shared vertices. Memory is a block's, whatever the
volume; blocks run on threads, processes or a Dask cluster
(:func:`~napari_connectome.blockwise.run.run_blockwise`) and are folded in
block order, so the result does not depend on where or in which order they ran.

The level rule (what igneous does by hand, choosing a mip): a segment is
skeletonized at the *coarse level* — the coarsest pyramid level whose largest
voxel edge is at most ``max_voxel_nm`` (default :data:`DEFAULT_MAX_VOXEL_NM`) —
when it holds at least ``coarse_min_voxels`` voxels there (default
:data:`DEFAULT_COARSE_MIN_VOXELS`); every other segment at full resolution, in
a second pass over level 0 with the coarse segments masked out. The default
edge is a fraction of TEASAR's own scale: kimimaro's invalidation ball is
300 nm + 1.5 × the radius, so no feature below ~300 nm is traced, and a 40 nm
voxel still puts ≥ 7 voxels across that ball. A segment of ≥ 2,000 coarse
voxels is at least ~1 µm of neurite at 40 nm: a thin axon (< 2 voxels across
at the coarse level) that breaks up there is small, so it falls to level 0.
The quality against full-resolution skeletons is measured by
``benchmarks/bench_skeleton_scale.py`` (path length and topology per segment).

A volume with no such level (supervoxels written by ``segment`` have one
level) gets a *virtual* one: the mode of each ``f``-voxel window of level 0,
``f`` per axis the largest whole factor that keeps the voxel edge within
``max_voxel_nm``, computed chunk by chunk when a block reads it (the same
windows for a rebuild and for an edit's update, so both read the same
coarse labels).

The kimimaro cost is about linear in the voxels it traces, so a coarse level
``k`` times smaller per axis costs ~k³ less for the large segments — which
hold nearly all of a neuropil volume's voxels.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from napari_connectome.arrays import distinct
from napari_connectome.errors import InputError
from napari_connectome.skeleton.model import Skeleton
from napari_connectome.skeleton.teasar import DEFAULT_DUST_VOXELS, _teasar_params

#: Largest voxel edge (nm) of the level the large segments are skeletonized at (see the module notes).
DEFAULT_MAX_VOXEL_NM = 40.0
#: Voxels a segment needs at the coarse level to be skeletonized there.
DEFAULT_COARSE_MIN_VOXELS = 2000
#: Edge of a block, in voxels of the level it reads.
DEFAULT_BLOCK_VOXELS = 256
#: Edge of a block of the coarse level, in its voxels. Smaller than a level-0 block: a coarse voxel is
#: several level-0 voxels across, and at 1024³ (a 256³ coarse level) one 256-voxel block made the coarse
#: pass, most of the time, a single job on a single core.
DEFAULT_COARSE_BLOCK_VOXELS = 128


def coarse_level(volume, *, max_voxel_nm: float = DEFAULT_MAX_VOXEL_NM):
    """The coarse level: the coarsest level of ``volume`` whose largest voxel edge is ≤ ``max_voxel_nm``.

    When that is level 0 but windows of level 0 would fit (a volume without a
    pyramid), a virtual mode-downsampled level (see the module notes).
    Returns None when level 0 is the coarsest possible.
    """
    if not max_voxel_nm > 0:
        raise InputError("max voxel", f"must be a positive number of nm, got {max_voxel_nm}")
    best = 0
    for i, lv in enumerate(volume.levels):
        if max(float(v) for v in lv.spatial_voxel_size) <= max_voxel_nm * (1 + 1e-9):
            best = i
    if best > 0:
        return volume.levels[best]
    base = volume.levels[0]
    factors = _window_factors(base, max_voxel_nm)
    if all(f == 1 for f in factors) or base.array.ndim != 3:
        return None
    return _mode_level(base, factors)


def _window_factors(level, max_voxel_nm: float) -> tuple[int, ...]:
    """Per axis, the largest whole factor that keeps the level's voxel edge within ``max_voxel_nm``."""
    return tuple(max(1, int(np.floor(max_voxel_nm / float(v) + 1e-9))) for v in level.spatial_voxel_size)


def _sorted_table(mapping) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, labels)`` sorted by id, as uint64: what :func:`_relabel` looks up."""
    ids, labels = (np.asarray(a) for a in mapping)
    order = np.argsort(ids)
    return ids[order].astype(np.uint64), labels[order].astype(np.uint64)


def _relabel(values: np.ndarray, table) -> np.ndarray:
    """``values`` through a sorted ``(ids, labels)`` table; ids not in it keep their value."""
    ids, labels = table
    if not len(ids):
        return values.astype(np.uint64)
    pos = np.minimum(np.searchsorted(ids, values), len(ids) - 1)
    return np.where(ids[pos] == values, labels[pos], values).astype(np.uint64)


class _ModeChunk:
    """One chunk of a virtual level: the mode of level-0 windows (a class, so it pickles to Dask workers).

    With ``mapping`` (``(sorted ids, their labels)``), the windows' mode is
    taken over ``base``'s ids and then relabelled: supervoxels → segments.
    """

    def __init__(self, base, factors: tuple[int, ...], chunks: tuple[int, ...], mapping=None) -> None:
        self.base, self.factors, self.chunks, self.mapping = base, factors, chunks, mapping

    def __call__(self, index: tuple[int, ...]) -> np.ndarray:
        from napari_connectome.pyramid.downsample import downsample_mode

        key = tuple(slice(i * c * f, min((i + 1) * c * f, n))
                    for i, c, f, n in zip(index, self.chunks, self.factors, self.base.shape, strict=True))
        out = downsample_mode(np.asarray(self.base.array[key]), self.factors)
        return out if self.mapping is None else _relabel(out, self.mapping)


def mapped_mode_level(supervoxels, mapping, *, max_voxel_nm: float = DEFAULT_MAX_VOXEL_NM):
    """The virtual coarse level of a segmentation made of ``supervoxels`` (level 0) and ``mapping``.

    The mode is taken over supervoxel ids, then mapped: so a merge changes
    the coarse voxels of the merged segments only (the mode of segment ids
    would also move window ties of their neighbours). None when level 0 is
    already coarse enough.
    """
    factors = _window_factors(supervoxels, max_voxel_nm)
    if all(f == 1 for f in factors):
        return None
    return _mode_level(supervoxels, factors, mapping=_sorted_table(mapping))


class _MappedChunk:
    """One chunk of a level's supervoxels mapped to segments (a class, so it pickles to Dask workers)."""

    def __init__(self, level, mapping) -> None:
        self.level, self.mapping = level, mapping

    def __call__(self, index: tuple[int, ...]) -> np.ndarray:
        chunks = self.level.array.chunks
        key = tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(index, chunks, self.level.shape, strict=True))
        return _relabel(np.asarray(self.level.array[key]), self.mapping)


def portable_labels(supervoxels, mapping):
    """Segment labels that pickle: every level of ``supervoxels`` mapped through ``mapping`` chunk by chunk.

    What a proofreader's labels volume reads when no split inside a
    supervoxel is in force, made of parts a Dask worker can receive (the
    proofreader's own reader holds locks and open files).
    """
    from napari_connectome.volume.cache import ChunkCache
    from napari_connectome.volume.lazy import ChunkedArray
    from napari_connectome.volume.model import Level, MultiscaleVolume

    table = _sorted_table(mapping)
    levels = [Level(ChunkedArray(_MappedChunk(lv, table), shape=lv.shape, dtype=np.uint64, chunks=lv.array.chunks,
                                 source=f"{lv.array.source} (segments)", cache=ChunkCache(0)),
                    lv.voxel_size, lv.offset, lv.axes)
              for lv in supervoxels.levels]
    return MultiscaleVolume(levels=levels, kind="labels", source=supervoxels.source, format="mapped",
                            name="segments")


def _mode_level(base, factors: tuple[int, ...], mapping=None):
    """A lazy level of ``base`` downsampled by ``factors`` (mode of each window, as pyramids of labels are)."""
    from napari_connectome.volume.cache import ChunkCache
    from napari_connectome.volume.checks import level_offset
    from napari_connectome.volume.lazy import ChunkedArray
    from napari_connectome.volume.model import Level

    shape = tuple(-(-int(n) // f) for n, f in zip(base.shape, factors, strict=True))
    chunks = tuple(min(64, n) for n in shape)
    vs = tuple(float(v) * f for v, f in zip(base.voxel_size, factors, strict=True))
    # Never the shared cache: its key is the source's name, and an edit changes the labels under the same name.
    dtype = base.array.dtype if mapping is None else np.dtype(np.uint64)
    array = ChunkedArray(_ModeChunk(base, factors, chunks, mapping), shape=shape, dtype=dtype, chunks=chunks,
                         source=f"{base.array.source} (mode of {'×'.join(map(str, factors))} windows)",
                         cache=ChunkCache(0))
    return Level(array, vs, level_offset(base.offset, base.voxel_size, vs), base.axes)


def _level_dust(dust_voxels: int, level, base) -> int:
    """The dust threshold in voxels of ``level`` that covers ``dust_voxels`` of the base level."""
    ratio = float(np.prod(level.spatial_voxel_size)) / float(np.prod(base.spatial_voxel_size))
    return int(dust_voxels // max(ratio, 1.0))


class _BlockSkeletons:
    """One block's skeletons and write-box voxel counts (a class, so it pickles to Dask workers)."""

    def __init__(self, level, *, teasar: dict, dust: int, fix_branching: bool,
                 drop: np.ndarray | None = None, keep: np.ndarray | None = None) -> None:
        self.level, self.teasar, self.dust, self.fix_branching = level, teasar, dust, fix_branching
        self.drop, self.keep = drop, keep

    def __call__(self, block):
        import fastremap
        import kimimaro

        lv = self.level
        read = lv.voxel_slices(block.read_roi.intersect(lv.roi))
        write = lv.voxel_slices(block.write_roi)
        labels = np.ascontiguousarray(lv.array[read])
        if labels.dtype.kind not in "ui":
            raise InputError(lv.array, f"need integer labels, got {labels.dtype}")
        if self.keep is not None:
            labels = fastremap.mask_except(labels, [int(v) for v in self.keep])
        elif self.drop is not None and self.drop.size:
            labels = fastremap.mask(labels, [int(v) for v in self.drop])
        core = labels[tuple(slice(w.start - r.start, w.stop - r.start) for w, r in zip(write, read, strict=True))]
        ids, counts = fastremap.unique(core, return_counts=True)
        nz = ids != 0
        ids, counts = ids[nz].astype(np.uint64), counts[nz].astype(np.int64)
        origin = np.array([s.start for s in read], dtype=np.int64)
        if not labels.any():
            return ids, counts, {}
        # The block is traced whole even when masking leaves it mostly empty: cropping it to its
        # content changed kimimaro's traces (measured), and an edit's update must equal a rebuild.
        vs = np.asarray(lv.spatial_voxel_size, dtype=np.float64)
        raw = kimimaro.skeletonize(labels, teasar_params=self.teasar, anisotropy=tuple(vs),
                                   dust_threshold=self.dust, progress=False, fix_branching=self.fix_branching,
                                   fix_borders=True, parallel=1)
        parts = {}
        for seg, sk in raw.items():
            if len(sk.vertices) == 0:
                continue
            idx = np.rint(np.asarray(sk.vertices, dtype=np.float64) / vs).astype(np.int64) + origin
            parts[int(seg)] = (idx, np.asarray(sk.edges, dtype=np.int64).reshape(-1, 2),
                               np.asarray(sk.radius, dtype=np.float32))
        return ids, counts, parts


def _join(fragments: list[tuple[np.ndarray, np.ndarray, np.ndarray]], *, voxel_size,
          tick_nm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One skeleton from a segment's block fragments: shared voxels become one vertex.

    A vertex two blocks share (a face's target) keeps the smaller radius:
    each block sees only its side, and the distance to the boundary it
    reports can only be too large, never too small. A segment of several
    fragments then loses the edge effects of cutting (igneous's merge step,
    kimimaro's own post-processing): loops where two fragments' paths cross,
    and *ticks*, terminal branches shorter than ``tick_nm`` — each block
    traces its piece to the far corner of every face it is cut by. The
    default ``tick_nm`` is TEASAR's ``const``: no real branch shorter than
    that survives TEASAR's invalidation ball anyway.
    """
    idx = np.concatenate([f[0] for f in fragments])
    radii = np.concatenate([f[2] for f in fragments])
    offsets = np.cumsum([0] + [len(f[0]) for f in fragments[:-1]])
    edges = np.concatenate([f[1] + o for f, o in zip(fragments, offsets, strict=True)])
    uniq, inverse = np.unique(idx, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    r = np.full(len(uniq), np.inf, dtype=np.float32)
    np.minimum.at(r, inverse, radii)
    e = np.sort(inverse[edges], axis=1)
    e = e[e[:, 0] != e[:, 1]]
    e = np.unique(e, axis=0).astype(np.int32).reshape(-1, 2)
    if len(fragments) > 1 and len(e):
        uniq, e, r = _clean(uniq, e, r, voxel_size=voxel_size, tick_nm=tick_nm)
    return uniq, e, r


def _clean(idx, edges, radii, *, voxel_size, tick_nm: float):
    """kimimaro's loop and tick removal, in voxel indices (canonical order back)."""
    from kimimaro.post import remove_loops, remove_ticks
    from osteoid import Skeleton as Osteoid

    vs = np.asarray(voxel_size, dtype=np.float64)
    sk = Osteoid((idx * vs).astype(np.float32), edges.astype(np.uint32), radii=radii.astype(np.float32))
    # Both steps leave the vertices they cut loose behind: dropped, or each would count as a piece.
    sk = remove_ticks(remove_loops(sk.consolidate()), tick_nm).consolidate(remove_disconnected_vertices=True)
    if len(sk.vertices) == 0:
        return idx[:0], edges[:0], radii[:0]
    out = np.rint(np.asarray(sk.vertices, dtype=np.float64) / vs).astype(np.int64)
    return _join([(out, np.asarray(sk.edges, dtype=np.int64).reshape(-1, 2),
                   np.asarray(sk.radius, dtype=np.float32))], voxel_size=vs, tick_nm=tick_nm)


def _grid(level, block_voxels):
    from napari_connectome.blockwise.grid import BlockGrid

    # One voxel more on the high side: the face two blocks share is read by both (see the module notes).
    return BlockGrid.of_level(level, block_voxels=block_voxels, context_voxels=0, context_high_voxels=1)


def _blocks(level, block_voxels, roi=None) -> list:
    """The level's blocks, or those whose read box meets ``roi`` (same ids: the same grid, filtered)."""
    grid = _grid(level, block_voxels)
    if roi is None:
        return list(grid)
    return [b for b in grid if not b.read_roi.intersect(roi).empty]


def _pass(level, blocks, *, teasar, dust, fix_branching, drop, keep, scheduler, workers, progress, cancel):
    """Run one level's blocks; returns ``(voxel counts per segment, fragments per segment)``."""
    from napari_connectome.blockwise.run import run_blockwise

    results: dict[int, tuple] = {}
    work = _BlockSkeletons(level, teasar=teasar, dust=dust, fix_branching=fix_branching, drop=drop, keep=keep)
    run_blockwise(work, blocks, scheduler=scheduler, workers=workers, progress=progress, cancel=cancel,
                  collect=lambda block, out: results.__setitem__(block.block_id, out),
                  description="skeleton blocks")
    counts: dict[int, int] = defaultdict(int)
    fragments: dict[int, list] = defaultdict(list)
    for bid in sorted(results):  # block order: the same result on any scheduler
        ids, cnt, parts = results.pop(bid)
        for i, c in zip(ids.tolist(), cnt.tolist(), strict=True):
            counts[i] += c
        for seg, part in parts.items():
            fragments[seg].append(part)
    return counts, fragments


def count_blocks(volume, *, max_voxel_nm: float = DEFAULT_MAX_VOXEL_NM, block_voxels=DEFAULT_BLOCK_VOXELS,
                 coarse_block_voxels=DEFAULT_COARSE_BLOCK_VOXELS, roi=None, coarse="auto") -> int:
    """How many blocks :func:`skeletonize_volume` runs (its progress steps)."""
    if isinstance(coarse, str):
        coarse = coarse_level(volume, max_voxel_nm=max_voxel_nm)
    n = len(_blocks(volume.levels[0], block_voxels, roi))
    return n + (len(_blocks(coarse, coarse_block_voxels, roi)) if coarse is not None else 0)


def skeletonize_volume(volume, *, max_voxel_nm: float = DEFAULT_MAX_VOXEL_NM,
                       coarse_min_voxels: int = DEFAULT_COARSE_MIN_VOXELS,
                       block_voxels=DEFAULT_BLOCK_VOXELS, coarse_block_voxels=DEFAULT_COARSE_BLOCK_VOXELS,
                       teasar: dict | None = None,
                       dust_voxels: int = DEFAULT_DUST_VOXELS, fix_branching: bool = True,
                       segment_ids=None, roi=None, coarse="auto", scheduler="threads",
                       workers: int | None = None, progress=None,
                       cancel=None) -> tuple[dict[int, Skeleton], dict[int, tuple[float, ...]]]:
    """Skeletonize every segment of a multiscale labels volume, blockwise (see the module notes).

    Parameters
    ----------
    volume
        A :class:`~napari_connectome.volume.model.MultiscaleVolume` of labels.
    max_voxel_nm
        The coarse level is the coarsest one whose voxels are no larger
        (:func:`coarse_level`: a virtual one when the volume has no such level).
    coarse_min_voxels
        A segment with at least this many voxels at the coarse level is
        skeletonized there; the others at level 0.
    block_voxels, coarse_block_voxels
        Block edge in voxels of level 0 and of the coarse level (one number or per axis).
    teasar, dust_voxels, fix_branching
        As :func:`~napari_connectome.skeleton.skeletonize`; ``dust_voxels`` is
        counted in level-0 voxels and scaled to the coarse level.
    segment_ids
        Only these segments (default: all).
    roi
        Only the blocks whose read box meets this box (a
        :class:`~napari_connectome.volume.roi.Roi` in nm): with
        ``segment_ids`` whose voxels all lie inside it, the same skeletons
        as a run over every block (an edit's update).
    coarse
        The coarse level to use instead of :func:`coarse_level`'s choice
        (e.g. :func:`mapped_mode_level`), or None for level 0 only.
    scheduler, workers
        Where blocks run: ``"threads"``, ``"synchronous"``, ``"processes"``, a
        ``tcp://`` Dask scheduler or a Client; the result is the same on each.
    progress, cancel
        A :class:`~napari_connectome.progress.Progress`; a callable that
        returns True to stop between blocks.

    Returns
    -------
    skeletons, voxel_sizes
        ``segment_id -> Skeleton`` (world nm), and ``segment_id -> voxel
        size`` (nm, z y x) of the level each was traced at.
    """
    from napari_connectome.progress import NullProgress, PartOf

    progress = progress or NullProgress()
    params = _teasar_params(teasar)
    if int(coarse_min_voxels) < 1:
        raise InputError("coarse min voxels", f"must be at least 1, got {coarse_min_voxels}")
    if workers is not None and int(workers) < 1:
        raise InputError("workers", f"must be at least 1, got {workers}")
    base = volume.levels[0]
    if isinstance(coarse, str):
        coarse = coarse_level(volume, max_voxel_nm=max_voxel_nm)
    only = None if segment_ids is None else distinct(np.asarray(list(segment_ids), dtype=np.uint64))
    if only is not None:
        only = only[only != 0]
        if only.size == 0:
            return {}, {}
    fine_blocks = _blocks(base, block_voxels, roi)
    coarse_blocks = _blocks(coarse, coarse_block_voxels, roi) if coarse is not None else []
    progress.start(len(fine_blocks) + len(coarse_blocks), "skeleton blocks")
    try:
        skeletons: dict[int, Skeleton] = {}
        levels: dict[int, tuple[float, ...]] = {}
        coarse_done = np.empty(0, np.uint64)
        if coarse is not None:
            lv = coarse
            counts, fragments = _pass(lv, coarse_blocks, teasar=params,
                                      dust=_level_dust(dust_voxels, lv, base), fix_branching=fix_branching,
                                      drop=None, keep=only, scheduler=scheduler, workers=workers,
                                      progress=PartOf(progress), cancel=cancel)
            big = sorted(s for s, c in counts.items() if c >= coarse_min_voxels)
            for seg in big:
                if seg in fragments:
                    skeletons[seg] = _to_skeleton(seg, _join(fragments[seg], voxel_size=lv.spatial_voxel_size,
                                                               tick_nm=params["const"]), lv)
                levels[seg] = tuple(lv.spatial_voxel_size)
            coarse_done = np.asarray(big, dtype=np.uint64)
        keep = None if only is None else np.setdiff1d(only, coarse_done)
        if keep is None or keep.size:
            _counts, fragments = _pass(base, fine_blocks, teasar=params, dust=int(dust_voxels),
                                       fix_branching=fix_branching, drop=coarse_done, keep=keep,
                                       scheduler=scheduler, workers=workers, progress=PartOf(progress),
                                       cancel=cancel)
            for seg in sorted(fragments):
                skeletons[seg] = _to_skeleton(seg, _join(fragments[seg], voxel_size=base.spatial_voxel_size,
                                                               tick_nm=params["const"]), base)
                levels[seg] = tuple(base.spatial_voxel_size)
    finally:
        progress.close()
    return dict(sorted(skeletons.items())), dict(sorted(levels.items()))


def _to_skeleton(seg: int, parts, level) -> Skeleton:
    idx, edges, radii = parts
    return Skeleton(seg, level.centre_of(idx), edges, radii)
