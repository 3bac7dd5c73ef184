"""Region adjacency graph of supervoxels, with the boundary signal along every contact.

Definitions (kept identical in :mod:`napari_connectome.graph.agglomerate`):

* Two supervoxels are adjacent when they share a voxel *face* (6-connectivity).
  Label 0 is background: never a node, its faces are ignored.
* The **boundary signal** lies in ``[0, 1]``, 1 = membrane. The value of one
  face between voxels ``i`` and ``j`` is

  - ``boundaries``: ``max(p[i], p[j])`` of the boundary probability (the
    default ``face="max"``). The max, not the mean, because a membrane one
    voxel thick lies on one side of the face: the mean would halve it; it is
    also what waterz scores when its affinities are made as ``1 - max`` of the
    two voxels. ``face="mean"`` and ``face="min"`` are available for
    comparison (benchmarks/gala_threshold.py).
  - ``affinities``: ``1 - aff[d][j]`` where ``d`` is the face's axis and ``j``
    the voxel on the high side: channel ``d`` at voxel ``j`` is the affinity of
    ``j`` with ``j - e_d`` (the convention of gunpowder and waterz).
  - ``raw-intensity-proxy``: ``max`` over the two voxels of
    ``1 - normalised raw intensity``, because membranes are dark in EM. Only a
    proxy: a graph built on it says so in :attr:`RegionGraph.signal`.

* Per edge: contact area (number of faces), mean, min and max of the face
  values, and quantiles ``q10 ... q90``. Quantiles are **interpolated from a
  histogram** of :data:`N_BINS` equal bins over ``[0, 1]`` (linear inside the
  bin, clipped to the edge's exact min and max): within one bin width
  (1/256) of the exact inverted-CDF quantile. With a uint8 signal every value
  has its own bin.

The graph is built block by block with a one-voxel overlap on the high side
of every block, so each face is counted by exactly one block; only per-edge
statistics are kept between blocks (memory grows with the number of edges and
histogram entries, not with the volume). A first pass reads the supervoxels
alone (ids and sizes), so that the second can key every edge by one int64
made of node positions; the faces of a block are worked on in boxes of at
most 2**18 voxels, and the per-edge rows are kept in sorted runs that are
folded together as they grow (:class:`_EdgeAccumulator`). The memory this
needs is estimated (:func:`estimate_rag_memory`) and checked against the
limit (:func:`napari_connectome.memory.check_memory`) before the scan, as
edges are found, and before the graph's arrays are made.

Measured (``benchmarks/bench_graph_memory.py``, 128 × 256 × 256 voxels, 2
CPUs): 10^6 random supervoxels (2.5 × 10^7 edges and histogram entries) take
20 s and 2.3 GiB at peak above the volumes (100 bytes per edge with its
histogram entry; the finished graph holds 74); 10^6 compact supervoxels
(5.9 × 10^6 edges, 1.3 × 10^7 histogram entries) 6 s and 1.0 GiB. The
version before this layout took 130 s and 6.6 GiB, and 35 s and 2.6 GiB.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_connectome.arrays import distinct
from napari_connectome.atomic import save_npz_atomic
from napari_connectome.blockwise import BlockGrid, run_blockwise
from napari_connectome.errors import InputError
from napari_connectome.graph.faces import dense_counts as _dense_counts
from napari_connectome.graph.faces import unit_rows
from napari_connectome.memory import check_memory, release_free_memory
from napari_connectome.progress import NullProgress, PartOf, Progress
from napari_connectome.volume import MultiscaleVolume

SIGNALS = ("boundaries", "affinities", "raw-intensity-proxy")
QUANTILES = {"q10": 0.10, "q25": 0.25, "q50": 0.50, "q75": 0.75, "q90": 0.90}
FEATURES = ("mean", "min", "max", *QUANTILES)
N_BINS = 256
FILE_FORMAT = "napari-connectome-rag"
FILE_VERSION = 1

# Pending rows of the scan are folded into the sorted totals once they
# outnumber them and at least this many (see _EdgeAccumulator).
_CONSOLIDATE_ROWS = 4_000_000


@dataclass
class RegionGraph:
    """A region adjacency graph of supervoxels.

    Attributes
    ----------
    node_ids
        ``(N,)`` uint64, sorted supervoxel ids (0, the background, is never a node).
    node_sizes
        ``(N,)`` int64 voxel counts.
    edges
        ``(E, 2)`` uint64, ``u < v``, rows sorted lexicographically; only
        between face-adjacent supervoxels.
    contact_area
        ``(E,)`` int64, number of voxel faces shared.
    features
        Name -> ``(E,)`` float32: ``mean``, ``min``, ``max``, ``q10``, ``q25``,
        ``q50``, ``q75``, ``q90`` of the boundary signal (1 = membrane) over the
        contact.
    signal
        ``"boundaries"``, ``"affinities"`` or ``"raw-intensity-proxy"``.
    voxel_size
        Voxel size of the supervoxel volume's level 0 in nm.
    histogram
        Sparse per-edge histograms of the face values: ``(edge, bin, count)``
        arrays, sorted by edge then bin, over :attr:`n_bins` bins on ``[0, 1]``.
    n_bins
        Number of histogram bins.
    notes
        Things a person should be told about how the graph was built.
    source
        Where the graph came from: the supervoxel volume it was built from,
        or the file it was loaded from (named by the memory guard; not saved).
    """

    node_ids: np.ndarray
    node_sizes: np.ndarray
    edges: np.ndarray
    contact_area: np.ndarray
    features: dict[str, np.ndarray]
    signal: str
    voxel_size: tuple[float, ...]
    histogram: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    n_bins: int = N_BINS
    notes: list[str] = field(default_factory=list)
    source: str = ""

    def __post_init__(self) -> None:
        if self.signal not in SIGNALS:
            raise InputError("signal", f"unknown boundary signal {self.signal!r}; one of {SIGNALS}")
        self._keys: np.ndarray | None = None
        self._csr: tuple[np.ndarray, np.ndarray] | None = None

    # ------------------------------------------------------------------ queries
    @property
    def n_nodes(self) -> int:
        return int(self.node_ids.size)

    @property
    def n_edges(self) -> int:
        return int(self.edges.shape[0])

    def node_index(self, ids) -> np.ndarray:
        """Positions of supervoxel ``ids`` in :attr:`node_ids` (-1 where absent)."""
        ids = np.asarray(ids, dtype=np.uint64)
        pos = np.searchsorted(self.node_ids, ids)
        pos = np.minimum(pos, max(self.n_nodes - 1, 0))
        found = self.node_ids[pos] == ids if self.n_nodes else np.zeros(ids.shape, bool)
        return np.where(found, pos, -1).astype(np.int64)

    def edge_endpoints(self) -> np.ndarray:
        """``(E, 2)`` int64 node positions of the edges' endpoints."""
        return np.searchsorted(self.node_ids, self.edges).astype(np.int64)

    def _edge_keys(self) -> np.ndarray:
        # Edges sorted lexicographically by (u, v) <=> sorted by u * N + v over
        # node positions, which fits int64 for any realistic node count.
        if self._keys is None:
            ends = self.edge_endpoints()
            self._keys = ends[:, 0] * np.int64(max(self.n_nodes, 1)) + ends[:, 1]
        return self._keys

    def edge_index(self, u, v) -> int | None:
        """Row of the edge between supervoxels ``u`` and ``v`` (either order), or None."""
        iu, iv = self.node_index([u, v])
        if iu < 0 or iv < 0 or iu == iv:
            return None
        a, b = (iu, iv) if iu < iv else (iv, iu)
        key = a * max(self.n_nodes, 1) + b
        keys = self._edge_keys()
        pos = int(np.searchsorted(keys, key))
        return pos if pos < keys.size and keys[pos] == key else None

    def edge_indices(self, pairs) -> np.ndarray:
        """Rows of many ``(u, v)`` supervoxel pairs (``(K, 2)``); -1 where not adjacent."""
        pairs = np.asarray(pairs, dtype=np.uint64).reshape(-1, 2)
        idx = self.node_index(pairs.ravel()).reshape(-1, 2)
        a, b = idx.min(axis=1), idx.max(axis=1)
        keys = self._edge_keys()
        key = a * max(self.n_nodes, 1) + b
        pos = np.minimum(np.searchsorted(keys, key), max(keys.size - 1, 0))
        ok = (a >= 0) & (a != b) & (keys.size > 0)
        if keys.size:
            ok &= keys[pos] == key
        return np.where(ok, pos, -1).astype(np.int64)

    def _adjacency(self) -> tuple[np.ndarray, np.ndarray]:
        if self._csr is None:
            ends = self.edge_endpoints()
            src = np.concatenate([ends[:, 0], ends[:, 1]])
            dst = np.concatenate([ends[:, 1], ends[:, 0]])
            order = np.lexsort((dst, src))
            indptr = np.zeros(self.n_nodes + 1, dtype=np.int64)
            np.cumsum(np.bincount(src, minlength=self.n_nodes), out=indptr[1:])
            self._csr = (indptr, dst[order])
        return self._csr

    def neighbors(self, sv) -> np.ndarray:
        """Supervoxel ids adjacent to supervoxel ``sv`` (sorted; empty if unknown)."""
        (i,) = self.node_index([sv])
        if i < 0:
            return np.empty(0, dtype=np.uint64)
        indptr, dst = self._adjacency()
        return self.node_ids[dst[indptr[i] : indptr[i + 1]]]

    def edge_weight(self, name: str = "mean") -> np.ndarray:
        """One boundary feature per edge, float32 (1 = strong boundary)."""
        if name == "contact_area":
            return self.contact_area.astype(np.float32)
        try:
            return self.features[name]
        except KeyError:
            raise InputError(
                "feature", f"unknown edge feature {name!r}; one of {sorted(self.features)}"
            ) from None

    # ------------------------------------------------------------------- files
    def save(self, path: str | os.PathLike) -> Path:
        """Write the graph to one ``.npz`` file (atomically: temporary file, then rename)."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        hist = self.histogram or (np.empty(0, np.int64), np.empty(0, np.uint16), np.empty(0, np.int64))
        arrays = {
            "format": np.array(FILE_FORMAT),
            "version": np.array(FILE_VERSION),
            "node_ids": self.node_ids,
            "node_sizes": self.node_sizes,
            "edges": self.edges,
            "contact_area": self.contact_area,
            "signal": np.array(self.signal),
            "voxel_size": np.asarray(self.voxel_size, dtype=np.float64),
            "n_bins": np.array(self.n_bins),
            "has_histogram": np.array(self.histogram is not None),
            "hist_edge": hist[0],
            "hist_bin": hist[1],
            "hist_count": hist[2],
            "notes": np.array(self.notes, dtype=str),
        }
        for name, values in self.features.items():
            arrays[f"feature_{name}"] = values
        save_npz_atomic(path, arrays)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> RegionGraph:
        """Read a graph written by :meth:`save`."""
        data = _load_npz(path, FILE_FORMAT, FILE_VERSION)
        features = {k[len("feature_") :]: data[k] for k in data if k.startswith("feature_")}
        hist = None
        if bool(data["has_histogram"]):
            hist = (data["hist_edge"], data["hist_bin"], data["hist_count"])
        return cls(
            node_ids=data["node_ids"],
            node_sizes=data["node_sizes"],
            edges=data["edges"].reshape(-1, 2),
            contact_area=data["contact_area"],
            features=features,
            signal=str(data["signal"]),
            voxel_size=tuple(float(v) for v in data["voxel_size"]),
            histogram=hist,
            n_bins=int(data["n_bins"]),
            notes=[str(n) for n in data["notes"]],
            source=str(path),
        )


def _load_npz(path, file_format: str, version: int) -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except Exception as exc:  # zipfile/pickle/ValueError: all mean a damaged file
        raise InputError(path, f"cannot be read ({type(exc).__name__}: {exc})") from None
    if "format" not in data or str(data["format"]) != file_format:
        raise InputError(path, f"not a {file_format} file")
    if int(data["version"]) > version:
        raise InputError(path, f"written by a newer suite (version {int(data['version'])}); update napari-connectome")
    return data


# ---------------------------------------------------------------------- build
def _spatial_shape(volume: MultiscaleVolume) -> tuple[int, ...]:
    return tuple(s for s, a in zip(volume.shape, volume.axes, strict=True) if a in ("z", "y", "x"))


def signal_normaliser(signal: MultiscaleVolume, kind: str):
    """A function mapping a block of the signal to float32 in [0, 1]."""
    dtype = signal.dtype
    if kind == "raw-intensity-proxy":
        # Percentiles of the coarsest level: cheap, and robust to a few
        # saturated voxels that a min/max would let dominate.
        sample = _intensity_sample(signal.levels[-1].array)
        lo, hi = np.percentile(sample, [0.5, 99.5]) if sample.size else (0.0, 1.0)
        if not hi > lo:
            lo, hi = float(lo), float(lo) + 1.0
        scale = 1.0 / (float(hi) - float(lo))

        def proxy(block: np.ndarray) -> np.ndarray:
            norm = (block.astype(np.float32) - np.float32(lo)) * np.float32(scale)
            return 1.0 - np.clip(norm, 0.0, 1.0)

        return proxy
    if np.issubdtype(dtype, np.integer):
        top = np.float32(np.iinfo(dtype).max)

        def scaled(block: np.ndarray) -> np.ndarray:
            return block.astype(np.float32) / top

        return scaled
    if np.issubdtype(dtype, np.floating):

        def clipped(block: np.ndarray) -> np.ndarray:
            return np.clip(block.astype(np.float32, copy=False), 0.0, 1.0)

        return clipped
    raise InputError(signal.source, f"a boundary signal of dtype {dtype} is not supported")


# The proxy's percentiles come from at most this many voxels, read as whole
# chunks: a strided sample of a large single-level volume touches every chunk
# (hours on 10^12 voxels, forever on metadata that claims 10^18).
_SAMPLE_VOXELS = 2**24
_SAMPLE_CHUNKS = 64


def _intensity_sample(array) -> np.ndarray:
    """Voxels of ``array`` for robust percentiles: all of it when small, else chunks spread over it."""
    shape = tuple(int(s) for s in array.shape)
    if math.prod(shape) <= _SAMPLE_VOXELS:
        return np.asarray(array[tuple(slice(None) for _ in shape)]).ravel()
    chunks = tuple(int(c) for c in (getattr(array, "chunks", None) or (64,) * len(shape)))
    box = tuple(max(1, min(c, s, 64)) for c, s in zip(chunks, shape, strict=True))
    grid = tuple(-(-s // b) for s, b in zip(shape, box, strict=True))
    picks = distinct(np.linspace(0, math.prod(grid) - 1, _SAMPLE_CHUNKS).round().astype(np.int64))
    parts = []
    for flat in picks:
        index = np.unravel_index(int(flat), grid)
        key = tuple(slice(i * b, min((i + 1) * b, s)) for i, b, s in zip(index, box, shape, strict=True))
        parts.append(np.asarray(array[key]).ravel())
    return np.concatenate(parts)


_FACE_OPS = {
    "max": np.maximum,
    "min": np.minimum,
    "mean": lambda a, b: (a + b) * np.float32(0.5),
}


# ------------------------------------------------------------- accumulation
# Per-edge rows are kept in runs sorted by the edge *key*
# ``pos(u) * N + pos(v)`` over node positions (``u < v``, ``N`` supervoxels):
# one int64 orders edges by (u, v), half the bytes of the two uint64 ids.
#   edge run: [key int64, count, total float64, vmin float32, vmax float32]
#   hist run: [key int64, bin uint8, count]
# ``count`` is int32 unless the volume has 2**31 faces or more. Min and max
# stay float32: the min or max of float32 face values is exact in float32.
_EDGE_ROW_BYTES = 8 + 4 + 8 + 4 + 4
_HIST_ROW_BYTES = 8 + 1 + 4


def _run_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """Index of the first row of every run of equal keys."""
    if sorted_keys.size == 0:
        return np.empty(0, np.int64)
    new = np.empty(sorted_keys.size, dtype=bool)
    new[0] = True
    np.not_equal(sorted_keys[1:], sorted_keys[:-1], out=new[1:])
    return np.flatnonzero(new)


def _fold_edge_runs(runs: list[list]) -> list:
    """One sorted edge run from many; rows of one edge are combined."""
    if len(runs) == 1:
        return runs[0]
    keys = np.concatenate([r[0] for r in runs])
    # Stable: rows of one edge add up in run order (first the folded totals,
    # then the units in scan order), so sums do not depend on thread timing.
    # Each run is sorted already, which a stable (merging) sort exploits.
    order = np.argsort(keys, kind="stable")
    start = _run_starts(keys[order])
    out = [keys[order[start]]]
    del keys
    for i, ufunc in enumerate((np.add, np.add, np.minimum, np.maximum), start=1):
        col = np.concatenate([r[i] for r in runs])
        for r in runs:
            r[i] = None  # free the parts column by column: the fold's peak stays ~2 columns
        out.append(ufunc.reduceat(col[order], start))
        del col
    return out


def _fold_hist_runs(runs: list[list], n_nodes: int, n_bins: int) -> list:
    """One sorted histogram run from many; rows of one (edge, bin) are added."""
    if len(runs) == 1:
        return runs[0]
    keys = np.concatenate([r[0] for r in runs])
    bins = np.concatenate([r[1] for r in runs])
    for r in runs:
        r[0] = r[1] = None
    if n_nodes * n_nodes * n_bins < 2**63:
        combined = keys * np.int64(n_bins)
        combined += bins
        order = np.argsort(combined, kind="stable")
        start = _run_starts(combined[order])
        del combined
    else:  # the (edge, bin) key would overflow int64: sort on both
        order = np.lexsort((bins, keys))
        k, b = keys[order], bins[order]
        new = np.r_[True, (k[1:] != k[:-1]) | (b[1:] != b[:-1])]
        del k, b
        start = np.flatnonzero(new)
    first = order[start]
    out = [keys[first], bins[first]]
    del keys, bins, first
    col = np.concatenate([r[2] for r in runs])
    for r in runs:
        r[2] = None
    out.append(np.add.reduceat(col[order], start))
    return out


class _EdgeAccumulator:
    """Per-edge statistics summed over work units, in sorted runs folded as they grow.

    Pending runs are folded into the totals once they hold more rows than
    the totals (and at least :data:`_CONSOLIDATE_ROWS`): every row is sorted
    O(log) times, and pending rows never outnumber the totals by much.
    """

    def __init__(self, n_nodes: int, n_bins: int) -> None:
        self.n_nodes = n_nodes
        self.n_bins = n_bins
        self.edge_runs: list[list] = []
        self.hist_runs: list[list] = []
        self.folded_rows = 0
        self.pending_rows = 0

    def add(self, rows: tuple | None) -> bool:
        """Add one unit's rows (:func:`~napari_connectome.graph.faces.unit_rows`); True when the runs were folded."""
        if rows is None:
            return False
        edges, hist = rows
        self.edge_runs.append(list(edges))
        self.hist_runs.append(list(hist))
        self.pending_rows += edges[0].size + hist[0].size
        if self.pending_rows > max(_CONSOLIDATE_ROWS, self.folded_rows):
            self.fold()
            return True
        return False

    def fold(self) -> None:
        if not self.edge_runs:
            return
        self.edge_runs = [_fold_edge_runs(self.edge_runs)]
        self.hist_runs = [_fold_hist_runs(self.hist_runs, self.n_nodes, self.n_bins)]
        self.folded_rows = self.n_edges + self.n_hist
        self.pending_rows = 0
        release_free_memory()

    @property
    def n_edges(self) -> int:
        """Distinct edges so far (exact right after a fold)."""
        return int(self.edge_runs[0][0].size) if self.edge_runs else 0

    @property
    def n_hist(self) -> int:
        """Distinct (edge, bin) histogram entries so far (exact right after a fold)."""
        return int(self.hist_runs[0][0].size) if self.hist_runs else 0

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for run in self.edge_runs + self.hist_runs for a in run if a is not None)


