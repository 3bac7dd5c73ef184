"""What the task view shows (issue 10): the cut's two sides, skeletons after edits, stable colours, a wide EM view.

On the bundled gala-fib project (agglomerated at 0.5) in a real viewer under Xvfb.
"""

from __future__ import annotations

import numpy as np
import pytest
from napari_connectome_plugins import _microtask_layers as ml
from napari_connectome_plugins import _microtask_widget as mw

pytestmark = pytest.mark.gui

PLUGIN = "napari-connectome"


def kind_first(kind: str):
    """A strategy asking one kind of task first, biggest impact first (to reach cut tasks at once)."""
    from napari_connectome.rank import Strategy

    class KindFirst(Strategy):
        name = "kind-first"

        def scores(self, candidates):
            return np.array([float(c.kind == kind) * 1e12 + float(c.impact) for c in candidates])

        def to_config(self) -> dict:
            return {"name": self.name, "kind": kind}

    return KindFirst()


@pytest.fixture
def project(tmp_path):
    from napari_connectome.graph import agglomerate_project
    from napari_connectome.proofread import Proofreader
    from napari_connectome.samples import gala_fib_project
    from napari_connectome.skeleton import SkeletonStore

    project = gala_fib_project(tmp_path / "p")
    agglomerate_project(project, threshold=0.5)
    with Proofreader.open(project) as pr:
        SkeletonStore.open(pr)
    return project


@pytest.fixture(params=["false_merge"])
def first_kind(request):
    return request.param


@pytest.fixture
def panel(make_napari_viewer, qtbot, project, messages, first_kind):
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    viewer.open(str(project.root), plugin=PLUGIN)
    widget = mw.MicroTaskWidget(viewer, prefetch=False, strategy=kind_first(first_kind))
    viewer.window.add_dock_widget(widget, name="Micro-tasks", area="right")
    qtbot.waitUntil(lambda: widget.session is not None and not widget._busy, timeout=120_000)
    yield viewer, widget
    widget.close_panel()


def skip_to(widget, kind: str):
    for _ in range(60):
        if widget.current_task is not None and widget.current_task.kind == kind:
            return widget.current_task
        widget.press("S")
    pytest.skip(f"no {kind} task within 60 skips")


def test_a_cut_task_shows_the_two_proposed_sides_in_two_colours(panel):
    viewer, widget = panel
    task = skip_to(widget, "split")
    pr = widget.session.proofreader
    preview = pr.preview_split_supervoxels(list(task.candidate.supervoxels), list(task.candidate.sinks))
    view = widget.task_layers.view
    layer = viewer.layers[ml.SEGMENTS]
    shown = np.asarray(layer.data)
    values = sorted(int(v) for v in np.unique(shown) if v != 0)
    assert len(values) == 2, values  # both sides, not one segment
    # Each side is exactly the supervoxels the engine's cut would put there (inside the crop).
    sv = np.asarray(pr.supervoxel_volume().levels[0].array[
        tuple(slice(int(round((o - off) / v)), int(round((o - off) / v)) + n) for o, off, v, n in zip(
            view.offset_nm, pr.supervoxel_volume().levels[0].offset, view.voxel_size_nm, shown.shape, strict=True))])
    for value, side in zip(values, (preview.source_supervoxels, preview.sink_supervoxels), strict=True):
        assert np.array_equal(shown == value, np.isin(sv, side) & (shown != 0))
    colours = [tuple(np.round(layer.colormap.map(np.array([v]))[0], 3)) for v in values]
    assert colours[0] != colours[1]


@pytest.mark.parametrize("first_kind", ["false_split"])
def test_a_merged_segment_has_a_skeleton_in_the_task_view(panel):
    from dataclasses import replace

    from napari_connectome.tasks import Task, prepare_view

    viewer, widget = panel
    task = skip_to(widget, "merge")
    session = widget.session
    store_before = session.skeletons
    assert all(store_before.get(s) is not None for s in task.segments) or pytest.skip("a segment without skeleton")
    widget.press("Y")
    pr = session.proofreader
    merged = pr.segment_of(int(task.candidate.supervoxels[0]))
    assert merged not in task.segments
    # The panel shows a task about the merged body: its skeleton is there, projected onto the section.
    about = Task.from_candidate(replace(task.candidate, segments=(merged,)))
    # The panel prepares views in a worker thread, where a pending skeleton is waited for; on the
    # main thread (here) it is not, so wait for the update first (it raced on a loaded machine).
    widget.skeletons.wait()
    view = prepare_view(session, about)
    assert view.skeleton_paths, "the merged segment has no skeleton"
    assert set(view.skeleton_segments) == {merged}
    widget.task_layers.show(view)
    assert len(viewer.layers[ml.SKELETONS].data) > 0


