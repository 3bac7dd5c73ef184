"""The two ways to split: a min-cut on the supervoxel graph, and a seeded watershed inside one supervoxel."""

from __future__ import annotations

import numpy as np

from napari_connectome.arrays import distinct, overlaps
from napari_connectome.errors import InputError
from napari_connectome.graph.local import local_index
from napari_connectome.proofread.ops import EDGE_FEATURES, NodeEdges

_QUANTILES = {"q10": 0.10, "q25": 0.25, "q50": 0.50, "q75": 0.75, "q90": 0.90}


def min_cut(
    nodes: np.ndarray,
    pairs: np.ndarray,
    capacities: np.ndarray,
    sources: np.ndarray,
    sinks: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Minimum cut between two seed sets on an undirected graph.

    Parameters
    ----------
    nodes
        ``(N,)`` sorted node labels (any integers).
    pairs
        ``(K, 2)`` edges between labels in ``nodes``.
    capacities
        ``(K,)`` positive cost of cutting each edge.
    sources, sinks
        Node labels on either side; a super-source and a super-sink join them
        with infinite capacity.

    Returns
    -------
    source_side
        ``(N,)`` bool, True for the nodes on the source side: those reachable
        from the sources in the residual graph of a maximum flow (the
        smallest source side among the minimum cuts, so ties are broken the
        same way every time).
    cut
        Indices into ``pairs`` of the edges the cut removes.
    """
    from scipy.sparse import csr_array
    from scipy.sparse.csgraph import breadth_first_order, maximum_flow

    n = int(nodes.size)
    src = distinct(local_index(nodes, np.asarray(sources)))
    snk = distinct(local_index(nodes, np.asarray(sinks)))
    if overlaps(src, snk):
        raise InputError("split", "a supervoxel cannot be both a source and a sink")
    ends = local_index(nodes, np.asarray(pairs).reshape(-1, 2))
    a, b = ends[:, 0], ends[:, 1]
    caps = np.asarray(capacities, dtype=np.float64)
    # scipy wants int32 capacities: scale so that they sum to at most 2**29 (each ≥ 1), so that the
    # links a contracted side gathers into one never overflow.
    total = float(caps.sum()) if caps.size else 1.0
    scale = (2.0**29) / max(total, 1e-12)
    icap = np.maximum(1, np.floor(caps * scale)).astype(np.int64)
    # Every seed is pinned to its side: each side is contracted into one node (source 0, sink 1) and the
    # max-flow runs over the free nodes only. The minimum cuts keep their capacities, so they are the
    # same cuts, and so is the smallest source side among them. A merge tree's second-last merge pins
    # all but a few of a segment's thousands of supervoxels.
    label = np.full(n, -1, np.int64)
    label[src] = 0
    label[snk] = 1
    free = np.flatnonzero(label < 0)
    label[free] = np.arange(2, 2 + free.size)
    m = int(free.size) + 2
    ca, cb = label[a], label[b]
    between = ca != cb
    ca, cb, w = ca[between], cb[between], icap[between]
    reached = np.zeros(1, np.int64)
    # With every node a seed (a merge tree's last merge) the cut is the links between the sides: no flow.
    if ca.size and 0 < free.size <= _ENUMERATE_FREE:
        reached = _smallest_cheapest_side(ca, cb, w, m)
    elif ca.size and free.size:
        graph = csr_array((np.concatenate([w, w]).astype(np.int32), (np.concatenate([ca, cb]), np.concatenate([cb, ca]))),
                          shape=(m, m))
        graph.sum_duplicates()
        flow = maximum_flow(graph, 0, 1).flow
        residual = (graph.astype(np.int64) - csr_array(flow).astype(np.int64)).tocoo()
        keep = residual.data > 0
        reach_graph = csr_array(
            (np.ones(int(keep.sum()), np.int8), (residual.row[keep], residual.col[keep])), shape=(m, m)
        )
        reached = breadth_first_order(reach_graph, 0, directed=True, return_predecessors=False)
    side = np.zeros(m, dtype=bool)
    side[reached] = True
    source_side = side[label]
    cut = np.flatnonzero(source_side[a] != source_side[b]) if a.size else np.empty(0, np.int64)
    return source_side, cut


#: Up to this many free nodes the cheapest cut is found by trying every side of them (no max-flow).
_ENUMERATE_FREE = 8


def _smallest_cheapest_side(ca: np.ndarray, cb: np.ndarray, w: np.ndarray, m: int) -> np.ndarray:
    """The nodes on the source side of the minimum cut that the max-flow's residual reach gives.

    Nodes ``0`` (source) and ``1`` (sink) are pinned, ``2 .. m-1`` free; ``(ca, cb, w)`` are the links
    with integer capacities. Every side of the free nodes is costed exactly (integers); the minimum cuts
    are closed under intersection, so the intersection of the cheapest source sides is the smallest of
    them: the one reachable from the source in a maximum flow's residual graph. For a merge tree's
    second-last merge (a free node or few) this skips building sparse graphs for scipy's flow.
    """
    lo, hi = np.minimum(ca, cb), np.maximum(ca, cb)
    pair, inverse = np.unique(lo * m + hi, return_inverse=True)
    weight = np.zeros(pair.size, np.int64)
    np.add.at(weight, inverse.reshape(-1), w)
    u, v = pair // m, pair % m
    f = m - 2
    choice = (np.arange(2**f)[:, None] >> np.arange(f)[None, :]) & 1
    sides = np.concatenate([np.ones((2**f, 1), bool), np.zeros((2**f, 1), bool), choice.astype(bool)], axis=1)
    cost = ((sides[:, u] != sides[:, v]).astype(np.int64) * weight).sum(axis=1)
    smallest = np.logical_and.reduce(sides[cost == cost.min()], axis=0)
    return np.flatnonzero(smallest)


def seeded_watershed(
    labels: np.ndarray,
    boundary: np.ndarray,
    target: int,
    sources: np.ndarray,
    sinks: np.ndarray,
    *,
    voxel_size=(1.0, 1.0, 1.0),
) -> np.ndarray:
    """Divide one supervoxel in two by a seeded watershed of the boundary signal.

    Parameters
    ----------
    labels
        A box of the supervoxel volume.
    boundary
        The boundary signal over the same box (1 = membrane).
    target
        The supervoxel to divide.
    sources, sinks
        ``(k, 3)`` voxel indices inside the box, all in ``target``.
    voxel_size
        nm per axis, for the distance that assigns voxels no flood reaches.

    Returns
    -------
    np.ndarray
        uint8 over the box: 1 = the sources' part, 2 = the sinks' part,
        0 = not the supervoxel. Every voxel of the supervoxel gets a part:
        pieces not connected to any seed go to the nearest part.
    """
    from scipy import ndimage
    from skimage.segmentation import watershed

    mask = labels == np.uint64(target)
    markers = np.zeros(labels.shape, dtype=np.int32)
    for label, seeds in ((1, sources), (2, sinks)):
        for z, y, x in np.asarray(seeds, dtype=np.int64).reshape(-1, 3):
            if markers[z, y, x] not in (0, label):
                raise InputError("split", "a source and a sink seed are on the same voxel")
            markers[z, y, x] = label
    parts = watershed(boundary.astype(np.float32, copy=False), markers, mask=mask, connectivity=1)
    missing = mask & (parts == 0)
    if missing.any():
        _, nearest = ndimage.distance_transform_edt(parts == 0, sampling=voxel_size, return_indices=True)
        parts[missing] = parts[tuple(ix[missing] for ix in nearest)]
    return parts.astype(np.uint8)


def contact_edges(
    labels: np.ndarray,
    signal: np.ndarray,
    new_ids,
    *,
    kind: str = "boundaries",
) -> NodeEdges:
    """Region-graph edges of the supervoxels ``new_ids`` inside a box.

    The same definitions as :func:`napari_connectome.graph.build_rag`: a face
    between two different non-zero labels is a contact; its value is the max
    of the boundary signal of its two voxels, or ``1 - affinity`` of the
    voxel on the high side for affinities (``signal`` then ``(3, z, y, x)``).
    The box must hold every face of the new supervoxels (pad it by one voxel).
    """
    new = np.asarray(sorted(int(i) for i in new_ids), dtype=np.uint64)
    us, vs, vals = [], [], []
    for axis in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis] = slice(0, labels.shape[axis] - 1)
        hi[axis] = slice(1, None)
        a, b = labels[tuple(lo)], labels[tuple(hi)]
        m = (a != b) & (a != 0) & (b != 0) & (np.isin(a, new) | np.isin(b, new))
        if not m.any():
            continue
        if kind == "affinities":
            v = 1.0 - signal[(axis, *hi)][m]
        else:
            v = np.maximum(signal[tuple(lo)][m], signal[tuple(hi)][m])
        aa, bb = a[m].astype(np.uint64), b[m].astype(np.uint64)
        us.append(np.minimum(aa, bb))
        vs.append(np.maximum(aa, bb))
        vals.append(np.clip(v.astype(np.float64), 0.0, 1.0))
    if not us:
        empty = np.empty(0, np.float32)
        return NodeEdges(np.empty((0, 2), np.uint64), np.empty(0, np.int64), {k: empty for k in EDGE_FEATURES})
    u, v, val = np.concatenate(us), np.concatenate(vs), np.concatenate(vals)
    order = np.lexsort((val, v, u))
    u, v, val = u[order], v[order], val[order]
    start = np.flatnonzero(np.r_[True, (u[1:] != u[:-1]) | (v[1:] != v[:-1])])
    stop = np.r_[start[1:], u.size]
    features: dict[str, list[float]] = {k: [] for k in EDGE_FEATURES}
    for s0, s1 in zip(start, stop, strict=True):
        x = val[s0:s1]
        features["mean"].append(float(x.mean()))
        features["min"].append(float(x[0]))
        features["max"].append(float(x[-1]))
        for name, q in _QUANTILES.items():
            features[name].append(float(np.quantile(x, q)))
    return NodeEdges(
        edges=np.stack([u[start], v[start]], axis=1),
        contact_area=(stop - start).astype(np.int64),
        features={k: np.asarray(x, dtype=np.float32) for k, x in features.items()},
    )


def cut_problem(*, cut_edges: np.ndarray, source_supervoxels: np.ndarray, sink_supervoxels: np.ndarray,
                n_pieces: int, inside: bool) -> str | None:
    """Why a computed split would not separate anything, in plain words; None when it does.

    Parameters
    ----------
    cut_edges
        ``(K, 2)`` supervoxel pairs whose links the split removes.
    source_supervoxels, sink_supervoxels
        The supervoxels on either side.
    n_pieces
        Segments the split's effect would leave where the one segment was.
    inside
        True for a split inside one supervoxel (its two new parts need not
        share a link, so no cut link is fine there).
    """
    if len(source_supervoxels) == 0 or len(sink_supervoxels) == 0:
        side = "sources'" if len(source_supervoxels) == 0 else "sinks'"
        return f"the cut leaves the {side} side empty"
    if not inside and len(cut_edges) == 0:
        return "the cut removes no link between supervoxels"
    if n_pieces < 2:
        return "the cut leaves the segment in one piece"
    return None


def preview_message(*, inside: bool, supervoxel: int | None, n_cut: int, n_sources: int, n_sinks: int,
                    problem: str | None) -> str:
    """What a split preview will do, in one line a proofreader reads in the panel."""
    if inside:
        text = (f"both seeds are in supervoxel {supervoxel}: a graph cut cannot separate them, so it is divided "
                "by a seeded watershed of the boundary map into two new supervoxels")
    else:
        text = (f"cuts {n_cut} link{'s' if n_cut != 1 else ''} between supervoxels: {n_sources} on the sources' "
                f"side, {n_sinks} on the sinks' side")
    if problem is not None:
        text += f" — cannot split: {problem}"
    return text
