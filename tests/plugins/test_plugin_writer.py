"""The writer: layer → OME-Zarr → open_volume gives the same voxels, voxel size and offset."""

from __future__ import annotations

import os

import numpy as np
import pytest
from napari_connectome_plugins._reader import read_layers
from napari_connectome_plugins._writer import write_image, write_image_with_labels, write_labels
from plugin_volumes import image_data, labels_data

from napari_connectome.volume import open_volume


def test_image_round_trip(tmp_path, messages):
    data = image_data((20, 70, 90))
    path = str(tmp_path / "img.ome.zarr")
    attrs = {"name": "img", "scale": (30.0, 8.0, 8.0), "translate": (15.0, 4.0, -4.0)}
    assert write_image(path, data, attrs) == [path]
    volume = open_volume(path)
    assert volume.format == "ome-zarr" and volume.kind == "image"
    np.testing.assert_array_equal(volume.levels[0].read(), data)
    assert volume.voxel_size == (30.0, 8.0, 8.0)
    assert volume.offset == (15.0, 4.0, -4.0)
    assert not volume.voxel_size_assumed
    assert not messages


def test_labels_round_trip(tmp_path, messages):
    data = labels_data((16, 64, 64))
    path = str(tmp_path / "seg.zarr")
    attrs = {"name": "seg", "scale": (10.0, 10.0, 10.0), "translate": (0.0, 0.0, 0.0)}
    assert write_labels(path, data, attrs) == [path]
    volume = open_volume(path)
    assert volume.kind == "labels"
    np.testing.assert_array_equal(volume.levels[0].read(), data)
    assert volume.voxel_size == (10.0, 10.0, 10.0)


def test_lazy_layer_from_the_reader_round_trips(tmp_path, gala_path, messages):
    """A layer opened through the plugin (lazy, chunked) is streamed to OME-Zarr."""
    (data, kwargs, layer_type), = read_layers(f"{gala_path}/supervoxels")
    assert layer_type == "labels"
    path = str(tmp_path / "sv.ome.zarr")
    assert write_labels(path, data, kwargs) == [path]
    written = open_volume(path)
    original = open_volume(f"{gala_path}/supervoxels")
    np.testing.assert_array_equal(written.levels[0].read(), original.levels[0].read())
    assert written.voxel_size == (10.0, 10.0, 10.0)
    assert len(written.levels) >= 2  # the writer built a pyramid


def test_multiscale_layer_writes_its_full_resolution(tmp_path, messages):
    from plugin_volumes import write_ome_zarr_lib

    src = write_ome_zarr_lib(tmp_path / "two.ome.zarr", image_data())
    (data, kwargs, _), = read_layers(src)
    assert kwargs["multiscale"] is True
    path = str(tmp_path / "copy.ome.zarr")
    assert write_image(path, data, kwargs) == [path]
    volume = open_volume(path)
    np.testing.assert_array_equal(volume.levels[0].read(), image_data())
    assert volume.voxel_size == (10.0, 4.0, 4.0)


def test_existing_path_is_one_error_line_and_is_kept(tmp_path, messages):
    path = tmp_path / "keep.ome.zarr"
    path.mkdir()
    (path / "precious.txt").write_text("do not delete")
    assert write_image(str(path), image_data(), {"scale": (1, 1, 1), "translate": (0, 0, 0)}) == []
    (severity, text), = messages
    assert severity == "error" and "keep.ome.zarr" in text and "\n" not in text
    assert (path / "precious.txt").read_text() == "do not delete"
    assert sorted(os.listdir(path)) == ["precious.txt"]


def test_float_labels_are_refused_in_one_line(tmp_path, messages):
    path = str(tmp_path / "f.zarr")
    assert write_labels(path, np.zeros((4, 8, 8), np.float32), {"scale": (1, 1, 1)}) == []
    (severity, text), = messages
    assert severity == "error" and "integers" in text


def test_napari_saves_a_layer_with_our_writer(tmp_path, messages):
    """napari's own save path (Layer.save) finds the plugin's writer."""
    from napari.layers import Image
    from npe2 import PluginManager

    PluginManager.instance().discover()  # no viewer here: find the installed plugins
    data = image_data()
    layer = Image(data, scale=(40.0, 5.0, 5.0), translate=(0.0, 10.0, 20.0), name="em")
    path = str(tmp_path / "em.ome.zarr")
    written = layer.save(path, plugin="napari-connectome")
    assert written == [path]
    volume = open_volume(path)
    np.testing.assert_array_equal(volume.levels[0].read(), data)
    assert volume.voxel_size == (40.0, 5.0, 5.0)
    assert volume.offset == (0.0, 10.0, 20.0)


