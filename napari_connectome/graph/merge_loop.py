"""The merge loop of hierarchical agglomeration, compiled (numba): weakest boundary first, every merge kept.

One loop for every agglomeration of the suite, one merge step (:func:`_merge`)
shared by all:

* :func:`merge_all` (mean boundary, :func:`~napari_connectome.graph.agglomerate.agglomerate`,
  and the candidate finder's re-agglomeration): a fully compiled loop.
  Boundaries are taken in order of ``(score, tie key)``; merging two regions
  adds their boundaries' weighted sums and areas towards each common
  neighbour (so a boundary's score is the area-weighted mean of its RAG
  edges' values, waterz's and gala's "mean affinity") and keeps the smaller
  tie key. The merges are exactly those of the reference heap loop over
  Python dicts (:func:`napari_connectome.graph.agglomerate._heap_merge`, kept
  for tests): same pairs, same scores, in the same order.
* :class:`RescoredLoop` (learned agglomeration): the same state driven one
  merge at a time from Python, which rescores the merged region's
  boundaries (a classifier's P) after each merge; the merge also combines
  the boundaries' min, max and histogram rows.

Data structures, all flat arrays (no Python objects, so ~100 bytes per edge
and no garbage collector):

* per edge: its two current end regions, weighted sum, area, tie key and
  whether it is alive; two *incidence slots* (one per end) chained into
  singly linked lists, one list per region;
* an open-addressing hash table from the region pair to its edge, so that
  merging ``b`` into ``a`` finds ``a``'s edge to each neighbour of ``b`` in
  O(1);
* a binary heap of ``(score, tie, edge)`` entries; an entry is stale when its
  edge has died or its score has changed since (a newer entry carries it).

Merging walks only the list of the region with the shorter list (dead
entries included) and appends it to the other's in O(1): each incidence slot
is walked O(log E) times in all. An edge whose end is renamed keeps its
heap entry (its score and tie do not change); two edges that meet are
combined into one and pushed again. The loop runs in bursts of at most
``burst`` merges so the caller can report progress and honour a cancel.
"""

from __future__ import annotations

import numpy as np
from numba import njit

EMPTY = -1
TOMB = -2
#: Bytes per edge the loop holds, graphs under 2**31 edges: ends 8, sums 16, tie 4, alive 1,
#: incidence 8, heap 2 × 16, hash table 1.6 slots × 12.
LOOP_BYTES_PER_EDGE = 8 + 16 + 4 + 1 + 8 + 32 + 20
#: Bytes per region (list head, tail, length; cluster id; the merges and scores it may make).
LOOP_BYTES_PER_NODE = 4 * 3 + 8 + 24


@njit(cache=True, inline="always")
def _slot_of(key: np.int64, cap: np.int64) -> np.int64:
    z = np.uint64(key) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    # Lemire's multiply-shift onto [0, cap): any table size, not only powers of two (cap < 2**32)
    return np.int64(((z >> np.uint64(32)) * np.uint64(cap)) >> np.uint64(32))


@njit(cache=True)
def _find(keys, key, cap):
    """Index of ``key`` in the table, or -1."""
    i = _slot_of(key, cap)
    while True:
        k = keys[i]
        if k == key:
            return i
        if k == EMPTY:
            return -1
        i += 1
        if i == cap:
            i = 0


@njit(cache=True)
def _insert(keys, vals, key, val, cap):
    """Insert a key known to be absent; returns whether it took an empty slot (not a tombstone)."""
    i = _slot_of(key, cap)
    while True:
        k = keys[i]
        if k == EMPTY or k == TOMB:
            keys[i] = key
            vals[i] = val
            return k == EMPTY
        i += 1
        if i == cap:
            i = 0


@njit(cache=True)
def _heap_push(hs, ht, he, size, s, t, e):
    i = size
    while i > 0:
        p = (i - 1) >> 1
        if hs[p] < s or (hs[p] == s and ht[p] <= t):
            break
        hs[i], ht[i], he[i] = hs[p], ht[p], he[p]
        i = p
    hs[i], ht[i], he[i] = s, t, e
    return size + 1


