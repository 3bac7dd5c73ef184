"""One workspace per project in a viewer: its one Proofreader, its one effort recorder, the panels on it.

A second Proofreader on the same edit log would not see the first one's
edits, and a second effort recorder would time every edit twice. So the
Proofread and Micro-tasks panels never open their own: each *joins* the
workspace of the project it works on, takes the Proofreader and recorder
from it, and *leaves* when it lets go; the last to leave closes both. The
panels do not know each other: what one does reaches the others through
the engine's events (every member listens to the Proofreader's edits) and
the workspace's own signals (:attr:`Workspace.members_changed`,
:data:`rows_written`).

Opening the Proofreader replays the edit log and may build the graph
(seconds), so :meth:`Workspace.proofreader` runs in the panels' worker
threads and opens it once: a panel that asks while another is opening it
waits for that one instead of opening a second.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from napari_connectome.events import Connection, Signal
from napari_connectome.tasks.colours import SegmentColours

logger = logging.getLogger(__name__)

#: Emitted with the project folder after an effort row is written (any thread):
#: the Effort panels showing that project refresh.
rows_written = Signal("effort rows written")

_open: dict[tuple[int, str], Workspace] = {}
_registry_lock = threading.Lock()


class Workspace:
    """The open project ``root`` in one viewer, shared by the panels that joined it.

    Use :meth:`join` and :meth:`leave`; never construct one directly.

    Attributes
    ----------
    project
        The project (as the first member opened it).
    root
        Its absolute folder.
    members_changed
        Emitted (no arguments, GUI thread) when a panel joins or leaves.
    colours
        Segment colours that follow the Proofreader's edits, the same in every
        panel (a body keeps its colour through merges, splits and undos).
    """

    def __init__(self, viewer: Any, project: Any) -> None:
        self._key = (id(viewer), root_of(project))
        self.project = project
        self.root = root_of(project)
        self.members_changed = Signal("workspace members changed")
        self._members: list[Any] = []
        self._lock = threading.Lock()  # opening the Proofreader or the recorder: once
        self._proofreader = None
        self._recorder = None
        self._rows: Connection | None = None
        self._notes_taken = False
        self._closed = False
        self.colours = SegmentColours()
        self._colours_connection: Connection | None = None

    # -- membership ----------------------------------------------------------------
    @classmethod
    def join(cls, viewer: Any, project: Any, member: Any) -> Workspace:
        """``member`` works on ``project`` in ``viewer`` from now on; returns the (maybe new) workspace."""
        key = (id(unwrap(viewer)), root_of(project))
        with _registry_lock:
            workspace = _open.get(key)
            if workspace is None:
                workspace = _open[key] = cls(unwrap(viewer), project)
            if member not in workspace._members:
                workspace._members.append(member)
        workspace.members_changed.emit()
        return workspace

    @classmethod
    def find(cls, viewer: Any, root: str | os.PathLike) -> Workspace | None:
        """The workspace of the project at ``root`` in ``viewer``, or None when no panel works on it."""
        with _registry_lock:
            return _open.get((id(unwrap(viewer)), os.path.abspath(os.fspath(root))))

    def leave(self, member: Any) -> None:
        """``member`` stops working on the project; the last one out closes the recorder and Proofreader."""
        with _registry_lock:
            if member in self._members:
                self._members.remove(member)
            last = not self._members
            if last and _open.get(self._key) is self:
                del _open[self._key]
        if last:
            self._close()
        else:
            self.members_changed.emit()

    @property
    def members(self) -> list[Any]:
        """The panels working on the project, in the order they joined."""
        with _registry_lock:
            return list(self._members)

    def others(self, member: Any) -> list[Any]:
        """The members other than ``member``."""
        return [m for m in self.members if m is not member]

    # -- the Proofreader -------------------------------------------------------------
    @property
    def open_proofreader(self):
        """The Proofreader if it is open already, else None (never opens one)."""
        return self._proofreader

    def proofreader(self, *, user: str | None = None):
        """The project's Proofreader, opened on first use (worker threads; may take seconds).

        Raises whatever :meth:`Proofreader.open <napari_connectome.proofread.Proofreader.open>`
        raises; the next call tries again.
        """
        from napari_connectome.proofread import Proofreader

        with self._lock:
            if self._closed:  # every member left while this one was on its way
                raise RuntimeError(f"{self.root}: the workspace was closed")
            if self._proofreader is None:
                self._proofreader = Proofreader.open(self.project, user=user)
                self._follow_colours(self._proofreader)
            return self._proofreader

    def _follow_colours(self, proofreader) -> None:
        """Hand colours on after every edit; connected first, so every panel draws the new ones."""
        if self._colours_connection is not None:
            self._colours_connection.disconnect()
        colours = self.colours

        def follow(result) -> None:
            try:
                colours.follow(proofreader, result)
            except Exception:  # colours must never break an edit
                logger.debug("colours did not follow an edit", exc_info=True)

        self._colours_connection = proofreader.add_listener(follow)

    def take_notes(self) -> list[str]:
        """The Proofreader's notes (graph rebuilt, cache refused …) for the first member that asks; then []."""
        with self._lock:
            if self._notes_taken or self._proofreader is None:
                return []
            self._notes_taken = True
            return list(getattr(self._proofreader, "notes", []) or [])

    def replace_proofreader(self, proofreader) -> None:
        """A re-based Proofreader (new agglomeration threshold) replaces the open one, which is closed.

        Raises
        ------
        RuntimeError
            More than one panel works on the project: the others hold the old one.
        """
        if len(self.members) > 1:
            raise RuntimeError("the Proofreader cannot be replaced while other panels use it")
        with self._lock:
            old, self._proofreader = self._proofreader, proofreader
            recorder, self._recorder = self._recorder, None
            self._follow_colours(proofreader)
        self._close_recorder(recorder)
        if old is not None and old is not proofreader:
            _close_quietly(old, "the replaced proofreader")

    # -- the effort recorder ------------------------------------------------------------
    def recorder(self, *, vi: Callable[[], dict | None] | None = None, clock: Callable[[], float] = time.time,
                 idle_after_s: float | None = None):
        """The recorder timing the Proofreader's edits in the effort log, opened on first use.

        The first caller's ``vi`` (the VI now, for the log's start) and clock
        open it; later callers share it. Needs the Proofreader open.

        Raises
        ------
        InputError
            The effort log cannot be opened for writing (the caller says so; edits go on untimed).
        """
        from napari_connectome.effort import EffortRecorder

        with self._lock:
            if self._proofreader is None:
                raise RuntimeError("open the Proofreader before its effort recorder")
            if self._recorder is None or self._recorder.closed:
                options = {} if idle_after_s is None else {"idle_after_s": idle_after_s}
                self._recorder = EffortRecorder.open(self.project, self._proofreader, vi=vi, clock=clock, **options)
                root = self.root
                self._rows = self._recorder.log.add_listener(lambda _row: rows_written.emit(root))
            return self._recorder

    # -- closing ---------------------------------------------------------------------------
    def _close_recorder(self, recorder) -> None:
        if self._rows is not None:
            self._rows.disconnect()
            self._rows = None
        if recorder is not None:
            _close_quietly(recorder, "the effort recorder")

    def _close(self) -> None:
        with self._lock:
            self._closed = True
            recorder, self._recorder = self._recorder, None
            proofreader, self._proofreader = self._proofreader, None
        self._close_recorder(recorder)
        if self._colours_connection is not None:
            self._colours_connection.disconnect()
            self._colours_connection = None
        if proofreader is not None:
            _close_quietly(proofreader, "the proofreader")

    def __repr__(self) -> str:
        return f"Workspace({self.root!r}, {len(self.members)} member(s))"


def root_of(project: Any) -> str:
    """The absolute folder of ``project`` (how panels compare projects)."""
    return os.path.abspath(os.fspath(project.root))


def unwrap(obj: Any) -> Any:
    """The object behind napari's PublicOnlyProxy (plugins get proxies of viewer objects)."""
    return getattr(obj, "__wrapped__", obj)


def _close_quietly(thing: Any, what: str) -> None:
    try:
        thing.close()
    except Exception:  # closing must never stop a panel from letting go
        logger.debug("closing %s failed", what, exc_info=True)
