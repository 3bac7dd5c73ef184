"""The "Micro-tasks" dock widget: one question at a time, answered with one key.

The engine's :class:`~napari_connectome.tasks.TaskSession` ranks the
candidate errors, applies the edits, feeds every answer to the ranker and
times every answer in the project's effort log. This panel only shows the
current task and forwards keys, buttons and input activity to it:

- the question in large type ("Same neuron?" / "Cut here?", and for the
  project's detected synapses "Synapse here?" / "Is this the partner?") with
  the task id, kind and impact (a synapse: its neurons, pre → post, and score);
- in the viewer, in 2D on the section through the decision point: the
  full-resolution EM crop (256 voxels across, 64 sections deep by default),
  the involved segments as outlines (for "Cut here?" the two sides of the
  proposed cut in two colours), their skeletons projected onto the section
  and the point; ``,`` and ``.`` step through the sections;
- segment colours that follow the edits (a merge keeps the larger body's
  colour, the larger part of a split keeps it, undo brings it back), and
  skeletons that follow them too (new segments are skeletonized in a worker);
- progress (done · queued · flagged), live VI against the ground truth when
  the project has one, and the latest note (e.g. a task skipped because its
  segments were edited since).

The next task's view is prepared by the session's prefetcher in a worker
thread while the proofreader decides; after an answer the GUI thread only
swaps layer data.

Keys are bound on the viewer and on the panel's own layers (layer keymaps
come first in napari, so ours win over a Labels or Points layer's own keys
while one of our layers is active). Every key press, mouse press, move and
wheel in the viewer's window counts as activity for the effort clock (an
application-wide Qt event filter, removed when the panel closes): a gap of
more than the idle threshold (60 s unless configured) between two inputs is
idle time, not work.

=====  ==============================================================
Y      yes: apply the proposed edit (merge or cut)
N      no: leave it, tell the ranker
S      skip: ask later
U      undo the last answer (and its edit); that task is shown again
F      flag the task for an expert
,  .   previous / next section (z) of the task's crop
=====  ==============================================================
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QEvent, QObject, Qt, Signal
from qtpy.QtWidgets import (
    QApplication,
    QGridLayout,
    QGroupBox,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_connectome.tasks.colours import SegmentColours
from napari_connectome.tasks.skeletons import FollowingSkeletons
from napari_connectome_plugins import _notify
from napari_connectome_plugins._layers import layer_meta
from napari_connectome_plugins._microtask_layers import TaskLayers
from napari_connectome_plugins._project_panel import (
    NO_PROJECT,
    ProjectPanel,
    error_line,
    project_box,
    root_of,
    unwrap,
)
from napari_connectome_plugins._scroll import keep_button_labels, scrolling_layout

logger = logging.getLogger(__name__)

PLUGIN = "napari-connectome"
WIDGET_NAME = "Micro-tasks"
# napari key name, action, button text.
KEYS: tuple[tuple[str, str, str], ...] = (
    ("Y", "yes", "Yes"),
    ("N", "no", "No"),
    ("S", "skip", "Skip"),
    ("U", "undo", "Undo"),
    ("F", "flag", "Flag"),
)
TIPS = {
    "yes": "Yes: apply the proposed edit (merge the two segments, or cut here) (Y)",
    "no": "No: the segmentation is right here; the ranker learns from it (N)",
    "skip": "Skip: not sure; ask another task (S)",
    "undo": "Undo the last answer and its edit; that task is shown again (U)",
    "flag": "Flag the task for an expert and go on (F)",
}
# Keys that move through the task's crop (bound like the answers; no buttons).
SECTION_KEYS: tuple[tuple[str, str, str], ...] = (
    (",", "section_back", "Previous section"),
    (".", "section_forward", "Next section"),
)
SECTION_STEP = {"section_back": -1, "section_forward": 1}
HELP = ("Y yes (apply the edit) · N no · S skip · U undo the last answer · F flag for an expert · "
        ", . previous / next section")
QUESTION_POINTS = 22
# Events that mean a person is at the keyboard or mouse.
INPUT_EVENTS = frozenset(
    int(t) for t in (QEvent.KeyPress, QEvent.MouseButtonPress, QEvent.MouseMove, QEvent.Wheel)
)


def _fmt_impact(candidate) -> str:
    """The candidate's impact with its unit (voxels, or length of skeleton), or "—"."""
    from napari_connectome.candidates.model import format_impact

    try:
        return format_impact(float(candidate.impact), getattr(candidate, "impact_unit", "voxels"))
    except (AttributeError, TypeError, ValueError):
        return "—"


