"""The Proofread panel in a real viewer (under Xvfb), on the bundled gala-fib project.

Clicks go through the canvas (qtbot.mouseClick at the canvas centre, with
the camera centred on the point), so napari builds the mouse event and runs
the segments layer's callbacks as it does for a person. Keys go to the
widget that has focus (the canvas, or the panel) with qtbot.keyClick, and
reach napari's keymap the way real key presses do.
"""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from napari_connectome_plugins import _proofread_widget as pw
from qtpy.QtCore import QPoint, Qt

pytestmark = pytest.mark.gui

PLUGIN = "napari-connectome"


@pytest.fixture
def project(tmp_path):
    from napari_connectome.samples import gala_fib_project

    return gala_fib_project(tmp_path / "p")


@pytest.fixture
def panel(make_napari_viewer, qtbot, project, messages):
    viewer = make_napari_viewer(show=True)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Proofread")
    assert isinstance(widget, pw.ProofreadWidget)
    widget.user_edit.setText("alice")
    assert widget.open_path(project.root)
    qtbot.waitUntil(lambda: widget.proofreader is not None and not widget._busy, timeout=120_000)
    return viewer, widget


def camera(viewer):
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def canvas(viewer):
    return viewer.window._qt_viewer.canvas.native


def click(viewer, qtbot, point_nm, *, shift: bool = False) -> None:
    """A left click on the canvas exactly over ``point_nm`` (z, y, x nm)."""
    viewer.dims.set_point(0, float(point_nm[0]))
    camera(viewer).center = tuple(float(v) for v in point_nm)
    native = canvas(viewer)
    centre = QPoint(native.width() // 2, native.height() // 2)
    qtbot.mouseClick(native, Qt.LeftButton, Qt.ShiftModifier if shift else Qt.NoModifier, centre)
    # napari turned the click into this world position.
    assert np.allclose(viewer.cursor.position[-3:], point_nm, atol=2.0)


def press(viewer, qtbot, key, modifier=Qt.NoModifier, *, target=None) -> None:
    qtbot.keyClick(target if target is not None else canvas(viewer), key, modifier)


def rendered(layer) -> np.ndarray:
    """The 2D slice napari currently draws for a labels layer."""
    return np.array(layer._slice.image.raw, copy=True)


def two_touching_segments(proofreader, z: int):
    """Deep points inside the two largest segments that touch on slice ``z``: (a_nm, b_nm)."""
    from scipy import ndimage

    volume = proofreader.labels_volume()
    labels = np.asarray(volume.levels[0].array[z])
    pairs = {}
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
        touch = (a != b) & (a != 0) & (b != 0)
        for u, v in zip(a[touch].tolist(), b[touch].tolist(), strict=True):
            pairs[(min(u, v), max(u, v))] = pairs.get((min(u, v), max(u, v)), 0) + 1
    ids, counts = np.unique(labels, return_counts=True)
    area = dict(zip(ids.tolist(), counts.tolist(), strict=True))
    u, v = max(pairs, key=lambda p: (min(area[p[0]], area[p[1]]), pairs[p]))
    points = []
    for seg in (u, v):
        depth = ndimage.distance_transform_edt(labels == seg)
        y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
        index = np.array([z, y, x], dtype=float)
        points.append(tuple(index * np.asarray(volume.voxel_size) + np.asarray(volume.offset)))
    return points[0], points[1], (u, v)


def pixel(layer_volume, point_nm):
    index = np.round((np.asarray(point_nm) - np.asarray(layer_volume.offset)) / np.asarray(layer_volume.voxel_size))
    return int(index[1]), int(index[2])


def test_select_merge_split_undo_redo_with_keys_and_clicks(panel, qtbot, project, messages):
    viewer, widget = panel
    pr = widget.proofreader
    segments = viewer.layers["segments"]
    data = segments.data
    assert segments.visible and not viewer.layers["supervoxels"].visible
    assert viewer.layers.selection.active is segments
    z = pr.labels_volume().shape[0] // 2
    a, b, (seg_a, seg_b) = two_touching_segments(pr, z)
    assert pr.segment_at(a) == seg_a and pr.segment_at(b) == seg_b
    volume = pr.labels_volume()
    ya, xa = pixel(volume, a)
    yb, xb = pixel(volume, b)

    # -- select: click one, Shift+click the other --------------------------
    click(viewer, qtbot, a)
    click(viewer, qtbot, b, shift=True)
    assert len(widget.selection) == 2
    assert [pr.segment_at(p) for p in widget.selection] == [seg_a, seg_b]
    marks = viewer.layers["selected segments"]
    assert len(marks.data) == 2 and list(marks.features["segment"]) == [seg_a, seg_b]
    before = rendered(segments)
    assert before[ya, xa] != before[yb, xb]

    # -- M merges them ------------------------------------------------------
    version = pr.version
    press(viewer, qtbot, "m")
    merged = pr.segment_at(a)
    assert merged == pr.segment_at(b) != 0
    merged_members = set(pr.segment_supervoxels(merged).tolist())
    assert merged_members >= {pr.supervoxel_at(a), pr.supervoxel_at(b)}
    assert pr.version > version
    after_merge = rendered(segments)
    assert after_merge[ya, xa] == after_merge[yb, xb]
    assert segments.data is data

    # -- 1 + click: a source; 2 + click: a sink; P previews -------------------
    press(viewer, qtbot, "1")
    assert widget.mode == "sources"
    click(viewer, qtbot, a)
    press(viewer, qtbot, "2")
    assert widget.mode == "sinks"
    click(viewer, qtbot, b)
    assert len(viewer.layers["split sources"].data) == 1
    assert len(viewer.layers["split sinks"].data) == 1
    assert len(widget.selection) == 2  # seeds are not selections
    version = pr.version
    press(viewer, qtbot, "p")
    preview = viewer.layers["split preview"]
    assert widget.preview is not None and preview.visible
    shown = rendered(preview)
    assert shown[ya, xa] == 1 and shown[yb, xb] == 2
    assert pr.segment_at(a) == pr.segment_at(b)  # a preview changes nothing
    assert pr.version == version

    # -- Enter commits the split ----------------------------------------------
    press(viewer, qtbot, Qt.Key_Return)
    assert pr.segment_at(a) != pr.segment_at(b)
    assert widget.preview is None and not preview.visible
    assert len(viewer.layers["split sources"].data) == 0 and len(viewer.layers["split sinks"].data) == 0
    after_split = rendered(segments)
    assert after_split[ya, xa] != after_split[yb, xb]
    split_members = [set(pr.segment_supervoxels(pr.segment_at(p)).tolist()) for p in (a, b)]
    assert split_members[0] | split_members[1] == merged_members

    # -- Ctrl+Z undoes (back to merged), Ctrl+Shift+Z redoes -----------------------
    press(viewer, qtbot, "z", Qt.ControlModifier)
    assert pr.segment_at(a) == pr.segment_at(b)  # undo mints new ids, CAVE style
    assert set(pr.segment_supervoxels(pr.segment_at(a)).tolist()) == merged_members
    assert rendered(segments)[ya, xa] == rendered(segments)[yb, xb]
    # ... also when the panel has the focus: the key travels to napari's keymap.
    press(viewer, qtbot, "z", Qt.ControlModifier | Qt.ShiftModifier, target=widget.mode_buttons["select"])
    assert pr.segment_at(a) != pr.segment_at(b)
    assert [set(pr.segment_supervoxels(pr.segment_at(p)).tolist()) for p in (a, b)] == split_members
    assert rendered(segments)[ya, xa] != rendered(segments)[yb, xb]
    assert segments.data is data

    # -- the history list and the edit log --------------------------------------
    rows = widget.history_rows()
    assert len(rows) == 4
    for row, kind in zip(rows, ("merge", "split", "undo", "redo"), strict=True):
        assert f" {kind} " in row and "alice" in row
    assert f"{seg_a}, {seg_b} → {merged}" in rows[0] or f"{seg_b}, {seg_a} → {merged}" in rows[0]
    history = pr.history()
    assert [h["type"] for h in history] == ["merge", "split", "undo", "redo"]
    log = project.component_path("edit_log")
    with sqlite3.connect(f"file:{log}?mode=ro", uri=True) as db:
        users = [r[0] for r in db.execute("SELECT user FROM operations ORDER BY operation_id")]
    assert users == ["alice"] * 4
    assert not [m for m in messages if m[0] == "error"]


def test_keys_bound_on_the_layers_win_over_napari_layer_keys(panel, qtbot, messages):
    viewer, widget = panel
    segments = viewer.layers["segments"]
    # M is napari's "new label" on a labels layer; 1 its erase mode.
    press(viewer, qtbot, "1")
    assert widget.mode == "sources" and segments.mode == "pan_zoom"
    press(viewer, qtbot, "1")
    assert widget.mode == "select"
    # With another layer active, keys it does not use still reach the panel
    # (the viewer keymap): P asks for seeds.
    viewer.layers.selection.active = viewer.layers["raw"]
    press(viewer, qtbot, "p")
    assert any("a split needs sources" in t for s, t in messages if s == "warning")
    # Choosing a seed mode makes the segments layer active again, for the clicks.
    widget.mode_buttons["sinks"].click()
    assert widget.mode == "sinks"
    assert viewer.layers.selection.active is segments


def test_engine_errors_are_one_line_and_the_viewer_keeps_working(panel, qtbot, messages):
    viewer, widget = panel
    pr = widget.proofreader
    z = pr.labels_volume().shape[0] // 2
    a, b, _ = two_touching_segments(pr, z)

    press(viewer, qtbot, "z", Qt.ControlModifier)  # nothing to undo
    errors = [t for s, t in messages if s == "error"]
    assert len(errors) == 1 and "undo" in errors[0].lower() and "\n" not in errors[0]

    press(viewer, qtbot, "m")  # nothing selected: the panel says so
    warnings = [t for s, t in messages if s == "warning"]
    assert any("merge needs two selected segments" in w for w in warnings)

    # Sources and sinks in two different segments: the engine refuses the split.
    press(viewer, qtbot, "1")
    click(viewer, qtbot, a)
    press(viewer, qtbot, "2")
    click(viewer, qtbot, b)
    press(viewer, qtbot, "p")
    errors = [t for s, t in messages if s == "error"]
    assert len(errors) == 2 and "\n" not in errors[1]
    assert widget.preview is None
    # Esc clears the seeds; the panel still works: select and merge.
    press(viewer, qtbot, Qt.Key_Escape)
    assert len(viewer.layers["split sources"].data) == 0 and widget.mode == "select"
    click(viewer, qtbot, a)
    click(viewer, qtbot, b, shift=True)
    press(viewer, qtbot, "m")
    assert pr.segment_at(a) == pr.segment_at(b)
    assert len(widget.history_rows()) == 1


def test_threshold_slider_rebases_the_view_until_the_first_edit(panel, qtbot, project):
    from napari_connectome.project import open_project

    viewer, widget = panel
    segments = viewer.layers["segments"]
    data = segments.data
    volume = widget.proofreader.labels_volume()
    z = volume.shape[0] // 2
    viewer.dims.set_point(0, float(volume.offset[0] + volume.voxel_size[0] * z))
    # The sample has a graph but no agglomeration yet: every supervoxel is a segment.
    assert widget.tree is None and widget.threshold() is None
    assert widget.threshold_slider.isEnabled()
    assert widget.threshold_label.text() == "not agglomerated"
    count_base = len(np.unique(rendered(segments)))

    # Moving the slider agglomerates (once the slider rests) and re-bases the view.
    widget.set_threshold(0.3)
    qtbot.waitUntil(lambda: widget.tree is not None and not widget._busy, timeout=120_000)
    assert widget.threshold() == pytest.approx(0.3)
    assert open_project(project.root).manifest["agglomeration"]["threshold"] == pytest.approx(0.3)
    count_03 = len(np.unique(rendered(segments)))
    assert count_03 < count_base
    assert segments.data is data

    # With the merge tree, the view follows the slider at once; it is saved when it rests.
    widget.set_threshold(0.6)
    live = rendered(segments)
    assert len(np.unique(live)) < count_03
    assert widget.threshold() == pytest.approx(0.3)  # not saved yet
    qtbot.waitUntil(lambda: widget.threshold() == pytest.approx(0.6) and not widget._busy, timeout=60_000)
    assert open_project(project.root).manifest["agglomeration"]["threshold"] == pytest.approx(0.6)
    sv, seg = widget.tree.mapping_at(0.6)
    got_sv, got_seg = widget.proofreader.mapping()
    np.testing.assert_array_equal(got_seg[np.searchsorted(got_sv, sv)], seg)
    # The Proofreader's own labels show what the live view showed.
    np.testing.assert_array_equal(rendered(segments), live)
    assert segments.data is data

    # After the first edit the slider is fixed, and says why.
    a, b, _ = two_touching_segments(widget.proofreader, z)
    click(viewer, qtbot, a)
    click(viewer, qtbot, b, shift=True)
    press(viewer, qtbot, "m")
    assert len(widget.history_rows()) == 1
    assert not widget.threshold_slider.isEnabled()
    assert "edit log" in widget.threshold_slider.toolTip()


def test_every_key_is_in_a_tooltip_and_the_help(panel):
    _, widget = panel
    tips = " ".join(b.toolTip() for b in (*widget.action_buttons.values(), *widget.mode_buttons.values()))
    for _, _, shown in pw.KEYS:
        assert f"({shown})" in tips or f"({shown};" in tips
        assert shown in widget.help_label.text()


def test_closing_the_project_restores_the_viewer(panel):
    viewer, widget = panel
    assert viewer.keymap  # the panel's fallback keys
    widget.unbind()
    names = [layer.name for layer in viewer.layers]
    for name in ("segments", "split preview", "split sources", "split sinks", "selected segments"):
        assert name not in names
    assert viewer.layers["supervoxels"].visible
    # Only the keys that say "open a project first" stay, until the panel closes.
    names = [getattr(f, "__name__", "") for f in viewer.keymap.values()]
    assert not [n for n in names if n.startswith("proofread_") and not n.startswith("proofread_idle_")]
    widget._disconnect()
    assert not any(getattr(f, "__name__", "").startswith("proofread_") for f in viewer.keymap.values())


def test_a_click_in_3d_selects_the_first_segment_along_the_ray(panel, qtbot, messages):
    viewer, widget = panel
    pr = widget.proofreader
    volume = pr.labels_volume()
    viewer.dims.ndisplay = 3
    centre = np.asarray(volume.offset) + (np.asarray(volume.shape) - 1) / 2 * np.asarray(volume.voxel_size)
    camera(viewer).center = tuple(centre)
    camera(viewer).angles = (0.0, 0.0, 0.0)  # napari's default: looking along z
    native = canvas(viewer)
    qtbot.mouseClick(native, Qt.LeftButton, Qt.NoModifier, QPoint(native.width() // 2, native.height() // 2))
    assert len(widget.selection) == 1, messages
    (point,) = widget.selection
    assert pr.segment_at(point) != 0
    # On the ray through the centre: y and x are the centre's, z the first labelled voxel.
    assert np.allclose(point[1:], centre[1:], atol=volume.voxel_size[1])
    index = int(round((point[0] - volume.offset[0]) / volume.voxel_size[0]))
    yx = np.round((centre[1:] - np.asarray(volume.offset[1:])) / np.asarray(volume.voxel_size[1:])).astype(int)
    column = np.asarray(volume.levels[0].array[:, int(yx[0]), int(yx[1])])
    nonzero = np.flatnonzero(column)
    assert index in (int(nonzero[0]), int(nonzero[-1]))  # the end facing the camera


def test_mapped_array_reads_through_its_lookup():
    from napari_connectome_plugins._proofread_layers import LiveArray, MappedArray

    ids = np.array([[0, 5, 5], [7, 9, 0]], dtype=np.uint32)
    sides = MappedArray(ids, [9, 5], [2, 1], default=0, dtype=np.uint8)
    np.testing.assert_array_equal(sides[:, :], [[0, 1, 1], [0, 2, 0]])
    merged = MappedArray(ids, [5, 7, 9], [5, 5, 9], default=None, dtype=np.uint64)
    np.testing.assert_array_equal(merged[1], [5, 9, 0])
    live = LiveArray(merged)
    before = id(live)
    live.retarget(sides)
    assert id(live) == before and live.dtype == np.uint64
    np.testing.assert_array_equal(live[0, 1:], [1, 1])
    with pytest.raises(ValueError):
        live.retarget(np.zeros((3, 3), np.uint8))


def test_a_corrupt_edit_log_is_one_error_line_and_is_left_untouched(
    make_napari_viewer, qtbot, project, messages
):
    log = project.component_path("edit_log")
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"this is not an SQLite file" * 100)
    viewer = make_napari_viewer(show=True)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Proofread")
    assert widget.open_path(project.root)
    assert widget.wait()
    errors = [t for s, t in messages if s == "error"]
    assert len(errors) == 1 and str(log) in errors[0] and "\n" not in errors[0]
    assert widget.proofreader is None
    assert "segments" not in [layer.name for layer in viewer.layers]
    assert log.read_bytes() == b"this is not an SQLite file" * 100
    # The viewer and the panel keep working: with the log moved aside, the project opens.
    log.rename(log.with_name("edits.corrupt"))
    assert widget.open_root(project.root)
    qtbot.waitUntil(lambda: widget.proofreader is not None and not widget._busy, timeout=120_000)
    assert viewer.layers.selection.active is viewer.layers["segments"]


def test_split_inside_one_supervoxel_previews_its_two_parts(panel, qtbot, messages):
    from scipy import ndimage

    viewer, widget = panel
    pr = widget.proofreader
    supervoxels = pr.supervoxel_volume()
    z = supervoxels.shape[0] // 2
    svs = np.asarray(supervoxels.levels[0].array[z])
    ids, counts = np.unique(svs[svs != 0], return_counts=True)
    sv = int(ids[np.argmax(counts)])
    depth = ndimage.distance_transform_edt(svs == sv)
    first = np.unravel_index(int(np.argmax(depth)), depth.shape)
    inside = np.argwhere(depth >= 2)
    second = tuple(inside[np.argmax(np.linalg.norm(inside - np.asarray(first), axis=1))])

    def nm(yx):
        index = np.array([z, *yx], dtype=float)
        return tuple(index * np.asarray(supervoxels.voxel_size) + np.asarray(supervoxels.offset))

    a, b = nm(first), nm(second)
    assert pr.supervoxel_at(a) == pr.supervoxel_at(b) == sv
    segments = viewer.layers["segments"]
    press(viewer, qtbot, "1")
    click(viewer, qtbot, a)
    press(viewer, qtbot, "2")
    click(viewer, qtbot, b)
    press(viewer, qtbot, "p")
    assert widget.preview is not None and widget.preview.inside_supervoxel
    shown = rendered(viewer.layers["split preview"])
    assert shown[first] == 1 and shown[second] == 2
    press(viewer, qtbot, Qt.Key_Enter, Qt.KeypadModifier)  # the keypad's Enter too
    assert pr.supervoxel_at(a) != pr.supervoxel_at(b)
    assert pr.segment_at(a) != pr.segment_at(b)
    after = rendered(segments)
    assert after[first] != after[second]
    assert widget.history_rows()[-1].startswith("#1 split_supervoxel")
    assert not [m for m in messages if m[0] == "error"]


def test_edits_in_the_proofread_panel_are_timed_with_no_task_session(panel, qtbot, project, messages):
    # Before, only a Micro-tasks session timed edits: the effort report had no time for these.
    from napari_connectome.effort import EffortLog

    viewer, widget = panel
    pr = widget.proofreader
    assert widget.recorder is not None
    z = pr.labels_volume().shape[0] // 2
    a, b, _ = two_touching_segments(pr, z)
    click(viewer, qtbot, a)
    click(viewer, qtbot, b, shift=True)
    press(viewer, qtbot, "m")
    widget.unbind()  # closes the recorder and its log
    log = EffortLog.open(project, read_only=True)
    try:
        rows = [r for r in log.rows() if r["task_type"] == "manual"]
    finally:
        log.close()
    assert len(rows) == 1 and rows[0]["answer"] == "merge"
    assert not [m for m in messages if m[0] == "error"]


def test_enter_never_commits_a_cut_that_separates_nothing(panel, qtbot, messages):
    from dataclasses import replace

    from napari_connectome.proofread import Effect
    from napari_connectome.proofread.preview import describe_split

    viewer, widget = panel
    pr = widget.proofreader
    z = pr.labels_volume().shape[0] // 2
    a, b, _ = two_touching_segments(pr, z)
    pr.merge(a, b)  # one segment with a seed in each of its two former parts
    good = pr.preview_split([a], [b])
    nothing = Effect()
    empty = replace(good, cut_edges=np.empty((0, 2), np.uint64), sink_supervoxels=np.empty(0, np.uint64),
                    _effect=nothing, _plan=pr.state.plan(nothing))
    empty.problem, empty.message = describe_split(empty.cut_edges, empty.source_supervoxels,
                                                  empty.sink_supervoxels, empty._plan, inside=False,
                                                  supervoxel=None)
    version = pr.version
    widget._show_preview(empty)
    widget.preview, widget._preview_seeds = empty, widget.seeds()
    assert "sinks' side empty" in widget.status_label.text() and "Move the seeds" in widget.status_label.text()
    assert widget.confirm_split() is None
    assert pr.version == version
    assert any("not split" in text for severity, text in messages if severity == "warning")


def test_segment_colours_follow_merge_and_undo(panel, qtbot, messages):
    # Before, the panel coloured segments by id: every edit mints ids, so the body changed colour.
    viewer, widget = panel
    pr = widget.proofreader
    segments = viewer.layers["segments"]
    z = pr.labels_volume().shape[0] // 2
    a, b, (seg_a, seg_b) = two_touching_segments(pr, z)

    def colour_at(point):
        return tuple(np.round(segments.colormap.map(np.array([pr.segment_at(point)]))[0], 3))

    size_a, size_b = (len(pr.segment_supervoxels(s)) for s in (seg_a, seg_b))
    colours = {seg_a: colour_at(a), seg_b: colour_at(b)}
    larger = a if sum(pr.supervoxel_size(int(s)) for s in pr.segment_supervoxels(seg_a)) >= sum(
        pr.supervoxel_size(int(s)) for s in pr.segment_supervoxels(seg_b)) else b
    assert size_a and size_b
    click(viewer, qtbot, a)
    click(viewer, qtbot, b, shift=True)
    press(viewer, qtbot, "m")
    merged = pr.segment_at(a)
    assert merged not in (seg_a, seg_b)
    # The merged body keeps the larger part's colour, on screen too.
    assert colour_at(a) == colour_at(b) == (colours[seg_a] if larger == a else colours[seg_b])
    press(viewer, qtbot, "z", Qt.ControlModifier)  # undo: both parts come back, in their colours
    assert pr.segment_at(a) != pr.segment_at(b)
    assert colour_at(a) == colours[seg_a] and colour_at(b) == colours[seg_b]
    shown = rendered(segments)
    assert shown.size  # drawn through the new mapping
    assert not [m for m in messages if m[0] == "error"]
