"""The candidate list kept in the project: read back only for the very state it was found for, equal to a search."""

from __future__ import annotations

import numpy as np
import pytest
from test_candidates_cache import _split_inside_lone_supervoxel
from test_candidates_incremental import _same

from napari_connectome.candidates import (
    CandidateCache,
    apply_candidate,
    find,
    find_candidates,
    kept,
)
from napari_connectome.graph import agglomerate_project
from napari_connectome.proofread import Proofreader
from napari_connectome.samples import gala_fib_project


@pytest.fixture
def project(tmp_path):
    project = gala_fib_project(tmp_path / "gala")
    agglomerate_project(project, threshold=0.5)
    return project


class Searches:
    """Counts the full searches a cache makes (an incremental one passes ``only_segments``)."""

    def __init__(self, monkeypatch) -> None:
        self.full = 0
        real = find.find_candidates

        def counted(pr, **kw):
            if kw.get("only_segments") is None:
                self.full += 1
            return real(pr, **kw)

        monkeypatch.setattr(find, "find_candidates", counted)


def _path(pr):
    return kept.kept_path(pr)


def test_the_next_session_reads_the_list_instead_of_searching(project, monkeypatch):
    searches = Searches(monkeypatch)
    with Proofreader.open(project, user="a") as pr:
        first = CandidateCache(locate=False)(pr)
        assert searches.full == 1 and _path(pr).is_file()
    for read_only in (False, True):
        with Proofreader.open(project, user="b", read_only=read_only) as pr:
            cache = CandidateCache(locate=False)
            again = cache(pr)
            assert searches.full == 1  # read, not searched
            _same(again, first)
            _same(again, find_candidates(pr, locate=False))
            # placed later where an eager search places them (the rows that place them are kept too)
            cache.locate(pr, again)
            assert not any(np.isnan(c.location_nm[0]) for c in again)
            _same(again, find_candidates(pr))


def test_a_session_keeps_the_list_its_edits_left_and_the_next_one_starts_from_it(project, monkeypatch):
    searches = Searches(monkeypatch)
    with Proofreader.open(project, user="a") as pr:
        cache = CandidateCache(locate=False)
        candidates = cache(pr)
        merge = next(c for c in candidates if c.kind == "false_split")
        assert apply_candidate(pr, merge, suggested_by="test") is not None
        split = next(c for c in cache(pr) if c.kind == "false_merge")
        assert apply_candidate(pr, split, suggested_by="test") is not None
        assert cache.keep(pr)
        assert not cache.keep(pr)  # kept already: not written twice
        edited = cache(pr)
    assert searches.full == 1
    with Proofreader.open(project, user="a") as pr:  # the edit log replays both edits
        again = CandidateCache(locate=False)(pr)
        assert searches.full == 1
        _same(again, edited)
        _same(again, find_candidates(pr, locate=False))
        pr.undo()  # a state the file was not written for: searched
        _same(CandidateCache(locate=False)(pr), find_candidates(pr, locate=False))
        assert searches.full == 2


@pytest.mark.parametrize("damage", ["stale", "garbage", "truncated", "columns"])
def test_a_stale_or_damaged_list_is_searched_again_and_written_back(project, monkeypatch, damage):
    searches = Searches(monkeypatch)
    with Proofreader.open(project, user="a") as pr:
        first = CandidateCache(locate=False)(pr)
        path = _path(pr)
        with np.load(path) as f:
            arrays = {k: f[k] for k in f.files}
        if damage == "stale":
            arrays["stamp"] = np.array("0" * 64)
            np.savez(path, **arrays)
        elif damage == "columns":
            arrays["impact"] = arrays["impact"][:-1]
            np.savez(path, **arrays)
        elif damage == "truncated":
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        else:
            path.write_bytes(b"not an npz")
        again = CandidateCache(locate=False)(pr)
        assert searches.full == 2
        _same(again, first)
        CandidateCache(locate=False)(pr)
        assert searches.full == 2  # the good list was written back


def test_options_and_read_only_sessions_and_splits_inside_are_kept_apart(project, monkeypatch):
    searches = Searches(monkeypatch)
    with Proofreader.open(project, user="a", read_only=True) as pr:
        CandidateCache(locate=False)(pr)
        assert not _path(pr).exists()  # a read-only session writes nothing
        assert not CandidateCache(locate=False).keep(pr)  # (it searched, as a new cache does)
    assert searches.full == 2
    with Proofreader.open(project, user="a") as pr:
        CandidateCache(locate=False)(pr)
        assert searches.full == 3
        # other options, another list: searched, not read
        one = CandidateCache(locate=False, weakest_links=1)(pr)
        assert searches.full == 4
        _same(one, find_candidates(pr, locate=False, weakest_links=1))
        assert kept.state_stamp(pr, {"skeletons": {1: object()}}) is None
        assert CandidateCache(locate=False, kept=False)(pr) and searches.full == 5
        _split_inside_lone_supervoxel(pr)
        assert kept.state_stamp(pr, {"locate": False}) is None  # minted supervoxels: never kept
        before = _path(pr).read_bytes()
        cache = CandidateCache(locate=False)
        _same(cache(pr), find_candidates(pr, locate=False))
        assert not cache.keep(pr) and _path(pr).read_bytes() == before


def test_the_stamp_follows_the_state_and_a_replayed_log_gives_the_same(project):
    options = {"locate": False}
    with Proofreader.open(project, user="a") as pr:
        base = kept.state_stamp(pr, options)
        assert base == kept.state_stamp(pr, dict(options)) and len(base) == 64
        assert kept.state_stamp(pr, {"locate": True}) != base
        c = next(c for c in find_candidates(pr, locate=False) if c.kind == "false_split")
        apply_candidate(pr, c, suggested_by="test")
        merged = kept.state_stamp(pr, options)
        pr.undo()  # the two segments come back under new ids (ids are never reused): another state
        undone = kept.state_stamp(pr, options)
        assert len({base, merged, undone}) == 3
    with Proofreader.open(project, user="a") as pr:  # the log replayed: the very same state
        assert kept.state_stamp(pr, options) == undone


def test_an_empty_list_round_trips(tmp_path):
    kept.save_candidates(tmp_path / "c.npz", [], "s")
    assert kept.load_candidates(tmp_path / "c.npz", "s") == []
    assert kept.load_candidates(tmp_path / "c.npz", "t") is None
    assert kept.load_candidates(tmp_path / "missing.npz", "s") is None
