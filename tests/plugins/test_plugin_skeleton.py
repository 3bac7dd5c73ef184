"""The skeletons layer draws one path per branch, in the segmentation's world frame."""

from __future__ import annotations

import numpy as np
import pytest

from napari_connectome.skeleton import Skeleton

pytestmark = pytest.mark.gui

VS = (40.0, 8.0, 8.0)
OFF = (400.0, -80.0, 16.0)


def _skeletons():
    # A Y (3 branches) and a straight piece (1 branch), in world nm on voxel centres.
    y = np.array([[0, 10, 10], [0, 10, 20], [0, 20, 30], [0, 0, 30], [0, 10, 0]], np.float64)
    y = (np.asarray(OFF) + y * np.asarray(VS)).astype(np.float32)
    line = (np.asarray(OFF) + np.array([[5, 0, 0], [6, 0, 0], [7, 1, 0]]) * np.asarray(VS)).astype(np.float32)
    return {
        11: Skeleton(11, y, [[0, 1], [1, 2], [1, 3], [0, 4]], np.ones(5)),
        42: Skeleton(42, line, [[0, 1], [1, 2]], np.ones(3)),
    }


def test_layer_has_one_path_per_branch_in_world_frame(make_napari_viewer):
    from napari_connectome_plugins._skeleton_layer import segment_colour, show_skeletons

    viewer = make_napari_viewer()
    sks = _skeletons()
    layer = show_skeletons(viewer, skeletons=sks, voxel_size=VS, offset=OFF, edge_width_nm=16.0)
    assert layer.name == "skeletons" and layer.nshapes == 3 + 1
    assert set(layer.shape_type) == {"path"}
    assert np.allclose(layer.scale, VS) and np.allclose(layer.translate, OFF)
    assert np.allclose(layer.edge_width, 2.0)
    # Every path's vertices, taken to the world, are skeleton vertices of its segment.
    for path, seg, colour in zip(layer.data, layer.features["segment_id"], layer.edge_color, strict=True):
        world = np.array([layer.data_to_world(p) for p in path])
        verts = sks[int(seg)].vertices_nm
        assert all(np.min(np.linalg.norm(verts - w, axis=1)) < 1e-3 for w in world)
        assert np.allclose(colour, segment_colour(int(seg)))
    assert sorted(layer.features["segment_id"].tolist()) == [11, 11, 11, 42]

    # Updating replaces the paths in the same layer.
    del sks[11]
    again = show_skeletons(viewer, skeletons=sks, voxel_size=VS, offset=OFF)
    assert again is layer and layer.nshapes == 1 and len(viewer.layers) == 1


def test_layer_from_a_store(make_napari_viewer, tmp_path):
    from napari_connectome_plugins._skeleton_layer import show_skeletons

    from napari_connectome.proofread import Proofreader
    from napari_connectome.proofread.demo import make_demo_project
    from napari_connectome.skeleton import SkeletonStore

    project = make_demo_project(tmp_path / "p", shape=(20, 64, 64), n_bodies=6, n_supervoxels=80)
    with Proofreader.open(project, user="test") as pr:
        store = SkeletonStore.rebuild(pr, dust_voxels=50)
        viewer = make_napari_viewer()
        layer = show_skeletons(viewer, store)
        assert layer.nshapes == sum(len(s.branches()) for s in store.skeletons.values()) > 0
        lv = pr.labels_volume().levels[0]
        assert np.allclose(layer.scale, lv.voxel_size) and np.allclose(layer.translate, lv.offset)
