"""The synthetic EM generator: deterministic, tiling-independent, EM-like."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from napari_connectome.errors import InputError
from napari_connectome.synthetic import (
    SyntheticSpec,
    generate_block,
    neuron_segments,
    synthetic_volumes,
)
from napari_connectome.synthetic.hashing import gaussianish, hash_grid

SHAPE = (24, 96, 112)


def _full(spec: SyntheticSpec):
    return generate_block(spec, tuple((0, n) for n in spec.shape))


def _tiled(spec: SyntheticSpec, block, *, reverse: bool = False):
    raw = np.full(spec.shape, 7, dtype=np.uint8)
    gt = np.full(spec.shape, 99999, dtype=np.uint32)
    starts = [range(0, n, b) for n, b in zip(spec.shape, block, strict=True)]
    boxes = [
        tuple((s, min(s + b, n)) for s, b, n in zip(start, block, spec.shape, strict=True))
        for start in itertools.product(*starts)
    ]
    for box in reversed(boxes) if reverse else boxes:
        r, g = generate_block(spec, box)
        sl = tuple(slice(a, b) for a, b in box)
        raw[sl] = r
        gt[sl] = g
    return raw, gt


def test_same_seed_same_volume_even_after_the_segment_cache_is_dropped():
    spec = SyntheticSpec(shape=SHAPE, seed=11)
    raw1, gt1 = _full(spec)
    neuron_segments.cache_clear()
    raw2, gt2 = _full(SyntheticSpec(shape=SHAPE, seed=11))
    assert np.array_equal(raw1, raw2)
    assert np.array_equal(gt1, gt2)


def test_different_seeds_differ():
    raw1, gt1 = _full(SyntheticSpec(shape=SHAPE, seed=1))
    raw2, gt2 = _full(SyntheticSpec(shape=SHAPE, seed=2))
    assert np.mean(raw1 != raw2) > 0.5
    assert not np.array_equal(gt1, gt2)


@pytest.mark.parametrize("voxel_size", [(8.0, 8.0, 8.0), (40.0, 8.0, 8.0)])
def test_bit_identical_whatever_the_tiling_and_order(voxel_size):
    spec = SyntheticSpec(shape=SHAPE, voxel_size=voxel_size, seed=5)
    raw_a, gt_a = _full(spec)
    # Odd blocks that straddle the 64-voxel internal tiles, in reverse order.
    raw_b, gt_b = _tiled(spec, (7, 33, 41), reverse=True)
    raw_c, gt_c = _tiled(spec, (24, 1, 112))
    assert np.array_equal(raw_a, raw_b) and np.array_equal(gt_a, gt_b)
    assert np.array_equal(raw_a, raw_c) and np.array_equal(gt_a, gt_c)


def _boundary(gt: np.ndarray) -> np.ndarray:
    """Voxels whose label differs from a neighbour in y or x."""
    edge = np.zeros(gt.shape, dtype=bool)
    for axis in (1, 2):
        d = np.diff(gt, axis=axis) != 0
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis] = slice(0, -1)
        hi[axis] = slice(1, None)
        edge[tuple(lo)] |= d
        edge[tuple(hi)] |= d
    return edge


@pytest.mark.parametrize("voxel_size", [(8.0, 8.0, 8.0), (40.0, 8.0, 8.0)])
def test_looks_like_em(voxel_size):
    spec = SyntheticSpec(shape=(16, 160, 160), voxel_size=voxel_size, seed=3)
    raw, gt = _full(spec)
    assert raw.dtype == np.uint8 and gt.dtype == np.uint32
    ids = np.unique(gt)
    assert ids[0] == 0 and len(ids) >= 6, "several neurons and some extracellular space"
    assert 0.2 < np.mean(gt > 0) < 0.9
    edge = _boundary(gt)
    ecs = (gt == 0) & ~edge
    cyto = (gt > 0) & ~edge
    membrane = raw[edge].astype(float).mean()
    assert membrane < raw[ecs].mean() - 10, "membranes darker than extracellular space"
    assert raw[ecs].mean() < raw[cyto].mean() - 30, "extracellular space darker than cytoplasm"
    # Every id in the volume comes from the segment list the generator drew.
    assert set(ids[1:]) <= set(neuron_segments(spec).label_ids().tolist())


def test_membranes_separate_touching_neurons():
    spec = SyntheticSpec(
        shape=(16, 160, 160), seed=3, noise_sd=0, texture_amplitude=0, organelle_darkness=0
    )
    raw, gt = _full(spec)
    a, b = gt[:, :, :-1], gt[:, :, 1:]
    touching = (a > 0) & (b > 0) & (a != b)
    assert touching.any(), "this seed has neurons in contact"
    # The membrane (16 nm, centred on the boundary) covers at least half of
    # the 8 nm voxel nearer to the boundary: that voxel is at least halfway
    # from the brightest cytoplasm down to the membrane level.
    brightest = spec.cytoplasm_level + spec.cytoplasm_spread / 2
    halfway = (brightest + spec.membrane_level) / 2
    darker = np.minimum(raw[:, :, :-1], raw[:, :, 1:])[touching]
    assert darker.max() <= halfway + 1
    # ... while the cytoplasm away from boundaries keeps its tone.
    assert (
        np.median(raw[(gt > 0) & ~_boundary(gt)]) > spec.cytoplasm_level - spec.cytoplasm_spread / 2
    )


def test_noise_has_the_requested_spread():
    spec = SyntheticSpec(shape=(8, 128, 128), n_neurons=0, texture_amplitude=0, noise_sd=10, seed=4)
    raw, gt = _full(spec)
    assert not gt.any()
    values = raw.astype(float)
    assert abs(values.mean() - spec.extracellular_level) < 0.5
    assert 9.0 < values.std() < 11.0
    # Neighbouring voxels are independent (counter-based hash, no stripes).
    corr = np.corrcoef(values[:, :, :-1].ravel(), values[:, :, 1:].ravel())[0, 1]
    assert abs(corr) < 0.02


def test_hash_grid_depends_only_on_absolute_position():
    whole = hash_grid(9, 1, np.arange(0, 10), np.arange(0, 12), np.arange(0, 14))
    part = hash_grid(9, 1, np.arange(3, 7), np.arange(5, 12), np.arange(2, 9))
    assert np.array_equal(whole[3:7, 5:12, 2:9], part)
    noise = gaussianish(hash_grid(9, 2, np.arange(40), np.arange(50), np.arange(60)))
    assert abs(noise.mean()) < 0.03 and abs(noise.std() - 1) < 0.03


def test_lazy_volumes_read_what_generate_block_gives():
    spec = SyntheticSpec(shape=(20, 90, 100), voxel_size=(40, 8, 8), offset=(100, -50, 0), seed=8)
    raw_vol, gt_vol = synthetic_volumes(spec, chunks=(8, 32, 32))
    assert raw_vol.kind == "image" and gt_vol.kind == "labels"
    assert raw_vol.dtype == np.uint8 and gt_vol.dtype == np.uint32
    assert raw_vol.voxel_size == (40.0, 8.0, 8.0) and gt_vol.offset == (100.0, -50.0, 0.0)
    assert raw_vol.shape == spec.shape and raw_vol.chunks == (8, 32, 32)
    box = ((3, 17), (10, 77), (5, 99))
    raw, gt = generate_block(spec, box)
    sl = tuple(slice(a, b) for a, b in box)
    assert np.array_equal(raw_vol.level0.array[sl], raw)
    assert np.array_equal(gt_vol.level0.array[sl], gt)


def test_a_huge_volume_costs_nothing_until_read():
    spec = SyntheticSpec(shape=(20000, 200000, 200000), n_neurons=50, seed=1)
    raw_vol, gt_vol = synthetic_volumes(spec)
    assert raw_vol.shape == (20000, 200000, 200000)
    corner = raw_vol.level0.array[10000:10004, 100000:100032, 100000:100032]
    assert corner.shape == (4, 32, 32) and corner.dtype == np.uint8


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shape": (0, 10, 10)},
        {"shape": (10, 10)},
        {"shape": (10, 10, 10), "voxel_size": (0, 8, 8)},
        {"shape": (10, 10, 10), "radius_nm": (100, 50)},
        {"shape": (10, 10, 10), "branch_probability": 1.5},
        {"shape": (10, 10, 10), "membrane_thickness_nm": 0},
    ],
)
def test_bad_specs_are_one_line_errors(kwargs):
    with pytest.raises(InputError) as info:
        SyntheticSpec(**kwargs)
    assert "\n" not in str(info.value)


def test_blocks_outside_the_volume_are_refused():
    spec = SyntheticSpec(shape=(8, 8, 8))
    with pytest.raises(InputError):
        generate_block(spec, ((0, 9), (0, 8), (0, 8)))
