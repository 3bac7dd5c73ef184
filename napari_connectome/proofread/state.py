"""The editable segmentation: supervoxels, the edges that hold them together, segments.

A segment is a connected component of the *active* edges. The base state
activates the region-graph edges internal to the agglomeration's segments;
edits add edges (merge: any two supervoxels, adjacent or not) and remove
them (split). Supervoxels are addressed internally by their *position* in
:attr:`SegmentationState.ids` (sorted; position 0 is the background, label
0), so per-supervoxel data are plain arrays and a label volume is remapped
with one gather. Supervoxels minted by a split inside a supervoxel get ids
above every id seen so far, so they are appended and the order holds.

An edit is first *planned* (validated, new components computed, nothing
changed), then logged, then *committed*: the in-memory state only changes
after the log has the record.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from napari_connectome.arrays import distinct
from napari_connectome.errors import InputError
from napari_connectome.graph.local import local_index
from napari_connectome.proofread.ops import Effect, NodeEdges

#: Added to every edge's capacity so that even a full-strength boundary costs
#: something to cut (the min-cut then prefers fewer edges among equals).
CAPACITY_EPSILON = 1e-3
#: Capacity of an active edge between supervoxels that do not touch (a manual
#: merge of distant pieces): as much as one voxel face at boundary 0.5, so a
#: split cuts such a link before any real contact.
MANUAL_EDGE_CAPACITY = 0.5


def edge_capacity(contact_area, mean) -> np.ndarray:
    """Cost of cutting an edge: large for a wide contact with a weak boundary.

    ``contact_area × (1 - mean boundary) + ε``: the min-cut runs where the
    membrane is strong and the contact small.
    """
    area = np.asarray(contact_area, dtype=np.float64)
    mean = np.clip(np.asarray(mean, dtype=np.float64), 0.0, 1.0)
    return area * (1.0 - mean) + CAPACITY_EPSILON


def _unique_rows(rows: np.ndarray, n_rows: int) -> np.ndarray:
    """``distinct(rows)`` for row indices below ``n_rows``: through a mask where they are many.

    An edge inside a segment comes once from each end; for a segment of thousands of supervoxels a
    mask over the graph's rows (one pass) is several times cheaper than sorting them, every time a
    split or a candidate cut reads the segment's edges.
    """
    if rows.size * 16 < n_rows:
        return distinct(rows)
    seen = np.zeros(n_rows, np.bool_)
    seen[rows] = True
    return np.flatnonzero(seen).astype(rows.dtype, copy=False)


@njit(cache=True, nogil=True)
def _smallest_of_component(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For nodes ``0..n-1`` joined by edges ``(a[i], b[i])``: each node's component's smallest node.

    Union-find whose root is always the smaller one; a split's components of a segment of thousands of
    supervoxels in a fraction of what building a sparse matrix for scipy's labelling took.
    """
    parent = np.arange(n)
    for i in range(a.size):
        x = a[i]
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        y = b[i]
        while parent[y] != y:
            parent[y] = parent[parent[y]]
            y = parent[y]
        if x < y:
            parent[y] = x
        elif y < x:
            parent[x] = y
    for i in range(n):  # in order, so a node's parent is final already: roots are the smallest
        parent[i] = parent[parent[i]]
    return parent


class EffectConflict(InputError):
    """An effect cannot apply to the current state (its preconditions do not hold)."""


@dataclass
class Plan:
    """A validated effect and the segments it would produce (nothing changed yet)."""

    effect: Effect
    before_segments: list[int]
    components: list[np.ndarray]  # positions, each sorted; ordered by smallest id
    new_positions: dict[int, int] = field(default_factory=dict)  # minted id -> position

    def anchors(self, ids: np.ndarray) -> list[int]:
        """The smallest supervoxel id of each component (how replay matches them)."""
        return [int(self._id(ids, c[0])) for c in self.components]

    def _id(self, ids: np.ndarray, pos: int) -> int:
        for sv, p in self.new_positions.items():
            if p == pos:
                return sv
        return int(ids[pos])


def _pair_keys(pairs: np.ndarray) -> np.ndarray:
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return pairs[:, 0] * np.int64(1 << 31) + pairs[:, 1]


def members_digest(ids: np.ndarray) -> str:
    """A short fingerprint of a set of supervoxel ids (sorted uint64)."""
    return hashlib.blake2b(np.ascontiguousarray(ids, dtype="<u8").tobytes(), digest_size=12).hexdigest()


