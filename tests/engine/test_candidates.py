"""Candidate errors: found where the errors are, answered right from ground truth, recall measured."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_connectome.candidates import (
    MERGE_FEATURES,
    SPLIT_FEATURES,
    Candidate,
    candidate_recall,
    feature_matrix,
    find_candidates,
    graph_fixable,
    label_candidates,
    simple_score,
    true_errors,
)
from napari_connectome.errors import InputError
from napari_connectome.proofread import Proofreader
from napari_connectome.proofread.demo import make_demo_project

VOXEL = (20.0, 10.0, 10.0)


def _volumes(sv: np.ndarray, gt: np.ndarray, boundary: np.ndarray) -> dict:
    raw = np.clip(255 * (1 - boundary), 0, 255).astype(np.uint8)
    return {"raw": raw, "supervoxels": sv.astype(np.uint32), "boundaries": boundary.astype(np.float32),
            "groundtruth": gt.astype(np.uint32)}


@pytest.fixture
def four(tmp_path):
    """Two bodies (x < 16, x ≥ 16), four supervoxels of 8 columns each.

    The membrane between supervoxels 1 and 2 (same body) is strong and the
    one between 2 and 3 (different bodies) weak, so agglomeration at 0.5
    leaves {1} apart (a false split) and fuses {2, 3, 4} (a false merge whose
    last merge is 2 | 3 4).
    """
    shape = (4, 16, 32)
    x = np.broadcast_to(np.arange(shape[2]), shape)
    sv = x // 8 + 1
    gt = np.where(x < 16, 1, 2)
    b = np.full(shape, 0.1, np.float32)
    b[..., 7:9] = 0.8
    b[..., 15:17] = 0.2
    project = make_demo_project(tmp_path / "four", volumes=_volumes(sv, gt, b), voxel_size=VOXEL, threshold=0.5)
    pr = Proofreader.open(project, user="test")
    yield pr, sv, gt
    pr.close()


def _arrays(pr):
    seg = np.asarray(pr.labels_volume().levels[0].array[:, :, :])
    svs = np.asarray(pr.supervoxel_volume().levels[0].array[:, :, :])
    return seg, svs


def test_hand_project_candidates_are_the_errors(four):
    pr, sv, gt = four
    assert pr.segment_of(2) == pr.segment_of(3) == pr.segment_of(4) != pr.segment_of(1)
    cands = find_candidates(pr)
    splits = [c for c in cands if c.kind == "false_split"]
    merges = [c for c in cands if c.kind == "false_merge"]
    assert len(splits) == 1 and len(merges) == 2  # 2 weakest links of {2, 3, 4}
    fs = splits[0]
    assert set(fs.segments) == {pr.segment_of(1), pr.segment_of(2)}
    assert sorted(fs.supervoxels) == [1, 2]
    assert fs.features["contact_area"] == 4 * 16
    assert fs.features["boundary_mean"] == pytest.approx(0.8, abs=1e-6)
    assert fs.features["size_ratio"] == pytest.approx(512 / 1536)
    # The contact is the plane between x = 7 and x = 8: its location is a voxel at x = 7 of supervoxel 1.
    assert fs.location_nm[2] == pytest.approx(7 * VOXEL[2])
    assert pr.supervoxel_at(fs.location_nm) == 1
    fm = merges[0]
    assert fm.id.endswith("-0") and fm.features["merge_rank"] == 0
    # The weakest link is the last merge 2 | 3 4, and the cut is between 2 and 3.
    assert {frozenset(fm.supervoxels), frozenset(fm.sinks)} == {frozenset({2}), frozenset({3, 4})}
    assert fm.features["merge_score"] == pytest.approx(0.2, abs=1e-6)
    assert fm.features["cut_area"] == 4 * 16
    assert pr.supervoxel_at(fm.location_nm) in (2, 3)
    assert fm.location_nm[2] == pytest.approx(15 * VOXEL[2])
    assert fm.impact == 512 and fm.impact_unit == "voxels"
    # Ground truth: the cut separates bodies 1 and 2; merging {1} with {2,3,4} (majority body 2) is wrong.
    labels = label_candidates(cands, pr, gt)
    assert labels[:2].tolist() == [False, True]
    # The second weakest link (3 | 4) cuts where supervoxel 2 stays with 3.
    assert {frozenset(merges[1].supervoxels), frozenset(merges[1].sinks)} == {frozenset({2, 3}), frozenset({4})}
    seg, svs = _arrays(pr)
    errors = true_errors(seg, gt, min_voxels=100, supervoxels=svs)
    assert sorted((e.kind, e.segments, e.bodies) for e in errors) == [
        ("merge", (pr.segment_of(2),), (1, 2)),
        ("split", (pr.segment_of(1), pr.segment_of(2)), (1,)),
    ]
    rec = candidate_recall(cands, errors)
    assert rec["merge_recall"] == 1.0 and rec["split_recall"] == 1.0 and rec["uncovered"] == []

    # Apply the proposed split: the remaining error is the false split, now answered True.
    pr.split(pr.preview_split_supervoxels(fm.supervoxels, fm.sinks))
    cands = find_candidates(pr)
    labels = label_candidates(cands, pr, gt)
    by_pair = {frozenset(c.supervoxels): bool(ok) for c, ok in zip(cands, labels, strict=True)
               if c.kind == "false_split"}
    assert by_pair == {frozenset({1, 2}): True, frozenset({2, 3}): False}
    seg, svs = _arrays(pr)
    errors = true_errors(seg, gt, min_voxels=100, supervoxels=svs)
    assert [(e.kind, e.bodies) for e in errors] == [("split", (1,))]


def test_feature_names_equal_within_kind(tmp_path):
    project = make_demo_project(tmp_path / "demo", shape=(8, 32, 32), n_bodies=5, n_supervoxels=60, threshold=0.5)
    with Proofreader.open(project, user="test") as pr:
        cands = find_candidates(pr)
        assert {c.kind for c in cands} == {"false_split", "false_merge"}
        for c in cands:
            names = SPLIT_FEATURES if c.kind == "false_split" else MERGE_FEATURES
            assert tuple(c.features) == names, c.id
            assert pr.segment_at(c.location_nm) in c.segments, c.id
            if c.kind == "false_merge":
                # The two sides partition the segment.
                members = set(pr.segment_supervoxels(c.segments[0]).tolist())
                assert set(c.supervoxels) | set(c.sinks) == members
                assert not set(c.supervoxels) & set(c.sinks)
            else:
                assert [pr.segment_of(s) for s in c.supervoxels] == list(c.segments)
        assert len({c.id for c in cands}) == len(cands)
        # Without a boundary-based graph contact, skeleton features are NaN, never missing.
        assert all(math.isnan(c.features["endpoint_distance_nm"]) for c in cands if c.kind == "false_split")
        gt = np.asarray(project.open_input("groundtruth").levels[0].array[:, :, :])
        with pytest.raises(InputError, match="shape"):
            label_candidates(cands, pr, gt[:-1])


def test_true_errors_hand_cases():
    seg = np.zeros((1, 4, 10), np.uint32)
    gt = np.zeros_like(seg)
    # Segment 1 covers body 1 (10 voxels) and body 2 (10): a merge error.
    seg[0, 0:2, :] = 1
    gt[0, 0, :] = 1
    gt[0, 1, :] = 2
    # Body 3 is split into segments 2 (10) and 3 (6) and 4 (4).
    seg[0, 2, :] = 2
    seg[0, 3, :6] = 3
    seg[0, 3, 6:] = 4
    gt[0, 2:, :] = 3
    errs = true_errors(seg, gt, min_voxels=5)
    assert [(e.kind, e.segments, e.bodies) for e in errs] == [("merge", (1,), (1, 2)), ("split", (2, 3), (3,))]
    assert errs[1].all_segments == (2, 3, 4)
    assert errs[0].overlap == {(1, 1): 10, (1, 2): 10}
    # With min_voxels above the smaller pieces nothing counts.
    assert true_errors(seg, gt, min_voxels=11) == []
    # gt 0 is ignored: unlabelled voxels never make a body.
    gt2 = gt.copy()
    gt2[0, 1, :] = 0
    assert [(e.kind, e.bodies) for e in true_errors(seg, gt2, min_voxels=5)] == [("split", (3,))]
    with pytest.raises(InputError, match="shape"):
        true_errors(seg, gt[:, :2])


def _fs(a, b):
    return Candidate(id=f"fs-{a}-{b}", kind="false_split", location_nm=(0, 0, 0), segments=(a, b), supervoxels=(a, b))


def test_candidate_recall_hand_cases():
    seg = np.zeros((1, 4, 10), np.uint32)
    gt = np.zeros_like(seg)
    sv = np.zeros_like(seg)
    # Segment 1 = supervoxels 11 (body 1) and 12 (body 2); segment 5 = supervoxel 51 holding bodies 1 and 3 inside.
    seg[0, 0:2, :] = 1
    sv[0, 0, :] = 11
    sv[0, 1, :] = 12
    gt[0, 0, :] = 1
    gt[0, 1, :] = 2
    # Body 3 split into segments 2, 3 and a small piece 4 between them.
    seg[0, 2, :] = 2
    seg[0, 3, :6] = 3
    seg[0, 3, 6:] = 4
    gt[0, 2:, :] = 3
    sv[0, 2:, :] = seg[0, 2:, :] * 10 + 1
    errors = true_errors(seg, gt, min_voxels=4, supervoxels=sv)
    kinds = sorted(e.kind for e in errors)
    assert kinds == ["merge", "split"]
    good_cut = Candidate(id="fm-1-0", kind="false_merge", location_nm=(0, 0, 0), segments=(1,),
                         supervoxels=(11,), sinks=(12,))
    bad_cut = Candidate(id="fm-1-1", kind="false_merge", location_nm=(0, 0, 0), segments=(1,),
                        supervoxels=(11, 12), sinks=())
    # Segments 2 and 3 are connected through the small piece 4.
    rec = candidate_recall([_fs(2, 4), _fs(3, 4), good_cut], errors)
    assert (rec["merge_recall"], rec["split_recall"], rec["recall"]) == (1.0, 1.0, 1.0)
    rec = candidate_recall([_fs(2, 4), bad_cut], errors)
    assert (rec["merge_covered"], rec["split_covered"]) == (0, 0)
    assert len(rec["uncovered"]) == 2
    rec = candidate_recall([], errors, labels=np.zeros(0, bool), scores=np.zeros(0))
    assert rec["recall"] == 0.0 and math.isnan(rec["precision_at_k"])
    assert all(graph_fixable(e) for e in errors)
    # A body inside a supervoxel of another body cannot be cut out between supervoxels.
    sv2 = sv.copy()
    sv2[0, 1, :] = 11
    (merge,) = [e for e in true_errors(seg, gt, min_voxels=4, supervoxels=sv2) if e.kind == "merge"]
    assert not graph_fixable(merge)
    labels = np.array([True, False, False])
    scores = np.array([0.1, 0.9, 0.5])
    rec = candidate_recall([_fs(2, 4), _fs(3, 4), good_cut], errors, labels=labels, scores=scores, k=2)
    assert rec["precision_at_k"] == 0.0


def test_skeleton_endpoints_make_candidates_without_contact(tmp_path):
    from napari_connectome.skeleton.model import Skeleton

    # Two rods along x in one body, with a background gap of 2 voxels: no contact in the graph.
    shape = (4, 8, 40)
    sv = np.zeros(shape, np.uint32)
    sv[:, 2:6, 0:19] = 1
    sv[:, 2:6, 21:40] = 2
    gt = np.where(sv > 0, 1, 0)
    b = np.full(shape, 0.1, np.float32)
    project = make_demo_project(tmp_path / "rods", volumes=_volumes(sv, gt, b), voxel_size=VOXEL, threshold=0.5)
    with Proofreader.open(project, user="test") as pr:
        assert find_candidates(pr) == []

        def rod(sid, x0, x1):
            xs = np.arange(x0, x1, dtype=np.float32) * VOXEL[2]
            verts = np.stack([np.full_like(xs, 1.5 * VOXEL[0]), np.full_like(xs, 3.5 * VOXEL[1]), xs], axis=1)
            edges = np.stack([np.arange(xs.size - 1), np.arange(1, xs.size)], axis=1).astype(np.int32)
            return Skeleton(sid, verts, edges, np.full(xs.size, 20.0, np.float32))

        skeletons = {pr.segment_of(1): rod(pr.segment_of(1), 0, 19), pr.segment_of(2): rod(pr.segment_of(2), 21, 40)}
        (c,) = find_candidates(pr, skeletons=skeletons, max_endpoint_distance_nm=50.0)
        assert c.kind == "false_split" and c.source == "skeleton-endpoint"
        assert tuple(c.features) == SPLIT_FEATURES
        assert sorted(c.supervoxels) == [1, 2]
        assert c.features["endpoint_distance_nm"] == pytest.approx(3 * VOXEL[2])
        assert c.features["direction_cosine"] == pytest.approx(1.0, abs=1e-3)
        assert c.features["contact_area"] == 0
        assert c.impact == pytest.approx(18 * VOXEL[2]) and c.impact_unit == "nm"
        assert label_candidates([c], pr, gt).tolist() == [True]
        # Too far apart for the limit: nothing.
        assert find_candidates(pr, skeletons=skeletons, max_endpoint_distance_nm=20.0) == []


@pytest.mark.parametrize("threshold, min_recall", [(0.5, 0.9), (0.97, 0.9)])
def test_gala_recall(tmp_path, threshold, min_recall):
    """Acceptance: ≥ 90 % of gala-fib test's true errors are among the candidates, at two thresholds."""
    from napari_connectome.graph import agglomerate_project
    from napari_connectome.samples import gala_fib_project

    project = gala_fib_project(tmp_path / "gala")
    agglomerate_project(project, threshold=threshold)
    with Proofreader.open(project, user="test") as pr:
        gt = np.asarray(project.open_input("groundtruth").levels[0].array[:, :, :])
        seg, svs = _arrays(pr)
        errors = true_errors(seg, gt, min_voxels=1000, supervoxels=svs)
        cands = find_candidates(pr)
        labels = label_candidates(cands, pr, gt)
        scores = np.array([simple_score(c) for c in cands])
        rec = candidate_recall(cands, errors, labels=labels, scores=scores)
    assert rec["split_errors"] >= 5 and rec["merge_errors"] >= 1
    assert rec["recall"] >= min_recall
    assert rec["split_recall"] >= min_recall
    if rec["merge_errors_graph"]:
        assert rec["merge_recall_graph"] >= min_recall
    # The fixed score ranks better than chance.
    assert rec["precision_at_k"] > labels.mean()


