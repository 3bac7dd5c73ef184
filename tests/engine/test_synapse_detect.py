"""Detection: sites from a synapse prediction, neurons from the segmentation, duplicates and background."""

from __future__ import annotations

import numpy as np
import pytest

from napari_connectome.errors import InputError
from napari_connectome.synapses.detect import VECTOR_UNIT_NM, detect_synapses, find_sites

VS = (10.0, 10.0, 10.0)


def _segmentation():
    seg = np.zeros((40, 40, 40), dtype=np.uint32)
    seg[:, :, :20] = 1
    seg[:, :20, 20:] = 2
    seg[:, 20:, 20:] = 3
    return seg


def _ball(pred, centre_vox, radius_vox, pre_nm, prob=0.9):
    """A mask ball at ``centre_vox`` whose vectors all point to ``pre_nm``."""
    grid = np.indices(pred.shape[1:]).transpose(1, 2, 3, 0).astype(float)
    inside = np.linalg.norm(grid - np.asarray(centre_vox, float), axis=-1) <= radius_vox
    pred[0][inside] = prob
    for a in range(3):
        pred[1 + a][inside] = (pre_nm[a] - grid[..., a][inside] * VS[a]) / VECTOR_UNIT_NM


def test_one_site_gives_its_post_and_pre_points_and_neurons():
    pred = np.zeros((4, 40, 40, 40), dtype=np.float32)
    _ball(pred, (20, 10, 30), 4, (200.0, 100.0, 120.0))
    found = detect_synapses(pred, _segmentation(), voxel_size=VS)
    assert len(found) == 1
    assert np.allclose(found.table.post[0], (200.0, 100.0, 300.0), atol=1e-6)
    assert np.allclose(found.table.pre[0], (200.0, 100.0, 120.0), atol=1e-6)
    assert (found.table.pre_id[0], found.table.post_id[0]) == (1, 2)
    # Score: summed probability × voxel volume, in µm³.
    n_voxels = int((pred[0] > 0).sum())
    assert found.table.score[0] == pytest.approx(0.9 * n_voxels * 1000 / 1e9, rel=1e-5)


def test_partners_of_one_t_bar_share_a_synapse_and_touching_masks_split_at_the_membrane():
    pred = np.zeros((4, 40, 40, 40), dtype=np.float32)
    pre = (200.0, 200.0, 150.0)
    # Two partner masks that touch across the 2|3 boundary at y = 20.
    _ball(pred, (20, 16, 26), 4, pre)
    _ball(pred, (20, 23, 26), 4, pre)
    assert find_sites(pred, voxel_size=VS)[0].shape[0] == 1  # one piece without the segmentation
    found = detect_synapses(pred, _segmentation(), voxel_size=VS)
    assert sorted(found.table.post_id.tolist()) == [2, 3]
    assert found.table.pre_id.tolist() == [1, 1]
    assert np.unique(found.table.synapse_id).size == 1


def test_duplicates_background_self_and_outside_are_counted_not_kept():
    pred = np.zeros((4, 40, 40, 40), dtype=np.float32)
    _ball(pred, (10, 10, 30), 3, (100.0, 100.0, 100.0), prob=0.95)
    _ball(pred, (20, 10, 30), 3, (200.0, 100.0, 100.0), prob=0.7)  # 100 nm away: the same pair, a duplicate
    _ball(pred, (30, 30, 30), 3, (300.0, 300.0, 390.0))  # pre in neuron 3 as well: a self connection
    _ball(pred, (30, 10, 30), 3, (300.0, 100.0, 5000.0))  # pre outside the volume
    seg = _segmentation()
    seg[:, :, :5] = 0
    _ball(pred, (30, 30, 10), 3, (300.0, 300.0, 20.0))  # pre on background
    found = detect_synapses(pred, seg, voxel_size=VS)
    assert len(found) == 1 and found.table.score[0] > 0
    assert np.allclose(found.table.post[0], (100.0, 100.0, 300.0))
    assert (found.duplicates, found.self_connections, found.outside, found.on_background) == (1, 1, 1, 1)


def test_small_pieces_and_empty_predictions_give_no_sites():
    pred = np.zeros((4, 20, 20, 20), dtype=np.float32)
    pred[0, 5, 5, 5] = 0.99  # 1000 nm³: noise
    assert len(detect_synapses(pred, np.ones((20, 20, 20), np.uint32), voxel_size=VS)) == 0
    pred[0] = 0
    assert len(detect_synapses(pred, np.ones((20, 20, 20), np.uint32), voxel_size=VS)) == 0