def progress_text(progress: dict) -> str:
    """``12 done · 340 queued · 1 flagged`` (`` · 8 settled earlier`` when earlier sessions settled some)."""
    text = (
        f"{int(progress.get('done', 0))} done · {int(progress.get('queued', 0))} queued · "
        f"{int(progress.get('flagged', 0))} flagged"
    )
    earlier = int(progress.get("earlier", 0))
    return f"{text} · {earlier} settled earlier" if earlier else text


def vi_text(vi: dict | None) -> str:
    """``VI 0.412 (split 0.301 · merge 0.111)``, or empty without ground truth."""
    if not vi:
        return ""
    return (
        f"VI {float(vi.get('vi', 0.0)):.3f} (split {float(vi.get('vi_split', 0.0)):.3f} · "
        f"merge {float(vi.get('vi_merge', 0.0)):.3f})"
    )


def task_text(task) -> str:
    """``t-1a2b3c4d5e6f · merge · impact 2.4k voxels · segments 12, 87``.

    A synapse question: ``t-… · synapse · neuron 87 → 12 · score 0.0021 µm³`` (pre → post, the arrow drawn).
    """
    if getattr(task, "is_synapse", False):
        c = task.candidate
        return f"{task.id} · {task.kind} · neuron {c.pre_id} → {c.post_id} · score {c.score:.2g} µm³"
    segments = ", ".join(str(int(s)) for s in getattr(task, "segments", ()))
    impact = _fmt_impact(getattr(task, "candidate", None))
    return f"{task.id} · {task.kind} · impact {impact} · segments {segments or '—'}"


class InputWatcher(QObject):
    """Application-wide event filter: calls ``on_input()`` for input in one window.

    Installed on the QApplication because Qt hands a widget's events to the
    filters of that widget and of the application only, never to its window's.

    Parameters
    ----------
    window
        A callable returning the top-level window whose input counts.
    on_input
        Called (on the GUI thread) for every key press, mouse press, mouse
        move and wheel event there.
    """

    def __init__(self, window: Callable[[], Any], on_input: Callable[[], None]) -> None:
        super().__init__()
        self._window = window
        self._on_input = on_input
        self.installed = False

    def install(self) -> None:
        app = QApplication.instance()
        if app is not None and not self.installed:
            app.installEventFilter(self)
            self.installed = True

    def remove(self) -> None:
        app = QApplication.instance()
        if app is not None and self.installed:
            app.removeEventFilter(self)
        self.installed = False

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt name)
        try:
            if int(event.type()) in INPUT_EVENTS and obj.isWidgetType():
                window = self._window()
                if window is not None and obj.window() is window:
                    self._on_input()
        except Exception:  # a filter must never break event delivery
            logger.debug("input watcher failed", exc_info=True)
        return False