def test_skeleton_anomalies_propose_their_cuts(tmp_path):
    from napari_connectome.skeleton.model import Skeleton

    # One segment of supervoxels along x (x < 20, 20–39, ≥ 40), and 4 (y ≥ 5, 35 ≤ x < 40) where a side
    # branch runs; its last merge is 1 | 2 3 4.
    shape = (4, 8, 64)
    x = np.broadcast_to(np.arange(shape[2]), shape)
    y = np.broadcast_to(np.arange(shape[1])[:, None], shape)
    sv = np.where(x < 20, 1, np.where(x < 40, 2, 3))
    sv[(y >= 5) & (x >= 35) & (x < 40)] = 4
    b = np.full(shape, 0.1, np.float32)
    b[..., 19:21] = 0.3
    project = make_demo_project(tmp_path / "neck", volumes=_volumes(sv, np.ones(shape), b), voxel_size=VOXEL,
                                threshold=0.5)
    with Proofreader.open(project, user="test") as pr:
        seg = pr.segment_of(1)
        assert pr.segment_of(3) == seg
        xs = np.arange(64, dtype=np.float32)
        main = np.stack([np.full(64, 1.5), np.full(64, 3.5), xs], axis=1) * np.array(VOXEL, np.float32)
        chain = np.stack([np.arange(63), np.arange(1, 64)], axis=1).astype(np.int32)
        radii = np.full(64, 40.0, np.float32)
        radii[40] = 5.0
        radii[62] = 4.0  # a tapering tip is no neck: less than 200 nm of skeleton beyond it
        neck = Skeleton(seg, main, chain, radii)
        cands = find_candidates(pr, skeletons={seg: neck}, weakest_links=1)
        tree = [c for c in cands if c.source == "merge-tree"]
        anomaly = [c for c in cands if c.source == "skeleton-anomaly"]
        assert len(tree) == 1 and {frozenset(tree[0].supervoxels), frozenset(tree[0].sinks)} == {
            frozenset({1}), frozenset({2, 3, 4})}
        assert len(anomaly) == 1
        (c,) = anomaly
        assert {frozenset(c.supervoxels), frozenset(c.sinks)} == {frozenset({1, 2, 4}), frozenset({3})}
        assert c.features["neck_radius_ratio"] == pytest.approx(5 / 40)
        assert math.isnan(c.features["branch_angle_deg"]) and math.isnan(tree[0].features["neck_radius_ratio"])
        assert tuple(c.features) == tuple(tree[0].features) == MERGE_FEATURES
        assert pr.supervoxel_at(c.location_nm) in (2, 3)

        # A side branch leaving x = 40 backwards at 45° into supervoxel 4: cut 4 off.
        k = np.arange(1, 4, dtype=np.float32)
        side = np.stack([np.full(3, 1.5), 3.5 + k, 40 - k], axis=1) * np.array(VOXEL, np.float32)
        verts = np.concatenate([main, side])
        edges = np.concatenate([chain, [[40, 64], [64, 65], [65, 66]]]).astype(np.int32)
        branched = Skeleton(seg, verts, edges, np.full(67, 40.0, np.float32))
        cands = find_candidates(pr, skeletons={seg: branched}, weakest_links=1)
        (c,) = [c for c in cands if c.source == "skeleton-anomaly"]
        assert {frozenset(c.supervoxels), frozenset(c.sinks)} == {frozenset({4}), frozenset({1, 2, 3})}
        assert c.features["branch_angle_deg"] == pytest.approx(45.0, abs=1.0)
        assert c.features["junction_degree"] == 3