# ------------------------------------------------------------------ finish
# Edges per slice of the final conversions: their temporaries stay small
# (a few arrays of this many elements) next to the graph being made.
_CHUNK = 1 << 20


def histogram_quantiles(hist_edge: np.ndarray, hist_bin: np.ndarray, hist_count: np.ndarray,
                        n_edges: int, n_bins: int, q: float, vmin: np.ndarray,
                        vmax: np.ndarray) -> np.ndarray:
    """Quantile ``q`` of every edge from its sparse histogram.

    Linear interpolation inside the bin where the cumulative count reaches
    ``q * count``, clipped to the edge's exact ``[vmin, vmax]``.
    """
    return _histogram_quantiles(hist_edge, hist_bin, hist_count, n_edges, n_bins, (q,), vmin, vmax)[0]


def _histogram_quantiles(hist_edge, hist_bin, hist_count, n_edges: int, n_bins: int, qs, vmin,
                         vmax) -> list[np.ndarray]:
    """:func:`histogram_quantiles` for several ``qs``, over slices of :data:`_CHUNK` edges.

    Every edge has at least one histogram row and rows are sorted by edge, so
    a slice of edges is a slice of rows. The cumulative counts carry the
    offset of the rows before the slice, so the arithmetic (and every
    rounding) is that of one pass over all edges.
    """
    outs = [np.empty(n_edges, np.float32) for _ in qs]
    hist_edge = np.asarray(hist_edge)
    hist_count = np.asarray(hist_count)
    hist_bin = np.asarray(hist_bin)
    vmin, vmax = np.asarray(vmin), np.asarray(vmax)
    h0, offset = 0, 0
    for e0 in range(0, n_edges, _CHUNK):
        e1 = min(e0 + _CHUNK, n_edges)
        h1 = h0 + int(np.searchsorted(hist_edge[h0:], e1))
        cum = np.cumsum(hist_count[h0:h1], dtype=np.int64)
        cum += offset
        he = hist_edge[h0:h1]
        ids = np.arange(e0, e1)
        starts = np.searchsorted(he, ids)
        ends = np.searchsorted(he, ids, side="right")
        before = np.where(starts > 0, cum[np.maximum(starts - 1, 0)], offset)
        n = cum[ends - 1] - before
        for out, q in zip(outs, qs, strict=True):
            target = before + q * n
            idx = np.clip(np.searchsorted(cum, target, side="left"), starts, ends - 1)
            c = hist_count[h0 + idx].astype(np.float64)
            frac = (target - (cum[idx] - c)) / c
            value = (hist_bin[h0 + idx] + np.clip(frac, 0.0, 1.0)) / n_bins
            out[e0:e1] = np.clip(value, vmin[e0:e1], vmax[e0:e1])
        if h1 > h0:
            offset = int(cum[-1])
        h0 = h1
    return outs


