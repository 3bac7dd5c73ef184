"""The Segment panel in a real viewer (under Xvfb): a raw-only project segmented, cancelled and resumed."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui

PLUGIN = "napari-connectome"


@pytest.fixture
def raw_project(tmp_path, torch):
    """A project with raw EM only (synthetic, 10 nm), and a tiny network saved as a weights file."""
    from napari_connectome_models.nets.unet import ISOTROPIC, UNet3D, UNetConfig, save_network

    from napari_connectome.project import create_project
    from napari_connectome.pyramid import write_ome_zarr
    from napari_connectome.synthetic import SyntheticSpec, synthetic_volumes

    raw, _ = synthetic_volumes(SyntheticSpec(shape=(32, 64, 64), voxel_size=(10.0, 10.0, 10.0), seed=2))
    write_ome_zarr(tmp_path / "raw.ome.zarr", np.asarray(raw.levels[0].read()), voxel_size=(10, 10, 10),
                   kind="image", chunks=32)
    torch.manual_seed(0)
    net = UNet3D(UNetConfig(downsample=ISOTROPIC, base_features=2, feature_factor=2,
                            offsets=((-1, 0, 0), (0, -1, 0), (0, 0, -1))))
    weights = save_network(net, tmp_path / "tiny.pt", voxel_size_nm=[10, 10, 10])
    project = create_project(tmp_path / "p", raw=tmp_path / "raw.ome.zarr")
    return project, weights


def roles(viewer) -> list[str]:
    from napari_connectome_plugins._layers import layer_meta

    return [(layer_meta(la) or {}).get("role") for la in viewer.layers]


def test_segment_a_raw_only_project_cancel_and_resume(make_napari_viewer, qtbot, raw_project, messages):
    from napari_connectome_plugins._segment_widget import SegmentWidget

    project, weights = raw_project
    viewer = make_napari_viewer(show=True)
    viewer.open(str(project.root), plugin=PLUGIN)
    assert roles(viewer) == ["raw"]
    _, panel = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    assert isinstance(panel, SegmentWidget)
    assert "Only raw EM" in panel.state_label.text()
    qtbot.waitUntil(lambda: "CPU" in panel.device_label.text(), timeout=60_000)
    assert panel.choose_weights(str(weights))
    panel.device_combo.setCurrentIndex(panel.device_combo.findData("cpu"))

    # cancel after a few blocks: nothing lost, nothing half-registered, a sentence says how to go on
    assert panel.run()
    qtbot.waitUntil(lambda: panel._done >= 2, timeout=120_000)
    panel.cancel()
    assert panel.wait(300)
    assert panel.stage_label.text() == "cancelled"
    assert "resume" in panel.result_label.text()
    assert "supervoxels" not in roles(viewer)

    assert panel.run()
    assert panel.busy and not panel.run_button.isEnabled() and panel.cancel_button.isEnabled()
    assert panel.wait(600)
    report = panel.report
    assert report is not None, panel.result_label.text()
    assert report.stages["affinities"] in ("resumed", "skipped")  # what the cancelled run finished is kept
    assert report.stages["supervoxels"] == "ran" and report.stages["graph"] == "ran"
    assert "supervoxels" in roles(viewer) and "boundaries" in roles(viewer)
    assert panel.progress_bar.value() == panel.progress_bar.maximum()
    assert "Segmented here" in panel.state_label.text()
    assert any("Segment:" in text for _, text in messages)


def test_segment_refuses_a_project_with_supervoxels_from_elsewhere(make_napari_viewer, qtbot, tmp_path, messages):
    from napari_connectome_plugins._segment_widget import SegmentWidget

    from napari_connectome.samples import gala_fib_project

    project = gala_fib_project(tmp_path / "g")
    viewer = make_napari_viewer(show=True)
    viewer.open(str(project.root), plugin=PLUGIN)
    panel = SegmentWidget(viewer)
    viewer.window.add_dock_widget(panel, name="Segment")
    assert "from elsewhere" in panel.state_label.text()
    assert panel.run()
    assert panel.wait(300)
    assert panel.stage_label.text() == "failed"
    assert "already has supervoxels" in panel.result_label.text()
    assert any(kind == "error" and "already has supervoxels" in text for kind, text in messages)


def test_the_docked_panel_fits_its_width(make_napari_viewer, qtbot, raw_project):
    """Long model names (a weights file's) do not widen the dock into sideways scrolling."""
    from qtpy.QtWidgets import QApplication

    project, weights = raw_project
    viewer = make_napari_viewer(show=True)
    viewer.open(str(project.root), plugin=PLUGIN)
    _, panel = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    long_name = weights.with_name("a-network-fine-tuned-on-the-proofread-segments-of-a-long-project-name.pt")
    weights.rename(long_name)
    assert panel.choose_weights(str(long_name))
    for _ in range(10):
        QApplication.processEvents()
    content = panel.scroll_area.widget()
    assert content.minimumSizeHint().width() <= panel.scroll_area.viewport().width()
    assert panel.scroll_area.horizontalScrollBar().maximum() == 0


def test_a_box_region_segments_only_the_box(make_napari_viewer, qtbot, raw_project, messages):
    """"a box (nm)": starts as the whole volume; a nonsense box is one line; a box segments only itself."""
    project, weights = raw_project
    viewer = make_napari_viewer(show=True)
    viewer.open(str(project.root), plugin=PLUGIN)
    _, panel = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    assert panel.choose_weights(str(weights))
    panel.device_combo.setCurrentIndex(panel.device_combo.findData("cpu"))
    assert not panel.box_edit.isVisibleTo(panel)
    panel.region_combo.setCurrentIndex(panel.region_combo.findData("box"))
    assert panel.box_edit.isVisibleTo(panel)
    assert panel.box_edit.text() == "-5 -5 -5 315 635 635"  # voxel faces of a 10 nm grid centred on 0
    panel.box_edit.setText("0 0 0 -5 100 100")
    assert not panel.run()
    assert "end must lie beyond its begin" in panel.result_label.text()
    assert any(kind == "error" and "Segment box" in text for kind, text in messages)
    panel.box_edit.setText("0 0 0 200 200 200")
    assert panel.run()
    assert panel.wait(600)
    assert panel.report is not None, panel.result_label.text()
    assert panel.report.stages["supervoxels"] == "ran"
    # (which voxels a box covers is tested on the engine, with blocks smaller than this volume)


def test_without_a_project_the_panel_says_how_to_get_one(make_napari_viewer, tmp_path):
    from napari_connectome_plugins._segment_widget import SegmentWidget

    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.zeros((4, 8, 8), np.uint8), name="EM")
    panel = SegmentWidget(viewer)
    viewer.window.add_dock_widget(panel, name="Segment")
    assert "New project" in panel.state_label.text()
    assert not panel.run_button.isEnabled() and not panel.run()
