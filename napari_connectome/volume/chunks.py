"""Which chunks a volume stores, and reading every one of them.

Zarr (v2 and v3), N5 and Neuroglancer precomputed store one file (or object)
per chunk, and all of them allow a chunk to be absent: it then reads as the
array's fill value. That is how writers skip chunks that hold only the fill
value (tensorstore and zarr-python do so by default), but it is also what a
lost or deleted chunk looks like, and for a segmentation it silently turns
segments into background. Two tools here tell the difference apart for a
person:

* :func:`missing_chunks_note` counts the chunk files of each local level when
  opening (a directory listing, no chunk is read) and returns one sentence
  when some are absent; :func:`~napari_connectome.volume.open_volume` adds it
  to the volume's notes.
* :func:`scan_volume` reads every chunk of every level, one chunk at a time,
  and reports the missing ones and the ones that cannot be decoded, naming
  each chunk's key and file (``napari-connectome check``).

Chunk keys, relative to the array's folder:

========================  ===================================================
zarr v2                   ``0.1.2`` (``dimension_separator`` ``"."``) or ``0/1/2``
zarr v3, ``default``      ``c/0/1/2`` (separator ``"/"``) or ``c.0.1.2``
zarr v3, ``v2`` encoding  ``0.1.2`` or ``0/1/2``
N5                        ``x/y/z`` (N5's own axis order, fastest first)
precomputed               ``SCALE_KEY/x0-x1_y0-y1_z0-z1`` in voxels, from
                          ``voxel_offset``; sharded scales store ``*.shard``
========================  ===================================================

A zarr v3 array with the sharding codec stores one key per shard: the grid
here is then the shard grid (its "chunks" are shards).
"""

from __future__ import annotations

import itertools
import math
import os
import re
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from napari_connectome.errors import ConnectomeError, InputError
from napari_connectome.progress import NullProgress, Progress
from napari_connectome.volume.lazy import ChunkedArray, TensorStoreArray
from napari_connectome.volume.model import MultiscaleVolume

#: The words every missing-chunk note contains (the napari reader looks for them).
MISSING_NOTE_MARK = "chunks are missing and read as"
#: Levels with more chunks than this are not listed when a volume opens.
#: Listing costs about 1 ms per 1000 chunk files on a local disk with a warm
#: page cache (measured: 97,336 files, flat or nested, 60-120 ms), more on a
#: network share; 50,000 keeps the worst case near 0.1 s.
LIST_LIMIT = 50_000
#: How many issues of each level a scan keeps word for word (counts stay exact).
KEEP_ISSUES = 100
#: Bytes of chunk data a scan may hold at once (reads in flight).
SCAN_BYTES = 256 * 2**20
_MAX_IN_FLIGHT = 16


