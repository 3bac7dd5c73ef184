"""The Segment panel: a project's raw EM → affinities → supervoxels → graph, here, with progress and cancel.

The work is :func:`napari_connectome.segment.project_run.segment_project`
in a worker thread; the panel shows which device runs the network and why
(found once, in a worker: importing torch takes seconds), a progress bar per
stage, and a Cancel button that stops between blocks — the finished blocks
stay on disk and the next run resumes. When it is done the new supervoxels
and boundaries come in as layers, and the Proofread and Micro-tasks panels
can open the project.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QWidget,
)

from napari_connectome_plugins import _notify
from napari_connectome_plugins._layers import META_KEY, layer_meta
from napari_connectome_plugins._project_panel import (
    NO_PROJECT,
    error_line,
    process_events_while,
    project_box,
    start_worker,
    viewer_project_root,
)
from napari_connectome_plugins._scroll import keep_button_labels, scrolling_layout
from napari_connectome_plugins._workspace import unwrap

logger = logging.getLogger(__name__)

REGIONS = (("whole", "the whole volume"), ("view", "what the view shows (±32 sections)"),
           ("box", "a box (nm)"))
DEVICES = ("auto", "cpu", "cuda", "mps")
#: Sections above and below the current one that "what the view shows" covers.
VIEW_HALF_DEPTH = 32


class _Progress(QObject):
    """The engine's progress protocol, told across threads by signals; raises on cancel."""

    started = Signal(int, str)
    advanced = Signal(int)

    def __init__(self, cancel: threading.Event) -> None:
        super().__init__()
        self.cancel = cancel

    def start(self, total: int, description: str) -> None:
        self.started.emit(int(total), str(description))

    def advance(self, steps: int = 1) -> None:
        from napari_connectome.errors import CancelledError

        self.advanced.emit(int(steps))
        if self.cancel.is_set():
            raise CancelledError("segmentation cancelled; finished blocks are kept: Segment again to resume")

    def close(self) -> None:
        return None


def _device_reason(name: str) -> str:
    from napari_connectome.inference.device import choose_device

    return choose_device(name).reason


def _segment(root: str, options: dict, progress: _Progress, said: list[str]):
    from napari_connectome.project import open_project
    from napari_connectome.segment.project_run import segment_project

    return segment_project(open_project(root), progress=progress, cancel=progress.cancel,
                           notify=said.append, **options)


