"""What an edit does to the supervoxel graph, as a record that can be inverted and replayed.

Every operation (merge, split, split inside a supervoxel, undo, redo) is
reduced to one :class:`Effect`: active edges added and removed, supervoxels
that appear or disappear (a split inside a supervoxel replaces it by new
ones), and overlay patches switched on or off. Segments are the connected
components of the active edges, so an effect fully determines the new
partition; the log stores the effect itself, never the inputs that produced
it, so replaying the log needs no recomputation (no min-cut, no watershed)
and cannot drift when an algorithm changes.

The inverse of an effect swaps what was added and removed: that is the whole
of undo, and redo is the inverse of the undo.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from napari_connectome.arrays import distinct
from napari_connectome.errors import InputError

#: Per-edge features stored for the edges of new supervoxels, the same as a
#: :class:`~napari_connectome.graph.rag.RegionGraph` has.
EDGE_FEATURES = ("mean", "min", "max", "q10", "q25", "q50", "q75", "q90")


def _pairs(values) -> list[tuple[int, int]]:
    out = []
    for u, v in values:
        u, v = int(u), int(v)
        out.append((u, v) if u < v else (v, u))
    return out


@dataclass
class NodeEdges:
    """Region-graph edges of supervoxels minted by a split inside a supervoxel.

    Attributes
    ----------
    edges
        ``(K, 2)`` uint64 supervoxel id pairs, ``u < v``; at least one end is
        a new supervoxel.
    contact_area
        ``(K,)`` int64 voxel faces shared.
    features
        Name -> ``(K,)`` float32, the boundary statistics of
        :data:`EDGE_FEATURES` (1 = membrane).
    """

    edges: np.ndarray
    contact_area: np.ndarray
    features: dict[str, np.ndarray]

    def to_json(self) -> dict:
        return {
            "edges": [[int(u), int(v)] for u, v in self.edges],
            "contact_area": [int(a) for a in self.contact_area],
            "features": {k: [float(x) for x in v] for k, v in self.features.items()},
        }

    @classmethod
    def from_json(cls, data: dict) -> NodeEdges:
        return cls(
            edges=np.asarray(data["edges"], dtype=np.uint64).reshape(-1, 2),
            contact_area=np.asarray(data["contact_area"], dtype=np.int64),
            features={k: np.asarray(v, dtype=np.float32) for k, v in data["features"].items()},
        )

    def relabel(self, mapping: dict[int, int]) -> NodeEdges:
        """The same edges with supervoxel ids translated through ``mapping``."""
        edges = np.array(
            [sorted((mapping.get(int(u), int(u)), mapping.get(int(v), int(v)))) for u, v in self.edges],
            dtype=np.uint64,
        ).reshape(-1, 2)
        return NodeEdges(edges, self.contact_area.copy(), {k: v.copy() for k, v in self.features.items()})


@dataclass
class Patch:
    """Voxels of the supervoxel volume replaced by a split inside a supervoxel.

    Attributes
    ----------
    offset
        Level-0 voxel index of the patch's first voxel ``(z, y, x)``.
    data
        uint64 supervoxel ids; 0 = leave the voxel as it is.
    replaces
        The supervoxel the patch divides: at coarser pyramid levels the patch
        replaces that id only (a coarse voxel may show a neighbour instead).
    """

    offset: tuple[int, int, int]
    data: np.ndarray
    replaces: int = 0

    @property
    def stop(self) -> tuple[int, int, int]:
        return tuple(o + s for o, s in zip(self.offset, self.data.shape, strict=True))

    def encode(self) -> tuple[dict, bytes]:
        """JSON header and compressed bytes, for the log."""
        data = np.ascontiguousarray(self.data, dtype="<u8")
        header = {
            "offset": list(self.offset), "shape": list(data.shape), "dtype": "<u8", "codec": "zlib",
            "replaces": int(self.replaces),
        }
        return header, zlib.compress(data.tobytes(), 6)

    @classmethod
    def decode(cls, header: dict, blob: bytes, *, source: str = "edit log") -> Patch:
        try:
            raw = zlib.decompress(blob)
            data = np.frombuffer(raw, dtype=header.get("dtype", "<u8")).reshape(header["shape"])
        except Exception as exc:  # zlib.error, ValueError: a damaged record
            raise InputError(source, f"an overlay patch cannot be decoded ({exc})") from None
        return cls(tuple(int(o) for o in header["offset"]), data.astype(np.uint64), int(header.get("replaces", 0)))

    def relabel(self, mapping: dict[int, int]) -> Patch:
        replaces = mapping.get(int(self.replaces), int(self.replaces))
        if not mapping:
            return Patch(self.offset, self.data.copy(), replaces)
        keys = np.array(sorted(mapping), dtype=np.uint64)
        vals = np.array([mapping[int(k)] for k in keys], dtype=np.uint64)
        data = self.data.copy()
        pos = np.searchsorted(keys, data)
        pos = np.minimum(pos, keys.size - 1)
        hit = keys[pos] == data
        data[hit] = vals[pos[hit]]
        return Patch(self.offset, data, replaces)

    def at_level(self, factors) -> tuple[tuple[int, ...], np.ndarray]:
        """The patch on a pyramid level ``factors`` times coarser: offset (level index) and data.

        Each coarse voxel takes the most common non-zero value among the
        level-0 voxels it covers (the mode downsampling of labels), 0 if none.
        """
        f = [max(1, int(round(x))) for x in factors]
        if f == [1, 1, 1]:
            return tuple(self.offset), self.data
        lo = [o // k for o, k in zip(self.offset, f, strict=True)]
        hi = [-(-s // k) for s, k in zip(self.stop, f, strict=True)]
        padded = np.zeros([(h - a) * k for a, h, k in zip(lo, hi, f, strict=True)], np.uint64)
        start = [o - a * k for o, a, k in zip(self.offset, lo, f, strict=True)]
        padded[tuple(slice(s, s + n) for s, n in zip(start, self.data.shape, strict=True))] = self.data
        shape = [h - a for a, h in zip(lo, hi, strict=True)]
        blocks = padded.reshape(shape[0], f[0], shape[1], f[1], shape[2], f[2])
        best = np.zeros(shape, np.uint64)
        best_count = np.zeros(shape, np.int64)
        for value in distinct(self.data):
            if value == 0:
                continue
            count = (blocks == value).sum(axis=(1, 3, 5))
            better = count > best_count
            best[better] = value
            best_count[better] = count[better]
        return tuple(lo), best


@dataclass
class Effect:
    """The change an operation makes to the supervoxel graph.

    Attributes
    ----------
    edges_added, edges_removed
        Supervoxel id pairs ``(u, v)``, ``u < v``, that become active /
        inactive. Active edges hold segments together.
    nodes_added, nodes_removed
        Supervoxels that appear (minted by a split inside a supervoxel, or
        revived by a redo) or disappear (the supervoxel split inside, or the
        minted ones on undo).
    node_edges
        The region-graph edges of minted supervoxels (kept by the inverse:
        a redo needs them again).
    patches_on, patches_off
        Operation ids whose overlay patch is switched on / off.
    """

    edges_added: list[tuple[int, int]] = field(default_factory=list)
    edges_removed: list[tuple[int, int]] = field(default_factory=list)
    nodes_added: list[int] = field(default_factory=list)
    nodes_removed: list[int] = field(default_factory=list)
    node_edges: NodeEdges | None = None
    patches_on: list[int] = field(default_factory=list)
    patches_off: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.edges_added = _pairs(self.edges_added)
        self.edges_removed = _pairs(self.edges_removed)
        self.nodes_added = [int(n) for n in self.nodes_added]
        self.nodes_removed = [int(n) for n in self.nodes_removed]
        self.patches_on = [int(p) for p in self.patches_on]
        self.patches_off = [int(p) for p in self.patches_off]

    def inverse(self) -> Effect:
        """The effect that undoes this one."""
        return Effect(
            edges_added=list(self.edges_removed),
            edges_removed=list(self.edges_added),
            nodes_added=list(self.nodes_removed),
            nodes_removed=list(self.nodes_added),
            node_edges=self.node_edges,
            patches_on=list(self.patches_off),
            patches_off=list(self.patches_on),
        )

    def supervoxels(self) -> set[int]:
        """Every supervoxel the effect names."""
        out = {u for e in self.edges_added + self.edges_removed for u in e}
        return out | set(self.nodes_added) | set(self.nodes_removed)

    def is_empty(self) -> bool:
        return not (self.edges_added or self.edges_removed or self.nodes_added or self.nodes_removed
                    or self.patches_on or self.patches_off)

    def to_json(self) -> dict:
        return {
            "edges_added": [list(e) for e in self.edges_added],
            "edges_removed": [list(e) for e in self.edges_removed],
            "nodes_added": list(self.nodes_added),
            "nodes_removed": list(self.nodes_removed),
            "node_edges": None if self.node_edges is None else self.node_edges.to_json(),
            "patches_on": list(self.patches_on),
            "patches_off": list(self.patches_off),
        }

    @classmethod
    def from_json(cls, data: dict) -> Effect:
        ne = data.get("node_edges")
        return cls(
            edges_added=data.get("edges_added", []),
            edges_removed=data.get("edges_removed", []),
            nodes_added=data.get("nodes_added", []),
            nodes_removed=data.get("nodes_removed", []),
            node_edges=None if ne is None else NodeEdges.from_json(ne),
            patches_on=data.get("patches_on", []),
            patches_off=data.get("patches_off", []),
        )

    def relabel(self, sv_map: dict[int, int], op_map: dict[int, int]) -> Effect:
        """The same effect with supervoxel ids and patch operation ids translated."""

        def sv(x: int) -> int:
            return sv_map.get(int(x), int(x))

        return Effect(
            edges_added=[(sv(u), sv(v)) for u, v in self.edges_added],
            edges_removed=[(sv(u), sv(v)) for u, v in self.edges_removed],
            nodes_added=[sv(n) for n in self.nodes_added],
            nodes_removed=[sv(n) for n in self.nodes_removed],
            node_edges=None if self.node_edges is None else self.node_edges.relabel(sv_map),
            patches_on=[op_map.get(p, p) for p in self.patches_on],
            patches_off=[op_map.get(p, p) for p in self.patches_off],
        )
