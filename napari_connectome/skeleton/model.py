"""The skeleton record: vertices in world nm, edges, radii, and the geometry asked of it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(eq=False)
class Skeleton:
    """The centre-line graph of one segment.

    Attributes
    ----------
    segment_id
        The segment it belongs to.
    vertices_nm
        ``(N, 3)`` float32 world coordinates (z, y, x) in nm.
    edges
        ``(M, 2)`` int32 vertex index pairs.
    radii_nm
        ``(N,)`` float32 distance (nm) from each vertex to the segment's boundary.
    """

    segment_id: int
    vertices_nm: np.ndarray
    edges: np.ndarray
    radii_nm: np.ndarray

    def __post_init__(self) -> None:
        self.segment_id = int(self.segment_id)
        self.vertices_nm = np.asarray(self.vertices_nm, dtype=np.float32).reshape(-1, 3)
        self.edges = np.asarray(self.edges, dtype=np.int32).reshape(-1, 2)
        self.radii_nm = np.asarray(self.radii_nm, dtype=np.float32).reshape(-1)

    # ---------------------------------------------------------------- graph
    def degrees(self) -> np.ndarray:
        """Number of edges at each vertex."""
        return np.bincount(self.edges.ravel(), minlength=len(self.vertices_nm))

    @property
    def path_length_nm(self) -> float:
        """Total length of all edges (nm)."""
        if len(self.edges) == 0:
            return 0.0
        v = self.vertices_nm.astype(np.float64)
        return float(np.linalg.norm(v[self.edges[:, 0]] - v[self.edges[:, 1]], axis=1).sum())

    def endpoints(self) -> np.ndarray:
        """Indices of the degree-1 vertices."""
        return np.flatnonzero(self.degrees() == 1)

    def branch_points(self) -> np.ndarray:
        """Indices of the vertices where three or more edges meet."""
        return np.flatnonzero(self.degrees() >= 3)

    def _neighbours(self) -> list[list[int]]:
        nbrs: list[list[int]] = [[] for _ in range(len(self.vertices_nm))]
        for a, b in self.edges.tolist():
            nbrs[a].append(b)
            nbrs[b].append(a)
        return nbrs

    def endpoint_directions(self, k_nm: float = 200.0) -> np.ndarray:
        """Outward unit vectors at each end point, in :meth:`endpoints` order.

        The direction is from the point reached after walking ``k_nm`` of
        path inwards (or fewer, stopping at a branch point or the other end)
        to the end point, so a tip's last wiggle does not decide it.

        Returns
        -------
        numpy.ndarray
            ``(E, 3)`` float64 (z, y, x); a zero row where the walk found no
            second vertex.
        """
        ends = self.endpoints()
        nbrs = self._neighbours()
        v = self.vertices_nm.astype(np.float64)
        out = np.zeros((len(ends), 3))
        for row, e in enumerate(ends.tolist()):
            prev, cur, walked = -1, e, 0.0
            while walked < k_nm:
                nxt = [n for n in nbrs[cur] if n != prev]
                if len(nxt) != 1:
                    break
                walked += float(np.linalg.norm(v[nxt[0]] - v[cur]))
                prev, cur = cur, nxt[0]
                if len(nbrs[cur]) != 2:
                    break
            d = v[e] - v[cur]
            n = np.linalg.norm(d)
            if n > 0:
                out[row] = d / n
        return out

    def branches(self) -> list[np.ndarray]:
        """The unbranched paths between end points and branch points (and loops).

        Returns
        -------
        list of numpy.ndarray
            ``(K, 3)`` float32 world coordinates (nm) per path, K >= 2.
        """
        nbrs = self._neighbours()
        deg = np.array([len(n) for n in nbrs])
        seen: set[tuple[int, int]] = set()
        out: list[np.ndarray] = []

        def walk(a: int, b: int) -> None:
            path = [a]
            prev, cur = a, b
            seen.add((min(a, b), max(a, b)))
            while True:
                path.append(cur)
                if deg[cur] != 2:
                    break
                (nxt,) = [n for n in nbrs[cur] if n != prev] or [None]
                if nxt is None:
                    break
                key = (min(cur, nxt), max(cur, nxt))
                if key in seen:
                    if nxt == path[0]:
                        path.append(nxt)  # close a loop
                    break
                seen.add(key)
                prev, cur = cur, nxt
            out.append(self.vertices_nm[path])

        for s in np.flatnonzero(deg != 2).tolist():
            for n in nbrs[s]:
                if (min(s, n), max(s, n)) not in seen:
                    walk(s, n)
        # Components with no end: pure loops.
        for a, b in self.edges.tolist():
            if (min(a, b), max(a, b)) not in seen:
                walk(a, b)
        return out

    def equals(self, other: Skeleton) -> bool:
        """Same segment, vertices, edges and radii (exactly)."""
        return (
            self.segment_id == other.segment_id
            and np.array_equal(self.vertices_nm, other.vertices_nm)
            and np.array_equal(self.edges, other.edges)
            and np.array_equal(self.radii_nm, other.radii_nm)
        )


def skeleton_paths(skeletons: Mapping[int, Skeleton] | Iterable[Skeleton]) -> list[np.ndarray]:
    """Every branch of every skeleton, as data for a napari Shapes layer of ``path`` shapes.

    Returns
    -------
    list of numpy.ndarray
        ``(K, 3)`` world coordinates (nm), skeletons in the order given and
        each one's branches in :meth:`Skeleton.branches` order.
    """
    if isinstance(skeletons, Mapping):
        skeletons = skeletons.values()
    return [p for sk in skeletons for p in sk.branches()]
