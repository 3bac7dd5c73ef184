"""What the block-wise layer costs per block, alone and inside the loops that use it.

Cases
-----
runner
    ``run_blockwise`` over a grid of 4 000 blocks whose ``process`` only
    turns its box into slices, synchronous and on 2 threads, against a plain
    Python loop over the same boxes: the layer's own cost per block (grid,
    ledger check, futures, ordered results).
loops
    The engine's block loops with deliberately small blocks, where that cost
    shows most: the region graph (64 × 256 × 256, blocks of 16 × 32 × 32: 256
    blocks, two passes), the contingency table (blocks of 8 × 16 × 16: 2 048),
    and a pyramid write (64 × 256 × 256 uint8, chunks and blocks of 16³,
    every level).

Median and minimum of ``--repeats``. At the engine's default block sizes
(a graph block is 4 M voxels, a pyramid block up to 32 MiB) a few µs per
block are far below the noise.

Run::

    .venv/bin/python benchmarks/bench_blockwise.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time

import numpy as np

from napari_connectome.blockwise import BlockGrid, run_blockwise
from napari_connectome.graph import build_rag
from napari_connectome.metrics import contingency_table
from napari_connectome.progress import NullProgress
from napari_connectome.pyramid import write_ome_zarr
from napari_connectome.volume import from_array


def timed(fn, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), min(times)


def labels(shape, cell, seed: int) -> np.ndarray:
    """Box-shaped ids with a little noise: many contacts, many ids per block."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    ids = (z // cell[0]) * 10000 + (y // cell[1]) * 100 + (x // cell[2])
    return (ids * 3 + rng.integers(0, 3, size=shape) + 1).astype(np.uint64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows: list[tuple[str, tuple[float, float], int]] = []

    grid = BlockGrid.of_shape((100, 100, 100), block_voxels=(5, 5, 10))
    n = len(grid)
    rows.append(("plain loop over the boxes", timed(lambda: [b.write_roi.index_slices() for b in grid], args.repeats), n))
    for scheduler in ("synchronous", "threads"):
        rows.append((f"run_blockwise, {scheduler}", timed(
            lambda s=scheduler: run_blockwise(lambda b: b.write_roi.index_slices(), grid, scheduler=s, workers=2),
            args.repeats), n))

    shape = (64, 256, 256)
    sv = from_array(labels(shape, (8, 16, 16), 0), kind="labels")
    gt = from_array(labels(shape, (16, 32, 32), 1), kind="labels")
    boundary = from_array(np.random.default_rng(2).random(shape, dtype=np.float32))
    raw = (np.random.default_rng(3).random(shape) * 255).astype(np.uint8)
    rows.append(("region graph, 16 × 32 × 32 blocks, 2 workers", timed(
        lambda: build_rag(sv, boundary, block_shape=(16, 32, 32), workers=2), args.repeats),
        2 * len(BlockGrid.of_shape(shape, block_voxels=(16, 32, 32)))))  # two passes
    rows.append(("contingency table, 8 × 16 × 16 blocks", timed(
        lambda: contingency_table(sv, gt, block_shape=(8, 16, 16)), args.repeats),
        len(BlockGrid.of_shape(shape, block_voxels=(8, 16, 16)))))
    counted = NullProgress()

    def pyramid() -> None:
        folder = tempfile.mkdtemp()
        try:
            write_ome_zarr(f"{folder}/p.ome.zarr", raw, voxel_size=(40, 8, 8), chunks=16, block=16, workers=2,
                           progress=counted)
        finally:
            shutil.rmtree(folder)

    rows.append(("pyramid write, 16³ blocks, 2 workers", timed(pyramid, args.repeats), counted.total))
    print(f"{'case':<46} {'median s':>9} {'min s':>8} {'blocks':>7} {'µs/block (min)':>15}")
    for name, (median, best), blocks in rows:
        print(f"{name:<46} {median:9.3f} {best:8.3f} {blocks:7d} {best / blocks * 1e6:15.1f}")


if __name__ == "__main__":
    main()
