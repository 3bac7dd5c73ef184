"""Block processes for the block-wise tests: module-level, so they travel to worker processes.

Each one reads a small volume and writes one zarr array block by block: the
sum of every voxel's 3 × 3 × 3 neighbourhood (int64, exact), the volume
mirrored at its border. The context of one voxel makes a block depend on its
neighbours' voxels, so a grid that dropped or doubled the context would show.
"""

from __future__ import annotations

import numpy as np

from napari_connectome.volume import Level, NumpyArray, Roi

SHAPE = (12, 10, 14)
CHUNKS = (4, 5, 7)
VOXEL_SIZE = (40.0, 8.0, 8.0)
OFFSET = (20.0, -4.0, 100.0)


def source() -> Level:
    data = (np.arange(np.prod(SHAPE), dtype=np.int64).reshape(SHAPE) * 7919) % 1009
    return Level(NumpyArray(data), VOXEL_SIZE, OFFSET, ("z", "y", "x"))


def box_sum(data: np.ndarray) -> np.ndarray:
    """Sum over each inner voxel's 3 × 3 × 3 neighbourhood (``data`` has one voxel of context around)."""
    out = np.zeros(tuple(s - 2 for s in data.shape), np.int64)
    for dz in range(3):
        for dy in range(3):
            for dx in range(3):
                out += data[dz : dz + out.shape[0], dy : dy + out.shape[1], dx : dx + out.shape[2]]
    return out


def expected() -> np.ndarray:
    return box_sum(np.pad(source().read(), 1, mode="reflect"))


def write_box_sums(block, *, path: str, fail_on=()) -> int:
    """Write the block's box sums into the zarr array at ``path``; raise in the blocks ``fail_on``."""
    import zarr

    if block.block_id in fail_on:
        raise ValueError(f"simulated failure in block {block.block_id}")
    level = source()
    sums = box_sum(level.read(block.read_roi, outside="reflect"))
    zarr.open_array(path, mode="r+")[level.voxel_slices(block.write_roi)] = sums
    return int(sums.sum())


def whole_roi() -> Roi:
    return source().roi
