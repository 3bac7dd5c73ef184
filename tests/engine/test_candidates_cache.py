"""Candidates found again after edits: the cached contact scans give exactly what fresh scans give.

On the bundled gala-fib sample (agglomerated at 0.5), every comparison runs
``find_candidates`` with the cache (continuing from the previous calls) and
then with it switched off (two whole-volume scans), and asks for the same
candidates bit for bit: ids, order, locations, features.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_connectome.candidates import contacts, find_candidates
from napari_connectome.graph import agglomerate_project
from napari_connectome.proofread import Proofreader
from napari_connectome.samples import gala_fib_project


@pytest.fixture
def pr(tmp_path):
    project = gala_fib_project(tmp_path / "gala")
    agglomerate_project(project, threshold=0.5)
    with Proofreader.open(project, user="test") as p:
        yield p


class Spy:
    """Counts the whole-row scans and the nearest-face scans (candidates searched, boxes) of cached calls."""

    def __init__(self, monkeypatch) -> None:
        self.row_scans = 0
        self.searched: list[tuple[int, object]] = []
        scan, nearest = contacts._scan_rows, contacts.nearest_faces

        def scan_rows(*a, **k):
            self.row_scans += 1
            return scan(*a, **k)

        def nearest_faces(pr, want, row_of, cand_of, targets, *, box=None):
            self.searched.append((targets.shape[0], box))
            return nearest(pr, want, row_of, cand_of, targets, box=box)

        monkeypatch.setattr(contacts, "_scan_rows", scan_rows)
        monkeypatch.setattr(contacts, "nearest_faces", nearest_faces)

    def reset(self) -> None:
        self.row_scans = 0
        self.searched = []


def _signature(cands) -> list[tuple]:
    # repr: exact for floats, and NaN features compare equal to themselves.
    return [(c.id, c.kind, repr(c.location_nm), c.segments, c.supervoxels, c.sinks, c.source,
             tuple((k, repr(v)) for k, v in c.features.items()), repr(c.impact)) for c in cands]


def _compare(pr, spy: Spy, monkeypatch) -> list:
    """Cached and uncached candidates of the state now; asserts they are identical. Returns the cached ones."""
    spy.reset()
    cached = find_candidates(pr)
    calls = (spy.row_scans, list(spy.searched))
    monkeypatch.setattr(contacts, "LOCATE_CACHE", False)
    fresh = find_candidates(pr)
    monkeypatch.setattr(contacts, "LOCATE_CACHE", True)
    assert len(cached) > 100
    assert _signature(cached) == _signature(fresh)
    assert all(np.isfinite(c.location_nm).all() for c in cached)
    spy.row_scans, spy.searched = calls
    return cached


def _places(cands) -> list[tuple]:
    return sorted((c.kind, c.location_nm) for c in cands)


def _nm(pr, idx) -> tuple[float, float, float]:
    lv = pr.supervoxel_volume().levels[0]
    return tuple(float(x) for x in np.asarray(lv.offset) + np.asarray(idx) * np.asarray(lv.voxel_size))


def _split_inside_lone_supervoxel(pr):
    """Split the largest supervoxel that is a segment alone inside, by seeds at its two ends along x; its id.

    A lone one: ``find_candidates`` does not yet handle a segment of several
    supervoxels one of which was minted by a split inside (the sizes it
    looks up cover the base supervoxels only).
    """
    sv = np.asarray(pr.supervoxel_volume().levels[0].array[:, :, :])
    ids, counts = np.unique(sv[sv > 0], return_counts=True)
    lone = [(int(n), int(i)) for i, n in zip(ids, counts, strict=True)
            if pr.segment_supervoxels(pr.segment_of(int(i))).size == 1]
    n, x = max(lone)
    assert n > 10_000
    pts = np.argwhere(sv == x)
    preview = pr.preview_split([_nm(pr, pts[np.argmin(pts[:, 2])])], [_nm(pr, pts[np.argmax(pts[:, 2])])])
    assert preview.inside_supervoxel and preview.supervoxel == x
    pr.split(preview)
    return x


def test_cached_find_is_identical_through_edits_and_undo(pr, monkeypatch):
    monkeypatch.setattr(contacts, "LOCATE_CACHE", True)
    contacts.clear_locate_cache(pr)
    spy = Spy(monkeypatch)
    first = _compare(pr, spy, monkeypatch)
    assert spy.row_scans == 1

    # A merge: no new scan of the rows; only the candidates with new contacts are searched for.
    fs = max((c for c in first if c.kind == "false_split"), key=lambda c: c.features["contact_area"])
    pr.merge_supervoxels(*fs.supervoxels)
    merged = _compare(pr, spy, monkeypatch)
    assert spy.row_scans == 0
    searched = sum(n for n, _ in spy.searched)
    assert 0 < searched < len(merged) // 4

    # A graph split (min-cut between a false merge's two sides).
    fm = next(c for c in merged if c.kind == "false_merge")
    pr.split(pr.preview_split_supervoxels(fm.supervoxels, fm.sinks))
    _compare(pr, spy, monkeypatch)
    assert spy.row_scans == 0

    # Undo: the candidates after the merge come back (new segment ids, same places), all remembered.
    pr.undo()
    again = _compare(pr, spy, monkeypatch)
    assert _places(again) == _places(merged)
    assert spy.row_scans == 0 and spy.searched == []

    # A split inside a supervoxel changes the voxels: scanned again from scratch.
    _split_inside_lone_supervoxel(pr)
    _compare(pr, spy, monkeypatch)
    assert spy.row_scans == 1
    pr.undo()
    _compare(pr, spy, monkeypatch)
    assert spy.row_scans == 0  # the base voxels again: their scan is read back from the project
    pr.undo()  # the merge
    back = _compare(pr, spy, monkeypatch)
    assert spy.row_scans == 0
    assert _places(back) == _places(first)


def test_cache_is_dropped_when_supervoxel_voxels_change(pr, monkeypatch):
    monkeypatch.setattr(contacts, "LOCATE_CACHE", True)
    contacts.clear_locate_cache(pr)
    find_candidates(pr)
    before = contacts._entries[pr].geometry
    key = contacts.geometry_key(pr)
    x = _split_inside_lone_supervoxel(pr)
    assert contacts.geometry_key(pr) != key
    find_candidates(pr)
    after = contacts._entries[pr].geometry
    assert after is not before
    # The rows of the divided supervoxel had faces; now it has no voxels, so they have none.
    st = pr.state
    (px,) = st.positions([x])
    of_x = np.flatnonzero((st.rag_u == px) | (st.rag_v == px))
    assert of_x.size and (before.count[of_x] > 0).all() and (after.count[of_x] == 0).all()
    # And every row's sums are those of a fresh whole-volume scan.
    count, total = contacts.row_centroids(pr, np.ones(st.rag_u.size, bool))
    np.testing.assert_array_equal(after.count, count)
    np.testing.assert_array_equal(after.total, total)
    pr.undo()
    find_candidates(pr)
    restored = contacts._entries[pr].geometry
    np.testing.assert_array_equal(restored.count, before.count)
    np.testing.assert_array_equal(restored.total, before.total)


@pytest.mark.parametrize("slab_z", [7, 16])
def test_box_scan_yields_the_box_faces_in_whole_scan_order(pr, slab_z):
    want = np.ones(pr.state.rag_u.size, bool)

    def faces(box):
        rows, coords = zip(*contacts._faces(pr, want, slab_z=slab_z, box=box), strict=True)
        rows, coords = np.concatenate(rows), np.concatenate(coords)
        low = np.floor(coords).astype(np.int64)
        lo, hi = np.asarray(box[0]), np.asarray(box[1])
        inside = ((low >= lo) & (low < hi)).all(axis=1)
        return rows[inside], coords[inside]

    shape = tuple(int(s) for s in pr.supervoxel_volume().levels[0].array.shape)
    whole = (0, 0, 0), shape
    rng = np.random.default_rng(0)
    for _ in range(4):
        lo = tuple(int(rng.integers(0, s - 4)) for s in shape)
        hi = tuple(int(rng.integers(a + 1, s + 1)) for a, s in zip(lo, shape, strict=True))
        rows_w, coords_w = faces(whole)
        w_in = ((np.floor(coords_w) >= lo) & (np.floor(coords_w) < hi)).all(axis=1)
        rows_b, coords_b = faces((lo, hi))
        assert rows_b.size > 0
        np.testing.assert_array_equal(rows_b, rows_w[w_in])
        np.testing.assert_array_equal(coords_b, coords_w[w_in])


def test_row_boxes_hold_every_face_of_their_row(pr, monkeypatch):
    monkeypatch.setattr(contacts, "LOCATE_CACHE", True)
    contacts.clear_locate_cache(pr)
    find_candidates(pr)
    geo = contacts._entries[pr].geometry
    for rows, coords in contacts._faces(pr, np.ones(geo.count.size, bool)):
        low = np.floor(coords).astype(np.int64)
        assert ((low >= geo.lo[rows]) & (low < geo.hi[rows])).all()
    none = geo.count == 0
    assert (geo.hi[none] <= geo.lo[none]).all()


def test_disabled_cache_keeps_nothing(pr, monkeypatch):
    monkeypatch.setattr(contacts, "LOCATE_CACHE", False)
    contacts.clear_locate_cache(pr)
    find_candidates(pr)
    assert pr not in contacts._entries


def test_concurrent_finds_agree(pr, monkeypatch):
    monkeypatch.setattr(contacts, "LOCATE_CACHE", False)
    reference = _signature(find_candidates(pr))
    monkeypatch.setattr(contacts, "LOCATE_CACHE", True)
    contacts.clear_locate_cache(pr)
    out: list = [None, None]

    def run(i):
        out[i] = _signature(find_candidates(pr))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out[0] == reference and out[1] == reference


def test_find_handles_a_segment_holding_a_supervoxel_minted_by_a_split_inside(pr):
    """Regression: sizes of minted supervoxels were looked up in the base table (IndexError)."""
    from napari_connectome.candidates import find_candidates

    sv = np.asarray(pr.supervoxel_volume().levels[0].array[:, :, :])
    ids, counts = np.unique(sv[sv > 0], return_counts=True)
    shared = [(int(n), int(i)) for i, n in zip(ids, counts, strict=True)
              if pr.segment_supervoxels(pr.segment_of(int(i))).size > 1]
    n, x = max(shared)
    pts = np.argwhere(sv == x)
    preview = pr.preview_split([_nm(pr, pts[np.argmin(pts[:, 2])])], [_nm(pr, pts[np.argmax(pts[:, 2])])],
                               inside=True)
    assert preview.inside_supervoxel and preview.supervoxel == x
    pr.split(preview)
    minted = set(int(s) for s in np.asarray(pr.mapping()[0])) - set(int(i) for i in ids)
    assert minted
    found = find_candidates(pr)
    assert found
    for c in found:
        if set(c.supervoxels) & minted or set(c.sinks) & minted:
            assert c.features["log_size_small"] > 0 or c.kind == "false_split"
    # Every live supervoxel's size counts in its segment: the minted ones add up to the one they replaced.
    total = sum(pr.supervoxel_size(s) for s in minted)
    assert total == n


def _rows_file(pr):
    return pr.project.component_path("graph") / contacts.GEOMETRY_FILE


def test_row_scan_is_kept_in_the_project_for_the_next_session(pr, monkeypatch):
    monkeypatch.setattr(contacts, "LOCATE_CACHE", True)
    contacts.clear_locate_cache()
    path = _rows_file(pr)
    path.unlink(missing_ok=True)
    spy = Spy(monkeypatch)
    first = find_candidates(pr)
    assert spy.row_scans == 1 and path.is_file()
    # another session (another process would do the same): the stored scan, no scan, the same places
    with Proofreader.open(pr.project.root, read_only=True) as other:
        spy.reset()
        again = find_candidates(other)
        assert spy.row_scans == 0
        assert _signature(again) == _signature(first)
        contacts.clear_locate_cache(other)
    # a stale stamp (another graph), a damaged file: scanned again, and a good file written back
    for damage in ("stale", "garbage"):
        if damage == "stale":
            with np.load(path) as f:
                arrays = {k: f[k] for k in f.files}
            arrays["stamp"] = np.array(str(arrays["stamp"]).replace('"version": 1', '"version": 0'))
            np.savez(path, **arrays)
        else:
            path.write_bytes(b"not an npz")
        contacts.clear_locate_cache(pr)
        spy.reset()
        assert _signature(find_candidates(pr)) == _signature(first)
        assert spy.row_scans == 1
        with np.load(path) as f:
            assert contacts._load_rows(pr, str(f["stamp"]), pr.state.rag_u.size) is not None


def test_row_scan_is_not_written_by_a_read_only_session_nor_with_a_split_inside_on(pr, monkeypatch):
    monkeypatch.setattr(contacts, "LOCATE_CACHE", True)
    contacts.clear_locate_cache()
    path = _rows_file(pr)
    path.unlink(missing_ok=True)
    with Proofreader.open(pr.project.root, read_only=True) as other:
        find_candidates(other)
        contacts.clear_locate_cache(other)
    assert not path.exists()
    _split_inside_lone_supervoxel(pr)
    spy = Spy(monkeypatch)
    find_candidates(pr)
    assert spy.row_scans == 1 and not path.exists()  # this state's voxels are not the base volume's
    pr.undo()
    find_candidates(pr)
    assert spy.row_scans == 2 and path.exists()


@pytest.mark.parametrize("sparse", [False, True])
def test_position_lookup_is_searchsorted(sparse):
    rng = np.random.default_rng(5)
    ids = np.unique(rng.integers(1, 5000 if sparse else 300, 200)).astype(np.uint64)
    ids = np.concatenate([[np.uint64(0)], ids])
    block = rng.integers(0, int(ids[-1]) + 50, (6, 20, 30)).astype(np.uint32)  # absent labels and labels past the top
    for n_voxels in (10, 10**9):  # searchsorted itself, and the table
        got = contacts.position_lookup(ids, n_voxels)(block)
        np.testing.assert_array_equal(got, np.searchsorted(ids, block.astype(np.uint64)))
        assert got.dtype == np.searchsorted(ids, block.astype(np.uint64)).dtype