@njit(cache=True)
def _heap_pop(hs, ht, he, size):
    """Remove the first entry (read it before calling); returns the new size."""
    size -= 1
    s, t, e = hs[size], ht[size], he[size]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= size:
            break
        if c + 1 < size and (hs[c + 1] < hs[c] or (hs[c + 1] == hs[c] and ht[c + 1] < ht[c])):
            c += 1
        if s < hs[c] or (s == hs[c] and t <= ht[c]):
            break
        hs[i], ht[i], he[i] = hs[c], ht[c], he[c]
        i = c
    if size > 0:
        hs[i], ht[i], he[i] = s, t, e
    return size


@njit(cache=True)
def _rehash(keys, vals, eu, ev, alive, n):
    keys[:] = EMPTY
    cap = np.int64(keys.shape[0])
    used = 0
    for e in range(eu.shape[0]):
        if alive[e]:
            a, b = eu[e], ev[e]
            lo, hi = (a, b) if a < b else (b, a)
            _insert(keys, vals, lo * n + hi, e, cap)
            used += 1
    return used


@njit(cache=True)
def _setup(g, hp, score0, n, learned):
    """Lists, hash table and heap of a fresh graph; returns (heap size, used table slots).

    Mean boundary: each edge enters the heap with ``(wsum / area, tie)``. Learned: with
    ``(score0[e], et[e])``, ``et`` holding each edge's stamp.
    """
    eu, ev, ws, ar, et, alive, nxt, head, tail, length, keys, vals = g
    hs, ht, he = hp
    cap = np.int64(keys.shape[0])
    size = 0
    for e in range(eu.shape[0]):
        for side in range(2):
            r = eu[e] if side == 0 else ev[e]
            slot = 2 * e + side
            if head[r] == -1:
                head[r] = slot
            else:
                nxt[tail[r]] = slot
            tail[r] = slot
            length[r] += 1
        a, b = eu[e], ev[e]
        lo, hi = (a, b) if a < b else (b, a)
        _insert(keys, vals, lo * n + hi, e, cap)
        s = score0[e] if learned else ws[e] / ar[e]
        size = _heap_push(hs, ht, he, size, s, et[e], e)
    return size, eu.shape[0]


@njit(cache=True, inline="always")
def _merge(g, hp, ext, state, size, used, a, b, e, n, learned):
    """Merge region ``b`` into ``a`` (``e``: the edge between them): the one merge step of every loop.

    Each live boundary of ``b`` is either combined with ``a``'s boundary to the same neighbour
    (payloads added: weighted sum and area; mean boundary: the smaller tie key, and the combined edge
    is pushed with its new score; learned: min, max and histogram rows too) or renamed to end at
    ``a``. ``b``'s incidence list is appended to ``a``'s. Learned only: live degrees (``deg``) and
    each incidence slot's insertion stamp (``seq``: the order a region's neighbours were added, what
    a Python dict of neighbours would iterate in) are kept up to date.
    """
    eu, ev, ws, ar, et, alive, nxt, head, tail, length, keys, vals = g
    hs, ht, he = hp
    vmin, vmax, hist, seq, deg, moved, flip = ext
    cap = np.int64(keys.shape[0])
    alive[e] = False
    lo, hi = (a, b) if a < b else (b, a)
    keys[_find(keys, lo * n + hi, cap)] = TOMB
    n_moved = 0
    if learned:
        deg[a] -= 1
    slot = head[b]
    while slot != -1:
        e2 = slot >> 1
        side = slot & 1
        following = nxt[slot]
        if alive[e2]:
            c = ev[e2] if side == 0 else eu[e2]
            lo, hi = (b, c) if b < c else (c, b)
            keys[_find(keys, lo * n + hi, cap)] = TOMB
            lo, hi = (a, c) if a < c else (c, a)
            i = _find(keys, lo * n + hi, cap)
            if i >= 0:
                ea = vals[i]
                ws[ea] += ws[e2]
                ar[ea] += ar[e2]
                alive[e2] = False
                if learned:
                    if vmin[e2] < vmin[ea]:
                        vmin[ea] = vmin[e2]
                    if vmax[e2] > vmax[ea]:
                        vmax[ea] = vmax[e2]
                    for j in range(hist.shape[1]):
                        hist[ea, j] += hist[e2, j]
                    deg[c] -= 1
                else:
                    if et[e2] < et[ea]:
                        et[ea] = et[e2]
                    size = _heap_push(hs, ht, he, size, ws[ea] / ar[ea], et[ea], ea)
            else:
                if side == 0:
                    eu[e2] = a
                else:
                    ev[e2] = a
                if _insert(keys, vals, lo * n + hi, e2, cap):
                    used += 1
                    if used * 4 > keys.shape[0] * 3:  # 75 % full with tombstones: rebuild
                        used = _rehash(keys, vals, eu, ev, alive, n)
                if learned:
                    moved[n_moved] = slot
                    n_moved += 1
                    deg[a] += 1
        slot = following
    if head[b] != -1:
        if head[a] == -1:
            head[a] = head[b]
        else:
            nxt[tail[a]] = head[b]
        tail[a] = tail[b]
        length[a] += length[b]
        head[b] = -1
        length[b] = 0
    if learned:
        deg[b] = 0
        # b's neighbours join a's in b's order (after a's own); each is a's newest at its neighbour's
        order = np.argsort(seq[moved[:n_moved]], kind="mergesort")
        for j in range(n_moved):
            s2 = moved[order[j]]
            seq[s2] = state[3]
            seq[s2 ^ 1] = state[3] + 1
            state[3] += 2
    return size, used


