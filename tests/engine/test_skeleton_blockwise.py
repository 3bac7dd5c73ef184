"""Skeletons at scale: block by block, large segments from a coarser level, the same on any scheduler."""

from __future__ import annotations

import numpy as np
import pytest
import test_skeleton

from napari_connectome.errors import InputError
from napari_connectome.skeleton import DEFAULT_TEASAR, SkeletonStore
from napari_connectome.skeleton.blockwise import coarse_level, count_blocks, skeletonize_volume

demo = test_skeleton.demo  # the fixture: a 20 × 64 × 64 demo project and its proofreader
_same = test_skeleton._same


def _tube_labels(shape=(24, 40, 160), r_vox=4.0, axis_y=20, axis_z=12):
    """A straight tube along x (label 5) and a small ball (label 9)."""
    z, y, x = np.indices(shape)
    labels = np.zeros(shape, np.uint32)
    labels[((y - axis_y) ** 2 + (z - axis_z) ** 2 <= r_vox**2) & (x >= 4) & (x < shape[2] - 4)] = 5
    labels[(z - 12) ** 2 + (y - 6) ** 2 + (x - 20) ** 2 <= 9] = 9
    return labels


def _pyramid(tmp_path, labels, voxel_size=(10.0, 10.0, 10.0)):
    from napari_connectome.pyramid.write import write_ome_zarr
    from napari_connectome.volume import open_volume

    write_ome_zarr(tmp_path / "l.ome.zarr", labels, voxel_size=voxel_size, kind="labels", chunks=32,
                   overwrite=True)
    return open_volume(str(tmp_path / "l.ome.zarr"))


def _components(sk) -> int:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(sk.vertices_nm)
    e = sk.edges
    return int(connected_components(coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n)),
                                    directed=False)[0])


def test_one_block_is_kimimaro_over_the_whole_array(tmp_path):
    import kimimaro

    labels = _tube_labels()
    vol = _pyramid(tmp_path, labels)
    sk, levels = skeletonize_volume(vol, max_voxel_nm=10, block_voxels=512, dust_voxels=20)
    raw = kimimaro.skeletonize(labels, teasar_params=DEFAULT_TEASAR, anisotropy=(10, 10, 10), dust_threshold=20,
                               fix_borders=True, fix_branching=True, progress=False, parallel=1)
    assert sorted(sk) == sorted(raw) == [5, 9] and set(levels.values()) == {(10.0, 10.0, 10.0)}
    for seg, s in raw.items():
        want = np.unique(np.rint(np.asarray(s.vertices) / 10).astype(np.int64), axis=0) * 10.0
        np.testing.assert_array_equal(sk[seg].vertices_nm, want.astype(np.float32))


def test_a_tube_cut_by_four_blocks_is_one_unbranched_piece_of_its_length(tmp_path):
    labels = _tube_labels()
    vol = _pyramid(tmp_path, labels)
    whole, _ = skeletonize_volume(vol, max_voxel_nm=10, block_voxels=512, dust_voxels=20)
    cut, _ = skeletonize_volume(vol, max_voxel_nm=10, block_voxels=(24, 40, 40), dust_voxels=20)
    assert count_blocks(vol, max_voxel_nm=10, block_voxels=(24, 40, 40)) == 4
    tube = cut[5]
    assert _components(tube) == 1 and len(tube.branch_points()) == 0 and len(tube.endpoints()) == 2
    assert tube.path_length_nm == pytest.approx(whole[5].path_length_nm, rel=0.05)
    assert tube.path_length_nm == pytest.approx(10 * (160 - 8), rel=0.1)


def test_large_segments_come_from_the_coarse_level_and_small_ones_from_level_0(tmp_path):
    labels = _tube_labels(shape=(32, 48, 192), r_vox=8.0, axis_y=24, axis_z=16)
    vol = _pyramid(tmp_path, labels)
    assert [lv.spatial_voxel_size[0] for lv in vol.levels][:2] == [10.0, 20.0]
    assert coarse_level(vol, max_voxel_nm=20) is vol.levels[1] and coarse_level(vol, max_voxel_nm=5) is None
    sk, levels = skeletonize_volume(vol, max_voxel_nm=20, coarse_min_voxels=100, dust_voxels=20)
    assert levels == {5: (20.0, 20.0, 20.0), 9: (10.0, 10.0, 10.0)}
    # The coarse tube lies on the 20 nm grid and is as long as the full-resolution one, within a voxel an end.
    assert not np.any(np.mod(sk[5].vertices_nm - np.asarray(vol.levels[1].spatial_offset), 20.0))
    full, _ = skeletonize_volume(vol, max_voxel_nm=10, dust_voxels=20)
    assert abs(sk[5].path_length_nm - full[5].path_length_nm) <= 2 * 20 * np.sqrt(3)
    assert sk[9].equals(full[9])
    # A segment below the coarse threshold at that level is traced at level 0.
    _, levels = skeletonize_volume(vol, max_voxel_nm=20, coarse_min_voxels=10**6, dust_voxels=20)
    assert levels == {5: (10.0, 10.0, 10.0), 9: (10.0, 10.0, 10.0)}


