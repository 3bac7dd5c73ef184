"""Skeletons: TEASAR geometry in nm, the project store, incremental updates after edits."""

from __future__ import annotations

import numpy as np
import pytest

from napari_connectome.errors import InputError
from napari_connectome.skeleton import (
    Skeleton,
    SkeletonStore,
    StaleSkeletonsError,
    skeleton_paths,
    skeletonize,
)


def _capsule(shape, voxel_size, a_nm, b_nm, r_nm):
    """Boolean mask of the voxels within r_nm of the segment a-b (world nm, voxel centres at i*vs)."""
    vs = np.asarray(voxel_size, float)
    grid = np.stack(np.meshgrid(*[np.arange(s) * v for s, v in zip(shape, vs, strict=True)], indexing="ij"), -1)
    a, b = np.asarray(a_nm, float), np.asarray(b_nm, float)
    ab = b - a
    t = np.clip(((grid - a) @ ab) / (ab @ ab), 0, 1)
    d = np.linalg.norm(grid - (a + t[..., None] * ab), axis=-1)
    return d <= r_nm


def _tube(voxel_size, *, length_nm=2000.0, r_nm=60.0):
    vs = np.asarray(voxel_size, float)
    shape = tuple(int(s) for s in np.ceil(np.array([length_nm + 400, 400, 400]) / vs))
    z, y, x = np.meshgrid(*[np.arange(s) * v for s, v in zip(shape, vs, strict=True)], indexing="ij")
    mask = ((y - 200) ** 2 + (x - 200) ** 2 <= r_nm**2) & (z >= 200) & (z < 200 + length_nm)
    return mask.astype(np.uint32) * 7


def test_tube_is_one_path_of_its_length():
    sks = skeletonize(_tube((8, 8, 8)), voxel_size=(8, 8, 8))
    assert list(sks) == [7]
    sk = sks[7]
    assert abs(sk.path_length_nm - 2000.0) <= 200.0
    assert len(sk.endpoints()) == 2
    assert len(sk.branch_points()) == 0
    # Ends point outwards along the tube axis (z), one up, one down.
    dirs = sk.endpoint_directions(k_nm=300)
    zs = sk.vertices_nm[sk.endpoints(), 0]
    lower = int(np.argmin(zs))
    assert dirs[lower, 0] < -0.8 and dirs[1 - lower, 0] > 0.8
    assert np.allclose(np.linalg.norm(dirs, axis=1), 1.0)
    # Radii are the tube's radius, in nm.
    assert 30.0 < float(np.median(sk.radii_nm)) < 80.0


def test_anisotropic_voxels_give_the_same_length_in_nm():
    iso = skeletonize(_tube((8, 8, 8)), voxel_size=(8, 8, 8))[7]
    aniso = skeletonize(_tube((40, 8, 8)), voxel_size=(40, 8, 8))[7]
    assert abs(aniso.path_length_nm - 2000.0) <= 200.0
    assert abs(aniso.path_length_nm - iso.path_length_nm) <= 0.1 * iso.path_length_nm
    # Ignoring the anisotropy would make the tube 5x shorter.
    wrong = skeletonize(_tube((40, 8, 8)), voxel_size=(8, 8, 8))[7]
    assert wrong.path_length_nm < 0.5 * aniso.path_length_nm


def test_offset_moves_vertices_into_world_nm():
    labels = _tube((40, 8, 8))
    base = skeletonize(labels, voxel_size=(40, 8, 8))[7]
    moved = skeletonize(labels, voxel_size=(40, 8, 8), offset=(1000.0, -80.0, 16.0))[7]
    assert np.allclose(moved.vertices_nm - base.vertices_nm, [1000.0, -80.0, 16.0])
    assert np.array_equal(moved.edges, base.edges)


