"""Messages a person reads in the viewer: one line, as a napari notification.

Never a traceback dialog: errors from the engine are
:class:`~napari_connectome.errors.ConnectomeError` with a one-line message;
anything else is squeezed onto one line here too.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

PREFIX = "napari-connectome"
# The latest messages shown, as (severity, text): the off-screen launcher
# prints them, since nobody sees the toasts of a screenshot.
SENT: deque[tuple[str, str]] = deque(maxlen=200)


def one_line(message: object) -> str:
    """``message`` as a single line (whitespace and newlines collapsed)."""
    return " ".join(str(message).split())


def error(message: object) -> None:
    """Show an error notification of one line."""
    from napari.utils.notifications import show_error

    SENT.append(("error", one_line(message)))
    show_error(one_line(message))


def warning(message: object) -> None:
    """Show a warning notification of one line."""
    from napari.utils.notifications import show_warning

    SENT.append(("warning", one_line(message)))
    show_warning(one_line(message))


def info(message: object) -> None:
    """Show an information notification of one line."""
    from napari.utils.notifications import show_info

    SENT.append(("info", one_line(message)))
    show_info(one_line(message))


def chunk_error_notifier(name: str) -> Callable[[Exception], None]:
    """A ``notify`` hook for ``open_volume(on_error="fill")`` that warns once.

    The first unreadable chunk of a volume shows one warning naming the file
    and the problem; later ones in the same volume stay quiet, so a corrupt
    region never floods the viewer. Safe to call from reading threads
    (napari marshals notifications to the main thread).

    Parameters
    ----------
    name
        The volume's display name, used in the warning.

    Returns
    -------
    callable
        ``notify(error)``.
    """
    lock = threading.Lock()
    told = False

    def notify(exc: Exception) -> None:
        nonlocal told
        with lock:
            if told:
                return
            told = True
        warning(f"{exc} — shown as zeros; further unreadable chunks of {name} are not reported")

    notify.volume_name = name  # type: ignore[attr-defined]
    return notify