def test_the_coarse_level_has_blocks_of_its_own_and_a_cut_tube_stays_one_piece(tmp_path):
    labels = _tube_labels(shape=(32, 48, 192), r_vox=8.0, axis_y=24, axis_z=16)
    vol = _pyramid(tmp_path, labels)
    opts = {"max_voxel_nm": 20, "coarse_min_voxels": 100, "dust_voxels": 20, "block_voxels": 512}
    one, levels = skeletonize_volume(vol, coarse_block_voxels=512, **opts)
    cut, _ = skeletonize_volume(vol, coarse_block_voxels=(16, 24, 24), **opts)  # the 20 nm level: 16×24×96
    assert levels[5] == (20.0, 20.0, 20.0)
    assert count_blocks(vol, max_voxel_nm=20, block_voxels=512, coarse_block_voxels=(16, 24, 24)) == 1 + 4
    tube = cut[5]
    assert _components(tube) == 1 and len(tube.branch_points()) == 0 and len(tube.endpoints()) == 2
    assert tube.path_length_nm == pytest.approx(one[5].path_length_nm, rel=0.05)
    assert cut[9].equals(one[9])  # level 0 is not cut differently


def test_a_volume_without_a_pyramid_gets_a_virtual_mode_level_equal_to_the_written_one(tmp_path):
    from napari_connectome.volume import from_array

    labels = _tube_labels(shape=(32, 48, 192), r_vox=8.0, axis_y=24, axis_z=16)
    written = _pyramid(tmp_path, labels)
    flat = from_array(labels, voxel_size=(10, 10, 10), kind="labels")
    virtual = coarse_level(flat, max_voxel_nm=25)
    assert virtual.spatial_voxel_size == (20.0, 20.0, 20.0)
    assert virtual.spatial_offset == written.levels[1].spatial_offset == (5.0, 5.0, 5.0)
    np.testing.assert_array_equal(np.asarray(virtual.array[...]), np.asarray(written.levels[1].array[...]))
    a, la = skeletonize_volume(flat, max_voxel_nm=25, coarse_min_voxels=100, dust_voxels=20, block_voxels=24)
    b, lb = skeletonize_volume(written, max_voxel_nm=25, coarse_min_voxels=100, dust_voxels=20, block_voxels=24)
    assert la == lb and la[5] == (20.0, 20.0, 20.0) and all(a[k].equals(b[k]) for k in a)


def test_threads_synchronous_and_a_box_of_one_segment_give_the_same_skeletons(tmp_path):
    labels = _tube_labels()
    vol = _pyramid(tmp_path, labels)
    opts = {"max_voxel_nm": 20, "coarse_min_voxels": 50, "block_voxels": 32, "dust_voxels": 20}
    a, la = skeletonize_volume(vol, scheduler="synchronous", **opts)
    b, lb = skeletonize_volume(vol, scheduler="threads", workers=2, **opts)
    assert la == lb and a.keys() == b.keys() and all(a[k].equals(b[k]) for k in a)
    lv = vol.levels[0]
    box = lv.roi_of((slice(0, 24), slice(0, 40), slice(0, 160)))
    only, _ = skeletonize_volume(vol, segment_ids=[5], roi=box, **opts)
    assert list(only) == [5] and only[5].equals(a[5])


def test_bad_settings_are_one_line(tmp_path):
    vol = _pyramid(tmp_path, _tube_labels())
    with pytest.raises(InputError, match="max voxel"):
        skeletonize_volume(vol, max_voxel_nm=0)
    with pytest.raises(InputError, match="coarse min"):
        skeletonize_volume(vol, coarse_min_voxels=0)
    with pytest.raises(InputError, match="block size"):
        skeletonize_volume(vol, block_voxels=0)
    assert skeletonize_volume(vol, segment_ids=[0]) == ({}, {})


