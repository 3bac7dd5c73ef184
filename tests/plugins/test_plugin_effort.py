"""The Effort panel in a real viewer (under Xvfb): plots and figures of the effort report."""

from __future__ import annotations

import numpy as np
import pytest
from napari_connectome_plugins import _effort_widget as ew
from napari_connectome_plugins import _microtask_widget as mw

pytestmark = pytest.mark.gui

PLUGIN = "napari-connectome"


class FakeClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = float(start)

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def project(tmp_path):
    from napari_connectome.graph import agglomerate_project
    from napari_connectome.samples import gala_fib_project

    project = gala_fib_project(tmp_path / "p")
    agglomerate_project(project, threshold=0.5)
    return project


@pytest.fixture
def viewer(make_napari_viewer, project):
    viewer = make_napari_viewer(show=True)
    viewer.open(str(project.root), plugin=PLUGIN)
    return viewer


def answer_tasks(viewer, qtbot, clock, keys_and_seconds):
    tasks = mw.MicroTaskWidget(viewer, clock=clock, idle_after_s=60.0)
    viewer.window.add_dock_widget(tasks, name="Micro-tasks", area="right")
    qtbot.waitUntil(lambda: tasks.session is not None and not tasks._busy, timeout=120_000)
    for key, seconds in keys_and_seconds:
        clock.now += seconds
        tasks.press(key)
    return tasks


def test_the_panel_draws_the_report_after_a_task_session(viewer, qtbot, project, messages):
    from napari_connectome.effort import effort_report

    clock = FakeClock()
    tasks = answer_tasks(viewer, qtbot, clock, [("Y", 30), ("N", 12), ("Y", 45), ("S", 5), ("F", 8)])
    try:
        _, panel = viewer.window.add_plugin_dock_widget(PLUGIN, "Effort")
        assert isinstance(panel, ew.EffortWidget)
        panel.refresh()
        assert panel.wait()
        report = panel.report
        assert report is not None
        assert report == effort_report(project, proofreader=tasks.session.proofreader)
        assert report["minutes_active"] == pytest.approx(100 / 60)
        axes = panel.figure.axes
        assert len(axes) == 4
        bars_minutes = [p.get_height() for p in axes[0].patches]
        assert len(bars_minutes) == len(report["per_neuron"]) > 0
        assert bars_minutes == sorted(bars_minutes, reverse=True)  # sorted: the heavy tail shows
        assert sum(bars_minutes) == pytest.approx(sum(r["minutes"] for r in report["per_neuron"]))
        edits = axes[1].patches
        assert len(edits) == 2 * len(report["per_neuron"])  # merge and split stacked per neuron
        merges = sum(p.get_height() for p in edits[: len(edits) // 2])
        assert merges == pytest.approx(sum(r["merges"] for r in report["per_neuron"]))
        splits = sum(p.get_height() for p in edits[len(edits) // 2:])
        assert splits == pytest.approx(sum(r["splits"] for r in report["per_neuron"]))  # halves drawn, not truncated
        points = np.concatenate([line.get_ydata() for line in axes[2].get_lines()])
        assert sorted(points.tolist()) == sorted([30.0, 12.0, 45.0, 5.0, 8.0])
        # The project has a ground truth: every answer recorded the VI after it, drawn against active minutes.
        assert axes[3].get_title() == "VI on the ground truth vs active minutes"
        curve = report["vi_curve"]
        # The curve starts at the state before the first answer, then one point per answer.
        assert len(curve) == 6 and report["vi_start"] is not None and report["vi_end"] is not None
        assert [p["event"] for p in curve] == ["start"] + ["task"] * 5 and report["vi_from_start"]
        assert [p["minutes_active"] for p in curve] == pytest.approx(np.cumsum([0, 30, 12, 45, 5, 8]) / 60)
        assert report["vi_end"] == pytest.approx(tasks.session.vi()["vi"])
        lines = {line.get_label(): line for line in axes[3].get_lines()}
        assert set(lines) == {"split", "merge", "total"}
        assert lines["total"].get_ydata().tolist() == pytest.approx([p["vi"] for p in curve])
        assert lines["split"].get_ydata().tolist() == pytest.approx([p["vi_split"] for p in curve])
        assert lines["merge"].get_xdata().tolist() == pytest.approx([p["minutes_active"] for p in curve])
        assert not [t for t in axes[3].texts if t.get_text() == ew.NO_VI_TEXT]
        text = panel.summary_label.text()
        assert f"VI: {report['vi_start']:.3f} → {report['vi_end']:.3f} bits over 5 answers" in text
        assert "Minutes/mm³" in text and report["volume_basis"] in text
        assert "p50" in text and "p95" in text and "top 5 %" in text
        assert "Projection for 1 mm³" in text
        # The projection follows the target volume, linearly.
        hours = ew.projection(report, 1.0)["hours"]
        panel.target_spin.setValue(10.0)
        assert "Projection for 10 mm³" in panel.summary_label.text()
        if hours is not None:
            assert ew.projection(report, 10.0)["hours"] == pytest.approx(10 * hours)
        assert not [m for m in messages if m[0] == "error"]

        # With both panels open, an answer refreshes the plots.
        clock.now += 7
        tasks.press("N")
        qtbot.waitUntil(lambda: panel.report["tasks"]["total"] == 6, timeout=30_000)
        assert panel.wait()
    finally:
        tasks.close_panel()


def test_without_an_effort_log_or_a_project_the_panel_says_so(make_napari_viewer, viewer, qtbot, messages):
    panel = ew.EffortWidget(viewer)
    assert panel.wait()
    assert panel.report is None and "No effort log yet" in panel.summary_label.text()
    empty = ew.EffortWidget(make_napari_viewer(show=True))
    assert not empty.refresh()
    assert empty.project_label.text() == ew.NO_PROJECT
    assert not empty.refresh_button.isEnabled()
    assert not [m for m in messages if m[0] == "error"]


def test_summary_lines_show_missing_figures_as_dashes():
    lines = ew.summary_lines({"tasks": {"total": 0}, "edits": {}, "cost_projection": {"volume_mm3": 1.0}})
    assert any("t_merge — s" in line for line in lines)
    assert any("needs measured edits" in line for line in lines)


def test_without_ground_truth_the_vi_plot_says_so():
    from matplotlib.figure import Figure

    figure = Figure()
    report = {"per_neuron": [], "vi_curve": []}
    ew.draw(figure, report, [])
    ax = figure.axes[3]
    assert ax.get_title() == "VI on the ground truth vs active minutes"
    assert [t.get_text() for t in ax.texts] == [ew.NO_VI_TEXT] and not ax.get_lines()
    assert not any(line.startswith("VI") for line in ew.summary_lines({"tasks": {}, "edits": {}}))


def test_fractional_edits_per_neuron_are_drawn_not_truncated():
    """A split ends on two neurons and counts half on each: the bars must show the halves."""
    from matplotlib.figure import Figure

    report = {"per_neuron": [
        {"segment": 1, "minutes": 1.0, "merges": 0.0, "splits": 0.5, "tasks": 1},
        {"segment": 2, "minutes": 2.0, "merges": 1.0, "splits": 0.5, "tasks": 2},
    ], "vi_curve": []}
    figure = Figure()
    ew.draw(figure, report, [])
    edits = figure.axes[1].patches
    merges = [p.get_height() for p in edits[: len(edits) // 2]]
    splits = [p.get_height() for p in edits[len(edits) // 2:]]
    assert merges == [1.0, 0.0] and splits == [0.5, 0.5]  # sorted by total edits, largest first
