"""The "Synapses" dock widget: a project's synapses and connectome, live through every edit.

What it shows comes from the engine: the synapses in force in the project's
store (:class:`~napari_connectome.synapses.store.SynapseStore`) and, through
the workspace's one Proofreader, the neurons at their ends now
(:class:`~napari_connectome.synapses.connectome.LiveConnectome`, which
re-reads only the rows an edit touched). The panel draws:

- three layers: the pre sites, the post sites coloured by score, and a vector
  from each pre to its post site (the arrow a proofreader reads as "this
  neuron talks to that one");
- a sortable table, one row per pre→post connection; a click centres the
  view on the connection (its post site);
- a filter by neuron id (rows with that neuron at either end);
- the connectome as a matrix of counts among the neurons with most synapses;
- *Add synapse*: the next two clicks in the viewer place a pre and a post
  site, stored as an annotated batch (Esc cancels).

The store and the Proofreader are opened in a worker thread; after an edit
(here or in another panel) the neuron columns and the matrix follow.
"""

from __future__ import annotations

import logging
import os

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from napari_connectome_plugins import _notify
from napari_connectome_plugins._project_panel import (
    error_line,
    process_events_while,
    project_box,
    start_worker,
    unwrap,
    viewer_project_root,
)
from napari_connectome_plugins._scroll import keep_button_labels, scrolling_layout
from napari_connectome_plugins._workspace import Workspace

logger = logging.getLogger(__name__)

WIDGET_NAME = "Synapses"
NO_PROJECT = "No project open: open a project folder with File → Open Folder"
LAYER_PRE, LAYER_POST, LAYER_VECTORS = "synapses: pre", "synapses: post", "synapses: pre→post"
COLUMNS = ("pre neuron", "post neuron", "score", "synapse", "row")
#: Neurons shown in the connectome matrix (those with most synapses).
MATRIX_NEURONS = 20
PRE_COLOUR, POST_COLOUR = "#ff4040", "#40c0ff"


class _Item(QTableWidgetItem):
    """A table cell that sorts by its number, not its text."""

    def __init__(self, value) -> None:
        super().__init__(f"{value:.3f}" if isinstance(value, float) else str(value))
        self.value = value
        self.setFlags(self.flags() & ~Qt.ItemIsEditable)

    def __lt__(self, other) -> bool:  # noqa: D105
        return self.value < other.value if isinstance(other, _Item) else super().__lt__(other)


def matrix(pre: np.ndarray, post: np.ndarray, *, top: int = MATRIX_NEURONS) -> tuple[np.ndarray, np.ndarray]:
    """``(neurons, counts)``: the ``top`` neurons with most synapse ends and the pre×post counts among them."""
    keep = (pre != 0) & (post != 0) & (pre != post)
    ends = np.concatenate([pre[keep], post[keep]])
    if not ends.size:
        return np.zeros(0, dtype=np.uint64), np.zeros((0, 0), dtype=np.int64)
    ids, n = np.unique(ends, return_counts=True)
    order = np.lexsort((ids, -n))[:top]
    neurons = np.sort(ids[order])
    counts = np.zeros((neurons.size, neurons.size), dtype=np.int64)
    a = np.searchsorted(neurons, pre[keep])
    b = np.searchsorted(neurons, post[keep])
    a_ok = (a < neurons.size) & (neurons[np.minimum(a, neurons.size - 1)] == pre[keep])
    b_ok = (b < neurons.size) & (neurons[np.minimum(b, neurons.size - 1)] == post[keep])
    np.add.at(counts, (a[a_ok & b_ok], b[a_ok & b_ok]), 1)
    return neurons, counts