def test_impact_is_written_with_its_unit():
    from napari_connectome.candidates import format_impact

    assert format_impact(19_400, "voxels") == "19.4k voxels"
    assert format_impact(512, "voxels") == "512 voxels"
    assert format_impact(2.5e6, "voxels") == "2.5M voxels"
    assert format_impact(12_300.0, "nm") == "12.3 µm of skeleton"
    assert format_impact(450.0, "nm") == "450 nm of skeleton"
    assert format_impact(3.2e6, "nm") == "3.2 mm of skeleton"
    with pytest.raises(ValueError, match="unknown impact unit"):
        format_impact(1.0, "furlongs")


def test_feature_matrix_equals_lookup_by_name():
    """The block-wise stacking gives what looking up every name of every candidate gives.

    Mixed schemas (both kinds' names, an unknown one, none), a name order other than the features', names
    the candidates lack, and names none of them has.
    """
    rng = np.random.default_rng(0)
    schemas = [list(SPLIT_FEATURES), list(MERGE_FEATURES), ["odd", "contact_area"], [],
               list(reversed(SPLIT_FEATURES))]
    candidates = []
    for i in range(300):
        names = schemas[int(rng.integers(len(schemas)))]
        values = rng.normal(size=len(names))
        values[rng.random(len(names)) < 0.1] = math.nan
        candidates.append(Candidate(id=f"c{i}", kind="false_split", location_nm=(0.0, 0.0, 0.0), segments=(1, 2),
                                    supervoxels=(1, 2), features=dict(zip(names, values.tolist(), strict=True))))

    def by_name(names):
        x = np.full((len(candidates), len(names)), np.nan)
        for i, c in enumerate(candidates):
            for j, n in enumerate(names):
                if n in c.features:
                    x[i, j] = c.features[n]
        return x

    every = sorted({n for c in candidates for n in c.features})
    x, names = feature_matrix(candidates)
    assert names == every
    np.testing.assert_array_equal(x, by_name(every))
    for names in (list(reversed(every)), ["size_ratio", "absent"], [], ["absent"]):
        x, back = feature_matrix(candidates, names)
        assert back == names
        np.testing.assert_array_equal(x, by_name(names))
    assert feature_matrix([], ["a", "b"])[0].shape == (0, 2)