@njit(cache=True)
def _run(g, hp, ext, state, cluster, merged_a, merged_b, scores, n, burst):
    """At most ``burst`` merges; ``state`` = [heap size, used table slots, merges so far, -]. Returns merges made."""
    eu, ev, ws, ar, et, alive, nxt, head, tail, length, keys, vals = g
    hs, ht, he = hp
    size, used, k = state[0], state[1], state[2]
    made = 0
    while size > 0 and made < burst:
        s, e = hs[0], he[0]
        size = _heap_pop(hs, ht, he, size)
        if not alive[e] or ws[e] / ar[e] != s:
            continue
        a, b = eu[e], ev[e]
        if length[a] < length[b]:
            a, b = b, a  # walk the shorter list
        merged_a[k] = cluster[a]
        merged_b[k] = cluster[b]
        scores[k] = s
        cluster[a] = n + k
        k += 1
        made += 1
        size, used = _merge(g, hp, ext, state, size, used, a, b, e, n, False)
    state[0], state[1], state[2] = size, used, k
    return made


def _index_type(n_edges: int, n: int):
    return np.int32 if max(2 * n_edges + 1, n) < 2**31 else np.int64


def _loop_arrays(u, v, wsum, area, tie, n, consume, heap_tie_type):
    """The graph and heap tuples of a fresh loop (lists, table and heap still empty)."""
    n_edges = int(len(u))
    index = _index_type(n_edges, n)
    eu = np.asarray(u).astype(index, copy=not consume)
    ev = np.asarray(v).astype(index, copy=not consume)
    ws = np.asarray(wsum).astype(np.float64, copy=not consume)
    ar = np.asarray(area).astype(np.float64, copy=not consume)
    et = np.asarray(tie).astype(heap_tie_type, copy=not consume)
    alive = np.ones(n_edges, dtype=np.bool_)
    nxt = np.full(2 * n_edges, -1, dtype=index)
    head = np.full(n, -1, dtype=index)
    tail = np.full(n, -1, dtype=index)
    length = np.zeros(n, dtype=index)
    # 1.6 slots an edge: 62 % full at the start; edges only die, so a rebuild (tombstones gone) stays below
    cap = int(1.6 * n_edges) + 64
    keys = np.full(cap, EMPTY, dtype=np.int64)
    vals = np.zeros(cap, dtype=index)
    heap_cap = 2 * n_edges + 1
    hs = np.empty(heap_cap, dtype=np.float64)
    ht = np.empty(heap_cap, dtype=heap_tie_type)
    he = np.empty(heap_cap, dtype=index)
    return (eu, ev, ws, ar, et, alive, nxt, head, tail, length, keys, vals), (hs, ht, he)


