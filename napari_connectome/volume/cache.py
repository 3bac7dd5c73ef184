"""One bounded chunk cache shared by every open volume.

Two pools share the budget set by ``NAPARI_CONNECTOME_CACHE_MB``: tensorstore's
``cache_pool`` (zarr, N5, precomputed, remote) and :class:`ChunkCache` for the
readers tensorstore does not cover (HDF5, TIFF, PNG slices). Each gets half, so
the sum never exceeds the budget.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

import numpy as np

from napari_connectome.config import SETTINGS


class ChunkCache:
    """A thread-safe least-recently-used cache of NumPy chunks, bounded in bytes.

    Parameters
    ----------
    max_bytes
        The most bytes of chunk data held at once; 0 disables caching.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def nbytes(self) -> int:
        """Bytes held now."""
        return self._bytes

    def get(self, key: Hashable, load: Callable[[], np.ndarray]) -> np.ndarray:
        """Return the chunk stored under ``key``, loading it with ``load`` on a miss.

        The returned array is read-only: it may be shared with other callers.
        """
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return hit
            self.misses += 1
        value = np.asarray(load())
        value.flags.writeable = False
        if value.nbytes > self.max_bytes:
            return value
        with self._lock:
            if key not in self._items:
                self._items[key] = value
                self._bytes += value.nbytes
            while self._bytes > self.max_bytes and self._items:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.nbytes
        return value

    def __getstate__(self) -> dict:
        # Sent to a Dask worker, a cache arrives empty with its own lock (locks do not pickle).
        return {"max_bytes": self.max_bytes}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["max_bytes"])

    def clear(self) -> None:
        """Drop every chunk."""
        with self._lock:
            self._items.clear()
            self._bytes = 0


CHUNK_CACHE = ChunkCache(SETTINGS.cache_bytes // 2)
_TS_CONTEXT = None
_TS_LOCK = threading.Lock()


def tensorstore_context():
    """The tensorstore Context shared by every volume opened through tensorstore."""
    global _TS_CONTEXT
    with _TS_LOCK:
        if _TS_CONTEXT is None:
            import tensorstore as ts

            _TS_CONTEXT = ts.Context(
                {"cache_pool": {"total_bytes_limit": SETTINGS.cache_bytes // 2}}
            )
        return _TS_CONTEXT
