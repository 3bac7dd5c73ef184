"""What the dock panels that work on "the project open in the viewer" share.

The Proofread, Micro-tasks and Effort panels each find the project from the
layers the reader added (their metadata names the project folder), open what
they need in a worker thread, wait for it in scripts and tests, and turn any
failure into one notification line. The helpers here do those steps once;
:class:`ProjectPanel` is the mixin for the panels that *bind* to a project
(open it once, follow the layers, let go when they go).
"""

from __future__ import annotations

import getpass
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QApplication, QFormLayout, QGroupBox, QLabel, QLineEdit, QWidget

from napari_connectome_plugins import _notify
from napari_connectome_plugins._layers import layer_meta
from napari_connectome_plugins._workspace import Workspace, root_of, unwrap

logger = logging.getLogger(__name__)

NO_PROJECT = "No project. Open one (File → Open Folder, or the Connectome panel)."


def same(a: Any, b: Any) -> bool:
    """Identity that sees through napari's proxies."""
    return a is not None and b is not None and unwrap(a) is unwrap(b)


def login() -> str:
    """The login name, or ``"unknown"`` where there is none."""
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"


def viewer_project_root(viewer: Any) -> str | None:
    """The folder of the most recently added project layer in ``viewer``, or None."""
    for layer in reversed(list(viewer.layers)):
        root = (layer_meta(layer) or {}).get("project")
        if root:
            return str(root)
    return None


def error_line(what: str, exc: BaseException) -> str:
    """``exc`` as one line: an engine error's own message, anything else ``what failed: Type: message``."""
    from napari_connectome.errors import ConnectomeError, from_os_error

    if isinstance(exc, ConnectomeError):
        return str(exc)
    if isinstance(exc, OSError):  # read-only, full, permission: the file and the problem, as the CLI says it
        return str(from_os_error(exc, action=f"{what} failed"))
    return _notify.one_line(f"{what} failed: {type(exc).__name__}: {exc}")


def guarded(title: str, what: str, call: Callable[[], Any]) -> Any:
    """Run ``call``; an error becomes one notification line (``title: what failed …``) and None."""
    try:
        return call()
    except Exception as exc:  # engine errors are one line already; ours become one
        logger.debug("%s: %s failed", title, what, exc_info=True)
        _notify.error(error_line(f"{title}: {what}", exc))
        return None


def process_events_while(busy: Callable[[], bool], timeout_s: float) -> None:
    """Process Qt events until ``busy()`` is false or ``timeout_s`` has passed (scripts and tests)."""
    end = time.monotonic() + timeout_s
    while busy() and time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.01)


#: Threads the global QThreadPool may run at once (see _room_for_qt_in_the_thread_pool).
POOL_THREADS = 16


def _room_for_qt_in_the_thread_pool() -> None:
    """Let Qt's own pool tasks run while our workers occupy pool threads.

    napari workers run on ``QThreadPool.globalInstance()``, whose size is the
    number of cores (2 here). Qt converts images for painting in tasks on the
    same pool and waits for them on the GUI thread *holding the GIL*. With two
    of our workers in the pool (one waiting for the other, which waits for
    the GIL) the paint never ends: the window froze when two panels opened one
    project at once on a 2-core machine. More pool threads than workers keep
    a thread free for Qt's tasks.
    """
    from qtpy.QtCore import QThreadPool

    pool = QThreadPool.globalInstance()
    if pool.maxThreadCount() < POOL_THREADS:
        pool.setMaxThreadCount(POOL_THREADS)


def start_worker(
    function: Callable[..., Any],
    *args: Any,
    returned: Callable[[Any], None],
    errored: Callable[[Exception], None],
    desc: str | None = None,
) -> Any:
    """Run ``function(*args)`` in a napari worker thread; its result or error comes back on the GUI thread.

    Parameters
    ----------
    function, args
        The work.
    returned, errored
        Called with the result, or with the exception (never a traceback dialog).
    desc
        Shown in napari's activity dock while it runs; None shows nothing.

    Returns
    -------
    The started worker (keep a reference: an unreferenced worker may be collected).
    """
    from napari.qt.threading import create_worker

    _room_for_qt_in_the_thread_pool()
    progress = {"_progress": {"desc": desc}} if desc is not None else {}
    worker = create_worker(function, *args, _ignore_errors=True, **progress)
    worker.returned.connect(returned)
    worker.errored.connect(errored)
    worker.start()
    return worker


