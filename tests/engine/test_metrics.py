"""Metrics agree with scikit-image and reproduce the README's gala-fib figures."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.metrics import adapted_rand_error as sk_arand
from skimage.metrics import variation_of_information as sk_vi

from napari_connectome.errors import InputError
from napari_connectome.metrics import (
    adapted_rand_error,
    contingency_table,
    evaluate,
    evaluate_table,
    variation_of_information,
)
from napari_connectome.volume import from_array


def skimage_figures(seg, gt):
    split, merge = sk_vi(gt, seg, ignore_labels=[0])  # [H(seg|gt), H(gt|seg)] in bits
    return split, merge, sk_arand(gt, seg, ignore_labels=[0])[0]


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**20), n_gt=st.integers(1, 12), n_seg=st.integers(1, 12),
       shape=st.tuples(st.integers(1, 9), st.integers(1, 9), st.integers(1, 9)))
def test_agrees_with_skimage_on_random_labels(seed, n_gt, n_seg, shape):
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, n_gt + 1, shape)
    seg = rng.integers(0, n_seg + 1, shape)
    gt.flat[0] = 1  # at least one counted voxel
    split, merge, arand = skimage_figures(seg, gt)
    ours = evaluate(seg, gt)
    assert ours["vi_split"] == pytest.approx(split, abs=1e-6)
    assert ours["vi_merge"] == pytest.approx(merge, abs=1e-6)
    if np.isnan(arand):
        # skimage divides 0 by 0 when no two counted voxels share a label in
        # either volume; then no pair can disagree and ours says 0.
        counted = gt != 0
        assert np.unique(gt[counted]).size == counted.sum() == np.unique(seg[counted]).size
        assert ours["arand"] == 0.0
    else:
        assert ours["arand"] == pytest.approx(arand, abs=1e-6)
        assert adapted_rand_error(seg, gt) == pytest.approx(arand, abs=1e-6)
    assert variation_of_information(seg, gt) == pytest.approx((split, merge), abs=1e-6)


def test_agrees_with_skimage_on_correlated_labels():
    # Realistic: seg is gt with some bodies split and some merged, and big ids.
    rng = np.random.default_rng(7)
    gt = rng.integers(0, 40, (20, 30, 30)).astype(np.int64)
    seg = gt.copy() * 1_000_003 + 2**40
    seg[rng.random(gt.shape) < 0.2] += 1
    seg[np.isin(gt, [3, 4, 5])] = 7
    # skimage builds a table as wide as the largest id: give it the same partition, compact.
    compact = np.unique(seg, return_inverse=True)[1].reshape(seg.shape)
    split, merge, arand = skimage_figures(compact, gt)
    ours = evaluate(seg, gt)
    assert ours["vi_split"] == pytest.approx(split, abs=1e-6)
    assert ours["vi_merge"] == pytest.approx(merge, abs=1e-6)
    assert ours["arand"] == pytest.approx(arand, abs=1e-6)


def test_perfect_and_trivial_cases():
    gt = np.repeat(np.arange(1, 5), 10).reshape(4, 10)
    result = evaluate(gt + 100, gt)
    assert result["vi_split"] == 0 and result["vi_merge"] == 0 and result["arand"] == pytest.approx(0)
    assert result["split_bodies"] == [] and result["merged_segments"] == []
    one = evaluate(np.zeros_like(gt), gt)
    assert one["vi_split"] == 0 and one["vi_merge"] == pytest.approx(2.0)  # 4 equal bodies: 2 bits
    assert one["merged_segments"][0]["gt_bodies"] == 4


def test_per_object_lists_add_up():
    rng = np.random.default_rng(3)
    gt = rng.integers(0, 8, (10, 10, 10))
    seg = rng.integers(1, 6, (10, 10, 10))
    result = evaluate(seg, gt, max_objects=None)
    assert sum(b["vi_split"] for b in result["split_bodies"]) == pytest.approx(result["vi_split"])
    assert sum(s["vi_merge"] for s in result["merged_segments"]) == pytest.approx(result["vi_merge"])
    contributions = [b["vi_split"] for b in result["split_bodies"]]
    assert contributions == sorted(contributions, reverse=True)
    assert all(b["segments"] > 1 for b in result["split_bodies"])
    assert result["voxels"] == int((gt != 0).sum())
    # One gt body alone: its split share is its entropy over segments, weighted by its size.
    body = result["split_bodies"][0]
    mask = gt == body["gt_id"]
    _, counts = np.unique(seg[mask], return_counts=True)
    p = counts / counts.sum()
    assert body["vi_split"] == pytest.approx(mask.sum() / result["voxels"] * -(p * np.log2(p)).sum())


def test_lazy_blockwise_equals_in_memory():
    rng = np.random.default_rng(4)
    gt = rng.integers(0, 6, (9, 13, 11)).astype(np.uint32)
    seg = rng.integers(0, 9, (9, 13, 11)).astype(np.uint64)
    whole = contingency_table(seg, gt)
    lazy = contingency_table(from_array(seg, kind="labels"), from_array(gt, kind="labels"), block_shape=(2, 5, 3))
    np.testing.assert_array_equal(whole.gt, lazy.gt)
    np.testing.assert_array_equal(whole.seg, lazy.seg)
    np.testing.assert_array_equal(whole.count, lazy.count)


def test_remap_equals_relabelled_volume():
    rng = np.random.default_rng(5)
    gt = rng.integers(0, 6, (8, 8, 8))
    sv = rng.integers(1, 30, (8, 8, 8))
    ids = np.arange(1, 30)
    seg_of = rng.integers(1, 5, ids.size)
    table = contingency_table(sv, gt).remap(ids, seg_of)
    direct = evaluate(seg_of[sv - 1], gt)
    got = evaluate_table(table)
    for key in ("vi_split", "vi_merge", "arand"):
        assert got[key] == pytest.approx(direct[key], abs=1e-12)


def test_bad_inputs_are_one_line_errors():
    with pytest.raises(InputError, match=r"shape \(2, 3\) does not match the ground truth's \(3, 2\)"):
        evaluate(np.zeros((2, 3), int), np.zeros((3, 2), int))
    with pytest.raises(InputError, match="no voxel is labelled"):
        evaluate(np.ones((2, 2), int), np.zeros((2, 2), int))
    with pytest.raises(InputError, match="integers"):
        evaluate(np.ones((2, 2), float), np.ones((2, 2), int))


def test_gala_fib_reference_figures(shared_data):
    d = shared_data / "gala-fib"
    ws = h5py.File(d / "test-ws.lzf.h5")["stack"][...]
    gt = h5py.File(d / "test-gt.lzf.h5")["stack"][...]
    result = evaluate(ws, gt)
    # ../shared/data/README.md: ws vs gt on test, skimage, log2, gt > 0.
    assert round(result["vi_split"], 3) == 1.648
    assert round(result["vi_merge"], 3) == 0.185
    assert round(result["arand"], 3) == 0.366
    split, merge, arand = skimage_figures(ws, gt)
    assert result["vi_split"] == pytest.approx(split, abs=1e-6)
    assert result["vi_merge"] == pytest.approx(merge, abs=1e-6)
    assert result["arand"] == pytest.approx(arand, abs=1e-6)
    lazy = evaluate(from_array(ws, kind="labels"), from_array(gt, kind="labels"))
    assert lazy["vi_split"] == pytest.approx(result["vi_split"], abs=1e-12)


@pytest.mark.parametrize("dtypes", [(np.uint32, np.uint64), (np.int64, np.int32), (np.uint64, np.uint64)])
def test_pairs_by_runs_equal_the_pairs_of_every_voxel(dtypes):
    """The run-length fast path (labels below 2³²) and the general path count the same pairs, same order."""
    from napari_connectome import metrics

    rng = np.random.default_rng(1)
    gt = np.repeat(rng.integers(0, 7, 400), rng.integers(1, 30, 400))[:3000].astype(dtypes[0])
    seg = np.repeat(rng.integers(1, 9, 500), rng.integers(1, 20, 500))[:3000].astype(dtypes[1])
    fast = metrics._pairs(gt, seg, (0,))
    # labels past 2³² take the general path (every voxel, compacted labels): the same pairs, counts and order
    off = np.uint64(1 << 40)
    general = metrics._pairs(gt.astype(np.uint64) + off, seg.astype(np.uint64) + off, (int(off),))
    np.testing.assert_array_equal(general[0] - off, fast[0].astype(np.uint64))
    np.testing.assert_array_equal(general[1] - off, fast[1].astype(np.uint64))
    np.testing.assert_array_equal(general[2], fast[2])
    assert fast[2].sum() == np.count_nonzero(gt)
    assert fast[0].dtype == gt.dtype and fast[1].dtype == seg.dtype and fast[2].dtype == np.int64
