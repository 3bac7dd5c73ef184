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
histogram entries, not with the volume).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_connectome.atomic import save_npz_atomic
from napari_connectome.errors import InputError
from napari_connectome.progress import NullProgress, Progress
from napari_connectome.volume import MultiscaleVolume

SIGNALS = ("boundaries", "affinities", "raw-intensity-proxy")
QUANTILES = {"q10": 0.10, "q25": 0.25, "q50": 0.50, "q75": 0.75, "q90": 0.90}
FEATURES = ("mean", "min", "max", *QUANTILES)
N_BINS = 256
FILE_FORMAT = "napari-connectome-rag"
FILE_VERSION = 1

# Pending per-block rows are folded into the running totals past this many,
# which bounds the memory a long scan can hold in unmerged block results.
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
        coarse = signal.levels[-1]
        step = max(1, int(round((np.prod(coarse.shape) / 2**24) ** (1 / 3))))
        sample = np.asarray(coarse.array[tuple(slice(None, None, step) for _ in coarse.shape)])
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


_FACE_OPS = {
    "max": np.maximum,
    "min": np.minimum,
    "mean": lambda a, b: (a + b) * np.float32(0.5),
}


def _face_values(labels: np.ndarray, values: np.ndarray | None, axis: int, core: tuple[int, ...],
                 kind: str, face: str = "max") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The faces along ``axis`` owned by the block: low voxel in the core."""
    n = min(core[axis], labels.shape[axis] - 1)
    lo_sl = [slice(0, c) for c in core]
    hi_sl = list(lo_sl)
    lo_sl[axis] = slice(0, n)
    hi_sl[axis] = slice(1, n + 1)
    a = labels[tuple(lo_sl)]
    b = labels[tuple(hi_sl)]
    mask = (a != b) & (a != 0) & (b != 0)
    a, b = a[mask], b[mask]
    if kind == "affinities":
        v = 1.0 - values[(axis, *hi_sl)][mask]
    else:
        v = _FACE_OPS[face](values[tuple(lo_sl)][mask], values[tuple(hi_sl)][mask])
    return a, b, v


class _EdgeAccumulator:
    """Per-edge statistics summed over blocks, folded periodically to bound memory."""

    def __init__(self, n_bins: int) -> None:
        self.n_bins = n_bins
        self.pending: list[tuple] = []
        self.pending_hist: list[tuple] = []
        self.rows = 0
        self.total = None
        self.total_hist = None

    def add(self, stats: tuple | None) -> None:
        """Add one block's :func:`_block_stats`."""
        if stats is None:
            return
        edges, hist = stats
        self.pending.append(edges)
        self.pending_hist.append(hist)
        self.rows += edges[0].size + hist[0].size
        if self.rows > _CONSOLIDATE_ROWS:
            self.fold()

    def fold(self) -> None:
        parts = self.pending + ([self.total] if self.total is not None else [])
        hparts = self.pending_hist + ([self.total_hist] if self.total_hist is not None else [])
        self.pending, self.pending_hist, self.rows = [], [], 0
        if not parts:
            return
        u, v, count, total, vmin, vmax = (np.concatenate(c) for c in zip(*parts, strict=True))
        order = np.lexsort((v, u))
        u, v, count, total, vmin, vmax = (a[order] for a in (u, v, count, total, vmin, vmax))
        start = np.flatnonzero(np.r_[True, (u[1:] != u[:-1]) | (v[1:] != v[:-1])])
        self.total = (
            u[start], v[start], np.add.reduceat(count, start), np.add.reduceat(total, start),
            np.minimum.reduceat(vmin, start), np.maximum.reduceat(vmax, start),
        )
        hu, hv, hb, hc = (np.concatenate(c) for c in zip(*hparts, strict=True))
        order = np.lexsort((hb, hv, hu))
        hu, hv, hb, hc = (a[order] for a in (hu, hv, hb, hc))
        start = np.flatnonzero(np.r_[True, (hu[1:] != hu[:-1]) | (hv[1:] != hv[:-1]) | (hb[1:] != hb[:-1])])
        self.total_hist = (hu[start], hv[start], hb[start], np.add.reduceat(hc, start))

    def result(self):
        self.fold()
        if self.total is None:
            e = np.empty(0, np.uint64)
            return (e, e, np.empty(0, np.int64), np.empty(0), np.empty(0), np.empty(0)), (
                e, e, np.empty(0, np.uint16), np.empty(0, np.int64))
        return self.total, self.total_hist