class MicroTaskWidget(ProjectPanel, QWidget):
    """Dock widget: answer the micro-tasks of the project opened in the viewer.

    Parameters
    ----------
    napari_viewer
        The viewer (napari passes it).
    clock
        Seconds since the epoch for the effort log (default ``time.time``;
        tests pass a fake one they advance).
    idle_after_s
        Idle threshold of the effort clock (default: the engine's, 60 s
        unless ``NAPARI_CONNECTOME_IDLE_S`` says otherwise).
    prefetch
        Prepare the next task's view in a worker thread (the default).
    find_options
        Options for the candidate search (passed to the session).
    strategy
        The ranking strategy (a name or a :class:`~napari_connectome.rank.Strategy`;
        default: the session's, ``active``).
    """

    # An edit committed by the Proofreader (any thread; queued to the GUI thread).
    edited = Signal(object)
    TITLE = "Micro-tasks"
    OPENING = "opening the task session"
    KEYS = KEYS + SECTION_KEYS
    KEY_PREFIX = "microtask"

    def __init__(
        self,
        napari_viewer,
        parent: QWidget | None = None,
        *,
        clock: Callable[[], float] | None = None,
        idle_after_s: float | None = None,
        prefetch: bool = True,
        find_options: dict | None = None,
        strategy=None,
        synapse_every: int | None = None,
    ) -> None:
        super().__init__(parent)
        self.synapse_every = synapse_every
        self.viewer = unwrap(napari_viewer)
        self.clock = clock
        self.idle_after_s = idle_after_s
        self.prefetch = prefetch
        self.find_options = find_options
        self.strategy = strategy
        self.project = None
        self.session = None
        self.task_layers: TaskLayers | None = None
        self.colours: SegmentColours | None = None
        self.skeletons: FollowingSkeletons | None = None
        self._skeleton_connection = None  # the skeletons' listener on the Proofreader
        self._edit_connection = None  # ours: a task made stale by an edit elsewhere
        self.last_show_ms: float | None = None
        self._hidden: list[Any] = []
        self._viewer_keys: dict[str, Any] = {}
        self._worker = None
        self._busy = ""
        self._opening: str | None = None
        self._notes_seen = 0
        self._waiting = False  # between an answer key and the next task drawn
        self._ndisplay_before: int | None = None
        self.setMinimumWidth(340)
        self._build_ui()
        keep_button_labels(self)
        # Queued: a listener runs inside the edit, and the session must finish its answer first.
        self.edited.connect(self._on_edited, Qt.QueuedConnection)
        self._watcher = InputWatcher(self._main_window, self._on_input)
        self._watcher.install()
        self._connect_layer_events()
        self._bind_idle_keys()
        self._update_controls()
        if not self.bind_to_viewer_project():
            _notify.warning(f"Micro-tasks: no project in the viewer; {NO_PROJECT.split('. ', 1)[1]}")

    # -- interface -----------------------------------------------------------
    def _build_ui(self) -> None:
        layout = scrolling_layout(self)
        layout.setContentsMargins(6, 6, 6, 6)

        box, form, self.project_label = project_box(self, NO_PROJECT)
        self._add_user_row(box, form, "Recorded with every answer in the effort log and every edit in the edit log")
        layout.addWidget(box)

        box = QGroupBox("Task", self)
        task = QVBoxLayout(box)
        self.question_label = QLabel("—", box)
        # A style sheet, not setFont: napari's theme sets label fonts through its own style sheet.
        self.question_label.setStyleSheet(f"font-size: {QUESTION_POINTS}pt; font-weight: bold;")
        self.question_label.setAlignment(Qt.AlignCenter)
        task.addWidget(self.question_label)
        self.task_label = QLabel("", box)
        self.task_label.setAlignment(Qt.AlignCenter)
        self.task_label.setWordWrap(True)
        self.task_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        task.addWidget(self.task_label)
        grid = QGridLayout()
        self.buttons: dict[str, QPushButton] = {}
        # Yes and No, the common answers, get the wide first row; Skip, Undo, Flag the second.
        places = {"yes": (0, 0, 1, 3), "no": (0, 3, 1, 3), "skip": (1, 0, 1, 2), "undo": (1, 2, 1, 2),
                  "flag": (1, 4, 1, 2)}
        for key, action, text in KEYS:
            button = QPushButton(f"{text} ({key})", box)
            button.setToolTip(TIPS[action])
            # A focused button would keep the keys; they must reach napari's keymap.
            button.setFocusPolicy(Qt.NoFocus)
            button.clicked.connect(lambda _=False, a=action: self.run_action(a))
            self.buttons[action] = button
            grid.addWidget(button, *places[action])
        task.addLayout(grid)
        self.progress_label = QLabel("", box)
        self.progress_label.setToolTip("Answered (yes, no, flag, skip; undone answers do not count) · candidates not asked yet · "
                                       "flagged for an expert · answered no or flagged in an earlier session, not asked again")
        # Wrapped, so "· 8 settled earlier" never widens the dock past the viewer (a scroll bar, cut buttons).
        self.progress_label.setWordWrap(True)
        task.addWidget(self.progress_label)
        self.vi_label = QLabel("", box)
        self.vi_label.setToolTip("Variation of information against the project's ground truth, now (split: false merges … merge: false splits)")
        task.addWidget(self.vi_label)
        self.status_label = QLabel("", box)
        self.status_label.setWordWrap(True)
        task.addWidget(self.status_label)
        self.notes_label = QLabel("", box)
        self.notes_label.setWordWrap(True)
        self.notes_label.setToolTip("The latest note of the session (e.g. a task skipped because its segments were edited since)")
        task.addWidget(self.notes_label)
        self.help_label = QLabel(HELP, box)
        self.help_label.setWordWrap(True)
        self.help_label.setEnabled(False)
        task.addWidget(self.help_label)
        layout.addWidget(box)
        layout.addStretch(1)

    # -- binding to a project ------------------------------------------------------
    def bind_to_viewer_project(self) -> bool:
        """Start a task session on the project whose layers are open, if not already bound."""
        if self.session is not None or self._busy:
            return self.session is not None or bool(self._busy)
        root = self.viewer_project_root()
        return self.open_root(root) if root else False

    def _open_project(self, root: str, project) -> bool:
        """Open a :class:`~napari_connectome.tasks.TaskSession` on ``project`` in a worker thread.

        The session works on the workspace's Proofreader and effort recorder
        (one each per project in the viewer, shared with the Proofread panel).
        """
        workspace = self._join_workspace(project)
        options = {
            "user": self.user_name(),
            "clock": self.clock,
            "idle_after_s": self.idle_after_s,
            "prefetch": self.prefetch,
            "find_options": self.find_options,
            "strategy": self.strategy,
            "synapse_every": self.synapse_every,
        }
        self._open_in_worker(
            root, f"{project.name} (finding tasks…)", _open_session, workspace, project, options,
            returned=lambda session, p=project: self._on_opened(p, session),
            desc=f"Micro-tasks: finding tasks in {project.name}",
        )
        return True

    def _on_opened(self, project, session) -> None:
        self._work_done()
        self.project = project
        self.session = session
        self.project_label.setText(project.name)
        self.project_label.setToolTip(root_of(project))
        warning = getattr(getattr(session, "effort", None), "warning", None)
        if warning:
            _notify.warning(warning)
        for note in self.workspace.take_notes() if self.workspace is not None else []:
            _notify.info(f"{project.name}: {note}")
        self._follow_edits(session)
        self._edit_connection = session.proofreader.add_listener(self._edit_listener)
        self.task_layers = TaskLayers(self.viewer, project_root=project.root)
        self._ndisplay_before = int(self.viewer.dims.ndisplay)
        self._notes_seen = 0
        try:
            task = session.current if getattr(session, "current", None) is not None else session.next_task()
            self._show(task)
        except Exception as exc:  # a task napari cannot draw: say so, keep the viewer
            logger.debug("showing the first task failed", exc_info=True)
            _notify.error(error_line("Micro-tasks: showing the first task", exc))
        self._hide_other_layers()
        self._bind_keys()
        self._update_controls()

    def _follow_edits(self, session) -> None:
        """Stable colours and skeletons that follow the edits, for the views the session prepares.

        The session's views read ``session.colours`` and ``session.skeletons``
        (see :func:`~napari_connectome.tasks.view.prepare_view`). The colours
        are the workspace's (they follow every edit, the same in every panel);
        the skeletons listen to the Proofreader here, so a segment made by a
        merge, split or undo has a skeleton made in a worker.
        """
        pr = session.proofreader
        self.colours = self.workspace.colours  # a session is opened only after joining the workspace
        session.colours = self.colours
        store = getattr(session, "skeletons", None)
        self.skeletons = None
        if store is not None and hasattr(store, "update_after_edit"):
            self.skeletons = FollowingSkeletons(store, pr)
            session.skeletons = self.skeletons
            self._skeleton_connection = pr.add_listener(self.skeletons.follow)

    def unbind(self) -> None:
        """Close the session and remove the panel's layers; restore the viewer."""
        self._unbind_keys()
        for connection in (self._skeleton_connection, self._edit_connection):
            if connection is not None:  # the shared Proofreader outlives this session
                connection.disconnect()
        self._skeleton_connection = self._edit_connection = None
        if self.skeletons is not None:
            self.skeletons.close()
        self.skeletons = None
        self.colours = None
        if self.task_layers is not None:
            try:
                self.task_layers.remove()
            except Exception:  # the viewer is going away
                logger.debug("removing the task layers failed", exc_info=True)
            self.task_layers = None
        for layer in self._hidden:
            if layer in self.viewer.layers:
                layer.visible = True
        self._hidden = []
        if self._ndisplay_before is not None:
            try:
                self.viewer.dims.ndisplay = self._ndisplay_before
            except Exception:  # the viewer is going away
                logger.debug("restoring ndisplay failed", exc_info=True)
            self._ndisplay_before = None
        if self.session is not None:
            try:
                self.session.close()
            except Exception:  # closing must never stop the panel from unbinding
                logger.debug("closing the task session failed", exc_info=True)
        self.session = None
        # The last panel out of the workspace closes the recorder and the Proofreader.
        self._leave_workspace()
        self.project = None
        self.question_label.setText("—")
        self.task_label.setText("")
        self.progress_label.setText("")
        self.vi_label.setText("")
        self.status_label.setText("")
        self.notes_label.setText("")
        self.project_label.setText(NO_PROJECT)
        self._update_controls()

    # -- showing -------------------------------------------------------------------
    @property
    def current_task(self):
        """The task on screen (None when there is none)."""
        return getattr(self.session, "current", None) if self.session is not None else None

    def _show(self, task) -> None:
        """Draw ``task`` (prepared by the prefetcher) and update the texts."""
        start = time.perf_counter()
        if task is None:
            self.question_label.setText("No tasks left")
            self.task_label.setText("Every candidate was answered. U undoes the last answer.")
            if self.task_layers is not None:
                self.task_layers.clear()
        else:
            view = self.session.view(task)
            self.task_layers.show(view)
            self.question_label.setText(task.question)
            self.task_label.setText(task_text(task))
        self.last_show_ms = (time.perf_counter() - start) * 1e3
        self._show_state()

    def _show_state(self) -> None:
        session = self.session
        if session is None:
            return
        self.progress_label.setText(progress_text(session.progress()))
        self.vi_label.setText(vi_text(session.vi()))
        self.vi_label.setVisible(bool(self.vi_label.text()))
        notes = list(getattr(session, "notes", []) or [])
        if len(notes) > self._notes_seen:
            self.notes_label.setText(notes[-1])
        self._notes_seen = len(notes)

    def _hide_other_layers(self) -> None:
        """Hide the other visible layers: whole volumes would hide the crop in 3D."""
        for layer in self.viewer.layers:
            if layer.visible and not self.task_layers.owns(layer):
                layer.visible = False
                self._hidden.append(layer)

    # -- keys -----------------------------------------------------------------------
    def _key_layers(self) -> list:
        return list(self.task_layers.layers()) if self.task_layers is not None else []

    # -- actions ----------------------------------------------------------------------
    def press(self, key: str) -> Any:
        """Act as if ``key`` (``"Y"``, ``"N"``, ``"S"``, ``"U"``, ``"F"``, ``","``, ``"."``) was pressed (tests, scripts)."""
        actions = {k: a for k, a, _ in KEYS + SECTION_KEYS}
        action = actions.get(str(key).upper())
        if action is None:
            raise ValueError(f"no micro-task key {key!r}; keys are {', '.join(actions)}")
        self._on_input()
        return self.run_action(action)

    def run_action(self, action: str) -> Any:
        """Answer (``yes``, ``no``, ``skip``, ``flag``) or ``undo``: what keys and buttons call.

        Engine errors show as one notification line; the panel keeps working.
        """
        if action in SECTION_STEP:
            if self.task_layers is not None:
                self.task_layers.step_section(SECTION_STEP[action])
            return None
        if self.session is None:
            _notify.warning("Micro-tasks: open a project first" if not self._busy else f"Micro-tasks: wait, still {self._busy}")
            return None
        if action == "undo":
            return self._guarded("undo", self.undo)
        if self.current_task is None:
            _notify.info("Micro-tasks: no task to answer")
            return None
        return self._guarded(action, lambda: self.answer(action))

    def answer(self, answer: str):
        """Answer the current task; the next one is shown at once.

        From the key press until the next task is drawn the proofreader waits
        for the suite: that time is recorded as waiting, not as work.
        """
        self._wait_for_next()
        try:
            result = self.session.answer(answer)
            self._after_answer(result, answer)
        finally:
            self._end_wait_when_drawn()
        return result

    def undo(self):
        """Undo the last answer and its edit; that task is shown again."""
        self._wait_for_next()
        try:
            result = self.session.undo()
            if result is None:
                _notify.info("Micro-tasks: nothing to undo")
                return None
            self._after_answer(result, "undo")
        finally:
            self._end_wait_when_drawn()
        return result

    def _wait_for_next(self) -> None:
        if not self._waiting:
            self._waiting = True
            self.session.waiting_started()

    def _end_wait_when_drawn(self) -> None:
        """End the wait once the next task's layers hold its data.

        The paint that follows (tens of ms: benchmarks/bench_gui.py) counts as
        work; ending on a later event instead would count a person's pause
        after an answer as waiting whenever no event arrives in between.
        """
        if self._waiting:
            self._waiting = False
            if self.session is not None:
                self.session.waiting_ended()

    def _after_answer(self, result, answer: str) -> None:
        edit_id = getattr(result, "edit_id", None)
        self._show(self.current_task)
        text = f"Last: {answer}"
        if edit_id is not None:
            text += f" → edit #{edit_id}"
        note = getattr(result, "note", "")
        if note:
            text += f" · {note}"
        self.status_label.setText(text)


    # -- edits made elsewhere ------------------------------------------------------
    def _edit_listener(self, result) -> None:
        """Proofreader listener (editing thread): hand the edit to the GUI thread."""
        if self.session is None:
            return
        try:
            self.edited.emit(result)
        except RuntimeError:  # the panel was deleted; the shared Proofreader lives on
            pass

    def _on_edited(self, _result) -> None:
        """After any edit: if it made the task on screen stale, the session skips it (note) and we show the next."""
        session = self.session
        if session is None or self.task_layers is None:
            return
        shown = getattr(self.task_layers.view, "task", None)
        try:
            task = session.next_task() if session.current is not None else session.current
        except Exception as exc:  # never a traceback from a listener
            _notify.error(error_line("Micro-tasks: checking the task on screen", exc))
            return
        if task is not None and shown is not None and task.id == shown.id and task.segments == shown.segments:
            self._show_state()
            return
        if task is not None or shown is not None:
            self._guarded("showing the next task", lambda: self._show(task))

    # -- input activity ------------------------------------------------------------
    def _main_window(self):
        window = getattr(getattr(self.viewer, "window", None), "_qt_window", None)
        return window if window is not None else self.window()

    def _on_input(self) -> None:
        session = self.session
        if session is not None:
            session.touch()

    # -- state of the controls ------------------------------------------------------
    def _update_controls(self) -> None:
        ready = self.session is not None and not self._busy
        for button in self.buttons.values():
            button.setEnabled(ready)
        self.user_edit.setEnabled(self.session is None and not self._busy)

    # -- viewer events -----------------------------------------------------------
    def _on_removed(self, event) -> None:
        if self.task_layers is not None and self.session is not None:
            layer = event.value
            if self.task_layers.owns(layer):
                return  # drawn again on the next task
            root = (layer_meta(layer) or {}).get("project")
            if root and self.project is not None and root == root_of(self.project):
                if self.viewer_project_root() != root:  # the project's last layer went
                    self.unbind()

    def closeEvent(self, event) -> None:  # noqa: N802 (Qt name)
        self.close_panel()
        super().closeEvent(event)

    def close_panel(self) -> None:
        """Stop listening to the viewer, remove the input filter, close the session."""
        self._watcher.remove()
        self._disconnect_layer_events()
        self.unbind()
        self._release_idle_keys()


def _open_session(workspace, project, options: dict):
    """Worker: open the task session on the workspace's Proofreader (finds and ranks the candidates)."""
    from napari_connectome.tasks import TaskSession

    kwargs = {k: v for k, v in options.items() if v is not None}
    kwargs["proofreader"] = workspace.proofreader(user=options.get("user"))
    clock, idle = options.get("clock"), options.get("idle_after_s")
    recorder_options = {k: v for k, v in (("clock", clock), ("idle_after_s", idle)) if v is not None}
    kwargs["recorder"] = lambda *, vi=None: workspace.recorder(vi=vi, **recorder_options)
    if "groundtruth" in (getattr(project, "inputs", None) or {}):
        kwargs["gt"] = "project"  # live VI against the project's own ground truth
    return TaskSession.open(project, **kwargs)
