"""A segment's merge tree for the candidate finder: agglomerated again, or read off the tree it was cut from.

The finder proposes a segment's last merges as false-merge candidates
(:func:`~napari_connectome.candidates.find.find_candidates`), so it needs the
segment's own merge tree: its internal region-graph edges agglomerated by
contact-weighted mean boundary with the loop of every agglomeration
(:func:`~napari_connectome.graph.merge_loop.merge_all`), ties taken by the
region-graph rows' tie keys as the project's agglomeration takes them.

After a split along one of those merges the pieces need their trees, and a
grown segment of thousands of supervoxels takes ~10 ms to agglomerate again
after every edit. Most pieces need not be: a mean-boundary agglomeration
merges the clusters of a subtree among themselves in the same order whatever
lies outside it (their boundaries are made of the edges between them alone,
and every boundary leaving the subtree lost to each of its merges), so:

* a piece whose supervoxels are the leaves of a node of the earlier tree has
  that node's subtree as its tree;
* a piece that is such a subtree plus one supervoxel that merged in only after
  the subtree was complete has the subtree and then that supervoxel's merge,
  its score the boundary between the two summed in the order the subtree's
  merges combine it (the same floating-point sums as the loop's).

Either holds only if the piece's internal edges are exactly the earlier
tree's edges among those supervoxels; that is checked, and anything else is
agglomerated again. The trees are the same merges with the same scores as a
fresh agglomeration (tested on random graphs with tied scores).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numba import njit

from napari_connectome.graph.local import local_index

#: Trees of segments with at least this many supervoxels are kept for the pieces of later splits (smaller
#: ones are quick to agglomerate again).
KEEP_FROM = 256


@dataclass
class SegmentTree:
    """A segment's merge tree: merge ``j`` joins ``merges[j]`` into node ``n + j`` (leaves ``0 .. n-1``).

    Attributes
    ----------
    members
        ``(n,)`` the supervoxels' state positions, ascending (leaf ``i`` is ``members[i]``).
    rows
        ``(E,)`` the region-graph rows it was made from, ascending; ``a``, ``b`` their ends as leaves.
    merges, scores
        ``(m, 2)`` nodes merged and ``(m,)`` their boundary scores, in the order made.
    parent, count
        ``(n + m,)`` each node's merge above it (-1 for a root) and its number of leaves.
    """

    members: np.ndarray
    rows: np.ndarray
    a: np.ndarray
    b: np.ndarray
    merges: np.ndarray
    scores: np.ndarray
    parent: np.ndarray
    count: np.ndarray

    @property
    def n(self) -> int:
        return int(self.members.size)


def tie_keys_of(rows: np.ndarray, n_edges: int) -> np.ndarray:
    """The agglomeration's tie keys of region-graph ``rows`` (of a graph of ``n_edges`` rows)."""
    from napari_connectome.graph.agglomerate import _tie_keys

    return _tie_keys(n_edges, rows=np.asarray(rows, np.int64))


def segment_tree(members: np.ndarray, rows: np.ndarray, u, v, area, mean, *,
                 earlier: Iterable[SegmentTree] = ()) -> SegmentTree:
    """The merge tree of a segment: read off one of the ``earlier`` trees where it can be, else made.

    Parameters
    ----------
    members
        ``(n,)`` the segment's supervoxel positions, ascending.
    rows
        The region-graph rows inside the segment (active, between its supervoxels), ascending.
    u, v, area, mean
        The region graph's row ends (positions), contact areas and mean boundaries.
    earlier
        Trees of segments that are gone (the segment may be a piece of one).
    """
    members = np.asarray(members, np.int64)
    rows = np.asarray(rows, np.int64)
    for tree in earlier:
        got = _from_earlier(tree, members, rows, area, mean)
        if got is not None:
            return got
    return _agglomerated(members, rows, u, v, area, mean)


