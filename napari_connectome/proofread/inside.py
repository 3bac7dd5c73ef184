"""Splitting inside one supervoxel: the preview of a seeded watershed of the boundary map.

When every seed of a split falls in one supervoxel, no cut of the
supervoxel graph can separate them. The supervoxel is then divided: its
voxels are read (growing a window until all of them are in), flooded from
the seeds over the boundary signal, and the two parts become new
supervoxels, with their contacts measured as the region graph measures
them and a min-cut deciding which neighbour each part keeps. Nothing is
committed here: the result is a :class:`~napari_connectome.proofread.preview.SplitPreview`
that :meth:`~napari_connectome.proofread.Proofreader.split` commits.

The functions take the Proofreader (its state, label reader and project)
as their first argument; they never change it, except for caching the
opened boundary volume on it.
"""

from __future__ import annotations

import numpy as np

from napari_connectome.errors import InputError
from napari_connectome.proofread.ops import Effect, NodeEdges, Patch
from napari_connectome.proofread.preview import SplitPreview, describe_split
from napari_connectome.proofread.split import contact_edges, min_cut, seeded_watershed

#: Largest supervoxel (voxels) a split inside one will read into memory.
MAX_INSIDE_SPLIT_VOXELS = 128 * 2**20


def preview_inside(pr, segment, sv, src_idx, snk_idx, sources_nm, sinks_nm, version) -> SplitPreview:
    """Preview dividing supervoxel ``sv`` of ``segment`` between level-0 seed voxels ``src_idx`` / ``snk_idx``.

    The two parts get the next two ids of the state's counter; ``version``
    is the Proofreader's when the seeds were read.

    Raises
    ------
    InputError
        A source and a sink on the same voxel; the supervoxel too large to
        read, or not matching the graph.
    """
    st = pr.state
    if set(map(tuple, src_idx)) & set(map(tuple, snk_idx)):
        raise InputError("split", "a source and a sink seed are on the same voxel")
    (tlo, thi), (plo, phi) = supervoxel_box(pr, sv, np.array(src_idx + snk_idx))
    padded = tuple(slice(int(a), int(b), 1) for a, b in zip(plo, phi, strict=True))
    labels = pr._reader.supervoxels(0, padded)
    boundary, signal, kind = signal_box(pr, plo, phi)
    # The watershed sees only the supervoxel's box; the one-voxel rim
    # around it is for the new supervoxels' contacts with their neighbours.
    core = tuple(slice(int(a - p), int(b - p)) for a, b, p in zip(tlo, thi, plo, strict=True))
    parts = seeded_watershed(
        labels[core], boundary[core], sv,
        np.array(src_idx) - tlo, np.array(snk_idx) - tlo,
        voxel_size=pr._sv_volume.levels[0].voxel_size,
    )
    n1 = st.next_id
    n2 = n1 + 1
    patch_data = np.zeros(parts.shape, np.uint64)
    patch_data[parts == 1] = n1
    patch_data[parts == 2] = n2
    patch = Patch(tuple(int(a) for a in tlo), patch_data, int(sv))
    patched = labels.copy()
    sub = patched[core]
    sub[parts > 0] = patch_data[parts > 0]
    node_edges = contact_edges(patched, signal, [n1, n2], kind=kind)
    effect, cut_pairs, side_ids = inside_effect(pr, segment, sv, n1, n2, node_edges)
    plan = st.plan(effect)
    problem, message = describe_split(cut_pairs, side_ids[0], side_ids[1], plan, inside=True, supervoxel=int(sv))
    return SplitPreview(
        segment_id=int(segment),
        source_supervoxels=side_ids[0], sink_supervoxels=side_ids[1],
        cut_edges=cut_pairs, inside_supervoxel=True, bbox_nm=pr._box_nm([(patch.offset, patch.stop)]),
        supervoxel=int(sv), patch_offset=patch.offset, patch=parts, sources_nm=sources_nm,
        sinks_nm=sinks_nm, version=version, message=message, problem=problem, _effect=effect, _plan=plan, _new_patch=patch,
        _proofreader=pr, _seed_svs=[int(sv)],
    )


