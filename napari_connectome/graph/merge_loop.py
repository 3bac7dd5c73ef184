"""The merge loop of hierarchical agglomeration, compiled (numba): weakest boundary first, every merge kept.

One loop for every agglomeration of the suite: boundaries are taken in order
of ``(score, tie key)``; merging two regions adds their boundaries' weighted
sums and areas towards each common neighbour (so a boundary's score is the
area-weighted mean of its RAG edges' values, waterz's and gala's "mean
affinity") and keeps the smaller tie key. The merges are exactly those of
the reference heap loop over Python dicts
(:func:`napari_connectome.graph.agglomerate._heap_merge`, kept for tests):
same pairs, same scores, in the same order.

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
def _setup(eu, ev, ws, ar, et, nxt, head, tail, length, keys, vals, hs, ht, he, n):
    """Lists, hash table and heap of a fresh graph; returns (heap size, used table slots)."""
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
        size = _heap_push(hs, ht, he, size, ws[e] / ar[e], et[e], e)
    return size, eu.shape[0]


@njit(cache=True)
def _run(eu, ev, ws, ar, et, alive, nxt, head, tail, length, cluster, keys, vals, hs, ht, he, state,
         merged_a, merged_b, scores, n, burst):
    """At most ``burst`` merges; ``state`` = [heap size, used table slots, merges so far]. Returns merges made."""
    size, used, k = state[0], state[1], state[2]
    cap = np.int64(keys.shape[0])
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
        alive[e] = False
        lo, hi = (a, b) if a < b else (b, a)
        keys[_find(keys, lo * n + hi, cap)] = TOMB
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
                    if et[e2] < et[ea]:
                        et[ea] = et[e2]
                    alive[e2] = False
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
    state[0], state[1], state[2] = size, used, k
    return made


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
    index = np.int32 if max(2 * n_edges + 1, n) < 2**31 else np.int64
    tie = np.asarray(tie)
    tie_type = np.uint32 if n_edges == 0 or int(tie.max()) < 2**32 else np.uint64
    eu = np.asarray(u).astype(index, copy=not consume)
    ev = np.asarray(v).astype(index, copy=not consume)
    ws = np.asarray(wsum).astype(np.float64, copy=not consume)
    ar = np.asarray(area).astype(np.float64, copy=not consume)
    et = tie.astype(tie_type, copy=not consume)
    alive = np.ones(n_edges, dtype=np.bool_)
    nxt = np.full(2 * n_edges, -1, dtype=index)
    head = np.full(n, -1, dtype=index)
    tail = np.full(n, -1, dtype=index)
    length = np.zeros(n, dtype=index)
    cluster = np.arange(n, dtype=np.int64)
    # 1.6 slots an edge: 62 % full at the start; edges only die, so a rebuild (tombstones gone) stays below
    cap = int(1.6 * n_edges) + 64
    keys = np.full(cap, EMPTY, dtype=np.int64)
    vals = np.zeros(cap, dtype=index)
    heap_cap = 2 * n_edges + 1
    hs = np.empty(heap_cap, dtype=np.float64)
    ht = np.empty(heap_cap, dtype=tie_type)
    he = np.empty(heap_cap, dtype=index)
    size, used = _setup(eu, ev, ws, ar, et, nxt, head, tail, length, keys, vals, hs, ht, he, np.int64(n))
    state = np.array([size, used, 0], dtype=np.int64)
    most = max(n - 1, 0)
    merged_a = np.empty(most, dtype=np.int64)
    merged_b = np.empty(most, dtype=np.int64)
    scores = np.empty(most, dtype=np.float64)
    while True:
        made = _run(eu, ev, ws, ar, et, alive, nxt, head, tail, length, cluster, keys, vals, hs, ht, he, state,
                    merged_a, merged_b, scores, np.int64(n), np.int64(burst))
        if on_burst is not None:
            on_burst(int(state[2]))
        if made < burst:
            break
    k = int(state[2])
    return np.stack([merged_a[:k], merged_b[:k]], axis=1), scores[:k].copy()
