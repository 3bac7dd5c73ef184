"""CandidateCache: after every edit of a random sequence, the incremental list equals a full search."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_connectome.candidates import CandidateCache, apply_candidate, find_candidates
from napari_connectome.candidates.rows import remember, serials
from napari_connectome.errors import InputError
from napari_connectome.proofread import Proofreader
from napari_connectome.proofread.demo import make_demo_project


def _same(a, b) -> None:
    assert [c.id for c in a] == [c.id for c in b]
    for x, y in zip(a, b, strict=True):
        assert (x.kind, x.segments, x.supervoxels, x.sinks, x.source) == (y.kind, y.segments, y.supervoxels,
                                                                          y.sinks, y.source), x.id
        assert x.impact == y.impact, x.id
        np.testing.assert_array_equal(np.asarray(x.location_nm), np.asarray(y.location_nm), err_msg=x.id)
        assert x.features.keys() == y.features.keys()
        for k, v in x.features.items():
            w = y.features[k]
            assert (math.isnan(v) and math.isnan(w)) or v == w, (x.id, k)


@pytest.mark.parametrize("keep_trees_from", [None, 2])  # the default; every segment's tree kept and read off
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_after_every_edit_the_cache_equals_a_full_search(tmp_path, seed, keep_trees_from, monkeypatch):
    from napari_connectome.candidates import find, trees

    read_off = []
    if keep_trees_from is not None:
        monkeypatch.setattr(find, "KEEP_FROM", keep_trees_from)
        earlier = trees._from_earlier
        monkeypatch.setattr(trees, "_from_earlier", lambda *a: read_off.append(earlier(*a)) or read_off[-1])
    project = make_demo_project(tmp_path / "demo", shape=(8, 32, 32), n_bodies=5, n_supervoxels=60, threshold=0.5,
                                seed=seed)
    rng = np.random.default_rng(seed)
    with Proofreader.open(project, user="test") as pr:
        cache = CandidateCache()
        first = cache(pr)
        _same(first, find_candidates(pr))
        assert cache.last_new == len(first)
        edits = 0
        for _step in range(14):
            candidates = cache(pr)
            if not candidates:
                break
            roll = rng.random()
            if roll < 0.3:
                try:
                    pr.undo() if roll < 0.2 else pr.redo()
                except InputError:
                    continue  # nothing to undo or redo now
            else:
                c = candidates[int(rng.integers(len(candidates)))]
                if apply_candidate(pr, c, suggested_by="test") is None:
                    continue
                edits += 1
            again = cache(pr)
            # The serials the cache tells with its list are each candidate object's own (rows.py).
            told = serials(again)
            assert told.tolist() == [c.__dict__["_row_serial"] for c in again]
            _same(again, find_candidates(pr))
            # only what the edit touched was searched again
            assert cache.last_new <= len(again)
        assert edits >= 5
    if keep_trees_from is not None:
        assert any(t is not None for t in read_off)  # pieces of splits read their trees off


def test_only_segments_refuses_skeletons(tmp_path):
    project = make_demo_project(tmp_path / "demo", shape=(8, 32, 32), n_bodies=5, n_supervoxels=60, threshold=0.5)
    with Proofreader.open(project, user="test") as pr:
        with pytest.raises(InputError, match="skeletons"):
            find_candidates(pr, only_segments={1}, skeletons={1: object()})


def test_the_majority_body_of_a_set_of_supervoxels_is_the_brute_force_one():
    from napari_connectome.candidates.labels import SupervoxelBodies

    rng = np.random.default_rng(4)
    sv = rng.integers(1, 40, 3000)
    body = rng.integers(1, 6, 3000)
    pairs, counts = np.unique(np.stack([sv, body], axis=1), axis=0, return_counts=True)
    bodies = SupervoxelBodies(pairs[:, 0], pairs[:, 1], counts)
    for _ in range(100):
        pick = rng.choice(45, int(rng.integers(0, 12)), replace=False)  # ids 40..44 hold nothing
        inside = np.isin(sv, pick)
        if not inside.any():
            assert bodies.majority(pick) == 0
            continue
        totals = np.bincount(body[inside], minlength=6)
        assert bodies.majority(pick) == int(np.argmax(totals))


def test_a_search_an_edit_tore_is_returned_but_not_kept(tmp_path, monkeypatch):
    import napari_connectome.candidates.find as find_module

    project = make_demo_project(tmp_path / "demo", shape=(8, 32, 32), n_bodies=5, n_supervoxels=60, threshold=0.5)
    with Proofreader.open(project, user="test") as pr:
        cache = CandidateCache()
        real = find_module.find_candidates

        def torn(proofreader, **kw):
            out = real(proofreader, **kw)
            proofreader.version += 1  # as if an edit landed meanwhile, from another thread
            return out

        monkeypatch.setattr(find_module, "find_candidates", torn)
        first = cache(pr)
        monkeypatch.setattr(find_module, "find_candidates", real)
        again = cache(pr)
        assert cache.last_new == len(again) == len(first)  # searched in full again: nothing torn was kept
        apply_candidate(pr, again[0], suggested_by="test")
        _same(cache(pr), find_candidates(pr))
        assert cache.last_new < len(again)


@pytest.mark.parametrize("seed", [0, 1])
def test_unplaced_candidates_are_placed_later_where_a_placing_search_puts_them(tmp_path, seed):
    from napari_connectome.candidates import locate_candidates

    project = make_demo_project(tmp_path / "demo", shape=(8, 32, 32), n_bodies=5, n_supervoxels=60, threshold=0.5,
                                seed=seed)
    rng = np.random.default_rng(seed)
    with Proofreader.open(project, user="test") as pr:
        lazy = CandidateCache(locate=False)
        for _step in range(6):
            found = lazy(pr)
            placed = find_candidates(pr)
            assert len(found) == len(placed) > 0
            unplaced = [c for c in found if np.isnan(c.location_nm[0])]
            assert unplaced  # contact and cut candidates wait to be placed
            # Placed one by one (a task about to be shown), each where the full search put it.
            for i in rng.permutation(len(found))[:5].tolist():
                lazy.locate(pr, [found[i]])
            lazy.locate(pr, found)
            _same(found, placed)
            c = found[int(rng.integers(len(found)))]
            apply_candidate(pr, c, suggested_by="test")
        # The function form, without a cache's locations.
        fresh = find_candidates(pr, locate=False)
        locate_candidates(pr, fresh)
        _same(fresh, find_candidates(pr))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_majorities_of_many_segments_at_once_are_each_segments_own(seed):
    """remember_segments (one pass) gives segment_majority's answer (one scan per segment), ties included."""
    from types import SimpleNamespace

    from napari_connectome.candidates.labels import SupervoxelBodies

    rng = np.random.default_rng(seed)
    sv = rng.integers(1, 300, 4000)
    body = rng.integers(1, 4, 4000)  # few bodies, small counts: many ties
    pairs, counts = np.unique(np.stack([sv, body], axis=1), axis=0, return_counts=True)
    ids = np.arange(0, 320, dtype=np.uint64)  # 300..319 have no ground truth
    seg = rng.integers(1, 60, ids.size).astype(np.uint64)
    seg[0] = 0
    state = SimpleNamespace(ids=ids, seg=seg)
    pr = SimpleNamespace(state=state, segment_supervoxels=lambda s: ids[np.flatnonzero(seg == np.uint64(s))])
    one, many = (SupervoxelBodies(pairs[:, 0], pairs[:, 1], counts) for _ in range(2))
    segments = np.unique(seg[1:]).tolist()
    many.remember_segments(pr, [*segments, 999])  # 999 holds nothing: left to segment_majority
    assert 999 not in many._segments
    for s in segments:
        assert many._segments[s] == one.segment_majority(pr, s), s


