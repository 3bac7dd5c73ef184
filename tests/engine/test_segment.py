"""Affinities -> boundary -> supervoxels -> merge tree, on toy volumes."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import missing

from napari_connectome.segment import (
    PostProcess,
    boundary_from_affinities,
    merge_tree,
    mutex_supervoxels,
    sweep_thresholds,
    watershed_supervoxels,
)
from napari_connectome.segment.pipeline import segmentation_at
from napari_connectome.train import affinities_from_labels

OFFSETS = [(-1, 0, 0), (0, -1, 0), (0, 0, -1), (0, 0, -3), (0, -3, 0)]


def two_bodies():
    lab = np.zeros((8, 12, 16), dtype=np.int32)
    lab[..., :7] = 1
    lab[..., 8:] = 2
    return lab


def test_boundary_is_high_on_the_sheet():
    aff, _ = affinities_from_labels(two_bodies(), OFFSETS)
    b = boundary_from_affinities(aff, OFFSETS)
    assert b.shape == (8, 12, 16)
    assert (b[2:-2, 2:-2, 7] == 1).all()
    assert (b[2:-2, 2:-2, 2:5] == 0).all()


def test_missing_nearest_channel_is_an_error():
    with pytest.raises(ValueError, match="nearest"):
        boundary_from_affinities(np.zeros((2, 4, 4, 4)), [(-1, 0, 0), (0, -1, 0)])


def test_watershed_and_merge_tree_separate_the_bodies():
    gt = two_bodies()
    aff, _ = affinities_from_labels(gt, OFFSETS)
    b = boundary_from_affinities(aff, OFFSETS)
    sv = watershed_supervoxels(b, threshold=0.5, sigma=0.0)
    assert sv.min() >= 1  # every voxel labelled
    tree = merge_tree(sv, b)
    curve = sweep_thresholds(tree, sv, gt, [0.0, 0.5, 1.0])
    assert curve[1, 0] == pytest.approx(0, abs=1e-9) and curve[1, 1] == pytest.approx(0, abs=1e-9)
    assert curve[2, 1] > 0.5  # everything merged at 1
    seg = segmentation_at(tree, sv, 0.5)
    assert len(np.unique(seg[gt == 1])) == 1 and len(np.unique(seg[gt == 2])) == 1


def test_mutex_watershed_separates_the_bodies():
    try:
        import mwatershed  # noqa: F401
    except ImportError:
        missing("mwatershed is not installed (napari-connectome[segment])")
    gt = two_bodies()
    aff, _ = affinities_from_labels(gt, OFFSETS)
    seg = mutex_supervoxels(aff, OFFSETS, bias_long=0.5)
    assert seg.min() >= 1
    assert len(np.unique(seg[gt == 1])) == 1 and len(np.unique(seg[gt == 2])) == 1
    assert seg[0, 0, 0] != seg[0, 0, -1]
    assert np.array_equal(PostProcess("mutex").supervoxels(aff, OFFSETS), seg)


def test_watershed_of_all_membrane_is_one_supervoxel():
    """No voxel inside a cell (an untrained network's output): one supervoxel, not a crash."""
    from napari_connectome.segment.supervoxels import watershed_supervoxels

    labels = watershed_supervoxels(np.ones((6, 8, 8), np.float32), threshold=0.5)
    assert labels.dtype == np.uint32 and labels.shape == (6, 8, 8) and set(np.unique(labels)) == {1}
