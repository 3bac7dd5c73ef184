"""Supervoxels from affinities by steepest ascent, exactly the same blockwise as whole.

Every voxel points along its strongest edge (the nearest-neighbour affinity
of largest value; ties broken by a fixed total order on edges: the edge whose
lower voxel has the larger index first, so a flat region drains towards its
high corner and makes one basin, not a basin per column). Following
the pointers, affinities never decrease, so every chain ends at a *root*:
the edge that is the strongest for both its ends (a two-cycle; the end with
the smaller index is the root) or a voxel with no neighbour. A supervoxel is
the set of voxels whose chains end at the same root — the watershed basins of
the affinity graph (Zlateski & Seung 2015, the first stage of zwatershed and
waterz). The region graph and merge tree (:mod:`napari_connectome.graph`)
then agglomerate them.

The edge weights need not be affinities: ``segment`` climbs the capped
distance to the nearest membrane instead
(:class:`~napari_connectome.segment.heights.HeightEdges`, lsd's fragments),
because raw affinities give ~30 times more, smaller basins that the merge
tree joins less well (gala-fib test VI 0.465 against 0.373).

Why a steepest ascent and not a flood (distance-transform or mutex
watershed): the pointer of a voxel depends on its own six edges only, so a
block needs one voxel of context (plus what its weights need), and a chain
that leaves a block is resolved by following it into the next block. The labels computed blockwise are therefore *identical* to
the whole-volume labels — not merely similar up to seams — whatever the block
size, order or number of workers; a volume larger than memory is labelled in
three passes:

1. per block: pointers, chains followed inside the block; a voxel gets the
   global index of its root, or of the first voxel outside the block its
   chain reaches (an *exit*);
2. per block (read with one voxel of context), its roots and, for each exit,
   the label the exit's voxel carries; then, on those tables alone, chains of
   exits are followed to their roots by pointer doubling (a chain that ends in
   a two-cycle across blocks takes its smaller end). Pass 2 holds 8 bytes per
   supervoxel and 16 per exit (exits lie on block faces), never a volume;
3. per block: labels through the resolution, then compacted to ``1..N`` in the
   order of their roots (so the ids do not depend on the blocking either).

Affinities follow the usual convention: channel ``c`` at voxel ``v`` is the
affinity between ``v`` and ``v − e_c`` (offsets ``(-1,0,0), (0,-1,0), (0,0,-1)``);
edges to outside the volume do not exist.
"""

from __future__ import annotations

from dataclasses import dataclass

import fastremap
import numpy as np

from napari_connectome.errors import InputError

#: Offsets of the three nearest-neighbour affinity channels this module reads.
NEAREST = ((-1, 0, 0), (0, -1, 0), (0, 0, -1))

#: Pass-1 mark of a voxel on a top plateau (labels are voxel indices + 1, far below this bit).
TOP = np.uint64(1 << 63)
LABEL = np.uint64((1 << 63) - 1)


