"""The "Connectome" dock widget: the open project and the volumes opened through the plugin.

Thin by design: it reads what the reader recorded in each layer's metadata,
opens projects through the reader, and changes a layer's scale; the engine
does the rest. Files are never written from here.

Keys (also in the tooltips): Alt+O opens a project folder, Alt+N makes a new
project from an EM volume (and optional segmentations), Alt+Z sets the
voxel size of the selected volume; in the voxel-size dialog Enter applies and
Esc cancels.
"""

from __future__ import annotations

import os
from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtGui import QBrush, QColor, QKeySequence
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSizePolicy,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_connectome_plugins import _notify
from napari_connectome_plugins._layers import layer_meta, spatial_axes
from napari_connectome_plugins._new_project import NewProjectDialog
from napari_connectome_plugins._project_panel import same
from napari_connectome_plugins._scroll import keep_button_labels, scrolling_layout

# How the table marks a voxel size the suite assumed (the details say "assumed").
ASSUMED_MARK = " *"
ASSUMED_COLOUR = "#e0a030"
OPEN_KEY = "Alt+O"
NEW_KEY = "Alt+N"
VOXEL_KEY = "Alt+Z"
PLUGIN = "napari-connectome"
NO_PROJECT = (
    f"No project open. Open a project folder with Open project… ({OPEN_KEY}), or make one "
    f"from an EM volume with New project… ({NEW_KEY})."
)


def _fmt_numbers(values, unit: str = "") -> str:
    text = " × ".join(f"{float(v):g}" for v in values)
    return f"{text} {unit}".rstrip()


def _fmt_shape(shape) -> str:
    return " × ".join(str(int(s)) for s in shape)


def _fmt_created(text: str | None) -> str:
    if not text:
        return "—"
    return text.replace("T", " ").replace("+00:00", " UTC")


class VoxelSizeDialog(QDialog):
    """Ask for a voxel size in nm, Z Y X.

    Parameters
    ----------
    voxel_size
        The current voxel size (z, y, x) in nm.
    layer_name
        The volume it is for (shown in the title).
    project_name
        When the volume is a project input: offer to apply the voxel size to
        every layer of that project (checked by default, so they stay aligned).
    parent
        Parent widget.
    """

    def __init__(
        self,
        voxel_size,
        *,
        layer_name: str,
        project_name: str | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Voxel size of {layer_name}")
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.spin_boxes: list[QDoubleSpinBox] = []
        values = list(voxel_size)[-3:]
        values = [1.0] * (3 - len(values)) + values
        for axis, value in zip("ZYX", values, strict=True):
            box = QDoubleSpinBox(self)
            box.setDecimals(3)
            box.setRange(0.001, 1e7)
            box.setSingleStep(1.0)
            box.setSuffix(" nm")
            box.setValue(float(value))
            box.setToolTip(f"{axis}: size of one voxel along {axis} in nanometres (Tab: next axis)")
            form.addRow(f"{axis}", box)
            self.spin_boxes.append(box)
        layout.addLayout(form)
        self.whole_project = QCheckBox(
            f"Apply to every layer of project {project_name}" if project_name else "", self
        )
        self.whole_project.setChecked(bool(project_name))
        self.whole_project.setVisible(bool(project_name))
        self.whole_project.setToolTip(
            "Project inputs share one voxel size; applying it to all keeps them aligned. "
            "The project's files are not changed."
        )
        layout.addWidget(self.whole_project)
        note = QLabel("Changes how the layers are shown; no file is written.", self)
        note.setWordWrap(True)
        note.setEnabled(False)
        layout.addWidget(note)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel, self)
        buttons.button(QDialogButtonBox.Ok).setText("Apply")
        buttons.button(QDialogButtonBox.Ok).setToolTip("Apply the voxel size (Enter)")
        buttons.button(QDialogButtonBox.Cancel).setToolTip("Keep the voxel size as it is (Esc)")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.spin_boxes[0].setFocus()
        self.spin_boxes[0].selectAll()

    def voxel_size(self) -> tuple[float, float, float]:
        """The voxel size entered, (z, y, x) in nm."""
        return tuple(float(b.value()) for b in self.spin_boxes)  # type: ignore[return-value]


