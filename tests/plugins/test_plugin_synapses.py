"""The Synapses panel in a real viewer (under Xvfb): layers, table, filter, jump, live edits, two-click add."""

from __future__ import annotations

import numpy as np
import pytest
from napari_connectome_plugins import _synapse_widget as sw

pytestmark = pytest.mark.gui

PLUGIN = "napari-connectome"


@pytest.fixture
def project(tmp_path):
    from napari_connectome.graph import agglomerate_project
    from napari_connectome.samples import gala_fib_project
    from napari_connectome.synapses import SynapseTable
    from napari_connectome.synapses.store import SynapseStore

    project = gala_fib_project(tmp_path / "p")
    agglomerate_project(project, threshold=0.5)
    raw = project.open_input("raw").levels[0]
    rng = np.random.default_rng(0)
    last = (np.asarray(raw.shape) - 1) * np.asarray(raw.spatial_voxel_size)  # the last voxel centre, nm
    n = 40
    pre = rng.random((n, 3)) * last
    post = np.clip(pre + rng.normal(0, 80, (n, 3)), 0, last)
    table = SynapseTable(synapse_id=np.arange(n) // 2 + 1, pre=pre, post=post, pre_id=np.zeros(n, np.uint64),
                         post_id=np.zeros(n, np.uint64), score=rng.random(n))
    with SynapseStore(project.component_path("synapses")) as store:
        store.append(table, origin="imported")
    return project


@pytest.fixture
def viewer(make_napari_viewer, project):
    viewer = make_napari_viewer(show=True)
    viewer.open(str(project.root), plugin=PLUGIN)
    return viewer


def _panel(viewer):
    _, panel = viewer.window.add_plugin_dock_widget(PLUGIN, "Synapses")
    assert isinstance(panel, sw.SynapsesWidget)
    assert panel.refresh()
    assert panel.wait(120)
    return panel


def test_layers_table_filter_and_jump(viewer, project, qtbot):
    panel = _panel(viewer)
    try:
        assert len(panel.table) == 40 and panel.grid.rowCount() == 40
        vectors = viewer.layers[sw.LAYER_VECTORS]
        np.testing.assert_allclose(vectors.data[:, 0], panel.table.pre)
        np.testing.assert_allclose(vectors.data[:, 0] + vectors.data[:, 1], panel.table.post)
        assert len(viewer.layers[sw.LAYER_POST].data) == 40
        pre, post = panel.neurons()
        proofreader = panel.workspace.open_proofreader
        assert pre.tolist() == [proofreader.segment_at(p) for p in panel.table.pre]
        # Sorting by score puts the best last in ascending order, by number, not text.
        panel.grid.sortItems(2)
        scores = [panel.grid.item(r, 2).value for r in range(panel.grid.rowCount())]
        assert scores == sorted(scores)
        # The filter keeps the rows with the neuron at either end.
        neuron = int(np.bincount(np.concatenate([pre, post]).astype(int))[1:].argmax() + 1)
        panel.filter_edit.setText(str(neuron))
        shown = [panel.grid.item(r, 4).value for r in range(panel.grid.rowCount())]
        assert sorted(shown) == np.flatnonzero((pre == neuron) | (post == neuron)).tolist() and shown
        # A click centres the view on the connection's post site.
        panel.grid.cellClicked.emit(0, 0)
        k = panel.grid.item(0, 4).value
        np.testing.assert_allclose(viewer.dims.point[-3:], panel.table.post[k], atol=max(
            project.open_input("raw").levels[0].spatial_voxel_size))
        # The connectome matrix counts the live connections.
        neurons, counts = sw.matrix(pre, post)
        assert counts.sum() > 0 and panel.figure.axes[0].images
    finally:
        panel.close()


def test_an_edit_moves_synapses_between_neurons(viewer, qtbot):
    panel = _panel(viewer)
    try:
        pre, post = panel.neurons()
        live = panel.live
        keep = (pre != 0) & (post != 0) & (pre != post)
        a, b = int(pre[keep][0]), int(post[keep][0])
        proofreader = panel.workspace.open_proofreader
        k = int(np.flatnonzero(keep)[0])
        result = proofreader.merge(tuple(panel.table.pre[k]), tuple(panel.table.post[k]))
        (merged,) = result.after_segments
        qtbot.waitUntil(lambda: int(panel.neurons()[0][k]) == merged, timeout=10_000)
        new_pre, new_post = panel.neurons()
        assert not np.isin([a, b], np.concatenate([new_pre, new_post])).any()
        now, fresh = live.connections(), live.recompute()
        assert now.as_dict() == fresh.as_dict()
        qtbot.waitUntil(lambda: f"{len(now)} connections" in panel.status_label.text(), timeout=10_000)
    finally:
        panel.close()


def test_two_clicks_add_a_synapse_and_esc_cancels(viewer, project, qtbot, messages):
    from napari_connectome.synapses.store import SynapseStore

    panel = _panel(viewer)
    try:
        raw = project.open_input("raw").levels[0]
        inside = np.asarray(raw.shape) * np.asarray(raw.spatial_voxel_size) / 2
        panel.add_button.setChecked(True)
        panel.click_at(inside)
        panel._cancel_add()
        assert panel._clicks is None and not panel.add_button.isChecked()
        panel.add_button.setChecked(True)
        panel.click_at(inside)
        panel.click_at(inside + [0, 50, 50])
        assert panel.wait(120)
        assert len(panel.table) == 41
        np.testing.assert_allclose(panel.table.pre[-1], inside)
        with SynapseStore(project.component_path("synapses"), read_only=True) as store:
            assert [b["origin"] for b in store.batches()] == ["imported", "annotated"]
        # A click outside the volume: one line, nothing stored.
        panel.add_button.setChecked(True)
        panel.click_at(inside)
        panel.click_at(inside + [0, 0, 1e7])
        assert any(s == "error" and "inside the volume" in t for s, t in messages)
        with SynapseStore(project.component_path("synapses"), read_only=True) as store:
            assert len(store.current()) == 41
    finally:
        panel.close()
