"""The "Proofread" dock widget: select, merge, split with preview, undo, redo.

Thin by design: every edit is a call on the engine's
:class:`~napari_connectome.proofread.Proofreader`, which logs it first and
applies it second. The panel shows the result by refreshing the
``segments`` layer (its data object never changes: the Proofreader's lazy
labels read through the current mapping) and by listing the log.

Keys work wherever napari's keymap sees them: on the canvas, and in this
panel (keys a panel widget does not use travel up to napari's main window,
which hands them to the same keymap). They are bound on the proofreading
layers themselves, so they win over the Labels/Points layer keys (``M`` new
label, ``1``/``2`` modes, ``Ctrl+Z`` paint undo) while one of those layers is
active, and on the viewer as a fallback when another layer is active and
does not use the key.

==================  =====================================================
Click               select the segment under the cursor
Shift+click         add a segment to the selection
M                   merge the two selected segments, at the clicked points
1 / 2               place split sources / sinks with clicks (again: back)
P                   preview the split (sources blue, sinks red)
Enter               confirm the split (previews first if needed)
Esc                 cancel the preview and clear seeds; again: clear selection
Ctrl+Z              undo the last edit (logged as a new operation)
Ctrl+Shift+Z        redo
==================  =====================================================
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np
from qtpy.QtCore import Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QButtonGroup,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from napari_connectome_plugins import _notify
from napari_connectome_plugins._project_panel import (
    ProjectPanel,
    error_line,
    project_box,
    root_of,
    same,
    start_worker,
    unwrap,
)
from napari_connectome_plugins._proofread_layers import (
    pick_point,
    same_points,
)
from napari_connectome_plugins._proofread_view import (  # noqa: F401 (the layer names, re-exported for scripts)
    PREVIEW,
    SEGMENTS,
    SELECTION,
    SINKS,
    SOURCES,
    ProofreadLayers,
)
from napari_connectome_plugins._scroll import keep_button_labels, scrolling_layout

logger = logging.getLogger(__name__)

PLUGIN = "napari-connectome"
# The slider's resolution on the boundary signal [0, 1].
SLIDER_STEPS = 100
# How long the slider must rest before the threshold is saved in the project.
THRESHOLD_SAVE_DELAY_MS = 400

# napari key name -> (action, what a person reads).
KEYS: tuple[tuple[str, str, str], ...] = (
    ("M", "merge", "M"),
    ("1", "sources", "1"),
    ("2", "sinks", "2"),
    ("P", "preview", "P"),
    ("Enter", "confirm", "Enter"),
    ("Escape", "cancel", "Esc"),
    ("Control-Z", "undo", "Ctrl+Z"),
    ("Control-Shift-Z", "redo", "Ctrl+Shift+Z"),
)
NO_PROJECT = "No project. Open one here or with the Connectome panel."
HELP = (
    "Click: select segment · Shift+click: add · M: merge the two selected · "
    "1 / 2: place split sources / sinks (click) · P: preview split · Enter: confirm · "
    "Esc: cancel / clear · Ctrl+Z: undo · Ctrl+Shift+Z: redo"
)


def _fmt_ids(ids) -> str:
    ids = [int(i) for i in (ids or [])]
    return ", ".join(str(i) for i in ids) if ids else "—"


def _fmt_point(p) -> str:
    return "(" + ", ".join(f"{float(v):.0f}" for v in p) + ") nm"


def _fmt_time(text) -> str:
    text = str(text or "")
    if "T" in text:
        text = text.split("T", 1)[1]
    return text.split(".")[0].split("+")[0].rstrip("Z")


def history_text(row: dict) -> str:
    """One row of :meth:`Proofreader.history` as a person reads it.

    ``#id type  before → after  · user · time``; an undo or redo names the
    operation it reverses, and an edit not in effect now says "undone".
    """
    kind = str(row.get("type", "?"))
    if row.get("undo_of") is not None:
        kind += f" of #{row['undo_of']}"
    text = (
        f"#{row.get('operation_id')} {kind}  {_fmt_ids(row.get('before_roots'))} → "
        f"{_fmt_ids(row.get('after_roots'))}  · {row.get('user') or '?'} · {_fmt_time(row.get('timestamp'))}"
    )
    if row.get("undone"):
        text += " · undone"
    return text


class ProofreadWidget(ProjectPanel, QWidget):
    """Dock widget: proofread the segmentation of a project opened in the viewer.

    Parameters
    ----------
    napari_viewer
        The viewer (napari passes it).
    """

    TITLE = "Proofread"
    OPENING = "opening the project"
    KEYS = KEYS
    KEY_PREFIX = "proofread"

    #: An edit made elsewhere (another panel, a micro-task answer): emitted
    #: from the editing thread, drawn on the GUI thread (queued).
    edited_elsewhere = Signal()

    def __init__(self, napari_viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = unwrap(napari_viewer)
        self.project = None
        self.proofreader = None
        self.tree = None
        # The Proofreader and the effort recorder belong to the project's
        # workspace (one per project in a viewer, shared with the other panels).
        self.recorder = None  # the workspace's, timing edits in the effort log (None if it cannot write)
        self._edit_connection = None  # our listener on the Proofreader's edits
        self._editing = False  # an edit of this panel is running (its own listener call is not "elsewhere")
        self.mode = "select"
        self.selection: list[tuple[float, ...]] = []
        self.preview = None
        self._preview_seeds: tuple[list, list] | None = None
        self.view: ProofreadLayers | None = None  # the layers napari draws for the panel
        self._viewer_keys: dict[str, Any] = {}
        self._worker = None
        self._busy = ""
        self._opening: str | None = None
        self._history_count = 0
        self._threshold_pending: float | None = None
        self._last_dir = os.path.expanduser("~")
        self.last_edit_ms: float | None = None
        self.setMinimumWidth(340)
        self._build_ui()
        keep_button_labels(self)

        self._connect_layer_events()
        self._bind_idle_keys()
        self._threshold_timer = QTimer(self)
        self._threshold_timer.setSingleShot(True)
        self._threshold_timer.setInterval(THRESHOLD_SAVE_DELAY_MS)
        self._threshold_timer.timeout.connect(self._save_threshold)
        # Queued even from the GUI thread: a micro-task answer is drawn first, this panel after.
        self.edited_elsewhere.connect(self._on_edited_elsewhere, Qt.QueuedConnection)
        self._update_controls()
        self.bind_to_viewer_project()

    def _add_action_buttons(self, parent: QWidget, row, specs) -> None:
        """One button per ``(action, text, tip)`` in ``row``, running :meth:`run_action`."""
        for action, text, tip in specs:
            button = QPushButton(text, parent)
            button.setToolTip(tip)
            button.clicked.connect(lambda _=False, a=action: self.run_action(a))
            self.action_buttons[action] = button
            row.addWidget(button)

    # -- interface -----------------------------------------------------------
    def _build_ui(self) -> None:
        layout = scrolling_layout(self)
        layout.setContentsMargins(6, 6, 6, 6)

        box, form, self.project_label = project_box(self, NO_PROJECT)
        self._add_user_row(box, form, "Recorded with every edit in the project's edit log")
        self.user_edit.editingFinished.connect(self._on_user_changed)
        self.open_button = QPushButton("Open project…", box)
        self.open_button.setToolTip("Open a napari-connectome project folder and proofread it")
        self.open_button.clicked.connect(self.choose_project)
        form.addRow(self.open_button)
        self.version_label = QLabel("—", box)
        self.version_label.setToolTip("The Proofreader's mapping version: it grows with every change")
        form.addRow("Mapping:", self.version_label)
        layout.addWidget(box)

        box = QGroupBox("Agglomeration", self)
        row = QHBoxLayout(box)
        self.threshold_slider = QSlider(Qt.Horizontal, box)
        self.threshold_slider.setRange(0, SLIDER_STEPS)
        self.threshold_slider.setPageStep(5)
        self.threshold_slider.valueChanged.connect(self._on_threshold_moved)
        self.threshold_label = QLabel("—", box)
        self.threshold_label.setMinimumWidth(110)
        row.addWidget(self.threshold_slider, 1)
        row.addWidget(self.threshold_label)
        layout.addWidget(box)

        box = QGroupBox("Edit", self)
        edit = QVBoxLayout(box)
        modes = QHBoxLayout()
        self.mode_buttons: dict[str, QPushButton] = {}
        self.mode_group = QButtonGroup(box)
        self.mode_group.setExclusive(True)
        for mode, text, tip in (
            ("select", "Select", "Clicks select segments; Shift+click adds one (Esc returns here)"),
            ("sources", "Sources (1)", "Clicks place split sources, shown blue (1; press again to go back)"),
            ("sinks", "Sinks (2)", "Clicks place split sinks, shown red (2; press again to go back)"),
        ):
            button = QPushButton(text, box)
            button.setCheckable(True)
            button.setToolTip(tip)
            button.clicked.connect(lambda _=False, m=mode: self.set_mode(m))
            self.mode_group.addButton(button)
            self.mode_buttons[mode] = button
            modes.addWidget(button)
        self.mode_buttons["select"].setChecked(True)
        edit.addLayout(modes)
        actions = QHBoxLayout()
        self.action_buttons: dict[str, QPushButton] = {}
        self._add_action_buttons(box, actions, (
            ("merge", "Merge (M)", "Merge the two selected segments at the clicked points (M)"),
            ("preview", "Preview (P)", "Preview the split between the sources and the sinks (P)"),
            ("confirm", "Split (Enter)", "Commit the previewed split (Enter)"),
            ("cancel", "Cancel (Esc)", "Cancel the preview and clear the seeds; again: clear the selection (Esc)"),
        ))
        edit.addLayout(actions)
        undo_row = QHBoxLayout()
        self._add_action_buttons(box, undo_row, (
            ("undo", "Undo (Ctrl+Z)", "Undo the last edit; logged as a new operation (Ctrl+Z)"),
            ("redo", "Redo (Ctrl+Shift+Z)", "Redo the last undone edit (Ctrl+Shift+Z)"),
        ))
        edit.addLayout(undo_row)
        self.status_label = QLabel("", box)
        self.status_label.setWordWrap(True)
        edit.addWidget(self.status_label)
        self.help_label = QLabel(HELP, box)
        self.help_label.setWordWrap(True)
        self.help_label.setEnabled(False)
        edit.addWidget(self.help_label)
        layout.addWidget(box)

        box = QGroupBox("History", self)
        hist = QVBoxLayout(box)
        self.history_list = QListWidget(box)
        # A focused list would eat letters (type-ahead search): M must reach the keymap.
        self.history_list.setFocusPolicy(Qt.NoFocus)
        self.history_list.setToolTip("The project's edit log, newest last: operation, type, segments before → after, user, time")
        hist.addWidget(self.history_list)
        layout.addWidget(box, 1)

    # -- binding to a project ----------------------------------------------
    def bind_to_viewer_project(self) -> bool:
        """Start proofreading the project whose layers are open, if not already bound.

        Returns
        -------
        bool
            True if opening started.
        """
        if self.project is not None or self._busy:
            return False
        root = self.viewer_project_root()
        return self.open_root(root) if root else False

    def choose_project(self) -> bool:
        """Ask for a project folder, open its layers in the viewer and proofread it."""
        path = QFileDialog.getExistingDirectory(self, "Open a napari-connectome project folder", self._last_dir)
        if not path:
            return False
        self._last_dir = os.path.dirname(path.rstrip("/")) or path
        return self.open_path(path)

    def open_path(self, path: str | os.PathLike) -> bool:
        """Open a project folder's layers (through the plugin's reader) and proofread it."""
        from napari_connectome.errors import ConnectomeError
        from napari_connectome.project import open_project

        path = os.path.abspath(os.fspath(path))
        try:
            open_project(path)
        except ConnectomeError as exc:
            _notify.error(exc)
            return False
        if self.viewer_project_root() != path:
            try:
                self.viewer.open(path, plugin=PLUGIN)
            except Exception as exc:  # never a traceback dialog from here
                _notify.error(f"{path}: could not be opened: {exc}")
                return False
        if self.project is not None and root_of(self.project) != path:
            self.unbind()
        return self.open_root(path)

    def _open_project(self, root: str, project) -> bool:
        """Join the project's workspace and take its Proofreader (opened in a worker if need be)."""
        workspace = self._join_workspace(project)
        proofreader = workspace.open_proofreader
        if proofreader is not None:  # another panel works on it: no second one on the same edit log
            self._on_opened(project, proofreader, proofreader.tree)
            return True
        self._open_in_worker(
            root, f"{project.name} (opening…)", _open_proofreader, workspace, self.user_name(),
            returned=lambda result, p=project: self._on_opened(p, *result), desc=f"Proofread: opening {project.name}",
        )
        return True

    def _on_opened(self, project, proofreader, tree) -> None:
        self._work_done()
        if self.project is not None:  # a re-base: same layers, new mapping behind them
            self._swap_proofreader(proofreader, tree)
            return
        self.project = project
        self.proofreader = proofreader
        self.tree = tree
        self._listen(proofreader)
        try:
            self._make_layers()
        except Exception as exc:  # a layer napari refuses: say so, keep the viewer
            logger.debug("making the proofreading layers failed", exc_info=True)
            _notify.error(error_line("Proofread: showing the segments", exc))
            self.unbind()
            return
        self.project_label.setText(project.name)
        self.project_label.setToolTip(root_of(project))
        self._start_recorder()
        self._bind_keys()
        self._reload_history()
        self._show_threshold()
        self._after_change()
        for note in self.workspace.take_notes() if self.workspace is not None else []:
            _notify.info(f"{project.name}: {note}")

    def _listen(self, proofreader) -> None:
        """Follow the Proofreader's edits made elsewhere (a micro-task answer, another panel)."""
        if self._edit_connection is not None:
            self._edit_connection.disconnect()
        self._edit_connection = proofreader.add_listener(self._edit_listener)

    def _edit_listener(self, result) -> None:
        """Proofreader listener (editing thread): an edit not made here is drawn on the GUI thread."""
        if self._editing:
            return  # ours: :meth:`_edit` draws it
        try:
            self.edited_elsewhere.emit()
        except RuntimeError:  # the panel was deleted; the shared Proofreader lives on
            pass

    def _on_edited_elsewhere(self) -> None:
        """Draw another panel's edit: the segments, the history and the mapping version."""
        if self.proofreader is None:
            return
        if self.preview is not None:  # previewed on the old mapping
            self._clear_preview()
            self.status_label.setText("The split preview was dropped: the segments changed (an edit elsewhere)")
        self._recolour()
        self._reload_history()
        self._after_change()

    def _start_recorder(self) -> None:
        """Time this panel's edits in the project's effort log, with or without a task session.

        The recorder is the workspace's (one per project, shared with a task
        session). A log that cannot be opened for writing (read-only disk, a
        log from a newer suite) is said in one line; proofreading goes on untimed.
        """
        self.recorder = None
        if self.workspace is None:
            return
        try:
            self.recorder = self.workspace.recorder()
        except Exception as exc:
            logger.debug("opening the effort recorder failed", exc_info=True)
            _notify.warning(error_line("Proofread: timing edits in the effort log", exc) + "; edits are not timed")
            self.recorder = None

    def unbind(self) -> None:
        """Stop proofreading: close the Proofreader, remove the panel's layers, restore keys."""
        self._threshold_timer.stop()
        self._unbind_keys()
        view, self.view = self.view, None
        if view is not None:
            view.remove()
        if self._edit_connection is not None:
            self._edit_connection.disconnect()
            self._edit_connection = None
        self.recorder = None
        # The last panel out of the workspace closes the recorder and the Proofreader.
        self._leave_workspace()
        self.project = self.proofreader = self.tree = self.preview = None
        self._preview_seeds = None
        self.selection = []
        self.mode = "select"
        self.mode_buttons["select"].setChecked(True)
        self._history_count = 0
        self.history_list.clear()
        self.project_label.setText(NO_PROJECT)
        self.version_label.setText("—")
        self.status_label.setText("")
        self._update_controls()

    # -- layers -------------------------------------------------------------
    def layer(self, name: str):
        """The panel's layer ``name`` (``segments``, ``split sources``, ...), or None."""
        return self.view.layer(name) if self.view is not None else None

    def _make_layers(self) -> None:
        # Opened only after joining the workspace: its colours are the ones every panel draws.
        self.view = ProofreadLayers(
            self.viewer, self.proofreader, self.workspace.colours, project_root=root_of(self.project),
            on_click=self._on_click, on_seeds_changed=self._on_seeds_changed,
        )

    def _note_colours(self, points_nm) -> None:
        """Note the segments at ``points_nm`` before an edit retires them (so an undo restores their colours)."""
        if self.workspace is None or self.proofreader is None:
            return
        try:
            segments = {self.proofreader.segment_at(p) for p in points_nm}
            self.workspace.colours.note(self.proofreader, [s for s in segments if s])
        except Exception:  # colours must never stop an edit
            logger.debug("noting the colours failed", exc_info=True)

    def _recolour(self) -> None:
        """Draw the segments through the new mapping, in the colours handed on by the edit."""
        if self.view is not None and self.proofreader is not None:
            self.view.recolour(self.proofreader)

    # -- keys -----------------------------------------------------------------
    def _key_layers(self) -> list:
        return self.view.all() if self.view is not None else []

    # -- actions --------------------------------------------------------------
    def run_action(self, action: str) -> Any:
        """Run one panel action by name (what keys and buttons call).

        Engine errors show as one notification line; the viewer keeps working.
        """
        handlers = {
            "merge": self.merge,
            "sources": lambda: self.set_mode("select" if self.mode == "sources" else "sources"),
            "sinks": lambda: self.set_mode("select" if self.mode == "sinks" else "sinks"),
            "preview": self.preview_split,
            "confirm": self.confirm_split,
            "cancel": self.cancel,
            "undo": self.undo,
            "redo": self.redo,
        }
        if self.proofreader is None:
            _notify.warning("Proofread: open a project first")
            return None
        if self._threshold_pending is not None and action not in ("sources", "sinks", "cancel"):
            # The view shows a threshold not applied yet: apply it before any edit.
            self._threshold_timer.stop()
            self._save_threshold()
        if self._busy and action not in ("sources", "sinks", "cancel"):
            _notify.warning(f"Proofread: wait, still {self._busy}")
            return None
        return self._guarded(action, handlers[action])

    def set_mode(self, mode: str) -> None:
        """``select``: clicks select; ``sources`` / ``sinks``: clicks place split seeds."""
        self.mode = mode
        self.mode_buttons[mode].setChecked(True)
        segments = self.layer(SEGMENTS)
        if segments is not None and not same(self.viewer.layers.selection.active, segments):
            # Clicks reach only the active layer's callbacks.
            self.viewer.layers.selection.active = segments
        self._show_status()

    def _on_click(self, layer, event):
        """Mouse drag callback of the segments layer: act on a click, not on a pan."""
        if getattr(event, "button", 1) != 1:
            return
        press = np.asarray(event.position, dtype=float)
        dragged = False
        yield
        while event.type == "mouse_move":
            if np.any(np.abs(np.asarray(event.position, dtype=float) - press) > 1e-6):
                dragged = True
            yield
        if dragged:
            return
        shift = "Shift" in event.modifiers
        if self.view is not None:
            self._guarded("click", lambda: self.click(pick_point(layer, event, self.view.volume), add=shift))

    def click(self, point_nm, *, add: bool = False) -> None:
        """What a click at ``point_nm`` does in the current mode.

        ``select``: select the segment there (``add``: add it to the selection);
        ``sources`` / ``sinks``: place a split seed there.
        """
        if self.proofreader is None or point_nm is None:
            return
        point = tuple(float(v) for v in point_nm)
        segment = int(self.proofreader.segment_at(point))
        if segment == 0:
            _notify.warning(f"Proofread: {_fmt_point(point)} is background (no segment)")
            return
        if self.mode in ("sources", "sinks"):
            self.view.add_seed(self.mode, point)
            return
        self.selection = [*self.selection, point] if add else [point]
        self.view.select_label(segment)
        self._show_selection()

    def seeds(self) -> tuple[list[tuple[float, ...]], list[tuple[float, ...]]]:
        """The split seeds shown, in nm: (sources, sinks). Moving a point moves its seed."""
        return self.view.seeds() if self.view is not None else ([], [])

    def merge(self):
        """Merge the two selected segments at the two clicked points (M)."""
        if len(self.selection) != 2:
            _notify.warning(
                f"Proofread: merge needs two selected segments (click one, Shift+click the other); "
                f"{len(self.selection)} selected"
            )
            return None
        a, b = self.selection
        self._note_colours([a, b])
        return self._edit(lambda: self.proofreader.merge(a, b))

    def preview_split(self):
        """Preview the split between the sources and sinks placed (P)."""
        sources, sinks = self.seeds()
        if not sources or not sinks:
            _notify.warning(
                f"Proofread: a split needs sources (1, click) and sinks (2, click); "
                f"have {len(sources)} source(s), {len(sinks)} sink(s)"
            )
            return None
        preview = self.proofreader.preview_split(sources, sinks)
        self.preview = preview
        self._preview_seeds = (sources, sinks)
        self._show_preview(preview)
        return preview

    def confirm_split(self):
        """Commit the previewed split (Enter); without a current preview, preview first."""
        sources, sinks = self.seeds()
        current = (
            self.preview is not None
            and self._preview_seeds is not None
            and same_points(self._preview_seeds[0], sources)
            and same_points(self._preview_seeds[1], sinks)
        )
        if not current:
            if self.preview_split() is not None:
                _notify.info("Proofread: split previewed; press Enter again to commit it")
            return None
        preview = self.preview
        problem = getattr(preview, "problem", None)
        if problem:
            # Never commit a cut that separates nothing; the preview stays to be corrected.
            _notify.warning(f"Proofread: not split: {problem}; move the seeds (1 / 2) and preview again")
            return None
        self._note_colours(sources[:1])
        result = self._edit(lambda: self.proofreader.split(preview=preview))
        self._clear_seeds()
        self.set_mode("select")
        return result

    def cancel(self) -> None:
        """Cancel the preview and clear the seeds (Esc); with none, clear the selection."""
        had = self.preview is not None or any(self.seeds()) or self.mode != "select"
        self._clear_preview()
        self._clear_seeds()
        self.set_mode("select")
        if not had:
            self.selection = []
            self._show_selection()

    def undo(self):
        """Undo the last edit (Ctrl+Z): a new operation in the log."""
        return self._edit(self.proofreader.undo)

    def redo(self):
        """Redo the last undone edit (Ctrl+Shift+Z): a new operation in the log."""
        return self._edit(self.proofreader.redo)

    def _edit(self, call):
        start = time.perf_counter()
        self._editing = True
        try:
            result = call()
        finally:
            self._editing = False
        self._clear_preview()
        self._recolour()
        self.last_edit_ms = (time.perf_counter() - start) * 1e3
        self._reload_history()
        self._after_change()
        self.status_label.setText(
            f"#{result.operation_id} {result.type}: {_fmt_ids(result.before_segments)} → "
            f"{_fmt_ids(result.after_segments)} ({self.last_edit_ms:.0f} ms)"
        )
        return result

    # -- seeds, preview, selection display ----------------------------------
    def _clear_seeds(self) -> None:
        if self.view is not None:
            self.view.clear_seeds()

    def _on_seeds_changed(self, event=None) -> None:
        if self._preview_seeds is not None:
            sources, sinks = self.seeds()
            if not (same_points(self._preview_seeds[0], sources) and same_points(self._preview_seeds[1], sinks)):
                self._clear_preview()
        self._show_status()

    def _show_preview(self, preview) -> None:
        self.view.show_preview(preview, self.proofreader)
        # The engine's own plain sentence (it names a supervoxel both seeds fall in, and what a
        # cut that separates nothing would leave), then what the keys do now.
        message = getattr(preview, "message", "") or (
            f"Split preview of segment {int(preview.segment_id)}: {len(preview.source_supervoxels)} "
            f"supervoxel(s) blue | {len(preview.sink_supervoxels)} red, {len(preview.cut_edges)} edge(s) cut."
        )
        problem = getattr(preview, "problem", None)
        keys = "Move the seeds, or Esc to cancel." if problem else "Enter commits, Esc cancels."
        self.status_label.setText(f"{message} {keys}")

    def _clear_preview(self) -> None:
        if self.preview is None and self._preview_seeds is None:
            return
        self.preview = None
        self._preview_seeds = None
        if self.view is not None:
            self.view.hide_preview(self.proofreader)
        self._show_status()

    def _show_selection(self) -> None:
        if self.view is None or self.proofreader is None:
            return
        ids = [int(self.proofreader.segment_at(p)) for p in self.selection]
        self.view.show_selection(self.selection, ids)
        self._show_status()

    def _show_status(self) -> None:
        if self.proofreader is None:
            return
        sources, sinks = self.seeds()
        ids = [int(self.proofreader.segment_at(p)) for p in self.selection]
        mode = {"select": "select", "sources": "placing sources", "sinks": "placing sinks"}[self.mode]
        text = f"Mode: {mode} · selected: {_fmt_ids(ids)} · sources {len(sources)}, sinks {len(sinks)}"
        if self.preview is None:
            self.status_label.setText(text)

    def _after_change(self) -> None:
        pr = self.proofreader
        if pr is None:
            return
        self.version_label.setText(f"version {pr.version}")
        self._show_selection()
        self._update_controls()

    def _reload_history(self) -> None:
        rows = self.proofreader.history() if self.proofreader is not None else []
        if len(rows) < self._history_count:
            self.history_list.clear()
            self._history_count = 0
        for row in rows[self._history_count:]:
            self.history_list.addItem(history_text(row))
        self._history_count = len(rows)
        if rows:
            self.history_list.scrollToBottom()

    def history_rows(self) -> list[str]:
        """The history list's lines, oldest first."""
        return [self.history_list.item(i).text() for i in range(self.history_list.count())]

    # -- threshold ------------------------------------------------------------
    def threshold(self) -> float | None:
        """The agglomeration threshold of the base segmentation, or None if not agglomerated.

        The Proofreader's: the project's chosen one, or the one the edit log
        was recorded on when they differ.
        """
        value = getattr(self.proofreader, "threshold", None)
        return None if value is None else float(value)

    def _show_threshold(self) -> None:
        value = self.threshold()
        self.threshold_slider.blockSignals(True)
        try:
            self.threshold_slider.setValue(int(round((value if value is not None else 0.0) * SLIDER_STEPS)))
        finally:
            self.threshold_slider.blockSignals(False)
        self._threshold_text(value)

    def _threshold_text(self, value: float | None) -> None:
        if value is None:
            self.threshold_label.setText("not agglomerated")
            return
        text = f"{value:.2f}"
        if self.tree is not None:
            text += f" · {self.tree.n_segments_at(value)} segments"
        self.threshold_label.setText(text)

    def set_threshold(self, value: float) -> None:
        """Move the threshold slider to ``value`` (what dragging it does)."""
        self.threshold_slider.setValue(int(round(float(value) * SLIDER_STEPS)))

    def _on_threshold_moved(self, position: int) -> None:
        if self.proofreader is None or not self.threshold_slider.isEnabled():
            return
        value = position / SLIDER_STEPS
        self._threshold_text(value)
        if self.tree is not None:
            # Live: the supervoxels through the tree's mapping, nothing saved yet.
            sv_ids, segment_ids = self.tree.mapping_at(value)
            self.view.show_mapping(self.proofreader, sv_ids, segment_ids)
        self._threshold_pending = value
        self._threshold_timer.start()

    def _save_threshold(self) -> None:
        """Record the slider's threshold in the project and re-open the Proofreader on it."""
        value, self._threshold_pending = self._threshold_pending, None
        if value is None or self.project is None:
            return
        if self._busy:  # try again when the current work is done
            self._threshold_pending = value
            self._threshold_timer.start()
            return
        if self._has_edits():
            self._swap_proofreader(self.proofreader, self.tree)  # back to the logged base
            return
        self._busy = "applying the threshold"
        self._update_controls()
        self._worker = start_worker(
            _rebase, self.project, self.proofreader, value, self.user_name(),
            returned=lambda result, p=self.project: self._on_opened(p, *result), errored=self._on_rebase_failed,
            desc=f"Proofread: agglomerating at {value:.2f}",
        )

    def _on_rebase_failed(self, exc: Exception) -> None:
        self._work_done()
        _notify.error(error_line("Proofread: applying the threshold", exc))
        self._swap_proofreader(self.proofreader, self.tree)

    def _swap_proofreader(self, proofreader, tree) -> None:
        if proofreader is not self.proofreader and self.proofreader is not None:
            others = self.workspace.others(self) if self.workspace is not None else []
            if others:  # a panel joined while the threshold was applied: it holds the old mapping
                proofreader.close()
                _notify.warning("Proofread: the threshold was not applied: another panel opened this project meanwhile")
                proofreader, tree = self.proofreader, self.tree
            else:
                # The workspace closes the old Proofreader and its recorder; ours follow the new one.
                self.workspace.replace_proofreader(proofreader)
                self._listen(proofreader)
                self._start_recorder()
        self.proofreader = proofreader
        self.tree = tree
        self.view.show_segments(proofreader.labels_volume().arrays, proofreader)
        self.view.hide_preview(proofreader)
        self.preview = self._preview_seeds = None
        self._show_threshold()
        self._reload_history()
        self._after_change()

    def _has_edits(self) -> bool:
        return self._history_count > 0

    # -- state of the controls --------------------------------------------------
    def _on_user_changed(self) -> None:
        if self.proofreader is not None:
            self.proofreader.user = self.user_name()

    def _update_controls(self) -> None:
        ready = self.proofreader is not None and not self._busy
        for button in (*self.action_buttons.values(), *self.mode_buttons.values()):
            button.setEnabled(ready)
        edits = self._has_edits()
        # Re-basing replaces the Proofreader, which another panel may be using.
        others = [getattr(m, "TITLE", "another panel") for m in self.workspace.others(self)] if self.workspace else []
        self.threshold_slider.setEnabled(ready and not edits and not others)
        if self.proofreader is None:
            tip = "Open a project first"
        elif others:
            names = ", ".join(others)
            tip = f"Fixed while {names} works on this project (close it to change the threshold)"
        elif edits:
            value = self.threshold()
            base = "the supervoxels without agglomeration" if value is None else f"the agglomeration at {value:.2f}"
            tip = (
                f"Fixed: the project's edit log ({self._history_count} operations) is replayed on {base}, "
                "so another threshold would change what every recorded edit means. Undo does not reopen it: "
                "undo is an operation too."
            )
        elif self.tree is None:
            tip = "Agglomerate the supervoxels: merge regions whose mean boundary signal is at most this value"
        else:
            tip = (
                "Merge regions whose mean boundary signal is at most this value; the view follows "
                "while dragging, and the threshold is saved in the project when the slider rests"
            )
        self.threshold_slider.setToolTip(tip)

    # -- viewer events ------------------------------------------------------------
    def _on_removed(self, event) -> None:
        layer = event.value
        if self.view is not None and self.view.owns(layer):
            self.unbind()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self._disconnect()
        super().closeEvent(event)

    def _disconnect(self) -> None:
        self._disconnect_layer_events()
        self.unbind()
        self._release_idle_keys()


def _open_proofreader(workspace, user: str):
    """Worker: the workspace's Proofreader (opened here if no panel has; it builds a missing graph)."""
    proofreader = workspace.proofreader(user=user)
    return proofreader, proofreader.tree


def _rebase(project, proofreader, threshold: float, user: str):
    """Worker: save ``threshold`` as the project's agglomeration and reopen the Proofreader on it."""
    from napari_connectome.errors import InputError
    from napari_connectome.graph import agglomerate_project
    from napari_connectome.proofread import Proofreader

    if proofreader.history():
        raise InputError(project.root, "the threshold is fixed once the edit log has operations")
    agglomerate_project(project, threshold=threshold)
    new = Proofreader.open(project, user=user)
    return new, new.tree
