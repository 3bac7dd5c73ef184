"""Property: after every merge, split, undo and redo the live connectome equals a full recomputation."""

from __future__ import annotations

import itertools
import shutil

import numpy as np
import pytest

# tests/engine is on sys.path (pytest prepends a test file's folder)
from edit_sequences import KW, OPS, VS, nm, run_op
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_connectome.errors import InputError
from napari_connectome.project import open_project
from napari_connectome.proofread import Proofreader
from napari_connectome.proofread.demo import demo_volumes, make_demo_project
from napari_connectome.synapses.connectome import LiveConnectome


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("connectome")
    project = make_demo_project(root / "base", **KW)
    sv = demo_volumes(**KW)["supervoxels"]
    rng = np.random.default_rng(1)
    fg = np.argwhere(sv > 0)
    picks = fg[rng.choice(len(fg), 48, replace=False)]
    # 40 synapse rows between random voxels (some on background, a few within one body).
    every = np.argwhere(np.ones(sv.shape, bool))
    pre = every[rng.choice(len(every), 40)] * VS
    post = every[rng.choice(len(every), 40)] * VS
    return {"root": root, "project": project, "points": [tuple(p) for p in picks], "pre": pre, "post": post,
            "score": rng.random(40), "counter": itertools.count()}


def _assert_same(live: LiveConnectome) -> None:
    now, fresh = live.connections(), live.recompute()
    for field in ("pre", "post", "count", "score"):
        np.testing.assert_array_equal(getattr(now, field), getattr(fresh, field))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(OPS, min_size=1, max_size=14))
def test_the_connectome_follows_every_edit(base, ops):
    root = base["root"] / f"run{next(base['counter'])}"
    shutil.copytree(base["project"].root, root)
    pr = Proofreader.open(open_project(root))
    live = LiveConnectome(pr, base["pre"], base["post"], base["score"])
    _assert_same(live)
    for op in ops:
        try:
            run_op(pr, op, base["points"])
        except InputError:
            continue
        _assert_same(live)
    # Undo everything: back to the connectome of the base segmentation (an undo mints new segment
    # ids, so neurons are compared by their supervoxels).
    with Proofreader.open(open_project(base["project"].root), read_only=True) as first:
        start = _by_members(first, LiveConnectome(first, base["pre"], base["post"], base["score"],
                                                  listen=False).connections())
    while pr.can_undo():
        pr.undo()
        _assert_same(live)
    assert _by_members(pr, live.connections()) == start
    live.close()
    pr.close()


def _by_members(pr, connections) -> dict:
    def members(seg):
        return frozenset(pr.segment_supervoxels(int(seg)).tolist())

    return {(members(a), members(b)): c for a, b, c in zip(connections.pre, connections.post, connections.count,
                                                           strict=True)}


def test_a_merge_joins_connections_and_its_undo_parts_them(tmp_path):
    project = make_demo_project(tmp_path / "p", **KW)
    sv = demo_volumes(**KW)["supervoxels"]
    pr = Proofreader.open(project)
    ids, segs = pr.mapping()
    # Three different segments a, b, c; synapses a→c and b→c.
    firsts = {}
    for s in np.unique(segs):
        member = ids[segs == s][0]
        firsts[int(s)] = np.argwhere(sv == member)[0]
    a, b, c = list(firsts)[:3]
    live = LiveConnectome(pr, [nm(firsts[a]), nm(firsts[b])], [nm(firsts[c]), nm(firsts[c])])
    assert live.connections().count.tolist() == [1, 1]
    seen = []
    live.changed.append(seen.append)
    result = pr.merge(nm(firsts[a]), nm(firsts[b]))
    (merged,) = result.after_segments
    assert live.connections().as_dict() == {(merged, c): (2, 2.0)}
    assert seen and (merged, c) in seen[-1]
    pr.undo()
    assert sorted(live.connections().count.tolist()) == [1, 1]
    live.close()
    pr.merge(nm(firsts[a]), nm(firsts[c]))  # no longer listening: nothing changes
    assert sorted(live.connections().count.tolist()) == [1, 1]
    pr.close()


def test_mismatched_rows_are_one_line(tmp_path):
    project = make_demo_project(tmp_path / "p", **KW)
    with Proofreader.open(project) as pr:
        with pytest.raises(InputError, match="2 pre points but 1 post points"):
            LiveConnectome(pr, np.zeros((2, 3)), np.zeros((1, 3)), source="syn.csv")
        with pytest.raises(InputError, match="syn.csv: row 0"):
            LiveConnectome(pr, [(1e6, 0, 0)], [(0, 0, 0)], source="syn.csv")
