"""Blocks: a grid of write regions tiling a total box, each read with its context.

daisy's vocabulary: a task covers a *total* box; each :class:`Block` writes
exactly its ``write_roi`` and may read ``read_roi``, the write box grown by
the context (which may reach outside the total box: the process decides how
to read there, e.g. :meth:`~napari_connectome.volume.model.Level.read` with
``outside="reflect"``). Write boxes tile the total box exactly: the grid is
anchored at its begin, and blocks at the far border are clipped to it.

A block's id is its position in the grid, counted in C order (the last axis
fastest): the same grid always gives the same ids, which is what lets a
done-ledger (:mod:`~napari_connectome.blockwise.ledger`) name blocks across runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from napari_connectome.errors import InputError
from napari_connectome.volume.model import Level
from napari_connectome.volume.roi import GRID_TOLERANCE, Roi, coords


@dataclass(frozen=True)
class Block:
    """One unit of block-wise work.

    Attributes
    ----------
    block_id
        Position in the grid, counted in C order from 0: deterministic.
    index
        Position in the grid per axis.
    write_roi
        The box this block writes, and only this box.
    read_roi
        ``write_roi`` grown by the grid's context: what the block may read.
    """

    block_id: int
    index: tuple[int, ...]
    write_roi: Roi
    read_roi: Roi

    def __str__(self) -> str:
        return f"block {self.block_id} (write {self.write_roi})"


class BlockGrid:
    """Blocks of ``block_nm`` tiling ``total``, each read with ``context_nm`` around it.

    Parameters
    ----------
    total
        The box to cover.
    block_nm
        Edge of a block per axis (or one number for every axis), > 0.
    context_nm
        Context read below each write box per axis (≥ 0).
    context_high_nm
        Context read above it; default ``context_nm``.
    unit
        Unit of the boxes, for messages and the ledger's signature: ``"nm"``
        (default) or ``"voxel"`` (:meth:`of_shape`).

    Notes
    -----
    The grid is lazy: its length is counted, not listed, and blocks are made
    as they are iterated, so a grid of millions of blocks costs nothing until
    used. Use :meth:`of_level` for blocks in voxels of a level (nm boxes on
    its voxel grid), :meth:`of_shape` for an array with no world coordinates.
    """

    def __init__(self, total: Roi, *, block_nm, context_nm=0.0, context_high_nm=None,
                 unit: str = "nm") -> None:
        if not isinstance(total, Roi):
            raise InputError("total", f"{total!r} is not a Roi")
        self.total = total
        self.unit = unit
        self.block_size = coords(block_nm, total.dims, "block size")
        if any(b <= 0 for b in self.block_size):
            raise InputError("block", f"block size {self.block_size} {unit} must be positive")
        self.context = coords(context_nm, total.dims, "context")
        self.context_high = (self.context if context_high_nm is None
                             else coords(context_high_nm, total.dims, "context"))
        if any(c < 0 for c in self.context + self.context_high):
            raise InputError("context", f"context {self.context} / {self.context_high} {unit} must be ≥ 0")
        # Blocks per axis; a remainder within the grid tolerance is no block
        # of its own (the last block's end is the total's end, so no gap either).
        self.shape = tuple(
            0 if s == 0 else max(1, math.ceil(s / b - GRID_TOLERANCE))
            for s, b in zip(total.shape, self.block_size, strict=True)
        )
        if total.empty:
            self.shape = (0,) * total.dims
        self._no_context = not any(self.context) and not any(self.context_high)

    @classmethod
    def of_level(cls, level: Level, *, block_voxels, context_voxels=0, context_high_voxels=None,
                 roi: Roi | None = None) -> BlockGrid:
        """Blocks of ``block_voxels`` voxels of ``level`` over ``roi`` (default: the whole level).

        The boxes are in nm on the level's voxel grid, so
        :meth:`Level.voxel_slices` turns each into slices; ``roi`` must lie on
        that grid (snap it with :meth:`Level.snap`).
        """
        # Strict: a box off the voxel grid is refused, naming it.
        total = level.roi if roi is None else level.snap(roi, mode=None)
        vs = level.spatial_voxel_size
        n = len(vs)
        blk = coords(block_voxels, n, "block size")
        ctx = coords(context_voxels, n, "context")
        ctx_hi = None if context_high_voxels is None else coords(context_high_voxels, n, "context")
        return cls(
            total,
            block_nm=tuple(b * v for b, v in zip(blk, vs, strict=True)),
            context_nm=tuple(c * v for c, v in zip(ctx, vs, strict=True)),
            context_high_nm=None if ctx_hi is None else tuple(c * v for c, v in zip(ctx_hi, vs, strict=True)),
        )

    @classmethod
    def of_shape(cls, shape: Sequence[int], *, block_voxels, context_voxels=0,
                 context_high_voxels=None) -> BlockGrid:
        """Blocks over an array of ``shape`` in voxel units (begin 0): :meth:`Roi.index_slices` gives slices."""
        shape = tuple(int(s) for s in shape)
        return cls(Roi((0,) * len(shape), shape), block_nm=block_voxels, context_nm=context_voxels,
                   context_high_nm=context_high_voxels, unit="voxel")

    # ------------------------------------------------------------ blocks
    def __len__(self) -> int:
        return math.prod(self.shape)

    def block_at(self, index: Sequence[int]) -> Block:
        """The block at grid position ``index``."""
        index = tuple(int(i) for i in index)
        if len(index) != len(self.shape) or not all(0 <= i < n for i, n in zip(index, self.shape, strict=True)):
            raise InputError("block", f"grid position {index} is outside the grid {self.shape}")
        block_id = 0
        for i, n in zip(index, self.shape, strict=True):
            block_id = block_id * n + i
        return self._make(block_id, index)

    def _make(self, block_id: int, index: tuple[int, ...]) -> Block:
        begin, end = [], []
        for i, n, b0, e0, bs in zip(index, self.shape, self.total.begin, self.total.end, self.block_size, strict=True):
            # Neighbours compute the shared face with the same expression: exact tiling.
            begin.append(b0 + i * bs)
            end.append(e0 if i == n - 1 else b0 + (i + 1) * bs)
        # Built unchecked: a grid makes one per block, and these corners are finite and ordered.
        write = Roi._trusted(tuple(begin), tuple(end))
        if self._no_context:
            return Block(block_id, index, write, write)
        read = Roi._trusted(tuple(b - c for b, c in zip(begin, self.context, strict=True)),
                            tuple(e + c for e, c in zip(end, self.context_high, strict=True)))
        return Block(block_id, index, write, read)

    def block(self, block_id: int) -> Block:
        """The block with id ``block_id``."""
        block_id = int(block_id)
        if not 0 <= block_id < len(self):
            raise InputError("block", f"block id {block_id} is not in a grid of {len(self)} blocks")
        return self._make(block_id, self._index(block_id))

    def _index(self, block_id: int) -> tuple[int, ...]:
        index = []
        rest = block_id
        for n in reversed(self.shape):
            rest, i = divmod(rest, n)
            index.append(i)
        return tuple(reversed(index))

    def __iter__(self) -> Iterator[Block]:
        """Every block in id order, made one at a time."""
        for block_id in range(len(self)):
            yield self._make(block_id, self._index(block_id))

    def describe(self) -> dict:
        """What defines the grid's ids (a done-ledger's signature): JSON-ready."""
        return {
            "unit": self.unit,
            "begin": list(self.total.begin),
            "end": list(self.total.end),
            "block": list(self.block_size),
            "context": list(self.context),
            "context_high": list(self.context_high),
        }

    def __repr__(self) -> str:
        return (f"BlockGrid({self.total} {self.unit}, block {self.block_size}, {len(self)} blocks "
                f"{self.shape}, context {self.context}/{self.context_high})")