def _finish(acc: _EdgeAccumulator, node_ids: np.ndarray, n_bins: int):
    """Graph arrays from the folded runs, freeing the runs as the arrays are made."""
    n_nodes = np.int64(max(node_ids.size, 1))
    if acc.edge_runs:
        ekey, count, total, vmin, vmax = acc.edge_runs[0]
        hkey, hbin, hcount = acc.hist_runs[0]
    else:
        ekey = hkey = np.empty(0, np.int64)
        count = hcount = np.empty(0, np.int32)
        total = np.empty(0, np.float64)
        vmin = vmax = np.empty(0, np.float32)
        hbin = np.empty(0, np.uint8)
    acc.edge_runs, acc.hist_runs = [], []
    n_edges = ekey.size
    edges = np.empty((n_edges, 2), np.uint64)
    for c0 in range(0, n_edges, _CHUNK):
        u_pos, v_pos = np.divmod(ekey[c0 : c0 + _CHUNK], n_nodes)
        edges[c0 : c0 + _CHUNK, 0] = node_ids[u_pos]
        edges[c0 : c0 + _CHUNK, 1] = node_ids[v_pos]
    del ekey
    mean = np.empty(n_edges, np.float32)
    for c0 in range(0, n_edges, _CHUNK):
        sl = slice(c0, c0 + _CHUNK)
        mean[sl] = total[sl] / np.maximum(count[sl], 1)
    del total
    contact_area = count.astype(np.int64)
    del count
    # Histogram rows to edge rows: both are sorted by edge and every edge has
    # at least one row, so an edge's row is the number of edge changes before.
    hist_edge = np.empty(hkey.size, np.int64)
    last, base = None, -1
    for c0 in range(0, hkey.size, _CHUNK):
        k = hkey[c0 : c0 + _CHUNK]
        new = np.empty(k.size, np.int64)
        new[0] = last is None or k[0] != last
        np.not_equal(k[1:], k[:-1], out=new[1:], casting="unsafe")
        np.cumsum(new, out=new)
        new += base
        hist_edge[c0 : c0 + _CHUNK] = new
        last, base = k[-1], int(new[-1])
    del hkey
    hist_bin = hbin.astype(np.uint16)
    del hbin
    hist_count = hcount.astype(np.int64)
    del hcount
    features = {"mean": mean, "min": vmin, "max": vmax}
    qs = _histogram_quantiles(hist_edge, hist_bin, hist_count, n_edges, n_bins, tuple(QUANTILES.values()),
                              vmin, vmax)
    features.update(zip(QUANTILES, qs, strict=True))
    return edges, contact_area, features, (hist_edge, hist_bin, hist_count)


