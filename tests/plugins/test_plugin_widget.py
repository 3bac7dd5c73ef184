"""The Connectome dock widget in a real viewer (under Xvfb)."""

from __future__ import annotations

import os

import numpy as np
import pytest
from napari_connectome_plugins._layers import layer_meta
from napari_connectome_plugins._widget import ConnectomeWidget, VoxelSizeDialog
from plugin_volumes import WRITERS, image_data, write_tiff
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QDialog

pytestmark = pytest.mark.gui

PLUGIN = "napari-connectome"


def _rows(widget) -> list[list[str]]:
    table = widget.table
    return [
        [table.topLevelItem(i).text(c) for c in range(table.columnCount())]
        for i in range(table.topLevelItemCount())
    ]


@pytest.fixture
def viewer_and_widget(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Connectome")
    assert isinstance(widget, ConnectomeWidget)
    return viewer, widget


def test_widget_lists_the_project_and_its_volumes(viewer_and_widget, gala_project, messages):
    viewer, widget = viewer_and_widget
    assert widget.no_project.isVisibleTo(widget)
    assert _rows(widget) == []

    layers = widget.open_path(gala_project.root)
    assert [layer.name for layer in layers] == ["raw", "supervoxels", "boundaries", "groundtruth"]
    assert [type(layer).__name__ for layer in viewer.layers] == ["Image", "Labels", "Image", "Labels"]
    assert [layer.visible for layer in viewer.layers] == [True, True, False, False]

    rows = _rows(widget)
    assert [r[0] for r in rows] == ["raw", "supervoxels", "boundaries", "groundtruth"]
    assert all(r[1] == "50 × 100 × 200" and r[2] == "10 × 10 × 10" for r in rows)
    assert widget.project_fields["Name"].text() == "gala test project"
    assert widget.project_fields["Folder"].text() == os.path.abspath(gala_project.root)
    assert widget.project_fields["Inputs"].text() == "raw, supervoxels, boundaries, groundtruth"
    assert widget.project_form_widget.isVisibleTo(widget)

    # The selected row follows the active layer, and the details show it.
    viewer.layers.selection.active = viewer.layers["supervoxels"]
    assert widget.selected_layer() == viewer.layers["supervoxels"]
    assert widget.detail_fields["Format"].text() == "hdf5, project input 'supervoxels'"
    assert widget.detail_fields["Data"].text().startswith("labels, uint32")
    assert widget.detail_fields["Voxel size"].text() == "10 × 10 × 10 nm"
    # ... and a row picked in the table becomes the active layer.
    widget.table.setCurrentItem(widget.table.topLevelItem(0))
    assert viewer.layers.selection.active is viewer.layers["raw"]

    viewer.layers.remove("groundtruth")
    assert [r[0] for r in _rows(widget)] == ["raw", "supervoxels", "boundaries"]
    viewer.layers.clear()
    assert _rows(widget) == []
    assert widget.no_project.isVisibleTo(widget)
    assert not [m for m in messages if m[0] == "error"]


def test_widget_lists_volumes_opened_by_the_reader_only(viewer_and_widget, tmp_path, messages):
    viewer, widget = viewer_and_widget
    viewer.add_image(np.zeros((4, 8, 8), np.uint8), name="not ours")
    path = WRITERS["ome-zarr"](tmp_path)
    viewer.open(path, plugin=PLUGIN)
    rows = _rows(widget)
    assert [r[0] for r in rows] == ["vol"]
    assert rows[0][1:] == ["8 × 32 × 48", "10 × 4 × 4"]
    widget.table.setCurrentItem(widget.table.topLevelItem(0))
    assert widget.detail_fields["Levels"].text() == "2: 8 × 32 × 48, 8 × 16 × 24"
    assert widget.detail_fields["Format"].text() == "ome-zarr"


def test_voxel_size_dialog_changes_the_layer_scale(viewer_and_widget, tmp_path, messages, monkeypatch):
    viewer, widget = viewer_and_widget
    path = write_tiff(tmp_path / "plain.tif", image_data())
    (layer,) = viewer.open(path, plugin=PLUGIN)
    layer.translate = (2.0, 3.0, 4.0)
    assert _rows(widget)[0][2] == "1 × 1 × 1 *"
    assert "assumed" in widget.table.topLevelItem(0).toolTip(2)
    widget.table.setCurrentItem(widget.table.topLevelItem(0))
    assert widget.detail_fields["Voxel size"].text() == "1 × 1 × 1 nm (assumed)"
    assert widget.is_assumed(layer)

    def fill_and_accept(dialog):
        assert isinstance(dialog, VoxelSizeDialog)
        assert [b.value() for b in dialog.spin_boxes] == [1.0, 1.0, 1.0]
        assert not dialog.whole_project.isVisibleTo(dialog)  # not a project input
        for box, value in zip(dialog.spin_boxes, (30.0, 8.0, 8.0), strict=True):
            box.setValue(value)
        return QDialog.Accepted

    monkeypatch.setattr(VoxelSizeDialog, "exec_", fill_and_accept)
    widget.table.setCurrentItem(widget.table.topLevelItem(0))
    before = os.path.getmtime(path)
    assert widget.edit_voxel_size() is True
    np.testing.assert_allclose(layer.scale, (30.0, 8.0, 8.0))
    np.testing.assert_allclose(layer.translate, (60.0, 24.0, 32.0))  # same voxel, new size
    assert _rows(widget)[0][2] == "30 × 8 × 8"
    assert not widget.is_assumed(layer)
    assert layer_meta(layer)["voxel_size_set"] == [30.0, 8.0, 8.0]
    assert os.path.getmtime(path) == before


def test_voxel_size_of_a_project_input_applies_to_the_project(
    viewer_and_widget, gala_project, messages, monkeypatch
):
    viewer, widget = viewer_and_widget
    manifest = (gala_project.root / "napari-connectome.json").read_bytes()
    widget.open_path(gala_project.root)
    extra = viewer.add_image(np.zeros((5, 5, 5)), name="not ours")
    viewer.layers.selection.active = viewer.layers["supervoxels"]

    def accept(dialog):
        assert dialog.whole_project.isVisibleTo(dialog) and dialog.whole_project.isChecked()
        for box, value in zip(dialog.spin_boxes, (12.0, 6.0, 6.0), strict=True):
            box.setValue(value)
        return QDialog.Accepted

    monkeypatch.setattr(VoxelSizeDialog, "exec_", accept)
    assert widget.edit_voxel_size()
    for name in ("raw", "supervoxels", "boundaries", "groundtruth"):
        np.testing.assert_allclose(viewer.layers[name].scale, (12.0, 6.0, 6.0))
    np.testing.assert_allclose(extra.scale, (1.0, 1.0, 1.0))
    # The project's files are untouched.
    assert (gala_project.root / "napari-connectome.json").read_bytes() == manifest

    # A cancelled dialog changes nothing.
    monkeypatch.setattr(VoxelSizeDialog, "exec_", lambda dialog: QDialog.Rejected)
    assert widget.edit_voxel_size() is False
    np.testing.assert_allclose(viewer.layers["raw"].scale, (12.0, 6.0, 6.0))


def test_bad_voxel_size_is_one_error_line(viewer_and_widget, tmp_path, messages):
    viewer, widget = viewer_and_widget
    (layer,) = viewer.open(write_tiff(tmp_path / "a.tif", image_data()), plugin=PLUGIN)
    assert widget.set_voxel_size((0.0, 4.0, 4.0), layer=layer) is False
    errors = [t for s, t in messages if s == "error"]
    assert len(errors) == 1 and "voxel size" in errors[0] and "\n" not in errors[0]
    np.testing.assert_allclose(layer.scale, (1.0, 1.0, 1.0))


def test_buttons_have_keys_in_their_tooltips(viewer_and_widget):
    _, widget = viewer_and_widget
    assert widget.open_button.shortcut().toString() == "Alt+O"
    assert "Alt+O" in widget.open_button.toolTip()
    assert widget.voxel_button.shortcut().toString() == "Alt+Z"
    assert "Alt+Z" in widget.voxel_button.toolTip()
    assert "Alt+Z" in widget.table.toolTip()


def test_alt_z_opens_the_voxel_size_dialog(viewer_and_widget, tmp_path, qtbot, monkeypatch, messages):
    viewer, widget = viewer_and_widget
    (layer,) = viewer.open(write_tiff(tmp_path / "k.tif", image_data()), plugin=PLUGIN)
    opened = []

    def accept(dialog):
        opened.append(dialog)
        dialog.spin_boxes[0].setValue(40.0)
        return QDialog.Accepted

    monkeypatch.setattr(VoxelSizeDialog, "exec_", accept)
    from qtpy.QtWidgets import QApplication

    window = widget.window()
    window.show()
    window.activateWindow()
    if not window.isActiveWindow() and hasattr(QApplication, "setActiveWindow"):
        # Xvfb has no window manager to activate the window; Qt's shortcut map
        # only looks at the active window.
        QApplication.setActiveWindow(window)
    qtbot.waitUntil(window.isActiveWindow, timeout=2000)
    widget.table.setFocus()
    qtbot.keyClick(widget.table, Qt.Key_Z, Qt.AltModifier)
    qtbot.waitUntil(lambda: bool(opened), timeout=2000)
    assert opened
    np.testing.assert_allclose(layer.scale, (40.0, 1.0, 1.0))


def test_open_path_of_a_bad_folder_is_one_error_line_and_the_viewer_lives(
    viewer_and_widget, tmp_path, messages
):
    viewer, widget = viewer_and_widget
    folder = tmp_path / "holiday photos"
    folder.mkdir()
    (folder / "notes.txt").write_text("nothing for us")
    assert widget.open_path(folder) == []
    assert widget.open_path(tmp_path / "missing") == []
    errors = [t for s, t in messages if s == "error"]
    assert len(errors) == 2
    assert all("\n" not in e for e in errors)
    assert "holiday photos" in errors[0] and "napari-connectome.json" in errors[0]
    assert "missing" in errors[1]
    viewer.add_image(np.ones((4, 8, 8)), name="after")  # the viewer still works
    assert [layer.name for layer in viewer.layers] == ["after"]


def test_missing_project_input_is_one_error_line_and_the_viewer_lives(
    make_napari_viewer, tmp_path, gala_path, messages
):
    import shutil

    from napari_connectome.project import create_project

    viewer = make_napari_viewer()
    raw = tmp_path / "raw.h5"
    shutil.copy(gala_path, raw)
    project = create_project(tmp_path / "proj", raw=f"{raw}/raw")
    os.remove(raw)
    assert viewer.open(str(project.root), plugin=PLUGIN) == []
    errors = [t for s, t in messages if s == "error"]
    assert len(errors) == 1 and "raw.h5" in errors[0] and "\n" not in errors[0]
    viewer.add_image(np.ones((4, 8, 8)), name="after")
    assert [layer.name for layer in viewer.layers] == ["after"]


def test_corrupt_chunk_in_the_viewer_warns_once_and_the_viewer_lives(
    make_napari_viewer, tmp_path, messages, qtbot
):
    from plugin_volumes import write_zarr

    viewer = make_napari_viewer()
    path = write_zarr(tmp_path / "bad.zarr", image_data())
    chunk_dir = os.path.join(path, "c")
    # Corrupt every chunk of the first z block: the slice napari shows first.
    for z in ("0", "1"):
        for root, _, files in os.walk(os.path.join(chunk_dir, z)):
            for name in files:
                with open(os.path.join(root, name), "wb") as f:
                    f.write(b"garbage" * 5)
    (layer,) = viewer.open(path, plugin=PLUGIN)
    for step in range(layer.data.shape[0]):  # draw every plane, good and bad
        viewer.dims.set_current_step(0, step)
    viewer.window._qt_viewer.canvas.native.update()
    qtbot.wait(50)
    warnings = [t for s, t in messages if s == "warning" and "could not be read" in t]
    assert len(warnings) == 1 and "bad.zarr" in warnings[0] and "\n" not in warnings[0]
    after = viewer.add_image(np.ones((4, 8, 8)), name="after")
    assert after in viewer.layers
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert shot.shape[-1] == 4