# ------------------------------------------------------------ the store, blockwise
def test_blockwise_store_follows_merge_split_undo_and_equals_a_rebuild(demo):
    project, pr = demo
    settings = {"block_voxels": 24, "max_voxel_nm": 20.0}
    store = SkeletonStore.rebuild(pr, dust_voxels=50, method="blockwise", blockwise=settings)
    assert store.signature["blockwise"]["block_voxels"] == 24 and len(store) >= 4
    # Boxes gathered block by block are those of the whole array.
    from napari_connectome.skeleton.store import _supervoxel_boxes

    ids, boxes = _supervoxel_boxes(np.asarray(pr.supervoxel_volume().levels[0].array[...]))
    np.testing.assert_array_equal(store._sv_ids, ids)
    np.testing.assert_array_equal(store._sv_boxes, boxes)
    pr.add_listener(lambda r: store.update_after_edit(pr, r))

    def rebuilt():
        return SkeletonStore.rebuild(pr, dust_voxels=50, method="blockwise", blockwise=settings, save=False)

    sv, seg = pr.mapping()
    ids, counts = np.unique(seg, return_counts=True)
    a, b = (int(s) for s in ids[np.argsort(-counts)][:2])
    merged = pr.merge_supervoxels(int(sv[seg == a][0]), int(sv[seg == b][0]))
    assert _same(store.skeletons, rebuilt().skeletons)
    (new,) = merged.after_segments
    src = pr.segment_supervoxels(new)[:1]
    others = [s for s in sv[seg == b] if s not in src]
    pr.split(pr.preview_split_supervoxels(src, others[:1]))
    assert _same(store.skeletons, rebuilt().skeletons)
    pr.undo()
    assert _same(store.skeletons, rebuilt().skeletons)
    # Saved, current, and opened as it is (not rebuilt whole).
    loaded = SkeletonStore.open(pr, dust_voxels=50)
    assert loaded.signature.get("blockwise") == store.signature["blockwise"] and _same(loaded.skeletons,
                                                                                       store.skeletons)


def test_store_methods_and_settings_are_checked(demo):
    _project, pr = demo
    with pytest.raises(InputError, match="unknown skeleton method"):
        SkeletonStore.rebuild(pr, method="fast")
    with pytest.raises(InputError, match="unknown setting"):
        SkeletonStore.rebuild(pr, method="blockwise", blockwise={"blocks": 3})
    with pytest.raises(InputError, match="out of range"):
        SkeletonStore.rebuild(pr, method="blockwise", blockwise={"block_voxels": 2})
    auto = SkeletonStore.rebuild(pr, dust_voxels=50, save=False)
    assert "blockwise" not in auto.signature  # 20 × 64 × 64 is read whole


def test_a_cluster_of_two_worker_processes_gives_the_threads_skeletons(tmp_path):
    from distributed import Client, LocalCluster

    vol = _pyramid(tmp_path, _tube_labels())
    opts = {"max_voxel_nm": 20, "coarse_min_voxels": 50, "block_voxels": 32, "dust_voxels": 20}
    here, lh = skeletonize_volume(vol, scheduler="threads", workers=2, **opts)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        far, lf = skeletonize_volume(vol, scheduler=client, **opts)
    assert lh == lf and here.keys() == far.keys() and all(here[k].equals(far[k]) for k in here)