def last_merges(tree: SegmentTree, k: int) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """The last ``k`` merges of a tree: ``(score, side_a, side_b)`` as positions, latest first.

    Each merge's side holding the smaller supervoxel position comes first. If the tree is a forest (a
    manual link holds the segment together), the link between its pieces comes first, with score 1
    (nothing in the image supports it).
    """
    merges, n = tree.merges, tree.n
    m = merges.shape[0]
    roots = np.flatnonzero(tree.parent < 0)
    roots = roots[np.argsort(_smallest_leaf(merges, n)[roots], kind="stable")]
    out = []
    if roots.size > 1:
        rest = [_leaves(merges, n, int(r)) for r in roots[1:].tolist()]
        out.append((1.0, _leaves(merges, n, int(roots[0])), np.sort(np.concatenate(rest))))
    for i in range(m - 1, -1, -1):
        if len(out) >= k:
            break
        x, y = _leaves(merges, n, int(merges[i, 0])), _leaves(merges, n, int(merges[i, 1]))
        out.append((float(tree.scores[i]), x, y) if x[0] < y[0] else (float(tree.scores[i]), y, x))
    return [(s, tree.members[a_], tree.members[b_]) for s, a_, b_ in out[:k]]


def _weights(rows: np.ndarray, area, mean) -> tuple[np.ndarray, np.ndarray]:
    """What the merge loop is given per row: its boundary sum (mean × area) and its area (> 0)."""
    ar = np.asarray(np.asarray(area)[rows], dtype=np.float64)
    ar = np.where(ar > 0, ar, 1.0)
    return np.asarray(np.asarray(mean)[rows], dtype=np.float64) * ar, ar


def _agglomerated(members: np.ndarray, rows: np.ndarray, u, v, area, mean) -> SegmentTree:
    from napari_connectome.graph.merge_loop import merge_all

    n = members.size
    a = local_index(members, np.asarray(u)[rows])
    b = local_index(members, np.asarray(v)[rows])
    wsum, ar = _weights(rows, area, mean)
    merges, scores = merge_all(a, b, wsum, ar, tie_keys_of(rows, len(u)), n)
    merges = np.asarray(merges, dtype=np.int64).reshape(-1, 2)
    parent, count = _parents(merges, n)
    return SegmentTree(members, rows, a, b, merges, np.asarray(scores, np.float64), parent, count)


def _from_earlier(tree: SegmentTree, members: np.ndarray, rows: np.ndarray, area, mean) -> SegmentTree | None:
    """``members``' tree read off ``tree`` (see the module notes), or None where it cannot be."""
    if members.size < 2 or members[0] < tree.members[0] or members[-1] > tree.members[-1]:
        return None
    try:
        leaves = local_index(tree.members, members)
    except ValueError:
        return None
    inside = np.zeros(tree.n, bool)
    inside[leaves] = True
    within = inside[tree.a] & inside[tree.b]
    if not np.array_equal(tree.rows[within], rows):
        return None  # edges inside changed since (a link cut or made): agglomerate again
    node = _node_of(tree, leaves)
    if node >= 0:
        return _subtree(tree, node, leaves, members, rows, None)
    # One supervoxel more than a subtree, merged in after the subtree was complete.
    late = leaves[int(np.argmax(tree.parent[leaves]))]
    rest = leaves[leaves != late]
    node = _node_of(tree, rest) if rest.size else -1
    if node < 0 or tree.parent[late] <= node:
        return None
    to_late = within & ((tree.a == late) | (tree.b == late))
    if not to_late.any():
        return None  # not connected to the subtree by edges: a forest, agglomerated again
    ends = np.where(tree.a[to_late] == late, tree.b[to_late], tree.a[to_late])
    wsum, ar = _weights(tree.rows[to_late], area, mean)
    score = _replayed_boundary(tree.merges, tree.n, node, ends, wsum, ar)
    return _subtree(tree, node, leaves, members, rows, (late, score))


def _node_of(tree: SegmentTree, leaves: np.ndarray) -> int:
    """The node of ``tree`` whose leaves are exactly ``leaves`` (sorted), or -1."""
    node = _climb(tree.parent, tree.count, int(leaves[0]), int(leaves.size))
    if node < 0 or tree.count[node] != leaves.size:
        return -1
    return node if np.array_equal(_leaves(tree.merges, tree.n, node), leaves) else -1


