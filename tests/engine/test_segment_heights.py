"""Steepest ascent of the capped distance transform: identical in blocks, sensible basins, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_connectome.errors import InputError
from napari_connectome.segment.heights import HeightEdges, HeightParams, height_supervoxels, surface


def cells(shape, n_seeds: int, seed: int) -> np.ndarray:
    """A boundary map of random Voronoi cells: membranes one voxel thick, a little noise."""
    rng = np.random.default_rng(seed)
    points = np.stack([rng.integers(0, s, n_seeds) for s in shape], axis=1)
    markers = np.zeros(shape, np.int32)
    markers[tuple(points.T)] = np.arange(1, n_seeds + 1)
    _, (iz, iy, ix) = ndimage.distance_transform_edt(markers == 0, return_indices=True)
    labels = markers[iz, iy, ix]
    edge = np.zeros(shape, bool)
    for axis in range(3):
        diff = np.diff(labels, axis=axis) != 0
        pad = [(0, 0)] * 3
        pad[axis] = (0, 1)
        edge |= np.pad(diff, pad)
    return np.clip(edge * 0.9 + rng.normal(0, 0.05, shape), 0, 1).astype(np.float32)


@pytest.mark.parametrize("params", [HeightParams(), HeightParams(threshold=0.3, sigma=0.0, cap=5),
                                    HeightParams(sigma=1.5, cap=10, voxel_size=(40, 8, 8)),
                                    HeightParams(boundary_weight=10.0, voxel_size=(40, 8, 8))])
@pytest.mark.parametrize("block", [(8, 16, 16), (5, 11, 23), (40, 9, 64)])
def test_blocks_give_the_whole_volume_labels(params, block):
    boundary = cells((20, 40, 48), 12, seed=3)
    whole = height_supervoxels(boundary, params)
    assert np.array_equal(height_supervoxels(boundary, params, block_shape=block), whole)
    assert whole.min() == 1 and len(np.unique(whole)) == whole.max()


def test_each_cell_is_few_supervoxels_and_none_crosses_a_membrane():
    boundary = cells((24, 48, 48), 8, seed=5)
    sv = height_supervoxels(boundary, HeightParams(cap=16))
    inside = boundary < 0.5
    cell, n_cells = ndimage.label(inside)
    # no supervoxel holds the interiors of two cells
    for s in np.unique(sv):
        assert len(np.unique(cell[(sv == s) & inside & (cell > 0)])) <= 1
    assert sv.max() < 20 * n_cells  # over-segmented for the merge tree, not shattered


def test_a_flat_deep_interior_is_one_supervoxel_not_one_per_column():
    z, y, x = np.indices((60, 60, 60))
    ball = np.sqrt((z - 30) ** 2 + (y - 30) ** 2 + (x - 30) ** 2) < 25
    boundary = np.where(ball, 0.0, 1.0).astype(np.float32)
    sv = height_supervoxels(boundary, HeightParams(cap=4, sigma=0.0))  # a plateau ~21 voxels in radius
    columns = int(ball.any(axis=0).sum())  # a channel-first tie order makes a basin per plateau column
    assert len(np.unique(sv[ball])) == 1 < columns  # the plateau is at the top: one supervoxel
    # joined across block faces too: the same labels in blocks
    assert np.array_equal(height_supervoxels(boundary, HeightParams(cap=4, sigma=0.0), block_shape=(7, 13, 17)), sv)
    assert len(np.unique(height_supervoxels(boundary, HeightParams(cap=30, sigma=0.0))[ball])) == 1


def test_anisotropy_is_in_the_distance():
    boundary = np.zeros((9, 9, 9), np.uint8)
    boundary[0] = 255  # a membrane sheet at z = 0
    iso = surface(boundary, HeightParams(sigma=0.0))
    aniso = surface(boundary, HeightParams(sigma=0.0, voxel_size=(40, 8, 8)))
    assert iso[4, 4, 4] == pytest.approx(4.0) and aniso[4, 4, 4] == pytest.approx(16.0)  # capped at 16 finest
    assert aniso[2, 4, 4] == pytest.approx(10.0)


def test_the_boundary_map_steers_the_ascent_inside_cells_by_its_weight():
    boundary = np.full((5, 9, 9), 20, np.uint8)
    boundary[:, :, 0] = 255
    boundary[2, 4, 5] = 80  # a faint membrane-like voxel inside
    plain = surface(boundary, HeightParams(sigma=0.0))
    steered = surface(boundary, HeightParams(sigma=0.0, boundary_weight=10.0))
    inside = boundary < 128
    expected = plain + 10.0 * (1.0 - boundary.astype(np.float64) / 255.0)
    assert np.allclose(steered[inside], expected[inside].astype(np.float32))
    assert np.array_equal(steered[~inside], plain[~inside])  # membranes keep -boundary


def test_a_window_is_labelled_as_if_it_were_the_volume():
    boundary = (cells((16, 32, 32), 6, seed=9) * 255).astype(np.uint8)
    edges = HeightEdges(boundary, HeightParams(), begin=(4, 8, 0), end=(16, 24, 32))
    inner = HeightEdges(np.ascontiguousarray(boundary[4:16, 8:24, 0:32]), HeightParams())
    key = (slice(0, 3), slice(0, 12), slice(0, 16), slice(0, 32))
    assert np.array_equal(edges[key], inner[key])


def test_nonsense_parameters_are_one_line():
    with pytest.raises(InputError, match="threshold"):
        HeightParams(threshold=1.5)
    with pytest.raises(InputError, match="cap"):
        HeightParams(cap=0)
    with pytest.raises(InputError, match="boundary weight"):
        HeightParams(boundary_weight=-1)
    with pytest.raises(InputError, match="voxel size"):
        HeightParams(voxel_size=(0, 1, 1))
    with pytest.raises(InputError, match="empty"):
        HeightEdges(np.zeros((0, 4, 4), np.uint8), HeightParams())
