"""A tiny Qt-free signal: callbacks that can be connected and disconnected again.

The engine tells its listeners (panels, the effort recorder, the skeleton
store) about edits and effort rows. A panel closed by the user must stop
listening, or every later edit still runs its callback on dead widgets; so
each connection can be undone. psygnal would do, but its emit wraps a
listener's exception in its own error type, and the engine's callers rely on
the listener's own exception reaching them unchanged (an effort row that
could not be written is an ``InputError`` the caller shows in one line).

::

    edited = Signal("edited")
    connection = edited.connect(print)
    edited.emit(result)          # print(result)
    connection.disconnect()      # or edited.disconnect(print)
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Connection:
    """One callback's connection to a :class:`Signal`; :meth:`disconnect` ends it.

    Calling the connection disconnects too, so ``add_listener``'s return
    value can be kept as a plain "stop listening" callable.
    """

    def __init__(self, signal: Signal, callback: Callable) -> None:
        self._signal = signal
        self.callback = callback

    @property
    def connected(self) -> bool:
        """True while the callback is still called by the signal."""
        return self._signal._has(self)

    def disconnect(self) -> None:
        """Stop calling the callback (idempotent)."""
        self._signal._remove(self)

    __call__ = disconnect


class Signal:
    """Callbacks called in connection order by :meth:`emit`.

    Parameters
    ----------
    name
        What the signal announces (for messages and ``repr``).

    Notes
    -----
    Thread-safe: :meth:`emit` calls the callbacks connected when it began,
    so a callback may disconnect itself (or another) while being called.
    An exception raised by a callback propagates unchanged and the
    callbacks after it are not called: the edit stands, and the caller
    learns what failed.
    """

    def __init__(self, name: str = "signal") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._connections: list[Connection] = []

    def __repr__(self) -> str:
        return f"Signal({self.name!r}, {len(self)} connected)"

    def __len__(self) -> int:
        with self._lock:
            return len(self._connections)

    def connect(self, callback: Callable) -> Connection:
        """Call ``callback(*args)`` on every :meth:`emit`; returns the connection to disconnect it."""
        if not callable(callback):
            raise TypeError(f"{self.name}: {callback!r} is not callable")
        connection = Connection(self, callback)
        with self._lock:
            self._connections.append(connection)
        return connection

    def disconnect(self, callback: Callable) -> bool:
        """Disconnect every connection of ``callback``; True when there was one."""
        with self._lock:
            keep = [c for c in self._connections if c.callback != callback]
            found = len(keep) != len(self._connections)
            self._connections = keep
        return found

    def emit(self, *args) -> None:
        """Call each connected callback with ``args``, in connection order."""
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            # One disconnected by an earlier callback of this emit is skipped.
            if self._has(connection):
                connection.callback(*args)

    def _has(self, connection: Connection) -> bool:
        with self._lock:
            return any(c is connection for c in self._connections)

    def _remove(self, connection: Connection) -> None:
        with self._lock:
            self._connections = [c for c in self._connections if c is not connection]
