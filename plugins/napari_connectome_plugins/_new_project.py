"""The "New project…" dialog: from an EM volume (and optional segmentations) to a project folder.

The same thing as ``napari-connectome project create``, for a person at the
GUI: the EM volume is required; supervoxels, a boundary map and ground truth
are optional; the voxel size comes from the files unless given. Bad input
(a missing file, shapes that disagree, a folder that already holds a project)
is said in one line inside the dialog, which stays open so that it can be
fixed; nothing is written until the project can be made.
"""

from __future__ import annotations

import os
from typing import Any

from qtpy.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_connectome_plugins import _notify
from napari_connectome_plugins._project_panel import error_line

# (field, label, required, tooltip)
INPUTS = (
    ("raw", "EM volume", True, "The electron-microscopy volume (required)."),
    ("supervoxels", "Supervoxels", False,
     "An over-segmentation into supervoxels; proofreading needs it (optional here)."),
    ("boundaries", "Boundaries", False,
     "A boundary probability map or affinities; without it the EM intensity stands in."),
    ("groundtruth", "Ground truth", False, "A reference segmentation to measure quality against (optional)."),
)
# File kinds offered by the file chooser; folders (OME-Zarr, N5, precomputed, slice stacks)
# have a button of their own because one Qt dialog cannot pick both.
VOLUME_FILES = "Volumes (*.h5 *.hdf5 *.hdf *.tif *.tiff *.zarr *.n5);;All files (*)"