def test_the_members_index_answers_as_the_state_scan_does():
    from napari_connectome.candidates.find import _Members

    rng = np.random.default_rng(7)
    seg = rng.integers(0, 50, 2000).astype(np.uint64)
    members = _Members(seg)
    for s in [0, *range(1, 55)]:  # 50..54 hold nothing
        want = np.flatnonzero(seg == np.uint64(s)) if s else np.empty(0, np.int64)
        got = members(s)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("seed", [3, 4])
def test_majorities_of_many_sets_are_each_sets_majority(seed):
    from napari_connectome.candidates.labels import SupervoxelBodies

    rng = np.random.default_rng(seed)
    sv = rng.integers(1, 200, 3000)
    body = rng.integers(1, 4, 3000)
    pairs, counts = np.unique(np.stack([sv, body], axis=1), axis=0, return_counts=True)
    bodies = SupervoxelBodies(pairs[:, 0], pairs[:, 1], counts)
    sets = [rng.choice(220, int(rng.integers(0, 6)), replace=False) for _ in range(300)]  # 200.. hold nothing
    group = np.repeat(np.arange(len(sets)), [len(x) for x in sets])
    got = bodies.majorities(group, np.concatenate(sets), len(sets))
    assert got.tolist() == [bodies.majority(x) for x in sets]


def test_a_list_told_with_serials_of_another_length_is_refused():
    with pytest.raises(ValueError, match="serials for"):
        remember([object(), object()], np.arange(3))
