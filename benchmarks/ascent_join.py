"""Time and peak memory of the steepest-ascent supervoxels in small blocks: where pass 2 (joining blocks) shows.

Random affinities (rounded to 0.05, so ties abound) of an ``N³`` volume in
blocks of ``B³`` give millions of supervoxels and hundreds of thousands of
chains that cross block faces: the worst case for the join across blocks.
The labels go to zarr arrays (the block-wise path ``segment`` takes); the
script prints the supervoxels, the exits, the wall time of ``run_ascent`` and
the process's peak RSS. Run it at two commits to compare them::

    python benchmarks/ascent_join.py --size 256 --block 32
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time

import numpy as np
import zarr

from napari_connectome.segment.ascent import run_ascent


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--block", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    n, b = args.size, args.block
    affs = np.round(np.random.default_rng(args.seed).random((3, n, n, n), dtype=np.float32) * 20) / 20
    with tempfile.TemporaryDirectory() as tmp:
        out = zarr.open(f"{tmp}/basins.zarr", mode="w", shape=(n, n, n), chunks=(b, b, b), dtype="uint64")
        final = zarr.open(f"{tmp}/labels.zarr", mode="w", shape=(n, n, n), chunks=(b, b, b), dtype="uint64")
        t0 = time.perf_counter()
        _, run = run_ascent(affs, block_shape=(b, b, b), out=out, final=final)
        seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"{n}³ in {b}³ blocks ({run.blocks}): {run.n_supervoxels:,} supervoxels, {run.n_exits:,} exits; "
          f"{seconds:.1f} s, peak RSS {peak:.2f} GiB (the affinities alone: {affs.nbytes / 2**30:.2f} GiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
