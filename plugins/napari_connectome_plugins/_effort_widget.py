"""The "Effort" dock widget: how much human time the project's proofreading cost.

Everything comes from the engine's :func:`~napari_connectome.effort.effort_report`
(the effort log for time, the edit log for edits: the source of truth) and
the effort log's rows; the panel only draws it:

- minutes of active work per neuron, sorted (where the time went);
- edits per neuron, merges and splits stacked, sorted (the heavy tail shows);
- active seconds per task over the session (does the work get faster?);
- VI on the ground truth against active minutes (split, merge, total), when
  the tasks were answered with a ground truth (the report's ``vi_curve``);
  without one the plot says so;
- a summary: minutes active, the volume counted (and what was counted),
  minutes/mm³, neurons, minutes/neuron, edits, p50/p95 edits per neuron,
  the share of edits on the top 5 % of neurons, measured t_merge/t_split,
  and the cost of a larger volume projected from them (the spin box sets
  its size in mm³).

The report is computed in a worker thread (it replays the edit log); the
GUI thread only draws.
"""

from __future__ import annotations

import logging
import os

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_connectome_plugins import _notify
from napari_connectome_plugins._layers import layer_meta
from napari_connectome_plugins._project_panel import (
    NO_PROJECT,
    error_line,
    process_events_while,
    project_box,
    start_worker,
    unwrap,
    viewer_project_root,
)
from napari_connectome_plugins._scroll import keep_button_labels, scrolling_layout
from napari_connectome_plugins._workspace import Workspace, rows_written

logger = logging.getLogger(__name__)

WIDGET_NAME = "Effort"
MERGE_COLOUR = "#4c9be8"
SPLIT_COLOUR = "#e8704c"
ANSWER_COLOURS = {
    "yes": "#3cb44b", "no": "#e6194b", "skip": "#a0a0a0", "flag": "#f58231", "undo": "#911eb4",
    "stale": "#808000",
}
MANUAL_COLOUR = "#4363d8"
VI_COLOUR = "#222222"
NO_VI_TEXT = "no ground truth: VI not recorded"
# Debounce of refreshes asked for by the Micro-tasks panel after each answer.
REFRESH_DELAY_MS = 500
DEFAULT_TARGET_MM3 = 1.0


def _num(value, fmt: str = "{:.1f}", missing: str = "—") -> str:
    if value is None:
        return missing
    try:
        value = float(value)
    except (TypeError, ValueError):
        return missing
    if not np.isfinite(value):
        return missing
    return fmt.format(value)


def projection(report: dict, target_mm3: float) -> dict:
    """The report's cost projection scaled to ``target_mm3`` (edits and hours grow linearly with volume)."""
    cost = dict(report.get("cost_projection") or {})
    base = float(cost.get("volume_mm3") or 0.0)
    out = {"volume_mm3": float(target_mm3), "merge_edits": None, "split_edits": None, "decisions": None, "hours": None}
    if base <= 0:
        return out
    factor = float(target_mm3) / base
    for key in ("merge_edits", "split_edits", "decisions", "hours"):
        if cost.get(key) is not None:
            out[key] = float(cost[key]) * factor
    return out