# ------------------------------------------------------------ memory model
# Bytes of the finished graph: edges (2 x uint64), contact area (int64) and
# 8 float32 features per edge; edge row, bin (uint16) and count (int64) per
# histogram entry; id (uint64) and size (int64) per node.
GRAPH_BYTES_PER_EDGE = 16 + 8 + 8 * 4
GRAPH_BYTES_PER_HIST = 8 + 2 + 8
GRAPH_BYTES_PER_NODE = 16
# Work unit: a box of one block of at most this many voxels. Its faces'
# temporaries (ids, positions, keys, order: ~UNIT_BYTES_PER_FACE) are what a
# worker holds, whatever the block shape. Small enough that they stay below
# glibc's mmap threshold and are reused by the next unit; 2**20 measured
# 0.3 GiB more at the peak on random supervoxels (freed blocks kept by the
# allocator), 2**16 slower by the per-unit overhead.
_UNIT_VOXELS = 1 << 18
UNIT_BYTES_PER_FACE = 80
# Pass 1's record of one block: its ids and counts, two small arrays (NumPy
# header ~112 bytes each, plus list slots), whatever the block holds.
_BLOCK_BOOKKEEPING_BYTES = 256


def estimate_rag_memory(*, n_voxels: int, n_nodes: int, n_edges: int, n_hist: int | None = None,
                        block_voxels: int = 64 * 256 * 256, voxel_bytes: int = 8, workers: int = 1) -> int:
    """Peak bytes :func:`build_rag` needs for a graph of this size (its memory guard's estimate).

    Parameters
    ----------
    n_voxels
        Voxels of the supervoxel volume.
    n_nodes, n_edges, n_hist
        Supervoxels, edges and histogram entries (distinct (edge, bin) pairs;
        between ``n_edges`` and ``N_BINS * n_edges``; default ``n_edges``, as
        when most contacts are a few faces).
    block_voxels, voxel_bytes, workers
        Voxels of one block, bytes of one voxel of the supervoxels plus the
        signal, and worker threads: the blocks and units in flight.

    Returns
    -------
    int
        Estimated peak bytes above what the process held before.
    """
    n_hist = n_edges if n_hist is None else n_hist
    graph = GRAPH_BYTES_PER_EDGE * n_edges + GRAPH_BYTES_PER_HIST * n_hist + GRAPH_BYTES_PER_NODE * n_nodes
    # The last fold of the scan holds every row -- up to 1.5 per edge or
    # entry: rows pending from units not yet folded, and an edge seen in
    # several units -- plus the fold's order, sorted keys and one gathered
    # column (24 bytes a row).
    fold = (_EDGE_ROW_BYTES + 24) * 3 * n_edges // 2 + (_HIST_ROW_BYTES + 24) * 3 * n_hist // 2
    # While the graph is made, the folded runs are freed as its arrays appear.
    finish = graph + _EDGE_ROW_BYTES * n_edges // 2 + _HIST_ROW_BYTES * n_hist + 12 * 8 * min(_CHUNK, n_edges)
    faces = 3 * min(_UNIT_VOXELS, max(n_voxels, 1))
    working = workers * (UNIT_BYTES_PER_FACE * faces + 2 * block_voxels * voxel_bytes)
    return int(GRAPH_BYTES_PER_NODE * n_nodes + max(fold, finish) + working)