def inside_effect(pr, segment: int, sv: int, n1: int, n2: int, node_edges: NodeEdges):
    """The graph side of a split inside ``sv``: new nodes, moved links, and a min-cut between the parts."""
    st = pr.state
    (px,) = st.positions([sv])
    members = st.members(segment)
    pairs, caps = st.active_edges(members)
    at_x = (pairs[:, 0] == px) | (pairs[:, 1] == px)
    x_links = pairs[at_x]
    others = pairs[~at_x]
    other_caps = caps[~at_x]
    touch = {}
    for (u, v), area, mean in zip(node_edges.edges, node_edges.contact_area, node_edges.features["mean"],
                                  strict=True):
        touch[(int(u), int(v))] = float(area) * (1.0 - float(mean)) + 1e-3
    # Tentative positions of the new supervoxels, after every existing one.
    q1, q2 = st.ids.size, st.ids.size + 1
    new_pos = {n1: q1, n2: q2}
    cand, cand_caps = [], []
    for a, b in x_links:
        y = int(b if a == px else a)
        ysv = int(st.ids[y])
        touching_parts = [n for n in (n1, n2) if (min(n, ysv), max(n, ysv)) in touch]
        if not touching_parts and not st.touching(px, y):
            touching_parts = [n1, n2]  # a manual link: both parts keep it until the cut decides
        for n in touching_parts:
            cand.append((min(new_pos[n], y), max(new_pos[n], y)))
            key = (min(n, ysv), max(n, ysv))
            cand_caps.append(touch.get(key, st.pair_capacity(px, y)))
    nodes = np.union1d(members[members != px], [q1, q2])
    cand_arr = np.array(cand, dtype=np.int64).reshape(-1, 2)
    all_pairs = np.concatenate([others.reshape(-1, 2), cand_arr])
    all_caps = np.concatenate([other_caps, np.asarray(cand_caps, dtype=np.float64)])
    side, cut = min_cut(nodes, all_pairs, all_caps, np.array([q1]), np.array([q2]))
    cut_set = {tuple(map(int, all_pairs[i])) for i in cut}

    def ids_of(p: int) -> int:
        return n1 if p == q1 else n2 if p == q2 else int(st.ids[p])

    added = [(ids_of(a), ids_of(b)) for a, b in cand if (a, b) not in cut_set]
    removed = [(int(st.ids[a]), int(st.ids[b])) for a, b in x_links]
    removed += [(ids_of(a), ids_of(b)) for a, b in cut_set if a != q1 and a != q2 and b != q1 and b != q2]
    cut_ids = np.array(sorted({tuple(sorted((ids_of(a), ids_of(b)))) for a, b in cut_set}),
                       dtype=np.uint64).reshape(-1, 2)
    effect = Effect(edges_added=added, edges_removed=removed, nodes_added=[n1, n2], nodes_removed=[sv],
                    node_edges=node_edges)
    src_ids = np.array(sorted(ids_of(p) for p in nodes[side]), dtype=np.uint64)
    snk_ids = np.array(sorted(ids_of(p) for p in nodes[~side]), dtype=np.uint64)
    return effect, cut_ids, (src_ids, snk_ids)


def supervoxel_box(pr, sv: int, seeds: np.ndarray):
    """Level-0 boxes ``(lo, hi)`` of supervoxel ``sv``: tight, and with a one-voxel rim (clipped).

    Grows a window around the seeds until it holds every voxel of the
    supervoxel (its size is known from the graph), so pieces that do not
    touch the seeds' piece are found too; no index of boxes is needed.
    """
    shape = np.asarray(pr._level0_shape)
    expected = pr.supervoxel_size(sv)
    margin = np.array([8, 32, 32])
    lo = np.maximum(seeds.min(axis=0) - margin, 0)
    hi = np.minimum(seeds.max(axis=0) + 1 + margin, shape)
    while True:
        if np.prod(hi - lo, dtype=np.int64) > MAX_INSIDE_SPLIT_VOXELS:
            raise InputError(
                "split", f"supervoxel {sv} is too large to split inside (its box exceeds "
                f"{MAX_INSIDE_SPLIT_VOXELS} voxels)"
            )
        box = pr._reader.supervoxels(0, tuple(slice(int(a), int(b), 1) for a, b in zip(lo, hi, strict=True)))
        mask = box == np.uint64(sv)
        new_lo, new_hi = lo.copy(), hi.copy()
        for ax in range(3):
            if lo[ax] > 0 and np.take(mask, 0, axis=ax).any():
                new_lo[ax] = max(0, lo[ax] - 2 * margin[ax])
            if hi[ax] < shape[ax] and np.take(mask, -1, axis=ax).any():
                new_hi[ax] = min(shape[ax], hi[ax] + 2 * margin[ax])
        whole = (lo == 0).all() and (hi == shape).all()
        if (new_lo == lo).all() and (new_hi == hi).all():
            if expected is None or int(mask.sum()) >= expected or whole:
                break
            # A piece elsewhere: widen every side.
            new_lo = np.maximum(lo - 2 * margin, 0)
            new_hi = np.minimum(hi + 2 * margin, shape)
        lo, hi, margin = new_lo, new_hi, margin * 2
    if expected is not None and int(mask.sum()) != expected:
        raise InputError(
            "split", f"supervoxel {sv} has {int(mask.sum())} voxels in the volume but {expected} in the "
            "graph; the graph does not match the supervoxels — rebuild it"
        )
    present = [np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)]
    tlo = lo + np.array([p[0] for p in present])
    thi = lo + np.array([p[-1] + 1 for p in present])
    return (tlo, thi), (np.maximum(tlo - 1, 0), np.minimum(thi + 1, shape))


def signal_box(pr, lo, hi):
    """Boundary per voxel (float32, 1 = membrane), the raw signal block for contacts, and its kind."""
    if pr._signal is None:
        pr._signal = open_signal(pr)
    volume, kind, normalise = pr._signal
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    arr = volume.levels[0].array
    if kind == "affinities":
        block = normalise(np.asarray(arr[(slice(None), *box)]))
        return (1.0 - block.mean(axis=0)).astype(np.float32), block, kind
    block = normalise(np.asarray(arr[box]))
    return block.astype(np.float32, copy=False), block, "boundaries"


def open_signal(pr):
    from napari_connectome.graph.rag import signal_normaliser

    inputs = pr.project.inputs
    kind = pr.rag.signal
    if kind in ("boundaries", "affinities") and "boundaries" in inputs:
        volume = pr.project.open_input("boundaries")
        return volume, kind, signal_normaliser(volume, kind)
    volume = pr.project.open_input("raw")
    if kind != "raw-intensity-proxy":
        pr.notes.append("no boundary map in the project: splits inside supervoxels use the raw intensity as a proxy")
    return volume, "raw-intensity-proxy", signal_normaliser(volume, "raw-intensity-proxy")
