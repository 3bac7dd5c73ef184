"""The "Train" dock widget: train or fine-tune an affinity network from the layers in the viewer.

Pick the EM (an Image layer) and a Labels layer — dense labels, or strokes
painted in napari where only painted voxels count — or, when a project is
open, the proofread segmentation inside a box (the proofreader's corrections
teach the network), the network to start from
(a shipped model, or a new one), the iterations and a run folder, and press
Train. The engine's :func:`~napari_connectome.train.run.run_training` runs in
a worker thread; the GUI thread only polls its progress (a timer reads two
integers and a line of text), so painting, panning and other panels stay
live. Cancel stops after the current iteration with a checkpoint; Train again
with the same choices continues the run (more iterations extend it). Export
writes the weights as the model registry loads them, with what made them.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from pathlib import Path

import numpy as np
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QWidget,
)

from napari_connectome.errors import CancelledError
from napari_connectome.progress import NullProgress
from napari_connectome_plugins import _notify
from napari_connectome_plugins._project_panel import (
    error_line,
    process_events_while,
    start_worker,
    unwrap,
    viewer_project_root,
)
from napari_connectome_plugins._scroll import keep_button_labels, scrolling_layout

logger = logging.getLogger(__name__)

WIDGET_NAME = "Train"
#: The "start from" choice that trains a new network.
NEW_NETWORK = "a new network"
#: How often the panel reads the worker's progress (ms).
POLL_MS = 200
DEFAULT_ITERATIONS = 200
DEFAULT_PATCH_EDGE = 16


class PanelProgress(NullProgress):
    """The engine's progress protocol as plain numbers the GUI thread reads (never touches Qt).

    Attributes
    ----------
    total, done
        Iterations to reach and done so far (a resumed run starts high).
    cancelled
        Set by Cancel; the next :meth:`advance` raises, after the iteration's checkpoint.
    line
        The last line the training loop logged (resumes, checkpoints).
    losses
        The loss of every iteration of this call, in order.
    """

    def __init__(self) -> None:
        super().__init__()
        self.line = ""
        self.losses: list[float] = []

    def iteration(self, done: int, loss: float) -> None:
        """Keep an iteration's loss (appending to a list is atomic under the GIL)."""
        self.losses.append(float(loss))

    def recent_loss(self, n: int = 20) -> float | None:
        """Mean loss of the last ``n`` iterations (a single patch's loss jumps around), or None."""
        last = self.losses[-n:]
        return float(np.mean(last)) if last else None

    def advance(self, steps: int = 1) -> None:
        """Count the iterations done, then stop if cancelled (the loop calls this after each step)."""
        self.done += steps
        if self.cancelled:
            raise CancelledError("cancelled by the user")

    def log(self, line: str) -> None:
        """Keep the training loop's latest line."""
        self.line = " ".join(str(line).split())


def default_run_folder() -> Path:
    """A new run folder under ``~/napari-connectome/runs`` named after the time."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path.home() / "napari-connectome" / "runs" / f"train-{stamp}"


def layer_grid(layer) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The last three axes' scale and translate of a layer (nm per voxel, nm)."""
    return tuple(float(v) for v in layer.scale[-3:]), tuple(float(v) for v in layer.translate[-3:])


def _level0(layer):
    """The full-resolution data of a layer (its first level when multiscale)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def train_job(raw, labels: np.ndarray, *, sparse: bool, voxel_size, base: str | None, iterations: int, seed: int,
              patch: int, folder: str, progress: PanelProgress, raw_name: str, labels_name: str) -> dict:
    """Plan, read the training data from layer arrays, and train or resume (runs in the worker thread).

    Returns
    -------
    dict
        ``checkpoint`` (path), ``iteration`` and ``iterations``.
    """
    from napari_connectome.train import from_arrays, plan
    from napari_connectome.train.run import check_run_folder

    check_run_folder(folder)
    run_plan = plan(base=base, voxel_size=voxel_size, patch=(patch, patch, patch))
    data = from_arrays(raw, labels, sparse=sparse, voxel_size=voxel_size, context=run_plan.context,
                       raw_name=raw_name, labels_name=labels_name)
    return _train(run_plan, data, iterations=iterations, seed=seed, folder=folder, progress=progress)


def project_train_job(root: str, box: list[float], *, base: str | None, iterations: int, seed: int, patch: int,
                      folder: str, progress: PanelProgress) -> dict:
    """Train on a project's proofread segmentation inside ``box`` (nm), its EM as the raw (worker thread)."""
    from napari_connectome.project import open_project
    from napari_connectome.train import from_project, plan
    from napari_connectome.train.run import check_run_folder
    from napari_connectome.train.sources import parse_box

    check_run_folder(folder)
    project = open_project(root)
    raw = project.open_input("raw")
    run_plan = plan(base=base, voxel_size=raw.levels[0].spatial_voxel_size, patch=(patch, patch, patch))
    data = from_project(project, box=parse_box(box), raw=raw, context=run_plan.context)
    return _train(run_plan, data, iterations=iterations, seed=seed, folder=folder, progress=progress)


