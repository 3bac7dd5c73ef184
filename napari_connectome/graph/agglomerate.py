"""Hierarchical agglomeration of supervoxels by mean boundary signal, with its merge tree.

The scheme of gala and waterz ("mean affinity"): repeatedly merge the two
adjacent regions whose boundary is weakest, where the boundary between two
regions is the **contact-area-weighted mean** of the chosen feature over every
RAG edge between their supervoxels. For the ``"mean"`` feature that is exactly
the mean face value over the whole contact (total sum / total faces). Merging
never lowers a boundary below the score of the merge that made it (a weighted
mean of values that are all at least that score), so the scores of the
recorded merges are non-decreasing and the segmentation at a threshold ``T``
is simply the first ``k`` merges with score ``<= T``.

Every merge is kept, until no two regions touch, so the threshold can be
chosen afterwards (:meth:`MergeTree.mapping_at` for any ``T`` in milliseconds)
and any automatic merge can be undone by cutting the tree below it.

**Ties.** Boundaries are taken in order of ``(score, tie key)``: the tie key
of a RAG edge is a fixed hash of its row, and a boundary between two regions
carries the smallest tie key of the edges it combines (:func:`_tie_keys`).
The merges therefore depend only on the graph, never on how a loop numbers
its regions -- which is what lets three ways of computing them give the same
tree: a heap loop over Python dicts (graphs of at most :data:`HEAP_EDGES`
edges; fastest there), rounds of simultaneous merges on NumPy arrays
(:func:`_round_merges`; fast while many regions can merge at once, as in
compact supervoxels), and the same heap loop on NumPy arrays
(:func:`_lean_heap_merge`; ~70 bytes per edge instead of ~700, for what the
rounds leave). Only the sums of weights may round differently in the last bit
when they are not exact in float64.

Measured (``benchmarks/bench_graph_memory.py``, 10^6 supervoxels, 2 CPUs):
the full tree of 2.5 × 10^7 edges between random supervoxels takes 270-310 s and
1.8 GiB above the loaded graph (the dict heap loop passed 10 GiB); of 5.9 ×
10^6 edges between compact supervoxels 20 s and 0.36 GiB (before: 320 s and
2.9 GiB).
"""

from __future__ import annotations

import heapq
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_connectome.atomic import save_npz_atomic
from napari_connectome.errors import InputError
from napari_connectome.graph.rag import RegionGraph, _load_npz, _run_starts
from napari_connectome.memory import check_memory, release_free_memory
from napari_connectome.progress import NullProgress, Progress

FILE_FORMAT = "napari-connectome-merge-tree"
FILE_VERSION = 1


