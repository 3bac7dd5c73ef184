"""A piece's merge tree read off the tree it was cut from is the tree a fresh agglomeration makes."""

from __future__ import annotations

import numpy as np
import pytest

from napari_connectome.candidates import trees as T


def _graph(rng, n):
    """A connected region graph over positions ``0 .. 2n`` (every other one used), with tied scores."""
    members = np.arange(1, 2 * n + 1, 2, dtype=np.int64)
    chain = np.stack([np.arange(n - 1), np.arange(1, n)], axis=1)
    extra = rng.integers(0, n, size=(2 * n, 2))
    ends = np.concatenate([chain, extra[extra[:, 0] != extra[:, 1]]])
    ends = np.unique(np.sort(ends, axis=1), axis=0)
    ends = ends[rng.permutation(len(ends))]  # rows in no particular order of their ends
    u, v = members[ends[:, 0]], members[ends[:, 1]]
    mean = rng.choice([0.1, 0.25, 0.5, 0.75], size=len(u)) if rng.random() < 0.5 else rng.random(len(u))
    area = rng.choice([0.0, 1.0, 2.0, 3.0], size=len(u))  # 0: the loop counts it as 1
    return members, u, v, area, mean


def _canonical(tree):
    """Each merge as (its two sides' supervoxels, unordered, and its score's bits), in order."""
    out = []
    for j, (x, y) in enumerate(tree.merges.tolist()):
        sides = frozenset(tuple(tree.members[T._leaves(tree.merges, tree.n, z)].tolist()) for z in (x, y))
        out.append((sides, float(tree.scores[j]).hex()))
    return out


def _inside(members, u, v, piece):
    rows = np.flatnonzero(np.isin(u, piece) & np.isin(v, piece))
    return rows


@pytest.mark.parametrize("seed", range(30))
def test_subtrees_and_late_supervoxels_read_off_equal_a_fresh_agglomeration(seed):
    rng = np.random.default_rng(seed)
    members, u, v, area, mean = _graph(rng, int(rng.integers(6, 60)))
    tree = T.segment_tree(members, np.arange(len(u)), u, v, area, mean)
    n, m = tree.n, tree.merges.shape[0]
    assert m == n - 1  # connected
    read_off = 0
    for node in range(n + m):
        leaves = T._leaves(tree.merges, n, node)
        pieces = [leaves]
        # one supervoxel merged in after the subtree was complete, touching it
        late = [q for q in range(n) if tree.parent[q] > node and q not in leaves]
        if late:
            pieces.append(np.sort(np.r_[leaves, late[int(rng.integers(len(late)))]]))
        # and one merged elsewhere before the subtree was complete: read off only if it comes out the same
        # (preferably one merged after every leaf of the subtree: the one such a piece's late leaf looks like)
        early = [q for q in range(n) if 0 <= tree.parent[q] < node and q not in leaves]
        looks_late = [q for q in early if tree.parent[q] > tree.parent[leaves].max()]
        early = looks_late or early
        if early:
            pieces.append(np.sort(np.r_[leaves, early[int(rng.integers(len(early)))]]))
        for piece in pieces:
            if piece.size < 2:
                continue
            ids = members[piece]
            rows = _inside(members, u, v, ids)
            fresh = T._agglomerated(ids, rows, u, v, area, mean)
            got = T._from_earlier(tree, ids, rows, area, mean)
            if fresh.merges.shape[0] != ids.size - 1:
                assert got is None  # not connected by its own edges
                continue
            if piece is leaves:
                assert got is not None  # a subtree is always read off
            if got is None:
                continue  # the late supervoxel touches nothing of the subtree
            read_off += 1
            assert _canonical(got) == _canonical(fresh)
            assert [(s, a.tolist(), b.tolist()) for s, a, b in T.last_merges(got, 3)] == \
                   [(s, a.tolist(), b.tolist()) for s, a, b in T.last_merges(fresh, 3)]
            np.testing.assert_array_equal(got.rows, fresh.rows)
            np.testing.assert_array_equal(got.a, fresh.a)
            np.testing.assert_array_equal(got.b, fresh.b)
            # and what is read off can be read off again
            inner = T._leaves(got.merges, got.n, got.n + got.merges.shape[0] - 2) if got.n > 2 else None
            if inner is not None and inner.size >= 2:
                sub = got.members[inner]
                again = T._from_earlier(got, sub, _inside(members, u, v, sub), area, mean)
                assert again is not None
                assert _canonical(again) == _canonical(T._agglomerated(sub, _inside(members, u, v, sub), u, v,
                                                                       area, mean))
    assert read_off > 0


@pytest.mark.parametrize("seed", range(10))
def test_anything_else_is_agglomerated_again(seed):
    rng = np.random.default_rng(100 + seed)
    members, u, v, area, mean = _graph(rng, 40)
    tree = T.segment_tree(members, np.arange(len(u)), u, v, area, mean)
    for _ in range(50):
        piece = np.sort(rng.choice(members, size=int(rng.integers(2, 30)), replace=False))
        rows = _inside(members, u, v, piece)
        got = T.segment_tree(piece, rows, u, v, area, mean, earlier=[tree])
        assert _canonical(got) == _canonical(T._agglomerated(piece, rows, u, v, area, mean))
    # a subtree whose edges changed (one of its links cut) is not read off
    node = int(np.argmax(tree.count[tree.n:] >= 6)) + tree.n
    piece = members[T._leaves(tree.merges, tree.n, node)]
    rows = _inside(members, u, v, piece)
    assert T._from_earlier(tree, piece, rows, area, mean) is not None
    assert T._from_earlier(tree, piece, rows[1:], area, mean) is None
    assert T._from_earlier(tree, np.r_[piece, 10**6], rows, area, mean) is None  # not all in the tree


def test_tie_keys_of_rows_are_the_graphs():
    from napari_connectome.graph.agglomerate import _tie_keys

    rows = np.array([5, 0, 17, 3])
    np.testing.assert_array_equal(T.tie_keys_of(rows, 20), _tie_keys(20)[rows])
