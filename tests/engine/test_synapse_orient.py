"""Orientation: a detected row whose pre end is the brighter one is turned round."""

from __future__ import annotations

import numpy as np
import pytest

from napari_connectome.errors import InputError
from napari_connectome.synapses.detect import VECTOR_UNIT_NM, detect_synapses
from napari_connectome.synapses.orient import array_reader, reversed_rows, smoothing_voxels

VS = (10.0, 10.0, 10.0)


def _scene(dark_in: int):
    """Two neurons (x < 20: 1, x ≥ 20: 2) of cytoplasm grey 170, with a dark density in neuron ``dark_in``."""
    seg = np.where(np.arange(40)[None, None, :] < 20, 1, 2).astype(np.uint32) * np.ones((40, 40, 1), np.uint32)
    raw = np.full(seg.shape, 170.0, dtype=np.float32)
    raw[:, :, 19:21] = 40.0  # the membrane between them, dark on both sides
    x = slice(15, 19) if dark_in == 1 else slice(21, 25)
    raw[17:23, 17:23, x] = 30.0  # a T-bar: thick, darker than the membrane after smoothing
    rng = np.random.default_rng(0)
    return raw + rng.normal(0, 8, raw.shape).astype(np.float32), seg


def test_smoothing_covers_about_30_nm_in_odd_voxels():
    assert smoothing_voxels((10, 10, 10)) == (3, 3, 3)
    assert smoothing_voxels((40, 8, 8)) == (1, 3, 3)
    assert smoothing_voxels((4, 4, 4)) == (7, 7, 7)


@pytest.mark.parametrize("dark_in", [1, 2])
def test_the_row_whose_pre_end_is_brighter_is_reversed(dark_in):
    raw, seg = _scene(dark_in)
    a, b = np.array([[200.0, 200.0, 160.0]]), np.array([[200.0, 200.0, 230.0]])  # a in neuron 1, b in neuron 2
    kw = {"read": array_reader(raw, seg), "shape": seg.shape, "voxel_size": VS, "radius_nm": 60.0}
    one_to_two = reversed_rows(a, b, np.array([1]), np.array([2]), **kw)
    two_to_one = reversed_rows(b, a, np.array([2]), np.array([1]), **kw)
    assert one_to_two.tolist() == [dark_in == 2]
    assert two_to_one.tolist() == [dark_in == 1]
    # Contrast and brightness do not matter: only the order of two grey levels counts.
    kw["read"] = array_reader(255.0 - 0.5 * (255.0 - raw), seg)
    assert reversed_rows(a, b, np.array([1]), np.array([2]), **kw).tolist() == [dark_in == 2]


def test_a_ball_without_its_neuron_leaves_the_row_alone_and_bad_radii_are_refused():
    raw, seg = _scene(2)
    a, b = np.array([[200.0, 200.0, 160.0]]), np.array([[200.0, 200.0, 230.0]])
    kw = {"read": array_reader(raw, seg), "shape": seg.shape, "voxel_size": VS}
    # neuron 7 is nowhere: nothing to compare, the row stays
    assert reversed_rows(a, b, np.array([7]), np.array([2]), radius_nm=60.0, **kw).tolist() == [False]
    for radius in (0.0, -5.0, float("nan"), float("inf")):
        with pytest.raises(InputError, match="radius"):
            reversed_rows(a, b, np.array([1]), np.array([2]), radius_nm=radius, **kw)
    with pytest.raises(InputError, match="share one grid"):
        array_reader(raw, seg[:-1])


def test_detection_turns_a_reversed_site_round_and_merges_it_with_the_right_one():
    """The network fires at the T-bar (in neuron 1) as well as at the PSD (in neuron 2): with orientation the
    reversed row becomes the right one and the two are one connection."""
    raw, seg = _scene(1)  # the T-bar is in neuron 1: 1 → 2 is right
    pred = np.zeros((4, *seg.shape), dtype=np.float32)
    grid = np.indices(seg.shape).transpose(1, 2, 3, 0).astype(float)

    def ball(centre, target_nm, prob):
        inside = np.linalg.norm(grid - np.asarray(centre, float), axis=-1) <= 3
        pred[0][inside] = prob
        for ax in range(3):
            pred[1 + ax][inside] = (target_nm[ax] - grid[..., ax][inside] * VS[ax]) / VECTOR_UNIT_NM

    ball((20, 20, 23), (200.0, 200.0, 165.0), 0.8)  # the PSD in neuron 2, pointing into neuron 1: right
    ball((20, 20, 16), (200.0, 200.0, 235.0), 0.9)  # the T-bar in neuron 1, pointing into neuron 2: reversed
    plain = detect_synapses(pred, seg, voxel_size=VS)
    assert sorted(zip(plain.table.pre_id.tolist(), plain.table.post_id.tolist(), strict=True)) == [(1, 2), (2, 1)]
    oriented = detect_synapses(pred, seg, voxel_size=VS, raw=raw, orient_radius_nm=60.0)
    assert list(zip(oriented.table.pre_id.tolist(), oriented.table.post_id.tolist(), strict=True)) == [(1, 2)]
    assert oriented.reversed == 1 and oriented.duplicates == 1
    # the kept row is the better-scored one, turned round: its pre point lies in neuron 1
    assert oriented.table.pre[0][2] < 200.0 < oriented.table.post[0][2]
    with pytest.raises(InputError, match="raw volume"):
        detect_synapses(pred, seg, voxel_size=VS, orient_radius_nm=60.0)