class ConnectomeWidget(QWidget):
    """Dock widget: the open project and every volume opened through napari-connectome.

    Parameters
    ----------
    napari_viewer
        The viewer (napari passes it).
    """

    def __init__(self, napari_viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self._projects: dict[str, Any] = {}
        self._watched: list[Any] = []
        self._syncing = False
        self._last_dir = os.path.expanduser("~")
        self.setMinimumWidth(360)

        layout = scrolling_layout(self)
        layout.setContentsMargins(6, 6, 6, 6)

        # -- project ---------------------------------------------------------
        self.project_box = QGroupBox("Project", self)
        project_layout = QVBoxLayout(self.project_box)
        self.no_project = QLabel(NO_PROJECT)
        self.no_project.setWordWrap(True)
        self.no_project.setEnabled(False)
        project_layout.addWidget(self.no_project)
        self.project_form_widget = QWidget(self.project_box)
        self.project_form = QFormLayout(self.project_form_widget)
        self.project_form.setContentsMargins(0, 0, 0, 0)
        self.project_fields: dict[str, QLabel] = {}
        for key in ("Name", "Folder", "Created", "Inputs"):
            label = QLabel("—")
            label.setWordWrap(True)
            label.setTextInteractionFlags(Qt.TextSelectableByMouse)
            self.project_fields[key] = label
            self.project_form.addRow(f"{key}:", label)
        project_layout.addWidget(self.project_form_widget)
        layout.addWidget(self.project_box)

        # -- volumes ---------------------------------------------------------
        self.volume_box = QGroupBox("Volumes", self)
        volume_layout = QVBoxLayout(self.volume_box)
        self.table = QTreeWidget(self.volume_box)
        self.table.setColumnCount(3)
        self.table.setHeaderLabels(["Volume", "Shape (z y x)", "Voxel (nm)"])
        self.table.setRootIsDecorated(False)
        self.table.setUniformRowHeights(True)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.table.setToolTip(
            "Volumes opened through napari-connectome. Up/Down select one (it becomes the "
            f"active layer); {VOXEL_KEY} sets its voxel size."
        )
        self.table.setTextElideMode(Qt.ElideRight)
        header = self.table.header()
        header.setStretchLastSection(False)
        header.setMinimumSectionSize(84)
        header.setSectionResizeMode(0, QHeaderView.Stretch)  # long names elide
        header.setSectionResizeMode(1, QHeaderView.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeToContents)
        self.table.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.table.itemSelectionChanged.connect(self._on_row_selected)
        volume_layout.addWidget(self.table)

        self.details_widget = QWidget(self.volume_box)
        self.details = QFormLayout(self.details_widget)
        self.details.setContentsMargins(0, 4, 0, 0)
        self.detail_fields: dict[str, QLabel] = {}
        for key in ("Source", "Format", "Data", "Levels", "Voxel size", "Offset", "Notes"):
            label = QLabel("—")
            label.setWordWrap(True)
            label.setTextInteractionFlags(Qt.TextSelectableByMouse)
            self.detail_fields[key] = label
            self.details.addRow(f"{key}:", label)
        volume_layout.addWidget(self.details_widget)
        self.no_volume = QLabel("No volume opened through napari-connectome yet.")
        self.no_volume.setEnabled(False)
        self.no_volume.setWordWrap(True)
        volume_layout.addWidget(self.no_volume)
        layout.addWidget(self.volume_box)

        # -- actions ---------------------------------------------------------
        buttons = QHBoxLayout()
        self.open_button = QPushButton("Open project…", self)
        self.open_button.setShortcut(QKeySequence(OPEN_KEY))
        self.open_button.setToolTip(
            f"Open a napari-connectome project folder, or any volume folder ({OPEN_KEY})"
        )
        self.open_button.clicked.connect(self.choose_project)
        self.new_button = QPushButton("New project…", self)
        self.new_button.setShortcut(QKeySequence(NEW_KEY))
        self.new_button.setToolTip(
            f"Make a project from an EM volume, with optional supervoxels, boundaries and ground truth ({NEW_KEY})"
        )
        self.new_button.clicked.connect(self.new_project)
        self.voxel_button = QPushButton("Set voxel size…", self)
        self.voxel_button.setShortcut(QKeySequence(VOXEL_KEY))
        self.voxel_button.setToolTip(
            f"Set the voxel size (Z Y X, nm) of the selected volume ({VOXEL_KEY}); "
            "changes the layer's scale, never the files"
        )
        self.voxel_button.clicked.connect(self.edit_voxel_size)
        buttons.addWidget(self.open_button)
        buttons.addWidget(self.new_button)
        buttons.addWidget(self.voxel_button)
        layout.addLayout(buttons)
        layout.addStretch(1)
        keep_button_labels(self)

        layers = self.viewer.layers
        layers.events.inserted.connect(self._on_inserted)
        layers.events.removed.connect(self._on_removed)
        layers.events.moved.connect(self.refresh)
        layers.selection.events.active.connect(self._on_active_layer)
        for layer in list(layers):
            self._watch(layer)
        self.refresh()

    # -- layers ------------------------------------------------------------
    def volume_layers(self) -> list:
        """The viewer's layers that were opened through napari-connectome, bottom first."""
        return [layer for layer in self.viewer.layers if layer_meta(layer) is not None]

    def _watch(self, layer) -> None:
        if layer_meta(layer) is None or any(same(w, layer) for w in self._watched):
            return
        for name in ("scale", "translate", "name", "data"):
            emitter = getattr(layer.events, name, None)
            if emitter is not None:
                emitter.connect(self.refresh)
        self._watched.append(layer)

    def _unwatch(self, layer) -> None:
        if not any(same(w, layer) for w in self._watched):
            return
        for name in ("scale", "translate", "name", "data"):
            emitter = getattr(layer.events, name, None)
            if emitter is not None:
                emitter.disconnect(self.refresh)
        self._watched = [w for w in self._watched if not same(w, layer)]

    def _on_inserted(self, event) -> None:
        self._watch(event.value)
        self.refresh()

    def _on_removed(self, event) -> None:
        self._unwatch(event.value)
        self.refresh()

    def selected_layer(self):
        """The volume layer selected in the table (else the active layer if it is one)."""
        items = self.table.selectedItems()
        if items:
            index = items[0].data(0, Qt.UserRole)
            layers = self.volume_layers()
            if isinstance(index, int) and 0 <= index < len(layers):
                return layers[index]
        active = self.viewer.layers.selection.active
        if active is not None and layer_meta(active) is not None:
            return active
        return None

    # -- display -----------------------------------------------------------
    def current_project(self):
        """The project of the most recently added volume still open, or None."""
        from napari_connectome.errors import ConnectomeError
        from napari_connectome.project import open_project

        for layer in reversed(self.volume_layers()):
            root = (layer_meta(layer) or {}).get("project")
            if not root:
                continue
            if root not in self._projects:
                try:
                    self._projects[root] = open_project(root)
                except ConnectomeError as exc:
                    self._projects[root] = exc
            return self._projects[root]
        return None

    def refresh(self, event=None) -> None:
        """Rebuild the project panel and the volume table from the viewer's layers."""
        self._show_project(self.current_project())
        layers = self.volume_layers()
        keep = self.selected_layer()
        self._syncing = True
        try:
            self.table.clear()
            for index, layer in enumerate(layers):
                item = QTreeWidgetItem(self._row(layer))
                item.setData(0, Qt.UserRole, index)
                item.setToolTip(0, self._summary(layer))
                for col in (1, 2):
                    item.setToolTip(col, self._summary(layer))
                if self.is_assumed(layer):
                    item.setForeground(2, QBrush(QColor(ASSUMED_COLOUR)))
                    item.setToolTip(2, f"{ASSUMED_MARK.strip()} assumed: the file stores no voxel size; {VOXEL_KEY} sets the real one")
                self.table.addTopLevelItem(item)
                if keep is not None and same(layer, keep):
                    item.setSelected(True)
        finally:
            self._syncing = False
        has = bool(layers)
        self._fit_table_height()
        self.table.setVisible(has)
        self.details_widget.setVisible(has)
        self.no_volume.setVisible(not has)
        self.voxel_button.setEnabled(has)
        self._show_details(self.selected_layer())

    def _fit_table_height(self) -> None:
        """Make the table exactly as tall as its rows (at most 8 before it scrolls)."""
        rows = self.table.topLevelItemCount()
        row_height = self.table.sizeHintForRow(0) if rows else self.fontMetrics().height() + 6
        shown = min(max(rows, 1), 8)
        height = self.table.header().sizeHint().height() + shown * row_height + 2 * self.table.frameWidth() + 2
        self.table.setFixedHeight(height)

    def _row(self, layer) -> list[str]:
        meta = layer_meta(layer) or {}
        label = layer.name
        shape = meta.get("shape") or list(layer.data[0].shape if layer.multiscale else layer.data.shape)
        return [label, _fmt_shape(shape), self._voxel_text(layer, short=True)]

    def voxel_size(self, layer) -> tuple[float, ...]:
        """The layer's current voxel size in nm (its scale on the z, y, x axes)."""
        scale = list(layer.scale)
        return tuple(float(scale[i]) for i in spatial_axes(layer))

    def offset(self, layer) -> tuple[float, ...]:
        """The layer's current offset in nm (its translate on the z, y, x axes)."""
        translate = list(layer.translate)
        return tuple(float(translate[i]) for i in spatial_axes(layer))

    def is_assumed(self, layer) -> bool:
        """True while the layer shows a voxel size the suite assumed (nobody set it)."""
        meta = layer_meta(layer) or {}
        if not meta.get("voxel_size_assumed"):
            return False
        recorded = [float(v) for v in meta.get("voxel_size") or []]
        current = [float(v) for v in layer.scale]
        return len(recorded) == len(current) and all(
            abs(a - b) <= 1e-9 * max(abs(a), 1.0) for a, b in zip(recorded, current, strict=True)
        )

    def _voxel_text(self, layer, *, short: bool = False) -> str:
        text = _fmt_numbers(self.voxel_size(layer), "" if short else "nm")
        if self.is_assumed(layer):
            text += ASSUMED_MARK if short else " (assumed)"
        return text

    def _summary(self, layer) -> str:
        meta = layer_meta(layer) or {}
        parts = [
            f"{layer.name}",
            f"source: {meta.get('source', '—')}",
            f"format: {meta.get('format', '—')}",
            f"{meta.get('kind', '')} {meta.get('dtype', '')}",
            f"voxel size: {self._voxel_text(layer)}",
            f"offset: {_fmt_numbers(self.offset(layer), 'nm')}",
        ]
        return "\n".join(parts)

    def _show_project(self, project) -> None:
        from napari_connectome.errors import ConnectomeError

        if project is None:
            self.no_project.setText(NO_PROJECT)
            self.no_project.setVisible(True)
            self.project_form_widget.setVisible(False)
            return
        if isinstance(project, ConnectomeError):
            self.no_project.setText(_notify.one_line(project))
            self.no_project.setVisible(True)
            self.project_form_widget.setVisible(False)
            return
        manifest = project.manifest
        created = _fmt_created(manifest.get("created"))
        by = manifest.get("created_by")
        self.project_fields["Name"].setText(project.name)
        folder = os.path.abspath(os.fspath(project.root))
        self.project_fields["Folder"].setText(folder)
        self.project_fields["Folder"].setToolTip(folder)
        self.project_fields["Created"].setText(f"{created} by {by}" if by else created)
        self.project_fields["Inputs"].setText(", ".join(project.inputs) or "—")
        self.project_fields["Inputs"].setToolTip(
            "\n".join(f"{role}: {rec.get('uri', '')}" for role, rec in project.inputs.items())
        )
        self.no_project.setVisible(False)
        self.project_form_widget.setVisible(True)

    def _show_details(self, layer) -> None:
        fields = self.detail_fields
        if layer is None:
            for label in fields.values():
                label.setText("—")
                label.setToolTip("")
            self._set_row_visible(fields["Notes"], False)
            return
        meta = layer_meta(layer) or {}
        source = str(meta.get("source", "—"))
        fields["Source"].setText(source)
        fields["Source"].setToolTip(source)
        role = meta.get("role")
        fmt = str(meta.get("format", "—"))
        fields["Format"].setText(f"{fmt}, project input '{role}'" if role and meta.get("project") else fmt)
        fields["Data"].setText(f"{meta.get('kind', '?')}, {meta.get('dtype', '?')}, {_fmt_shape(meta.get('shape') or [])} voxels")
        levels = meta.get("levels") or []
        fields["Levels"].setText(
            f"{len(levels)}: " + ", ".join(_fmt_shape(s) for s in levels) if len(levels) > 1 else "1"
        )
        fields["Voxel size"].setText(self._voxel_text(layer))
        fields["Offset"].setText(_fmt_numbers(self.offset(layer), "nm"))
        notes = meta.get("notes") or []
        fields["Notes"].setText("; ".join(notes) if notes else "—")
        self._set_row_visible(fields["Notes"], bool(notes))

    def _set_row_visible(self, field: QLabel, visible: bool) -> None:
        label = self.details.labelForField(field)
        if label is not None:
            label.setVisible(visible)
        field.setVisible(visible)

    # -- selection sync ------------------------------------------------------
    def _on_row_selected(self) -> None:
        if self._syncing:
            return
        layer = self.selected_layer()
        self._show_details(layer)
        if layer is not None and not same(self.viewer.layers.selection.active, layer):
            self._syncing = True
            try:
                self.viewer.layers.selection.active = layer
            finally:
                self._syncing = False

    def _on_active_layer(self, event=None) -> None:
        if self._syncing:
            return
        active = self.viewer.layers.selection.active
        layers = self.volume_layers()
        self._syncing = True
        try:
            for i in range(self.table.topLevelItemCount()):
                item = self.table.topLevelItem(i)
                index = item.data(0, Qt.UserRole)
                item.setSelected(
                    active is not None and isinstance(index, int) and index < len(layers) and same(layers[index], active)
                )
        finally:
            self._syncing = False
        self._show_details(self.selected_layer())

    # -- actions -----------------------------------------------------------
    def choose_project(self) -> list:
        """Ask for a project folder (or a volume folder) and open it (Alt+O)."""
        path = QFileDialog.getExistingDirectory(
            self, "Open a napari-connectome project folder", self._last_dir
        )
        if not path:
            return []
        self._last_dir = os.path.dirname(path.rstrip("/")) or path
        return self.open_path(path)

    def new_project(self, dialog: NewProjectDialog | None = None) -> list:
        """Make a project from an EM volume in a dialog and open it (Alt+N).

        Parameters
        ----------
        dialog
            A prepared dialog (tests fill one in); default: a new one, shown
            to the person.

        Returns
        -------
        list
            The layers of the new project (empty when cancelled).
        """
        dialog = dialog or NewProjectDialog(start_dir=self._last_dir, parent=self)
        if dialog.project is None and dialog.exec_() != QDialog.Accepted:
            return []
        root = str(dialog.project.root)
        self._last_dir = os.path.dirname(root.rstrip("/")) or root
        return self.open_path(root)

    def open_path(self, path: str | os.PathLike) -> list:
        """Open a project folder or a volume through the napari-connectome reader.

        Bad input shows one error line; nothing is raised.

        Returns
        -------
        list
            The layers added.
        """
        from napari_connectome.errors import ConnectomeError
        from napari_connectome.project import is_project, open_project
        from napari_connectome.volume import parse_uri
        from napari_connectome.volume.open import detect_format

        path = os.fspath(path)
        try:
            if is_project(path):
                open_project(path)  # refuses a broken manifest with one line
            else:
                try:
                    detect_format(parse_uri(path))
                except ConnectomeError:
                    if os.path.isdir(path):
                        # Say what a person asked for: a project.
                        open_project(path)
                    raise
        except ConnectomeError as exc:
            _notify.error(exc)
            return []
        try:
            layers = self.viewer.open(path, plugin=PLUGIN)
        except Exception as exc:  # never a traceback dialog from here
            _notify.error(f"{path}: could not be opened: {exc}")
            return []
        self.refresh()
        return list(layers or [])

    def edit_voxel_size(self) -> bool:
        """Ask for the selected volume's voxel size and apply it (Alt+Z).

        Returns
        -------
        bool
            True if a voxel size was applied.
        """
        layer = self.selected_layer()
        if layer is None:
            _notify.warning("Select a volume in the Connectome panel first, then press Alt+Z")
            return False
        meta = layer_meta(layer) or {}
        project = meta.get("project")
        project_name = None
        if project:
            proj = self._projects.get(project)
            project_name = getattr(proj, "name", None) or os.path.basename(project)
        dialog = VoxelSizeDialog(
            self.voxel_size(layer), layer_name=layer.name, project_name=project_name, parent=self
        )
        if dialog.exec_() != QDialog.Accepted:
            return False
        return self.set_voxel_size(dialog.voxel_size(), layer=layer, whole_project=dialog.whole_project.isChecked())

    def set_voxel_size(self, voxel_size, *, layer=None, whole_project: bool = True) -> bool:
        """Set a volume layer's voxel size (z, y, x nm): its scale, and its offset in proportion.

        Parameters
        ----------
        voxel_size
            The new voxel size of level 0 in nm, ``(z, y, x)``.
        layer
            The layer (default: the selected volume).
        whole_project
            For a project input, apply it to every layer of that project too.
            Files are never changed.

        Returns
        -------
        bool
            True if applied; False (with one error line shown) otherwise.
        """
        from napari_connectome.config import check_voxel_size
        from napari_connectome.errors import ConnectomeError

        layer = layer if layer is not None else self.selected_layer()
        if layer is None:
            _notify.warning("Select a volume in the Connectome panel first")
            return False
        try:
            new = check_voxel_size(voxel_size, source=f"voxel size of {layer.name}", ndim=3)
        except ConnectomeError as exc:
            _notify.error(exc)
            return False
        targets = [layer]
        project = (layer_meta(layer) or {}).get("project")
        if whole_project and project:
            targets = [lay for lay in self.volume_layers() if (layer_meta(lay) or {}).get("project") == project]
        for target in targets:
            axes = spatial_axes(target)
            if len(axes) != len(new):
                _notify.error(f"{target.name}: has {len(axes)} spatial axes; the voxel size needs {len(new)}")
                continue
            scale = [float(s) for s in target.scale]
            translate = [float(t) for t in target.translate]
            for i, value in zip(axes, new, strict=True):
                translate[i] = translate[i] / scale[i] * value
                scale[i] = value
            meta = layer_meta(target)
            meta["voxel_size_set"] = list(new)
            meta["voxel_size_assumed"] = False
            target.scale = scale
            target.translate = translate
        self.viewer.reset_view()
        self.refresh()
        return True

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self._disconnect()
        super().closeEvent(event)

    def _disconnect(self) -> None:
        layers = self.viewer.layers
        for emitter, slot in (
            (layers.events.inserted, self._on_inserted),
            (layers.events.removed, self._on_removed),
            (layers.events.moved, self.refresh),
            (layers.selection.events.active, self._on_active_layer),
        ):
            try:
                emitter.disconnect(slot)
            except Exception:  # already gone with the viewer
                pass
        for layer in list(self._watched):
            self._unwatch(layer)