def test_y_has_one_branch_point_and_three_ends():
    vs = (8.0, 8.0, 8.0)
    shape = (40, 200, 200)
    centre = (160.0, 800.0, 800.0)
    mask = np.zeros(shape, bool)
    for end in [(160.0, 80.0, 800.0), (160.0, 1400.0, 200.0), (160.0, 1400.0, 1400.0)]:
        mask |= _capsule(shape, vs, centre, end, 56.0)
    sk = skeletonize(mask.astype(np.uint8), voxel_size=vs)[1]
    assert len(sk.endpoints()) == 3
    assert len(sk.branch_points()) == 1
    # Each end lies near an arm's tip and its direction points away from the centre.
    dirs = sk.endpoint_directions(k_nm=200)
    out = sk.vertices_nm[sk.endpoints()] - np.asarray(centre)
    cos = np.sum(dirs * out / np.linalg.norm(out, axis=1, keepdims=True), axis=1)
    assert np.all(cos > 0.8)
    assert len(sk.branches()) == 3
    assert sum(len(p) for p in skeleton_paths({1: sk})) == len(sk.vertices_nm) + 2  # the junction, 3 times


def test_dust_and_segment_ids_and_bad_input():
    labels = _tube((40, 8, 8))
    labels[0:2, 0:2, 0:2] = 3  # 8 voxels: dust
    assert list(skeletonize(labels, voxel_size=(40, 8, 8))) == [7]
    assert skeletonize(labels, voxel_size=(40, 8, 8), segment_ids=[3], dust_voxels=0).keys() == {3}
    assert skeletonize(np.zeros((4, 4, 4), np.uint8), voxel_size=(1, 1, 1)) == {}
    with pytest.raises(InputError, match="3D"):
        skeletonize(np.zeros((4, 4), np.uint8), voxel_size=(1, 1))
    with pytest.raises(InputError, match="unknown parameter"):
        skeletonize(labels, voxel_size=(40, 8, 8), teasar={"sclae": 2})
    with pytest.raises(InputError):
        skeletonize(labels, voxel_size=(0, 8, 8))


def test_skeleton_geometry_by_hand():
    v = np.array([[0, 0, 0], [0, 0, 30], [0, 40, 30], [0, 0, 60]], np.float32)
    sk = Skeleton(5, v, [[0, 1], [1, 2], [1, 3]], [1, 1, 1, 1])
    assert sk.path_length_nm == pytest.approx(100.0)
    assert set(sk.endpoints().tolist()) == {0, 2, 3}
    assert sk.branch_points().tolist() == [1]
    dirs = dict(zip(sk.endpoints().tolist(), sk.endpoint_directions(k_nm=1000).tolist(), strict=True))
    assert np.allclose(dirs[0], [0, 0, -1]) and np.allclose(dirs[2], [0, 1, 0]) and np.allclose(dirs[3], [0, 0, 1])
    assert len(sk.branches()) == 3
    loop = Skeleton(1, v[:3], [[0, 1], [1, 2], [2, 0]], [1, 1, 1])
    (path,) = loop.branches()
    assert len(path) == 4 and np.array_equal(path[0], path[-1])


# ------------------------------------------------------------ store + edits
@pytest.fixture
def demo(tmp_path):
    from napari_connectome.proofread import Proofreader
    from napari_connectome.proofread.demo import make_demo_project

    project = make_demo_project(tmp_path / "p", shape=(20, 64, 64), n_bodies=6, n_supervoxels=80,
                                voxel_size=(20.0, 10.0, 10.0))
    pr = Proofreader.open(project, user="test")
    yield project, pr
    pr.close()


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(a[k].equals(b[k]) for k in a)


def _big_segments(pr, n):
    sv, seg = pr.mapping()
    ids, counts = np.unique(seg, return_counts=True)
    return [int(s) for s in ids[np.argsort(-counts)][:n]], sv, seg


def test_store_round_trip_and_stale_signature(demo):
    project, pr = demo
    store = SkeletonStore.rebuild(pr, dust_voxels=50)
    assert len(store) >= 4
    assert "skeletons" in project.manifest["components"]
    loaded = SkeletonStore.load(project, proofreader=pr)
    assert _same(loaded.skeletons, store.skeletons)
    seg = next(iter(store.skeletons))
    assert loaded.get(seg).equals(store.get(seg)) and loaded.get(10**12) is None
    # An edit the store did not see makes it stale: refused on load, rebuilt by open.
    (a, b), sv, seg_of = _big_segments(pr, 2)
    pr.merge_supervoxels(int(sv[seg_of == a][0]), int(sv[seg_of == b][0]))
    with pytest.raises(StaleSkeletonsError, match="another state"):
        SkeletonStore.load(project, proofreader=pr)
    assert not loaded.is_current(pr)
    reopened = SkeletonStore.open(pr, dust_voxels=50)
    assert reopened.is_current(pr) and a not in reopened.skeletons and b not in reopened.skeletons
    # Other parameters are another signature too.
    assert SkeletonStore.signature_of(pr, dust_voxels=10) != reopened.signature


