"""Proofreading edits: merge, min-cut split, preview, split inside a supervoxel, undo/redo, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from proofread_helpers import distinct_points

from napari_connectome.errors import InputError
from napari_connectome.proofread import Proofreader
from napari_connectome.proofread.demo import demo_volumes, make_demo_project
from napari_connectome.proofread.split import min_cut

VS = np.array([20.0, 10.0, 10.0])


def nm(idx) -> tuple[float, float, float]:
    return tuple(float(x) for x in np.asarray(idx) * VS)


@pytest.fixture
def demo(tmp_path):
    project = make_demo_project(tmp_path / "demo", seed=3)
    vols = demo_volumes(seed=3)
    return project, vols


def chain_volumes(high_between: int = 3, n: int = 6, width: int = 4):
    """Supervoxels 1..n side by side along x; a strong membrane between ``high_between`` and the next."""
    shape = (2, 4, n * width)
    sv = np.zeros(shape, np.uint32)
    for k in range(n):
        sv[:, :, k * width : (k + 1) * width] = k + 1
    boundary = np.full(shape, 0.05, np.float32)
    x = high_between * width
    boundary[:, :, x - 1 : x + 1] = 0.95
    raw = (255 * (1 - boundary)).astype(np.uint8)
    return {"raw": raw, "supervoxels": sv, "boundaries": boundary, "groundtruth": sv.copy()}


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


# --------------------------------------------------------------- min-cut
def test_min_cut_cuts_the_cheapest_edge_between_seeds():
    nodes = np.arange(1, 7)
    pairs = np.array([[1, 2], [2, 3], [3, 4], [4, 5], [5, 6]])
    caps = np.array([5.0, 5.0, 0.5, 5.0, 5.0])
    side, cut = min_cut(nodes, pairs, caps, np.array([1]), np.array([6]))
    assert side.tolist() == [True, True, True, False, False, False]
    assert cut.tolist() == [2]
    # A diamond: two parallel paths; the cut takes the weak link of each.
    pairs = np.array([[1, 2], [2, 4], [1, 3], [3, 4]])
    caps = np.array([1.0, 9.0, 9.0, 2.0])
    side, cut = min_cut(np.arange(1, 5), pairs, caps, np.array([1]), np.array([4]))
    assert sorted(cut.tolist()) == [0, 3]


def test_split_cuts_at_the_strong_boundary(tmp_path):
    project = make_demo_project(tmp_path / "chain", volumes=chain_volumes(3), threshold=1.0)
    pr = Proofreader.open(project)
    (segment,) = np.unique(pr.mapping()[1])  # threshold 1: the whole chain is one segment
    source, sink = nm((0, 1, 1)), nm((0, 1, 22))
    preview = pr.preview_split([source], [sink])
    assert not preview.inside_supervoxel and preview.segment_id == segment
    assert preview.cut_edges.tolist() == [[3, 4]]
    assert preview.source_supervoxels.tolist() == [1, 2, 3]
    assert preview.sink_supervoxels.tolist() == [4, 5, 6]
    result = pr.split(preview)
    assert result.before_segments == [int(segment)]
    assert len(result.after_segments) == 2
    assert pr.segment_of(1) == pr.segment_of(3) != pr.segment_of(4) == pr.segment_of(6)
    # Move the membrane: the cut follows it.
    project2 = make_demo_project(tmp_path / "chain2", volumes=chain_volumes(5), threshold=1.0)
    pr2 = Proofreader.open(project2)
    assert pr2.preview_split([source], [sink]).cut_edges.tolist() == [[5, 6]]


# --------------------------------------------------------------- merge
def test_merge_logs_then_applies_with_new_root_ids(demo):
    project, vols = demo
    pr = Proofreader.open(project, user="ana", session="s1")
    a, b = (3, 5, 5), (3, 20, 20)
    sa, sb = pr.segment_at(nm(a)), pr.segment_at(nm(b))
    assert sa != sb
    v0 = pr.version
    result = pr.merge(nm(a), nm(b), task_id=7, suggested_by="ranker")
    assert result.type == "merge" and result.operation_id == 1
    assert result.before_segments == sorted([sa, sb])
    (new,) = result.after_segments
    assert new > int(vols["supervoxels"].max())  # CAVE-like: a fresh id above every supervoxel
    assert pr.version == v0 + 1
    assert pr.segment_at(nm(a)) == pr.segment_at(nm(b)) == new
    labels = pr.labels_volume().levels[0].array
    assert labels[a] == labels[b] == new
    sv_ids = set(pr.segment_supervoxels(new).tolist())
    assert pr.supervoxel_at(nm(a)) in sv_ids and pr.supervoxel_at(nm(b)) in sv_ids
    (row,) = pr.log.rows()
    assert row["type"] == "merge" and row["user"] == "ana" and row["session"] == "s1"
    assert row["task_id"] == 7 and row["suggested_by"] == "ranker"
    assert row["before_roots"] == sorted([sa, sb]) and row["after_roots"] == [new]
    assert row["seeds_nm"] == [list(nm(a)), list(nm(b))]
    assert row["timestamp"].endswith("+00:00") and row["unix_time"] > 1.6e9
    with pytest.raises(InputError, match="already") as exc:
        pr.merge(nm(a), nm(b))
    one_line(exc)
    assert len(pr.log.rows()) == 1


def test_labels_volume_remaps_without_rewriting(demo):
    project, vols = demo
    pr = Proofreader.open(project)
    labels = pr.labels_volume()
    assert labels.kind == "labels" and labels.levels[0].array.dtype == np.uint64
    before = labels.levels[0].array[2]  # a z slice, cached positions
    ids, segs = pr.mapping()
    lut = dict(zip(ids.tolist(), segs.tolist(), strict=True))
    expect = np.vectorize(lambda s: lut.get(int(s), 0))(vols["supervoxels"][2])
    np.testing.assert_array_equal(before, expect)
    result = pr.merge(nm((2, 5, 5)), nm((2, 20, 20)))
    after = labels.levels[0].array[2]  # the same lazy array object shows the edit
    merged = np.isin(before, result.before_segments)
    assert (after[merged] == result.after_segments[0]).all()
    np.testing.assert_array_equal(after[~merged], before[~merged])
    sv = pr.supervoxel_volume().levels[0].array[:, :, :]
    np.testing.assert_array_equal(sv, vols["supervoxels"])


# --------------------------------------------------------------- preview
def test_preview_writes_nothing_and_split_commits_it(demo):
    project, _ = demo
    pr = Proofreader.open(project)
    a, b = (3, 5, 5), (3, 20, 20)
    pr.merge(nm(a), nm(b))
    mapping, version, rows = pr.mapping(), pr.version, len(pr.log.rows())
    preview = pr.preview_split([nm(a)], [nm(b)])
    assert len(pr.log.rows()) == rows and pr.version == version
    for x, y in zip(pr.mapping(), mapping, strict=True):
        np.testing.assert_array_equal(x, y)
    side = preview.labels((3, slice(None), slice(None)))
    assert side[a[1:]] == 1 and side[b[1:]] == 2
    seg_slice = pr.labels_volume().levels[0].array[3]
    assert ((side > 0) == (seg_slice == preview.segment_id)).all()
    assert preview.volume().levels[0].array[3].shape == seg_slice.shape
    result = pr.split(preview)
    assert len(pr.log.rows()) == rows + 1
    assert pr.segment_at(nm(a)) != pr.segment_at(nm(b))
    assert set(pr.segment_supervoxels(pr.segment_at(nm(a))).tolist()) == set(preview.source_supervoxels.tolist())
    assert result.before_segments == [preview.segment_id]


def test_stale_preview_is_recomputed(demo):
    project, _ = demo
    pr = Proofreader.open(project)
    a, b, c = distinct_points(pr, demo[1]["supervoxels"], 3)
    pr.merge(nm(a), nm(b))
    preview = pr.preview_split([nm(a)], [nm(b)])
    pr.merge(nm(a), nm(c))  # the state moved on
    result = pr.split(preview)
    assert result.before_segments == [pr._history.ops[2].after[0]]
    assert pr.segment_at(nm(a)) != pr.segment_at(nm(b))


# --------------------------------------------------------------- inside a supervoxel
def test_split_inside_a_supervoxel_mints_ids_and_undo_restores_it(demo):
    project, vols = demo
    sv = vols["supervoxels"]
    pr = Proofreader.open(project)
    ids, counts = np.unique(sv[sv > 0], return_counts=True)
    x = int(ids[np.argmax(counts)])
    pts = np.argwhere(sv == x)
    p_src, p_snk = pts[np.argmin(pts[:, 2])], pts[np.argmax(pts[:, 2])]
    partition_before = _partition(pr.mapping())
    preview = pr.preview_split([nm(p_src)], [nm(p_snk)])
    assert preview.inside_supervoxel and preview.supervoxel == x
    assert preview.patch is not None and (preview.patch > 0).sum() == counts.max()
    assert len(pr.log.rows()) == 0
    result = pr.split(preview)
    assert result.type == "split_supervoxel" and result.bbox_nm is not None
    n1, n2 = result.supervoxels[1:]
    assert n1 > int(sv.max()) and n2 == n1 + 1
    assert pr.supervoxel_at(nm(p_src)) == n1 and pr.supervoxel_at(nm(p_snk)) == n2
    assert pr.segment_at(nm(p_src)) != pr.segment_at(nm(p_snk))
    edited = pr.supervoxel_volume().levels[0].array[:, :, :]
    assert not (edited == x).any()
    assert ((edited == n1) | (edited == n2)).sum() == counts.max()
    np.testing.assert_array_equal(edited[sv != x], sv[sv != x])
    ids_now, _ = pr.mapping()
    assert x not in ids_now and {n1, n2} <= set(ids_now.tolist())
    with pytest.raises(InputError, match="exists no more"):
        pr.segment_of(x)
    with pytest.raises(InputError, match=f"{x} was divided by a split inside it"):
        pr.preview_split_supervoxels([n1, x], [n2])  # seeds checked at once: the dead one named
    with pytest.raises(InputError, match="999999 is not a supervoxel"):
        pr.preview_split_supervoxels([n1], [999999, x])
    with pytest.raises(InputError, match="-3 is not a supervoxel id"):
        pr.preview_split_supervoxels([n1], [-3])
    with pytest.raises(InputError, match=f"{n1} is both a source and a sink"):
        pr.preview_split_supervoxels(np.array([n1], np.uint64), [float(n1)])
    # The new supervoxels are graph nodes: they can be merged and split again.
    assert pr.state.graph_neighbors(int(pr.state.positions([n1])[0])).size > 0
    pr.merge(nm(p_src), nm(p_snk))
    assert pr.segment_at(nm(p_src)) == pr.segment_at(nm(p_snk))
    pr.undo()
    pr.undo()
    np.testing.assert_array_equal(pr.supervoxel_volume().levels[0].array[:, :, :], sv)
    assert _partition(pr.mapping()) == partition_before
    pr.redo()  # the split inside again, from the log record (no watershed)
    assert pr.supervoxel_at(nm(p_src)) == n1 and pr.supervoxel_at(nm(p_snk)) == n2


def test_links_between_minted_supervoxels_hold_segments_together(demo):
    project, vols = demo
    sv = vols["supervoxels"]
    pr = Proofreader.open(project)
    base = _partition(pr.mapping())
    ids, counts = np.unique(sv[sv > 0], return_counts=True)
    minted = []
    for x in ids[np.argsort(-counts)][:2]:
        pts = np.argwhere(sv == x)
        p1, p2 = pts[np.argmin(pts[:, 2])], pts[np.argmax(pts[:, 2])]
        minted.append((p1, p2, pr.split(sources_nm=[nm(p1)], sinks_nm=[nm(p2)]).supervoxels[1:]))
        pr.state.check()
    (a1, a2, _), (b1, b2, _) = minted
    pr.merge(nm(a1), nm(b1))  # a link that is no base graph edge, between two new supervoxels
    pr.merge(nm(a2), nm(b2))
    pr.state.check()
    assert pr.segment_at(nm(a1)) == pr.segment_at(nm(b1))
    pr.split(sources_nm=[nm(a1)], sinks_nm=[nm(b1)])  # cuts the link between the new supervoxels
    pr.state.check()
    assert pr.segment_at(nm(a1)) != pr.segment_at(nm(b1))
    while pr.can_undo():
        pr.undo()
        pr.state.check()
    assert _partition(pr.mapping()) == base
    np.testing.assert_array_equal(pr.supervoxel_volume().levels[0].array[:, :, :], sv)


# --------------------------------------------------------------- undo / redo / history
def test_undo_redo_are_new_operations(demo):
    project, _ = demo
    pr = Proofreader.open(project)
    a, b = (3, 5, 5), (3, 20, 20)
    base = pr.mapping()
    merged = pr.merge(nm(a), nm(b))
    undo = pr.undo()
    assert undo.type == "undo" and undo.operation_id == 2
    assert undo.before_segments == merged.after_segments
    assert len(undo.after_segments) == 2 and not set(undo.after_segments) & set(merged.before_segments)
    assert pr.segment_at(nm(a)) != pr.segment_at(nm(b))
    assert _partition(pr.mapping()) == _partition(base)
    redo = pr.redo()
    assert redo.type == "redo" and pr.segment_at(nm(a)) == pr.segment_at(nm(b))
    hist = pr.history()
    assert [h["type"] for h in hist] == ["merge", "undo", "redo"]
    assert [h["undo_of"] for h in hist] == [None, 1, 2]
    assert not hist[0]["undone"]
    pr.undo()
    assert pr.history()[0]["undone"]
    c = next(p for p in distinct_points(pr, demo[1]["supervoxels"], 3) if pr.segment_at(nm(p)) != pr.segment_at(nm(a)))
    pr.merge(nm(a), nm(c))  # a new edit clears what could be redone
    with pytest.raises(InputError, match="nothing to redo") as exc:
        pr.redo()
    assert one_line(exc) == "redo: nothing to redo"


def test_undo_of_an_older_edit_is_refused_when_its_segments_changed(demo):
    project, _ = demo
    pr = Proofreader.open(project)
    a, b, c, d = distinct_points(pr, demo[1]["supervoxels"], 4)
    first = pr.merge(nm(a), nm(b))
    pr.merge(nm(a), nm(c))  # changes the segment the first merge made
    with pytest.raises(InputError, match="later edits changed") as exc:
        pr.undo(first.operation_id)
    assert "undo operation(s) 2 first" in one_line(exc)
    rows = len(pr.log.rows())
    pr.undo()  # the latest, then the first one is free
    pr.undo(first.operation_id)
    assert len(pr.log.rows()) == rows + 2
    # An older edit on other segments can be undone on its own.
    e1 = pr.merge(nm(a), nm(b))
    pr.merge(nm(c), nm(d))
    pr.undo(e1.operation_id)
    assert pr.segment_at(nm(a)) != pr.segment_at(nm(b))
    assert pr.segment_at(nm(c)) == pr.segment_at(nm(d))
    with pytest.raises(InputError, match="not an edit in effect"):
        pr.undo(e1.operation_id)


def _partition(mapping) -> set[frozenset[int]]:
    ids, segs = mapping
    groups: dict[int, set[int]] = {}
    for s, g in zip(ids.tolist(), segs.tolist(), strict=True):
        groups.setdefault(g, set()).add(s)
    return {frozenset(v) for v in groups.values()}


# --------------------------------------------------------------- bad input
def test_bad_input_is_one_line_and_loses_nothing(demo):
    project, vols = demo
    pr = Proofreader.open(project)
    a, b = (3, 5, 5), (3, 20, 20)
    pr.merge(nm(a), nm(b))
    rows, version, mapping = len(pr.log.rows()), pr.version, pr.mapping()
    sv = vols["supervoxels"]
    x = int(sv[a])
    inside_x = np.argwhere(sv == x)
    other_seg = next(
        tuple(p) for p in np.argwhere(sv > 0) if pr.segment_of(int(sv[tuple(p)])) != pr.segment_at(nm(a))
    )
    neighbour = next(
        tuple(p) for p in np.argwhere(sv > 0)
        if int(sv[tuple(p)]) != x and pr.segment_of(int(sv[tuple(p)])) == pr.segment_at(nm(a))
    )
    cases = [
        (lambda: pr.merge(nm((10, 5, 5)), nm(b)), "outside the volume"),
        (lambda: pr.merge(nm((-1, 5, 5)), nm(b)), "outside the volume"),
        (lambda: pr.merge(nm((0, 0, 0)), nm(b)), "background"),
        (lambda: pr.merge(("a", 1, 2), nm(b)), "not a point"),
        (lambda: pr.preview_split([nm((0, 0, 1))], [nm(b)]), "background"),
        (lambda: pr.preview_split([nm((3, 5, 500))], [nm(b)]), "outside the volume"),
        (lambda: pr.preview_split([nm(a)], [nm(other_seg)]), "different segments"),
        (lambda: pr.preview_split([nm(a), nm(b)], []), "all seeds are on one side"),
        (lambda: pr.preview_split([], [nm(b)]), "all seeds are on one side"),
        (lambda: pr.preview_split([nm(inside_x[0])], [nm(inside_x[-1])], inside=False), "both a source and a sink"),
        (lambda: pr.preview_split([nm(a), nm(neighbour)], [nm(a)]), "same voxel|both a source and a sink"),
        (lambda: pr.preview_split([nm(a)], [nm(neighbour)], inside=True), "every seed in that one supervoxel"),
        (lambda: pr.preview_split([nm(a)], [nm(a)]), "same voxel"),
        (lambda: pr.split(), "give a preview"),
        (lambda: pr.undo(99), "not an edit in effect"),
        (lambda: pr.redo(), "nothing to redo"),
    ]
    for call, pattern in cases:
        with pytest.raises(InputError, match=pattern) as exc:
            call()
        one_line(exc)
    assert len(pr.log.rows()) == rows and pr.version == version
    for x1, y1 in zip(pr.mapping(), mapping, strict=True):
        np.testing.assert_array_equal(x1, y1)
    pr.undo()
    with pytest.raises(InputError, match="nothing to undo") as exc:
        pr.undo()
    assert one_line(exc) == "undo: nothing to undo"


def test_open_builds_the_graph_when_missing(tmp_path):
    project = make_demo_project(tmp_path / "p", threshold=None)
    (project.component_path("graph") / "rag.npz").unlink()
    pr = Proofreader.open(project)
    ids, segs = pr.mapping()
    np.testing.assert_array_equal(ids, segs)  # no agglomeration: every supervoxel alone
    assert (project.component_path("graph") / "rag.npz").is_file()


def test_multiscale_levels_remap_and_carry_the_overlay(tmp_path):
    from napari_connectome.project import create_project
    from napari_connectome.pyramid import write_ome_zarr

    vols = demo_volumes(shape=(8, 32, 32), seed=5, background=False)
    write_ome_zarr(tmp_path / "sv.ome.zarr", vols["supervoxels"], voxel_size=(10, 10, 10), kind="labels",
                   chunks=16, levels=2)
    write_ome_zarr(tmp_path / "raw.ome.zarr", vols["raw"], voxel_size=(10, 10, 10), kind="image", chunks=16,
                   levels=2)
    project = create_project(tmp_path / "p", raw=tmp_path / "raw.ome.zarr", supervoxels=tmp_path / "sv.ome.zarr")
    pr = Proofreader.open(project)
    vol = pr.labels_volume()
    assert len(vol.levels) == 2
    coarse_sv = np.asarray(project.open_input("supervoxels").levels[1].array[:, :, :])
    ids, segs = pr.mapping()
    lut = dict(zip(ids.tolist(), segs.tolist(), strict=True))
    np.testing.assert_array_equal(vol.levels[1].array[:, :, :], np.vectorize(lambda s: lut.get(int(s), 0))(coarse_sv))
    sv = vols["supervoxels"]
    ids, counts = np.unique(sv, return_counts=True)
    x = int(ids[np.argmax(counts)])
    pts = np.argwhere(sv == x)
    p1, p2 = pts[np.argmin(pts[:, 2])], pts[np.argmax(pts[:, 2])]
    pr.split(sources_nm=[tuple(p1 * 10.0)], sinks_nm=[tuple(p2 * 10.0)])
    coarse = pr.supervoxel_volume().levels[1].array[:, :, :]
    assert not (coarse == x).any()  # the patch shows at the coarse level too


def test_preview_says_in_plain_words_what_the_split_does(tmp_path):
    project = make_demo_project(tmp_path / "chain", volumes=chain_volumes(3), threshold=1.0)
    with Proofreader.open(project) as pr:
        preview = pr.preview_split([nm((0, 1, 1))], [nm((0, 1, 22))])
        assert preview.problem is None
        assert preview.message == "cuts 1 link between supervoxels: 3 on the sources' side, 3 on the sinks' side"
        # Both seeds in supervoxel 2: the panel can say why no graph cut is offered.
        inside = pr.preview_split([nm((0, 1, 4))], [nm((0, 2, 7))])
        assert inside.inside_supervoxel and inside.problem is None
        assert inside.message.startswith("both seeds are in supervoxel 2: a graph cut cannot separate them")
        with pytest.raises(InputError, match="supervoxel 2 holds both a source and a sink seed: a graph cut cannot"):
            pr.preview_split([nm((0, 1, 4))], [nm((0, 2, 7))], inside=False)


def test_split_that_separates_nothing_is_refused_unless_forced(tmp_path):
    from dataclasses import replace

    from napari_connectome.proofread import Effect

    project = make_demo_project(tmp_path / "chain", volumes=chain_volumes(3), threshold=1.0)
    with Proofreader.open(project) as pr:
        good = pr.preview_split([nm((0, 1, 1))], [nm((0, 1, 22))])
        nothing = Effect()
        # What a cut that removes no link would be: the same seeds, no edge, one piece.
        empty = replace(good, cut_edges=np.empty((0, 2), np.uint64), sink_supervoxels=np.empty(0, np.uint64),
                        _effect=nothing, _plan=pr.state.plan(nothing))
        from napari_connectome.proofread.preview import describe_split as _describe

        empty.problem, empty.message = _describe(empty.cut_edges, empty.source_supervoxels,
                                                 empty.sink_supervoxels, empty._plan, inside=False, supervoxel=None)
        assert empty.problem == "the cut leaves the sinks' side empty" and "cannot split" in empty.message
        with pytest.raises(InputError, match="sinks' side empty; nothing was committed") as exc:
            pr.split(empty)
        one_line(exc)
        assert pr.log.rows() == [] and pr.version == 0
        forced = pr.split(empty, force=True)
        assert forced.type == "split" and len(pr.log.rows()) == 1


def test_cut_problem_names_each_degenerate_cut():
    from napari_connectome.proofread.split import cut_problem

    one, two = np.array([1], np.uint64), np.array([2], np.uint64)
    edge = np.array([[1, 2]], np.uint64)
    none = np.empty((0, 2), np.uint64)
    assert cut_problem(cut_edges=edge, source_supervoxels=one, sink_supervoxels=two, n_pieces=2, inside=False) is None
    assert "no link" in cut_problem(cut_edges=none, source_supervoxels=one, sink_supervoxels=two, n_pieces=2,
                                    inside=False)
    # Two parts of a divided supervoxel need not touch: no cut link is fine inside.
    assert cut_problem(cut_edges=none, source_supervoxels=one, sink_supervoxels=two, n_pieces=2, inside=True) is None
    assert "one piece" in cut_problem(cut_edges=edge, source_supervoxels=one, sink_supervoxels=two, n_pieces=1,
                                      inside=False)
    assert "sources' side empty" in cut_problem(cut_edges=edge, source_supervoxels=one[:0], sink_supervoxels=two,
                                                n_pieces=2, inside=False)


@pytest.mark.parametrize("seed", range(20))
def test_a_split_whose_seeds_are_every_node_is_the_min_cut_read_off(seed):
    def split_by_seeds(nodes, pairs, caps, src, snk):
        # What a cut with every node pinned must be: the links between the sides (no max-flow).
        side = np.isin(nodes, src)
        if len(src) + len(snk) < len(nodes) or np.isin(snk, src).any() or (~side).sum() != len(np.unique(snk)):
            return min_cut(nodes, pairs, caps, src, snk)
        a, b = np.searchsorted(nodes, pairs[:, 0]), np.searchsorted(nodes, pairs[:, 1])
        return side, np.flatnonzero(side[a] != side[b])

    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 40))
    nodes = np.sort(rng.choice(1000, n, replace=False)).astype(np.int64)
    k = int(rng.integers(n - 1, 3 * n))
    ends = rng.choice(n, size=(k, 2))
    ends = ends[ends[:, 0] != ends[:, 1]]
    pairs = np.unique(np.sort(nodes[ends], axis=1), axis=0)
    caps = rng.uniform(0.1, 1.0, len(pairs))
    side_of = rng.random(n) < 0.5
    side_of[0], side_of[-1] = True, False
    src, snk = nodes[side_of], nodes[~side_of]
    got_side, got_cut = split_by_seeds(nodes, pairs, caps, src, snk)
    want_side, want_cut = min_cut(nodes, pairs, caps, src, snk)
    np.testing.assert_array_equal(got_side, want_side)
    np.testing.assert_array_equal(np.sort(got_cut), np.sort(want_cut))
    # Fewer seeds than nodes: the max-flow's answer itself.
    part_side, part_cut = split_by_seeds(nodes, pairs, caps, src[:1], snk[:1])
    ref_side, ref_cut = min_cut(nodes, pairs, caps, src[:1], snk[:1])
    np.testing.assert_array_equal(part_side, ref_side)
    np.testing.assert_array_equal(part_cut, ref_cut)
    # As many seeds as nodes, but repeated ones leave nodes free: the max-flow again.
    repeated = np.r_[src[:1], src[:1], src[:1]]
    few = nodes[~side_of][:1]
    if repeated.size + few.size >= n:
        rep_side, rep_cut = split_by_seeds(nodes, pairs, caps, np.r_[repeated, repeated], few)
        ref_side, ref_cut = min_cut(nodes, pairs, caps, np.r_[repeated, repeated], few)
        np.testing.assert_array_equal(rep_side, ref_side)
        np.testing.assert_array_equal(rep_cut, ref_cut)
    with pytest.raises(InputError, match="both a source and a sink"):
        split_by_seeds(nodes, pairs, caps, nodes, nodes[:1])


@pytest.mark.parametrize("n", [0, 1, 5, 40, 400, 4000])
def test_unique_rows_through_a_mask_are_numpys(n):
    from napari_connectome.proofread.state import _unique_rows

    rng = np.random.default_rng(n)
    rows = rng.integers(0, 500, n).astype(np.int64)
    got = _unique_rows(rows, 500)
    np.testing.assert_array_equal(got, np.unique(rows))
    assert got.dtype == np.unique(rows).dtype


@pytest.mark.parametrize("enumerate_up_to", [0, 8, 64])  # max-flow only, the default, enumeration only
@pytest.mark.parametrize("seed", range(40))
def test_the_min_cut_is_the_smallest_source_side_of_the_cheapest_cuts(seed, enumerate_up_to, monkeypatch):
    # Brute force over every side of the free nodes, with the integer capacities min_cut cuts with; both
    # ways min_cut finds it (scipy's max-flow, and trying every side of a few free nodes) must agree.
    import itertools

    from napari_connectome.proofread import split

    monkeypatch.setattr(split, "_ENUMERATE_FREE", enumerate_up_to)
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 15))
    nodes = np.sort(rng.choice(100, n, replace=False)).astype(np.int64)
    ends = rng.choice(n, size=(int(rng.integers(1, 3 * n)), 2))
    ends = ends[ends[:, 0] != ends[:, 1]]
    pairs = np.unique(np.sort(nodes[ends], axis=1), axis=0).reshape(-1, 2)
    caps = rng.choice([0.5, 1.0, 1.5], len(pairs))  # equal capacities: ties between cuts
    order = rng.permutation(n)
    n_src, n_snk = int(rng.integers(0, n // 2 + 1)), int(rng.integers(0, n // 2 + 1))
    src, snk = nodes[order[:n_src]], nodes[order[n_src:n_src + n_snk]]
    icap = np.maximum(1, np.floor(caps * (2.0**29) / max(float(caps.sum()), 1e-12)))
    free = [i for i in range(n) if nodes[i] not in src and nodes[i] not in snk]
    a, b = np.searchsorted(nodes, pairs[:, 0]), np.searchsorted(nodes, pairs[:, 1])
    best, smallest = None, None
    for bits in itertools.product([False, True], repeat=len(free)):
        side = np.isin(nodes, src)
        side[free] = bits
        cost = float(icap[side[a] != side[b]].sum())
        if best is None or cost < best:
            best, smallest = cost, side.copy()
        elif cost == best:
            smallest &= side
    got, cut = min_cut(nodes, pairs, caps, src, snk)
    np.testing.assert_array_equal(got, smallest)
    assert float(icap[cut].sum()) == best


def test_a_cut_is_checked_at_once_as_link_by_link(demo):
    """The cut's links are looked up and checked together: the same answers and errors as one by one."""
    from napari_connectome.proofread import Effect
    from napari_connectome.proofread.state import EffectConflict

    project, _ = demo
    rng = np.random.default_rng(0)
    with Proofreader.open(project, user="t") as pr:
        st = pr.state
        pairs = np.stack([st.rag_u, st.rag_v], axis=1)
        pick = pairs[rng.choice(len(pairs), size=min(40, len(pairs)), replace=False)]
        expected = [st.is_active(int(a), int(b)) for a, b in pick]
        assert st._active_pairs(pick).tolist() == expected
        assert any(expected) and not all(expected)
        ids = st.ids[pick]
        active = [tuple(int(x) for x in e) for e, on in zip(ids, expected, strict=True) if on]
        inactive = [tuple(int(x) for x in e) for e, on in zip(ids, expected, strict=True) if not on]
        # The first link that is not there is the one named, wherever it stands in the cut.
        with pytest.raises(EffectConflict, match=f"supervoxels {inactive[0][0]} and {inactive[0][1]} are not linked"):
            st.plan(Effect(edges_removed=[*active[:3], inactive[0], *active[3:5], *inactive[1:]]))
        unknown = int(st.ids.max()) + 7
        with pytest.raises(EffectConflict, match=f"supervoxel {unknown} is not in the segmentation"):
            st.plan(Effect(edges_removed=[active[0], (int(active[1][0]), unknown), inactive[0]]))
        before = st.active.copy()
        plan = st.plan(Effect(edges_removed=active[:5]))
        assert (st.active == before).all()  # a plan changes nothing
        st.commit(plan, list(range(st.next_id, st.next_id + len(plan.components))))
        assert not st._active_pairs(st.positions(np.asarray(active[:5]).ravel()).reshape(-1, 2)).any()
        st.check()