@pytest.mark.gui
def test_image_and_labels_saved_together_through_the_viewer(make_napari_viewer, tmp_path, messages):
    viewer = make_napari_viewer()
    viewer.add_image(image_data(), scale=(8.0, 4.0, 4.0), name="em")
    viewer.add_labels(labels_data(), scale=(8.0, 4.0, 4.0), name="seg")
    path = str(tmp_path / "pair.ome.zarr")
    assert viewer.layers.save(path, selected=False, plugin="napari-connectome") == [path]
    viewer.layers.clear()
    added = viewer.open(path, plugin="napari-connectome")
    assert [(layer.name, type(layer).__name__) for layer in added] == [("pair", "Image"), ("seg", "Labels")]


@pytest.mark.gui
def test_writer_through_the_viewer(make_napari_viewer, tmp_path, messages):
    viewer = make_napari_viewer()
    labels = viewer.add_labels(labels_data(), scale=(8.0, 4.0, 4.0), name="seg")
    path = str(tmp_path / "seg.ome.zarr")
    assert viewer.layers.save(path, selected=False, plugin="napari-connectome") == [path]
    # The saved volume opens through the reader and lines up with the layer.
    (layer,) = viewer.open(path, plugin="napari-connectome")
    np.testing.assert_array_equal(np.asarray(layer.data[0] if layer.multiscale else layer.data), labels.data)
    np.testing.assert_allclose(layer.scale, labels.scale)
    np.testing.assert_allclose(layer.translate, labels.translate)


def test_image_with_labels_round_trip(tmp_path, messages):
    """[image, labels, labels] -> one OME-Zarr with NGFF label images -> the reader opens all three."""
    img, seg = image_data(), labels_data()
    attrs = {"scale": (10.0, 4.0, 4.0), "translate": (0.0, 2.0, 2.0)}
    path = str(tmp_path / "both.ome.zarr")
    layers = [
        (img, {**attrs, "name": "em"}, "image"),
        (seg, {**attrs, "name": "neurons / v1"}, "labels"),
        (seg + 1, {**attrs, "name": "neurons / v1"}, "labels"),
    ]
    assert write_image_with_labels(path, layers) == [path]
    assert sorted(os.listdir(os.path.join(path, "labels"))) == [".zattrs", ".zgroup", "neurons_v1", "neurons_v1_2"]
    read = read_layers(path)
    assert [(k["name"], t) for _, k, t in read] == [
        ("both", "image"), ("neurons_v1", "labels"), ("neurons_v1_2", "labels")
    ]
    np.testing.assert_array_equal(np.asarray(read[0][0][0] if read[0][1].get("multiscale") else read[0][0]), img)
    lab = read[2][0][0] if read[2][1].get("multiscale") else read[2][0]
    np.testing.assert_array_equal(np.asarray(lab), seg + 1)
    assert all(k["scale"] == (10.0, 4.0, 4.0) for _, k, _ in read)
    assert all(k["translate"] == (0.0, 2.0, 2.0) for _, k, _ in read)
    assert not [m for m in messages if m[0] == "info" and "label images" in m[1]]  # opened, not hinted


def test_image_with_labels_failure_leaves_nothing_behind(tmp_path, messages):
    path = tmp_path / "half.ome.zarr"
    layers = [
        (image_data(), {"name": "em"}, "image"),
        (np.zeros((8, 32, 48), np.float32), {"name": "bad"}, "labels"),  # float labels: refused
    ]
    assert write_image_with_labels(str(path), layers) == []
    assert not path.exists()
    (severity, text), = messages
    assert severity == "error" and "integers" in text and "\n" not in text


def test_saving_into_a_projects_state_is_one_error_line_and_writes_nothing(tmp_path, messages):
    """A layer saved onto a project's graph or skeletons folder would destroy saved work."""
    from napari_connectome.proofread.demo import make_demo_project

    project = make_demo_project(tmp_path / "demo", threshold=None)
    before = sorted(p.relative_to(project.root) for p in project.root.rglob("*"))
    attrs = {"name": "seg", "scale": (10.0, 10.0, 10.0), "translate": (0.0, 0.0, 0.0)}
    for target in (project.root / "graph", project.root / "skeletons" / "seg.ome.zarr", project.root):
        assert write_labels(str(target), labels_data((4, 16, 16)), attrs) == []
    texts = [text for severity, text in messages if severity == "error"]
    assert len(texts) == 3 and all("\n" not in t for t in texts)
    assert "supervoxel graph" in texts[0] and "skeletons" in texts[1] and "project folder" in texts[2]
    assert sorted(p.relative_to(project.root) for p in project.root.rglob("*")) == before


def test_a_panels_os_error_is_the_file_and_the_problem():
    import errno

    from napari_connectome_plugins._project_panel import error_line

    exc = OSError(errno.EROFS, "Read-only file system", "/data/project/edits.sqlite")
    line = error_line("Proofread: merging", exc)
    assert line == "/data/project/edits.sqlite: the file system is read-only; Proofread: merging failed"