def test_colours_follow_a_split_and_come_back_on_undo(panel):
    viewer, widget = panel
    task = skip_to(widget, "split")
    (seg,) = task.segments
    colours = widget.colours
    body = colours.colour(seg)
    layer = viewer.layers[ml.SEGMENTS]
    view = widget.task_layers.view
    # The side drawn in the body's colour is the larger one (in voxels), and it keeps the colour after the cut.
    widget.press("Y")
    pr = widget.session.proofreader
    parts = [pr.segment_of(int(task.candidate.supervoxels[0])), pr.segment_of(int(task.candidate.sinks[0]))]
    assert parts[0] != parts[1]
    from napari_connectome.tasks.colours import segment_size

    larger = max(parts, key=lambda s: segment_size(pr, s))
    smaller = min(parts, key=lambda s: segment_size(pr, s))
    assert colours.colour(larger) == body
    assert colours.colour(smaller) != body
    # The question showed each side in the colour it has now.
    drawn = {view.label_names[v]: view.colors[v] for v in view.colors}
    side_of_larger = "this side" if larger == parts[0] else "other side"
    assert [c for name, c in drawn.items() if side_of_larger in name] == [body]
    assert layer is viewer.layers[ml.SEGMENTS]
    widget.press("U")
    # Undo joins the parts again (under a new id): the body has its colour back.
    restored = pr.segment_of(int(task.candidate.supervoxels[0]))
    assert restored == pr.segment_of(int(task.candidate.sinks[0]))
    assert colours.colour(restored) == body


@pytest.mark.parametrize("first_kind", ["false_split"])
def test_a_merge_keeps_the_larger_bodys_colour(panel):
    _, widget = panel
    task = skip_to(widget, "merge")
    pr = widget.session.proofreader
    from napari_connectome.tasks.colours import segment_size

    a, b = task.segments
    larger = a if segment_size(pr, a) >= segment_size(pr, b) else b
    expected = widget.colours.colour(larger)
    widget.press("Y")
    merged = pr.segment_of(int(task.candidate.supervoxels[0]))
    assert widget.colours.colour(merged) == expected
    smaller_colour = widget.colours.colour(b if larger == a else a)
    widget.press("U")
    # Undo divides it again (new ids): each part has its own colour back, the smaller one too.
    back = [pr.segment_of(int(sv)) for sv in task.candidate.supervoxels[:2]]
    assert back[0] != back[1]
    got = {widget.colours.colour(s) for s in back}
    assert got == {expected, smaller_colour}


def test_the_em_view_is_at_least_2_um_across_where_the_volume_allows(panel):
    from napari_connectome.tasks.view import crop_box, crop_edge_nm

    viewer, widget = panel
    view = widget.task_layers.view
    edge = crop_edge_nm(None, view.voxel_size_nm)
    assert edge[1] >= 2000 and edge[2] >= 2000
    level = widget.session.proofreader.supervoxel_volume().levels[0]
    box, _ = crop_box(view.point_nm, shape=level.shape, voxel_size=level.voxel_size, offset=level.offset)
    em = viewer.layers[ml.EM]
    # The layer holds that crop (cut only at the volume's faces), at full resolution, in 2D.
    assert tuple(em.data.shape) == tuple(b.stop - b.start for b in box)
    np.testing.assert_allclose(em.scale, level.voxel_size)
    extent_nm = np.asarray(em.data.shape) * np.asarray(em.scale)
    for axis in (1, 2):
        assert extent_nm[axis] >= min(2000.0, level.shape[axis] * level.voxel_size[axis] / 2)
    assert viewer.dims.ndisplay == 2


def test_comma_and_full_stop_step_through_the_sections_of_the_task(panel, qtbot):
    viewer, widget = panel
    view = widget.task_layers.view
    z = float(view.voxel_size_nm[0])
    start = float(viewer.dims.point[0])
    assert np.isclose(start, view.point_nm[0])
    native = viewer.window._qt_viewer.canvas.native
    qtbot.keyClick(native, ".")  # a real key press on the canvas
    assert np.isclose(viewer.dims.point[0], start + z)
    qtbot.keyClick(native, ",")
    qtbot.keyClick(native, ",")
    assert np.isclose(viewer.dims.point[0], start - z)
    assert widget.current_task.id == view.task.id  # still the same task
    # Never past the crop's first section.
    for _ in range(view.em.shape[0] + 2):
        widget.press(",")
    assert np.isclose(viewer.dims.point[0], view.offset_nm[0])


def test_3d_on_demand_shows_the_section_as_a_plane_and_hides_the_projections(panel, qtbot):
    viewer, widget = panel
    view = widget.task_layers.view
    viewer.dims.ndisplay = 3
    em = viewer.layers[ml.EM]
    assert em.depiction == "plane"
    assert np.isclose(em.plane.position[0], view.point_voxel[0])
    assert not viewer.layers[ml.SKELETONS].visible and not viewer.layers[ml.POINT].visible
    viewer.dims.ndisplay = 2
    assert em.depiction == "volume"
    assert viewer.layers[ml.SKELETONS].visible and viewer.layers[ml.POINT].visible