class NameEdit(QLineEdit):
    """The user-name field: Enter and Esc end here, never reach the viewer's keys."""

    def keyPressEvent(self, event) -> None:  # noqa: N802 (Qt name)
        super().keyPressEvent(event)
        if event.key() in (Qt.Key_Return, Qt.Key_Enter, Qt.Key_Escape):
            # QLineEdit ignores these so that dialogs see them; here they would
            # travel to napari's keymap (confirm a split, answer a task).
            event.accept()


def project_box(parent: QWidget, empty_text: str) -> tuple[QGroupBox, QFormLayout, QLabel]:
    """The "Project" group every project panel starts with: ``(box, its form, the project label)``."""
    box = QGroupBox("Project", parent)
    form = QFormLayout(box)
    label = QLabel(empty_text, box)
    label.setWordWrap(True)
    form.addRow("Project:", label)
    return box, form, label


class ProjectPanel:
    """Mixin for a dock panel that binds to the project open in the viewer.

    The panel opens the project once (in a worker thread), binds again when a
    reader adds a project's layers, and shows failures as one line. Mixed in
    before ``QWidget``; the panel provides the attributes below and these
    methods (the mixin calls them; it has no fallback, because each panel's
    logic differs):

    ``_open_project(root, project) -> bool``
        Start working on ``project`` (opened at ``root``, not bound yet, panel idle).
    ``_update_controls()``
        Enable or disable the panel's controls for its state.
    ``bind_to_viewer_project() -> bool``
        Bind to the project the viewer's layers come from.
    ``run_action(action)``
        Do what a key of :attr:`KEYS` names.
    ``_key_layers() -> list``
        The panel's own layers, where its keys are bound too.
    ``_on_removed(event)``
        A layer left the viewer (let go of the project when it was ours).

    Attributes
    ----------
    TITLE
        The panel's name, the prefix of its messages ("Proofread").
    OPENING
        What it is busy with while opening ("opening the project").
    viewer, project, project_label, user_edit
        The viewer, the bound project (None when unbound), and the widgets.
    workspace
        The :class:`~napari_connectome_plugins._workspace.Workspace` joined
        while opening or bound (None otherwise).
    """

    TITLE = "Panel"
    OPENING = "opening the project"
    # (napari key name, action for run_action, text); KEY_PREFIX names the callbacks.
    KEYS: tuple[tuple[str, str, str], ...] = ()
    KEY_PREFIX = "panel"

    viewer: Any
    project: Any
    workspace: Any = None
    _members_connection: Any = None
    project_label: QLabel
    user_edit: QLineEdit
    _busy: str
    _opening: str | None
    _worker: Any
    _viewer_keys: dict[str, Any]

    # -- binding ----------------------------------------------------------------
    def viewer_project_root(self) -> str | None:
        """The folder of the most recently added project layer in the viewer, or None."""
        return viewer_project_root(self.viewer)

    def open_root(self, root: str | os.PathLike) -> bool:
        """Open the project at ``root`` and work on it (in a worker thread); True if it is (being) opened."""
        from napari_connectome.errors import ConnectomeError
        from napari_connectome.project import open_project

        root = os.path.abspath(os.fspath(root))
        if self._opening == root or (self.project is not None and root_of(self.project) == root):
            return True  # already (being) opened, e.g. by the layers the reader just added
        if self._busy:
            _notify.warning(f"{self.TITLE}: wait, still {self._busy}")
            return False
        try:
            project = open_project(root)
        except ConnectomeError as exc:
            _notify.error(exc)
            return False
        return self._open_project(root, project)

    def _open_in_worker(
        self, root: str, label: str, function: Callable[..., Any], *args: Any,
        returned: Callable[[Any], None], desc: str,
    ) -> None:
        """Show ``label``, mark the panel busy opening ``root`` and run ``function(*args)`` in a worker."""
        self.project_label.setText(label)
        self._busy = self.OPENING
        self._opening = root
        self._update_controls()
        self._worker = start_worker(function, *args, returned=returned, errored=self._on_open_failed, desc=desc)

    def _work_done(self) -> None:
        """The worker has finished (either way): the panel is idle again."""
        self._busy = ""
        self._opening = None
        self._worker = None

    def _on_open_failed(self, exc: Exception) -> None:
        self._work_done()
        self._leave_workspace()
        _notify.error(error_line(f"{self.TITLE}: {self.OPENING}", exc))
        self.project_label.setText(_notify.one_line(exc))
        self._update_controls()

    # -- the workspace ---------------------------------------------------------------
    def _join_workspace(self, project: Any) -> Any:
        """Join the workspace of ``project`` in this viewer (its one Proofreader and recorder)."""
        self._leave_workspace()
        self.workspace = Workspace.join(self.viewer, project, self)
        self._members_connection = self.workspace.members_changed.connect(self._update_controls)
        return self.workspace

    def _leave_workspace(self) -> None:
        """Leave the workspace (the last member out closes the Proofreader and recorder)."""
        workspace = getattr(self, "workspace", None)
        self.workspace = None
        connection = getattr(self, "_members_connection", None)
        self._members_connection = None
        if connection is not None:
            connection.disconnect()
        if workspace is not None:
            workspace.leave(self)

    def wait(self, timeout_s: float = 120.0) -> bool:
        """Process events until background work is done (scripts and tests)."""
        process_events_while(lambda: bool(self._busy), timeout_s)
        return not self._busy

    def _guarded(self, what: str, call: Callable[[], Any]) -> Any:
        """Run ``call``; an error becomes one notification line and None."""
        return guarded(self.TITLE, what, call)

    # -- the person ---------------------------------------------------------------
    def _add_user_row(self, box: QWidget, form: QFormLayout, tip: str) -> None:
        """Add the user-name field (default: the login name) to the project form."""
        self.user_edit = NameEdit(box)
        self.user_edit.setText(login())
        self.user_edit.setToolTip(tip)
        form.addRow("User:", self.user_edit)

    def user_name(self) -> str:
        """The name recorded with the panel's work (the field; default: the login name)."""
        return self.user_edit.text().strip() or login()

    # -- keys -------------------------------------------------------------------
    def _key_callback(self, action: str, *, idle: bool = False) -> Callable[[Any], None]:
        def callback(_owner) -> None:
            self.run_action(action)

        callback.__name__ = f"{self.KEY_PREFIX}_{'idle_' if idle else ''}{action}"
        callback.__doc__ = f"{self.TITLE}: {action}" + (" (no project yet: says what to open)" if idle else "")
        return callback

    def _bind_idle_keys(self) -> None:
        """Bind the panel's keys on the viewer before any project is open.

        A key pressed then runs :meth:`run_action`, which says what is missing
        ("open a project first") instead of doing nothing. Only keys nobody
        holds are taken: napari's own and another panel's stay as they are.
        """
        self._idle_keys = {}
        for key, action, _ in self.KEYS:
            callback = self._key_callback(action, idle=True)
            try:
                self.viewer.bind_key(key, callback)
            except ValueError:  # already bound (napari, another panel): leave it
                continue
            self._idle_keys[key] = callback

    def _release_idle_keys(self) -> None:
        """Unbind the keys :meth:`_bind_idle_keys` took, where they are still ours (closing the panel)."""
        keymap = getattr(self.viewer, "keymap", {})
        for key, callback in getattr(self, "_idle_keys", {}).items():
            if any(bound is callback for bound in keymap.values()):
                try:
                    self.viewer.bind_key(key, None)
                except Exception:  # the viewer is going away
                    logger.debug("releasing viewer key %s failed", key, exc_info=True)
        self._idle_keys = {}

    def _bind_keys(self) -> None:
        """Bind the keys on the panel's layers (layer keymaps come first) and on the viewer (the fallback)."""
        for layer in self._key_layers():
            for key, action, _ in self.KEYS:
                layer.bind_key(key, self._key_callback(action), overwrite=True)
        for key, action, _ in self.KEYS:
            # Bound once: a second binding would record our own callback as the one to restore.
            if key not in self._viewer_keys:
                self._viewer_keys[key] = self.viewer.bind_key(key, self._key_callback(action), overwrite=True)

    def _unbind_keys(self) -> None:
        """Give the viewer back the keys it had before the panel bound them."""
        for key, previous in self._viewer_keys.items():
            try:
                self.viewer.bind_key(key, None)
                if previous is not None:
                    self.viewer.bind_key(key, previous, overwrite=True)
            except Exception:  # the viewer is going away
                logger.debug("restoring viewer key %s failed", key, exc_info=True)
        self._viewer_keys = {}

    # -- viewer events --------------------------------------------------------------
    def _connect_layer_events(self) -> None:
        layers = self.viewer.layers
        layers.events.inserted.connect(self._on_inserted)
        layers.events.removed.connect(self._on_removed)

    def _disconnect_layer_events(self) -> None:
        for emitter, slot in (
            (self.viewer.layers.events.inserted, self._on_inserted),
            (self.viewer.layers.events.removed, self._on_removed),
        ):
            try:
                emitter.disconnect(slot)
            except Exception:  # already gone with the viewer
                pass

    def _on_inserted(self, event) -> None:
        if self.project is None and not self._busy and layer_meta(event.value) is not None:
            # Layers arrive one by one; bind once the reader has added them all.
            QTimer.singleShot(0, self.bind_to_viewer_project)