class SegmentWidget(QWidget):
    """Dock widget: segment the project open in the viewer.

    Parameters
    ----------
    napari_viewer
        The viewer (napari passes it).
    """

    def __init__(self, napari_viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = unwrap(napari_viewer)
        self.root: str | None = None
        self.report = None
        self._worker = None
        self._device_worker = None
        self._cancel = threading.Event()
        self._progress: _Progress | None = None
        self._said: list[str] = []
        self._done = 0
        self.setMinimumWidth(340)
        self._build_ui()
        keep_button_labels(self)
        self.viewer.layers.events.inserted.connect(self._on_layers_changed)
        self.viewer.layers.events.removed.connect(self._on_layers_changed)
        self._on_layers_changed()
        self._find_device()

    # -- building -------------------------------------------------------------
    def _build_ui(self) -> None:
        layout = scrolling_layout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        box, form, self.project_label = project_box(self, NO_PROJECT)
        self.state_label = QLabel("", box)
        self.state_label.setWordWrap(True)
        form.addRow(self.state_label)
        layout.addWidget(box)

        from qtpy.QtWidgets import QFormLayout, QGroupBox

        run_box = QGroupBox("Segmentation", self)
        run_form = QFormLayout(run_box)
        self.model_combo = QComboBox(run_box)
        for entry in self._models():
            self.model_combo.addItem(f"{entry.name} ({_vs(entry.voxel_size_nm)})", entry.name)
        self.model_combo.setToolTip("The affinity network; shipped models load offline after a sha256 check")
        model_row = QHBoxLayout()
        model_row.addWidget(self.model_combo, 1)
        self.weights_button = QPushButton("File…", run_box)
        self.weights_button.setToolTip("Use weights you trained (napari-connectome train … --export FILE.pt)")
        self.weights_button.clicked.connect(self.choose_weights)
        model_row.addWidget(self.weights_button)
        run_form.addRow("Model:", model_row)
        self.device_combo = QComboBox(run_box)
        for name in DEVICES:
            self.device_combo.addItem(name, name)
        self.device_combo.currentIndexChanged.connect(lambda _i: self._find_device())
        run_form.addRow("Device:", self.device_combo)
        self.device_label = QLabel("looking for a GPU…", run_box)
        self.device_label.setWordWrap(True)
        run_form.addRow(self.device_label)
        self.region_combo = QComboBox(run_box)
        for key, text in REGIONS:
            self.region_combo.addItem(text, key)
        run_form.addRow("Region:", self.region_combo)
        self.box_edit = QLineEdit(run_box)
        self.box_edit.setPlaceholderText("Z0 Y0 X0 Z1 Y1 X1")
        self.box_edit.setToolTip("The box to segment in nm (world coordinates, as the status bar shows them); "
                                 "grown to whole blocks")
        self.box_label = QLabel("Box (nm):", run_box)
        run_form.addRow(self.box_label, self.box_edit)
        self.region_combo.currentIndexChanged.connect(lambda _i: self._show_box())
        # long model names and file names must not widen the dock past the screen (sideways scrolling)
        for combo in (self.model_combo, self.device_combo, self.region_combo):
            combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(8)
        buttons = QHBoxLayout()
        self.run_button = QPushButton("Segment", run_box)
        self.run_button.setToolTip("Affinities → supervoxels → graph; stages already up to date are skipped")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel", run_box)
        self.cancel_button.setToolTip("Stop between blocks; what is done is kept and the next run resumes")
        self.cancel_button.clicked.connect(self.cancel)
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        run_form.addRow(buttons)
        self.stage_label = QLabel("", run_box)
        run_form.addRow(self.stage_label)
        self.progress_bar = QProgressBar(run_box)
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        run_form.addRow(self.progress_bar)
        self.result_label = QLabel("", run_box)
        self.result_label.setWordWrap(True)
        self.result_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        run_form.addRow(self.result_label)
        layout.addWidget(run_box)
        layout.addStretch(1)
        self._show_box()
        self._update_controls()

    def _show_box(self) -> None:
        """The box field shows only for "a box"; it starts as the whole volume's box."""
        show = self.region_combo.currentData() == "box"
        self.box_label.setVisible(show)
        self.box_edit.setVisible(show)
        if show and not self.box_edit.text().strip() and self.root is not None:
            from napari_connectome.errors import ConnectomeError
            from napari_connectome.project import open_project

            try:
                roi = open_project(self.root).open_input("raw").levels[0].roi
            except ConnectomeError:
                return
            self.box_edit.setText(" ".join(f"{v:g}" for v in (*roi.begin, *roi.end)))

    @staticmethod
    def _models() -> list:
        try:
            from napari_connectome_models.registry import list_models
        except ImportError:
            return []
        return list_models("affinities")

    # -- state ---------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._worker is not None

    def _update_controls(self) -> None:
        has_project = self.root is not None
        self.run_button.setEnabled(has_project and not self.busy and self.model_combo.count() > 0)
        self.cancel_button.setEnabled(self.busy)
        for w in (self.model_combo, self.weights_button, self.device_combo, self.region_combo, self.box_edit):
            w.setEnabled(not self.busy)

    def _on_layers_changed(self, event=None) -> None:
        if self.busy:
            return
        root = viewer_project_root(self.viewer)
        self.root = root
        if root is None:
            self.project_label.setText(NO_PROJECT)
            # an EM volume opened on its own is one step from being segmented: say which
            self.state_label.setText("To segment an EM volume, make a project of it: New project… (Alt+N) in the "
                                     "Connectome panel, then Segment here.")
        else:
            self.project_label.setText(os.path.basename(os.path.normpath(root)) or root)
            self.project_label.setToolTip(root)
            self.state_label.setText(self._state_text(root))
        self._update_controls()

    @staticmethod
    def _state_text(root: str) -> str:
        from napari_connectome.errors import ConnectomeError
        from napari_connectome.project import open_project

        try:
            project = open_project(root)
        except ConnectomeError as exc:
            return _notify.one_line(exc)
        if "supervoxels" not in project.inputs:
            return "Only raw EM so far: Segment makes its supervoxels and graph, then Proofread and Micro-tasks work."
        if "segmentation" in (project.manifest.get("components") or {}) or (
                "segmentation" in str(project.inputs["supervoxels"].get("uri", ""))):
            return "Segmented here; Segment again resumes or skips what is up to date."
        return "Has supervoxels from elsewhere: they are kept (segment the raw EM in a new project to compare)."

    def _find_device(self) -> None:
        name = self.device_combo.currentData() or "auto"
        self.device_label.setText("looking for a GPU…" if name == "auto" else f"checking {name}…")
        self._device_worker = start_worker(_device_reason, name, returned=self._on_device,
                                           errored=self._on_device_failed)

    def _on_device(self, reason: str) -> None:
        self.device_label.setText(reason)
        self._device_worker = None

    def _on_device_failed(self, exc: Exception) -> None:
        self.device_label.setText(error_line("device", exc))
        self._device_worker = None

    def choose_weights(self, path: str | None = None) -> bool:
        """Add a weights file (``.pt``) to the models and select it; ``path`` skips the dialog."""
        if path is None:
            path, _ = QFileDialog.getOpenFileName(self, "Weights to segment with", "", "Weights (*.pt)")
        if not path:
            return False
        self.model_combo.addItem(os.path.basename(path), os.path.abspath(path))
        self.model_combo.setCurrentIndex(self.model_combo.count() - 1)
        self._update_controls()
        return True

    def view_region(self):
        """The box the 2D view shows (yx on screen, ±32 sections in z) in nm, or None in 3D."""
        from napari_connectome.volume.roi import Roi

        if self.viewer.dims.ndisplay != 2:
            return None
        layer = next((la for la in self.viewer.layers if (layer_meta(la) or {}).get("role") == "raw"), None)
        if layer is None:
            return None
        vs = [float(v) for v in layer.scale[-3:]]
        z = float(self.viewer.dims.point[-3])
        h, w = getattr(self.viewer, "_canvas_size", (800, 800))
        zoom = float(self.viewer.camera.zoom) or 1.0
        cy, cx = (float(c) for c in self.viewer.camera.center[-2:])
        half_y, half_x = h / zoom / 2, w / zoom / 2
        return Roi.from_bounds((z - VIEW_HALF_DEPTH * vs[0], cy - half_y, cx - half_x),
                               (z + VIEW_HALF_DEPTH * vs[0], cy + half_y, cx + half_x))

    # -- running -------------------------------------------------------------
    def run(self) -> bool:
        """Start segmenting the project (False when there is none or it is already running)."""
        if self.root is None or self.busy:
            return False
        region = None
        if self.region_combo.currentData() == "view":
            region = self.view_region()
            if region is None:
                _notify.warning("Segment: what the view shows is defined in 2D; switch to 2D or choose the whole volume")
                return False
        elif self.region_combo.currentData() == "box":
            from napari_connectome.errors import ConnectomeError
            from napari_connectome.volume.roi import parse_box

            try:
                region = parse_box(self.box_edit.text().replace(",", " ").split(), name="Segment box")
            except ConnectomeError as exc:
                self.result_label.setText(_notify.one_line(exc))
                _notify.error(exc)
                return False
        options: dict[str, Any] = {"model": self.model_combo.currentData(),
                                   "device": self.device_combo.currentData(), "region_nm": region}
        self._cancel = threading.Event()
        self._progress = _Progress(self._cancel)
        self._progress.started.connect(self._on_started, Qt.QueuedConnection)
        self._progress.advanced.connect(self._on_advanced, Qt.QueuedConnection)
        self._said = []
        self.result_label.setText("")
        self._worker = start_worker(_segment, self.root, options, self._progress, self._said,
                                    returned=self._on_done, errored=self._on_failed, desc="segmenting")
        self._update_controls()
        return True

    def cancel(self) -> None:
        """Stop after the blocks in flight (kept; the next run resumes)."""
        self._cancel.set()
        self.stage_label.setText(self.stage_label.text() + " — cancelling…")

    def _on_started(self, total: int, description: str) -> None:
        self._done = 0
        self.stage_label.setText(description)
        self.progress_bar.setRange(0, max(1, total))
        self.progress_bar.setValue(0)

    def _on_advanced(self, steps: int) -> None:
        self._done += steps
        self.progress_bar.setValue(min(self._done, self.progress_bar.maximum()))

    def _on_done(self, report) -> None:
        self._worker = None
        self.report = report
        stages = ", ".join(f"{k} {v}" for k, v in report.stages.items())
        fig = report.figures
        text = stages
        if "supervoxels" in fig:
            text += f"; {fig['supervoxels']} supervoxels"
        if "segments" in fig:
            text += f"; threshold {fig['threshold']:g} → {fig['segments']} segments"
        self.result_label.setText(text)
        self.stage_label.setText("done")
        self._add_layers()
        _notify.info(f"Segment: {text}")
        self._on_layers_changed()

    def _on_failed(self, exc: Exception) -> None:
        from napari_connectome.errors import CancelledError

        self._worker = None
        if isinstance(exc, CancelledError):
            self.stage_label.setText("cancelled")
            self.result_label.setText("Cancelled: the finished blocks are kept; Segment again to resume.")
            _notify.info("Segment: cancelled; Segment again to resume")
        else:
            self.stage_label.setText("failed")
            self.result_label.setText(error_line("Segment", exc))
            _notify.error(error_line("Segment", exc))
        self._update_controls()

    def _add_layers(self) -> None:
        """Bring the project's new inputs (supervoxels, boundaries) in as layers, replacing stale ones."""
        from napari_connectome_plugins._reader import read_layers

        root = os.path.abspath(self.root)
        wanted = ("supervoxels", "boundaries")
        for layer in list(self.viewer.layers):
            meta = layer_meta(layer) or {}
            if meta.get("project") == root and meta.get("role") in wanted:
                self.viewer.layers.remove(layer)
        for data, kwargs, kind in read_layers(root):
            meta = (kwargs.get("metadata") or {}).get(META_KEY) or {}
            if meta.get("role") in wanted:
                getattr(self.viewer, f"add_{kind}")(data, **kwargs)

    def wait(self, timeout_s: float = 600.0) -> bool:
        """Process events until the run ends (scripts and tests); True if it ended."""
        process_events_while(lambda: self.busy, timeout_s)
        return not self.busy

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self._cancel.set()
        for signal, slot in ((self.viewer.layers.events.inserted, self._on_layers_changed),
                             (self.viewer.layers.events.removed, self._on_layers_changed)):
            try:
                signal.disconnect(slot)
            except (TypeError, ValueError, RuntimeError):
                logger.debug("already disconnected", exc_info=True)
        super().closeEvent(event)


def _vs(voxel_size) -> str:
    return "×".join(f"{v:g}" for v in voxel_size) + " nm"
