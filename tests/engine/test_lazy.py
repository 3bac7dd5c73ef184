"""Lazy arrays and the chunk cache: NumPy semantics, bounded memory, one-line errors."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_connectome.errors import ChunkReadError
from napari_connectome.volume.cache import ChunkCache
from napari_connectome.volume.lazy import ChunkedArray, normalize_key


def chunked(data: np.ndarray, chunks, *, cache=None, calls=None, **kwargs) -> ChunkedArray:
    """A ChunkedArray over ``data`` whose reader records the chunks it was asked for."""

    def read_chunk(index):
        if calls is not None:
            calls.append(index)
        sel = tuple(slice(i * c, (i + 1) * c) for i, c in zip(index, chunks, strict=True))
        return data[sel].copy()

    return ChunkedArray(
        read_chunk,
        shape=data.shape,
        dtype=data.dtype,
        chunks=chunks,
        source="/data/test.h5/raw",
        cache=cache if cache is not None else ChunkCache(2**24),
        **kwargs,
    )


@st.composite
def array_chunks_key(draw):
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(1, 13)) for _ in range(ndim))
    # Chunks that rarely divide the shape: edge chunks are clipped.
    chunks = tuple(draw(st.integers(1, 6)) for _ in range(ndim))
    parts = []
    for n in shape:
        if draw(st.booleans()):
            parts.append(draw(st.integers(-n, n - 1)))
        else:
            bound = st.none() | st.integers(-n - 3, n + 3)
            step = st.none() | st.integers(-5, 5).filter(lambda s: s != 0)
            parts.append(slice(draw(bound), draw(bound), draw(step)))
    # Sometimes fewer indices than axes, sometimes an Ellipsis standing for some of them.
    cut = draw(st.integers(0, ndim))
    if draw(st.booleans()):
        skip = draw(st.integers(0, ndim - cut))
        key = tuple(parts[:cut]) + (Ellipsis,) + tuple(parts[cut + skip :])
    else:
        key = tuple(parts[:cut]) if cut < ndim and draw(st.booleans()) else tuple(parts)
    return shape, chunks, key


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(array_chunks_key())
def test_chunked_indexing_equals_numpy(case):
    shape, chunks, key = case
    data = np.arange(int(np.prod(shape)), dtype=np.int32).reshape(shape) * 7 - 3
    calls: list = []
    lazy = chunked(data, chunks, calls=calls)
    got = lazy[key]
    want = data[key]
    # Like NumPy: an array, or a NumPy scalar when every axis gets an int.
    assert isinstance(got, (np.ndarray, np.generic))
    assert np.shape(got) == np.shape(want)
    assert got.dtype == data.dtype
    np.testing.assert_array_equal(got, want)
    # Lazy: only the chunks that hold a requested voxel's bounding box are read, each once.
    assert len(calls) == len(set(calls))


@pytest.mark.parametrize("key", [0, (slice(None), 3), (Ellipsis, -1), 2])
def test_single_key_forms(key):
    data = np.random.default_rng(1).integers(0, 2**31, (5, 7, 9), dtype=np.uint32)
    np.testing.assert_array_equal(chunked(data, (2, 3, 4))[key], data[key])


def test_reads_only_chunks_it_needs():
    data = np.zeros((10, 40, 40), dtype=np.uint8)
    calls: list = []
    lazy = chunked(data, (1, 16, 16), calls=calls)
    lazy[4, 20:30, 0:5]
    assert calls == [(4, 1, 0)]
    lazy[4, 20:30, 0:5]
    assert calls == [(4, 1, 0)], "a cached chunk must not be read again"
    lazy[5, :, :]
    assert sorted(calls[1:]) == [(5, i, j) for i in range(3) for j in range(3)]


def test_np_asarray_and_len():
    data = np.arange(60, dtype=np.uint16).reshape(3, 4, 5)
    lazy = chunked(data, (2, 2, 2))
    np.testing.assert_array_equal(np.asarray(lazy), data)
    assert len(lazy) == 3 and lazy.ndim == 3 and lazy.nbytes == data.nbytes


@pytest.mark.parametrize(
    "key",
    [(0, 0, 0, 0), 5, -6, (slice(None), 4), ([0, 1],), np.array([True, False, True, False, True])],
)
def test_bad_keys_raise_index_error(key):
    lazy = chunked(np.zeros((5, 4), dtype=np.uint8), (2, 2))
    with pytest.raises(IndexError):
        lazy[key]


def test_normalize_key_expands_ellipsis_and_negatives():
    assert normalize_key((Ellipsis, -1), (3, 4, 5)) == (slice(0, 3, 1), slice(0, 4, 1), 4)
    assert normalize_key(slice(None, None, -1), (3,)) == (slice(2, -1, -1),)


# --- the cache -------------------------------------------------------------


def test_cache_never_exceeds_budget_and_evicts_lru():
    cache = ChunkCache(3000)
    loads: list[str] = []

    def loader(name, nbytes=1000):
        def load():
            loads.append(name)
            return np.zeros(nbytes, dtype=np.uint8)

        return load

    for name in "abc":
        cache.get(name, loader(name))
        assert cache.nbytes <= 3000
    cache.get("a", loader("a"))  # a becomes most recently used: b is now the oldest
    cache.get("d", loader("d"))
    assert cache.nbytes <= 3000
    assert loads == ["a", "b", "c", "d"]
    cache.get("a", loader("a"))
    cache.get("c", loader("c"))
    assert loads == ["a", "b", "c", "d"], "a and c must still be cached"
    cache.get("b", loader("b"))
    assert loads[-1] == "b", "b was least recently used and must have been evicted"
    assert cache.nbytes <= 3000


def test_cache_too_big_item_is_returned_not_kept():
    cache = ChunkCache(100)
    value = cache.get("big", lambda: np.ones(1000, dtype=np.uint8))
    assert value.sum() == 1000
    assert cache.nbytes == 0


def test_cache_zero_budget_disables_caching():
    cache = ChunkCache(0)
    loads = []
    for _ in range(3):
        cache.get("k", lambda: loads.append(1) or np.ones(4))
    assert len(loads) == 3 and cache.nbytes == 0


def test_cached_chunks_are_read_only():
    cache = ChunkCache(10_000)
    value = cache.get("k", lambda: np.ones(10))
    with pytest.raises(ValueError):
        value[0] = 5


def test_cache_stays_bounded_under_threads():
    cache = ChunkCache(50_000)
    rng_keys = [(t, i) for t in range(4) for i in range(200)]
    peak = []

    def work(t):
        for key in rng_keys[t::4]:
            cache.get(key, lambda: np.zeros(1024, dtype=np.uint8))
            peak.append(cache.nbytes)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert max(peak) <= 50_000
    assert cache.nbytes <= 50_000


def test_chunked_array_respects_small_cache():
    data = np.random.default_rng(2).integers(0, 255, (20, 64, 64), dtype=np.uint8)
    cache = ChunkCache(3 * 64 * 64)
    lazy = chunked(data, (1, 64, 64), cache=cache)
    for z in range(20):
        np.testing.assert_array_equal(lazy[z], data[z])
        assert cache.nbytes <= 3 * 64 * 64


# --- errors ----------------------------------------------------------------


def failing_reader(message="boom\nsecond line"):
    def read_chunk(index):
        raise OSError(message)

    return read_chunk


def test_failing_read_raises_one_line_chunk_read_error():
    lazy = ChunkedArray(
        failing_reader(), shape=(4, 4), dtype=np.uint8, chunks=(2, 2), source="/data/bad.h5/raw",
        cache=ChunkCache(10_000),
    )
    with pytest.raises(ChunkReadError) as info:
        lazy[0:3, 1]
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith("/data/bad.h5/raw: ")
    assert "boom second line" in text


def test_wrong_chunk_shape_is_a_chunk_read_error():
    lazy = ChunkedArray(
        lambda index: np.zeros((3, 3), dtype=np.uint8), shape=(4, 4), dtype=np.uint8,
        chunks=(2, 2), source="/data/odd.tif", cache=ChunkCache(10_000),
    )
    with pytest.raises(ChunkReadError, match=r"^/data/odd.tif: chunk \(0, 0\) has shape"):
        lazy[0, 0]


def test_fill_returns_zeros_and_notifies():
    seen = []
    lazy = ChunkedArray(
        failing_reader(), shape=(5, 6, 7), dtype=np.uint16, chunks=(2, 3, 3),
        source="/data/bad.h5/raw", cache=ChunkCache(10_000), on_error="fill", notify=seen.append,
    )
    out = lazy[1:4, ::2, 3]
    assert out.shape == (3, 3) and out.dtype == np.uint16
    assert not out.any()
    assert len(seen) == 1 and isinstance(seen[0], ChunkReadError)
    assert "/data/bad.h5/raw" in str(seen[0])


def test_fill_keeps_good_chunks_and_errors_are_not_cached():
    data = np.arange(1, 17, dtype=np.uint8).reshape(4, 4)
    broken = {"on": True}

    def read_chunk(index):
        if broken["on"] and index == (1, 1):
            raise OSError("bad block")
        return data[index[0] * 2 : index[0] * 2 + 2, index[1] * 2 : index[1] * 2 + 2]

    seen = []
    lazy = ChunkedArray(
        read_chunk, shape=(4, 4), dtype=np.uint8, chunks=(2, 2), source="s",
        cache=ChunkCache(10_000), on_error="fill", notify=seen.append,
    )
    np.testing.assert_array_equal(lazy[0:2, 0:2], data[0:2, 0:2])
    assert not lazy[2:4, 2:4].any() and len(seen) == 1
    broken["on"] = False
    np.testing.assert_array_equal(lazy[:, :], data)