def test_a_split_preview_reads_its_segments_links_once_and_plans_as_without_the_hint(demo):
    """The preview hands its segment's links to the plan; a plan given another node set's links reads its own."""

    project, _ = demo
    pr = Proofreader.open(project)
    a, b = (3, 5, 5), (3, 20, 20)
    pr.merge(nm(a), nm(b))
    st = pr.state
    calls = []
    real = st.active_edges

    def counted(nodes):
        calls.append(np.asarray(nodes).size)
        return real(nodes)

    st.active_edges = counted
    preview = pr.preview_split([nm(a)], [nm(b)])
    assert len(calls) == 1 and calls[0] == pr.segment_supervoxels(preview.segment_id).size
    # the plan it made equals one made without the hint
    del st.active_edges
    fresh = st.plan(preview._effect)
    assert [c.tolist() for c in preview._plan.components] == [c.tolist() for c in fresh.components]
    assert len(fresh.components) == 2
    # a hint of other nodes is not used: the same components as without it
    members = st.members(preview.segment_id)
    wrong = (members[:-1], np.empty((0, 2), np.int64))
    hinted = st.plan(preview._effect, edges=wrong)
    assert [c.tolist() for c in hinted.components] == [c.tolist() for c in fresh.components]
    # while a hint of the right nodes is what the plan cuts (no links: every node its own piece)
    alone = st.plan(preview._effect, edges=(members, np.empty((0, 2), np.int64)))
    assert len(alone.components) == members.size
    pr.split(preview)
    assert pr.segment_at(nm(a)) != pr.segment_at(nm(b))
    pr.close()