@dataclass
class MergeTree:
    """Every merge of a hierarchical agglomeration, in order of score.

    Regions are numbered like SciPy's linkage: ``0 .. N-1`` are the
    supervoxels (positions in :attr:`node_ids`), merge ``k`` creates region
    ``N + k`` from regions ``merges[k, 0]`` and ``merges[k, 1]``.

    Attributes
    ----------
    node_ids
        ``(N,)`` uint64 sorted supervoxel ids (the RAG's nodes).
    merges
        ``(K, 2)`` int64 regions merged by each merge.
    scores
        ``(K,)`` float64 boundary score of each merge, non-decreasing.
    edges
        ``(E, 2)`` uint64 the RAG edges (supervoxel id pairs) the tree was built on.
    feature
        The RAG edge feature that was averaged (``"mean"``, ``"q50"``, ...).
    """

    node_ids: np.ndarray
    merges: np.ndarray
    scores: np.ndarray
    edges: np.ndarray
    feature: str = "mean"
    _rep: np.ndarray | None = field(default=None, repr=False)
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def n_nodes(self) -> int:
        return int(self.node_ids.size)

    @property
    def n_merges(self) -> int:
        return int(self.scores.size)

    def __len__(self) -> int:
        return self.n_merges

    @property
    def new_ids(self) -> np.ndarray:
        """Region id created by each merge: ``N + k``."""
        return np.arange(self.n_nodes, self.n_nodes + self.n_merges, dtype=np.int64)

    def representatives(self) -> np.ndarray:
        """``(N + K,)`` smallest supervoxel position inside every region."""
        if self._rep is None:
            n = self.n_nodes
            rep = np.empty(n + self.n_merges, dtype=np.int64)
            rep[:n] = np.arange(n)
            # Each merge refers only to earlier regions: one forward pass.
            a, b = self.merges[:, 0].tolist(), self.merges[:, 1].tolist()
            r = rep.tolist()
            for k in range(self.n_merges):
                ra, rb = r[a[k]], r[b[k]]
                r[n + k] = ra if ra < rb else rb
            self._rep = np.asarray(r, dtype=np.int64)
        return self._rep

    def merge_supervoxels(self) -> np.ndarray:
        """``(K, 2)`` uint64: the smallest supervoxel id on each side of every merge."""
        rep = self.representatives()
        return self.node_ids[rep[self.merges]] if self.n_merges else np.empty((0, 2), np.uint64)

    def n_merges_at(self, threshold: float) -> int:
        """How many merges have score ``<= threshold``."""
        return int(np.searchsorted(self.scores, float(threshold), side="right"))

    def _labels(self, k: int) -> np.ndarray:
        """Node position -> smallest node position of its segment after ``k`` merges."""
        if k in self._cache:
            return self._cache[k]
        n = self.n_nodes
        if k == 0 or n == 0:
            labels = np.arange(n, dtype=np.int64)
        else:
            from scipy.sparse import coo_matrix
            from scipy.sparse.csgraph import connected_components

            rep = self.representatives()
            pairs = rep[self.merges[:k]]
            graph = coo_matrix(
                (np.ones(k, dtype=np.int8), (pairs[:, 0], pairs[:, 1])), shape=(n, n)
            ).tocsr()
            _, comp = connected_components(graph, directed=False)
            # Positions are in id order, so the first position of a component
            # is its smallest supervoxel.
            _, first, inverse = np.unique(comp, return_index=True, return_inverse=True)
            labels = first[inverse.ravel()].astype(np.int64)
        if len(self._cache) > 8:
            self._cache.clear()
        self._cache[k] = labels
        return labels

    def mapping_at(self, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """The segmentation after every merge with score ``<= threshold``.

        Returns
        -------
        sv_ids, segment_ids
            ``(N,)`` uint64 each, sorted by supervoxel id; a segment's id is its
            smallest supervoxel id.
        """
        labels = self._labels(self.n_merges_at(threshold))
        return self.node_ids.copy(), self.node_ids[labels]

    def merge_edges_at(self, threshold: float) -> np.ndarray:
        """``(E_k, 2)`` uint64 RAG edges with both ends in one segment at ``threshold``."""
        labels = self._labels(self.n_merges_at(threshold))
        if self.edges.shape[0] == 0:
            return np.empty((0, 2), np.uint64)
        ends = np.searchsorted(self.node_ids, self.edges)
        inside = labels[ends[:, 0]] == labels[ends[:, 1]]
        return self.edges[inside]

    def n_segments_at(self, threshold: float) -> int:
        """Number of segments at ``threshold``."""
        return self.n_nodes - self.n_merges_at(threshold)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the tree to one ``.npz`` file (atomically)."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_suffix(".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        save_npz_atomic(
            path,
            {
                "format": np.array(FILE_FORMAT),
                "version": np.array(FILE_VERSION),
                "node_ids": self.node_ids,
                "merges": self.merges,
                "scores": self.scores,
                "edges": self.edges,
                "feature": np.array(self.feature),
            },
        )
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> MergeTree:
        """Read a tree written by :meth:`save`."""
        data = _load_npz(path, FILE_FORMAT, FILE_VERSION)
        tree = cls(
            node_ids=data["node_ids"],
            merges=data["merges"].reshape(-1, 2).astype(np.int64),
            scores=data["scores"].astype(np.float64),
            edges=data["edges"].reshape(-1, 2),
            feature=str(data["feature"]),
        )
        n, k = tree.n_nodes, tree.n_merges
        bad = k and (tree.merges.min() < 0 or (tree.merges >= n + np.arange(k)[:, None]).any())
        if bad or k >= max(n, 1):
            raise InputError(path, "the merge tree is inconsistent (a merge refers to a region not yet made)")
        return tree


# Graphs with at most this many edges are agglomerated by one heap loop over
# Python dicts (HEAP_BYTES_PER_EDGE); larger ones go through rounds of
# simultaneous merges, then that loop once at most this many edges remain, or
# the lean (array) heap loop if the rounds stop being worth their pass first.
HEAP_EDGES = 100_000
# Rounds stop once one merges fewer regions than this fraction of the
# boundaries it passes over: a round costs ~0.5 us per boundary, the lean
# heap loop ~300 us per merge (measured at 2.5 x 10^7 edges).
ROUND_MIN_RATE = 0.002
# The lean loop's heap of changed boundaries (~170 bytes an entry) is merged
# into its sorted run past this many entries.
LEAN_HEAP_LIMIT = 1 << 20
# Memory model (bytes; benchmarks/bench_graph_memory.py measured 530-780 per
# edge for the dict loop, ~45 for rounds and 78 for the lean loop, slots and
# per-region state included, at 10^6 supervoxels):
# the dict loop holds a three-item list, two dict entries and heap tuples per
# edge; a round holds endpoints, sums, areas and tie keys (24 bytes per edge)
# plus the sort of the boundaries it rewires; the lean loop the same arrays,
# each slot's region pair, listed at both ends, a pair table (12 bytes per
# live slot) and a sorted run (4-8).
HEAP_BYTES_PER_EDGE = 900
HEAP_BYTES_PER_NODE = 300
ROUND_BYTES_PER_EDGE = 56
LEAN_BYTES_PER_EDGE = 72
LEAN_BYTES_PER_NODE = 200
TREE_BYTES_PER_NODE = 8 + 3 * 24  # node ids; merges, scores and the loop's lists per merge
TREE_BYTES_PER_EDGE = 16  # the tree's copy of the edges


def estimate_agglomerate_memory(n_nodes: int, n_edges: int) -> int:
    """Peak bytes :func:`agglomerate` needs on a graph of this size (its memory guard's estimate).

    Above what the process holds already (the graph itself). Graphs up to
    :data:`HEAP_EDGES` edges: :data:`HEAP_BYTES_PER_EDGE` per edge; larger
    ones: :data:`ROUND_BYTES_PER_EDGE` or :data:`LEAN_BYTES_PER_EDGE` per
    edge, whichever is more, or the heap loop on :data:`HEAP_EDGES` edges.
    """
    tree = TREE_BYTES_PER_NODE * n_nodes + TREE_BYTES_PER_EDGE * n_edges
    heap = HEAP_BYTES_PER_EDGE * min(n_edges, HEAP_EDGES) + HEAP_BYTES_PER_NODE * n_nodes
    if n_edges <= HEAP_EDGES:
        return int(heap + tree)
    arrays = max(ROUND_BYTES_PER_EDGE, LEAN_BYTES_PER_EDGE) * n_edges + LEAN_BYTES_PER_NODE * n_nodes
    return int(max(arrays, heap) + tree)


def agglomerate(rag: RegionGraph, *, feature: str = "mean", progress: Progress | None = None,
                memory_gb: float | None = None) -> MergeTree:
    """Merge supervoxels hierarchically by mean boundary signal, recording every merge.

    Graphs of at most :data:`HEAP_EDGES` edges go through one heap loop over
    Python dicts (about :data:`HEAP_BYTES_PER_EDGE` bytes per edge). Larger
    graphs are first contracted in rounds (:func:`_round_merges`): each round
    merges, at once, every pair of regions whose boundary comes first for
    both, and grows each pair along the regions whose first boundary leads
    to it, as far as no other boundary could come first -- merges the heap
    loop makes too, at the same scores. What the rounds leave goes to the
    heap loop, over dicts when at most :data:`HEAP_EDGES` edges remain, else
    over arrays (:func:`_lean_heap_merge`, about
    :data:`LEAN_BYTES_PER_EDGE` bytes per edge). Merges are then put in the
    order of their scores: every path gives the same tree (same merges, same
    scores, same segmentation at every threshold); the order of merges with
    equal scores, and which side of a merge is listed first, may differ.
    Measured on 10⁶ supervoxels (``benchmarks/bench_graph_memory.py``): 2.5
    × 10⁷ random edges in 270-310 s and 1.8 GiB (78 bytes per edge) above the
    graph; 5.9 × 10⁶ compact ones in 20 s and 0.36 GiB.

    Parameters
    ----------
    rag
        The region adjacency graph.
    feature
        Edge feature averaged over contacts (``"mean"`` by default; any of
        :attr:`RegionGraph.features`, e.g. ``"q50"``). Between merged regions
        the score is the contact-area-weighted mean of the feature over their
        RAG edges.
    progress
        Receives one step per 1000 merges.
    memory_gb
        Memory the agglomeration may plan to use, in GiB (default: the
        ``NAPARI_CONNECTOME_MEMORY_GB`` environment variable, else what the
        system has available); checked up front against
        :func:`estimate_agglomerate_memory`.

    Returns
    -------
    MergeTree
        All merges until no two regions are adjacent, by non-decreasing score.

    Raises
    ------
    InputError
        The agglomeration would need more memory than the limit (one line,
        naming the graph's source and the estimate), or ``feature`` is unknown.
    """
    progress = progress or NullProgress()
    n, n_edges = rag.n_nodes, rag.n_edges
    weight = rag.edge_weight(feature)
    check_memory(estimate_agglomerate_memory(n, n_edges),
                 what=f"the merge tree of {n:,} supervoxels and {n_edges:,} edges",
                 source=rag.source or "the region graph", limit_gb=memory_gb)
    step = 1000
    total = max(n - 1, 0) // step + 1
    progress.start(total, "agglomeration")
    try:
        if n_edges <= HEAP_EDGES:
            ends = rag.edge_endpoints()
            area = rag.contact_area.astype(np.float64)
            wsum = weight.astype(np.float64) * area
            score = wsum / np.maximum(area, 1.0)
            merged_a, merged_b, scores = _heap_merge(
                ends[:, 0].tolist(), ends[:, 1].tolist(), wsum.tolist(), area.tolist(), score.tolist(),
                _tie_keys(n_edges).tolist(), list(range(n)), n, 0, progress, step)
            merges = np.stack([np.asarray(merged_a, np.int64), np.asarray(merged_b, np.int64)], axis=1)
            # A weighted mean of values >= s can round one ulp below s; the
            # prefix property of thresholds needs the scores sorted exactly.
            ordered_scores = np.maximum.accumulate(np.asarray(scores, dtype=np.float64))
        else:
            merges, ordered_scores = _agglomerate_large(rag, weight, progress, step)
        # a step advances each `step` merges; the last, partial one (or the merges a graph
        # in several pieces never makes) is advanced here, so the bar ends full
        progress.advance(total - len(merges) // step)
    finally:
        progress.close()
    return MergeTree(
        node_ids=rag.node_ids.copy(),
        merges=merges.reshape(-1, 2),
        scores=ordered_scores,
        edges=rag.edges.copy(),
        feature=feature,
    )


def _heap_merge(a_list: list, b_list: list, wsum: list, area: list, score: list, tie: list, cluster: list,
                next_id: int, done: int, progress: Progress, step: int):
    """The heap loop: merge the weakest boundary, rewire, repeat until no two regions touch.

    Regions are ``0 .. len(cluster) - 1``; ``cluster[r]`` is the tree id of
    region ``r`` and merge ``k`` of this loop creates tree id ``next_id + k``.
    ``done`` merges were made before (progress counts from there). Boundaries
    are taken in order of ``(score, tie)`` (see :func:`_tie_keys`).
    """
    n = len(cluster)
    # adj[r][s] is one list [weighted sum, area, tie] shared by both
    # directions, so an update is seen from either side.
    adj: list[dict | None] = [{} for _ in range(n)]
    for a, b, ws, ar, t in zip(a_list, b_list, wsum, area, tie, strict=True):
        e = [ws, ar if ar > 0 else 1.0, t]
        adj[a][b] = e
        adj[b][a] = e
    heap = list(zip(score, tie, a_list, b_list, strict=True))
    del a_list, b_list, wsum, area, score, tie
    heapq.heapify(heap)
    merged_a: list[int] = []
    merged_b: list[int] = []
    scores: list[float] = []
    heappop, heappush = heapq.heappop, heapq.heappush
    while heap:
        s, _, a, b = heappop(heap)
        adj_a, adj_b = adj[a], adj[b]
        if adj_a is None or adj_b is None:
            continue
        e = adj_a.get(b)
        if e is None or e[0] / e[1] != s:
            continue  # stale: a newer entry carries this edge's score
        if len(adj_a) < len(adj_b):
            # Keep the region with more neighbours: only the smaller
            # side's neighbours need rewiring (small into large).
            a, b, adj_a, adj_b = b, a, adj_b, adj_a
        merged_a.append(cluster[a])
        merged_b.append(cluster[b])
        scores.append(s)
        cluster[a] = next_id + len(scores) - 1
        del adj_a[b]
        del adj_b[a]
        for c, eb in adj_b.items():
            adj_c = adj[c]
            del adj_c[b]
            ea = adj_a.get(c)
            if ea is None:
                # Same score, new end: the old entry names b, now dead.
                adj_a[c] = eb
                adj_c[a] = eb
                heappush(heap, (eb[0] / eb[1], eb[2], a, c))
                continue
            ea[0] += eb[0]
            ea[1] += eb[1]
            if eb[2] < ea[2]:
                ea[2] = eb[2]
            heappush(heap, (ea[0] / ea[1], ea[2], a, c))
        adj[b] = None
        if (done + len(scores)) % step == 0:
            progress.advance(1)
    return merged_a, merged_b, scores


def _tie_keys(n_edges: int) -> np.ndarray:
    """The tie key of every RAG edge: a fixed bijective hash of its row.

    Boundaries with equal scores are taken in order of their tie key; the
    boundary between two regions carries the smallest key of the RAG edges
    it combines. Keys are distinct (the hash is a bijection), never depend
    on how regions are numbered inside the loop, and a combined boundary
    never sorts before all of its parts -- which is what lets rounds of
    simultaneous merges (:func:`_agglomerate_large`) give the heap loop's
    merges exactly. Hashed rather than plain rows so that a plateau of equal
    scores (cell interiors of a uint8 boundary map are all 0) has its local
    minima spread out instead of in one chain. uint32 (murmur3's 32-bit
    finaliser) up to 2**32 edges, uint64 (splitmix64's) beyond.
    """
    if n_edges <= 2**32:
        h = np.arange(n_edges, dtype=np.uint64).astype(np.uint32)
        h ^= h >> np.uint32(16)
        h *= np.uint32(0x85EBCA6B)
        h ^= h >> np.uint32(13)
        h *= np.uint32(0xC2B2AE35)
        h ^= h >> np.uint32(16)
        return h
    return _mix64(np.arange(n_edges, dtype=np.uint64))


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a fixed, well-spread uint64 hash of uint64 values."""
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z


def _agglomerate_large(rag: RegionGraph, weight: np.ndarray, progress: Progress, step: int):
    """Contract by rounds of simultaneous merges, finish with a heap loop; merges in score order.

    Boundaries are ordered by ``(score, tie key)``, a strict order. A
    boundary that comes first at both of its regions is merged by the heap
    loop too, at this score: every merge the loop makes before it involves
    neither region, and a boundary made by such a merge is a weighted mean of
    boundaries that come after it (with the smallest of their tie keys), so it
    comes after it too. A round (:func:`_round_merges`) makes such merges at
    once, then combines the boundaries between the same regions; the merges
    it records per group are in the loop's order, and the ids of the tree are
    renumbered by score at the end (:func:`_in_score_order`).
    """
    n = rag.n_nodes
    idx_dtype = np.int32 if n < 2**31 else np.int64
    n_edges = rag.n_edges
    a = np.empty(n_edges, idx_dtype)
    b = np.empty(n_edges, idx_dtype)
    chunk = 1 << 20
    for c0 in range(0, n_edges, chunk):
        a[c0 : c0 + chunk] = np.searchsorted(rag.node_ids, rag.edges[c0 : c0 + chunk, 0])
        b[c0 : c0 + chunk] = np.searchsorted(rag.node_ids, rag.edges[c0 : c0 + chunk, 1])
    area = rag.contact_area
    # Areas only ever add up: uint32 holds every sum when the whole contact
    # area does, and divides exactly like the heap loop's floats.
    ar = np.maximum(area, 1).astype(np.uint32 if int(area.sum()) < 2**32 else np.float64)
    ws = weight.astype(np.float64)
    ws *= area  # the heap loop's products, exact in float64
    tie = _tie_keys(n_edges)
    tid = np.arange(n, dtype=np.int64)  # tree id of each region
    next_id = n
    rec_s: list[np.ndarray] = []
    rec_a: list[np.ndarray] = []
    rec_b: list[np.ndarray] = []
    done = 0
    while a.size > HEAP_EDGES:
        n_cur = tid.size
        s = ws / ar
        surv, node, score, start = _round_merges(a, b, s, tie, n_cur)
        del s
        k = node.size
        # Tree ids of this round's merges, in record order: a group's first
        # merge joins its two regions, each next one adds a region to it.
        new_ids = np.arange(next_id, next_id + k, dtype=np.int64)
        left = np.empty(k, np.int64)
        left[1:] = new_ids[:-1]
        left[start] = tid[surv]
        rec_s.append(score)
        rec_a.append(left)
        rec_b.append(tid[node])
        last = np.r_[start[1:], k] - 1
        tid[surv] = new_ids[last]
        next_id += k
        # Merged regions join their group's survivor; regions are renumbered
        # 0 .. n_cur - k - 1 (in order, so boundaries stay u < v where untouched).
        survive = np.ones(n_cur, dtype=bool)
        survive[node] = False
        newpos = np.cumsum(survive, dtype=np.int64).astype(idx_dtype)
        newpos -= 1
        group_of = np.repeat(np.arange(start.size), np.diff(np.r_[start, k]))
        newpos[node] = newpos[surv[group_of]]
        del group_of
        tid = tid[survive]
        n_new = tid.size
        touched = np.zeros(n_new, dtype=bool)
        touched[newpos[surv]] = True
        del survive, surv, node, score, start, new_ids, left, last
        a = newpos[a]
        b = newpos[b]
        del newpos
        # Boundaries of a merged region: those to the same region are
        # combined (sums in edge order, smallest tie key), the merged pair's
        # own boundary is dropped.
        dirty = touched[a]
        dirty |= touched[b]
        del touched
        di = np.flatnonzero(dirty)
        lo = np.minimum(a[di], b[di])
        hi = np.maximum(a[di], b[di])
        key = lo.astype(np.int64) * np.int64(n_new) + hi
        order = np.argsort(key, kind="stable")
        key = key[order]
        starts = _run_starts(key)
        del key
        first = order[starts]
        lo_g, hi_g = lo[first], hi[first]
        del lo, hi
        rep = di[first]
        del first
        moved = di[order]
        del di, order
        ws_g = np.add.reduceat(ws[moved], starts)
        ar_g = np.add.reduceat(ar[moved], starts, dtype=ar.dtype)
        tie_g = np.minimum.reduceat(tie[moved], starts)
        del moved, starts
        a[rep], b[rep], ws[rep], ar[rep], tie[rep] = lo_g, hi_g, ws_g, ar_g, tie_g
        alive = ~dirty
        del dirty
        alive[rep[lo_g != hi_g]] = True
        del rep, lo_g, hi_g, ws_g, ar_g, tie_g
        a, b, ws, ar, tie = a[alive], b[alive], ws[alive], ar[alive], tie[alive]
        del alive
        before = done
        done += k
        progress.advance(done // step - before // step)
        if k < ROUND_MIN_RATE * a.size:
            break  # few merges for a pass over every boundary: the loop is cheaper now
    if a.size <= HEAP_EDGES:
        tail_a, tail_b, tail_s = _heap_merge(
            a.tolist(), b.tolist(), ws.tolist(), ar.astype(np.float64).tolist(), (ws / ar).tolist(),
            tie.tolist(), tid.tolist(), next_id, done, progress, step)
    else:
        # The lean loop keeps each slot's current region pair instead of its
        # ends; handing the arrays over in a list lets it free what it replaces.
        arrays = [a, b, ws, ar, tie]
        del a, b, ws, ar, tie
        tail_a, tail_b, tail_s = _lean_heap_merge(arrays, tid, next_id, done, progress, step)
    del tid
    release_free_memory()  # the loops' many small arrays and lists
    raw = np.concatenate([*rec_s, np.asarray(tail_s, np.float64)])
    child_a = np.concatenate([*rec_a, np.asarray(tail_a, np.int64)])
    child_b = np.concatenate([*rec_b, np.asarray(tail_b, np.int64)])
    return _in_score_order(n, child_a, child_b, raw)


class _PairTable:
    """Region pair key -> boundary slot: open addressing on NumPy arrays.

    Cells hold slots; a slot's current key is ``key_of[slot]``. Every
    operation takes a batch of keys and probes 8 cells at a time (linear
    probing, kept below half full: one probe step almost always settles a
    key). ``insert`` takes keys known to be absent and distinct; ``delete``
    keys known to be present. The table is rebuilt, at three cells per live
    entry, when entries and tombstones fill half of it: it shrinks with the
    graph.
    """

    EMPTY, GONE = -1, -2
    WIDTH = 8

    def __init__(self, key_of: np.ndarray) -> None:
        self.key_of = key_of
        live = np.arange(key_of.size)
        self._build(live)

    def _build(self, live_slots: np.ndarray) -> None:
        self.cap = max(1024, 3 * live_slots.size)
        dtype = np.int32 if self.key_of.size < 2**31 else np.int64
        self.cells = np.full(self.cap, self.EMPTY, dtype)
        self.filled = 0  # entries and tombstones
        self._place(self.key_of[live_slots], live_slots)

    def _home(self, keys: np.ndarray) -> np.ndarray:
        h = _mix64(keys.astype(np.uint64))
        if self.cap >= 2**32:
            return (h % np.uint64(self.cap)).astype(np.int64)
        # Top 32 bits of a well-mixed hash, scaled to the capacity (no division).
        return (((h >> np.uint64(32)) * np.uint64(self.cap)) >> np.uint64(32)).astype(np.int64)

    def _probe(self, keys: np.ndarray, want_free: bool) -> np.ndarray:
        """Cell of each key (-1 if absent), or with ``want_free`` the first free cell on its path."""
        out = np.full(keys.size, -1, np.int64)
        base = self._home(keys)
        todo = np.arange(keys.size)
        step = np.arange(self.WIDTH)
        while todo.size:
            cells = base[todo, None] + step
            cells[cells >= self.cap] -= self.cap
            got = self.cells[cells]
            if want_free:
                stop = got < 0
            else:
                hit = (got >= 0) & (self.key_of[np.maximum(got, 0)] == keys[todo, None])
                stop = hit | (got == self.EMPTY)
            settled = stop.any(axis=1)
            col = stop.argmax(axis=1)
            rows = np.flatnonzero(settled)
            if want_free:
                out[todo[rows]] = cells[rows, col[rows]]
            else:
                found = rows[hit[rows, col[rows]]]
                out[todo[found]] = cells[found, col[found]]
            todo = todo[~settled]
            base[todo] += self.WIDTH
            base[todo] %= self.cap
        return out

    def get(self, keys: np.ndarray) -> np.ndarray:
        """Slots of ``keys``, -1 where absent."""
        where = self._probe(keys, False)
        out = np.full(keys.size, -1, np.int64)
        found = where >= 0
        out[found] = self.cells[where[found]]
        return out

    def delete(self, keys: np.ndarray) -> None:
        where = self._probe(keys, False)
        if where.size and where.min() < 0:  # would mark cell -1: a broken invariant, not bad input
            raise RuntimeError("merge tree: a boundary to delete is not in the pair table")
        self.cells[where] = self.GONE

    def insert(self, slots: np.ndarray) -> None:
        """Add ``slots`` under their current keys (``key_of``)."""
        if self.filled + slots.size > self.cap // 2:
            live = np.concatenate([self.cells[self.cells >= 0], slots])
            self.cells = None  # free the old cells before the new ones are made
            self._build(live)
            return
        self._place(self.key_of[slots], slots)

    def _place(self, keys: np.ndarray, slots: np.ndarray) -> None:
        self.filled += slots.size
        # In slices: a probe holds ~100 bytes per key for its window of cells.
        for c0 in range(0, slots.size, 1 << 18):
            k, sl = keys[c0 : c0 + (1 << 18)], slots[c0 : c0 + (1 << 18)]
            todo = np.arange(sl.size)
            while todo.size:
                cells = self._probe(k[todo], True)
                # Several keys may reach one free cell: the first of them takes it.
                cells_u, first = np.unique(cells, return_index=True)
                self.cells[cells_u] = sl[todo[first]]
                placed = np.zeros(todo.size, dtype=bool)
                placed[first] = True
                todo = todo[~placed]


def _order_keys(s: np.ndarray, tie: np.ndarray) -> np.ndarray:
    """``(score, tie)`` as 16-byte strings that sort (and ``searchsorted``) in that order.

    Big-endian bits of a non-negative float64 sort like the float; the tie
    key follows. ``s + 0.0`` turns -0.0 into 0.0.
    """
    out = np.empty((s.size, 2), ">u8")
    out[:, 0] = (s + 0.0).view(np.uint64)
    out[:, 1] = tie
    return out.view("S16").ravel()


class _Run:
    """Slots (with versions) in ``(score, tie)`` order, read from the front.

    Entries go out of date when their slot is merged away or changed (its
    version moves on); the reader skips them, checking a block at a time.
    """

    BLOCK = 4096

    def __init__(self, slots: np.ndarray, versions: np.ndarray | None) -> None:
        self.slots, self.versions = slots, versions  # versions None: all 0
        self.cursor = 0  # next block to check
        self.block: list[int] = []  # run positions found valid in the last block
        self.at = 0

    def head(self, alive: np.ndarray, version: np.ndarray) -> int | None:
        """Run position of the first entry still valid (None: exhausted)."""
        while True:
            if self.at == len(self.block):
                if self.cursor >= self.slots.size:
                    return None
                sl = self.slots[self.cursor : self.cursor + self.BLOCK]
                ok = alive[sl]
                ok &= version[sl] == (0 if self.versions is None else
                                      self.versions[self.cursor : self.cursor + self.BLOCK])
                self.block = (np.flatnonzero(ok) + self.cursor).tolist()
                self.at = 0
                self.cursor += sl.size
                continue
            i = self.block[self.at]
            e = int(self.slots[i])
            if alive[e] and version[e] == (0 if self.versions is None else self.versions[i]):
                return i
            self.at += 1

    def rest(self) -> tuple[np.ndarray, np.ndarray]:
        """Entries not read yet (slots, versions)."""
        start = self.block[self.at] if self.at < len(self.block) else self.cursor
        slots = self.slots[start:]
        vers = np.zeros(slots.size, np.uint32) if self.versions is None else self.versions[start:]
        return slots, vers


def _lean_heap_merge(arrays: list, tid: np.ndarray, next_id: int, done: int, progress: Progress, step: int):
    """The heap loop of :func:`_heap_merge` on NumPy arrays: the same merges in ~70 bytes per boundary.

    Boundaries are *slots* (the rows of ``arrays = [a, b, ws, ar, tie]``,
    handed over and emptied). Every live slot knows its current region pair
    (``key_of``: regions ``key // n`` and ``key % n``), updated when a merge
    moves it; a region's boundaries to one region are always combined into
    one slot, found through a :class:`_PairTable`. Regions are merged small
    into large (by their number of listed slots). Slots are taken in
    ``(score, tie)`` order from a sorted :class:`_Run` and, for boundaries a
    merge has changed, from a heap that is merged into the run when it grows.
    """
    a, b, ws, ar, tie = arrays
    arrays.clear()
    n = tid.size
    n_slots = a.size
    n64 = np.int64(n)
    slot_dtype = np.int32 if n_slots < 2**31 else np.int64
    key_of = np.minimum(a, b).astype(np.int64) * n64 + np.maximum(a, b)
    del a, b
    alive = np.ones(n_slots, dtype=bool)
    version = np.zeros(n_slots, np.uint32)
    run = _Run(np.lexsort((tie, ws / ar)).astype(slot_dtype), None)
    # Slots of every region (both ends), as views of one array.
    ends = np.concatenate([key_of // n64, key_of % n64]).astype(slot_dtype)
    order = np.argsort(ends, kind="stable")
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(ends, minlength=n), out=indptr[1:])
    del ends
    listed = order.astype(slot_dtype)  # the slots of region r: listed[indptr[r]:indptr[r + 1]]
    del order
    listed[listed >= n_slots] -= n_slots
    weight = np.diff(indptr).tolist()
    # Slots a region gained by merges (its own are listed[indptr[r]:indptr[r + 1]]).
    gained: dict[int, list] = {}
    table = _PairTable(key_of)
    heap: list = []
    merged_a: list[int] = []
    merged_b: list[int] = []
    scores: list[float] = []
    cluster = tid.tolist()
    heappop, heappush = heapq.heappop, heapq.heappush
    while True:
        i = run.head(alive, version)
        while heap and not (alive[heap[0][2]] and version[heap[0][2]] == heap[0][3]):
            heappop(heap)
        if i is None and not heap:
            break
        if i is not None:
            e = int(run.slots[i])
            rs, rt = float(ws[e] / ar[e]), int(tie[e])
        if heap and (i is None or (heap[0][0], heap[0][1]) < (rs, rt)):
            s, _, e, _ = heappop(heap)
        else:
            s = rs
            run.at += 1
        ra, rb = divmod(int(key_of[e]), n)
        if weight[ra] < weight[rb]:
            ra, rb = rb, ra  # small into large: ra survives
        merged_a.append(cluster[ra])
        merged_b.append(cluster[rb])
        scores.append(s)
        cluster[ra] = next_id + len(scores) - 1
        alive[e] = False
        # The absorbed region's other boundaries.
        sl = listed[indptr[rb] : indptr[rb + 1]]
        more = gained.pop(rb, None)
        if more is not None:
            sl = np.concatenate([sl, *more])
        sl = sl[alive[sl]]
        pair = key_of[sl]
        nb = pair // n64
        nb = np.where(nb == rb, pair % n64, nb)
        table.delete(np.append(pair, key_of[e]))
        lo, hi = np.minimum(nb, ra), np.maximum(nb, ra)
        key_a = lo * n64 + hi
        into = table.get(key_a)
        has = into >= 0
        x, y = into[has], sl[has]
        if x.size:
            # Boundaries to a common neighbour: one boundary, summed.
            ws[x] += ws[y]
            ar[x] += ar[y]
            tie[x] = np.minimum(tie[x], tie[y])
            alive[y] = False
            version[x] += 1
            for item in zip((ws[x] / ar[x]).tolist(), tie[x].tolist(), x.tolist(), version[x].tolist(),
                            strict=True):
                heappush(heap, item)
        moved = sl[~has]
        if moved.size:
            key_of[moved] = key_a[~has]
            table.insert(moved)
            gained.setdefault(ra, []).append(moved)
        weight[ra] += moved.size
        if len(heap) > LEAN_HEAP_LIMIT:
            rest = [run.rest()]
            run = None  # freed once the callee has copied its unread part out of ``rest``
            run = _merge_heap_into_run(rest, heap, alive, version, ws, ar, tie)
            heap = []
        if (done + len(scores)) % step == 0:
            progress.advance(1)
    return merged_a, merged_b, scores


def _merge_heap_into_run(rest: list, heap: list, alive, version, ws, ar, tie) -> _Run:
    """A new run: the unread valid entries of a run and of ``heap``, in order.

    ``rest`` holds the run's :meth:`_Run.rest` and is emptied, so that the
    old run can be freed as soon as its valid entries are copied.

    The run is sorted already; only the heap's entries are sorted, then
    placed by counting, slice by slice of the run, the entries before each
    (``searchsorted`` on :func:`_order_keys`): no sort of the whole run.
    """
    slots, vers = rest.pop()
    ok = alive[slots] & (version[slots] == vers)
    slots, vers = slots[ok], vers[ok]
    del ok
    h_s = np.fromiter((h[0] for h in heap), np.float64, len(heap))
    h_t = np.fromiter((h[1] for h in heap), np.uint64, len(heap))
    h_slot = np.fromiter((h[2] for h in heap), slots.dtype, len(heap))
    h_ver = np.fromiter((h[3] for h in heap), np.uint32, len(heap))
    ok = alive[h_slot] & (version[h_slot] == h_ver)
    h_s, h_t, h_slot, h_ver = h_s[ok], h_t[ok], h_slot[ok], h_ver[ok]
    h_keys = _order_keys(h_s, h_t)
    order = np.argsort(h_keys, kind="stable")
    h_keys, h_slot, h_ver = h_keys[order], h_slot[order], h_ver[order]
    # before[j]: run entries ahead of heap entry j. A slice of the run adds
    # its length to every heap entry past its last key (a difference array)
    # and is searched only by those within its range.
    direct = np.zeros(h_keys.size, np.int64)
    past = np.zeros(h_keys.size + 1, np.int64)
    chunk = 1 << 20
    for c0 in range(0, slots.size, chunk):
        sl = slots[c0 : c0 + chunk]
        keys = _order_keys(ws[sl] / ar[sl], tie[sl])
        i0 = int(np.searchsorted(h_keys, keys[0], side="left"))
        i1 = int(np.searchsorted(h_keys, keys[-1], side="right"))
        past[i1] += sl.size
        direct[i0:i1] += np.searchsorted(keys, h_keys[i0:i1])
    before = direct + np.cumsum(past)[:-1]
    del direct, past
    total = slots.size + h_slot.size
    at = before + np.arange(h_slot.size)
    from_run = np.ones(total, dtype=bool)
    from_run[at] = False
    new_slots = np.empty(total, slots.dtype)
    new_vers = np.empty(total, np.uint32)
    new_slots[from_run], new_vers[from_run] = slots, vers
    new_slots[at], new_vers[at] = h_slot, h_ver
    return _Run(new_slots, new_vers)


def _round_merges(a: np.ndarray, b: np.ndarray, s: np.ndarray, tie: np.ndarray, n: int):
    """The merges of one round, each one the heap loop's too, grouped by the region they grow.

    In ``(score, tie)`` order every region has a *first* boundary, and
    following first boundaries from region to region always ends at a
    *pair*: two regions whose first boundaries are the same. Every region
    thus belongs to the tree of one pair, and keys grow away from the pair
    (a region's first boundary is lower than any other boundary of it,
    including those of the regions whose first leads to it). The heap loop
    merges the pair, then grows it along its tree in key order as long as no
    other boundary of the grown region comes first. A round does the same:
    per tree it takes the regions in key order while their key is below every
    *side* boundary (one that is nobody's first) of the pair and of the
    regions taken before, and stops at a region with a side boundary to the
    pair or to an earlier region of its tree (that boundary would be
    combined with its key). Comparisons are strict on scores, so equal
    scores wait for a later round.

    Returns
    -------
    surv, node, score, start
        Per group its surviving region (``surv``); per merge, in order, the
        region merged in and the score; ``start`` the first merge of each group.
    """
    big = np.iinfo(tie.dtype).max
    n_edges = a.size
    best = np.full(n, np.inf)
    np.minimum.at(best, a, s)
    np.minimum.at(best, b, s)
    at_a = s == best[a]
    at_b = s == best[b]
    del best
    low = np.flatnonzero(at_a | at_b)
    la, lb, lt, fa, fb = a[low], b[low], tie[low], at_a[low], at_b[low]
    del at_a, at_b
    tbest = np.full(n, big, tie.dtype)
    np.minimum.at(tbest, la[fa], lt[fa])
    np.minimum.at(tbest, lb[fb], lt[fb])
    fa &= lt == tbest[la]  # this boundary is the first of its a end
    fb &= lt == tbest[lb]
    del tbest, lt
    eidx = np.int32 if n_edges < 2**31 else np.int64
    first = np.full(n, -1, eidx)  # first boundary of every region
    first[la[fa]] = low[fa]
    first[lb[fb]] = low[fb]
    up = np.arange(n, dtype=np.int64)  # region at its other end (self: no boundary)
    up[la[fa]] = lb[fa]
    up[lb[fb]] = la[fb]
    pair = low[fa & fb]
    del low, la, lb, fa, fb
    p, q = a[pair].astype(np.int64), b[pair].astype(np.int64)
    n_groups = pair.size
    # Tree of every region: follow first boundaries to the pair (pointer
    # jumping; a pair points to its smaller member).
    up[q] = p
    up[p] = p
    while True:
        nxt = up[up]
        if np.array_equal(nxt, up):
            break
        up = nxt
    del nxt
    gid = np.full(n, -1, np.int32 if n < 2**31 else np.int64)
    gid[p] = np.arange(n_groups)
    group = gid[up]  # -1: a region without boundaries
    del up, gid
    # Side boundaries (the first of neither end) bound the growth.
    rows = np.arange(n_edges, dtype=eidx)
    side = first[a] != rows
    side &= first[b] != rows
    del rows
    out = np.full(n, np.inf)  # lowest side boundary of every region
    np.minimum.at(out, a[side], s[side])
    np.minimum.at(out, b[side], s[side])
    # Tree regions beside the pair, in order of group, then key.
    tree = np.flatnonzero(group >= 0)
    tree = tree[first[tree] != pair[group[tree]]]
    order = np.lexsort((tie[first[tree]], s[first[tree]], group[tree]))
    tree = tree[order]
    del order
    tg = group[tree].astype(np.int64)
    ts = s[first[tree]]
    gstart = np.searchsorted(tg, np.arange(n_groups))
    pos = np.arange(tree.size)
    rank = np.zeros(n, np.int64)  # 0: pair members and regions outside any tree
    rank[tree] = pos - gstart[tg] + 1
    # A side boundary inside a tree stops its group at its later end.
    stop = np.full(max(n_groups, 1), np.iinfo(np.int64).max)
    inner = side
    inner &= group[a] == group[b]
    inner &= group[a] >= 0
    ia, ib = a[inner], b[inner]
    del inner, side
    np.minimum.at(stop, group[ia], np.maximum(rank[ia], rank[ib]))
    del ia, ib
    # Bound for each region: the pair's side boundaries and the exclusive
    # running minimum, per group, of those taken before (exact, on ranks).
    sec = out[tree]
    ladder = np.sort(sec)
    shift = (n_groups - tg) * max(tree.size, 1)
    run = np.minimum.accumulate(np.searchsorted(ladder, sec) + shift) - shift
    bound = np.full(tree.size, np.inf)
    later = pos > gstart[tg]
    bound[later] = ladder[run[np.flatnonzero(later) - 1]]
    del sec, shift, run, later
    bound = np.minimum(bound, np.minimum(out[p], out[q])[tg])
    ok = (ts < bound) & (rank[tree] < stop[tg])
    first_bad = np.full(max(n_groups, 1), tree.size)
    np.minimum.at(first_bad, tg[~ok], pos[~ok])
    take = pos < first_bad[tg]
    tree, tg, ts = tree[take], tg[take], ts[take]
    # Records: per group its pair merge, then its regions in key order.
    counts = np.bincount(tg, minlength=n_groups) + 1
    start = np.zeros(n_groups, np.int64)
    np.cumsum(counts[:-1], out=start[1:])
    k = int(counts.sum())
    node = np.empty(k, np.int64)
    score = np.empty(k, np.float64)
    node[start] = q
    score[start] = s[pair]
    at = start[tg] + (np.arange(tree.size) - np.searchsorted(tg, tg)) + 1
    node[at] = tree
    score[at] = ts
    return p, node, score, start


def _in_score_order(n: int, child_a: np.ndarray, child_b: np.ndarray, raw: np.ndarray):
    """Merges (children before parents) sorted by score; tree ids renumbered to match.

    A merge's effective score is the largest raw score in its subtree: a
    weighted mean can round one ulp below the scores it was made from, and a
    parent must not sort before its children. A stable sort keeps the order
    of discovery (children first) among equal scores.
    """
    k = raw.size
    eff = raw.tolist()
    ca, cb = child_a.tolist(), child_b.tolist()
    for t in range(k):
        e = eff[t]
        c = ca[t]
        if c >= n and eff[c - n] > e:
            e = eff[c - n]
        c = cb[t]
        if c >= n and eff[c - n] > e:
            e = eff[c - n]
        eff[t] = e
    del ca, cb
    eff_arr = np.asarray(eff, dtype=np.float64)
    del eff
    order = np.argsort(eff_arr, kind="stable")
    rank = np.empty(k, np.int64)
    rank[order] = np.arange(n, n + k, dtype=np.int64)

    def renumber(ids: np.ndarray) -> np.ndarray:
        return np.where(ids < n, ids, rank[np.maximum(ids - n, 0)])

    merges = np.stack([renumber(child_a[order]), renumber(child_b[order])], axis=1)
    return merges, np.maximum.accumulate(eff_arr[order])