# ------------------------------------------------------------------- build
class _CountsOfBlock:
    """Pass 1 of one block on a Dask worker: its ids and voxel counts (a class, so it pickles)."""

    def __init__(self, level) -> None:
        self.level = level

    def __call__(self, block):
        return _label_counts(np.asarray(self.level.array[self.level.voxel_slices(block.write_roi)]))


class _RowsOfBlock:
    """Pass 2 of one block on a Dask worker: the rows of its boxes, folded into one edge and one histogram run."""

    def __init__(self, sv_level, sig_level, channels, kind, face, normalise, node_ids, count_dtype) -> None:
        self.sv_level, self.sig_level, self.channels = sv_level, sig_level, channels
        self.kind, self.face, self.normalise = kind, face, normalise
        self.node_ids, self.count_dtype = node_ids, count_dtype

    def __call__(self, block):
        write = self.sv_level.voxel_slices(block.write_roi)
        core = tuple(s.stop - s.start for s in write)
        ext = self.sv_level.voxel_slices(block.read_roi.intersect(self.sv_level.roi))
        labels = np.asarray(self.sv_level.array[ext])
        arr = self.sig_level.array
        if self.channels is None:
            values = self.normalise(np.asarray(arr[ext]))
        elif self.channels == 1:
            values = self.normalise(np.asarray(arr[(slice(0, 1), *ext)]))[0]
        else:
            values = self.normalise(np.asarray(arr[(slice(None), *ext)]))
        edge_runs, hist_runs = [], []
        for z0, y0, dz, dy in _units(core):
            sl = (slice(z0, z0 + dz + 1), slice(y0, y0 + dy + 1))
            sub_values = values[(slice(None), *sl)] if self.kind == "affinities" else values[sl]
            rows = unit_rows(labels[sl], sub_values, (dz, dy, core[2]), kind=self.kind, face=self.face,
                             node_ids=self.node_ids, n_bins=N_BINS, count_dtype=self.count_dtype)
            if rows is not None:
                edge_runs.append(list(rows[0]))
                hist_runs.append(list(rows[1]))
        n_vox = int(np.prod(core))
        if not edge_runs:
            return None, n_vox
        return (_fold_edge_runs(edge_runs), _fold_hist_runs(hist_runs, int(self.node_ids.size), N_BINS)), n_vox