def _train(run_plan, data, *, iterations: int, seed: int, folder: str, progress: PanelProgress) -> dict:
    from napari_connectome.train import make_config, run_training
    from napari_connectome.train.run import checkpoint_iteration

    config = make_config(run_plan, data, iterations=iterations, seed=seed)
    last = run_training(data, config, folder, progress=progress, log=progress.log, on_iteration=progress.iteration)
    return {"checkpoint": str(last), "iteration": checkpoint_iteration(last), "iterations": config.iterations}


def project_box_text(root: str) -> str:
    """The whole EM volume of the project at ``root`` as ``Z0 Y0 X0 Z1 Y1 X1`` in nm (a box to start from)."""
    from napari_connectome.project import open_project

    roi = open_project(root).open_input("raw").levels[0].roi
    return " ".join(f"{v:g}" for v in (*roi.begin, *roi.end))


class TrainWidget(QWidget):
    """Dock widget: train an affinity network on an Image and a Labels layer, in a worker thread.

    Parameters
    ----------
    napari_viewer
        The viewer (napari passes it).
    """

    def __init__(self, napari_viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = unwrap(napari_viewer)
        self.progress: PanelProgress | None = None
        self.result: dict | None = None
        self.error: str | None = None
        self._worker = None
        self.setMinimumWidth(300)
        self._build_ui()
        keep_button_labels(self)
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._poll)
        events = self.viewer.layers.events
        events.inserted.connect(self._refresh_layers)
        events.removed.connect(self._refresh_layers)
        self._refresh_layers()
        self._update_controls()

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        layout = scrolling_layout(self)
        layout.setContentsMargins(6, 6, 6, 6)

        data = QGroupBox("Training data", self)
        form = QFormLayout(data)
        self.image_combo = QComboBox(data)
        self.image_combo.setToolTip("The EM the network learns to read (an Image layer)")
        self.image_label = QLabel("EM image:", data)
        form.addRow(self.image_label, self.image_combo)
        self.labels_combo = QComboBox(data)
        self.labels_combo.setToolTip("Labels on the image's grid (one id per object), or the proofread "
                                     "segments of the project open in the viewer")
        form.addRow("Labels:", self.labels_combo)
        self.labels_combo.currentIndexChanged.connect(lambda _i: self._labels_changed())
        self.box_edit = QLineEdit(data)
        self.box_edit.setPlaceholderText("Z0 Y0 X0 Z1 Y1 X1")
        self.box_edit.setToolTip(
            "With a project's proofread segments: the box to learn from, in nm (z, y, x begin, then end).\n"
            "The status bar shows the position under the mouse in nm.")
        self.box_label = QLabel("Box (nm):", data)
        form.addRow(self.box_label, self.box_edit)
        self.sparse_check = QCheckBox("Only painted voxels count", data)
        self.sparse_check.setChecked(True)
        self.sparse_check.setToolTip(
            "On: label 0 is unpainted and ignored; paint a few objects, and neighbours in different labels.\n"
            "Off: dense labels, every voxel labelled; 0 is the boundary between objects.")
        form.addRow(self.sparse_check)
        layout.addWidget(data)

        net = QGroupBox("Network", self)
        form = QFormLayout(net)
        self.base_combo = QComboBox(net)
        self.base_combo.setToolTip("A shipped model to fine-tune (small learning rate), or a new network")
        for name in _affinity_models():
            self.base_combo.addItem(name, name)
        self.base_combo.addItem(NEW_NETWORK, None)
        form.addRow("Start from:", self.base_combo)
        self.iterations_spin = QSpinBox(net)
        self.iterations_spin.setRange(1, 1_000_000)
        self.iterations_spin.setValue(DEFAULT_ITERATIONS)
        self.iterations_spin.setToolTip("Iterations to reach; raising it later extends the same run")
        form.addRow("Iterations:", self.iterations_spin)
        self.seed_spin = QSpinBox(net)
        self.seed_spin.setRange(0, 2**31 - 1)
        self.seed_spin.setToolTip("Seeds the patches (and a new network's weights): the same seed repeats the run")
        form.addRow("Seed:", self.seed_spin)
        self.patch_spin = QSpinBox(net)
        self.patch_spin.setRange(4, 128)
        self.patch_spin.setValue(DEFAULT_PATCH_EDGE)
        self.patch_spin.setSuffix(" voxels")
        self.patch_spin.setToolTip("Edge of the output window of one training patch (smaller: faster on a CPU)")
        form.addRow("Patch:", self.patch_spin)
        # The folder gets a row of its own: a path beside its label would make the dock scroll sideways.
        self.browse_button = QPushButton("Browse…", net)
        self.browse_button.setToolTip("Choose the run folder")
        self.browse_button.clicked.connect(self._browse)
        form.addRow("Run folder:", self.browse_button)
        self.folder_edit = QLineEdit(str(default_run_folder()), net)
        self.folder_edit.setMinimumWidth(120)
        self.folder_edit.setToolTip("Checkpoints, log and provenance go here; Train again continues the run in it")
        self.folder_edit.textChanged.connect(lambda _t: self._update_controls())
        form.addRow(self.folder_edit)
        for combo in (self.image_combo, self.labels_combo, self.base_combo):
            # long layer or model names must not widen the dock beyond the screen
            combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(8)
        layout.addWidget(net)

        run = QGroupBox("Run", self)
        form = QFormLayout(run)
        row = QHBoxLayout()
        self.train_button = QPushButton("Train", run)
        self.train_button.setToolTip("Train in the background (continues the run in the folder, if any)")
        self.train_button.clicked.connect(self.start)
        row.addWidget(self.train_button)
        self.cancel_button = QPushButton("Cancel", run)
        self.cancel_button.setToolTip("Stop after this iteration, with a checkpoint; Train continues from it")
        self.cancel_button.clicked.connect(self.cancel)
        row.addWidget(self.cancel_button)
        form.addRow(row)
        # Export on a row of its own: three buttons side by side made a narrow dock scroll sideways.
        self.export_button = QPushButton("Export weights…", run)
        self.export_button.setToolTip("Write the run's latest weights as a .pt the model registry loads")
        self.export_button.clicked.connect(self._export_clicked)
        form.addRow(self.export_button)
        self.progress_bar = QProgressBar(run)
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("%v / %m iterations")
        form.addRow(self.progress_bar)
        self.status_label = QLabel("Paint labels, then Train.", run)
        self.status_label.setWordWrap(True)
        self.status_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        form.addRow(self.status_label)
        layout.addWidget(run)
        layout.addStretch(1)

    def _refresh_layers(self, *_event) -> None:
        """Offer the viewer's Image and Labels layers (and an open project's proofread segments)."""
        from napari.layers import Image, Labels

        for combo, kind in ((self.image_combo, Image), (self.labels_combo, Labels)):
            chosen = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            names = [layer.name for layer in self.viewer.layers if isinstance(layer, kind) and layer.ndim >= 3]
            combo.addItems(names)
            if combo is self.labels_combo:
                root = viewer_project_root(self.viewer)
                if root is not None:
                    combo.addItem(f"proofread segments of {Path(root).name}", root)
                    combo.setItemData(combo.count() - 1, f"The segments of {root} as proofread, inside the box",
                                      Qt.ToolTipRole)
            names = [combo.itemText(i) for i in range(combo.count())]
            if chosen in names:
                combo.setCurrentText(chosen)
            combo.blockSignals(False)
        self._labels_changed()

    def project_root(self) -> str | None:
        """The project whose proofread segments are chosen as labels, or None (a Labels layer is)."""
        data = self.labels_combo.currentData()
        return str(data) if data else None

    def _labels_changed(self) -> None:
        root = self.project_root()
        if root is not None and not self.box_edit.text().strip():
            try:
                self.box_edit.setText(project_box_text(root))
            except Exception as exc:  # an unreadable project: said when Train is pressed
                logger.debug("no box for %s: %s", root, exc)
        self._update_controls()

    def _update_controls(self) -> None:
        busy = self.busy
        project = self.project_root() is not None
        ready = project or (self.image_combo.count() > 0 and self.labels_combo.count() > 0)
        self.train_button.setEnabled(ready and not busy)
        self.cancel_button.setEnabled(busy)
        self.export_button.setEnabled(not busy and self._has_checkpoint())
        for w in (self.labels_combo, self.base_combo, self.iterations_spin, self.seed_spin, self.patch_spin,
                  self.folder_edit, self.browse_button):
            w.setEnabled(not busy)
        # A project brings its own EM and a dense segmentation: only the box is asked for.
        # Rows that do not apply are hidden, not greyed (a greyed, ticked "painted" box misled).
        for w in (self.image_label, self.image_combo, self.sparse_check):
            w.setVisible(not project)
        for w in (self.box_label, self.box_edit):
            w.setVisible(project)
        self.image_combo.setEnabled(not busy)
        self.sparse_check.setEnabled(not busy)
        self.box_edit.setEnabled(not busy)
        if not ready and not busy:
            self.status_label.setText("Add an EM image and a Labels layer (Layers → New labels layer), "
                                      "paint a few objects, then Train.")

    def folder(self) -> str:
        """The run folder as typed, with ``~`` expanded ("" when none)."""
        text = self.folder_edit.text().strip()
        return os.path.expanduser(text) if text else ""

    def _has_checkpoint(self) -> bool:
        from napari_connectome.train import latest_checkpoint

        try:
            return bool(self.folder()) and latest_checkpoint(self.folder()) is not None
        except OSError:
            return False

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Run folder", self.folder_edit.text())
        if folder:
            self.folder_edit.setText(folder)

    # ------------------------------------------------------------------ training
    @property
    def busy(self) -> bool:
        """True while a training run is in its worker thread."""
        return self._worker is not None

    def start(self) -> bool:
        """Train (or continue) with the panel's choices; False when it could not start (one line shown)."""
        if self.busy:
            return False
        if self.project_root() is not None:
            return self._start_project()
        layers = {layer.name: layer for layer in self.viewer.layers}
        image = layers.get(self.image_combo.currentText())
        labels = layers.get(self.labels_combo.currentText())
        if image is None or labels is None:
            self._fail("Train: choose an EM image and a Labels layer")
            return False
        if layer_grid(image) != layer_grid(labels):
            self._fail(f"Train: {labels.name}: the labels are not on the image's grid "
                       f"(scale and translate {layer_grid(labels)} vs {layer_grid(image)})")
            return False
        # A copy: the proofreader may paint on while the worker reads the strokes.
        painted = np.array(_level0(labels), copy=True)
        raw = _level0(image)  # a reference (lazy data stay lazy); only the worker reads voxels
        options = self._options()
        if options is None:
            return False
        options.update(sparse=self.sparse_check.isChecked(), voxel_size=layer_grid(image)[0], raw_name=image.name,
                       labels_name=labels.name)
        return self._run(lambda: train_job(raw, painted, **options))

    def _start_project(self) -> bool:
        """Train on the open project's proofread segments inside the box."""
        try:
            box = [float(v) for v in self.box_edit.text().replace(",", " ").split()]
        except ValueError:
            box = []
        if len(box) != 6:
            self._fail(f"Train: box {self.box_edit.text()!r} needs six numbers in nm: Z0 Y0 X0 Z1 Y1 X1")
            return False
        options = self._options()
        if options is None:
            return False
        root = self.project_root()
        return self._run(lambda: project_train_job(root, box, **options))

    def _options(self) -> dict | None:
        """The network and run choices, read here on the GUI thread (the worker never touches a widget)."""
        folder = self.folder()
        if not folder:
            self._fail("Train: choose a run folder")
            return None
        self.progress = PanelProgress()
        return {"base": self.base_combo.currentData(), "iterations": int(self.iterations_spin.value()),
                "seed": int(self.seed_spin.value()), "patch": int(self.patch_spin.value()), "folder": folder,
                "progress": self.progress}

    def _run(self, job) -> bool:
        self.result = self.error = None
        self.progress_bar.setRange(0, max(int(self.iterations_spin.value()), 1))
        self.progress_bar.setValue(0)
        self.status_label.setText("Reading the training data…")
        self._worker = start_worker(job, returned=self._done, errored=self._failed)
        self._timer.start()
        self._update_controls()
        return True

    def cancel(self) -> None:
        """Stop after the current iteration (a checkpoint is written; Train continues from it)."""
        if self.progress is not None and self.busy:
            self.progress.cancelled = True
            self.status_label.setText("Cancelling after this iteration…")

    def _poll(self) -> None:
        p = self.progress
        if p is None:
            return
        if p.total:
            self.progress_bar.setRange(0, p.total)
            self.progress_bar.setValue(min(p.done, p.total))
        if p.cancelled:
            return
        loss = p.recent_loss()
        if loss is not None:
            self.status_label.setText(f"Training: iteration {p.done}/{p.total}, loss {loss:.4f} "
                                      f"(mean of the last {min(len(p.losses), 20)})")
        elif p.line:
            self.status_label.setText(p.line)

    def _finish(self) -> None:
        self._timer.stop()
        self._poll()
        self._worker = None
        self._update_controls()

    def _done(self, result: dict) -> None:
        self.result = result
        self._finish()
        self.status_label.setText(
            f"Done: iteration {result['iteration']}/{result['iterations']} in {self.folder()}. "
            "Export the weights, or raise Iterations and Train to go on.")

    def _failed(self, exc: Exception) -> None:
        self._finish()
        if isinstance(exc, CancelledError):
            from napari_connectome.train import latest_checkpoint
            from napari_connectome.train.run import checkpoint_iteration

            # the checkpoint the cancel wrote is the truth of where the run stands
            last = latest_checkpoint(self.folder())
            done = checkpoint_iteration(last) if last is not None else 0
            self.error = None
            self.status_label.setText(f"Cancelled at iteration {done}; Train continues the run from there.")
            _notify.info(f"Train: cancelled at iteration {done}; the checkpoint is in {self.folder()}")
            return
        logger.debug("training failed", exc_info=exc)
        line = error_line("Train", exc)
        if "holds another run's config" in line:
            # New strokes or other choices make another run: offer a fresh folder rather than a dead end.
            self.folder_edit.setText(str(default_run_folder()))
            line += f" — the run folder is now a new one ({self.folder()}): Train starts a new run there"
        self._fail(line)

    def _fail(self, line: str) -> None:
        self.error = line
        self.status_label.setText(line)
        _notify.error(line)

    def wait(self, timeout_s: float = 600.0) -> bool:
        """Process events until the run ends (scripts and tests); True when it did."""
        process_events_while(lambda: self.busy, timeout_s)
        return not self.busy

    # ------------------------------------------------------------------ export
    def _export_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export weights", str(Path(self.folder()) / "weights.pt"),
                                              "Network weights (*.pt)")
        if path:
            self.export(path)

    def export(self, path: str | os.PathLike) -> Path | None:
        """Write the run's latest weights to ``path`` (and ``.json`` beside it); None on failure (one line shown)."""
        from napari_connectome.train import export_weights

        try:
            out = export_weights(self.folder(), path)
        except Exception as exc:  # engine errors are one line; anything else becomes one
            self._fail(error_line("Train: export", exc))
            return None
        self.status_label.setText(f"Exported {out} (and {out.with_suffix('.json').name}: what made it)")
        _notify.info(f"Train: weights written to {out}")
        return out

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        # A closed panel must not leave a run going: it stops after the iteration, with a checkpoint.
        self.cancel()
        self._timer.stop()
        try:
            self.viewer.layers.events.inserted.disconnect(self._refresh_layers)
            self.viewer.layers.events.removed.disconnect(self._refresh_layers)
        except (TypeError, ValueError, RuntimeError):  # already gone with the viewer
            pass
        super().closeEvent(event)


def _affinity_models() -> list[str]:
    """Names of the registry's affinity networks (fine-tunable)."""
    try:
        from napari_connectome_models.registry import list_models

        return [e.name for e in list_models(task="affinities")]
    except Exception:  # a broken registry must not keep the panel from training a new network
        logger.debug("reading the model registry failed", exc_info=True)
        return []

