"""The New project… dialog: from an EM volume alone (or with segmentations) to an open project."""

from __future__ import annotations

import pytest
from napari_connectome_plugins._new_project import NewProjectDialog
from napari_connectome_plugins._widget import ConnectomeWidget
from qtpy.QtWidgets import QDialog

pytestmark = pytest.mark.gui

PLUGIN = "napari-connectome"


@pytest.fixture
def widget(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Connectome")
    assert isinstance(widget, ConnectomeWidget)
    return widget


def test_new_project_from_em_alone_opens_it(widget, gala_path, tmp_path, messages):
    dialog = NewProjectDialog(start_dir=str(tmp_path), parent=widget)
    assert not dialog.create_button.isEnabled()  # nothing entered yet
    dialog.inputs["raw"].setText(f"{gala_path}/raw")
    # The folder is suggested beside the EM volume, named after its file; a person may change it.
    assert dialog.folder.text() == str(gala_path.parent / "gala-fib-test-project")
    dialog.folder.setText(str(tmp_path / "em-only"))
    assert dialog.create_button.isEnabled()
    project = dialog.create()
    assert project is not None and set(project.inputs) == {"raw"}
    layers = widget.new_project(dialog)
    assert layers and widget.current_project() is not None
    assert not [m for m in messages if m[0] == "error"]


def test_new_project_with_segmentations_and_a_given_voxel_size(widget, gala_path, tmp_path, messages):
    dialog = NewProjectDialog(parent=widget)
    for field in ("raw", "supervoxels", "boundaries", "groundtruth"):
        dialog.inputs[field].setText(f"{gala_path}/{field}")
    dialog.folder.setText(str(tmp_path / "full"))
    dialog.name.setText("my cube")
    dialog.from_files.setChecked(False)
    for box, value in zip(dialog.voxel_boxes, (40.0, 4.0, 4.0), strict=True):
        box.setValue(value)
    project = dialog.create()
    assert project is not None
    assert project.name == "my cube"
    assert set(project.inputs) == {"raw", "supervoxels", "boundaries", "groundtruth"}
    assert tuple(project.voxel_size) == (40.0, 4.0, 4.0)


def test_bad_input_is_one_line_in_the_dialog_and_it_stays_open(widget, gala_path, tmp_path, messages, monkeypatch):
    dialog = NewProjectDialog(parent=widget)
    dialog.inputs["raw"].setText(str(tmp_path / "no-such.zarr"))
    dialog.folder.setText(str(tmp_path / "P"))
    dialog._accept()
    assert dialog.result() != QDialog.Accepted and dialog.project is None
    text = dialog.message.text()
    assert dialog.message.isVisibleTo(dialog) and "no-such.zarr" in text and "\n" not in text
    assert ("error", text) in messages
    assert not (tmp_path / "P").exists()  # nothing written
    # Fixed in place, the same dialog then succeeds.
    dialog.inputs["raw"].setText(f"{gala_path}/raw")
    dialog.folder.setText(str(tmp_path / "P"))
    dialog._accept()
    assert dialog.project is not None
    # A folder that holds a project already is refused, and the project is kept.
    again = NewProjectDialog(parent=widget)
    again.inputs["raw"].setText(f"{gala_path}/raw")
    again.folder.setText(str(tmp_path / "P"))
    assert again.create() is None and "already" in again.message.text()


def test_new_project_button_has_its_key(widget):
    assert widget.new_button.shortcut().toString() == "Alt+N"
    assert "Alt+N" in widget.new_button.toolTip()
    assert "New project" in widget.no_project.text()
