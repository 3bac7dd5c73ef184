"""find_candidates' own min-cut is the Proofreader's split preview, without the preview's per-seed lookups."""

from __future__ import annotations

import numpy as np

from napari_connectome.candidates import trees
from napari_connectome.candidates.find import _cut_positions, _seed_positions, _sv_table
from napari_connectome.errors import InputError
from napari_connectome.proofread import Proofreader
from napari_connectome.proofread.demo import make_demo_project


def _graph_cut(st, segment, src_svs, snk_svs, seg_of_pos, alive):
    """The finder's cut of ``segment`` between two supervoxel id sets, as ids (None where it refuses)."""
    seeds = _seed_positions(st, src_svs, snk_svs)
    if seeds is None:
        return None
    members = st.members(segment)
    got = _cut_positions(st, segment, *seeds, seg_of_pos, alive, members, *st.active_edges(members))
    return None if got is None else (st.ids[got[0]], st.ids[got[1]], got[2])


def _last_merges(members, rows, u, v, area, mean, k):
    return trees.last_merges(trees.segment_tree(members, rows, u, v, area, mean), k)


def test_the_cut_equals_the_split_preview_on_random_seeds(tmp_path):
    project = make_demo_project(tmp_path / "demo", shape=(8, 32, 32), n_bodies=5, n_supervoxels=60, threshold=0.5,
                                seed=1)
    rng = np.random.default_rng(0)
    with Proofreader.open(project, user="test") as pr:
        st = pr.state
        alive, seg_of_pos, _ = _sv_table(pr)
        segs = [int(s) for s in np.unique(seg_of_pos[alive]) if s and st.members(int(s)).size >= 3]
        assert segs
        checked = refused = 0
        for _ in range(120):
            s = segs[int(rng.integers(len(segs)))]
            ids = st.ids[st.members(s)]
            perm = rng.permutation(ids)
            if rng.random() < 0.4:  # every supervoxel a seed: the cut read off without a max-flow
                k = int(rng.integers(1, ids.size))
                src, snk = perm[:k], perm[k:]
            else:
                src = perm[:int(rng.integers(1, 3))]
                snk = perm[-int(rng.integers(1, 3)):]
            if rng.random() < 0.1:  # a seed from another segment
                snk = np.r_[snk, st.ids[st.members(segs[(segs.index(s) + 1) % len(segs)])][:1]]
            try:
                preview = pr.preview_split_supervoxels(src, snk)
            except InputError:
                assert _graph_cut(st, s, src, snk, seg_of_pos, alive) is None
                refused += 1
                continue
            got = _graph_cut(st, s, src, snk, seg_of_pos, alive)
            assert got is not None
            g_src, g_snk, cut_pos = got
            np.testing.assert_array_equal(g_src, preview.source_supervoxels)
            np.testing.assert_array_equal(g_snk, preview.sink_supervoxels)
            np.testing.assert_array_equal(st.ids[cut_pos].reshape(-1, 2), preview.cut_edges)
            checked += 1
        assert checked > 50 and refused > 0


def test_last_merges_read_off_the_segments_merge_tree():
    members = np.array([10, 20, 30, 40, 50], dtype=np.int64)
    u = np.array([10, 20, 30])
    v = np.array([20, 30, 40])
    area = np.ones(3)
    mean = np.array([0.1, 0.5, 0.2])  # merged in the order 10-20, 30-40, then the two pieces
    rows = np.arange(3)
    # 50 has no edge: a manual link holds it on, and that link comes first with score 1
    links = _last_merges(members, rows, u, v, area, mean, 3)
    assert [s for s, _, _ in links] == [1.0, 0.5, 0.2]
    assert links[0][1].tolist() == [10, 20, 30, 40] and links[0][2].tolist() == [50]
    assert {tuple(links[1][1].tolist()), tuple(links[1][2].tolist())} == {(10, 20), (30, 40)}
    assert {tuple(links[2][1].tolist()), tuple(links[2][2].tolist())} == {(30,), (40,)}
    only_tree = _last_merges(members[:4], rows, u, v, area, mean, 2)
    assert [s for s, _, _ in only_tree] == [0.5, 0.2]
