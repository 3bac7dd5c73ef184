"""Lazy arrays: read only what is indexed, through the shared chunk cache.

Three kinds cover every backend:

* :class:`TensorStoreArray` wraps a tensorstore (zarr v2/v3, N5, precomputed,
  remote); tensorstore does its own caching in the shared context.
* :class:`ChunkedArray` assembles a region from chunks that a backend reads
  one at a time (HDF5, TIFF pages, PNG slices), cached in ``CHUNK_CACHE``.
* :class:`NumpyArray` holds data already in memory (samples, tests).

Reading errors become :class:`~napari_connectome.errors.ChunkReadError`, one
line naming the file. ``on_error="fill"`` returns zeros instead and calls the
``notify`` hook, so a viewer keeps running over a corrupt chunk.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np

from napari_connectome.errors import ChunkReadError, ConnectomeError
from napari_connectome.volume.cache import CHUNK_CACHE, ChunkCache

ErrorHook = Callable[[ConnectomeError], None]


def normalize_key(key: Any, shape: tuple[int, ...]) -> tuple[int | slice, ...]:
    """Expand an index into one ``int`` or ``slice`` per axis.

    Raises ``IndexError`` for what a lazy array cannot serve (fancy indexing).
    """
    if not isinstance(key, tuple):
        key = (key,)
    if any(k is Ellipsis for k in key):
        i = next(i for i, k in enumerate(key) if k is Ellipsis)
        fill = len(shape) - (len(key) - 1)
        key = key[:i] + (slice(None),) * fill + key[i + 1 :]
    if len(key) > len(shape):
        raise IndexError(f"too many indices: {len(key)} for {len(shape)} axes")
    key = key + (slice(None),) * (len(shape) - len(key))
    out: list[int | slice] = []
    for k, n in zip(key, shape, strict=True):
        if isinstance(k, (int, np.integer)):
            k = int(k)
            if k < -n or k >= n:
                raise IndexError(f"index {k} out of range for an axis of length {n}")
            out.append(k % n)
        elif isinstance(k, slice):
            out.append(slice(*k.indices(n)))
        else:
            raise IndexError(f"lazy arrays take ints and slices, not {type(k).__name__}")
    return tuple(out)


class _LazyBase:
    """Shared behaviour: ndim, size, __array__, error policy."""

    shape: tuple[int, ...]
    dtype: np.dtype
    chunks: tuple[int, ...]
    source: str

    def __init__(self, *, source: str, on_error: str = "raise", notify: ErrorHook | None = None):
        self.source = source
        self.on_error = on_error
        self.notify = notify

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None):
        data = self[...]
        return data if dtype is None else data.astype(dtype)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(source={self.source!r}, shape={self.shape}, "
            f"dtype={self.dtype}, chunks={self.chunks})"
        )

    def _failed(self, error: ConnectomeError, key) -> np.ndarray:
        if self.on_error != "fill":
            raise error
        if self.notify is not None:
            self.notify(error)
        shape = _result_shape(normalize_key(key, self.shape))
        return np.zeros(shape, dtype=self.dtype)


def _result_shape(key: tuple[int | slice, ...]) -> tuple[int, ...]:
    return tuple(len(range(k.start, k.stop, k.step)) for k in key if isinstance(k, slice))


class NumpyArray(_LazyBase):
    """An in-memory array with the lazy-array interface."""

    def __init__(self, data: np.ndarray, *, chunks=None, source: str = "<memory>") -> None:
        super().__init__(source=source)
        self.data = np.asarray(data)
        self.shape = tuple(self.data.shape)
        self.dtype = self.data.dtype
        self.chunks = tuple(chunks) if chunks is not None else tuple(min(64, s) or 1 for s in self.shape)

    def __getitem__(self, key) -> np.ndarray:
        return np.asarray(self.data[normalize_key(key, self.shape)])


class TensorStoreArray(_LazyBase):
    """A tensorstore, indexed from 0 whatever its stored origin."""

    def __init__(self, store, *, source: str, on_error: str = "raise", notify=None) -> None:
        super().__init__(source=source, on_error=on_error, notify=notify)
        # Precomputed and N5 volumes may start at a non-zero origin; the world
        # offset carries that, the array itself starts at 0.
        self.store = store.translate_to[(0,) * store.rank]
        self.shape = tuple(int(s) for s in self.store.shape)
        self.dtype = np.dtype(self.store.dtype.numpy_dtype)
        chunk = None
        try:
            chunk = self.store.chunk_layout.read_chunk.shape
        except Exception:  # some drivers expose no layout; fall back below
            chunk = None
        self.chunks = tuple(int(c) for c in chunk) if chunk else tuple(min(64, s) for s in self.shape)

    def __getitem__(self, key) -> np.ndarray:
        norm = normalize_key(key, self.shape)
        try:
            return np.asarray(self.store[norm].read().result())
        except Exception as exc:  # tensorstore raises ValueError/RuntimeError for I/O
            return self._failed(_chunk_error(self.source, exc), key)


def _chunk_error(source: str, exc: BaseException) -> ChunkReadError:
    text = " ".join(str(exc).split())
    if len(text) > 200:
        text = text[:200] + "…"
    return ChunkReadError(source, f"a chunk could not be read (truncated or corrupt?): {text}")


class ChunkedArray(_LazyBase):
    """An array assembled from chunks a backend reads one at a time.

    Parameters
    ----------
    read_chunk
        ``read_chunk(chunk_index) -> ndarray`` returns the chunk at grid
        position ``chunk_index`` (clipped at the array's edge).
    shape, dtype, chunks
        The array's shape, dtype and chunk shape.
    source
        The file, for error messages and as part of the cache key.
    cache
        The chunk cache (the shared one by default).
    """

    def __init__(
        self,
        read_chunk: Callable[[tuple[int, ...]], np.ndarray],
        *,
        shape,
        dtype,
        chunks,
        source: str,
        cache: ChunkCache = CHUNK_CACHE,
        on_error: str = "raise",
        notify=None,
    ) -> None:
        super().__init__(source=source, on_error=on_error, notify=notify)
        self.read_chunk = read_chunk
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.chunks = tuple(max(1, int(c)) for c in chunks)
        self.cache = cache
        self._cache_id = (source, id(self))

    def _chunk(self, index: tuple[int, ...]) -> np.ndarray:
        def load():
            try:
                data = np.asarray(self.read_chunk(index))
            except ConnectomeError:
                raise
            except Exception as exc:
                raise _chunk_error(self.source, exc) from None
            expect = tuple(
                min(c, s - i * c) for i, c, s in zip(index, self.chunks, self.shape, strict=True)
            )
            if data.shape != expect:
                raise ChunkReadError(
                    self.source, f"chunk {index} has shape {data.shape}, expected {expect}"
                )
            return data.astype(self.dtype, copy=False)

        return self.cache.get((self._cache_id, index), load)

    def __getitem__(self, key) -> np.ndarray:
        norm = normalize_key(key, self.shape)
        try:
            return self._read(norm)
        except ConnectomeError as exc:
            return self._failed(exc, key)

    def _read(self, norm: tuple[int | slice, ...]) -> np.ndarray:
        # Bounding box of the request, then the chunks that cover it.
        lo, hi = [], []
        for k in norm:
            if isinstance(k, int):
                lo.append(k)
                hi.append(k + 1)
            else:
                r = range(k.start, k.stop, k.step)
                if len(r) == 0:
                    lo.append(0)
                    hi.append(0)
                else:
                    lo.append(min(r[0], r[-1]))
                    hi.append(max(r[0], r[-1]) + 1)
        box = np.zeros([h - lo_ for lo_, h in zip(lo, hi, strict=True)], dtype=self.dtype)
        if box.size:
            ranges = [
                range(lo_ // c, (h - 1) // c + 1) for lo_, h, c in zip(lo, hi, self.chunks, strict=True)
            ]
            for index in itertools.product(*ranges):
                chunk = self._chunk(index)
                start = [i * c for i, c in zip(index, self.chunks, strict=True)]
                src, dst = [], []
                for s, n, lo_, h in zip(start, chunk.shape, lo, hi, strict=True):
                    a, b = max(s, lo_), min(s + n, h)
                    src.append(slice(a - s, b - s))
                    dst.append(slice(a - lo_, b - lo_))
                box[tuple(dst)] = chunk[tuple(src)]
        local = []
        for k, lo_ in zip(norm, lo, strict=True):
            if isinstance(k, int):
                local.append(k - lo_)
            else:
                start = k.start - lo_
                stop = k.stop - lo_
                local.append(slice(start, stop if stop >= 0 else None, k.step))
        return box[tuple(local)]
