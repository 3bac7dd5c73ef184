"""Progress and cancellation: a small protocol the engine calls.

The CLI injects a terminal bar, the napari face napari's progress bar; engine
code only ever sees :class:`Progress`.
"""

from __future__ import annotations

import sys
from typing import Protocol

from napari_connectome.errors import CancelledError


class Progress(Protocol):
    """What long-running engine functions report to."""

    def start(self, total: int, description: str) -> None:
        """Announce ``total`` steps of work called ``description``."""

    def advance(self, steps: int = 1) -> None:
        """Report ``steps`` more steps done; raise :class:`CancelledError` to stop."""

    def close(self) -> None:
        """The work is over (done, failed or cancelled)."""


class NullProgress:
    """Progress that shows nothing; optionally cancellable through a flag."""

    def __init__(self) -> None:
        self.total = 0
        self.done = 0
        self.cancelled = False

    def start(self, total: int, description: str) -> None:
        self.total, self.done = total, 0

    def advance(self, steps: int = 1) -> None:
        if self.cancelled:
            raise CancelledError("cancelled by the user")
        self.done += steps

    def close(self) -> None:
        return None


class TqdmProgress(NullProgress):
    """A terminal progress bar (tqdm) on stderr, for the CLI."""

    def __init__(self, *, disable: bool = False, unit: str = "block") -> None:
        super().__init__()
        self._bar = None
        self._disable = disable
        self._unit = unit

    def start(self, total: int, description: str) -> None:
        from tqdm import tqdm

        super().start(total, description)
        self._bar = tqdm(total=total, desc=description, unit=self._unit, disable=self._disable)

    def advance(self, steps: int = 1) -> None:
        super().advance(steps)
        if self._bar is not None:
            self._bar.update(steps)

    def write(self, line: str) -> None:
        """Print ``line`` on stderr above the bar (nothing when disabled)."""
        if self._disable:
            return
        from tqdm import tqdm

        tqdm.write(line, file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class PartOf:
    """A part of a larger piece of work: advances ``whole``, leaves starting and closing it to its owner.

    For an engine function that reports several runs (the levels of a
    pyramid, the passes of a graph) into one progress bar.
    """

    def __init__(self, whole: Progress) -> None:
        self.whole = whole

    def start(self, total: int, description: str) -> None:
        return None

    def advance(self, steps: int = 1) -> None:
        self.whole.advance(steps)

    def close(self) -> None:
        return None