def _block_stats(u: np.ndarray, v: np.ndarray, val: np.ndarray, n_bins: int) -> tuple | None:
    """Per-edge count, sum, min, max and sparse histogram of one block's faces."""
    if u.size == 0:
        return None
    uniq, lu, lv = _compact(u, v)
    n = np.int64(uniq.size)
    lo, hi = np.minimum(lu, lv), np.maximum(lu, lv)
    bins = np.minimum((val * n_bins).astype(np.int64), n_bins - 1)
    key = (lo * n + hi) * n_bins + bins
    # Any order of equal keys gives the same sums up to rounding; the default
    # (vectorised) sort is several times faster than a stable one.
    order = np.argsort(key)
    key, val = key[order], val[order].astype(np.float64)
    # Histogram entries: runs of equal (edge, bin).
    hstart = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    hcount = np.diff(np.r_[hstart, key.size])
    hkey = key[hstart]
    hedge = hkey // n_bins
    # Edge statistics: runs of equal edge.
    ekey = key // n_bins
    estart = np.flatnonzero(np.r_[True, ekey[1:] != ekey[:-1]])
    count = np.diff(np.r_[estart, ekey.size])
    total = np.add.reduceat(val, estart)
    vmin = np.minimum.reduceat(val, estart)
    vmax = np.maximum.reduceat(val, estart)
    eu = uniq[ekey[estart] // n].astype(np.uint64)
    ev = uniq[ekey[estart] % n].astype(np.uint64)
    hist = (uniq[hedge // n].astype(np.uint64), uniq[hedge % n].astype(np.uint64),
            (hkey % n_bins).astype(np.uint16), hcount)
    return (eu, ev, count, total, vmin, vmax), hist


def _compact(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted distinct labels of ``u`` and ``v``, and each one's position among them."""
    lo = int(min(u.min(), v.min()))
    span = int(max(u.max(), v.max())) - lo + 1
    if span <= 4 * (u.size + v.size) + 4096:
        # Ids of one block usually lie in a narrow range: a lookup table
        # replaces the sort that np.unique would do.
        present = np.zeros(span, dtype=bool)
        present[(u - lo).astype(np.int64)] = True
        present[(v - lo).astype(np.int64)] = True
        uniq = np.flatnonzero(present)
        rank = np.cumsum(present, dtype=np.int64) - 1
        return (uniq + lo).astype(np.uint64), rank[(u - lo).astype(np.int64)], rank[(v - lo).astype(np.int64)]
    uniq, inv = np.unique(np.concatenate([u, v]), return_inverse=True)
    inv = inv.ravel().astype(np.int64)
    return uniq, inv[: u.size], inv[u.size :]


def histogram_quantiles(hist_edge: np.ndarray, hist_bin: np.ndarray, hist_count: np.ndarray,
                        n_edges: int, n_bins: int, q: float, vmin: np.ndarray,
                        vmax: np.ndarray) -> np.ndarray:
    """Quantile ``q`` of every edge from its sparse histogram.

    Linear interpolation inside the bin where the cumulative count reaches
    ``q * count``, clipped to the edge's exact ``[vmin, vmax]``.
    """
    if n_edges == 0:
        return np.empty(0, np.float32)
    cum = np.cumsum(hist_count, dtype=np.int64)
    starts = np.searchsorted(hist_edge, np.arange(n_edges))
    ends = np.searchsorted(hist_edge, np.arange(n_edges), side="right")
    before = np.where(starts > 0, cum[np.maximum(starts - 1, 0)], 0)
    n = cum[ends - 1] - before
    target = before + q * n
    idx = np.clip(np.searchsorted(cum, target, side="left"), starts, ends - 1)
    c = hist_count[idx].astype(np.float64)
    frac = (target - (cum[idx] - c)) / c
    value = (hist_bin[idx] + np.clip(frac, 0.0, 1.0)) / n_bins
    return np.clip(value, vmin, vmax).astype(np.float32)


def _blocks(shape: tuple[int, ...], block_shape: tuple[int, ...]):
    grid = [range(0, s, b) for s, b in zip(shape, block_shape, strict=True)]
    for z in grid[0]:
        for y in grid[1]:
            for x in grid[2]:
                yield (z, y, x)


def build_rag(
    supervoxels: MultiscaleVolume,
    signal: MultiscaleVolume | None = None,
    *,
    signal_kind: str = "boundaries",
    raw: MultiscaleVolume | None = None,
    block_shape=(64, 256, 256),
    face: str = "max",
    workers: int | None = None,
    progress: Progress | None = None,
) -> RegionGraph:
    """Build the region adjacency graph of a supervoxel volume, block by block.

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
        Voxels per block ``(z, y, x)``; memory per block is a few times its size.
    face
        How the two voxels of a face combine into its value for a boundary
        map or the raw proxy: ``"max"`` (default), ``"mean"`` or ``"min"``.
        Affinities already give one value per face.
    workers
        Threads working on blocks (default: up to 4, one per CPU); the graph
        is the same for any number.
    progress
        Receives one step per block.

    Returns
    -------
    RegionGraph
        The graph; see the module docstring for what each feature means.

    Raises
    ------
    InputError
        Shapes of the supervoxels and the signal differ, the signal is
        missing, or it is of an unsupported kind or dtype.
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
    sv_arr = supervoxels.levels[0].array
    sig_arr = signal.levels[0].array
    acc = _EdgeAccumulator(N_BINS)
    size_parts: list[tuple[np.ndarray, np.ndarray]] = []
    blocks = list(_blocks(sv_shape, block_shape))

    def work(origin):
        core = tuple(min(b, s - o) for o, b, s in zip(origin, block_shape, sv_shape, strict=True))
        ext = tuple(slice(o, min(o + c + 1, s)) for o, c, s in zip(origin, core, sv_shape, strict=True))
        labels = np.asarray(sv_arr[ext])
        if channels is None:
            values = normalise(np.asarray(sig_arr[ext]))
        elif channels == 1:
            values = normalise(np.asarray(sig_arr[(slice(0, 1), *ext)]))[0]
        else:
            values = normalise(np.asarray(sig_arr[(slice(None), *ext)]))
        sizes = _label_counts(labels[tuple(slice(0, c) for c in core)])
        parts = [_face_values(labels, values, ax, core, kind, face) for ax in range(3)]
        u = np.concatenate([p[0] for p in parts]).astype(np.uint64)
        v = np.concatenate([p[1] for p in parts]).astype(np.uint64)
        val = np.concatenate([p[2] for p in parts]).astype(np.float32)
        return sizes, _block_stats(u, v, val, N_BINS)

    workers = max(1, int(workers if workers is not None else min(4, os.cpu_count() or 1)))
    progress.start(len(blocks), "region adjacency graph")
    try:
        if workers == 1 or len(blocks) == 1:
            results = map(work, blocks)
            pool = None
        else:
            from concurrent.futures import ThreadPoolExecutor

            # NumPy releases the GIL in its sorts and comparisons, so blocks
            # overlap on threads; results come back in block order, so the
            # graph does not depend on the number of workers.
            pool = ThreadPoolExecutor(workers, thread_name_prefix="rag")
            results = _bounded_map(pool, work, blocks, 2 * workers)
        try:
            for sizes, stats in results:
                size_parts.append(sizes)
                acc.add(stats)
                progress.advance(1)
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
    finally:
        progress.close()
    (eu, ev, count, total, vmin, vmax), (hu, hv, hb, hc) = acc.result()
    ids = np.concatenate([p[0] for p in size_parts]) if size_parts else np.empty(0, np.uint64)
    cnt = np.concatenate([p[1] for p in size_parts]) if size_parts else np.empty(0, np.int64)
    node_ids, inv = np.unique(ids, return_inverse=True)
    node_sizes = np.bincount(inv.ravel(), weights=cnt, minlength=node_ids.size).astype(np.int64)
    edges = np.stack([eu, ev], axis=1).astype(np.uint64) if eu.size else np.empty((0, 2), np.uint64)
    n_edges = edges.shape[0]
    # Histogram rows to edge rows: both are sorted by (u, v).
    hist_edge = _rows_of(edges, hu, hv)
    vmin32, vmax32 = vmin.astype(np.float32), vmax.astype(np.float32)
    features = {
        "mean": (total / np.maximum(count, 1)).astype(np.float32),
        "min": vmin32,
        "max": vmax32,
    }
    for name, q in QUANTILES.items():
        features[name] = histogram_quantiles(hist_edge, hb, hc, n_edges, N_BINS, q, vmin32, vmax32)
    return RegionGraph(
        node_ids=node_ids.astype(np.uint64),
        node_sizes=node_sizes,
        edges=edges,
        contact_area=count.astype(np.int64),
        features=features,
        signal=kind,
        voxel_size=tuple(float(v) for v in supervoxels.voxel_size),
        histogram=(hist_edge, hb.astype(np.uint16), hc.astype(np.int64)),
        n_bins=N_BINS,
        notes=notes,
    )


def _bounded_map(pool, fn, items, in_flight: int):
    """``pool.map`` that keeps at most ``in_flight`` results in memory."""
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
        # Dense ids (the usual case): a bincount is many times faster than a sort.
        counts = np.bincount(flat.astype(np.int64, copy=False), minlength=hi + 1)
        ids = np.flatnonzero(counts)
        counts = counts[ids]
    else:
        ids, counts = np.unique(flat, return_counts=True)
    keep = ids != 0
    return ids[keep].astype(np.uint64), counts[keep].astype(np.int64)


def _rows_of(edges: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Row in ``edges`` (sorted by u, v) of each (u, v) pair known to be there."""
    if edges.shape[0] == 0:
        return np.empty(0, np.int64)
    node_ids = np.unique(edges)
    n = np.int64(node_ids.size)
    ek = np.searchsorted(node_ids, edges[:, 0]).astype(np.int64) * n + np.searchsorted(node_ids, edges[:, 1])
    qk = np.searchsorted(node_ids, u).astype(np.int64) * n + np.searchsorted(node_ids, v)
    return np.searchsorted(ek, qk).astype(np.int64)
