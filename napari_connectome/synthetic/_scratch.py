"""Per-thread work buffers, reused from tile to tile.

Fresh temporaries cost a page fault per 4 KiB on first touch, which on some
machines (VMs) costs more than the arithmetic done in them; the synthetic
generator works in small tiles, so a handful of tile-sized buffers per thread
is all it needs.
"""

from __future__ import annotations

import threading

import numpy as np

# Buffers are allocated at least this big (one 64³ tile), so they are
# allocated once and then only reused.
MIN_VOXELS = 64 * 64 * 64


class Scratch(threading.local):
    """Named, growable buffers private to the calling thread."""

    def __init__(self) -> None:
        self.buffers: dict[tuple[str, str], np.ndarray] = {}

    def take(self, name: str, shape, dtype=np.float32) -> np.ndarray:
        """A contiguous array of ``shape`` (contents undefined), valid until ``name`` is taken again."""
        n = 1
        for s in shape:
            n *= int(s)
        key = (name, np.dtype(dtype).str)
        buf = self.buffers.get(key)
        if buf is None or buf.size < n:
            buf = np.empty(max(n, MIN_VOXELS), dtype=dtype)
            self.buffers[key] = buf
        return buf[:n].reshape(shape)


SCRATCH = Scratch()
