"""Timing edits made outside tasks (the Proofread panel's merges, splits, undos).

The recorder listens to a :class:`~napari_connectome.proofread.Proofreader`:
every committed edit whose ``task_id`` is None becomes one ``manual`` row of
the effort log, timed from the previous recorded event (the last effort row
of this log, task answers included, or the recorder's start) to the edit,
with idle gaps excluded by an :class:`~napari_connectome.effort.clock.ActivityClock`
that restarts after each row. Edits with a ``task_id`` are answers: the task
session logs those itself, so the recorder ignores them (but restarts its
clock when their effort row is written).

A manual edit made while a task is on screen is timed from the last row, so
that stretch is counted by the task and by the edit; the micro-task panel and
the Proofread panel are rarely used at the same moment, so this is accepted
rather than splitting the time by guesswork.

When given a ``vi`` callable (the task session's live VI, about a
millisecond), each manual row also carries the VI after its edit.

Edits made with no task session open are timed too: the Proofread panel
opens its own recorder with :meth:`EffortRecorder.open` (which opens the
effort log and closes it again) and hands it to a task session opened
later (``TaskSession.open(..., recorder=...)``), so one recorder times the
manual edits whichever panels are open, and none is timed twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from napari_connectome.effort.clock import DEFAULT_IDLE_S, ActivityClock, Clock, check_idle_after
from napari_connectome.effort.log import MANUAL_ANSWERS, EffortLog
from napari_connectome.errors import ConnectomeError


class EffortRecorder:
    """Times edits made outside tasks and logs them as ``manual`` rows.

    Parameters
    ----------
    log
        The open, writable effort log.
    proofreader
        The Proofreader whose edits are timed (``add_listener`` is used).
    clock
        Seconds since the epoch (``time.time``; tests pass a fake).
    idle_after_s
        Gaps between inputs longer than this are idle.
    vi
        Called after each manual edit for the live VI (a dict with
        ``vi_split`` and ``vi_merge``, or None without a ground truth); None:
        no VI on manual rows. Settable later through the ``vi`` attribute.

    Attributes
    ----------
    clock
        The running :class:`ActivityClock`; the GUI calls :meth:`touch` on input.
    notes
        Effort rows that could not be written (the edit itself stands).
    owns_log
        Whether :meth:`close` closes the log (True when :meth:`open` opened it).
    """

    def __init__(self, log: EffortLog, proofreader, *, clock: Clock = time.time,
                 idle_after_s: float = DEFAULT_IDLE_S, vi: Callable[[], dict | None] | None = None) -> None:
        self.log = log
        self.vi = vi
        self.proofreader = proofreader
        self.clock = ActivityClock(clock=clock, idle_after_s=idle_after_s)
        self.notes: list[str] = []
        self.owns_log = False
        self._closed = False
        self._own_row = False
        self.clock.start()
        self._connections = [proofreader.add_listener(self._on_edit), log.add_listener(self._on_row)]

    @classmethod
    def open(cls, project, proofreader, *, clock: Clock = time.time, idle_after_s: float = DEFAULT_IDLE_S,
             vi: Callable[[], dict | None] | None = None) -> EffortRecorder:
        """Open the project's effort log and time the proofreader's manual edits in it, with no task session.

        The log gets the proofreader's user and session (so its rows tie to
        the edits), and the VI now as the session's start when ``vi`` is
        given; :meth:`close` closes the log.

        Raises
        ------
        InputError
            A bad idle threshold; the effort log cannot be opened for writing.
        """
        check_idle_after(idle_after_s)
        start = vi() if vi is not None else None
        log = EffortLog.open(project, user=proofreader.user, session=proofreader.session, clock=clock,
                             vi_start=start)
        try:
            recorder = cls(log, proofreader, clock=clock, idle_after_s=idle_after_s, vi=vi)
        except BaseException:
            log.close()
            raise
        recorder.owns_log = True
        return recorder

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def touch(self) -> None:
        """A user input (key, click, mouse move, wheel)."""
        if not self._closed:
            self.clock.touch()

    def waiting_started(self) -> None:
        """The person waits for the suite: not active time (see :meth:`ActivityClock.waiting_started`)."""
        if not self._closed:
            self.clock.waiting_started()

    def waiting_ended(self) -> None:
        """The suite is ready again (see :meth:`ActivityClock.waiting_ended`)."""
        if not self._closed:
            self.clock.waiting_ended()

    def _on_edit(self, result) -> None:
        if self._closed or getattr(result, "task_id", None) is not None:
            return
        if result.type not in MANUAL_ANSWERS:
            return
        shown = self.clock.started_at
        active, idle = self.clock.stop()
        answered = self.clock.stopped_at
        self._own_row = True
        try:
            vi = self._vi_now(result)
            self.log.record(
                task_id=None, task_type="manual", answer=result.type, shown_at=shown,
                answered_at=answered, active_s=active, idle_s=idle, waiting_s=self.clock.waiting_s,
                edit_id=result.operation_id,
                segments=list(result.after_segments), vi_split=vi[0], vi_merge=vi[1],
            )
        except ConnectomeError as exc:
            # The edit is committed already; losing its timing must not look
            # like a failed edit to the proofreader.
            self.notes.append(f"edit {result.operation_id} was not timed: {exc}")
        finally:
            self._own_row = False
            self.clock.start(at=answered)

    def _vi_now(self, result) -> tuple[float | None, float | None]:
        """``(vi_split, vi_merge)`` after the edit, or Nones (no ``vi``, or it failed: noted, never raised)."""
        if self.vi is None:
            return None, None
        try:
            vi = self.vi()
        except Exception as exc:  # the edit stands and its time is still worth recording
            self.notes.append(f"edit {result.operation_id}: no VI recorded ({type(exc).__name__}: {exc})")
            return None, None
        return (None, None) if vi is None else (vi["vi_split"], vi["vi_merge"])

    def _on_row(self, row: dict) -> None:
        # Any other row (a task answer) ends the stretch a manual edit is timed from.
        if self._closed or self._own_row:
            return
        self.clock.start(at=max(float(row["answered_at"]), self.clock.started_at))

    def close(self) -> None:
        """Stop timing and stop listening to the proofreader and the log; close a log :meth:`open` opened.

        Idempotent.
        """
        if self._closed:
            return
        self._closed = True
        for connection in self._connections:
            connection.disconnect()
        if self.clock.running:
            self.clock.stop()
        if self.owns_log:
            self.log.close()