def _subtree(tree: SegmentTree, node: int, leaves: np.ndarray, members: np.ndarray, rows: np.ndarray,
             late: tuple[int, float] | None) -> SegmentTree:
    """The tree of ``members`` from ``tree``'s subtree at ``node`` (then ``late``'s merge, when given)."""
    n = members.size
    inner = np.sort(_under(tree.merges, tree.n, node)[1])
    new = np.full(tree.n + tree.merges.shape[0], -1, np.int64)
    new[leaves] = np.arange(n)
    new[tree.n + inner] = n + np.arange(inner.size)
    merges = new[tree.merges[inner]].reshape(-1, 2)
    scores = tree.scores[inner]
    if late is not None:
        merges = np.concatenate([merges, [[new[node], new[late[0]]]]])
        scores = np.concatenate([scores, [late[1]]])
    parent, count = _parents(merges, n)
    within = np.zeros(tree.n, bool)
    within[leaves] = True
    keep = within[tree.a] & within[tree.b]
    return SegmentTree(members, rows, new[tree.a[keep]], new[tree.b[keep]], merges, scores, parent, count)


@njit(cache=True, nogil=True)
def _parents(merges, n):
    """Each node's merge above it (-1 for roots) and its number of leaves."""
    m = merges.shape[0]
    parent = np.full(n + m, -1, np.int64)
    count = np.ones(n + m, np.int64)
    for j in range(m):
        x, y = merges[j, 0], merges[j, 1]
        parent[x] = n + j
        parent[y] = n + j
        count[n + j] = count[x] + count[y]
    return parent, count


@njit(cache=True, nogil=True)
def _climb(parent, count, leaf, size):
    """The lowest node above ``leaf`` with at least ``size`` leaves (-1 if its tree has fewer)."""
    x = leaf
    while count[x] < size:
        if parent[x] < 0:
            return -1
        x = parent[x]
    return x


@njit(cache=True, nogil=True)
def _under(merges, n, node):
    """The leaves (unsorted) and the merges (indices) under ``node`` of a merge tree."""
    leaves = np.empty(n, np.int64)
    inner = np.empty(merges.shape[0], np.int64)
    stack = np.empty(n + merges.shape[0], np.int64)
    n_leaves, n_inner = 0, 0
    stack[0] = node
    top = 1
    while top > 0:
        top -= 1
        x = stack[top]
        if x < n:
            leaves[n_leaves] = x
            n_leaves += 1
        else:
            inner[n_inner] = x - n
            n_inner += 1
            stack[top] = merges[x - n, 0]
            stack[top + 1] = merges[x - n, 1]
            top += 2
    return leaves[:n_leaves], inner[:n_inner]


@njit(cache=True, nogil=True)
def _replayed_boundary(merges, n, node, ends, wsum, area):
    """The mean boundary between ``node``'s cluster and one outside supervoxel touching leaves ``ends``.

    Summed as the merge loop sums it: each merge under ``node``, in order, adds its two children's parts
    (``a + b``, which is ``b + a``), so the score is the loop's to the last bit.
    """
    m = merges.shape[0]
    ws = np.zeros(n + m)
    ar = np.zeros(n + m)
    has = np.zeros(n + m, np.bool_)
    for i in range(ends.size):
        ws[ends[i]] = wsum[i]
        ar[ends[i]] = area[i]
        has[ends[i]] = True
    for j in range(node - n + 1):
        x, y = merges[j, 0], merges[j, 1]
        if has[x] and has[y]:
            ws[n + j] = ws[x] + ws[y]
            ar[n + j] = ar[x] + ar[y]
            has[n + j] = True
        elif has[x] or has[y]:
            z = x if has[x] else y
            ws[n + j] = ws[z]
            ar[n + j] = ar[z]
            has[n + j] = True
    return ws[node] / ar[node]


@njit(cache=True, nogil=True)
def _smallest_leaf(merges, n):
    """The smallest leaf under every node of a merge tree (leaves ``0..n-1``, merge ``j`` is node ``n + j``)."""
    low = np.empty(n + merges.shape[0], np.int64)
    for i in range(n):
        low[i] = i
    for j in range(merges.shape[0]):
        low[n + j] = min(low[merges[j, 0]], low[merges[j, 1]])
    return low


@njit(cache=True, nogil=True)
def _leaves(merges, n, node):
    """The leaves under ``node`` of a merge tree, sorted."""
    return np.sort(_under(merges, n, node)[0])