class NewProjectDialog(QDialog):
    """Ask for a project folder and its input volumes, then create the project.

    Parameters
    ----------
    start_dir
        Where the file choosers start.
    parent
        Parent widget.

    Attributes
    ----------
    project
        The project made by :meth:`create` (None until then).
    """

    def __init__(self, *, start_dir: str | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("New project")
        self.setMinimumWidth(560)
        self.project: Any = None
        self._start = start_dir or os.path.expanduser("~")
        layout = QVBoxLayout(self)
        intro = QLabel("A project refers to its volumes (nothing is copied) and keeps the edits, the "
                       "graph and the effort log in its own folder.", self)
        intro.setWordWrap(True)
        layout.addWidget(intro)
        form = QFormLayout()
        self.inputs: dict[str, QLineEdit] = {}
        for field, label, required, tip in INPUTS:
            edit = QLineEdit(self)
            edit.setPlaceholderText("path or URI" + ("" if required else " (optional)"))
            edit.setToolTip(tip + " A folder (OME-Zarr, N5, precomputed, slice stack), a file, "
                                  "or FILE.h5/DATASET.")
            edit.textChanged.connect(self._on_changed)
            self.inputs[field] = edit
            form.addRow(f"{label}{' *' if required else ''}:", self._with_buttons(edit, label))
        self.folder = QLineEdit(self)
        self.folder.setPlaceholderText("a new folder for the project")
        self.folder.setToolTip("The project folder: created if missing; it must not hold a project already.")
        self.folder.textChanged.connect(self._on_changed)
        folder_row = QWidget(self)
        row = QHBoxLayout(folder_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.folder, 1)
        browse = QPushButton("Folder…", folder_row)
        browse.setToolTip("Choose the folder the project goes in")
        browse.clicked.connect(self._choose_folder)
        row.addWidget(browse)
        form.addRow("Project folder *:", folder_row)
        self.name = QLineEdit(self)
        self.name.setPlaceholderText("default: the folder's name")
        form.addRow("Name:", self.name)
        self.from_files = QCheckBox("Voxel size from the files' metadata", self)
        self.from_files.setChecked(True)
        self.from_files.setToolTip("Untick to give the voxel size (Z Y X, nm) yourself")
        form.addRow("", self.from_files)
        size_row = QWidget(self)
        sizes = QHBoxLayout(size_row)
        sizes.setContentsMargins(0, 0, 0, 0)
        self.voxel_boxes: list[QDoubleSpinBox] = []
        for axis in "ZYX":
            box = QDoubleSpinBox(size_row)
            box.setDecimals(3)
            box.setRange(0.001, 1e7)
            box.setValue(8.0)
            box.setSuffix(" nm")
            box.setPrefix(f"{axis} ")
            box.setToolTip(f"{axis}: size of one voxel along {axis} in nanometres")
            sizes.addWidget(box)
            self.voxel_boxes.append(box)
        self.from_files.toggled.connect(lambda on: [b.setEnabled(not on) for b in self.voxel_boxes])
        for box in self.voxel_boxes:
            box.setEnabled(False)
        form.addRow("Voxel size:", size_row)
        layout.addLayout(form)
        self.message = QLabel("", self)
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #e05050")
        self.message.setVisible(False)
        layout.addWidget(self.message)
        self.buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel, self)
        self.create_button = self.buttons.button(QDialogButtonBox.Ok)
        self.create_button.setText("Create")
        self.create_button.setToolTip("Create the project and open it (Enter)")
        self.buttons.accepted.connect(self._accept)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        self._suggested = ""
        self._on_changed()
        self.inputs["raw"].setFocus()

    # -- file choosers ----------------------------------------------------------
    def _with_buttons(self, edit: QLineEdit, label: str) -> QWidget:
        holder = QWidget(self)
        row = QHBoxLayout(holder)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(edit, 1)
        folder = QPushButton("Folder…", holder)
        folder.setToolTip(f"Choose the {label.lower()} as a folder (OME-Zarr, N5, precomputed, slices)")
        folder.clicked.connect(lambda: self._choose(edit, folder=True))
        file = QPushButton("File…", holder)
        file.setToolTip(f"Choose the {label.lower()} as a file (HDF5, TIFF)")
        file.clicked.connect(lambda: self._choose(edit, folder=False))
        row.addWidget(folder)
        row.addWidget(file)
        return holder

    def _choose(self, edit: QLineEdit, *, folder: bool) -> None:
        if folder:
            path = QFileDialog.getExistingDirectory(self, "Choose a volume folder", self._start)
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Choose a volume file", self._start, VOLUME_FILES)
        if path:
            self._start = os.path.dirname(path.rstrip("/")) or path
            edit.setText(path)

    def _choose_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose where the project goes", self._start)
        if path:
            self.folder.setText(os.path.join(path, self._suggested_name()))

    def _suggested_name(self) -> str:
        raw = self.inputs["raw"].text().strip().rstrip("/")
        stem = os.path.basename(raw.split(".h5/")[0].split(".hdf5/")[0]) or "connectome"
        for ext in (".ome.zarr", ".zarr", ".n5", ".h5", ".hdf5", ".hdf", ".tiff", ".tif"):
            if stem.lower().endswith(ext):
                stem = stem[: -len(ext)]
                break
        return f"{stem or 'connectome'}-project"

    def _on_changed(self, _text: str = "") -> None:
        raw = self.inputs["raw"].text().strip()
        folder = self.folder.text().strip()
        if raw and folder in ("", self._suggested):
            # Beside the EM volume by default; a folder the person chose is never replaced.
            parent = os.path.dirname(raw.split(".h5/")[0].split(".hdf5/")[0].rstrip("/"))
            name = self._suggested_name()
            self._suggested = os.path.join(parent, name) if parent else name
            self.folder.blockSignals(True)
            self.folder.setText(self._suggested)
            self.folder.blockSignals(False)
        ready = bool(raw) and bool(self.folder.text().strip())
        self.create_button.setEnabled(ready)

    # -- creating ---------------------------------------------------------------
    def voxel_size(self) -> tuple[float, float, float] | None:
        """The voxel size given (z, y, x, nm), or None to take it from the files."""
        if self.from_files.isChecked():
            return None
        return tuple(float(b.value()) for b in self.voxel_boxes)  # type: ignore[return-value]

    def create(self) -> Any:
        """Create the project from what was entered.

        Returns
        -------
        Project or None
            The project; None when it could not be made (the reason is shown
            in the dialog as one line and as a notification).
        """
        from napari_connectome.errors import ConnectomeError
        from napari_connectome.project import create_project

        values = {field: edit.text().strip() or None for field, edit in self.inputs.items()}
        folder = self.folder.text().strip()
        if not values["raw"] or not folder:
            return self._refuse("the EM volume and the project folder are needed")
        try:
            self.project = create_project(
                os.path.expanduser(folder),
                raw=values["raw"],
                supervoxels=values["supervoxels"],
                boundaries=values["boundaries"],
                groundtruth=values["groundtruth"],
                voxel_size=self.voxel_size(),
                name=self.name.text().strip() or None,
            )
        except (ConnectomeError, OSError, ValueError) as exc:
            return self._refuse(error_line("create the project", exc))
        self.message.setVisible(False)
        return self.project

    def _refuse(self, line: str) -> None:
        line = _notify.one_line(line)
        self.message.setText(line)
        self.message.setVisible(True)
        _notify.error(line)
        return None

    def _accept(self) -> None:
        if self.create() is not None:
            self.accept()