@pytest.mark.parametrize("pred,kwargs,match", [
    (np.zeros((3, 4, 4, 4), np.float32), {}, "4 channels"),
    (np.zeros((4, 4, 4, 4), np.uint8), {}, "floating point"),
    (np.zeros((4, 4, 4, 4), np.float32), {"threshold": 1.5}, "threshold"),
    (np.zeros((4, 4, 4, 4), np.float32), {"dedup_nm": -1.0}, "de-duplication"),
])
def test_bad_input_is_one_line(pred, kwargs, match):
    with pytest.raises(InputError, match=match):
        detect_synapses(pred, np.ones((4, 4, 4), np.uint32), voxel_size=VS, source="P.zarr", **kwargs)


def test_a_segmentation_of_another_shape_is_refused():
    with pytest.raises(InputError, match="shape"):
        detect_synapses(np.zeros((4, 4, 4, 4), np.float32), np.ones((4, 4, 5), np.uint32), voxel_size=VS)


@pytest.mark.parametrize("block", [(40, 40, 40), (16, 24, 13), (7, 40, 9)])
def test_blockwise_sites_are_the_whole_volume_sites(block):
    from napari_connectome.synapses.detect import find_sites_blockwise

    rng = np.random.default_rng(3)
    pred = np.zeros((4, 40, 40, 40), dtype=np.float32)
    for _ in range(12):
        centre = rng.integers(3, 37, 3)
        _ball(pred, centre, rng.uniform(1.5, 3.5), rng.uniform(0, 400, 3), prob=rng.uniform(0.6, 1.0))
    seg = _segmentation()
    whole = find_sites(pred, voxel_size=VS, offset=(5.0, 0.0, -20.0), segmentation=seg, min_volume_nm3=1e4)
    order = np.lexsort((whole[0][:, 2], whole[0][:, 1], whole[0][:, 0]))
    parts = find_sites_blockwise(pred, voxel_size=VS, offset=(5.0, 0.0, -20.0), segmentation=seg,
                                 block_voxels=block, halo_nm=100.0, min_volume_nm3=1e4, scheduler="synchronous")
    assert len(parts[0]) == len(whole[0]) >= 10
    for a, b in zip(parts, whole, strict=True):
        np.testing.assert_allclose(a, b[order], rtol=1e-9, atol=1e-9)


def test_a_pre_point_short_of_its_neuron_is_read_along_the_ray():
    """The predicted pre point falls back in the post neuron: the ray finds the neuron behind the membrane."""
    from napari_connectome.synapses.detect import PRE_DEPTH_NM

    seg = _segmentation()  # neuron 1 at x < 20, neuron 2 at x ≥ 20 (y < 20)
    pred = np.zeros((4, 40, 40, 40), dtype=np.float32)
    # post site in neuron 1 at x = 14; the true pre would be at x = 23, the prediction says x = 18 (neuron 1)
    _ball(pred, (10, 10, 14), 3.5, (100.0, 100.0, 180.0))
    plain = detect_synapses(pred, seg, voxel_size=VS)
    assert len(plain) == 0 and plain.self_connections == 1
    cast = detect_synapses(pred, seg, voxel_size=VS, pre_reach_nm=40.0)
    assert len(cast) == 1
    t = cast.table
    assert (int(t.pre_id[0]), int(t.post_id[0])) == (2, 1)
    # moved onto the ray (same y, z), PRE_DEPTH_NM into neuron 2 whose first voxel centre is at x = 200 nm
    np.testing.assert_allclose(t.pre[0][:2], [100.0, 100.0], atol=1e-6)
    assert 200.0 <= t.pre[0][2] <= 200.0 + PRE_DEPTH_NM + 1e-6
    # too short a reach: the ray stops before the membrane, the prediction stays as it was
    assert len(detect_synapses(pred, seg, voxel_size=VS, pre_reach_nm=5.0)) == 0


def test_cast_pre_leaves_rays_that_meet_nothing_and_checks_its_numbers():
    from napari_connectome.synapses.detect import cast_pre

    seg = _segmentation()
    shape = np.asarray(seg.shape)

    def neurons(p):
        return seg[tuple(np.clip(np.floor(p / 10.0 + 0.5).astype(int), 0, shape - 1).T)].astype(np.uint64)

    def inside(p):
        idx = np.floor(p / 10.0 + 0.5).astype(int)
        return np.all((idx >= 0) & (idx < shape), axis=1)

    post = np.array([[100.0, 100.0, 50.0], [100.0, 100.0, 50.0]])
    pre = np.array([[100.0, 100.0, 100.0], [100.0, 100.0, 50.0]])  # inside neuron 1; the second has no ray
    np.testing.assert_array_equal(cast_pre(post, pre, neurons=neurons, inside=inside, reach_nm=30.0), pre)
    with pytest.raises(InputError, match="reach"):
        cast_pre(post, pre, neurons=neurons, inside=inside, reach_nm=-1.0)
