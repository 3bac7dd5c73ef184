"""Steepest-ascent supervoxels: right by a brute-force reference, and identical blockwise."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from napari_connectome.errors import InputError
from napari_connectome.segment import ascent_supervoxels


def reference(affs: np.ndarray) -> np.ndarray:
    """Follow every voxel's strongest edge (ties: larger lower voxel index, then channel) to its root, voxel by voxel."""
    shape = affs.shape[1:]
    n = int(np.prod(shape))
    steps = [(-1, 0, 0), (0, -1, 0), (0, 0, -1)]

    def edges(v):
        z, y, x = np.unravel_index(v, shape)
        out = []
        for c, (dz, dy, dx) in enumerate(steps):
            u = (z + dz, y + dy, x + dx)
            if min(u) >= 0:  # backward: stored at v
                lower = int(np.ravel_multi_index(u, shape))
                out.append((float(affs[c, z, y, x]), c, lower, lower))
            w = (z - dz, y - dy, x - dx)
            if all(a < s for a, s in zip(w, shape, strict=True)):  # forward: stored at w
                other = int(np.ravel_multi_index(w, shape))
                out.append((float(affs[(c, *w)]), c, v, other))
        return out

    pointer = []
    for v in range(n):
        found = edges(v)
        if not found:
            pointer.append(v)
            continue
        best = max(found, key=lambda e: (e[0], e[2], -e[1]))  # largest value, then largest lower voxel, smallest channel
        pointer.append(best[3])
    roots = []
    for v in range(n):
        seen = [v]
        while True:
            nxt = pointer[seen[-1]]
            if nxt == seen[-1]:
                break
            if len(seen) > 1 and nxt == seen[-2]:  # a two-cycle: the smaller end is the root
                seen.append(min(nxt, seen[-1]))
                break
            seen.append(nxt)
        roots.append(seen[-1])
    _, ids = np.unique(np.asarray(roots), return_inverse=True)
    return (ids + 1).reshape(shape).astype(np.uint64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_labels_equal_the_reference(seed):
    rng = np.random.default_rng(seed)
    affs = np.round(rng.random((3, 4, 5, 6)), 1).astype(np.float32)  # rounded: many ties
    assert np.array_equal(ascent_supervoxels(affs), reference(affs))


@pytest.mark.parametrize("block", [(1, 1, 1), (2, 3, 4), (5, 5, 5), (16, 8, 32)])
def test_blockwise_labels_are_identical_to_whole_volume_labels(block):
    rng = np.random.default_rng(7)
    affs = np.round(rng.random((3, 12, 17, 23)), 1).astype(np.float32)
    assert np.array_equal(ascent_supervoxels(affs, block_shape=block), ascent_supervoxels(affs))


def test_a_zarr_output_larger_than_a_block_gives_the_same_bytes(tmp_path):
    rng = np.random.default_rng(3)
    # Smooth affinities: few basins, each spanning several blocks (chains cross many faces).
    from scipy import ndimage

    f = ndimage.gaussian_filter(rng.random((24, 32, 32)), 4)
    affs = np.zeros((3, *f.shape), np.float32)
    affs[0, 1:] = np.minimum(f[1:], f[:-1])
    affs[1, :, 1:] = np.minimum(f[:, 1:], f[:, :-1])
    affs[2, :, :, 1:] = np.minimum(f[:, :, 1:], f[:, :, :-1])
    whole = ascent_supervoxels(affs)
    assert whole.max() < 50  # a few basins, each across many blocks of 8³
    out = zarr.open(str(tmp_path / "sv.zarr"), mode="w", shape=whole.shape, chunks=(8, 8, 8), dtype="u8")
    ascent_supervoxels(affs, block_shape=(8, 8, 8), out=out)
    assert np.array_equal(out[...], whole)


def test_bad_shapes_are_one_line():
    with pytest.raises(InputError, match="channels"):
        ascent_supervoxels(np.zeros((2, 4, 4, 4), np.float32))
    with pytest.raises(InputError, match="empty"):
        ascent_supervoxels(np.zeros((3, 0, 4, 4), np.float32))
    with pytest.raises(InputError, match="three positive sizes"):
        ascent_supervoxels(np.zeros((3, 4, 4, 4), np.float32), block_shape=(0, 4, 4))


@pytest.mark.parametrize("scheduler", ["synchronous", "threads", "processes"])
def test_the_same_bytes_on_any_scheduler(tmp_path, scheduler):
    rng = np.random.default_rng(11)
    affs = np.round(rng.random((3, 16, 24, 24)), 2).astype(np.float32)
    whole = ascent_supervoxels(affs)
    out = zarr.open(str(tmp_path / "sv.zarr"), mode="w", shape=whole.shape, chunks=(8, 8, 8), dtype="u8")
    ascent_supervoxels(affs, block_shape=(8, 8, 8), out=out, scheduler=scheduler, workers=2)
    assert np.array_equal(out[...], whole)


def test_progress_counts_three_passes():
    from napari_connectome.progress import Progress

    class Count(Progress):
        def __init__(self):
            self.total, self.done, self.closed = 0, 0, False

        def start(self, total, description):
            self.total = total

        def advance(self, steps=1):
            self.done += steps

        def close(self):
            self.closed = True

    seen = Count()
    ascent_supervoxels(np.random.default_rng(0).random((3, 8, 8, 8)).astype(np.float32), block_shape=(4, 4, 4),
                       progress=seen)
    assert seen.total == seen.done == 3 * 8 and seen.closed


def test_exits_resolve_along_chains_and_two_cycles():
    from napari_connectome.segment.ascent import resolve_exits

    # 5 → 9 → 14 (14 carries itself: a root), 20 ↔ 31 (a two-cycle across blocks), 40 → 3 (a root no block exited to)
    exits = np.array([5, 9, 14, 20, 31, 40], dtype=np.uint64)
    targets = np.array([9, 14, 14, 31, 20, 3], dtype=np.uint64)
    assert resolve_exits(exits, targets).tolist() == [14, 14, 14, 20, 20, 3]
    assert resolve_exits(np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.uint64)).size == 0


def test_a_longer_cycle_is_an_error_not_a_hang():
    from napari_connectome.segment.ascent import resolve_exits

    with pytest.raises(RuntimeError, match="more than two"):
        resolve_exits(np.array([1, 2, 3], dtype=np.uint64), np.array([2, 3, 1], dtype=np.uint64))


def test_a_two_cycle_across_a_block_face_is_one_supervoxel_with_one_id():
    # Voxels 1 and 2 of a 1×1×4 line share the strongest edge, and a block face cuts it.
    affs = np.zeros((3, 1, 1, 4), dtype=np.float32)
    affs[2, 0, 0, 1:] = [0.2, 0.9, 0.1]  # edges 0–1, 1–2, 2–3
    whole = ascent_supervoxels(affs)
    assert whole.ravel().tolist() == [1, 1, 1, 1]
    assert np.array_equal(ascent_supervoxels(affs, block_shape=(1, 1, 2)), whole)
