"""Detection settings chosen on held-out data: the threshold and pre ray with the best partner F."""

from __future__ import annotations

import numpy as np
import pytest

from napari_connectome.synapses import SynapseTable
from napari_connectome.synapses.detect import VECTOR_UNIT_NM
from napari_connectome.synapses.select import choose_detection, threshold_curve

VS = (10.0, 10.0, 10.0)


def _ball(pred, centre, radius, pre_nm, prob):
    grid = np.indices(pred.shape[1:]).transpose(1, 2, 3, 0).astype(float)
    inside = np.linalg.norm(grid - np.asarray(centre, float), axis=-1) <= radius
    pred[0][inside] = prob
    for a in range(3):
        pred[1 + a][inside] = (pre_nm[a] - grid[..., a][inside] * VS[a]) / VECTOR_UNIT_NM


def test_the_threshold_that_drops_the_false_sites_and_keeps_the_true_ones_wins():
    seg = np.zeros((20, 80, 40), np.uint32)
    seg[:, :, :20], seg[:, :, 20:] = 1, 2
    pred = np.zeros((4, 20, 80, 40), np.float32)
    # Two true sites at probability 0.9, a false one at 0.65 between them, 300 nm apart (beyond de-duplication).
    for y, prob in ((10, 0.9), (40, 0.65), (70, 0.9)):
        _ball(pred, (10, y, 28), 4, (100.0, y * 10.0, 120.0), prob)
    truth = SynapseTable(synapse_id=[1, 2], pre=[(100, 100, 120), (100, 700, 120)],
                         post=[(100, 100, 280), (100, 700, 280)], pre_id=[1, 1], post_id=[2, 2], score=[1, 1])
    curve = threshold_curve(pred, seg, truth, voxel_size=VS, thresholds=(0.5, 0.7, 0.95))
    assert [r["detected"] for r in curve] == [3, 2, 0]
    assert [r["sites"]["f_score"] for r in curve] == [0.8, 1.0, 0.0]
    assert choose_detection([curve])["threshold"] == 0.7


def test_the_pre_ray_is_chosen_when_it_gives_the_partners_right():
    """The predicted pre points stop short, in the post neuron: only a ray reaching past the membrane connects."""
    seg = np.zeros((20, 80, 40), np.uint32)
    seg[:, :, :20], seg[:, :, 20:] = 1, 2
    pred = np.zeros((4, 20, 80, 40), np.float32)
    for y in (10, 70):
        _ball(pred, (10, y, 28), 4, (100.0, y * 10.0, 210.0), 0.9)  # 210 nm: still neuron 2 (x ≥ 20 voxels)
    truth = SynapseTable(synapse_id=[1, 2], pre=[(100, 100, 170), (100, 700, 170)],
                         post=[(100, 100, 280), (100, 700, 280)], pre_id=[1, 1], post_id=[2, 2], score=[1, 1])
    curves = [threshold_curve(pred, seg, truth, voxel_size=VS, thresholds=(0.5,), pre_reach_nm=reach)
              for reach in (None, 60.0)]
    assert [c[0]["partners"]["f_score"] for c in curves] == [0.0, 1.0]
    best = choose_detection(curves)
    assert (best["threshold"], best["pre_reach_nm"]) == (0.5, 60.0)


def test_curves_of_several_volumes_pool_their_counts():
    from napari_connectome.synapses.select import pool_curves

    def row(t, tp, fp, fn):
        return {"threshold": t, "pre_reach_nm": None, "min_volume_nm3": 1e5, "detected": tp + fp,
                "sites": {"tp": tp, "fp": fp, "fn": fn}, "partners": {"tp": tp, "fp": fp, "fn": fn}}

    a = [[row(0.5, 3, 1, 0), row(0.9, 1, 0, 2)]]
    b = [[row(0.5, 1, 3, 0), row(0.9, 1, 0, 0)]]
    (curve,) = pool_curves([a, b])
    assert [r["detected"] for r in curve] == [8, 2]
    assert curve[0]["sites"]["precision"] == 0.5 and curve[0]["sites"]["recall"] == 1.0
    assert curve[1]["sites"]["f_score"] == pytest.approx(2 * 1.0 * 0.5 / 1.5)


def test_orientation_is_chosen_when_it_turns_reversed_rows_right_and_not_when_it_changes_nothing():
    seg = np.zeros((20, 80, 40), np.uint32)
    seg[:, :, :20], seg[:, :, 20:] = 1, 2
    raw = np.full(seg.shape, 170.0, np.float32)
    pred = np.zeros((4, 20, 80, 40), np.float32)
    for y in (10, 70):
        raw[7:13, y - 3:y + 4, 15:19] = 30.0  # the T-bars are in neuron 1: 1 → 2 is right
        _ball(pred, (10, y, 16), 3, (100.0, y * 10.0, 250.0), 0.9)  # the network fired at the T-bar
    truth = SynapseTable(synapse_id=[1, 2], pre=[(100, 100, 170), (100, 700, 170)],
                         post=[(100, 100, 230), (100, 700, 230)], pre_id=[1, 1], post_id=[2, 2], score=[1, 1])
    curves = [threshold_curve(pred, seg, truth, voxel_size=VS, thresholds=(0.5,), raw=raw, orient_radius_nm=r)
              for r in (None, 50.0, 80.0)]
    assert [c[0]["partners"]["f_score"] for c in curves] == [0.0, 1.0, 1.0]
    assert choose_detection(curves)["orient_radius_nm"] == 50.0  # the smaller of two equal radii
    # Rows already right: orientation changes nothing, and "off" wins the tie.
    pred[1:] *= 0
    for y in (10, 70):
        _ball(pred, (10, y, 24), 3, (100.0, y * 10.0, 160.0), 0.9)
    pred[0][:, :, 14:20] = 0
    curves = [threshold_curve(pred, seg, truth, voxel_size=VS, thresholds=(0.5,), raw=raw, orient_radius_nm=r)
              for r in (None, 50.0)]
    assert [c[0]["partners"]["f_score"] for c in curves] == [1.0, 1.0]
    assert choose_detection(curves)["orient_radius_nm"] is None
