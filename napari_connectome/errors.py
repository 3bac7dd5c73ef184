"""Errors a person reads: one line that names the file and the problem."""

from __future__ import annotations

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