def _check(affinities_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(affinities_shape) != 4 or affinities_shape[0] < 3:
        raise InputError("affinities", f"need (channels ≥ 3, z, y, x) with the nearest offsets first, "
                                       f"got shape {tuple(affinities_shape)}")
    shape = tuple(int(s) for s in affinities_shape[1:])
    if min(shape) < 1:
        raise InputError("affinities", f"the volume is empty: shape {shape}")
    return shape  # type: ignore[return-value]


def _pointers(affs: np.ndarray, begin: tuple[int, ...], end: tuple[int, ...],
              shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Global index of the voxel each voxel of ``[begin, end)`` points to (itself when it has no edge),
    and the weight of that edge (−inf: none).

    ``affs`` holds channels 0..2 over ``[begin, end + 1)`` clipped to the volume
    (the forward edges of the block's last voxels live one voxel further).
    Ties go to the edge whose lower voxel has the larger index, then to the
    smaller channel: the forward edges (lower voxel ``v``) in channel order,
    then the backward ones (lower voxel ``v − e_c``) x, y, z — a strict total
    order on edges, so chains climb strictly and end only in two-cycles.
    """
    size = tuple(e - b for b, e in zip(begin, end, strict=True))
    local = tuple(slice(0, s) for s in size)
    strides = (shape[1] * shape[2], shape[2], 1)
    candidates = []  # (values, index step), in the tie order
    backs = []
    for c in range(3):
        back = np.asarray(affs[(c, *local)], dtype=np.float32).copy()
        if begin[c] == 0:  # the volume's low face: no backward edge
            face = [slice(None)] * 3
            face[c] = slice(0, 1)
            back[tuple(face)] = -np.inf
        fwd = np.full(size, -np.inf, dtype=np.float32)
        avail = min(size[c], affs.shape[1 + c] - 1)  # the volume's high face: no forward edge
        if avail > 0:
            src = list(local)
            src[c] = slice(1, avail + 1)
            dst = [slice(None)] * 3
            dst[c] = slice(0, avail)
            fwd[tuple(dst)] = affs[(c, *src)]
        candidates.append((fwd, strides[c]))
        backs.append((back, -strides[c]))
    candidates.extend(reversed(backs))
    best = np.full(size, -np.inf, dtype=np.float32)
    step = np.zeros(size, dtype=np.int64)  # index offset of the chosen neighbour (0: none)
    for values, delta in candidates:
        better = values > best  # strictly: an earlier edge keeps a tie
        best = np.where(better, values, best)
        step = np.where(better, delta, step)
    grid = np.indices(size, dtype=np.int64)
    index = sum((grid[a] + begin[a]) * strides[a] for a in range(3))
    return index + step, best


def block_labels(affs: np.ndarray, begin: tuple[int, ...], end: tuple[int, ...],
                 shape: tuple[int, ...], plateau: float | None = None) -> np.ndarray:
    """Pass 1 for the block ``[begin, end)``: per voxel, its root's global index + 1, or its exit's.

    Parameters
    ----------
    affs
        Channels 0..2 over ``[begin, min(end + 1, shape))``.
    shape
        The whole volume's shape.
    plateau
        See :func:`run_ascent`: voxels whose strongest edge reaches it are marked with :data:`TOP`.
    """
    size = tuple(e - b for b, e in zip(begin, end, strict=True))
    n = int(np.prod(size))
    ptr, best = _pointers(affs, begin, end, shape)
    ptr = ptr.reshape(n)
    strides = np.array([shape[1] * shape[2], shape[2], 1], dtype=np.int64)
    coords = np.stack(np.unravel_index(ptr, shape)) - np.asarray(begin, dtype=np.int64)[:, None]
    inside = np.all((coords >= 0) & (coords < np.asarray(size, dtype=np.int64)[:, None]), axis=0)
    local_strides = np.array([size[1] * size[2], size[2], 1], dtype=np.int64)
    own = np.arange(n, dtype=np.int64)
    nxt = np.where(inside, local_strides @ np.where(inside, coords, 0), own)
    glob = strides @ (np.stack(np.unravel_index(own, size)) + np.asarray(begin, dtype=np.int64)[:, None])
    # Two-cycles inside the block: the end with the smaller index is the root.
    cycle = (nxt[nxt] == own) & (nxt != own)
    nxt = np.where(cycle & (glob < glob[nxt]), own, nxt)
    # Pointer doubling: every chain reaches its terminal in O(log length) steps.
    while True:
        jumped = nxt[nxt]
        if np.array_equal(jumped, nxt):
            break
        nxt = jumped
    # A terminal whose pointer stays in the block is a root (no edge, or it won its two-cycle);
    # otherwise its pointer leaves the block, and the label is that outside voxel (an exit).
    label = (np.where(inside[nxt], glob[nxt], ptr[nxt]) + 1).astype(np.uint64)
    if plateau is not None:
        label[best.reshape(n) >= plateau] |= TOP
    return label.reshape(size)


class _Pass1:
    """Block work of pass 1 (a class, not a closure, so that Dask processes can pickle it)."""

    def __init__(self, affinities, out, shape: tuple[int, ...], plateau: float | None = None) -> None:
        self.affinities, self.out, self.shape, self.plateau = affinities, out, shape, plateau

    def __call__(self, block) -> None:
        write = block.write_roi.index_slices()
        begin = tuple(int(w.start) for w in write)
        end = tuple(int(w.stop) for w in write)
        hi = tuple(min(e + 1, s) for e, s in zip(end, self.shape, strict=True))
        affs = np.asarray(self.affinities[(slice(0, 3), *(slice(b, h) for b, h in zip(begin, hi, strict=True)))])
        self.out[write] = block_labels(affs, begin, end, self.shape, self.plateau)


def _plateau_pairs(ext: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """``(k, 2)`` label pairs of neighbouring top-plateau voxels with different labels.

    ``ext`` holds a block's pass-1 labels and one voxel beyond its upper faces
    where the volume goes on; each pair has its lower voxel in the block, so
    every edge is seen by exactly one block.
    """
    core = [slice(0, n) for n in size]
    found = []
    for a in range(3):
        m = min(size[a], ext.shape[a] - 1)  # lower voxels whose upper neighbour is in ext
        if m <= 0:
            continue
        lo, up = list(core), list(core)
        lo[a], up[a] = slice(0, m), slice(1, m + 1)
        x, y = ext[tuple(lo)], ext[tuple(up)]
        both = ((x & TOP) != 0) & ((y & TOP) != 0)
        xs, ys = x[both] & LABEL, y[both] & LABEL
        differ = xs != ys
        if differ.any():
            found.append(np.stack([xs[differ], ys[differ]], axis=1))
    if not found:
        return np.zeros((0, 2), dtype=np.uint64)
    return np.unique(np.concatenate(found), axis=0)


def _faces_out(labels: np.ndarray, begin: tuple[int, ...], end: tuple[int, ...],
               shape: tuple[int, ...]) -> np.ndarray:
    """Which of ``labels`` (voxel index + 1) name a voxel outside ``[begin, end)``: the exits."""
    coords = np.unravel_index(labels.astype(np.int64) - 1, shape)
    inside = np.ones(labels.shape, dtype=bool)
    for c, b, e in zip(coords, begin, end, strict=True):
        inside &= (c >= b) & (c < e)
    return ~inside


class _Scan:
    """Pass 2's read of one block: its roots, its exits with the label each exit's voxel carries, its plateau pairs.

    The block is read with one voxel of context on every side: an exit is a
    face neighbour of a voxel in the block, so its own pass-1 label is in
    that box, and pass 2 needs no read of its own — what it keeps is the
    roots (8 bytes each) and the exits (16 bytes each), never a volume.
    """

    def __init__(self, out, shape: tuple[int, ...], plateau: bool) -> None:
        self.out, self.shape, self.plateau = out, shape, plateau

    def __call__(self, block) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        write = block.write_roi.index_slices()
        begin = tuple(int(w.start) for w in write)
        end = tuple(int(w.stop) for w in write)
        lo = tuple(max(b - 1, 0) for b in begin)
        hi = tuple(min(e + 1, n) for e, n in zip(end, self.shape, strict=True))
        ext = np.asarray(self.out[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))], dtype=np.uint64)
        core = tuple(slice(b - a, e - a) for a, b, e in zip(lo, begin, end, strict=True))
        values = fastremap.unique(ext[core] & LABEL)
        leaves = _faces_out(values, begin, end, self.shape)
        exits = values[leaves]
        coords = np.unravel_index(exits.astype(np.int64) - 1, self.shape)
        targets = ext[tuple(c - a for c, a in zip(coords, lo, strict=True))] & LABEL
        pairs = np.zeros((0, 2), dtype=np.uint64)
        if self.plateau:
            upper = tuple(slice(b - a, None) for a, b in zip(lo, begin, strict=True))
            pairs = _plateau_pairs(ext[upper], tuple(e - b for b, e in zip(begin, end, strict=True)))
        return values[~leaves], exits, targets, pairs


@dataclass(frozen=True)
class _Resolution:
    """Pass 2's result: every pass-1 label → its supervoxel id, as sorted arrays (they pickle, and are small).

    ``exits[i]`` resolves to the root ``roots_of_exits[i]``; a root ``r``
    joined through a top plateau to a smaller root resolves further to
    ``join_into[searchsorted(joined, r)]``; ``roots`` are the remaining roots,
    sorted, and a root's id is its rank + 1.
    """

    exits: np.ndarray
    roots_of_exits: np.ndarray
    joined: np.ndarray
    join_into: np.ndarray
    roots: np.ndarray

    @staticmethod
    def _through(keys: np.ndarray, values: np.ndarray, labels: np.ndarray) -> np.ndarray:
        if keys.size == 0:
            return labels
        pos = np.minimum(np.searchsorted(keys, labels), keys.size - 1)
        return np.where(keys[pos] == labels, values[pos], labels)

    def root(self, labels: np.ndarray) -> np.ndarray:
        """The final root of pass-1 labels (uint64)."""
        return self._through(self.joined, self.join_into, self._through(self.exits, self.roots_of_exits, labels))

    def ids(self, labels: np.ndarray) -> np.ndarray:
        """Supervoxel ids ``1..N`` of pass-1 labels."""
        return (np.searchsorted(self.roots, self.root(labels)) + 1).astype(np.uint64)


def resolve_exits(exits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Pass 2: the root each exit label leads to, following chains across blocks.

    Parameters
    ----------
    exits
        Sorted unique exit labels (a voxel index + 1 that some block's chain left into).
    targets
        The pass-1 label each exit's voxel carries: its root, or its own exit.

    Returns
    -------
    numpy.ndarray
        The root of each exit (an exit whose voxel is a root resolves to itself).

    Notes
    -----
    Chains climb strictly in the edge order, so the only cycles are two
    voxels of different blocks that point at each other; the smaller end of
    such a two-cycle is the root, as it is in one block.
    """
    n = exits.size
    if n == 0:
        return exits.copy()
    own = np.arange(n)
    pos = np.minimum(np.searchsorted(exits, targets), n - 1)
    # A target that is not an exit, or is the exit itself, is a root: the chain ends there.
    onward = (exits[pos] == targets) & (targets != exits)
    nxt = np.where(onward, pos, own)
    root = targets.copy()
    cycle = onward & (nxt[nxt] == own)
    win = cycle & (exits < exits[nxt])
    nxt[win] = own[win]
    root[win] = exits[win]
    # Pointer doubling reaches every chain's end in O(log length) rounds; more means a longer cycle.
    for _ in range(64):
        jumped = nxt[nxt]
        if np.array_equal(jumped, nxt):
            return root[nxt]
        nxt = jumped
    raise RuntimeError("steepest ascent: a cycle of more than two voxels across blocks (the edge order is not strict)")


def _join_roots(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Roots joined through top-plateau pairs ``(a[i], b[i])``: (sorted joined roots, the smallest root of each's group)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    keep = a != b
    a, b = a[keep], b[keep]
    if a.size == 0:
        empty = np.zeros(0, dtype=np.uint64)
        return empty, empty
    nodes, inverse = np.unique(np.concatenate([a, b]), return_inverse=True)
    m = a.size
    graph = coo_matrix((np.ones(m, dtype=np.int8), (inverse[:m], inverse[m:])), shape=(nodes.size, nodes.size))
    _, group = connected_components(graph, directed=False)
    smallest = np.full(group.max() + 1, np.iinfo(np.uint64).max, dtype=np.uint64)
    np.minimum.at(smallest, group, nodes)  # nodes are sorted: the first of a group is its smallest
    into = smallest[group]
    moved = into != nodes
    return nodes[moved], into[moved]


def _resolve(found: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> _Resolution:
    """Pass 2 on what :class:`_Scan` found in every block."""
    empty = np.zeros(0, dtype=np.uint64)
    roots = np.sort(np.concatenate([f[0] for f in found] or [empty]))
    exits, first = np.unique(np.concatenate([f[1] for f in found] or [empty]), return_index=True)
    targets = np.concatenate([f[2] for f in found] or [empty])[first]
    through = resolve_exits(exits, targets)
    # The smaller end of a two-cycle across blocks is a root no block saw as one (both ends are exits there).
    roots = np.union1d(roots, through[through == exits])
    pairs = np.concatenate([f[3] for f in found] or [np.zeros((0, 2), dtype=np.uint64)])
    step = _Resolution(exits, through, empty, empty, roots)
    joined, into = _join_roots(step.root(pairs[:, 0]), step.root(pairs[:, 1]))
    if joined.size:
        roots = roots[~np.isin(roots, joined, assume_unique=True)]
    return _Resolution(exits, through, joined, into, roots)


class _Pass3:
    """Block work of pass 3: labels through the resolution, compacted to 1..N (into ``final``, or in place)."""

    def __init__(self, out, resolution: _Resolution, final=None) -> None:
        self.out, self.resolution = out, resolution
        self.final = out if final is None else final

    def __call__(self, block) -> None:
        box = block.write_roi.index_slices()
        labels = np.array(self.out[box], dtype=np.uint64) & LABEL
        values = fastremap.unique(labels)
        ids = self.resolution.ids(values)
        labels = fastremap.remap(labels, dict(zip(values.tolist(), ids.tolist(), strict=True)), in_place=True)
        dtype = getattr(self.final, "dtype", labels.dtype)
        self.final[box] = labels.astype(dtype, copy=False)


@dataclass(frozen=True)
class AscentRun:
    """What :func:`run_ascent` did.

    Attributes
    ----------
    n_supervoxels
        Supervoxels (roots) in the volume.
    n_exits
        Pass-1 labels that were chains leaving their block (joined across faces in pass 2).
    n_plateau_joins
        Basins joined because they share a top plateau.
    blocks
        Blocks in the grid.
    basins_ran, numbered_ran
        Blocks passes 1 and 3 ran now (with ledgers, the rest an earlier run did).
    """

    n_supervoxels: int
    n_exits: int
    n_plateau_joins: int
    blocks: int
    basins_ran: int
    numbered_ran: int


def run_ascent(affinities, *, block_shape: tuple[int, int, int] | None = None, out=None, final=None,
               ledgers=None, scheduler="synchronous", workers: int | None = None, progress=None,
               cancel=None) -> tuple[object, AscentRun]:
    """The three passes of :func:`ascent_supervoxels`; returns ``(labels, what it did)``.

    Parameters
    ----------
    final
        Where pass 3 writes the compacted labels (any dtype wide enough); None:
        in place into ``out``. A separate ``final`` makes pass 3 repeatable,
        which a resumed run needs.
    ledgers
        Two ledger paths (or :class:`~napari_connectome.blockwise.ledger.Ledger`)
        for passes 1 and 3, so an interrupted run continues where it stopped
        (needs ``final``); None: no resuming.
    Other parameters as :func:`ascent_supervoxels`.

    Notes
    -----
    When the weights have an attribute ``plateau_weight`` P (as
    :class:`~napari_connectome.segment.heights.HeightEdges`: weights
    ``h(u) + h(v)`` with ``h`` never above ``P / 2``), a voxel whose strongest
    edge reaches P is on a *top plateau*, and two neighbouring such voxels
    are one supervoxel. A plateau at the top cannot drain anywhere, so
    however the tie order splits it, its pieces are one basin; without this
    a large flat interior breaks into staircase pieces. The test is per
    edge, so blocks still give the whole-volume labels.
    """
    from napari_connectome.blockwise import BlockGrid, run_blockwise
    from napari_connectome.progress import PartOf

    shape = _check(tuple(affinities.shape))
    block = tuple(int(b) for b in (block_shape or shape))
    if len(block) != 3 or min(block) < 1:
        raise InputError("block_shape", f"need three positive sizes, got {block_shape!r}")
    if ledgers is not None and final is None:
        raise InputError("ledgers", "resuming needs a separate final output (pass 3 in place is not repeatable)")
    # One voxel of context above: the forward edges of a block's last voxels.
    grid = BlockGrid.of_shape(shape, block_voxels=block, context_high_voxels=1)
    target = out if out is not None else np.zeros(shape, dtype=np.uint64)
    options = {"scheduler": scheduler, "workers": workers, "cancel": cancel}
    first, third = ledgers if ledgers is not None else (None, None)
    plateau = getattr(affinities, "plateau_weight", None)

    if progress is not None:
        progress.start(3 * len(grid), "supervoxels")

    def part(_k: int):
        return PartOf(progress) if progress is not None else None

    basins = run_blockwise(_Pass1(affinities, target, shape, plateau), grid, ledger=first, progress=part(0),
                           description="supervoxels: basins", **options)
    found: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    run_blockwise(_Scan(target, shape, plateau is not None), grid, collect=lambda _b, result: found.append(result),
                  progress=part(1), description="supervoxels: joining blocks",
                  **{**options, "scheduler": "threads" if scheduler == "synchronous" else scheduler})
    resolution = _resolve(found)
    found.clear()  # the resolution keeps what pass 3 needs
    numbered = run_blockwise(_Pass3(target, resolution, final), grid, ledger=third, progress=part(2),
                             description="supervoxels: numbering", **options)
    if progress is not None:
        progress.close()
    n_exits = int(np.count_nonzero(resolution.roots_of_exits != resolution.exits))
    run = AscentRun(n_supervoxels=len(resolution.roots), n_exits=n_exits, n_plateau_joins=len(resolution.joined),
                    blocks=len(grid), basins_ran=basins.ran, numbered_ran=numbered.ran)
    return (target if final is None else final), run


def ascent_supervoxels(affinities, *, block_shape: tuple[int, int, int] | None = None,
                       out=None, scheduler="synchronous", workers: int | None = None,
                       progress=None, cancel=None) -> np.ndarray:
    """Steepest-ascent supervoxels (uint64, ``1..N`` in the order of their roots) of ``affinities``.

    Parameters
    ----------
    affinities
        ``(channels ≥ 3, z, y, x)`` array-like (NumPy, zarr, a lazy level,
        :class:`~napari_connectome.segment.heights.HeightEdges`); channels
        0..2 are the nearest offsets (see the module notes).
    block_shape
        Work in blocks of this many voxels (None: one block). The result
        does not depend on it.
    out
        A writable array-like of the volume's shape to hold the result (a
        zarr array for volumes larger than memory; its chunks must divide
        ``block_shape`` for parallel writes); default: a new array.
    scheduler, workers, progress, cancel
        As :func:`~napari_connectome.blockwise.run_blockwise` (passes 1 and 3
        run on it; ``processes`` or a cluster need ``affinities`` and ``out``
        that pickle, e.g. zarr arrays). The result does not depend on them.

    Returns
    -------
    numpy.ndarray or the ``out`` given
    """
    labels, _ = run_ascent(affinities, block_shape=block_shape, out=out, scheduler=scheduler, workers=workers,
                           progress=progress, cancel=cancel)
    return labels