class SynapsesWidget(QWidget):
    """Dock widget: the synapses of the project opened in the viewer.

    Parameters
    ----------
    napari_viewer
        The viewer (napari passes it).
    """

    #: An edit changed neurons (emitted from the editing thread; handled on the GUI thread).
    edited = Signal()

    def __init__(self, napari_viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = unwrap(napari_viewer)
        self.root: str | None = None
        self.project = None
        self.workspace: Workspace | None = None
        self.live = None  # LiveConnectome
        self.table = None  # SynapseTable in force (points, scores)
        self._busy = ""
        self._worker = None
        self._clicks: list[np.ndarray] | None = None  # while adding: the points clicked so far
        self.setMinimumWidth(360)
        self._build_ui()
        keep_button_labels(self)
        self.edited.connect(self._on_edited, Qt.QueuedConnection)

    # -- UI ------------------------------------------------------------------------
    def _build_ui(self) -> None:
        layout = scrolling_layout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        box, form, self.project_label = project_box(self, NO_PROJECT)
        row = QHBoxLayout()
        self.refresh_button = QPushButton("Load synapses", box)
        self.refresh_button.setToolTip("Read the project's synapse store again")
        self.refresh_button.clicked.connect(self.refresh)
        row.addWidget(self.refresh_button)
        self.add_button = QPushButton("Add synapse", box)
        self.add_button.setCheckable(True)
        self.add_button.setToolTip("Then click the pre site and the post site in the viewer (Esc cancels)")
        self.add_button.toggled.connect(self._on_add_toggled)
        row.addWidget(self.add_button)
        row.addStretch(1)
        form.addRow(row)
        self.filter_edit = QLineEdit(box)
        self.filter_edit.setPlaceholderText("neuron id (empty: all)")
        self.filter_edit.setToolTip("Show only the connections with this neuron at either end")
        self.filter_edit.textChanged.connect(lambda _t: self._fill_table())
        form.addRow("Neuron:", self.filter_edit)
        self.status_label = QLabel("—", box)
        self.status_label.setWordWrap(True)
        form.addRow(self.status_label)
        layout.addWidget(box)

        self.grid = QTableWidget(0, len(COLUMNS), self)
        self.grid.setHorizontalHeaderLabels(list(COLUMNS))
        self.grid.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.grid.setSelectionMode(QAbstractItemView.SingleSelection)
        self.grid.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.grid.verticalHeader().setVisible(False)
        self.grid.setSortingEnabled(True)
        self.grid.setMinimumHeight(220)
        self.grid.cellClicked.connect(lambda r, _c: self.jump_to_row(r))
        layout.addWidget(self.grid, 1)

        self.figure = Figure(figsize=(4.0, 3.6), dpi=90, layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(300)
        layout.addWidget(self.canvas)

    # -- loading -------------------------------------------------------------------
    def bind_to_viewer_project(self) -> bool:
        """Load the synapses of the project shown in the viewer (what ``--panel`` calls)."""
        return self.refresh()

    def refresh(self) -> bool:
        """Read the store and the neurons now, in a worker thread. False without a project."""
        root = viewer_project_root(self.viewer)
        if root is None:
            self.project_label.setText(NO_PROJECT)
            return False
        if self._busy:
            return True
        root = os.path.abspath(root)
        if self.workspace is None or self.root != root:
            from napari_connectome.project import open_project

            self._leave()
            self.project = open_project(root)
            self.root = root
            self.workspace = Workspace.join(self.viewer, self.project, self)
        self._busy = "loading the synapses"
        self.status_label.setText("Loading…")
        self._worker = start_worker(_load, self.project, self.workspace, self.live, returned=self._on_loaded,
                                    errored=self._on_failed, desc="Synapses: loading")
        return True

    def wait(self, timeout_s: float = 60.0) -> bool:
        """Process events until the worker is done (scripts and tests)."""
        process_events_while(lambda: bool(self._busy), timeout_s)
        return not self._busy

    def _on_loaded(self, result) -> None:
        self._busy, self._worker = "", None
        table, live = result
        if self.live is not None and self.live is not live:
            self.live.close()
        self.table, self.live = table, live
        if live is not None:
            live.changed.append(self._edit_listener)
        self.project_label.setText(self.project.name)
        self.project_label.setToolTip(self.root or "")
        self._draw_layers()
        self._fill_table()
        self._draw_matrix()

    def _on_failed(self, exc: Exception) -> None:
        self._busy, self._worker = "", None
        text = _notify.one_line(error_line("Synapses: loading", exc))
        _notify.error(text)
        self.status_label.setText(text)

    def _edit_listener(self, _pairs) -> None:
        try:
            self.edited.emit()
        except RuntimeError:  # the panel was deleted
            pass

    def _on_edited(self) -> None:
        self._fill_table()
        self._draw_matrix()

    # -- drawing ---------------------------------------------------------------------
    def neurons(self) -> tuple[np.ndarray, np.ndarray]:
        """``(pre, post)`` neuron ids of every row now."""
        if self.live is None or self.table is None or not len(self.table):
            return np.zeros(0, np.uint64), np.zeros(0, np.uint64)
        return self.live.neuron[:, 0].copy(), self.live.neuron[:, 1].copy()

    def visible_rows(self) -> np.ndarray:
        """Rows the filter lets through (all without a filter)."""
        n = 0 if self.table is None else len(self.table)
        text = self.filter_edit.text().strip()
        if not text:
            return np.arange(n)
        try:
            neuron = int(text)
        except ValueError:
            return np.zeros(0, dtype=np.int64)
        pre, post = self.neurons()
        return np.flatnonzero((pre == neuron) | (post == neuron))

    def _fill_table(self) -> None:
        rows = self.visible_rows()
        pre, post = self.neurons()
        self.grid.setSortingEnabled(False)
        self.grid.setRowCount(len(rows))
        for i, k in enumerate(rows.tolist()):
            values = (int(pre[k]), int(post[k]), float(self.table.score[k]), int(self.table.synapse_id[k]), k)
            for c, v in enumerate(values):
                self.grid.setItem(i, c, _Item(v))
        self.grid.setSortingEnabled(True)
        total = 0 if self.table is None else len(self.table)
        connections = 0 if self.live is None else len(self.live.connections())
        self.status_label.setText(f"{total} synapse rows · {connections} connections between neurons"
                                  + (f" · showing {len(rows)}" if len(rows) != total else ""))

    def _draw_layers(self) -> None:
        # Replacing layers resets the slider and the camera: the proofreader stays where they were.
        point, center, zoom = self.viewer.dims.point, self.viewer.camera.center, self.viewer.camera.zoom
        try:
            self._replace_layers()
        finally:
            if len(self.viewer.dims.point) == len(point):
                self.viewer.dims.point = point
            self.viewer.camera.center, self.viewer.camera.zoom = center, zoom

    def _replace_layers(self) -> None:
        for name in (LAYER_PRE, LAYER_POST, LAYER_VECTORS):
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
        if self.table is None or not len(self.table):
            return
        score = np.asarray(self.table.score, dtype=float)
        vectors = np.stack([self.table.pre, self.table.post - self.table.pre], axis=1)
        self.viewer.add_vectors(vectors, name=LAYER_VECTORS, edge_width=3, vector_style="arrow",
                                features={"score": score}, edge_color="score", edge_colormap="viridis")
        self.viewer.add_points(self.table.pre, name=LAYER_PRE, size=60, face_color=PRE_COLOUR, border_width=0)
        self.viewer.add_points(self.table.post, name=LAYER_POST, size=60, features={"score": score},
                               face_color="score", face_colormap="viridis", border_width=0)

    def _draw_matrix(self) -> None:
        self.figure.clear()
        ax = self.figure.add_subplot(1, 1, 1)
        pre, post = self.neurons()
        neurons, counts = matrix(pre, post)
        if not neurons.size:
            ax.text(0.5, 0.5, "no connections between neurons yet", ha="center", va="center", fontsize=9)
            ax.set_axis_off()
        else:
            image = ax.imshow(counts, cmap="magma", interpolation="nearest")
            labels = [str(int(n)) for n in neurons]
            ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
            ax.set_yticks(range(len(labels)), labels, fontsize=6)
            ax.set_xlabel("post neuron", fontsize=8)
            ax.set_ylabel("pre neuron", fontsize=8)
            ax.set_title(f"connectome: synapses among the {len(labels)} most connected neurons", fontsize=8)
            self.figure.colorbar(image, ax=ax, shrink=0.8)
        self.canvas.draw_idle()

    # -- navigation --------------------------------------------------------------------
    def jump_to_row(self, table_row: int) -> None:
        """Centre the view on the connection shown in ``table_row`` (its post site)."""
        item = self.grid.item(table_row, COLUMNS.index("row"))
        if item is None or self.table is None:
            return
        point = self.table.post[int(item.value)]
        dims = self.viewer.dims
        first = dims.ndim - 3
        dims.set_point([first, first + 1, first + 2], [float(v) for v in point])
        self.viewer.camera.center = tuple(float(v) for v in point)

    # -- adding ------------------------------------------------------------------------
    def _on_add_toggled(self, on: bool) -> None:
        if on:
            if self.project is None:
                self.add_button.setChecked(False)
                _notify.warning("Synapses: open a project first")
                return
            self._clicks = []
            self.viewer.mouse_drag_callbacks.append(self._on_click)
            self.viewer.bind_key("Escape", self._cancel_add, overwrite=True)
            self.status_label.setText("Click the pre site (Esc cancels)")
        else:
            self._stop_adding()

    def _stop_adding(self) -> None:
        self._clicks = None
        if self._on_click in self.viewer.mouse_drag_callbacks:
            self.viewer.mouse_drag_callbacks.remove(self._on_click)
        self.viewer.bind_key("Escape", None, overwrite=True)
        if self.add_button.isChecked():
            self.add_button.setChecked(False)

    def _cancel_add(self, _viewer=None) -> None:
        self._stop_adding()
        self.status_label.setText("Adding cancelled")

    def _on_click(self, _viewer, event) -> None:
        if event.type != "mouse_press" or self._clicks is None:
            return
        self.click_at(np.asarray(self.viewer.cursor.position, dtype=float)[-3:])

    def click_at(self, point_nm) -> None:
        """One click of *Add synapse* at a world point (nm): the pre site, then the post site."""
        if self._clicks is None:
            return
        self._clicks.append(np.asarray(point_nm, dtype=float))
        if len(self._clicks) == 1:
            self.status_label.setText("Now click the post site (Esc cancels)")
            return
        pre, post = self._clicks
        self._stop_adding()
        try:
            self._store_annotation(pre, post)
        except Exception as exc:  # a refused point or a locked store: one line, nothing lost
            _notify.error(_notify.one_line(error_line("Synapses: adding", exc)))
            return
        self.refresh()

    def _store_annotation(self, pre: np.ndarray, post: np.ndarray) -> None:
        from napari_connectome.errors import InputError
        from napari_connectome.synapses import SynapseTable
        from napari_connectome.synapses.labels import points_outside
        from napari_connectome.synapses.store import SynapseStore

        raw = self.project.open_input("raw")
        if points_outside(raw, np.stack([pre, post])).any():
            raise InputError(self.project.root, "a synapse site must lie inside the volume; nothing was added")
        with SynapseStore(self.project.component_path("synapses")) as store:
            current = store.current()
            next_id = int(current.synapse_id.max()) + 1 if len(current) else 1
            one = SynapseTable(synapse_id=[next_id], pre=[pre], post=[post], pre_id=[0], post_id=[0], score=[1.0])
            store.append(one, origin="annotated", details={"by": "Synapses panel"})
        _notify.info(f"Synapses: added a synapse at pre {tuple(np.round(pre))} → post {tuple(np.round(post))} nm")

    # -- closing ------------------------------------------------------------------------
    def _leave(self) -> None:
        if self.live is not None:
            self.live.close()
            self.live = None
        if self.workspace is not None:
            self.workspace.leave(self)
            self.workspace = None

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self._stop_adding()
        self._leave()
        super().closeEvent(event)


def _load(project, workspace, old_live):
    """Worker: ``(the synapses in force, their live connectome or None)``; the Proofreader is the workspace's."""
    from napari_connectome.graph.project_graph import has_project_graph
    from napari_connectome.synapses.connectome import LiveConnectome
    from napari_connectome.synapses.store import SynapseStore

    with SynapseStore(project.component_path("synapses"), read_only=True) as store:
        table = store.current()
    if not has_project_graph(project):
        return table, None
    proofreader = workspace.proofreader()
    if old_live is not None:
        old_live.close()
    return table, LiveConnectome(proofreader, table.pre, table.post, table.score, source="synapse store")