def _no_stats(index):
    """The learned-only arrays, empty (mean boundary)."""
    return (np.empty(0, np.float64), np.empty(0, np.float64), np.empty((0, 0), np.int64), np.empty(0, np.int64),
            np.empty(0, index), np.empty(0, index), np.empty(0, np.bool_))


def merge_all(u: np.ndarray, v: np.ndarray, wsum: np.ndarray, area: np.ndarray, tie: np.ndarray, n: int, *,
              burst: int = 100_000, on_burst=None, consume: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Every merge of the weakest-boundary-first agglomeration of a graph of ``n`` regions.

    Parameters
    ----------
    u, v
        ``(E,)`` end regions (``0 .. n-1``) of each edge; one edge per pair, ``u != v``.
    wsum, area
        ``(E,)`` the edges' weighted sums of boundary values and their areas (> 0): score = wsum / area.
    tie
        ``(E,)`` distinct tie keys (boundaries of equal score are taken smallest key first).
    n
        Number of regions.
    burst, on_burst
        ``on_burst(merges_so_far)`` is called after each burst of at most ``burst`` merges (progress,
        cancel: it may raise).
    consume
        Work in the arrays given where their dtypes allow (int32 or int64 ends, float64 sums and areas,
        the tie keys' dtype) instead of copies: they are overwritten. Saves 20-40 bytes an edge.

    Returns
    -------
    merges, scores
        ``(K, 2)`` int64 tree ids merged (regions are ``0 .. n-1``, merge ``k`` makes ``n + k``) and
        ``(K,)`` float64 scores, in the order made (non-decreasing up to rounding).
    """
    n_edges = int(len(u))
    # int32 indices and uint32 tie keys where they fit: the loop's memory is mostly per edge.
    tie = np.asarray(tie)
    tie_type = np.uint32 if n_edges == 0 or int(tie.max()) < 2**32 else np.uint64
    g, hp = _loop_arrays(u, v, wsum, area, tie, n, consume, tie_type)
    ext = _no_stats(g[0].dtype)
    cluster = np.arange(n, dtype=np.int64)
    size, used = _setup(g, hp, np.empty(0, np.float64), np.int64(n), False)
    state = np.array([size, used, 0, 0], dtype=np.int64)
    most = max(n - 1, 0)
    merged_a = np.empty(most, dtype=np.int64)
    merged_b = np.empty(most, dtype=np.int64)
    scores = np.empty(most, dtype=np.float64)
    while True:
        made = _run(g, hp, ext, state, cluster, merged_a, merged_b, scores, np.int64(n), np.int64(burst))
        if on_burst is not None:
            on_burst(int(state[2]))
        if made < burst:
            break
    k = int(state[2])
    return np.stack([merged_a[:k], merged_b[:k]], axis=1), scores[:k].copy()


# ---------------------------------------------------------------- driven from Python: rescored boundaries
@njit(cache=True)
def _compact_heap(hs, ht, he, size, alive, et):
    """Drop the stale entries (dead edge, or a stamp the edge no longer carries) and rebuild the heap.

    Entries are ordered by distinct ``(score, stamp)`` keys, so the order of the pops does not depend on
    the heap's layout.
    """
    j = 0
    for i in range(size):
        e = he[i]
        if alive[e] and et[e] == ht[i]:
            hs[j], ht[j], he[j] = hs[i], ht[i], e
            j += 1
    for i in range(j):
        _heap_push(hs, ht, he, i, hs[i], ht[i], he[i])
    return j


@njit(cache=True)
def _rescored_step(g, hp, ext, state, cluster, main, push_e, push_p, ex_e, ex_y, out_e, out_c,
                   merged_a, merged_b, scores, n):
    """Push the new scores of ``push_e``, then pop to the next live proposal and make it.

    ``state`` = [heap size, used table slots, merges so far, next insertion stamp, next score stamp].
    Strict mode (``main`` not empty: each region's ground-truth body, -1 for none): a proposal between
    two regions with bodies is an example (``ex_e``, ``ex_y`` = bodies differ) and, when they differ,
    is not made. The region with fewer live neighbours is merged into the other (ties: into the
    proposal's first region). Returns ``(a, b, m, n_examples)``: ``b`` merged into ``a`` (``a = -1``:
    no proposal left) and ``a``'s ``m`` live boundaries in ``out_e`` with their far ends in ``out_c``,
    in the order their neighbours were added to ``a``.
    """
    eu, ev, ws, ar, et, alive, nxt, head, tail, length, keys, vals = g
    hs, ht, he = hp
    vmin, vmax, hist, seq, deg, moved, flip = ext
    size = state[0]
    for j in range(push_e.shape[0]):  # new stamps first: these edges' older entries go stale
        et[push_e[j]] = state[4]
        state[4] += 1
    if size + push_e.shape[0] > hs.shape[0]:
        size = _compact_heap(hs, ht, he, size, alive, et)
    for j in range(push_e.shape[0]):
        e = push_e[j]
        size = _heap_push(hs, ht, he, size, push_p[j], et[e], e)
    n_ex = 0
    while size > 0:
        s, t, e = hs[0], ht[0], he[0]
        size = _heap_pop(hs, ht, he, size)
        if not alive[e] or et[e] != t:
            continue
        a, b = (ev[e], eu[e]) if flip[e] else (eu[e], ev[e])
        if main.shape[0] > 0:
            ma, mb = main[a], main[b]
            if ma >= 0 and mb >= 0:
                ex_e[n_ex] = e
                ex_y[n_ex] = 1 if ma != mb else 0
                n_ex += 1
                if ma != mb:
                    continue
        if deg[a] < deg[b]:
            a, b = b, a
        k = state[2]
        merged_a[k] = cluster[a]
        merged_b[k] = cluster[b]
        scores[k] = s
        cluster[a] = n + k
        state[2] = k + 1
        size, used = _merge(g, hp, ext, state, size, state[1], a, b, e, n, True)
        state[0], state[1] = size, used
        # a's live boundaries; its list keeps only them (walks stay proportional to its degree)
        m = 0
        last = -1
        slot = head[a]
        while slot != -1:
            following = nxt[slot]
            if alive[slot >> 1]:
                moved[m] = slot
                m += 1
                if last == -1:
                    head[a] = slot
                else:
                    nxt[last] = slot
                last = slot
            slot = following
        if last == -1:
            head[a] = -1
            tail[a] = -1
        else:
            nxt[last] = -1
            tail[a] = last
        length[a] = m
        order = np.argsort(seq[moved[:m]])
        for j in range(m):
            slot = moved[order[j]]
            e2 = slot >> 1
            out_e[j] = e2
            out_c[j] = ev[e2] if (slot & 1) == 0 else eu[e2]
            flip[e2] = (slot & 1) == 1  # its next proposal names a first
        return a, b, m, n_ex
    state[0] = size
    return -1, -1, 0, n_ex


class RescoredLoop:
    """The merge loop driven one merge at a time, each boundary of the merged region rescored from Python.

    Learned agglomeration (:mod:`napari_connectome.graph.learned`): a boundary's score is a classifier's
    output on features of its statistics, so it cannot be computed inside the loop. The graph, hash
    table, incidence lists and heap are :func:`merge_all`'s, and so is the merge itself
    (:func:`_merge`); per edge it also keeps the boundary's ``count`` (area), ``total`` (sum), ``vmin``,
    ``vmax`` and histogram row ``hist``, combined (added, min, max) when two boundaries meet. The order
    is that of a Python loop over ``dict`` neighbour lists and ``heapq`` of ``(score, stamp)``: stamps
    are given in the order scores are pushed, a merged region's neighbours are listed in the order
    they were added (its own first, then the absorbed region's), the region with fewer neighbours is
    absorbed.

    Parameters
    ----------
    u, v
        ``(E,)`` end regions of each edge, one edge per pair; the first proposal of edge ``e`` names
        ``u[e]`` first.
    count, total, vmin, vmax, hist
        ``(E,)`` the boundary statistics, ``hist`` ``(E, B)`` integers.
    score
        ``(E,)`` the edges' first scores (stamps ``0 .. E-1``).
    n
        Number of regions.
    main
        Strict mode: ``(n,)`` int64 ground-truth body of each region (-1: none); the caller updates the
        merged region's entry after each merge (the array is read by every :meth:`step`).
    """

    def __init__(self, u, v, count, total, vmin, vmax, hist, score, n: int, *, main: np.ndarray | None = None):
        n_edges = int(len(u))
        self.n = n
        self.g, self.hp = _loop_arrays(u, v, total, count, np.arange(n_edges), n, False, np.int64)
        index = self.g[0].dtype
        u, v = self.g[0], self.g[1]
        deg = (np.bincount(u, minlength=n) + np.bincount(v, minlength=n)).astype(index)
        hist = np.array(hist, dtype=np.int64, copy=True, ndmin=2)
        self.ext = (np.array(vmin, dtype=np.float64, copy=True), np.array(vmax, dtype=np.float64, copy=True), hist,
                    np.arange(2 * n_edges, dtype=np.int64), deg, np.empty(max(n_edges, 1), index),
                    np.zeros(n_edges, np.bool_))
        size, used = _setup(self.g, self.hp, np.asarray(score, dtype=np.float64), np.int64(n), True)
        self.state = np.array([size, used, 0, 2 * n_edges, n_edges], dtype=np.int64)
        self.main = np.empty(0, np.int64) if main is None else main
        self.cluster = np.arange(n, dtype=np.int64)
        most = max(n - 1, 0)
        self._merged = (np.empty(most, np.int64), np.empty(most, np.int64), np.empty(most, np.float64))
        self._buf = (np.empty(max(n_edges, 1), np.int64), np.empty(max(n_edges, 1), np.int64),
                     np.empty(max(n_edges, 1), np.int64), np.empty(max(n_edges, 1), np.int64))

    # the boundary statistics, per edge (read them for the edges a step returns)
    count = property(lambda self: self.g[3])
    total = property(lambda self: self.g[2])
    vmin = property(lambda self: self.ext[0])
    vmax = property(lambda self: self.ext[1])
    hist = property(lambda self: self.ext[2])

    def step(self, push_edges: np.ndarray, push_scores: np.ndarray):
        """Give ``push_edges`` their new scores, then make the next merge.

        Returns
        -------
        a, b, edges, neighbours, examples, labels
            Region ``b`` was merged into ``a`` (``a = -1``: no proposal is left); ``edges`` are ``a``'s
            live boundaries now (to rescore, in this order) and ``neighbours`` their far ends; strict
            mode: the edges proposed (and refused when ``labels`` is 1) on the way, else empty.
        """
        ex_e, ex_y, out_e, out_c = self._buf
        a, b, m, k = _rescored_step(self.g, self.hp, self.ext, self.state, self.cluster, self.main,
                                    np.asarray(push_edges, np.int64), np.asarray(push_scores, np.float64),
                                    ex_e, ex_y, out_e, out_c, *self._merged, np.int64(self.n))
        return int(a), int(b), out_e[:m].copy(), out_c[:m].copy(), ex_e[:k].copy(), ex_y[:k].copy()

    def merges(self) -> tuple[np.ndarray, np.ndarray]:
        """``(K, 2)`` tree ids merged so far (merge ``k`` makes ``n + k``) and their ``(K,)`` scores."""
        k = int(self.state[2])
        merged_a, merged_b, scores = self._merged
        return np.stack([merged_a[:k], merged_b[:k]], axis=1), scores[:k].copy()
