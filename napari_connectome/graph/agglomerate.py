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
its regions. The loop is compiled (:mod:`napari_connectome.graph.merge_loop`,
numba: flat arrays, a pair hash table and a binary heap); the heap loop over
Python dicts it replaced (:func:`_heap_merge`) stays as the reference the
tests hold it to, merge for merge. Only the sums of weights may round
differently in the last bit when they are not exact in float64.

Measured (``benchmarks/bench_graph_memory.py``, 10^6 supervoxels, 2 CPUs):
see the README's scale section and that script; the loop holds
:data:`~napari_connectome.graph.merge_loop.LOOP_BYTES_PER_EDGE` bytes per edge.
"""

from __future__ import annotations

import heapq
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_connectome.atomic import save_npz_atomic
from napari_connectome.errors import InputError
from napari_connectome.graph.rag import RegionGraph, _load_npz
from napari_connectome.memory import check_memory
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


TREE_BYTES_PER_NODE = 8 + 3 * 24  # node ids; merges, scores and the loop's lists per merge
TREE_BYTES_PER_EDGE = 16  # the tree's copy of the edges


def estimate_agglomerate_memory(n_nodes: int, n_edges: int) -> int:
    """Peak bytes :func:`agglomerate` needs on a graph of this size (its memory guard's estimate).

    Above what the process holds already (the graph itself): the compiled
    loop's arrays (:data:`~napari_connectome.graph.merge_loop.LOOP_BYTES_PER_EDGE`
    per edge, :data:`~napari_connectome.graph.merge_loop.LOOP_BYTES_PER_NODE` per
    supervoxel; its inputs are its arrays, made in place) and the tree.
    """
    from napari_connectome.graph.merge_loop import LOOP_BYTES_PER_EDGE, LOOP_BYTES_PER_NODE

    tree = TREE_BYTES_PER_NODE * n_nodes + TREE_BYTES_PER_EDGE * n_edges
    return int(LOOP_BYTES_PER_EDGE * n_edges + LOOP_BYTES_PER_NODE * n_nodes + tree)


def agglomerate(rag: RegionGraph, *, feature: str = "mean", progress: Progress | None = None,
                memory_gb: float | None = None) -> MergeTree:
    """Merge supervoxels hierarchically by mean boundary signal, recording every merge.

    One compiled heap loop (:func:`~napari_connectome.graph.merge_loop.merge_all`)
    over the whole graph, whatever its size: the weakest boundary first, ties
    by tie key, until no two regions touch. Merges come in the order of their
    scores; which side of a merge is listed first may differ from
    :func:`_heap_merge`, the tree does not.

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
    from napari_connectome.graph.merge_loop import merge_all

    progress = progress or NullProgress()
    n, n_edges = rag.n_nodes, rag.n_edges
    weight = rag.edge_weight(feature)
    check_memory(estimate_agglomerate_memory(n, n_edges),
                 what=f"the merge tree of {n:,} supervoxels and {n_edges:,} edges",
                 source=rag.source or "the region graph", limit_gb=memory_gb)
    step = 1000
    total = max(n - 1, 0) // step + 1
    progress.start(total, "agglomeration")
    reported = [0]

    def on_burst(merges: int) -> None:
        steps = merges // step
        if steps > reported[0]:
            progress.advance(steps - reported[0])
            reported[0] = steps

    try:
        # The loop's own arrays, made once and handed over (consume=True): no copies beside the graph.
        index = np.int32 if max(2 * n_edges + 1, n) < 2**31 else np.int64
        ends = rag.edge_endpoints()
        u, v = ends[:, 0].astype(index), ends[:, 1].astype(index)
        del ends
        area = rag.contact_area.astype(np.float64)
        area[area <= 0] = 1.0
        wsum = weight.astype(np.float64)
        wsum *= area
        del weight
        merges, scores = merge_all(u, v, wsum, area, _tie_keys(n_edges), n, burst=100 * step, on_burst=on_burst,
                                   consume=True)
        del u, v, area, wsum
        # A weighted mean of values >= s can round one ulp below s; the
        # prefix property of thresholds needs the scores sorted exactly.
        ordered_scores = np.maximum.accumulate(scores) if len(scores) else scores
        # the last, partial step (or the merges a graph in several pieces never makes) ends the bar full
        progress.advance(total - reported[0])
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


def _tie_keys(n_edges: int, *, rows: np.ndarray | None = None) -> np.ndarray:
    """The tie key of every RAG edge (of ``rows`` only, when given): a fixed bijective hash of its row.

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
    index = np.arange(n_edges, dtype=np.uint64) if rows is None else np.asarray(rows).astype(np.uint64)
    if n_edges <= 2**32:
        h = index.astype(np.uint32)
        h ^= h >> np.uint32(16)
        h *= np.uint32(0x85EBCA6B)
        h ^= h >> np.uint32(13)
        h *= np.uint32(0xC2B2AE35)
        h ^= h >> np.uint32(16)
        return h
    return _mix64(index)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a fixed, well-spread uint64 hash of uint64 values."""
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z ^= z >> np.uint64(30)
    z *= np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z *= np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return z