class SegmentationState:
    """Supervoxels, active edges and segments.

    Parameters
    ----------
    rag
        The region adjacency graph (``node_ids``, ``edges``, ``contact_area``,
        ``features["mean"]``).
    base_edges
        ``(K, 2)`` supervoxel id pairs active in the base state (the edges
        internal to the agglomeration's segments); they must be graph edges.
    """

    def __init__(self, rag, base_edges=None) -> None:
        node_ids = np.asarray(rag.node_ids, dtype=np.uint64)
        if node_ids.size and node_ids[0] == 0:
            raise InputError("region graph", "supervoxel 0 (background) must not be a node")
        self.ids = np.concatenate([np.zeros(1, np.uint64), node_ids])
        self.n_base = int(self.ids.size)
        self.alive = np.ones(self.n_base, dtype=bool)
        self.alive[0] = False
        edges = np.asarray(rag.edges, dtype=np.uint64).reshape(-1, 2)
        self.rag_u = np.searchsorted(self.ids, edges[:, 0]).astype(np.int64)
        self.rag_v = np.searchsorted(self.ids, edges[:, 1]).astype(np.int64)
        self._key_base = np.int64(self.n_base)
        keys = self.rag_u * self._key_base + self.rag_v
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order]
        self._key_rows = order.astype(np.int64)
        mean = rag.features["mean"] if "mean" in rag.features else np.zeros(edges.shape[0], np.float32)
        self.capacity = edge_capacity(rag.contact_area, mean)
        # CSR over positions: for every node, its incident region-graph rows.
        src = np.concatenate([self.rag_u, self.rag_v])
        rows = np.concatenate([np.arange(edges.shape[0]), np.arange(edges.shape[0])])
        order = np.argsort(src, kind="stable")
        self._csr_rows = rows[order].astype(np.int64)
        self._indptr = np.zeros(self.n_base + 1, dtype=np.int64)
        np.cumsum(np.bincount(src, minlength=self.n_base), out=self._indptr[1:])
        self.active = np.zeros(edges.shape[0], dtype=bool)
        if base_edges is not None and len(base_edges):
            rows = self.rag_rows(*self.positions_of_pairs(base_edges))
            if (rows < 0).any():
                raise InputError("merge tree", "the base segmentation uses edges that are not in the graph")
            self.active[rows] = True
        # Edges outside the base graph: minted supervoxels' contacts
        # (extra_rag: pos -> {pos: capacity}) and active links that are not
        # graph rows (manual merges of distant pieces, minted contacts).
        self.extra_rag: dict[int, dict[int, float]] = {}
        self.extra_active: dict[int, set[int]] = {}
        self.seg = np.zeros(self.n_base, dtype=np.uint64)
        self._base_components()
        self.next_id = int(self.ids[-1]) + 1 if self.ids.size > 1 else 1

    # ------------------------------------------------------------ lookups
    def positions(self, svs, *, source: str = "supervoxel") -> np.ndarray:
        """Positions of supervoxel ids; :class:`InputError` for unknown ones."""
        svs = np.asarray(svs, dtype=np.uint64).ravel()
        pos = np.minimum(np.searchsorted(self.ids, svs), self.ids.size - 1)
        bad = self.ids[pos] != svs
        if bad.any():
            raise InputError(source, f"{int(svs[bad][0])} is not a supervoxel of this project")
        return pos.astype(np.int64)

    def positions_of_pairs(self, pairs) -> tuple[np.ndarray, np.ndarray]:
        pairs = np.asarray(pairs, dtype=np.uint64).reshape(-1, 2)
        a = self.positions(pairs[:, 0])
        b = self.positions(pairs[:, 1])
        return np.minimum(a, b), np.maximum(a, b)

    def rag_rows(self, pu: np.ndarray, pv: np.ndarray) -> np.ndarray:
        """Region-graph rows of position pairs ``pu < pv``; -1 where not a base graph edge."""
        pu = np.asarray(pu, dtype=np.int64)
        pv = np.asarray(pv, dtype=np.int64)
        out = np.full(pu.shape, -1, dtype=np.int64)
        base = (pu < self.n_base) & (pv < self.n_base)
        if not base.any() or self._keys.size == 0:
            return out
        key = pu[base] * self._key_base + pv[base]
        i = np.minimum(np.searchsorted(self._keys, key), self._keys.size - 1)
        hit = self._keys[i] == key
        out[np.flatnonzero(base)[hit]] = self._key_rows[i[hit]]
        return out

    def members(self, segment_id: int) -> np.ndarray:
        """Positions of the supervoxels of a segment (sorted)."""
        if segment_id == 0:
            return np.empty(0, np.int64)
        return np.flatnonzero(self.seg == np.uint64(segment_id))

    def has_segment(self, segment_id: int) -> bool:
        return segment_id != 0 and bool((self.seg == np.uint64(segment_id)).any())

    def mapping(self) -> tuple[np.ndarray, np.ndarray]:
        """``(sv_ids, segment_ids)`` of every live supervoxel, sorted by id."""
        live = np.flatnonzero(self.alive)
        return self.ids[live].copy(), self.seg[live].copy()

    def is_active(self, pu: int, pv: int) -> bool:
        pu, pv = (pu, pv) if pu < pv else (pv, pu)
        row = int(self.rag_rows(np.array([pu]), np.array([pv]))[0])
        if row >= 0:
            return bool(self.active[row])
        return pv in self.extra_active.get(pu, ())

    def active_edges(self, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Active edges with an end in ``nodes`` (positions): ``(K, 2)`` pairs ``u < v`` and capacities."""
        nodes = np.asarray(nodes, dtype=np.int64)
        rows = self.incident_rows(nodes)
        rows = rows[self.active[rows]]
        pairs = [np.stack([self.rag_u[rows], self.rag_v[rows]], axis=1)]
        caps = [self.capacity[rows]]
        extra = self._extra_active_edges(nodes)
        if extra:
            pairs.append(np.array([e[0] for e in extra], dtype=np.int64).reshape(-1, 2))
            caps.append(np.array([e[1] for e in extra], dtype=np.float64))
        return np.concatenate(pairs).astype(np.int64), np.concatenate(caps)

    def incident_rows(self, nodes: np.ndarray) -> np.ndarray:
        """The region-graph rows with an end in ``nodes`` (positions), active or not, ascending."""
        nodes = np.asarray(nodes, dtype=np.int64)
        base = nodes[nodes < self.n_base]
        starts = self._indptr[base]
        counts = self._indptr[base + 1] - starts
        total = int(counts.sum())
        if not total:
            return np.empty(0, np.int64)
        offsets = np.repeat(starts - (np.cumsum(counts) - counts), counts)
        return _unique_rows(self._csr_rows[offsets + np.arange(total)], self.active.size)

    def _extra_active_edges(self, nodes: np.ndarray) -> list:
        if not self.extra_active:
            return []
        wanted = np.zeros(self.ids.size, dtype=bool)
        wanted[nodes] = True
        out = []
        seen = set()
        for p, nbrs in self.extra_active.items():
            for q in nbrs:
                a, b = (p, q) if p < q else (q, p)
                if (a, b) in seen or not (wanted[a] or wanted[b]):
                    continue
                seen.add((a, b))
                out.append(((a, b), self.pair_capacity(a, b)))
        return out

    def pair_capacity(self, pu: int, pv: int) -> float:
        pu, pv = (pu, pv) if pu < pv else (pv, pu)
        row = int(self.rag_rows(np.array([pu]), np.array([pv]))[0])
        if row >= 0:
            return float(self.capacity[row])
        cap = self.extra_rag.get(pu, {}).get(pv)
        return float(cap) if cap is not None else MANUAL_EDGE_CAPACITY

    def graph_neighbors(self, pos: int) -> np.ndarray:
        """Positions adjacent in the region graph (base rows and minted contacts), live ones only."""
        out = []
        if pos < self.n_base:
            rows = self._csr_rows[self._indptr[pos] : self._indptr[pos + 1]]
            out.append(np.where(self.rag_u[rows] == pos, self.rag_v[rows], self.rag_u[rows]))
        if pos in self.extra_rag:
            out.append(np.fromiter(self.extra_rag[pos], dtype=np.int64))
        if not out:
            return np.empty(0, np.int64)
        nb = distinct(np.concatenate(out))
        return nb[self.alive[nb]]

    def touching(self, pu: int, pv: int) -> bool:
        """Whether two supervoxels share a face (a graph edge, base or minted)."""
        pu, pv = (pu, pv) if pu < pv else (pv, pu)
        if int(self.rag_rows(np.array([pu]), np.array([pv]))[0]) >= 0:
            return True
        return pv in self.extra_rag.get(pu, {})

    def check(self) -> None:
        """Raise AssertionError unless segments are exactly the components of the active edges.

        For tests: every live supervoxel is in a segment, dead ones and the
        background in none, active edges join live supervoxels of one
        segment, and each segment is connected.
        """
        live = np.flatnonzero(self.alive)
        assert (self.seg[~self.alive] == 0).all(), "a dead supervoxel has a segment"
        assert (self.seg[live] != 0).all(), "a live supervoxel has no segment"
        pairs, _ = self.active_edges(live)
        if pairs.size:
            assert self.alive[pairs].all(), "an active edge touches a dead supervoxel"
            assert (self.seg[pairs[:, 0]] == self.seg[pairs[:, 1]]).all(), "an active edge joins two segments"
        comps = self.components(live, pairs)
        assert len(comps) == distinct(self.seg[live]).size, "a segment is not connected"

    # ---------------------------------------------------------- components
    def _base_components(self) -> None:
        from scipy.sparse import coo_array
        from scipy.sparse.csgraph import connected_components

        n = self.ids.size
        rows = np.flatnonzero(self.active)
        graph = coo_array(
            (np.ones(rows.size, np.int8), (self.rag_u[rows], self.rag_v[rows])), shape=(n, n)
        ).tocsr()
        _, labels = connected_components(graph, directed=False)
        smallest = np.full(labels.max() + 1 if labels.size else 0, np.iinfo(np.uint64).max, np.uint64)
        np.minimum.at(smallest, labels, self.ids)
        self.seg = smallest[labels]
        self.seg[0] = 0

    @staticmethod
    def components(nodes: np.ndarray, pairs: np.ndarray) -> list[np.ndarray]:
        """Connected components of ``nodes`` (sorted positions) under ``pairs``; sorted by smallest."""
        n = nodes.size
        if n == 0:
            return []
        ends = local_index(nodes, np.asarray(pairs).reshape(-1, 2))
        a, b = np.ascontiguousarray(ends[:, 0]), np.ascontiguousarray(ends[:, 1])
        # Each node labelled by its component's smallest index: components come sorted by smallest.
        labels = _smallest_of_component(n, a, b)
        order = np.argsort(labels, kind="stable")
        bounds = np.flatnonzero(np.r_[True, np.diff(labels[order]) != 0, True])
        return [nodes[order[bounds[i] : bounds[i + 1]]] for i in range(bounds.size - 1)]

    # ---------------------------------------------------------- plan / commit
    def plan(self, effect: Effect, *, source: str = "edit", edges: tuple | None = None) -> Plan:
        """Validate ``effect`` on the current state and compute the segments it makes.

        ``edges``: ``(nodes, pairs)``, the :meth:`active_edges` of the sorted positions ``nodes`` as
        the caller has them (a split's preview reads its segment's links first). Used where the
        segments the effect touches hold exactly ``nodes``; otherwise they are read again.

        Raises
        ------
        EffectConflict
            An edge to remove is not active, one to add already is, a
            supervoxel to remove is not there or keeps other links, one to
            add already exists.
        """
        new_positions: dict[int, int] = {}
        next_pos = self.ids.size
        for sv in effect.nodes_added:
            p = self._find(sv)
            if p is None:
                if sv <= int(self.ids[-1]) or (new_positions and sv <= max(new_positions)):
                    raise EffectConflict(source, f"new supervoxel {sv} would not be the largest id")
                new_positions[sv] = next_pos
                next_pos += 1
            elif self.alive[p]:
                raise EffectConflict(source, f"supervoxel {sv} exists already")
            else:
                new_positions[sv] = p

        def pos(sv: int) -> int:
            if sv in new_positions:
                return new_positions[sv]
            p = self._find(sv)
            if p is None or not self.alive[p]:
                raise EffectConflict(source, f"supervoxel {sv} is not in the segmentation any more")
            return p

        removed_nodes = [pos(sv) for sv in effect.nodes_removed]
        # A split removes a cut of tens to hundreds of links: looked up at once, checked in order.
        removed_pos = self._edge_positions(effect.edges_removed, new_positions, source)
        removed = list(map(tuple, removed_pos.tolist()))
        added = [tuple(sorted((pos(u), pos(v)))) for u, v in effect.edges_added]
        linked = self._active_pairs(removed_pos)
        if not linked.all():
            a, b = removed[int(np.argmin(linked))]
            raise EffectConflict(
                source, f"supervoxels {int(self.ids[a])} and {int(self.ids[b])} are not linked any more"
            )
        added_set = set()
        for a, b in added:
            if a == b:
                raise EffectConflict(source, f"cannot link supervoxel {self._sv(a, new_positions)} to itself")
            if a < self.ids.size and b < self.ids.size and self.is_active(a, b):
                raise EffectConflict(
                    source, f"supervoxels {int(self.ids[a])} and {int(self.ids[b])} are linked already"
                )
            added_set.add((a, b))
        removed_set = set(removed)
        if removed_nodes:
            pairs, _ = self.active_edges(np.array(removed_nodes))
            links = {(int(a), int(b)) for a, b in pairs}
            left = {e for e in links if (e[0] in removed_nodes or e[1] in removed_nodes)} - removed_set
            if left:
                a, b = next(iter(sorted(left)))
                raise EffectConflict(
                    source, f"supervoxel {int(self.ids[a])} is still linked to {int(self.ids[b])}"
                )
        touched = {p for e in removed + added for p in e if p < self.ids.size} | set(removed_nodes)
        before = sorted({int(s) for s in self.seg[sorted(touched)] if s != 0}) if touched else []
        if not removed and not removed_nodes and not new_positions:
            comps = self._merge_components(before, added)
        else:
            in_before = (
                np.flatnonzero(np.isin(self.seg, np.array(before, dtype=np.uint64)))
                if before else np.empty(0, np.int64)
            )
            # in_before is sorted and distinct already: the set operations (each a hash-table unique in
            # NumPy 2.3+) only where a node goes or comes.
            nodes = in_before
            if removed_nodes:
                nodes = np.setdiff1d(nodes, np.array(removed_nodes, dtype=np.int64))
            if new_positions:
                nodes = np.union1d(nodes, np.array(sorted(new_positions.values()), dtype=np.int64))
            if edges is not None and np.array_equal(edges[0], in_before):
                pairs = edges[1]  # a grown segment's ~15,000 links: not read a second time
            else:
                pairs, _ = self.active_edges(in_before)
            if pairs.size and removed_set:
                # The cut's few links looked up among the segment's thousands by a binary search.
                gone = np.sort(_pair_keys(np.array(list(removed_set), dtype=np.int64)))
                keys = _pair_keys(pairs)
                at = np.minimum(np.searchsorted(gone, keys), gone.size - 1)
                pairs = pairs[gone[at] != keys]
            extra = np.array(sorted(added_set), dtype=np.int64).reshape(-1, 2)
            pairs = np.concatenate([pairs.reshape(-1, 2), extra])
            comps = self.components(nodes, pairs)
        return Plan(effect=effect, before_segments=before, components=comps, new_positions=new_positions)

    def _edge_positions(self, edges, new_positions: dict[int, int], source: str) -> np.ndarray:
        """``(K, 2)`` positions ``a < b`` of supervoxel id pairs; EffectConflict naming the first one gone.

        Ids in ``new_positions`` (supervoxels an effect adds) take the position given there.
        """
        flat = np.asarray(edges, dtype=np.uint64).reshape(-1)
        if flat.size == 0:
            return np.empty((0, 2), np.int64)
        at = np.minimum(np.searchsorted(self.ids, flat), self.ids.size - 1)
        ok = (self.ids[at] == flat) & self.alive[at]
        out = at.astype(np.int64)
        if new_positions:
            for i, sv in enumerate(flat.tolist()):
                if sv in new_positions:
                    out[i], ok[i] = new_positions[sv], True
        if not ok.all():
            sv = int(flat[int(np.argmin(ok))])
            raise EffectConflict(source, f"supervoxel {sv} is not in the segmentation any more")
        out = out.reshape(-1, 2)
        return np.sort(out, axis=1)

    def _active_pairs(self, pairs: np.ndarray) -> np.ndarray:
        """Whether each position pair ``a < b`` is an active link (:meth:`is_active`, at once for base rows)."""
        pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
        rows = self.rag_rows(pairs[:, 0], pairs[:, 1])
        out = np.zeros(rows.size, dtype=bool)
        out[rows >= 0] = self.active[rows[rows >= 0]]
        for i in np.flatnonzero(rows < 0).tolist():
            out[i] = self.is_active(int(pairs[i, 0]), int(pairs[i, 1]))
        return out

    def _merge_components(self, before: list[int], added: list[tuple[int, int]]) -> list[np.ndarray]:
        # Only links added between existing segments: union whole segments.
        parent = {s: s for s in before}

        def find(s):
            while parent[s] != s:
                parent[s] = parent[parent[s]]
                s = parent[s]
            return s

        for a, b in added:
            ra, rb = find(int(self.seg[a])), find(int(self.seg[b]))
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
        groups: dict[int, list[int]] = {}
        for s in before:
            groups.setdefault(find(s), []).append(s)
        comps = []
        for segs in groups.values():
            comps.append(np.flatnonzero(np.isin(self.seg, np.array(segs, dtype=np.uint64))))
        comps.sort(key=lambda c: int(c[0]))
        return comps

    def _find(self, sv: int) -> int | None:
        p = int(np.searchsorted(self.ids, np.uint64(sv)))
        return p if p < self.ids.size and int(self.ids[p]) == sv else None

    def _sv(self, p: int, new_positions: dict[int, int]) -> int:
        for sv, q in new_positions.items():
            if q == p:
                return sv
        return int(self.ids[p])

    def commit(self, plan: Plan, new_ids: list[int], node_edges: NodeEdges | None = None) -> list[str]:
        """Apply a plan with the given new segment ids; returns the components' digests."""
        effect = plan.effect
        if len(new_ids) != len(plan.components):
            raise InputError("edit", f"{len(plan.components)} segments but {len(new_ids)} new ids")
        fresh = sorted((sv, p) for sv, p in plan.new_positions.items() if p >= self.ids.size)
        if fresh:
            self.ids = np.concatenate([self.ids, np.array([sv for sv, _ in fresh], np.uint64)])
            self.alive = np.concatenate([self.alive, np.zeros(len(fresh), bool)])
            self.seg = np.concatenate([self.seg, np.zeros(len(fresh), np.uint64)])
        ne = node_edges if node_edges is not None else effect.node_edges
        if ne is not None and fresh:
            self._register_node_edges(ne)
        for p in plan.new_positions.values():
            self.alive[p] = True
        for sv in effect.nodes_removed:
            p = self._find(sv)
            self.alive[p] = False
            self.seg[p] = 0
        self._set_active_pairs(effect.edges_removed, False)
        for u, v in effect.edges_added:
            self._set_active(self._find(u), self._find(v), True)
        digests = []
        for comp, new_id in zip(plan.components, new_ids, strict=True):
            self.seg[comp] = np.uint64(new_id)
            digests.append(members_digest(self.ids[comp]))
        top = max([*new_ids, *effect.nodes_added], default=0)
        self.next_id = max(self.next_id, int(top) + 1)
        return digests

    def _register_node_edges(self, ne: NodeEdges) -> None:
        caps = edge_capacity(ne.contact_area, ne.features.get("mean", np.zeros(len(ne.contact_area))))
        for (u, v), cap in zip(ne.edges, caps, strict=True):
            pu, pv = self._find(int(u)), self._find(int(v))
            if pu is None or pv is None:
                continue
            self.extra_rag.setdefault(pu, {})[pv] = float(cap)
            self.extra_rag.setdefault(pv, {})[pu] = float(cap)

    def _set_active_pairs(self, edges, flag: bool) -> None:
        """:meth:`_set_active` for supervoxel id pairs: base rows at once, links of minted supervoxels one by one."""
        flat = np.asarray(edges, dtype=np.uint64).reshape(-1)
        if flat.size == 0:
            return
        pairs = np.sort(self.positions(flat, source="edit").reshape(-1, 2), axis=1)
        rows = self.rag_rows(pairs[:, 0], pairs[:, 1])
        self.active[rows[rows >= 0]] = flag
        for a, b in pairs[rows < 0].tolist():
            self._set_active(a, b, flag)

    def _set_active(self, pu: int, pv: int, flag: bool) -> None:
        a, b = (pu, pv) if pu < pv else (pv, pu)
        row = int(self.rag_rows(np.array([a]), np.array([b]))[0])
        if row >= 0:
            self.active[row] = flag
            return
        if flag:
            self.extra_active.setdefault(a, set()).add(b)
            self.extra_active.setdefault(b, set()).add(a)
        else:
            for p, q in ((a, b), (b, a)):
                s = self.extra_active.get(p)
                if s is not None:
                    s.discard(q)
                    if not s:
                        del self.extra_active[p]