def _units(core: tuple[int, ...]):
    """Boxes ``(z0, y0, dz, dy)`` of a block's core, each at most :data:`_UNIT_VOXELS` voxels."""
    cz, cy, cx = core
    plane = max(cy * cx, 1)
    if plane <= _UNIT_VOXELS:
        dz = max(1, _UNIT_VOXELS // plane)
        for z0 in range(0, cz, dz):
            yield z0, 0, min(dz, cz - z0), cy
    else:
        dy = max(1, _UNIT_VOXELS // max(cx, 1))
        for z0 in range(cz):
            for y0 in range(0, cy, dy):
                yield z0, y0, 1, min(dy, cy - y0)


def build_rag(
    supervoxels: MultiscaleVolume,
    signal: MultiscaleVolume | None = None,
    *,
    signal_kind: str = "boundaries",
    raw: MultiscaleVolume | None = None,
    block_shape=(64, 256, 256),
    face: str = "max",
    workers: int | None = None,
    scheduler="threads",
    progress: Progress | None = None,
    memory_gb: float | None = None,
) -> RegionGraph:
    """Build the region adjacency graph of a supervoxel volume, block by block.

    Two passes over the blocks: the first reads only the supervoxels (their
    ids and voxel counts), the second the faces. Per-edge statistics are
    kept in sorted runs keyed by node positions (28 bytes per edge and 13
    per histogram entry while scanning); the finished graph holds
    :data:`GRAPH_BYTES_PER_EDGE` (56) bytes per edge,
    :data:`GRAPH_BYTES_PER_HIST` (18) per histogram entry and 16 per
    supervoxel. Measured peak above the input volumes
    (``benchmarks/bench_graph_memory.py``, 128 × 256 × 256 voxels, 10^6
    supervoxels): 2.3 GiB for 2.5 × 10^7 edges of random supervoxels (100
    bytes per edge with its histogram entry), 1.0 GiB for 5.9 × 10^6 edges
    of compact ones (184 bytes per edge, 2.2 histogram entries each).

    Parameters
    ----------
    supervoxels
        Supervoxel labels (level 0 is used), axes ``z, y, x``; 0 = background.
    signal
        Boundary probability (``z, y, x``; float in ``[0, 1]`` or integers
        scaled by their dtype's maximum, e.g. uint8 / 255; 1 = membrane), or
        nearest-neighbour affinities (``c, z, y, x`` with 3 channels for the
        z, y, x axes) when ``signal_kind="affinities"``.
    signal_kind
        ``"boundaries"`` or ``"affinities"``; ignored when ``signal`` is None.
    raw
        The EM volume, used as a proxy signal (dark = membrane) when
        ``signal`` is None.
    block_shape
        Voxels per block ``(z, y, x)`` read at a time; the faces are worked
        on in boxes of at most 2**18 voxels of a block.
    face
        How the two voxels of a face combine into its value for a boundary
        map or the raw proxy: ``"max"`` (default), ``"mean"`` or ``"min"``.
        Affinities already give one value per face.
    workers
        Threads working on boxes (default: up to 4, one per CPU); the graph
        is the same for any number.
    scheduler
        ``"threads"`` (default: boxes of blocks on this process's threads),
        or where whole blocks run instead: ``"processes"``, a
        ``"tcp://host:port"`` Dask scheduler or a ``dask.distributed.Client``
        (:func:`~napari_connectome.blockwise.run_blockwise`). Each block
        returns its edges and histogram rows, folded here in block order: the
        graph is the same, bit for bit, on any scheduler and any number of
        workers, and the volumes are read by the workers (a cluster's workers
        must reach the project's files).
    progress
        Receives two steps per block (one per pass).
    memory_gb
        Memory the graph may plan to use, in GiB (default: the
        ``NAPARI_CONNECTOME_MEMORY_GB`` environment variable, else what the
        system has available). The need is estimated
        (:func:`estimate_rag_memory`) from the edges found so far, projected
        to the whole volume, each time the runs are folded, and exactly
        before the graph's arrays are made.

    Returns
    -------
    RegionGraph
        The graph; see the module docstring for what each feature means.

    Raises
    ------
    InputError
        Shapes of the supervoxels and the signal differ, the signal is
        missing, or it is of an unsupported kind or dtype; or the graph would
        need more memory than the limit (one line naming the supervoxels and
        the estimate; nothing is returned).
    """
    progress = progress or NullProgress()
    sv_shape = _spatial_shape(supervoxels)
    if len(sv_shape) != 3 or supervoxels.ndim != 3:
        raise InputError(supervoxels.source, f"supervoxels must be 3D (z, y, x), got axes {supervoxels.axes}")
    if not np.issubdtype(supervoxels.dtype, np.integer):
        raise InputError(supervoxels.source, f"supervoxels must hold integer ids, not {supervoxels.dtype}")
    notes: list[str] = []
    if signal is None:
        if raw is None:
            raise InputError(
                supervoxels.source,
                "a graph needs a boundary map, affinities or the raw volume (for an intensity proxy)",
            )
        signal, kind = raw, "raw-intensity-proxy"
        notes.append(
            "boundary signal is a proxy from the raw intensity (1 - normalised intensity; dark = membrane), "
            "not a boundary map"
        )
    else:
        kind = signal_kind
        if kind not in ("boundaries", "affinities"):
            raise InputError("signal_kind", f"{kind!r} is not 'boundaries' or 'affinities'")
    sig_shape = tuple(signal.shape)
    channels = None
    if kind == "affinities":
        if signal.ndim != 4 or signal.shape[0] != 3:
            raise InputError(signal.source, f"affinities must have shape (3, z, y, x), got {sig_shape}")
        spatial = sig_shape[1:]
        channels = 3
    else:
        spatial = sig_shape
        if signal.ndim == 4 and signal.shape[0] == 1:
            spatial, channels = sig_shape[1:], 1
        elif signal.ndim != 3:
            raise InputError(signal.source, f"a boundary map must be 3D (z, y, x), got shape {sig_shape}")
    if tuple(spatial) != tuple(sv_shape):
        raise InputError(
            signal.source,
            f"shape {tuple(spatial)} does not match the supervoxels {supervoxels.source} of shape {tuple(sv_shape)}",
        )
    if face not in _FACE_OPS:
        raise InputError("face", f"{face!r} is not one of {sorted(_FACE_OPS)}")
    if face != "max" and kind != "affinities":
        notes.append(f"face value = {face} of the boundary signal at the two voxels")
    block_shape = tuple(int(b) for b in block_shape)
    if len(block_shape) != 3 or min(block_shape) < 1:
        raise InputError("block_shape", f"must be three positive integers, got {block_shape}")
    normalise = signal_normaliser(signal, kind)
    sv_level = supervoxels.levels[0]
    sv_arr = sv_level.array
    sig_arr = signal.levels[0].array
    # Counted, not listed: a volume whose metadata claims 10^18 voxels would
    # otherwise fill memory with block origins before the guard below.
    n_blocks = math.prod(-(-s // b) for s, b in zip(sv_shape, block_shape, strict=True))
    n_voxels = math.prod(sv_shape)
    # Face counts fit int32 unless the volume has 2**31 faces or more.
    count_dtype = np.int32 if 3 * n_voxels < 2**31 else np.int64
    workers = max(1, int(workers if workers is not None else min(4, os.cpu_count() or 1)))
    block_voxels = int(np.prod([min(b, s) for b, s in zip(block_shape, sv_shape, strict=True)]))
    voxel_bytes = np.dtype(supervoxels.dtype).itemsize + 4 * (channels or 1)

    # One voxel of context on the high side of every block: each face is then
    # counted by exactly one block (the one holding its low voxel).
    grid = BlockGrid.of_level(sv_level, block_voxels=block_shape, context_voxels=0, context_high_voxels=1)

    def guard(n_edges: int, n_hist: int, held: int, when: str) -> None:
        need = estimate_rag_memory(n_voxels=n_voxels, n_nodes=node_ids.size, n_edges=n_edges, n_hist=n_hist,
                                   block_voxels=block_voxels, voxel_bytes=voxel_bytes, workers=workers)
        check_memory(need, what=f"the region graph of {node_ids.size:,} supervoxels and {when}",
                     source=supervoxels.source, limit_gb=memory_gb, held=held)

    pool = None
    if workers > 1:
        from concurrent.futures import ThreadPoolExecutor

        # NumPy releases the GIL in its sorts and comparisons, so units
        # overlap on threads; results come back in order, so the graph does
        # not depend on the number of workers.
        pool = ThreadPoolExecutor(workers, thread_name_prefix="rag")

    def ordered(fn, items):
        return map(fn, items) if pool is None else _bounded_map(pool, fn, items, 2 * workers)

    # Pass 1 keeps two small arrays per block until it ends: refuse up front
    # when that alone cannot fit, rather than grow until the machine gives out.
    check_memory(n_blocks * _BLOCK_BOOKKEEPING_BYTES,
                 what=f"the region graph's scan of {n_voxels:,} voxels in {n_blocks:,} blocks of {block_shape}",
                 source=supervoxels.source, limit_gb=memory_gb)
    progress.start(2 * n_blocks, "region adjacency graph")
    try:
        # Pass 1: supervoxel ids and sizes, so that edges can be keyed by
        # node positions in pass 2.
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        on_blocks = scheduler not in ("threads", "synchronous")
        count_work = _CountsOfBlock(sv_level)  # one block function for threads and Dask workers
        local = "threads" if workers > 1 and scheduler != "synchronous" else "synchronous"
        run_blockwise(count_work, grid, scheduler=scheduler if on_blocks else local, workers=workers,
                      progress=PartOf(progress), collect=lambda block, counted: parts.append(counted))
        ids = np.concatenate([p[0] for p in parts]) if parts else np.empty(0, np.uint64)
        cnt = np.concatenate([p[1] for p in parts]) if parts else np.empty(0, np.int64)
        parts.clear()  # the per-block arrays, before the graph grows
        node_ids, inv = np.unique(ids, return_inverse=True)
        node_ids = node_ids.astype(np.uint64)
        node_sizes = np.bincount(inv.ravel(), weights=cnt, minlength=node_ids.size).astype(np.int64)
        del ids, cnt, inv
        if node_ids.size >= 3_000_000_000:
            raise InputError(supervoxels.source, f"{node_ids.size:,} supervoxels: more than one graph can key "
                             "(3 x 10^9); build graphs of smaller regions")
        guard(0, 0, node_ids.nbytes + node_sizes.nbytes, "its blocks")

        # Pass 2: faces, unit by unit; blocks are read as the units are
        # handed out, so at most a few blocks are in memory.
        def units():
            for block in grid:
                write = sv_level.voxel_slices(block.write_roi)
                core = tuple(s.stop - s.start for s in write)
                ext = sv_level.voxel_slices(block.read_roi.intersect(sv_level.roi))
                labels = np.asarray(sv_arr[ext])
                if channels is None:
                    values = normalise(np.asarray(sig_arr[ext]))
                elif channels == 1:
                    values = normalise(np.asarray(sig_arr[(slice(0, 1), *ext)]))[0]
                else:
                    values = normalise(np.asarray(sig_arr[(slice(None), *ext)]))
                boxes = list(_units(core))
                for i, (z0, y0, dz, dy) in enumerate(boxes):
                    yield labels, values, (z0, y0, dz, dy, core[2]), i == len(boxes) - 1

        def unit_work(item):
            labels, values, (z0, y0, dz, dy, cx), last = item
            sl = (slice(z0, z0 + dz + 1), slice(y0, y0 + dy + 1))
            sub_labels = labels[sl]
            sub_values = values[(slice(None), *sl)] if kind == "affinities" else values[sl]
            sub_core = (dz, dy, cx)
            rows = unit_rows(sub_labels, sub_values, sub_core, kind=kind, face=face, node_ids=node_ids,
                             n_bins=N_BINS, count_dtype=count_dtype)
            return rows, dz * dy * cx, last

        acc = _EdgeAccumulator(int(node_ids.size), N_BINS)
        done = [0]

        def take(rows, n_vox: int) -> None:
            done[0] += n_vox
            if acc.add(rows) and done[0] < n_voxels:
                # Right after a fold the counts are exact for the part scanned:
                # project them to the whole volume.
                scale = n_voxels / max(done[0], 1)
                guard(int(acc.n_edges * scale), int(acc.n_hist * scale),
                      acc.nbytes + node_ids.nbytes + node_sizes.nbytes,
                      f"about {int(acc.n_edges * scale):,} edges (projected from {done[0] / n_voxels:.0%} of "
                      f"the volume)")

        if on_blocks:
            # Whole blocks on the Dask workers, each folding its boxes' rows; they are taken here as they
            # come back, in block order, so every edge's parts are added in the order the threads add them
            # and at most a window of blocks' rows waits in memory.
            block_rows = _RowsOfBlock(sv_level, signal.levels[0], channels, kind, face, normalise, node_ids,
                                      count_dtype)
            run_blockwise(block_rows, grid, scheduler=scheduler, workers=workers, progress=PartOf(progress),
                          collect=lambda block, result: take(*result), description="region graph blocks")
        else:
            for rows, n_vox, last in ordered(unit_work, units()):
                take(rows, n_vox)
                if last:
                    progress.advance(1)
        acc.fold()
        guard(acc.n_edges, acc.n_hist, acc.nbytes + node_ids.nbytes + node_sizes.nbytes,
              f"{acc.n_edges:,} edges")
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        progress.close()
    edges, contact_area, features, histogram = _finish(acc, node_ids, N_BINS)
    release_free_memory()  # the units' temporaries, kept by the allocator of each worker thread
    return RegionGraph(
        node_ids=node_ids,
        node_sizes=node_sizes,
        edges=edges,
        contact_area=contact_area,
        features=features,
        signal=kind,
        voxel_size=tuple(float(v) for v in supervoxels.voxel_size),
        histogram=histogram,
        n_bins=N_BINS,
        notes=notes,
        source=str(supervoxels.source),
    )


def _bounded_map(pool, fn, items, in_flight: int):
    """``pool.map`` that keeps at most ``in_flight`` results in memory (``items`` read lazily)."""
    from collections import deque

    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= in_flight:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _label_counts(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ids (no 0) and voxel counts of a block."""
    flat = labels.ravel()
    if flat.size == 0:
        return np.empty(0, np.uint64), np.empty(0, np.int64)
    lo, hi = int(flat.min()), int(flat.max())
    if lo < 0:
        raise InputError("supervoxels", f"negative supervoxel id {lo}")
    if hi < 4 * flat.size + 1024:
        # Dense ids (the usual case): a bincount is many times faster than a sort (compiled, without
        # the GIL, so that blocks are counted on every worker at once).
        counts = _dense_counts(flat, hi)
        ids = np.flatnonzero(counts)
        counts = counts[ids]
    else:
        ids, counts = np.unique(flat, return_counts=True)
    keep = ids != 0
    return ids[keep].astype(np.uint64), counts[keep].astype(np.int64)
