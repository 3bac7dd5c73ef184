"""Errors a person reads: one line that names the file and the problem."""

from __future__ import annotations

import errno
import os


class ConnectomeError(Exception):
    """Base of every error the suite reports to a person.

    The message is a single line; the CLI prints it with exit code 2 and the
    napari face shows it as a notification, never as a traceback.
    """

    def __init__(self, message: str) -> None:
        # One line, always: a newline inside would break the CLI contract.
        super().__init__(" ".join(str(message).split()))


class InputError(ConnectomeError):
    """Bad input: a file, a format, a value.

    Parameters
    ----------
    source
        The file, URI or parameter at fault.
    problem
        What is wrong with it, in words a proofreader understands.
    """

    def __init__(self, source: str | os.PathLike | None, problem: str) -> None:
        self.source = None if source is None else os.fspath(source)
        self.problem = problem
        super().__init__(problem if source is None else f"{self.source}: {problem}")


class ChunkReadError(InputError):
    """A chunk could not be read or decoded (truncated, corrupt, missing)."""


class CancelledError(ConnectomeError):
    """Long work was cancelled by the user."""


# What each errno means to a person at a workstation; anything else falls back
# to the system's own text.
_OS_PROBLEMS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "the operation is not permitted",
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "is a folder, not a file",
    errno.ELOOP: "too many symbolic links (a link loop?)",
    errno.ENAMETOOLONG: "the name is too long",
    errno.EEXIST: "already exists",
    errno.ENOTEMPTY: "the folder is not empty",
    errno.EIO: "input/output error (a failing disk or network share?)",
    errno.EMFILE: "too many open files",
    errno.ENFILE: "too many open files on this machine",
    errno.ETXTBSY: "the file is busy",
    errno.EXDEV: "cannot move across file systems",
    errno.EFBIG: "the file is too large for this file system",
    errno.ENOMEM: "out of memory",
}


def os_problem(exc: OSError) -> str:
    """A short phrase for an :class:`OSError` (``"the disk is full"``, ...)."""
    known = _OS_PROBLEMS.get(exc.errno) if exc.errno is not None else None
    if known:
        return known
    text = exc.strerror or str(exc) or type(exc).__name__
    return " ".join(str(text).split())


def from_os_error(exc: OSError, path: str | os.PathLike | None = None, *, action: str = "") -> InputError:
    """One line for a failed file operation: ``FILE: problem[; action]``.

    Parameters
    ----------
    exc
        The error the operating system raised.
    path
        The file to name; default: the one the error carries.
    action
        What happened as a result, e.g. ``"nothing was changed"``.
    """
    where = path if path is not None else (exc.filename if exc.filename is not None else None)
    problem = os_problem(exc)
    return InputError(where, f"{problem}; {action}" if action else problem)


class ConnectomeWarning(UserWarning):
    """Something a person should know that did not stop the work (a damaged cache rebuilt, ...).

    Raised through :func:`warn`: the CLI prints it as one
    ``napari-connectome: warning: …`` line, napari shows it as a warning
    notification.
    """


def warn(message: str) -> None:
    """Tell the person (one line) without stopping: see :class:`ConnectomeWarning`."""
    import warnings

    warnings.warn(ConnectomeWarning(" ".join(str(message).split())), stacklevel=2)