def summary_lines(report: dict, *, target_mm3: float = DEFAULT_TARGET_MM3) -> list[str]:
    """The report as the lines the panel shows under the plots."""
    tasks = report.get("tasks") or {}
    edits = report.get("edits") or {}
    per = report.get("edits_per_neuron") or {}
    answers = ", ".join(f"{k} {int(tasks[k])}" for k in ("yes", "no", "skip", "flag", "undo", "stale") if tasks.get(k))
    lines = [
        f"Active: {_num(report.get('minutes_active'), '{:.1f}')} min · tasks {int(tasks.get('total', 0))}"
        + (f" ({answers})" if answers else ""),
        f"Volume: {_num(report.get('volume_mm3'), '{:.3g}')} mm³ — {report.get('volume_basis') or 'basis unknown'}",
        f"Minutes/mm³: {_num(report.get('minutes_per_mm3'), '{:,.0f}')}",
        f"Neurons: {int(report.get('neurons') or 0)} · minutes/neuron {_num(report.get('minutes_per_neuron'), '{:.2f}')}",
        f"Edits: merge {int(edits.get('merge', 0))} · split {int(edits.get('split', 0))}"
        + (f" · undo {int(edits['undo'])}" if edits.get("undo") else ""),
        f"Edits/neuron: p50 {_num(per.get('p50'), '{:.1f}')} · p95 {_num(per.get('p95'), '{:.1f}')} · "
        f"top 5 % of neurons hold {_num(per.get('top5_share'), '{:.0%}')} of edits",
        f"Measured: t_merge {_num(report.get('t_merge_s'))} s · t_split {_num(report.get('t_split_s'))} s",
    ]
    if report.get("vi_curve"):
        n = report.get("vi_rows") or {}
        over = f"{int(n.get('tasks', 0))} answers" + (f" and {int(n['manual'])} manual edits" if n.get("manual") else "")
        lines.append(f"VI: {_num(report.get('vi_start'), '{:.3f}')} → {_num(report.get('vi_end'), '{:.3f}')} bits "
                     f"over {over}")
    cost = projection(report, target_mm3)
    if cost["hours"] is None:
        lines.append(f"Projection for {target_mm3:g} mm³: needs measured edits and times")
    else:
        lines.append(
            f"Projection for {target_mm3:g} mm³: {_num(cost['merge_edits'], '{:,.0f}')} merges, "
            f"{_num(cost['split_edits'], '{:,.0f}')} splits, {_num(cost['hours'], '{:,.1f}')} h"
        )
    if report.get("recovered_from"):
        lines.append(f"Note: a corrupt effort log was moved aside to {report['recovered_from']}")
    return lines


def draw(figure: Figure, report: dict, rows: list[dict]) -> None:
    """Draw the four plots of ``report`` (and the effort log ``rows``) on ``figure``."""
    figure.clear()
    ax_minutes, ax_edits, ax_time, ax_vi = figure.subplots(4, 1)
    per_neuron = list(report.get("per_neuron") or [])

    by_minutes = sorted(per_neuron, key=lambda r: -float(r.get("minutes") or 0.0))
    minutes = np.array([float(r.get("minutes") or 0.0) for r in by_minutes])
    if minutes.size:
        ax_minutes.bar(np.arange(minutes.size), minutes, color=MERGE_COLOUR, width=0.9)
    ax_minutes.set_title("Active minutes per neuron (sorted)", fontsize=9)
    ax_minutes.set_ylabel("min", fontsize=8)
    ax_minutes.set_xlabel("neurons", fontsize=8)

    # Fractional: an edit that ends on two neurons (a split) counts half on each.
    by_edits = sorted(per_neuron, key=lambda r: -(float(r.get("merges") or 0) + float(r.get("splits") or 0)))
    merges = np.array([float(r.get("merges") or 0) for r in by_edits])
    splits = np.array([float(r.get("splits") or 0) for r in by_edits])
    if merges.size:
        x = np.arange(merges.size)
        ax_edits.bar(x, merges, color=MERGE_COLOUR, width=0.9, label="merge")
        ax_edits.bar(x, splits, bottom=merges, color=SPLIT_COLOUR, width=0.9, label="split")
        ax_edits.legend(fontsize=7, loc="upper right")
    ax_edits.set_title("Edits per neuron (sorted)", fontsize=9)
    ax_edits.set_ylabel("edits", fontsize=8)
    ax_edits.set_xlabel("neurons", fontsize=8)

    timed = [r for r in rows if r.get("answered_at") is not None]
    if timed:
        t0 = min(float(r.get("shown_at") or r["answered_at"]) for r in timed)
        for answer in sorted({_answer_group(r) for r in timed}):
            group = [r for r in timed if _answer_group(r) == answer]
            ax_time.plot(
                [(float(r["answered_at"]) - t0) / 60.0 for r in group],
                [float(r.get("active_s") or 0.0) for r in group],
                "o", markersize=4, label=answer, color=ANSWER_COLOURS.get(answer, MANUAL_COLOUR),
            )
        ax_time.legend(fontsize=7, loc="upper right", ncol=3)
    ax_time.set_title("Active seconds per task over the session", fontsize=9)
    ax_time.set_ylabel("s", fontsize=8)
    ax_time.set_xlabel("minutes since the first task", fontsize=8)
    _draw_vi(ax_vi, list(report.get("vi_curve") or []))
    for ax in (ax_minutes, ax_edits, ax_time, ax_vi):
        ax.tick_params(labelsize=7)


