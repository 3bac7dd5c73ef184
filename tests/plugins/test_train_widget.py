"""The Train panel in a real viewer (under Xvfb): train from painted labels, cancel and continue, export."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytestmark = pytest.mark.gui

MODEL = "affinities-fib-10nm"


@pytest.fixture
def viewer(make_napari_viewer, torch):
    from napari_connectome.proofread.demo import demo_volumes

    vols = demo_volumes(shape=(8, 32, 32), seed=2)
    viewer = make_napari_viewer(show=True)
    viewer.add_image(vols["raw"], name="EM", scale=(10, 10, 10))
    strokes = viewer.add_labels(np.zeros(vols["raw"].shape, np.int32), name="strokes", scale=(10, 10, 10))
    # paint with napari's own brush: a few dabs in three bodies of the ground truth
    strokes.brush_size = 5
    gt = vols["groundtruth"]
    for z in (2, 3, 4, 5):
        for y, x in ((6, 6), (6, 12), (20, 22), (26, 8), (16, 16)):
            if gt[z, y, x]:
                strokes.paint((z, y, x), int(gt[z, y, x]), refresh=False)
    strokes.refresh()
    return viewer


def panel_for(viewer, tmp_path, name, iterations):
    from napari_connectome_plugins._train_widget import TrainWidget

    panel = TrainWidget(viewer)
    viewer.window.add_dock_widget(panel, name="Train", area="right")
    panel.base_combo.setCurrentIndex(panel.base_combo.findData(MODEL))
    panel.iterations_spin.setValue(iterations)
    panel.patch_spin.setValue(4)
    panel.folder_edit.setText(str(tmp_path / name))
    return panel


def test_train_from_painted_labels_then_export(viewer, tmp_path, qtbot, messages):
    from napari_connectome_models.nets.unet import load_network, network_metadata

    from napari_connectome.train import network_from_checkpoint

    strokes = viewer.layers["strokes"].data
    assert 0 < np.count_nonzero(strokes) < strokes.size // 2  # painted, and sparse
    panel = panel_for(viewer, tmp_path, "run", 3)
    assert panel.image_combo.currentText() == "EM" and panel.labels_combo.currentText() == "strokes"
    assert panel.sparse_check.isChecked() and not panel.export_button.isEnabled()
    assert not panel.sparse_check.isHidden() and panel.box_edit.isHidden()
    t0 = time.monotonic()
    assert panel.start()
    assert time.monotonic() - t0 < 2.0  # the work is in the worker: the click returns at once
    assert panel.busy and panel.cancel_button.isEnabled() and not panel.train_button.isEnabled()
    assert panel.wait(600)
    assert panel.error is None, panel.error
    assert panel.result["iteration"] == 3
    assert panel.progress_bar.maximum() == 3 and panel.progress_bar.value() == 3
    assert "Done: iteration 3/3" in panel.status_label.text()
    assert (tmp_path / "run" / "checkpoint-0000003.pt").is_file()
    config = (tmp_path / "run" / "config.json").read_text()
    assert '"sparse": true' in config and '"labels": "strokes"' in config and MODEL in config
    assert panel.export_button.isEnabled()
    out = panel.export(tmp_path / "strokes-tuned.pt")
    assert out is not None
    trained = network_from_checkpoint(tmp_path / "run" / "checkpoint-0000003.pt")
    for a, b in zip(load_network(out).parameters(), trained.parameters(), strict=True):
        assert np.array_equal(a.detach().numpy(), b.detach().numpy())
    assert network_metadata(out)["init"]["model"] == MODEL
    assert (tmp_path / "strokes-tuned.json").is_file()
    assert not [m for m in messages if m[0] == "error"]
    # more strokes make other data: the old run is left alone, and the panel offers a new folder
    layer = viewer.layers["strokes"]
    layer.paint((6, 16, 24), 99, refresh=True)
    before = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert panel.start() and panel.wait(300)
    assert "holds another run's config (it differs in data)" in panel.error
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == before
    assert panel.folder() != str(tmp_path / "run") and panel.folder() in panel.error
    panel.folder_edit.setText(str(tmp_path / "run2"))
    panel.iterations_spin.setValue(1)
    assert panel.start() and panel.wait(300)
    assert panel.error is None and panel.result["iteration"] == 1


def test_cancel_then_train_continues_the_run(viewer, tmp_path, qtbot, messages):
    panel = panel_for(viewer, tmp_path, "run", 500)
    assert panel.start()
    # the GUI thread stays free: its poll timer moves the bar while the worker trains
    qtbot.waitUntil(lambda: panel.progress_bar.value() >= 1, timeout=300_000)
    panel.cancel()
    assert panel.wait(300)
    done = panel.progress.done
    assert 1 <= done < 500
    assert f"Cancelled at iteration {done}" in panel.status_label.text()
    assert (tmp_path / "run" / f"checkpoint-{done:07d}.pt").is_file()
    assert any("cancelled at iteration" in m[1] for m in messages if m[0] == "info")
    # Train again (one more iteration): it resumes from the cancel's checkpoint
    panel.iterations_spin.setValue(done + 1)
    assert panel.start() and panel.wait(300)
    assert panel.error is None, panel.error
    assert panel.result["iteration"] == done + 1
    records = (tmp_path / "run" / "provenance.jsonl").read_text().splitlines()
    assert len(records) == 2
    assert '"outcome": "cancelled"' in records[0] and '"outcome": "finished"' in records[1]


def test_the_docked_panel_fits_its_width(viewer, tmp_path, qtbot):
    """Nothing cut or scrolled sideways: the content's minimum fits the dock (long names are elided)."""
    from qtpy.QtWidgets import QApplication

    viewer.layers["EM"].name = "a very long layer name of an EM volume from the microscope"
    _, panel = viewer.window.add_plugin_dock_widget("napari-connectome", "Train")
    for _ in range(10):
        QApplication.processEvents()
    assert panel.image_combo.currentText().startswith("a very long layer name")
    content = panel.scroll_area.widget()
    assert content.minimumSizeHint().width() <= panel.scroll_area.viewport().width()
    assert panel.scroll_area.horizontalScrollBar().maximum() == 0


