"""Supervoxels of a volume of any size: watershed per block with context, stitched by overlap, ids 1..N.

A distance-transform watershed is not local: a seed depends on how far the
nearest membrane is, and a basin on where the seeds are. So each block is
flooded over its write box grown by ``context`` voxels, and blocks are
joined where their floods *agree*: block A also labels the first ``halo``
voxels beyond each of its upper faces (inside its context), and there a
fragment ``a`` of A and a fragment ``b`` of its neighbour B are the same
supervoxel when each holds the majority of the other's voxels in that slab
(a mutual majority: one-to-one, so a cell cut by a face is joined and two
cells touching at it are not). Three passes, each block-wise:

1. **flood** (resumable): per block, the boundary map from the affinities
   (written, ``uint8``), the watershed over block + context, the block's
   fragments written with ids ``block_id · 2^32 + local``, and its halo slabs
   written into three small arrays (one per axis; only the slabs' chunks exist);
2. **join**: per block, the pairs that agree across its lower faces and the
   fragment ids it holds; joined in the calling thread (union-find), and every
   fragment given its supervoxel id: 1..N in the order of the smallest fragment
   id of each supervoxel — the order of blocks, not of workers;
3. **relabel** (resumable): per block, fragments → supervoxel ids, written.

The result does not depend on the number of workers, the scheduler or the
order blocks finish in; it is compared with one whole-volume watershed in
the tests (equal up to relabelling except where a face cuts a basin the two
floods split differently, measured there).

The region graph, the merge tree and the proofreader then see ordinary
supervoxels (:mod:`napari_connectome.graph`).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_connectome.blockwise import BlockGrid, Ledger, run_blockwise
from napari_connectome.blockwise.ledger import ledger_path
from napari_connectome.errors import InputError
from napari_connectome.inference.blockwise import region_grid
from napari_connectome.progress import NullProgress, PartOf, Progress
from napari_connectome.pyramid.resumable import ResumableOutput
from napari_connectome.segment.pipeline import PostProcess
from napari_connectome.segment.supervoxels import boundary_from_affinities, nearest_channels
from napari_connectome.volume.model import Level

#: Fragment ids are ``block_id << SHIFT | local id``: unique without counting first.
SHIFT = 32


@dataclass(frozen=True)
class SupervoxelReport:
    """What a block-wise supervoxel run did.

    Attributes
    ----------
    supervoxels, boundaries
        The outputs (:class:`~napari_connectome.pyramid.resumable.ResumableOutput`; the caller finishes them).
    n_supervoxels
        Supervoxels in the volume.
    n_fragments, n_joined
        Fragments the blocks made, and joins across block faces.
    blocks, flooded, relabelled
        Blocks in the grid, and blocks passes 1 and 3 ran now (the rest an earlier run did).
    """

    supervoxels: ResumableOutput
    boundaries: ResumableOutput
    n_supervoxels: int
    n_fragments: int
    n_joined: int
    blocks: int
    flooded: int
    relabelled: int


def _affinities_block(level: Level, lo, hi, channels) -> np.ndarray:
    key = (slice(None), *(slice(a, b) for a, b in zip(lo, hi, strict=True)))
    data = np.asarray(level.array[key])[list(channels)]
    if np.issubdtype(data.dtype, np.integer):
        return data.astype(np.float32) / np.float32(np.iinfo(data.dtype).max)
    return data.astype(np.float32, copy=False)


class _Flood:
    """Pass 1 for one block (picklable: a worker process reopens the arrays by path)."""

    def __init__(self, affinities: Level, channels, postprocess: PostProcess, shape, context: int, halo: int,
                 fragments: ResumableOutput, boundaries: ResumableOutput, halos: list[ResumableOutput],
                 grid: BlockGrid) -> None:
        self.affinities, self.channels, self.postprocess = affinities, list(channels), postprocess
        self.shape, self.context, self.halo = tuple(shape), int(context), int(halo)
        self.fragments, self.boundaries, self.halos = fragments, boundaries, halos
        self.grid_shape = grid.shape

    def __call__(self, block) -> int:
        from napari_connectome.segment.supervoxels import watershed_supervoxels

        lo = [int(v) for v in block.write_roi.begin]
        hi = [int(v) for v in block.write_roi.end]
        # +1: a voxel's boundary averages its links to the next voxel too
        r_lo = [max(0, a - self.context - 1) for a in lo]
        r_hi = [min(n, b + self.context + 1) for b, n in zip(hi, self.shape, strict=True)]
        affs = _affinities_block(self.affinities, r_lo, r_hi, self.channels)
        boundary = boundary_from_affinities(affs, [(-1, 0, 0), (0, -1, 0), (0, 0, -1)])
        inner = tuple(slice(a - ra, b - ra) for a, b, ra in zip(lo, hi, r_lo, strict=True))
        self.boundaries.write(tuple(slice(a, b) for a, b in zip(lo, hi, strict=True)),
                              np.clip(np.rint(boundary[inner] * 255.0), 0, 255).astype(np.uint8))
        pp = self.postprocess
        local = watershed_supervoxels(boundary, threshold=pp.threshold, sigma=pp.sigma,
                                      min_distance=pp.min_distance).astype(np.uint64)
        base = np.uint64(block.block_id) << np.uint64(SHIFT)
        labels = local + base
        self.fragments.write(tuple(slice(a, b) for a, b in zip(lo, hi, strict=True)), labels[inner])
        for d in range(3):
            s_lo, s_hi = list(lo), list(hi)
            if block.index[d] + 1 < self.grid_shape[d]:  # the slab above the upper face
                s_lo[d], s_hi[d] = hi[d], min(hi[d] + self.halo, self.shape[d])
                self._halo(self.halos[d], s_lo, s_hi, r_lo, labels)
            s_lo, s_hi = list(lo), list(hi)
            if block.index[d] > 0:  # the slab below the lower face
                s_lo[d], s_hi[d] = lo[d] - self.halo, lo[d]
                self._halo(self.halos[3 + d], s_lo, s_hi, r_lo, labels)
        return block.block_id

    @staticmethod
    def _halo(out: ResumableOutput, s_lo, s_hi, r_lo, labels: np.ndarray) -> None:
        key = tuple(slice(a - ra, b - ra) for a, b, ra in zip(s_lo, s_hi, r_lo, strict=True))
        out.write(tuple(slice(a, b) for a, b in zip(s_lo, s_hi, strict=True)), labels[key])


class _Join:
    """Pass 2 for one block: its fragment ids, and the pairs that agree across its lower faces."""

    def __init__(self, fragments: ResumableOutput, halos: list[ResumableOutput], halo: int) -> None:
        self.fragments, self.halos, self.halo = fragments, halos, int(halo)

    def __call__(self, block) -> tuple[np.ndarray, np.ndarray]:
        lo = [int(v) for v in block.write_roi.begin]
        hi = [int(v) for v in block.write_roi.end]
        own = self.fragments.read(tuple(slice(a, b) for a, b in zip(lo, hi, strict=True)))
        ids = np.unique(own)
        pairs = []
        for d in range(3):
            if block.index[d] == 0:
                continue
            # above the face: the lower block's flood against this block's fragments
            s_hi = list(hi)
            s_hi[d] = min(lo[d] + self.halo, hi[d])
            key = tuple(slice(a, b) for a, b in zip(lo, s_hi, strict=True))
            above = _mutual_majority(self.halos[d].read(key).ravel(),
                                     own[tuple(slice(0, b - a) for a, b in zip(lo, s_hi, strict=True))].ravel())
            # below it: the lower block's fragments against this block's flood
            s_lo, s_hi = list(lo), list(hi)
            s_lo[d], s_hi[d] = lo[d] - self.halo, lo[d]
            key = tuple(slice(a, b) for a, b in zip(s_lo, s_hi, strict=True))
            below = _mutual_majority(self.fragments.read(key).ravel(), self.halos[3 + d].read(key).ravel())
            pairs.append(_both(above, below))
        joined = np.concatenate(pairs) if pairs else np.empty((0, 2), np.uint64)
        return ids, joined


def _mutual_majority(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairs ``(a, b)`` whose overlap is more than half of each one's voxels in the slab."""
    if a.size == 0:
        return np.empty((0, 2), np.uint64)
    pair, count = np.unique(np.stack([a, b], axis=1), axis=0, return_counts=True)
    ua, na = np.unique(a, return_counts=True)
    ub, nb = np.unique(b, return_counts=True)
    size_a = na[np.searchsorted(ua, pair[:, 0])]
    size_b = nb[np.searchsorted(ub, pair[:, 1])]
    keep = (2 * count > size_a) & (2 * count > size_b)
    return pair[keep].astype(np.uint64)


