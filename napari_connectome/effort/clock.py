"""Active time of a span (task shown → answered), with idle gaps taken out.

The rule
--------
A span is cut at every user input (key, click, mouse move, wheel); its start
and its stop count as inputs too. Each gap between two consecutive inputs is
counted **wholly** as idle when it is longer than ``idle_after_s``, and
wholly as active otherwise. A long gap is not split into "the first minute
active, the rest idle": we cannot know when attention left, and crediting
the first minute of every coffee break as work inflates the figures
(webKnossos issue #7543 counts such time as work). So ``active + idle`` is
always exactly ``stop − start``.

A clock that steps backwards (NTP adjusting ``time.time``) gives gaps of
zero: inputs are ordered by the latest time seen, so no gap is negative.

Waiting
-------
Between an answer's key press and the next task drawn on screen, the
proofreader waits for the suite (the edit, the next view): that is the
tool's time, not work, and not idleness either. The caller marks it with
:meth:`ActivityClock.waiting_started` / :meth:`ActivityClock.waiting_ended`
(or ``with clock.waiting():``); every gap inside it is counted as
*waiting*, so ``active + idle + waiting == stop − start``. Waiting is a
state of the person, not of one span: it goes on across :meth:`stop` and
:meth:`start`, so the press-to-stop part lands on the answered task's span
and the start-to-drawn part on the next one's.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from napari_connectome.config import SETTINGS
from napari_connectome.errors import InputError

#: Seconds since the epoch; ``time.time`` by default, tests inject a fake one.
Clock = Callable[[], float]

#: Seconds without input after which a gap is idle: 60, unless the
#: environment variable ``NAPARI_CONNECTOME_IDLE_S`` says otherwise.
DEFAULT_IDLE_S: float = SETTINGS.idle_s


def check_idle_after(idle_after_s, *, source: str = "idle_after_s") -> float:
    """Validate an idle threshold: a finite number of seconds > 0."""
    try:
        value = float(idle_after_s)
    except (TypeError, ValueError):
        raise InputError(source, f"{idle_after_s!r} is not a number of seconds") from None
    if not (value > 0 and math.isfinite(value)):
        raise InputError(source, f"must be a finite number of seconds > 0, got {idle_after_s!r}")
    return value


class ActivityClock:
    """Active time of one span (task display → answer), idle gaps excluded.

    Parameters
    ----------
    clock
        Seconds since the epoch (``time.time``; tests pass a fake).
    idle_after_s
        A gap between inputs longer than this is idle (see the module's rule).

    Attributes
    ----------
    running
        True between :meth:`start` and :meth:`stop`.
    waiting_s
        Seconds of the span (running, or the last stopped) spent waiting
        for the suite (see the module notes).
    is_waiting
        True between :meth:`waiting_started` and :meth:`waiting_ended`.

    Raises
    ------
    InputError
        ``idle_after_s`` is not a finite number > 0.

    Notes
    -----
    Thread-safe: the GUI thread touches while an editing thread may stop.
    """

    def __init__(self, *, clock: Clock = time.time, idle_after_s: float = DEFAULT_IDLE_S) -> None:
        self.idle_after_s = check_idle_after(idle_after_s)
        self._clock = clock
        self._lock = threading.Lock()
        self.running = False
        self.started_at = 0.0
        self.stopped_at = 0.0
        self._last = 0.0
        self._active = 0.0
        self._idle = 0.0
        self.waiting_s = 0.0
        self.is_waiting = False

    def now(self) -> float:
        """The clock's current time (seconds since the epoch)."""
        return float(self._clock())

    def start(self, *, at: float | None = None) -> float:
        """Begin a span now, or at ``at`` (dropping any running one); returns its start time.

        ``at`` lets a span begin exactly where the previous one ended (the
        recorder restarts at the answered time of the last row).
        """
        t = self.now() if at is None else float(at)
        with self._lock:
            self.running = True
            self.started_at = self._last = t
            self._active = self._idle = self.waiting_s = 0.0
        return t

    def _cut(self, t: float) -> None:
        # Caller holds the lock. Never a negative gap (see the module notes).
        gap = max(0.0, t - self._last)
        if self.is_waiting:
            self.waiting_s += gap
        elif gap > self.idle_after_s:
            self._idle += gap
        else:
            self._active += gap
        self._last = max(self._last, t)

    def touch(self) -> None:
        """Record a user input now (ignored while no span runs)."""
        t = self.now()
        with self._lock:
            if self.running:
                self._cut(t)

    def waiting_started(self) -> None:
        """The person now waits for the suite (pressed an answer, the next task is not drawn yet).

        The time before is classified as usual (the press is an input); from
        now until :meth:`waiting_ended` every gap counts as waiting, also
        across :meth:`stop` and :meth:`start`. Calling it while waiting
        changes nothing.
        """
        t = self.now()
        with self._lock:
            if self.is_waiting:
                return
            if self.running:
                self._cut(t)
            self.is_waiting = True

    def waiting_ended(self) -> None:
        """The suite is ready again (the next task is drawn); gaps are active or idle again.

        Calling it while not waiting changes nothing.
        """
        t = self.now()
        with self._lock:
            if not self.is_waiting:
                return
            if self.running:
                self._cut(t)
            self.is_waiting = False

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """``with clock.waiting():`` — the block's time is waiting (see :meth:`waiting_started`)."""
        self.waiting_started()
        try:
            yield
        finally:
            self.waiting_ended()

    def peek(self) -> tuple[float, float]:
        """``(active_s, idle_s)`` so far, as if the span stopped now (it goes on)."""
        t = self.now()
        with self._lock:
            if not self.running:
                return self._active, self._idle
            gap = max(0.0, t - self._last)
            if self.is_waiting:
                return self._active, self._idle
            if gap > self.idle_after_s:
                return self._active, self._idle + gap
            return self._active + gap, self._idle

    def stop(self) -> tuple[float, float]:
        """End the span now; returns ``(active_s, idle_s)``.

        With :attr:`waiting_s` they add up to stop − start. Waiting, if on,
        goes on into the next span.

        Raises
        ------
        InputError
            No span is running.
        """
        t = self.now()
        with self._lock:
            if not self.running:
                raise InputError("effort clock", "stop() without start(): no span is running")
            self._cut(t)
            self.running = False
            self.stopped_at = self._last
            return self._active, self._idle