def test_bad_choices_are_one_line_errors(viewer, tmp_path, qtbot, messages):
    panel = panel_for(viewer, tmp_path, "run", 2)
    viewer.layers["strokes"].scale = (20, 10, 10)
    assert not panel.start()
    assert "the labels are not on the image's grid" in panel.error and "\n" not in panel.error
    viewer.layers["strokes"].scale = (10, 10, 10)
    viewer.layers["strokes"].data = np.zeros_like(viewer.layers["strokes"].data)
    assert panel.start() and panel.wait(120)
    assert panel.error == "strokes: has no painted voxels; paint some labels first (0 is unpainted)"
    assert ("error", panel.error) in messages
    assert not (tmp_path / "run").exists()


def test_train_on_the_proofread_segments_of_the_open_project(make_napari_viewer, tmp_path, qtbot, messages, torch):
    """The loop closed in the viewer: the open project's corrected segments inside a box become the labels."""
    import json

    from napari_connectome_plugins._train_widget import TrainWidget

    from napari_connectome.proofread import Proofreader
    from napari_connectome.proofread.demo import make_demo_project

    project = make_demo_project(tmp_path / "demo", seed=3)
    with Proofreader.open(project) as pr:
        sv = pr.supervoxel_volume().levels[0].read()
        a, b = (int(v) for v in np.unique(sv[sv > 0])[:2])
        pr.merge_supervoxels(a, b)
    viewer = make_napari_viewer(show=True)
    viewer.open(str(project.root), plugin="napari-connectome")
    panel = TrainWidget(viewer)
    viewer.window.add_dock_widget(panel, name="Train", area="right")
    index = panel.labels_combo.findText(f"proofread segments of {project.root.name}")
    assert index >= 0
    panel.labels_combo.setCurrentIndex(index)
    # the box starts as the whole volume (voxel faces: 20 x 10 x 10 nm voxels, centres from 0)
    assert panel.box_edit.text() == "-10 -5 -5 110 235 235"
    # a project brings its EM and dense segments: the image and "painted" rows are hidden, the box shown
    assert not panel.box_edit.isHidden() and panel.image_combo.isHidden() and panel.sparse_check.isHidden()
    panel.box_edit.setText("1 2 3")
    assert not panel.start()
    assert "needs six numbers in nm" in panel.error
    panel.box_edit.setText("0 0 0 120 200 200")
    panel.base_combo.setCurrentIndex(panel.base_combo.findData(MODEL))
    panel.iterations_spin.setValue(2)
    panel.patch_spin.setValue(4)
    panel.folder_edit.setText(str(tmp_path / "run"))
    assert panel.start() and panel.wait(300)
    assert panel.error is None, panel.error
    assert panel.result["iteration"] == 2
    data = json.loads((tmp_path / "run" / "config.json").read_text())["data"]
    assert data["labels"]["project"] == str(project.root.resolve())
    assert data["labels"]["edits_in_effect"] == 1 and data["box_voxels"] == [[0, 0, 0], [6, 20, 20]]