def _both(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """The pairs in both ``p`` and ``q`` (rows ``(a, b)``)."""
    if len(p) == 0 or len(q) == 0:
        return np.empty((0, 2), np.uint64)
    pk = p[:, 0].astype(object) * (1 << 64) + p[:, 1].astype(object)
    qk = set((q[:, 0].astype(object) * (1 << 64) + q[:, 1].astype(object)).tolist())
    return p[np.fromiter((k in qk for k in pk.tolist()), dtype=bool, count=len(p))]


class _Relabel:
    """Pass 3 for one block: fragments → supervoxel ids."""

    def __init__(self, fragments: ResumableOutput, supervoxels: ResumableOutput, keys: np.ndarray,
                 values: np.ndarray, dtype) -> None:
        self.fragments, self.supervoxels = fragments, supervoxels
        self.keys, self.values, self.dtype = keys, values, np.dtype(dtype)

    def __call__(self, block) -> int:
        key = tuple(slice(int(a), int(b)) for a, b in zip(block.write_roi.begin, block.write_roi.end, strict=True))
        frag = self.fragments.read(key)
        idx = np.searchsorted(self.keys, frag)
        self.supervoxels.write(key, self.values[idx].astype(self.dtype))
        return block.block_id


def _join_all(ids: list[np.ndarray], pairs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, int]:
    """Union-find over fragments: ``(sorted fragment ids, supervoxel id of each, joins made)``."""
    keys = np.unique(np.concatenate(ids)) if ids else np.empty(0, np.uint64)
    keys = keys[keys != 0] if keys.size and keys[0] == 0 else keys
    parent = np.arange(len(keys), dtype=np.int64)

    def find(i: int) -> int:
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return root

    joined = 0
    for p in pairs:
        if len(p) == 0:
            continue
        ia = np.searchsorted(keys, p[:, 0])
        ib = np.searchsorted(keys, p[:, 1])
        for x, y in zip(ia.tolist(), ib.tolist(), strict=True):
            rx, ry = find(x), find(y)
            if rx != ry:
                # the smaller index stays the root: the supervoxel is named by its smallest fragment
                parent[max(rx, ry)] = min(rx, ry)
                joined += 1
    roots = np.array([find(i) for i in range(len(keys))], dtype=np.int64)
    # roots are the smallest member's index, so their order is the fragments' order
    _, values = np.unique(roots, return_inverse=True)
    return keys, (values + 1).astype(np.uint64), joined


def supervoxels_to_zarr(affinities: Level, offsets, out_supervoxels: str | os.PathLike,
                        out_boundaries: str | os.PathLike, work: str | os.PathLike, *, signature: dict,
                        postprocess: PostProcess | None = None, block: int = 128, context: int = 16,
                        halo: int = 8, scheduler="threads", workers: int | None = None,
                        progress: Progress | None = None, cancel=None, region=None,
                        before_writing=None) -> SupervoxelReport:
    """Supervoxels and the boundary map of predicted affinities, block by block, resumable.

    Parameters
    ----------
    affinities
        ``(c, z, y, x)`` affinities (uint8 = × 255, or float) with the nearest offsets among ``offsets``.
    out_supervoxels, out_boundaries
        OME-Zarr folders for the supervoxels (uint32, ids 1..N) and the boundary map (uint8, 255 = membrane).
    work
        Folder for the passes' intermediate arrays and ledgers; removed by the caller when done.
    signature
        What identifies the run (the affinities' identity, parameters): another run's outputs are never continued.
    postprocess
        Watershed options (``method`` must be ``"watershed"``).
    block, context, halo
        Block edge, the flood's context and the slab compared across faces (voxels; ``halo`` ≤ ``context``,
        and divides ``block``).
    scheduler, workers, progress, cancel
        As for :func:`~napari_connectome.blockwise.run_blockwise`; progress counts 3 passes of blocks.
    region
        ``(begin, end)`` voxels to label (grown to whole blocks); None: the whole volume. Outside it
        the supervoxels are 0 (no supervoxel), and the flood sees no affinities (a membrane).
    before_writing
        Called before anything is written when the outputs are not already up to date; may raise.

    Raises
    ------
    InputError
        Bad parameters, or affinities without the nearest-neighbour channels.
    """
    postprocess = postprocess or PostProcess()
    if postprocess.method != "watershed":
        raise InputError("--supervoxels", f"block-wise supervoxels use the watershed, not {postprocess.method!r}")
    block, context, halo = int(block), int(context), int(halo)
    if block < 16 or context < 0 or not 0 < halo <= context or block % halo:
        raise InputError("--block", f"block {block}, context {context}, halo {halo}: need block ≥ 16, "
                                    "0 < halo ≤ context, and halo dividing block")
    try:
        channels = nearest_channels(offsets)
    except ValueError as exc:
        raise InputError("affinities", str(exc)) from None
    if affinities.ndim != 4:
        raise InputError("affinities", f"need (c, z, y, x), got axes {affinities.axes}")
    shape = tuple(int(affinities.shape[i]) for i in affinities.spatial)
    vs, off = affinities.spatial_voxel_size, affinities.spatial_offset
    grid = region_grid(shape, block, context, region)
    params = {"postprocess": postprocess.to_dict(), "block": block, "context": context, "halo": halo}
    sig = {**signature, **params, "grid": grid.describe()}
    work = Path(work)
    common = {"shape": shape, "voxel_size": vs, "offset": off}
    chunks = (block,) * 3
    done = _finished(out_supervoxels, out_boundaries, sig, chunks=chunks, common=common)
    if done is not None:
        return done
    if before_writing is not None:
        before_writing()
    boundaries = ResumableOutput.open(out_boundaries, chunks=chunks, dtype="uint8", axes="zyx", kind="image",
                                      signature=sig, **common)
    fragments = ResumableOutput.open(work / "fragments.zarr", chunks=chunks, dtype="uint64", axes="zyx",
                                     kind="labels", signature=sig, **common)
    halos = []  # above each axis's upper faces (z, y, x), then below the lower faces
    for side in ("above", "below"):
        for d in range(3):
            c = list(chunks)
            c[d] = halo
            halos.append(ResumableOutput.open(work / f"halo-{side}-{'zyx'[d]}.zarr", chunks=tuple(c),
                                              dtype="uint64", axes="zyx", kind="labels", signature=sig, **common))
    progress = progress or NullProgress()
    progress.start(3 * len(grid), "supervoxels")
    part = PartOf(progress)
    try:
        with Ledger(ledger_path(work, "flood"), signature={"grid": grid.describe(), "run": sig}) as ledger:
            flooded = run_blockwise(_Flood(affinities, channels, postprocess, shape, context, halo, fragments,
                                           boundaries, halos, grid),
                                    grid, scheduler=scheduler, workers=workers, ledger=ledger, progress=part,
                                    cancel=cancel, description="flood")
        ids: list[np.ndarray] = []
        pairs: list[np.ndarray] = []
        lock = threading.Lock()

        def collect(_block, result) -> None:
            with lock:
                ids.append(result[0])
                pairs.append(result[1])

        run_blockwise(_Join(fragments, halos, halo), grid, scheduler=scheduler, workers=workers,
                      progress=part, cancel=cancel, collect=collect, description="join")
        keys, values, joined = _join_all(ids, pairs)
        n = int(values.max()) if values.size else 0
        dtype = np.uint32 if n < 2**32 else np.uint64
        supervoxels = ResumableOutput.open(out_supervoxels, chunks=chunks, dtype=dtype, axes="zyx",
                                           kind="labels", signature=sig, **common)
        with Ledger(ledger_path(work, "relabel"), signature={"grid": grid.describe(), "run": sig}) as ledger:
            relabelled = run_blockwise(_Relabel(fragments, supervoxels, keys, values, dtype), grid,
                                       scheduler=scheduler, workers=workers, ledger=ledger, progress=part,
                                       cancel=cancel, description="relabel")
    finally:
        progress.close()
    return SupervoxelReport(supervoxels, boundaries, n, len(keys), joined, len(grid), flooded.ran, relabelled.ran)


def _finished(out_supervoxels, out_boundaries, sig: dict, *, chunks, common) -> SupervoxelReport | None:
    """The report of an earlier run with the same signature that finished both outputs, else None."""
    from napari_connectome.provenance import ATTRIBUTE
    from napari_connectome.pyramid.resumable import output_state

    states = [output_state(p) for p in (out_supervoxels, out_boundaries)]
    want = json.loads(json.dumps(sig))
    if not all(s == want and complete for s, complete in states):
        return None
    attrs = json.loads((Path(out_supervoxels) / ".zattrs").read_text(encoding="utf-8"))
    outputs = ((attrs.get(ATTRIBUTE) or {}).get("provenance") or {}).get("outputs") or {}
    supervoxels = ResumableOutput.open(out_supervoxels, chunks=chunks, dtype=_stored_dtype(out_supervoxels),
                                       axes="zyx", kind="labels", signature=sig, **common)
    boundaries = ResumableOutput.open(out_boundaries, chunks=chunks, dtype="uint8", axes="zyx", kind="image",
                                      signature=sig, **common)
    return SupervoxelReport(supervoxels, boundaries, int(outputs.get("n_supervoxels", 0)),
                            int(outputs.get("n_fragments", 0)), int(outputs.get("joined_across_blocks", 0)),
                            int(outputs.get("blocks", 0)), 0, 0)


def _stored_dtype(path) -> np.dtype:
    meta = json.loads((Path(path) / "0" / ".zarray").read_text(encoding="utf-8"))
    return np.dtype(meta["dtype"])


def remove_work(work: str | os.PathLike) -> None:
    """Remove the intermediate arrays of a finished run (only the folder this module made)."""
    work = Path(work)
    if work.is_dir() and (work / "fragments.zarr").exists():
        shutil.rmtree(work)