# ---------------------------------------------------------------- the stored grid
@dataclass(frozen=True)
class StoredGrid:
    """The keys a chunked array stores, in the order of its stored axes.

    Attributes
    ----------
    driver
        The tensorstore driver (``zarr``, ``zarr3``, ``n5``, ``neuroglancer_precomputed``).
    root
        The array's folder (local path) or URI prefix; keys are relative to it.
    local
        True when ``root`` is a local folder (it can be listed).
    shape, origin, chunk
        Stored extent, its first index and the shape of one stored key's
        block (a chunk, or a shard), in stored axis order (precomputed: x, y, z).
    sep
        The separator between key parts (zarr, N5).
    prefix
        Key parts before the chunk indices (zarr v3 ``default``: ``("c",)``).
    folder
        The sub-folder holding the keys (precomputed: the scale's ``key``).
    sharded
        Several chunks share one stored key (zarr v3 sharding codec, precomputed sharding).
    """

    driver: str
    root: str
    local: bool
    shape: tuple[int, ...]
    origin: tuple[int, ...]
    chunk: tuple[int, ...]
    sep: str = "/"
    prefix: tuple[str, ...] = ()
    folder: str = ""
    sharded: bool = False

    @property
    def grid(self) -> tuple[int, ...]:
        """Number of stored keys along each axis."""
        return tuple(math.ceil(s / c) if s else 0 for s, c in zip(self.shape, self.chunk, strict=True))

    @property
    def n_keys(self) -> int:
        """Number of keys the array would store if every one were written."""
        return math.prod(self.grid)

    @property
    def unit(self) -> str:
        """What one key holds, for messages: ``"chunk"`` or ``"shard"``."""
        return "shard" if self.sharded and self.driver == "zarr3" else "chunk"

    @property
    def precomputed(self) -> bool:
        return self.driver == "neuroglancer_precomputed"

    def key(self, index: tuple[int, ...]) -> str:
        """The key of the block at grid position ``index`` (relative to :attr:`root`)."""
        if self.precomputed:
            ranges = []
            for i, o, c, s in zip(index, self.origin, self.chunk, self.shape, strict=True):
                lo = o + i * c
                ranges.append(f"{lo}-{min(lo + c, o + s)}")
            name = "_".join(ranges)
            return f"{self.folder}/{name}" if self.folder else name
        parts = [*self.prefix, *(str(i) for i in index)]
        return self.sep.join(parts) if parts else "0"

    def path(self, key: str) -> str:
        """The file (local) or URI of ``key``."""
        if self.local:
            return os.path.join(self.root, *key.split("/"))
        return f"{self.root.rstrip('/')}/{key}"

    def index_of(self, corner: tuple[int, ...]) -> tuple[int, ...]:
        """Grid position of the stored block holding the stored voxel ``corner``."""
        return tuple((p - o) // c for p, o, c in zip(corner, self.origin, self.chunk, strict=True))

    # -------------------------------------------------------------- listing
    def listable(self) -> bool:
        """True when the stored keys can be listed from a local folder (not sharded precomputed)."""
        return self.local and not (self.sharded and self.precomputed)

    def entries(self) -> Iterator[tuple[tuple[int, ...], os.DirEntry]]:
        """``(grid index, directory entry)`` of every name in the folder that is a key of this grid.

        Files or not: a folder, a named pipe or a link loop where a chunk
        belongs is yielded too (:func:`irregular` tells them apart). Only
        names a writer makes count (not metadata, not stray files, not ``"01"``).
        """
        if not self.listable():
            return
        base = os.path.join(self.root, *self.folder.split("/")) if self.folder else self.root
        if not os.path.isdir(base):
            return
        if self.precomputed:
            yield from self._entries_precomputed(base)
        elif self.sep == "/":
            yield from self._entries_nested(base)
        else:
            yield from self._entries_flat(base)

    def count_stored(self) -> int | None:
        """How many of the grid's keys exist as files, from a listing of the local folder.

        None for remote or sharded precomputed arrays, whose keys cannot be
        counted without reading.
        """
        if not self.listable():
            return None
        return sum(1 for _, entry in self.entries() if _is_file(entry))

    def _tokens(self) -> list[frozenset[str]]:
        """The names each key part may take: the prefix, then ``"0"`` … ``str(n - 1)`` per axis.

        Set lookups keep the listing near the cost of ``os.scandir`` itself
        (no int parsing per file), and reject what no writer makes (``"01"``).
        """
        return [frozenset((p,)) for p in self.prefix] + [frozenset(map(str, range(g))) for g in self.grid]

    def _entries_flat(self, base: str) -> Iterator[tuple[tuple[int, ...], os.DirEntry]]:
        tokens = self._tokens()
        n, skip = len(tokens), len(self.prefix)
        with os.scandir(base) as entries:
            for entry in entries:
                parts = entry.name.split(self.sep)
                if len(parts) == n and all(map(frozenset.__contains__, tokens, parts)):
                    yield tuple(int(p) for p in parts[skip:]), entry

    def _entries_nested(self, base: str) -> Iterator[tuple[tuple[int, ...], os.DirEntry]]:
        tokens = self._tokens()
        skip = len(self.prefix)
        if not tokens:
            path = os.path.join(base, "0")
            if os.path.lexists(path):
                with os.scandir(base) as entries:
                    yield from (((), e) for e in entries if e.name == "0")
            return
        last = len(tokens) - 1

        def walk(folder: str, depth: int, parts: tuple[str, ...]):
            allowed = tokens[depth]
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.name not in allowed:
                        continue
                    here = (*parts, entry.name)
                    if depth == last:
                        yield tuple(int(p) for p in here[skip:]), entry
                    elif entry.is_dir():
                        yield from walk(entry.path, depth + 1, here)

        yield from walk(base, 0, ())

    def _entries_precomputed(self, base: str) -> Iterator[tuple[tuple[int, ...], os.DirEntry]]:
        pattern = re.compile(r"^(\d+)-(\d+)_(\d+)-(\d+)_(\d+)-(\d+)$")
        with os.scandir(base) as entries:
            for entry in entries:
                m = pattern.match(entry.name)
                if m is None:
                    continue
                lo = tuple(int(m.group(i)) for i in (1, 3, 5))
                rel = [p - o for p, o in zip(lo, self.origin, strict=True)]
                if any(r < 0 or r % c for r, c in zip(rel, self.chunk, strict=True)):
                    continue
                index = tuple(r // c for r, c in zip(rel, self.chunk, strict=True))
                if all(i < g for i, g in zip(index, self.grid, strict=True)) and self.key(index).endswith(
                    entry.name
                ):
                    yield index, entry


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:  # a link loop
        return False


def irregular_entries(grid: StoredGrid) -> list[str]:
    """Paths where a chunk belongs that are not regular files (folders, named pipes, link loops).

    Reading one would fail, or, for a named pipe, block for ever.
    """
    return [entry.path for _, entry in grid.entries() if not _is_file(entry)]


def _kvstore_root(kv) -> tuple[str, bool] | None:
    """(folder or URI prefix, is local) of a tensorstore kvstore spec."""
    if isinstance(kv, str):
        if kv.startswith("file://"):
            return kv[len("file://") :], True
        return kv, False
    if not isinstance(kv, dict):
        return None
    driver, path = kv.get("driver"), str(kv.get("path", ""))
    if driver == "file":
        return path, True
    if driver in ("gcs", "s3"):
        scheme = "gs" if driver == "gcs" else "s3"
        return f"{scheme}://{kv.get('bucket', '')}/{path}", False
    if driver == "http":
        return str(kv.get("base_url", "")).rstrip("/") + "/" + path.lstrip("/"), False
    if driver == "memory":
        return f"memory://{path}", False
    return None


def _ints(values) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


def grid_from_spec(spec: dict) -> StoredGrid | None:
    """The stored grid described by a tensorstore spec (JSON), or None for other drivers."""
    where = _kvstore_root(spec.get("kvstore"))
    if where is None:
        return None
    root, local = where
    driver = spec.get("driver")
    md = spec.get("metadata") or {}
    if driver == "zarr":
        shape = _ints(md["shape"])
        return StoredGrid(driver, root, local, shape, (0,) * len(shape), _ints(md["chunks"]),
                          sep=md.get("dimension_separator") or ".")
    if driver == "zarr3":
        grid = md.get("chunk_grid") or {}
        if grid.get("name") != "regular":
            return None
        shape = _ints(md["shape"])
        chunk = _ints(grid["configuration"]["chunk_shape"])
        encoding = md.get("chunk_key_encoding") or {"name": "default"}
        config = encoding.get("configuration") or {}
        if encoding.get("name") == "v2":
            sep, prefix = config.get("separator", "."), ()
        else:
            sep, prefix = config.get("separator", "/"), ("c",)
        sharded = any(isinstance(c, dict) and c.get("name") == "sharding_indexed" for c in md.get("codecs") or [])
        return StoredGrid(driver, root, local, shape, (0,) * len(shape), chunk, sep=sep, prefix=prefix,
                          sharded=sharded)
    if driver == "n5":
        shape = _ints(md["dimensions"])
        return StoredGrid(driver, root, local, shape, (0,) * len(shape), _ints(md["blockSize"]), sep="/")
    if driver == "neuroglancer_precomputed":
        sm = spec.get("scale_metadata") or {}
        chunk = sm.get("chunk_size")
        if chunk is None and sm.get("chunk_sizes"):
            chunk = sm["chunk_sizes"][0]
        return StoredGrid(driver, root, local, _ints(sm["size"]), _ints(sm.get("voxel_offset", (0, 0, 0))),
                          _ints(chunk), folder=str(sm.get("key", "")).strip("/"),
                          sharded=sm.get("sharding") is not None)
    return None


def stored_grid(array) -> StoredGrid | None:
    """The stored grid of a level's array (tensorstore-backed levels), else None."""
    if not isinstance(array, TensorStoreArray):
        return None
    try:
        spec = array.store.spec(retain_context=False).to_json()
        return grid_from_spec(spec)
    except (KeyError, TypeError, ValueError):  # metadata this module does not model
        return None


def fill_value(array) -> object:
    """What an absent chunk of ``array`` reads as (a Python number)."""
    value = None
    if isinstance(array, TensorStoreArray):
        try:
            value = array.store.fill_value
        except Exception:  # drivers without a fill value read absent chunks as zeros
            value = None
    if value is None:
        return np.zeros((), dtype=array.dtype).item()
    value = np.asarray(value)
    return value.item() if value.size == 1 else value.ravel()[0].item()


def fill_text(value: object, kind: str) -> str:
    """``"0 (background)"`` for labels, ``"0"`` for images: how a fill value reads to a person."""
    if isinstance(value, float):
        text = f"{value:g}"
    else:
        text = str(value)
    if kind == "labels" and value in (0, False):
        return f"{text} (background)"
    return text


# ---------------------------------------------------------------- the note at open
def missing_chunks_note(volume: MultiscaleVolume, *, limit: int = LIST_LIMIT) -> str | None:
    """One sentence when local levels lack chunk files, else None.

    Lists each local zarr / N5 / precomputed level with at most ``limit``
    keys (a directory listing; no chunk is read). Levels that are remote,
    larger, sharded precomputed or of another format are not counted.

    Raises
    ------
    InputError
        Something that is not a file stands where a chunk belongs (reading a
        named pipe would never return).
    """
    parts = []
    for k, level in enumerate(volume.levels):
        grid = stored_grid(level.array)
        if grid is None or not grid.local or grid.n_keys > limit:
            continue
        try:
            listed = list(grid.entries())
        except OSError:
            continue  # an unreadable folder is found when reading; opening stays quiet
        odd = [entry.path for _, entry in listed if not _is_file(entry)]
        if odd:
            raise InputError(odd[0], f"is where a {grid.unit} of {volume.source} belongs but is not a file "
                                     "(a folder, named pipe or link loop); the volume cannot be read")
        stored = len(listed)
        if stored is None or stored >= grid.n_keys:
            continue
        where = f"level {k}: " if len(volume.levels) > 1 else ""
        parts.append(
            f"{where}{grid.n_keys - stored} of {grid.n_keys} {grid.unit}s are missing and read as "
            f"{fill_text(fill_value(level.array), volume.kind)}"
        )
    if not parts:
        return None
    return "; ".join(parts) + f" — `napari-connectome check {volume.source}` lists them"


# ---------------------------------------------------------------- reading every chunk
@dataclass
class ChunkIssue:
    """One chunk that is missing or cannot be decoded.

    Attributes
    ----------
    status
        ``"missing"`` or ``"undecodable"``.
    name
        The chunk in words: ``chunk 1.0.3``, ``chunk (0, 1, 1) in shard c/0/0/0``,
        ``chunk at (4, 0, 0)`` (HDF5, its first voxel), ``page chunk (3, 0, 0)``.
    key
        The key it is stored under, relative to the array's folder (``1.0.3``,
        ``c/1/0/3``, ``8_8_30/0-64_0-64_0-64``); empty where a format has none.
    file
        The file or URI it is (or would be) stored in.
    detail
        For undecodable chunks, what the decoder said.
    """

    status: str
    name: str
    key: str
    file: str
    detail: str = ""


@dataclass
class LevelScan:
    """What reading every chunk of one level found.

    Attributes
    ----------
    level
        Position of the level in the volume (0 = finest).
    source
        The level's array (folder, file or URI).
    chunks
        Chunks in the level (read, missing and undecodable together).
    read, missing, undecodable
        How many chunks were read, absent, or failed to decode.
    fill_value
        What an absent chunk reads as.
    issues
        The first :data:`KEEP_ISSUES` missing or undecodable chunks.
    """

    level: int
    source: str
    chunks: int
    read: int = 0
    missing: int = 0
    undecodable: int = 0
    fill_value: object = 0
    issues: list[ChunkIssue] = field(default_factory=list)

    def add(self, issue: ChunkIssue, *, keep: int) -> None:
        if issue.status == "missing":
            self.missing += 1
        else:
            self.undecodable += 1
        if len(self.issues) < keep:
            self.issues.append(issue)


def _cells(
    origin: tuple[int, ...], shape: tuple[int, ...], chunk: tuple[int, ...], grid_origin: tuple[int, ...] | None = None
) -> Iterator[tuple[tuple[int, ...], tuple[slice, ...]]]:
    """Grid positions and boxes of the chunks covering ``[origin, origin + shape)``, C order.

    The grid starts at ``grid_origin`` (default: ``origin``); boxes are clipped
    to the extent, as chunks at the edge are.
    """
    grid_origin = origin if grid_origin is None else grid_origin
    ranges = [
        range((o - g) // c, (o + s - 1 - g) // c + 1) if s else range(0)
        for o, s, c, g in zip(origin, shape, chunk, grid_origin, strict=True)
    ]
    for index in itertools.product(*ranges):
        box = tuple(
            slice(max(o, g + i * c), min(o + s, g + (i + 1) * c))
            for i, o, s, c, g in zip(index, origin, shape, chunk, grid_origin, strict=True)
        )
        yield index, box


def _n_cells(origin, shape, chunk, grid_origin=None) -> int:
    grid_origin = origin if grid_origin is None else grid_origin
    return math.prod(
        ((o + s - 1 - g) // c - (o - g) // c + 1) if s else 0
        for o, s, c, g in zip(origin, shape, chunk, grid_origin, strict=True)
    )


def _tensorstore_message(exc: BaseException) -> str:
    from napari_connectome.volume.formats._meta import _one_line

    return _one_line(exc, 300)


_QUOTED = re.compile(r'"([^"]+)"')
_CAUSE = re.compile(r'^[A-Z_]+: (?:Error reading (?:local file )?"[^"]*": )?')


class _TensorStorePlan:
    """Read every chunk of a tensorstore level, without filling absent ones."""

    def __init__(self, array: TensorStoreArray, level: int) -> None:
        import tensorstore as ts

        from napari_connectome.volume.cache import tensorstore_context

        spec = array.store.spec(retain_context=False).to_json()
        self.grid = grid_from_spec(spec)
        spec.pop("transform", None)
        # An absent chunk then fails with NOT_FOUND instead of reading as the
        # fill value. No chunk cache, so memory holds only the chunks in
        # flight; every other resource (credentials, an in-memory store) is
        # the shared context's.
        spec["fill_missing_data_reads"] = False
        context = ts.Context(ts.Context.Spec({"cache_pool": {"total_bytes_limit": 0}}),
                             parent=tensorstore_context())
        self.store = ts.open(spec, read=True, context=context).result()
        domain = self.store.domain
        layout = self.store.chunk_layout
        self.origin = tuple(int(v) for v in domain.inclusive_min)
        self.shape = tuple(int(v) for v in domain.shape)
        read_chunk = layout.read_chunk.shape or layout.write_chunk.shape
        self.chunk = tuple(int(c) if c else max(s, 1) for c, s in zip(read_chunk, self.shape, strict=True))
        # The stored grid's origin (precomputed: voxel_offset), so each read is one chunk.
        self.grid_origin = tuple(int(g) for g in (layout.grid_origin or self.origin))
        self.scan = LevelScan(level, array.source, _n_cells(self.origin, self.shape, self.chunk, self.grid_origin),
                              fill_value=fill_value(array))
        itemsize = np.dtype(self.store.dtype.numpy_dtype).itemsize
        chunk_bytes = max(1, math.prod(self.chunk) * itemsize)
        self.in_flight = max(1, min(_MAX_IN_FLIGHT, SCAN_BYTES // chunk_bytes))

    def _key(self, box: tuple[slice, ...], index: tuple[int, ...]) -> tuple[str, str, str]:
        """(name, key, file) of the chunk read as ``box``; file empty where tensorstore's message names it."""
        grid = self.grid
        if grid is None:
            return f"chunk {index}", "", ""
        n = len(grid.shape)
        key = grid.key(grid.index_of(tuple(s.start for s in box[:n])))
        if grid.sharded and grid.precomputed:
            # The shard's file name is a hash of the chunk's position: name the
            # chunk by its voxels; tensorstore's message names the shard file.
            return f"chunk {key.rsplit('/', 1)[-1]} (sharded)", "", ""
        if grid.sharded:
            inner = tuple(s.start // c for s, c in zip(box[:n], self.chunk[:n], strict=True))
            return f"chunk {inner} in shard {key}", key, grid.path(key)
        return f"chunk {key}", key, grid.path(key)

    def _listed_order(self) -> Callable[[tuple[int, ...]], tuple[int, ...]] | None:
        """How a listed key's grid index maps to this level's cell index, or None when it cannot be listed.

        The stored grid may run in the opposite axis order (N5); anything
        less plain (shards, a grid that does not line up) is read cell by cell.
        """
        grid = self.grid
        if grid is None or not grid.listable() or grid.sharded:
            return None
        n = len(grid.shape)
        cells = [(s, c, g) for s, c, g in zip(self.shape[:n], self.chunk[:n], self.grid_origin[:n], strict=True)]
        if any(c < s for s, c in zip(self.shape[n:], self.chunk[n:], strict=True)):
            return None  # trailing axes split into several chunks: not one key per cell
        for order in (lambda i: i, lambda i: i[::-1]):
            if [(s, c, g) for s, c, g in order(list(zip(grid.shape, grid.chunk, grid.origin, strict=True)))] == cells:
                return lambda index, order=order: (*order(index), *(0,) * (len(self.shape) - n))
        return None

    def _box(self, index: tuple[int, ...]) -> tuple[slice, ...]:
        return tuple(
            slice(max(o, g + i * c), min(o + s, g + (i + 1) * c))
            for i, o, s, c, g in zip(index, self.origin, self.shape, self.chunk, self.grid_origin, strict=True)
        )

    def _cells_to_read(self, keep: int) -> Iterator[tuple[tuple[int, ...], tuple[slice, ...]]] | None:
        """The cells worth reading when the folder can be listed: the stored ones, and the first missing.

        A volume whose metadata claims far more chunks than it stores (10^18
        voxels, a few files) is then checked in the time its files take, not
        its claim: the missing ones are counted, and the first ``keep`` of
        them (in grid order) are read to be named. Something that is not a
        file where a chunk belongs is reported without being read (a named
        pipe would block for ever).
        """
        to_cell = self._listed_order()
        if to_cell is None:
            return None
        stored: set[tuple[int, ...]] = set()
        odd: set[tuple[int, ...]] = set()
        for index, entry in self.grid.entries():
            cell = to_cell(index)
            if _is_file(entry):
                stored.add(cell)
            else:
                odd.add(cell)
                name, key, _ = self._key(self._box(cell), cell)
                self.scan.add(ChunkIssue("undecodable", name, key, entry.path,
                                         "is not a file (a folder, named pipe or link loop)"), keep=keep)
        n_missing = self.scan.chunks - len(stored) - len(odd)
        to_name = min(keep, n_missing)
        # The missing ones beyond those named are counted, not read; the named ones
        # are read (and counted) like any other, to say what tensorstore says of them.
        self.scan.missing += n_missing - to_name
        self.skipped = n_missing - to_name + len(odd)

        def cells() -> Iterator[tuple[tuple[int, ...], tuple[slice, ...]]]:
            for cell in sorted(stored):
                yield cell, self._box(cell)
            if not to_name:
                return
            named = 0
            # The first ``to_name`` missing cells lie among the first len(stored) + len(odd) + to_name.
            for index, box in itertools.islice(_cells(self.origin, self.shape, self.chunk, self.grid_origin),
                                               len(stored) + len(odd) + to_name):
                if index not in stored and index not in odd:
                    yield index, box
                    named += 1
                    if named == to_name:
                        return

        return cells()

    def run(self, progress: Progress, keep: int) -> LevelScan:
        pending: deque = deque()

        def settle() -> None:
            index, box, future = pending.popleft()
            try:
                future.result()
                self.scan.read += 1
            except Exception as exc:  # tensorstore: ValueError with a status prefix
                text = _tensorstore_message(exc)
                name, key, path = self._key(box, index)
                if not path:
                    quoted = _QUOTED.findall(text)
                    path = quoted[-1] if quoted else self.scan.source
                if text.startswith("NOT_FOUND"):
                    self.scan.add(ChunkIssue("missing", name, key, path), keep=keep)
                else:
                    self.scan.add(ChunkIssue("undecodable", name, key, path, _CAUSE.sub("", text)), keep=keep)
            progress.advance(1)

        cells = self._cells_to_read(keep)
        if cells is None:
            cells = _cells(self.origin, self.shape, self.chunk, self.grid_origin)
        else:
            progress.advance(self.skipped)
        for index, box in cells:
            pending.append((index, box, self.store[box].read()))
            if len(pending) >= self.in_flight:
                settle()
        while pending:
            settle()
        return self.scan


class _ChunkedPlan:
    """Read every chunk of a :class:`ChunkedArray` (TIFF pages, slice files) once, uncached."""

    def __init__(self, array: ChunkedArray, level: int) -> None:
        self.array = array
        grid = [math.ceil(s / c) for s, c in zip(array.shape, array.chunks, strict=True)]
        self.scan = LevelScan(level, array.source, math.prod(grid), fill_value=np.zeros((), array.dtype).item())

    def run(self, progress: Progress, keep: int) -> LevelScan:
        array = self.array
        for index, _box in _cells((0,) * array.ndim, array.shape, array.chunks):
            try:
                data = np.asarray(array.read_chunk(index))
                expect = tuple(min(c, s - i * c) for i, c, s in zip(index, array.chunks, array.shape, strict=True))
                if data.shape != expect:
                    raise ValueError(f"has shape {data.shape}, expected {expect}")
                self.scan.read += 1
            except ConnectomeError as exc:
                source = getattr(exc, "source", None) or array.source
                problem = getattr(exc, "problem", None) or str(exc)
                self.scan.add(ChunkIssue("undecodable", f"chunk {index}", "", source, problem), keep=keep)
            except Exception as exc:  # library errors (tifffile, imageio) from a damaged chunk
                text = " ".join(str(exc).split())[:300]
                self.scan.add(ChunkIssue("undecodable", f"chunk {index}", "", array.source,
                                         f"{type(exc).__name__}: {text}"), keep=keep)
            progress.advance(1)
        return self.scan


class _Hdf5Plan:
    """Every storage chunk of an HDF5 dataset: unallocated ones are missing, the rest are read."""

    def __init__(self, volume: MultiscaleVolume, array, level: int) -> None:
        from napari_connectome.volume.formats.hdf5 import open_dataset
        from napari_connectome.volume.location import parse_uri

        self.file, self.dataset = open_dataset(parse_uri(volume.source))
        ds = self.dataset
        self.shape = tuple(int(s) for s in ds.shape)
        self.where = f"{self.file.filename}/{ds.name.lstrip('/')}"
        fill = ds.fillvalue
        fill = np.asarray(fill).item() if fill is not None else 0
        if ds.chunks:
            self.chunk = tuple(int(c) for c in ds.chunks)
        else:
            # Contiguous or compact: read in the backend's blocks (nothing can be missing
            # but the whole dataset, whose storage may never have been allocated).
            self.chunk = tuple(int(c) for c in array.chunks)
        grid = [math.ceil(s / c) for s, c in zip(self.shape, self.chunk, strict=True)]
        self.scan = LevelScan(level, self.where, math.prod(grid), fill_value=fill)

    def _allocated(self) -> np.ndarray:
        """A boolean grid: True where the chunk's storage exists in the file."""
        ds = self.dataset
        grid = tuple(math.ceil(s / c) for s, c in zip(self.shape, self.chunk, strict=True))
        allocated = np.zeros(grid, dtype=bool)
        if not ds.chunks:
            # Contiguous storage is allocated all at once (or never, when nothing was written).
            allocated[...] = ds.id.get_storage_size() > 0 or ds.id.get_offset() is not None
            return allocated

        def mark(info) -> None:
            allocated[tuple(o // c for o, c in zip(info.chunk_offset, self.chunk, strict=True))] = True

        try:
            ds.id.chunk_iter(mark)
        except (AttributeError, NotImplementedError):  # HDF5 before 1.14: one call per chunk
            for i in range(ds.id.get_num_chunks()):
                mark(ds.id.get_chunk_info(i))
        return allocated

    def run(self, progress: Progress, keep: int) -> LevelScan:
        try:
            allocated = self._allocated()
            chunked = bool(self.dataset.chunks)
            for index, box in _cells((0,) * len(self.shape), self.shape, self.chunk):
                offset = tuple(s.start for s in box)
                name = f"chunk at {offset}" if chunked else f"block at {offset}"
                if not allocated[index]:
                    self.scan.add(ChunkIssue("missing", name, "", self.where), keep=keep)
                else:
                    try:
                        self.dataset[box]
                        self.scan.read += 1
                    except Exception as exc:  # h5py OSError: filter failed, truncated file
                        text = " ".join(str(exc).split())[:300]
                        self.scan.add(ChunkIssue("undecodable", name, "", self.where, text), keep=keep)
                progress.advance(1)
        finally:
            self.file.close()
        return self.scan


class _NothingStored:
    """A level held in memory: nothing on disk to check."""

    def __init__(self, array, level: int) -> None:
        self.scan = LevelScan(level, getattr(array, "source", "<memory>"), 0)

    def run(self, progress: Progress, keep: int) -> LevelScan:
        return self.scan


def _plan(volume: MultiscaleVolume, level: int):
    array = volume.levels[level].array
    if volume.format == "hdf5" and level == 0:
        return _Hdf5Plan(volume, array, level)
    if isinstance(array, TensorStoreArray):
        return _TensorStorePlan(array, level)
    if isinstance(array, ChunkedArray):
        return _ChunkedPlan(array, level)
    return _NothingStored(array, level)


def scan_volume(
    volume: MultiscaleVolume, *, progress: Progress | None = None, keep: int | None = None
) -> list[LevelScan]:
    """Read every chunk of every level once; count the missing and undecodable ones.

    Memory holds one chunk at a time (a few, up to :data:`SCAN_BYTES`, for
    tensorstore formats, whose reads overlap); no chunk cache is filled.

    Parameters
    ----------
    volume
        An opened volume (:func:`~napari_connectome.volume.open_volume`).
    progress
        Told the number of chunks, then one step per chunk.
    keep
        Issues kept word for word per level (the counts are exact);
        default :data:`KEEP_ISSUES`.

    Returns
    -------
    list of LevelScan
        One per level, finest first.
    """
    progress = progress or NullProgress()
    keep = KEEP_ISSUES if keep is None else keep
    plans = [_plan(volume, k) for k in range(len(volume.levels))]
    progress.start(sum(p.scan.chunks for p in plans), f"checking {volume.name or volume.source}")
    try:
        return [p.run(progress, keep) for p in plans]
    finally:
        for p in plans:
            closing = getattr(p, "file", None)
            if closing is not None:
                closing.close()  # h5py: closing twice is harmless
        progress.close()
