"""Property: any sequence of merges, splits, undos and redos replays from the log to the same state,
and undoing everything gives back the base segmentation."""

from __future__ import annotations

import itertools
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_connectome.errors import InputError
from napari_connectome.project import open_project
from napari_connectome.proofread import Proofreader
from napari_connectome.proofread.demo import demo_volumes, make_demo_project

VS = np.array([20.0, 10.0, 10.0])
SHAPE = (6, 24, 24)
KW = {"shape": SHAPE, "n_bodies": 4, "n_supervoxels": 24, "seed": 11}


def nm(idx):
    return tuple(float(x) for x in np.asarray(idx) * VS)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("property")
    project = make_demo_project(root / "base", **KW)
    sv = demo_volumes(**KW)["supervoxels"]
    rng = np.random.default_rng(0)
    fg = np.argwhere(sv > 0)
    picks = fg[rng.choice(len(fg), 48, replace=False)]
    return {"root": root, "project": project, "sv": sv, "points": [tuple(p) for p in picks],
            "counter": itertools.count(), "n_sv": int(len(np.unique(sv[sv > 0])))}


OPS = st.one_of(
    st.tuples(st.just("merge"), st.integers(0, 47), st.integers(0, 47)),
    st.tuples(st.just("split"), st.integers(0, 47), st.integers(0, 1000)),
    st.tuples(st.just("inside"), st.integers(0, 47), st.integers(0, 1000)),
    st.tuples(st.just("new"), st.integers(0, 1000), st.integers(0, 1000)),
    st.tuples(st.just("undo"), st.just(0), st.just(0)),
    st.tuples(st.just("redo"), st.just(0), st.just(0)),
)


def _partition(mapping):
    ids, segs = mapping
    groups: dict[int, set[int]] = {}
    for s, g in zip(ids.tolist(), segs.tolist(), strict=True):
        groups.setdefault(g, set()).add(s)
    return {frozenset(v) for v in groups.values()}


def _run(pr, op, points):
    kind, i, k = op
    p = points[i % len(points)]
    if kind == "merge":
        pr.merge(nm(p), nm(points[k]))
    elif kind == "undo":
        pr.undo()
    elif kind == "redo":
        pr.redo()
    elif kind == "split":
        seg = pr.segment_at(nm(p))
        same = [q for q in points if q != p and pr.segment_at(nm(q)) == seg]
        if not same:
            return
        pr.split(sources_nm=[nm(p)], sinks_nm=[nm(same[k % len(same)])])
    elif kind == "new":  # merge two supervoxels minted by splits inside (links beyond the base graph)
        volume = pr.supervoxel_volume().levels[0].array[:, :, :]
        minted = np.unique(volume[volume > pr.state.ids[pr.state.n_base - 1]])
        if minted.size < 2:
            return
        a, b = minted[i % minted.size], minted[k % minted.size]
        pr.merge(nm(np.argwhere(volume == a)[0]), nm(np.argwhere(volume == b)[0]))
    else:  # inside: two voxels of the supervoxel under p, as it is now
        volume = pr.supervoxel_volume().levels[0].array[:, :, :]
        sv = volume[p]
        voxels = np.argwhere(volume == sv)
        q = voxels[k % len(voxels)]
        pr.split(sources_nm=[nm(p)], sinks_nm=[nm(q)], inside=True)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(OPS, min_size=1, max_size=18))
def test_replay_and_undo_everything(base, ops):
    root = base["root"] / f"run{next(base['counter'])}"
    shutil.copytree(base["project"].root, root)
    project = open_project(root)
    pr = Proofreader.open(project)
    base_mapping = pr.mapping()
    base_volume = pr.supervoxel_volume().levels[0].array[:, :, :]
    applied = 0
    for op in ops:
        try:
            _run(pr, op, base["points"])
            applied += 1
        except InputError as exc:  # refused edits (same segment, seeds on one voxel, …) are fine
            assert "\n" not in str(exc)
        pr.state.check()
    assert len(pr.history()) <= applied
    live = pr.mapping()
    live_volume = pr.supervoxel_volume().levels[0].array[:, :, :]
    history = pr.history()
    pr.close()
    replayed = Proofreader.open(project)
    for a, b in zip(replayed.mapping(), live, strict=True):
        np.testing.assert_array_equal(a, b)  # the same ids too, not just the same partition
    np.testing.assert_array_equal(replayed.supervoxel_volume().levels[0].array[:, :, :], live_volume)
    assert replayed.history() == history
    while True:
        try:
            replayed.undo()
        except InputError as exc:
            assert str(exc) == "undo: nothing to undo"
            break
    assert _partition(replayed.mapping()) == _partition(base_mapping)
    np.testing.assert_array_equal(replayed.supervoxel_volume().levels[0].array[:, :, :], base_volume)
    labels = replayed.labels_volume().levels[0].array[:, :, :]
    ids, segs = replayed.mapping()
    lut = dict(zip(ids.tolist(), segs.tolist(), strict=True))
    np.testing.assert_array_equal(labels, np.vectorize(lambda s: lut.get(int(s), 0))(base_volume))
    final = replayed.mapping()
    replayed.close()
    for a, b in zip(Proofreader.open(project).mapping(), final, strict=True):
        np.testing.assert_array_equal(a, b)