def test_load_refuses_missing_or_garbage(demo, tmp_path):
    project, pr = demo
    with pytest.raises(InputError, match="no skeletons"):
        SkeletonStore.load(project)
    path = SkeletonStore.path(project)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not an npz")
    with pytest.raises(InputError, match="not a readable"):
        SkeletonStore.load(project)
    assert SkeletonStore.open(pr, dust_voxels=50).is_current(pr)  # rebuilt over it


def test_incremental_update_equals_rebuild_through_merge_split_undo(demo, monkeypatch):
    project, pr = demo
    store = SkeletonStore.rebuild(pr, dust_voxels=50)
    pr.add_listener(lambda r: store.update_after_edit(pr, r))
    calls = []
    import napari_connectome.skeleton.store as store_mod

    real = store_mod.skeletonize_voxels

    def spy(labels, **kw):
        calls.append(labels.shape)
        return real(labels, **kw)

    monkeypatch.setattr(store_mod, "skeletonize_voxels", spy)
    (a, b, c), sv, seg_of = _big_segments(pr, 3)
    untouched_before = {k: v for k, v in store.skeletons.items() if k not in (a, b)}

    merged = pr.merge_supervoxels(int(sv[seg_of == a][0]), int(sv[seg_of == b][0]))
    # Only the new segment was skeletonized, in a crop smaller than the volume.
    assert len(calls) == 1 and np.prod(calls[0]) < 20 * 64 * 64
    full = SkeletonStore.rebuild(pr, dust_voxels=50, save=False)
    assert _same(store.skeletons, full.skeletons)
    (new,) = merged.after_segments
    assert new in store.skeletons and a not in store.skeletons and b not in store.skeletons
    for k, v in untouched_before.items():
        assert store.skeletons[k] is v  # not recomputed

    # A graph split of the merged segment back into its two sides, then undo and redo.
    src = pr.segment_supervoxels(new)[:1]
    others = [s for s in sv[seg_of == b] if s not in src]
    pr.split(pr.preview_split_supervoxels(src, others[:1]))
    assert _same(store.skeletons, SkeletonStore.rebuild(pr, dust_voxels=50, save=False).skeletons)
    pr.undo()
    assert _same(store.skeletons, SkeletonStore.rebuild(pr, dust_voxels=50, save=False).skeletons)
    pr.redo()
    assert _same(store.skeletons, SkeletonStore.rebuild(pr, dust_voxels=50, save=False).skeletons)
    # The saved store followed every edit.
    assert SkeletonStore.load(project, proofreader=pr).is_current(pr)


def test_incremental_update_after_a_split_inside_a_supervoxel(demo):
    project, pr = demo
    store = SkeletonStore.rebuild(pr, dust_voxels=50)
    pr.add_listener(lambda r: store.update_after_edit(pr, r))
    vol = pr.supervoxel_volume().levels[0]
    sv = np.asarray(vol.array[...])
    ids, counts = np.unique(sv[sv > 0], return_counts=True)
    big = int(ids[np.argmax(counts)])
    idx = np.argwhere(sv == big)
    far = idx[np.argmax(np.linalg.norm(idx - idx[0], axis=1))]
    to_nm = lambda i: tuple(float(o + k * v) for o, k, v in zip(vol.offset, i, vol.voxel_size, strict=True))  # noqa: E731
    result = pr.split(sources_nm=[to_nm(idx[0])], sinks_nm=[to_nm(far)])
    assert result.type == "split_supervoxel" and result.bbox_nm is not None
    assert _same(store.skeletons, SkeletonStore.rebuild(pr, dust_voxels=50, save=False).skeletons)