def _draw_vi(ax, curve: list[dict]) -> None:
    """VI (split, merge, total) against cumulative active minutes; a line of text when none was recorded."""
    ax.set_title("VI on the ground truth vs active minutes", fontsize=9)
    if not curve:
        # An empty axes would read as "VI is zero"; say why there is no curve.
        ax.text(0.5, 0.5, NO_VI_TEXT, ha="center", va="center", fontsize=8, transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])
        return
    x = [float(p["minutes_active"]) for p in curve]
    # Steps: the VI holds from one answer to the next (drawstyle steps-post), markers at the answers.
    for key, label, colour in (("vi_split", "split", SPLIT_COLOUR), ("vi_merge", "merge", MERGE_COLOUR),
                               ("vi", "total", VI_COLOUR)):
        ax.plot(x, [float(p[key]) for p in curve], drawstyle="steps-post", marker="o", markersize=3,
                color=colour, label=label)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, loc="upper right", ncol=3)
    ax.set_ylabel("bits", fontsize=8)
    ax.set_xlabel("active minutes", fontsize=8)


def _answer_group(row: dict) -> str:
    if row.get("task_type") == "manual":
        return "manual"
    return str(row.get("answer") or "?")


class EffortWidget(QWidget):
    """Dock widget: the effort report of the project opened in the viewer, with plots.

    Parameters
    ----------
    napari_viewer
        The viewer (napari passes it).
    """

    #: Effort rows were written for a project (any thread; handled on the GUI thread).
    rows_changed = Signal(str)

    def __init__(self, napari_viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = unwrap(napari_viewer)
        self.root: str | None = None
        self.report: dict | None = None
        self.rows: list[dict] = []
        self._busy = ""
        self._again = False
        self._worker = None
        self.setMinimumWidth(360)
        self._build_ui()
        keep_button_labels(self)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(REFRESH_DELAY_MS)
        self._timer.timeout.connect(self.refresh)
        self.viewer.layers.events.inserted.connect(self._on_inserted)
        # Every answer and timed edit writes a row: the report follows the work, whoever did it.
        self.rows_changed.connect(self._on_rows_written, Qt.QueuedConnection)
        self._rows_connection = rows_written.connect(self._rows_listener)
        self.refresh()

    def _build_ui(self) -> None:
        layout = scrolling_layout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        box, form, self.project_label = project_box(self, NO_PROJECT)
        self.volume_combo = QComboBox(box)
        self.volume_combo.addItem("the project's region", "project")
        self.volume_combo.addItem("bounding boxes of reviewed segments", "segments")
        self.volume_combo.setToolTip("Which volume minutes/mm³ and the projection divide by")
        self.volume_combo.currentIndexChanged.connect(lambda _i: self.refresh())
        form.addRow("Volume:", self.volume_combo)
        row = QHBoxLayout()
        self.refresh_button = QPushButton("Refresh", box)
        self.refresh_button.setToolTip("Read the effort and edit logs again")
        self.refresh_button.setFocusPolicy(Qt.NoFocus)
        self.refresh_button.clicked.connect(self.refresh)
        row.addWidget(self.refresh_button)
        row.addStretch(1)
        form.addRow(row)
        layout.addWidget(box)

        # Constrained layout is redone at every draw, so the plots stay apart when the dock is resized.
        self.figure = Figure(figsize=(4.0, 8.0), dpi=90, layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(500)
        layout.addWidget(self.canvas, 1)

        box = QGroupBox("Summary", self)
        summary = QVBoxLayout(box)
        self.summary_label = QLabel("—", box)
        self.summary_label.setWordWrap(True)
        self.summary_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        summary.addWidget(self.summary_label)
        target = QHBoxLayout()
        target.addWidget(QLabel("Project the cost of", box))
        self.target_spin = QDoubleSpinBox(box)
        self.target_spin.setDecimals(3)
        self.target_spin.setRange(0.001, 1e6)
        self.target_spin.setValue(DEFAULT_TARGET_MM3)
        self.target_spin.setSuffix(" mm³")
        self.target_spin.setToolTip("Volume to project the proofreading cost to, from the edits per mm³ and times measured here")
        self.target_spin.valueChanged.connect(lambda _v: self._show_summary())
        target.addWidget(self.target_spin)
        target.addStretch(1)
        summary.addLayout(target)
        layout.addWidget(box)

    # -- project -----------------------------------------------------------------
    def viewer_project_root(self) -> str | None:
        """The folder of the most recently added project layer in the viewer, or None."""
        return viewer_project_root(self.viewer)

    def _on_inserted(self, event) -> None:
        if self.root is None and layer_meta(event.value) is not None:
            self.schedule_refresh()

    def _rows_listener(self, root: str) -> None:
        try:
            self.rows_changed.emit(root)
        except RuntimeError:  # the panel was deleted
            self._rows_connection.disconnect()

    def _on_rows_written(self, root: str) -> None:
        if self.isVisible() and (self.root is None or os.path.abspath(root) == self.root):
            self.schedule_refresh()

    # -- refreshing ------------------------------------------------------------------
    def schedule_refresh(self) -> None:
        """Refresh soon (several calls in a row refresh once)."""
        self._timer.start()

    def refresh(self) -> bool:
        """Compute the report again in a worker thread; the plots follow. False without a project."""
        root = self.viewer_project_root()
        if root is not None:
            root = os.path.abspath(root)
        if root is None:
            self.root = None
            self.project_label.setText(NO_PROJECT)
            self.refresh_button.setEnabled(False)
            return False
        self.refresh_button.setEnabled(True)
        if self._busy:
            self._again = True
            return True
        self.root = root
        self._busy = "computing the effort report"
        # No activity-dock entry: it refreshes after every micro-task answer.
        self._worker = start_worker(
            _compute, root, self.volume_combo.currentData(), self._open_proofreader(root),
            returned=self._on_report, errored=self._on_failed,
        )
        return True

    def _open_proofreader(self, root: str):
        """The Proofreader open in this project's workspace (saves replaying the edit log), or None."""
        workspace = Workspace.find(self.viewer, root)
        return workspace.open_proofreader if workspace is not None else None

    def wait(self, timeout_s: float = 60.0) -> bool:
        """Process events until the report is drawn (scripts and tests)."""
        process_events_while(lambda: bool(self._busy) or self._timer.isActive(), timeout_s)
        return not self._busy

    def _done(self) -> None:
        self._busy = ""
        self._worker = None
        if self._again:
            self._again = False
            self.refresh()

    def _on_report(self, result) -> None:
        name, report, rows, problem = result
        self.project_label.setText(name)
        self.project_label.setToolTip(self.root or "")
        self.report, self.rows = report, rows
        if problem:
            _notify.warning(problem)
        if report is None:
            self.figure.clear()
            self.canvas.draw_idle()
            self.summary_label.setText("No effort log yet: answer micro-tasks or edit in the Proofread panel.")
            self._done()
            return
        try:
            draw(self.figure, report, rows)
            self.canvas.draw_idle()
        except Exception as exc:  # a plot must never take the panel down
            logger.debug("drawing the effort plots failed", exc_info=True)
            _notify.error(_notify.one_line(f"Effort: drawing the plots failed: {type(exc).__name__}: {exc}"))
        self._show_summary()
        self._done()

    def _on_failed(self, exc: Exception) -> None:
        text = error_line("Effort: the report", exc)
        _notify.error(_notify.one_line(text))
        self.summary_label.setText(_notify.one_line(text))
        self._done()

    def _show_summary(self) -> None:
        if self.report is None:
            return
        self.summary_label.setText("\n".join(summary_lines(self.report, target_mm3=self.target_spin.value())))

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self._timer.stop()
        self._rows_connection.disconnect()
        try:
            self.viewer.layers.events.inserted.disconnect(self._on_inserted)
        except Exception:  # already gone with the viewer
            pass
        super().closeEvent(event)


def _compute(root: str, volume: str, proofreader=None) -> tuple[str, dict | None, list[dict], str | None]:
    """Worker: ``(project name, report or None without an effort log, effort log rows, problem or None)``."""
    from napari_connectome.effort import EffortLog, effort_report
    from napari_connectome.project import open_project

    project = open_project(root)
    if not os.path.exists(project.component_path("effort_log")):
        return project.name, None, [], None
    report = effort_report(project, volume=volume, proofreader=proofreader)
    with EffortLog.open(project, read_only=True) as log:
        rows = log.rows()
    return project.name, report, rows, None