def test_cli_skeletonize_builds_the_store_and_refuses_nonsense(demo, capsys):
    from napari_connectome.cli import main

    project, pr = demo
    assert main(["skeletonize", str(project.root), "--block", "24", "--max-voxel", "20", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "skeletons (blockwise)" in out and "skeletons.npz" in out
    store = SkeletonStore.load(project, proofreader=pr)
    assert store.signature["blockwise"]["block_voxels"] == 24 and len(store) >= 4
    assert store.signature["blockwise"]["coarse_block_voxels"] == 128  # the default
    for bad, says in ((["--block", "3"], "out of range"), (["--coarse-block", "4"], "out of range"), (["--workers", "0"], "--workers"),
                      (["--method", "whole", "--block", "64"], "whole takes no blockwise")):
        assert main(["skeletonize", str(project.root), "--quiet", *bad]) == 2
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1
    # Nothing saved was lost to the refused runs.
    assert SkeletonStore.load(project, proofreader=pr).signature == store.signature
    assert main(["skeletonize", str(project.root / "nope"), "--quiet"]) == 2


def test_blockwise_store_after_a_split_inside_a_supervoxel_equals_a_rebuild(demo):
    _project, pr = demo
    settings = {"block_voxels": 24, "max_voxel_nm": 20.0, "coarse_min_voxels": 50}
    store = SkeletonStore.rebuild(pr, dust_voxels=50, method="blockwise", blockwise=settings)
    pr.add_listener(lambda r: store.update_after_edit(pr, r))
    vol = pr.supervoxel_volume().levels[0]
    sv = np.asarray(vol.array[...])
    ids, counts = np.unique(sv[sv > 0], return_counts=True)
    for big in ids[np.argsort(-counts)][:3]:
        idx = np.argwhere(sv == big)
        far = idx[np.argmax(np.linalg.norm(idx - idx[0], axis=1))]
        to_nm = lambda i: tuple(float(o + k * v) for o, k, v in zip(vol.offset, i, vol.voxel_size, strict=True))  # noqa: E731
        result = pr.split(sources_nm=[to_nm(idx[0])], sinks_nm=[to_nm(far)])
        assert result.type == "split_supervoxel"
        full = SkeletonStore.rebuild(pr, dust_voxels=50, method="blockwise", blockwise=settings, save=False)
        assert _same(store.skeletons, full.skeletons)
        sv = np.asarray(pr.supervoxel_volume().levels[0].array[...])


def test_mapped_mode_level_moves_only_the_merged_segments(demo):
    from napari_connectome.skeleton.blockwise import mapped_mode_level

    _project, pr = demo
    sv_level = pr.supervoxel_volume().levels[0]
    before = np.asarray(mapped_mode_level(sv_level, pr.mapping(), max_voxel_nm=20).array[...])
    sv, seg = pr.mapping()
    ids, counts = np.unique(seg, return_counts=True)
    a, b = (int(s) for s in ids[np.argsort(-counts)][:2])
    (new,) = pr.merge_supervoxels(int(sv[seg == a][0]), int(sv[seg == b][0])).after_segments
    after = np.asarray(mapped_mode_level(sv_level, pr.mapping(), max_voxel_nm=20).array[...])
    moved = before != after
    assert moved.any() and np.isin(before[moved], [a, b]).all() and (after[moved] == new).all()


def test_a_project_on_zarr_skeletonized_by_a_cluster_equals_threads(tmp_path):
    from distributed import Client, LocalCluster

    from napari_connectome.graph import agglomerate_project
    from napari_connectome.project import create_project
    from napari_connectome.proofread import Proofreader
    from napari_connectome.pyramid.write import write_ome_zarr

    labels = _tube_labels(shape=(24, 48, 96), r_vox=5.0, axis_y=24, axis_z=12)
    # Supervoxels: the tube cut into 4 along x, plus the ball; boundaries: 0 inside, 1 on cuts.
    sv = labels.astype(np.uint32) * 10 + (np.arange(96) // 24)[None, None, :].astype(np.uint32) * (labels > 0)
    p = np.where(labels > 0, 0.1, 1.0).astype(np.float32)
    write_ome_zarr(tmp_path / "sv.ome.zarr", sv, voxel_size=(10, 10, 10), kind="labels", chunks=16)
    write_ome_zarr(tmp_path / "p.ome.zarr", p, voxel_size=(10, 10, 10), kind="image", chunks=16)
    write_ome_zarr(tmp_path / "raw.ome.zarr", (255 * (1 - p)).astype(np.uint8), voxel_size=(10, 10, 10),
                   kind="image", chunks=16)
    project = create_project(tmp_path / "proj", raw=str(tmp_path / "raw.ome.zarr"),
                             supervoxels=str(tmp_path / "sv.ome.zarr"), boundaries=str(tmp_path / "p.ome.zarr"))
    agglomerate_project(project, threshold=0.5)
    settings = {"block_voxels": 32, "max_voxel_nm": 20.0, "coarse_min_voxels": 50}
    with Proofreader.open(project, read_only=True) as pr:
        here = SkeletonStore.rebuild(pr, dust_voxels=20, method="blockwise", blockwise=settings, save=False)
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
                Client(cluster) as client:
            far = SkeletonStore.rebuild(pr, dust_voxels=20, method="blockwise", blockwise=settings, save=False,
                                        scheduler=client)
    assert len(here) >= 2 and _same(here.skeletons, far.skeletons)
