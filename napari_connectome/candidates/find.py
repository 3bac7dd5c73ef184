"""Find candidate errors in the current segmentation of a Proofreader.

* **False splits** (the edit merges): every pair of different segments that
  share region-graph edges, with the boundary signal over their whole
  contact; with skeletons, also pairs whose skeleton end point comes within
  ``max_endpoint_distance_nm`` of the other segment's skeleton.
* **False merges** (the edit splits): for every segment of two or more
  supervoxels, the last merges of its own merge history (the segment's
  internal edges re-agglomerated by contact-weighted mean boundary, exactly
  the scheme of :func:`~napari_connectome.graph.agglomerate`, so for a
  segment of the base agglomeration it replays the merge tree inside it).
  The last merge is the weakest link: the one that needed the strongest
  boundary to happen. Its cut is the min-cut between its two sides
  (:meth:`~napari_connectome.proofread.Proofreader.preview_split_supervoxels`,
  the cut a split of those seeds would make).

  With skeletons, also skeleton anomalies of multi-supervoxel segments
  (the thinnest neck with ≥ 200 nm of skeleton on both sides, sharp or
  four-way branch points), each cut by a min-cut between the supervoxels
  under the skeleton on either side.

Every candidate of one kind carries the same feature names
(:data:`SPLIT_FEATURES`, :data:`MERGE_FEATURES`); values that do not exist
for it (no skeleton, no contact, not from the merge tree) are NaN.

Cost: one pass over the segments' graph (the false splits' contact
statistics are reductions over every pair at once), one min-cut per proposed
cut (on the segment's active edges, as the split preview; read off without
a max-flow when every supervoxel of the segment is a seed), and two scans of the supervoxel volume to place the candidates
(contacts' centroids, then their nearest faces). Called again on the same
proofreader after graph edits only, the scans are reused and only the
candidates whose contacts are new are placed, by scanning the boxes their
faces lie in (:func:`~napari_connectome.candidates.contacts.locate_faces`).
For some segments only (``only_segments``: what an edit made) it reads the
graph rows at their supervoxels and the sizes of the segments they touch,
not the whole graph, and a piece of a split reads its merge tree off the
tree it was cut from (:mod:`~napari_connectome.candidates.trees`).
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Mapping

import numpy as np

from napari_connectome.arrays import distinct, overlaps
from napari_connectome.candidates import kept
from napari_connectome.candidates import rows as candidate_rows
from napari_connectome.candidates.contacts import locate_faces
from napari_connectome.candidates.model import Candidate, proposes_merges
from napari_connectome.candidates.trees import KEEP_FROM, last_merges, segment_tree
from napari_connectome.errors import InputError
from napari_connectome.volume.model import Level

#: Features of a false-split candidate.
SPLIT_FEATURES = (
    "contact_area", "boundary_mean", "boundary_min", "boundary_max", "boundary_q50", "n_edges",
    "log_size_small", "log_size_large", "size_ratio", "orphan", "endpoint_distance_nm", "direction_cosine",
)
#: Features of a false-merge candidate.
MERGE_FEATURES = (
    "merge_score", "merge_rank", "cut_area", "cut_boundary_mean", "cut_boundary_min", "cut_boundary_max",
    "cut_boundary_q50", "cut_edges", "log_size_small", "log_size_large", "size_ratio", "log_n_supervoxels",
    "neck_radius_ratio", "branch_angle_deg", "junction_degree",
)


#: Where a candidate not placed yet stands (see ``locate``).
_UNPLACED = (math.nan,) * 3


def _sv_table(pr):
    """Live supervoxels, base and minted by splits inside one: state positions, segment ids, sizes (voxels).

    A minted supervoxel's size is counted in the patch that made it (few,
    small); the base ones come from the graph.
    """
    st = pr.state
    n = st.ids.size
    alive = st.alive[:n].copy()
    sizes = np.zeros(n, np.int64)
    sizes[1:st.n_base] = np.asarray(pr.rag.node_sizes, np.int64)
    for pos in np.flatnonzero(alive[st.n_base:]) + st.n_base:
        sizes[pos] = pr.supervoxel_size(int(st.ids[pos])) or 0
    return alive, st.seg[:n].astype(np.int64), sizes


class _Members:
    """``state.members`` for every segment from one sort of the segment table.

    ``SegmentationState.members`` scans the whole table for one segment; a
    search asks it for every segment (and again for each cut), which at 1024³
    (1.5 M supervoxels, 0.3 M segments) was most of a search: 170 k scans, ~60 s.
    The answers are the same arrays (positions ascending: the sort is stable).
    """

    def __init__(self, seg: np.ndarray) -> None:
        self._order = np.argsort(seg, kind="stable")
        self._sorted = seg[self._order]

    def __call__(self, segment: int) -> np.ndarray:
        if segment == 0:
            return np.empty(0, np.int64)
        key = self._sorted.dtype.type(segment)
        lo, hi = np.searchsorted(self._sorted, key, side="left"), np.searchsorted(self._sorted, key, side="right")
        return self._order[lo:hi].astype(np.int64)


def _border_supervoxels(pr) -> np.ndarray:
    """Ids of the supervoxels with a voxel on a face of the volume."""
    arr = pr.supervoxel_volume().levels[0].array
    shape = arr.shape
    found = []
    for ax in range(3):
        for i in (0, shape[ax] - 1):
            key = [slice(None)] * 3
            key[ax] = i
            found.append(distinct(np.asarray(arr[tuple(key)])))
    ids = distinct(np.concatenate(found)) if found else np.empty(0, np.uint64)
    return ids[ids != 0].astype(np.uint64)


def _strongest_rows(grp: np.ndarray, starts: np.ndarray, mean: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Per run of ``grp`` (sorted runs from ``starts``): the position of its strongest edge.

    The weakest boundary (NaN last), ties the widest contact, then the first position: what
    ``np.lexsort((-area, mean, grp))`` puts first in each run, by reductions (a three-key lexsort of
    an edit's ~15,000 contact rows was ~3 ms of every search).
    """
    low = np.fmin.reduceat(mean, starts)[grp]
    weakest = (mean == low) | (np.isnan(low) & np.isnan(mean))
    widest = np.maximum.reduceat(np.where(weakest, area, -np.inf), starts)[grp]
    hit = np.flatnonzero(weakest & (area == widest))
    return hit[np.r_[True, grp[hit][1:] != grp[hit][:-1]]]


def _make_split_features():
    # One dict display per candidate, not dict(zip(names, values)): half the time, and an edit makes
    # ~2,000 of them. Generated from SPLIT_FEATURES so that the two cannot drift apart.
    args = ", ".join(f"v{i}" for i in range(len(SPLIT_FEATURES)))
    body = ", ".join(f"{name!r}: v{i}" for i, name in enumerate(SPLIT_FEATURES))
    namespace: dict = {}
    exec(f"def split_features({args}):\n    return {{{body}}}\n", namespace)  # noqa: S102 - constant source
    return namespace["split_features"]


_split_features = _make_split_features()


def _split_candidates(seg_a, seg_b, sv_a, sv_b, impact, table, rows_of_pair) -> list[Candidate]:
    """The false-split candidates of contact pairs, given as columns (lists), each with its serial taken.

    Made without the dataclass's ``__init__`` (the same fields, the same objects otherwise) and with what
    :mod:`~napari_connectome.candidates.rows` and :func:`locate_candidates` keep on a candidate set at
    once: an edit's search makes ~2,000 of them, and each pass over them in Python cost about as much
    as making them.
    """
    new = Candidate.__new__
    serials = candidate_rows.take_serials(len(seg_a))
    out = []
    for sa, sb, a, b, small, values, rows, serial in zip(seg_a, seg_b, sv_a, sv_b, impact, table, rows_of_pair,
                                                         serials, strict=True):
        c = new(Candidate)
        c.__dict__ = {"id": f"fs-{sa}-{sb}", "kind": "false_split", "location_nm": _UNPLACED, "segments": (sa, sb),
                      "supervoxels": (a, b), "sinks": (), "source": "graph-contact",
                      "features": _split_features(*values), "impact": small, "impact_unit": "voxels",
                      "_rows": rows, "_row_serial": serial}
        out.append(c)
    return out


def _weighted(values: np.ndarray, weights: np.ndarray) -> float:
    w = weights.sum()
    return float((values * weights).sum() / w) if w > 0 else math.nan


def find_candidates(
    proofreader,
    *,
    skeletons: Mapping | None = None,
    max_endpoint_distance_nm: float = 150.0,
    weakest_links: int = 2,
    orphan_max_um3: float = 0.05,
    min_size_nm3: float = 0.0,
    only_segments=None,
    border_supervoxels: np.ndarray | None = None,
    locations: dict | None = None,
    locate: bool = True,
    trees: dict | None = None,
) -> list[Candidate]:
    """Candidate false splits and false merges of the proofreader's segmentation now.

    Parameters
    ----------
    proofreader
        An open :class:`~napari_connectome.proofread.Proofreader`.
    skeletons
        Optional ``segment id → Skeleton`` (``vertices_nm``, ``endpoints()``,
        ``endpoint_directions()``, ``path_length_nm``). With them, false
        splits get end-point distance and direction cosine, pairs of segments
        whose end points nearly touch become candidates even without a
        contact, and impact is path length (nm) instead of voxels.
    max_endpoint_distance_nm
        End point to other skeleton distance below which a pair is a candidate.
    weakest_links
        How many of the last merges of each segment's history to propose.
    orphan_max_um3
        A segment smaller than this (µm³) that does not touch the volume's
        border is an orphan (``orphan`` = 1 for the pair's smaller segment).
    min_size_nm3
        Ignore segments smaller than this (nm³) entirely (dust).
    only_segments
        Only the candidates that involve these segment ids (false splits with one of them on either
        side, false merges of them): what an edit changed (:class:`CandidateCache`). Not with
        ``skeletons``.
    border_supervoxels
        Ids of the supervoxels on the volume's faces, when already known (they never change with graph
        edits); None: read from the volume's six faces.
    locations
        A dict this call reads and fills: a candidate's location by the region-graph rows that place it
        (a contact or a cut: the same rows give the same face), valid while the supervoxels are
        unchanged (:class:`CandidateCache` keeps one).
    trees
        A dict this call reads and fills: the merge trees of the segments of at least
        :data:`~napari_connectome.candidates.trees.KEEP_FROM` supervoxels it searched, by segment id. A
        new segment that is a piece of a kept tree's segment (gone now) has its tree read off that one
        instead of agglomerated again (:mod:`~napari_connectome.candidates.trees`: the same tree).
        :class:`CandidateCache` keeps one.
    locate
        Place every candidate (its ``location_nm``: where a task shows it). False leaves contact and
        cut candidates at NaN until :func:`locate_candidates` places the ones that are shown: finding
        the faces is most of a search after an edit, and a simulated proofreader shows nothing.

    Returns
    -------
    list[Candidate]
        False splits first (ids ``fs-A-B``, ``A < B`` segment ids), then false
        merges (``fm-S-k``, ``k`` = 0 for the segment's last merge).
    """
    if weakest_links < 1:
        raise InputError("weakest_links", f"{weakest_links} must be at least 1")
    if only_segments is not None and skeletons:
        raise InputError("only_segments", "candidates of some segments only are not made with skeletons")
    only = None if only_segments is None else np.asarray(sorted(int(x) for x in only_segments), np.int64)
    pr = proofreader
    st = pr.state
    rag = pr.rag
    lv = pr.supervoxel_volume().levels[0]
    voxel_nm3 = float(np.prod(np.asarray(lv.voxel_size, np.float64)))
    alive, seg_of_pos, sv_size = _sv_table(pr)

    # Region-graph rows between live supervoxels, with their segments: every row for a whole search; for an
    # edit's new segments only the rows at their supervoxels (the passes over every row were ~40 ms each at
    # 1024³, 11.8 M rows, every edit).
    u, v = st.rag_u, st.rag_v
    if only is None:
        ok = alive[u] & alive[v]
        su, sv_ = seg_of_pos[u], seg_of_pos[v]
        ext = np.flatnonzero(ok & (su != sv_))
        int_rows = np.flatnonzero(ok & (su == sv_) & st.active)
        del ok, su, sv_
    else:
        near = st.incident_rows(np.flatnonzero(np.isin(seg_of_pos, only)))
        ok = alive[u[near]] & alive[v[near]]
        su, sv_ = seg_of_pos[u[near]], seg_of_pos[v[near]]
        ext = near[ok & (su != sv_)]
        int_rows = near[ok & (su == sv_) & st.active[near]]
        del near, ok, su, sv_
    ext_u, ext_v = seg_of_pos[u[ext]], seg_of_pos[v[ext]]

    # Segment sizes (voxels) over live supervoxels: of every segment, or of those an edit's candidates name.
    if only is None:
        live = np.flatnonzero(alive)
    else:
        named = distinct(np.concatenate([only, ext_u, ext_v]))
        live = np.flatnonzero(np.isin(seg_of_pos, named[named != 0]))
    seg_ids, seg_inv = np.unique(seg_of_pos[live], return_inverse=True)
    seg_size = np.bincount(seg_inv, weights=sv_size[live]).astype(np.int64)
    seg_nsv = np.bincount(seg_inv)

    def size_of(s):
        i = np.searchsorted(seg_ids, s)
        return seg_size[i]

    border = _border_supervoxels(pr) if border_supervoxels is None else np.asarray(border_supervoxels, np.uint64)
    border_pos = st.positions(border[np.isin(border, st.ids[:st.n_base])]) if border.size else np.empty(0, np.int64)
    border_segs = distinct(seg_of_pos[border_pos]) if border_pos.size else np.empty(0, np.int64)
    min_voxels = min_size_nm3 / voxel_nm3

    # Edge values as stored (float32 features): turned to float64 where read, not every row each search.
    area = rag.contact_area
    feats = rag.features
    mean = feats["mean"] if "mean" in feats else np.zeros(len(area), np.float64)
    fmin, fmax, fq50 = (feats.get(name, mean) for name in ("min", "max", "q50"))

    def f64(values, rows):
        return np.asarray(values[rows], np.float64)

    candidates: list[Candidate] = []
    # Candidate index per region-graph row whose faces locate it.
    row_cand: list[tuple[np.ndarray, int]] = []

    # ------------------------------------------------------------ false splits
    a_seg, b_seg = np.minimum(ext_u, ext_v), np.maximum(ext_u, ext_v)
    big_a = size_of(a_seg) >= min_voxels
    big_b = size_of(b_seg) >= min_voxels
    ext, a_seg, b_seg = ext[big_a & big_b], a_seg[big_a & big_b], b_seg[big_a & big_b]
    order = np.lexsort((ext, b_seg, a_seg))
    ext, a_seg, b_seg = ext[order], a_seg[order], b_seg[order]
    orphan_voxels = orphan_max_um3 * 1e9 / voxel_nm3
    pair_index: dict[tuple[int, int], int] = {}
    if ext.size:
        # Every pair's statistics at once (reductions over each pair's run of rows, in row order).
        starts = np.flatnonzero(np.r_[True, (a_seg[1:] != a_seg[:-1]) | (b_seg[1:] != b_seg[:-1])])
        stops = np.r_[starts[1:], ext.size]
        grp = np.repeat(np.arange(starts.size), stops - starts)
        w_all = f64(area, ext)
        mean_ext = f64(mean, ext)
        w_sum = np.add.reduceat(w_all, starts)
        m_sum = np.add.reduceat(mean_ext * w_all, starts)
        q_sum = np.add.reduceat(f64(fq50, ext) * w_all, starts)
        b_min = np.minimum.reduceat(f64(fmin, ext), starts)
        b_max = np.maximum.reduceat(f64(fmax, ext), starts)
        with np.errstate(invalid="ignore", divide="ignore"):
            b_mean = np.where(w_sum > 0, m_sum / np.where(w_sum > 0, w_sum, 1.0), math.nan)
            b_q50 = np.where(w_sum > 0, q_sum / np.where(w_sum > 0, w_sum, 1.0), math.nan)
        pa_seg, pb_seg = a_seg[starts], b_seg[starts]
        na_all, nb_all = size_of(pa_seg), size_of(pb_seg)
        best = ext[_strongest_rows(grp, starts, mean_ext, w_all)]
        a_first = seg_of_pos[u[best]] == pa_seg
        pa = np.where(a_first, u[best], v[best])
        pb = np.where(a_first, v[best], u[best])
        small_seg = np.where(na_all <= nb_all, pa_seg, pb_seg)
        on_border = np.isin(small_seg, border_segs)
        rows_of_pair = [ext[a:b] for a, b in zip(starts.tolist(), stops.tolist(), strict=True)]  # np.split: 3x slower
        # The features as columns, then one candidate per pair (a Python pass per pair is most of a search after
        # an edit: its new segments' ~2,000 contacts). log10 through math, as before, for the same values.
        n_small, n_large = np.minimum(na_all, nb_all), np.maximum(na_all, nb_all)
        log_small = map(math.log10, np.maximum(n_small, 1).tolist())
        log_large = map(math.log10, np.maximum(n_large, 1).tolist())
        orphan = ((n_small < orphan_voxels) & ~on_border).astype(np.float64)
        n_edges = (stops - starts).astype(np.float64)
        # the skeleton columns: one NaN object shared, not two new floats per pair
        nan_col = itertools.repeat(math.nan, starts.size)
        table = zip(w_sum.tolist(), b_mean.tolist(), b_min.tolist(), b_max.tolist(), b_q50.tolist(), n_edges.tolist(),
                    log_small, log_large, (n_small / np.maximum(n_large, 1)).tolist(), orphan.tolist(),
                    nan_col, itertools.repeat(math.nan, starts.size), strict=True)
        first_index = len(candidates)
        candidates.extend(_split_candidates(pa_seg.tolist(), pb_seg.tolist(), st.ids[pa].tolist(),
                                            st.ids[pb].tolist(), n_small.astype(np.float64).tolist(), table,
                                            rows_of_pair))
        if locate:
            row_cand.extend(zip(rows_of_pair, range(first_index, len(candidates)), strict=True))
        if skeletons:
            pair_index.update(zip(zip(pa_seg.tolist(), pb_seg.tolist(), strict=True),
                                  range(first_index, len(candidates)), strict=True))

    # ------------------------------------------------------------ false merges
    int_seg = seg_of_pos[u[int_rows]]
    order = np.argsort(int_seg, kind="stable")
    int_rows, int_seg = int_rows[order], int_seg[order]
    bounds = np.flatnonzero(np.r_[True, int_seg[1:] != int_seg[:-1], True]) if int_rows.size else np.array([0])
    rows_of_seg = {int(int_seg[bounds[i]]): int_rows[bounds[i]:bounds[i + 1]] for i in range(bounds.size - 1)}
    seen_cuts: set[tuple[bytes, bytes]] = set()
    nsv_of = dict(zip(seg_ids.tolist(), seg_nsv.tolist(), strict=True))
    # A segment's members and active links, shared by its cuts (a grown segment's are ~15,000 links).
    links_of: dict[int, tuple] = {}

    def add_cut(s: int, src_pos, snk_pos, *, source: str, cid: str, extra: dict) -> None:
        """A false-merge candidate: the min-cut of segment ``s`` between two supervoxel sets (positions)."""
        if s not in links_of:
            members = members_of(s)
            links_of[s] = (members, *st.active_edges(members))
        got = _cut_positions(st, s, src_pos, snk_pos, seg_of_pos, alive, *links_of[s])
        if got is None:
            return
        src_side, snk_side, cut_pos = got
        src, snk = st.ids[src_side], st.ids[snk_side]
        # Either side first: the same cut (both sides sorted, as positions and ids are).
        key = (src.tobytes(), snk.tobytes())
        key = key if key[0] <= key[1] else (key[1], key[0])
        if key in seen_cuts:
            return  # the same cut proposed twice (a skeleton anomaly on a merge-tree cut)
        seen_cuts.add(key)
        if cut_pos.size:
            crow = st.rag_rows(cut_pos.min(axis=1), cut_pos.max(axis=1))
            crow = crow[crow >= 0]
        else:
            crow = np.empty(0, np.int64)
        n_src = int(sv_size[src_side].sum())
        n_snk = int(sv_size[snk_side].sum())
        w = f64(area, crow)
        features = dict.fromkeys(MERGE_FEATURES, math.nan)
        features.update({
            "cut_area": float(w.sum()),
            "cut_boundary_mean": _weighted(f64(mean, crow), w),
            "cut_boundary_min": float(f64(fmin, crow).min()) if crow.size else math.nan,
            "cut_boundary_max": float(f64(fmax, crow).max()) if crow.size else math.nan,
            "cut_boundary_q50": _weighted(f64(fq50, crow), w),
            "cut_edges": float(cut_pos.shape[0]),
            "log_size_small": math.log10(max(min(n_src, n_snk), 1)),
            "log_size_large": math.log10(max(max(n_src, n_snk), 1)),
            "size_ratio": min(n_src, n_snk) / max(n_src, n_snk, 1),
            "log_n_supervoxels": math.log10(max(int(nsv_of.get(s, src.size + snk.size)), 1)),
        })
        features.update(extra)
        if locate:
            row_cand.append((crow, len(candidates)))
        cut = Candidate(
            id=cid, kind="false_merge", location_nm=_UNPLACED, segments=(s,),
            supervoxels=tuple(src.tolist()), sinks=tuple(snk.tolist()), source=source,
            features=features, impact=float(min(n_src, n_snk)),
        )
        cut._rows = crow  # what locate_candidates needs (not a field: equality ignores it)
        candidates.append(cut)

    # The kept trees of segments that are gone: a new segment may be a piece of one (candidates/trees.py).
    # (a segment that still exists still holds its first supervoxel: ids are never reused)
    earlier = [t for segment, t in (trees or {}).items() if seg_of_pos[t.members[0]] != segment]
    # One sort of the table for a whole search; an edit's few segments are cheaper scanned.
    members_of = _Members(st.seg) if only is None or only.size > 16 else st.members
    searched = (seg_nsv >= 2) & (seg_size >= min_voxels) & (seg_ids != 0)
    if only is not None:
        searched &= np.isin(seg_ids, only)
    for s in seg_ids[searched].tolist():
        members = members_of(s)
        tree = segment_tree(members, rows_of_seg.get(s, np.empty(0, np.int64)), u, v, area, mean, earlier=earlier)
        if trees is not None and members.size >= KEEP_FROM:
            trees[s] = tree
        for rank, (score, side_a, side_b) in enumerate(last_merges(tree, weakest_links)):
            add_cut(s, side_a, side_b, source="merge-tree", cid=f"fm-{s}-{rank}",
                    extra={"merge_score": float(score), "merge_rank": float(rank)})

    if skeletons:
        for s, kind_name, side_a, side_b, extra in _skeleton_anomalies(pr, skeletons, seg_ids[seg_nsv >= 2]):
            seeds = _seed_positions(st, side_a, side_b)
            if seeds is not None:
                add_cut(s, *seeds, source="skeleton-anomaly", cid=f"fm-{s}-{kind_name}", extra=extra)

    if skeletons:
        _add_skeleton_features(pr, candidates, pair_index, skeletons, max_endpoint_distance_nm)

    if locate:
        _locate(pr, candidates, row_cand, lv, locations)
    if skeletons:  # end-point candidates were appended after the false merges
        candidates.sort(key=lambda c: c.kind != "false_split")
    return candidates


def locate_candidates(proofreader, candidates: list[Candidate], *, locations: dict | None = None) -> None:
    """Place the candidates a search with ``locate=False`` left unplaced, as that search would have.

    ``locations``: the dict of that search (a :class:`CandidateCache`'s), read and filled.
    """
    unplaced = [c for c in candidates if np.isnan(c.location_nm[0])]
    if not unplaced:
        return
    lv = proofreader.supervoxel_volume().levels[0]
    row_cand = [(c._rows, i) for i, c in enumerate(unplaced) if getattr(c, "_rows", None) is not None]
    _locate(proofreader, unplaced, row_cand, lv, locations)


def _seed_positions(st, src_svs, snk_svs) -> tuple[np.ndarray, np.ndarray] | None:
    """The positions of two seed sets of supervoxel ids; None where one is empty or an id unknown."""
    src_ids = np.asarray(src_svs, np.uint64).ravel()
    snk_ids = np.asarray(snk_svs, np.uint64).ravel()
    if src_ids.size == 0 or snk_ids.size == 0:
        return None
    try:
        return st.positions(src_ids), st.positions(snk_ids)
    except InputError:
        return None


def _cut_positions(st, segment: int, src_pos, snk_pos, seg_of_pos, alive, members, pairs, caps):
    """The min-cut of ``segment`` between two seed sets, all in state positions.

    What :meth:`~napari_connectome.proofread.Proofreader.preview_split_supervoxels` computes for a graph
    split (the same min-cut on the same active edges ``pairs``, ``caps`` of ``members``), without what
    only a commit needs and with the seeds checked at once. ``(source side, sink side, cut position
    pairs)``; None where the preview raises: a seed dead, in another segment or on both sides, or a side
    empty.
    """
    from napari_connectome.proofread.split import min_cut

    src_pos, snk_pos = np.asarray(src_pos, np.int64).ravel(), np.asarray(snk_pos, np.int64).ravel()
    if src_pos.size == 0 or snk_pos.size == 0:
        return None
    seeds = np.concatenate([src_pos, snk_pos])
    if not (alive[seeds].all() and (seg_of_pos[seeds] == segment).all()):
        return None
    if overlaps(src_pos, snk_pos):
        return None
    side, cut = min_cut(members, pairs, caps, src_pos, snk_pos)
    cut_pos = pairs[cut] if cut.size else np.empty((0, 2), np.int64)
    return members[side], members[~side], cut_pos


class CandidateCache:
    """:func:`find_candidates` again after graph edits, redoing only what involves the segments they made.

    Segment ids are never reused, so a candidate whose segments all still
    exist is the one a full search would make now: its contact or its
    segment's internal graph, sizes and border are untouched. After an edit,
    the candidates of segments that are gone are dropped and those of the
    new segments are found (:func:`find_candidates` with ``only_segments``);
    the cost follows the edit's segments, not the volume. The list comes in
    the full search's order and equals it (tested on random edit
    sequences). A change of the supervoxels themselves (a split inside a
    supervoxel), or skeletons among the options, makes every call a full
    search. Calls from several threads take turns.

    A full search first looks for the list kept in the project for exactly
    this state (:mod:`~napari_connectome.candidates.kept`) and keeps what it
    found there for the next session; :meth:`keep` writes the list as the
    session's edits left it.

    Parameters
    ----------
    kept
        Read and write the project's kept list (False: always search, never write).
    options
        Keyword options of :func:`find_candidates`.
    """

    def __init__(self, *, kept: bool = True, **options) -> None:
        import threading

        self.kept = bool(kept)
        self.options = options
        self._kept_stamp: str | None = None
        # A task session's background learner and its main thread may both ask: one search at a time.
        self._lock = threading.Lock()
        self._border: np.ndarray | None = None
        self._fingerprint = None
        self._segments: set[int] = set()
        self._candidates: list[Candidate] = []
        # _full_order of each kept candidate packed in one int64, and its segments: what an edit's update reads
        self._order_keys: np.ndarray | None = None
        self._segment_pairs = np.empty((0, 2), np.int64)
        # Each kept candidate's serial (candidates/rows.py), aligned with _candidates.
        self._serials: np.ndarray | None = None
        self._locations: dict = {}
        # Merge trees of the large segments (find_candidates' ``trees``): an edit's pieces read off them.
        self._trees: dict = {}
        self.last_new = 0

    def locate(self, proofreader, candidates: list[Candidate]) -> None:
        """:func:`locate_candidates` with this cache's locations (for a cache made with ``locate=False``)."""
        with self._lock:
            locate_candidates(proofreader, candidates, locations=self._locations)

    def __call__(self, proofreader) -> list[Candidate]:
        with self._lock:
            return self._search(proofreader)

    def _search(self, proofreader) -> list[Candidate]:
        pr = proofreader
        st = pr.state
        # An edit landing during the search (another thread) would leave a torn result: it is returned
        # (the caller sees the version move and asks again) but not kept.
        version = getattr(pr, "version", None)
        if self._border is None or self._fingerprint is None or self._fingerprint[0] != id(pr):
            self._border = _border_supervoxels(pr)
        alive, seg_of_pos, _ = _sv_table(pr)
        now = set(distinct(seg_of_pos[alive]).tolist()) - {0}
        fingerprint = (id(pr), int(st.ids.size), int(alive.sum()), int(st.n_base))
        if fingerprint != self._fingerprint or self.options.get("skeletons"):
            locations: dict = {}
            stamp = kept.state_stamp(pr, self.options) if self.kept else None
            found = kept.load_candidates(kept.kept_path(pr), stamp) if stamp is not None else None
            searched = found is None
            trees: dict = {}
            if searched:
                found = find_candidates(pr, border_supervoxels=self._border, locations=locations, trees=trees,
                                        **self.options)
            if getattr(pr, "version", None) == version:
                if searched:
                    self._write_kept(pr, stamp, found)
                else:
                    self._kept_stamp = stamp
                self._fingerprint, self._segments, self._candidates = fingerprint, now, found
                self._serials = candidate_rows.assign_serials(found)
                # Packed now, with the search or the read: else the first edit's search packs the whole
                # list (1.7 s at 1.4 M candidates, in the learning a proofreader may wait for).
                try:
                    self._order_keys, self._segment_pairs = _order_columns(found)
                except ValueError:  # ids beyond the packing: the edit's search raises it where it needs them
                    self._order_keys = None
                self._locations, self._trees = locations, trees
            else:
                self._fingerprint = None
            self.last_new = len(found)
            return list(found)
        gone = self._segments - now
        new = now - self._segments
        if self._order_keys is None or len(self._order_keys) != len(self._candidates):
            self._order_keys, self._segment_pairs = _order_columns(self._candidates)
        drop = np.flatnonzero(np.isin(self._segment_pairs, np.fromiter(gone, np.int64, len(gone))).any(axis=1))
        fresh = (find_candidates(pr, border_supervoxels=self._border, only_segments=new, locations=self._locations,
                                 trees=self._trees, **self.options) if new else [])
        for segment in gone:
            self._trees.pop(segment, None)  # read off for the pieces already, if any
        fresh_keys, fresh_pairs = _order_columns(fresh)
        # sorted(survivors + fresh, key=_full_order), stably: the survivors are sorted already, so each new
        # candidate goes after the survivors whose keys are not above its own (equal keys: the survivors
        # first, the new ones as found), and the list and its columns are spliced, not sorted and gathered
        # (a Python pass over the whole list was ~150 ms an edit at 1.4 M candidates).
        first = np.argsort(fresh_keys, kind="stable")
        fresh_keys = fresh_keys[first]
        survivor_keys = np.delete(self._order_keys, drop)
        at = np.searchsorted(survivor_keys, fresh_keys, side="right")
        merged = _inserted(_without(self._candidates, drop), at, [fresh[i] for i in first.tolist()])
        if self._serials is None or len(self._serials) != len(self._candidates):
            self._serials = candidate_rows.assign_serials(self._candidates)
        numbers = np.insert(np.delete(self._serials, drop), at, candidate_rows.assign_serials(fresh)[first])
        if getattr(pr, "version", None) == version:
            self._segments, self._candidates = now, merged
            self._order_keys = np.insert(survivor_keys, at, fresh_keys)
            self._segment_pairs = np.insert(np.delete(self._segment_pairs, drop, axis=0), at, fresh_pairs[first],
                                            axis=0)
            self._serials = numbers
        else:
            self._fingerprint = None  # the next call searches everything again
        self.last_new = len(fresh)
        # Whoever ranks the list next finds its serials known (candidates/rows.py).
        candidate_rows.remember(merged, numbers)
        return list(merged)

    def keep(self, proofreader) -> bool:
        """Write the list for the proofreader's state now into the project, unless kept already.

        What a session calls as it closes, so that the next one starts from the list its edits left
        (brought up to date first: an incremental search). False when nothing was written (see
        :mod:`~napari_connectome.candidates.kept`: read-only, skeletons, minted supervoxels).
        """
        if not self.kept:
            return False
        with self._lock:
            version = getattr(proofreader, "version", None)
            found = self._search(proofreader)
            if getattr(proofreader, "version", None) != version:
                return False
            return self._write_kept(proofreader, kept.state_stamp(proofreader, self.options), found)

    def _write_kept(self, pr, stamp: str | None, found: list[Candidate]) -> bool:
        if stamp is None or stamp == self._kept_stamp or getattr(pr, "read_only", True):
            return False
        try:
            kept.save_candidates(kept.kept_path(pr), found, stamp)
        except OSError:
            return False  # a full disk or a read-only folder: the next session searches again
        self._kept_stamp = stamp
        return True


def _full_order(c: Candidate) -> tuple:
    """The order :func:`find_candidates` lists candidates in (without skeletons)."""
    if c.kind == "false_split":
        return (0, int(c.segments[0]), int(c.segments[1]), 0)
    return (1, int(c.segments[0]), int(c.id.rsplit("-", 1)[1]), 0)


_KEY_BITS = 31


def _without(items: list, drop: np.ndarray) -> list:
    """``items`` without those at the sorted indices ``drop``, copied by slices (a few, each in C)."""
    out: list = []
    start = 0
    for d in drop.tolist():
        out += items[start:d]
        start = d + 1
    out += items[start:]
    return out


def _inserted(items: list, at: np.ndarray, new: list) -> list:
    """``items`` with ``new[i]`` put before ``items[at[i]]`` (``at`` non-decreasing; equal: in ``new``'s order)."""
    out: list = []
    start = 0
    for a, item in zip(at.tolist(), new, strict=True):
        out += items[start:a]
        out.append(item)
        start = a
    out += items[start:]
    return out


def _order_columns(candidates: list[Candidate]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_full_order` of each candidate packed in one int64 (same order), and its segments (pad -1).

    ``(kind, a, b)`` → ``kind << 62 | a << 31 | b``: order-preserving while ``a`` and ``b`` are below
    2^31 (segment ids and cut numbers are); beyond that the packing would not be, and it raises.
    """
    n = len(candidates)
    # C-level passes (map, attrgetter): an edit's search brings ~2,700 new candidates.
    split = proposes_merges(candidates)
    segments = list(map(_SEGMENTS, candidates))
    first = np.fromiter(map(_FIRST, segments), np.int64, n)
    # A false split's second segment; a cut's number, the end of its id (``fm-S-k``).
    second = np.empty(n, np.int64)
    at = np.flatnonzero(split)
    second[at] = np.fromiter(map(_SECOND, map(segments.__getitem__, at.tolist())), np.int64, at.size)
    cuts = np.flatnonzero(~split).tolist()
    second[cuts] = [int(candidates[i].id.rsplit("-", 1)[1]) for i in cuts]
    rows = np.stack([(~split).astype(np.int64), first, second], axis=1)
    if rows.size and (rows[:, 1:].min() < 0 or rows[:, 1:].max() >= 1 << _KEY_BITS):
        raise ValueError("candidate order keys beyond 2^31: segment ids this large are not supported here")
    keys = (rows[:, 0] << (2 * _KEY_BITS)) | (rows[:, 1] << _KEY_BITS) | rows[:, 2]
    pairs = np.full((n, 2), -1, np.int64)
    pairs[:, 0] = first
    pairs[split, 1] = second[split]
    for i in cuts:
        if len(segments[i]) > 1:  # a cut that names more than its segment (none is made so)
            pairs[i, 1] = segments[i][1]
    return keys, pairs


_SEGMENTS = operator.attrgetter("segments")
_FIRST, _SECOND = operator.itemgetter(0), operator.itemgetter(1)


def _locate(pr, candidates: list[Candidate], row_cand, lv: Level, locations: dict | None = None) -> None:
    """Set each candidate's location: its contact's face nearest to the contact's centroid."""
    keys = {}
    if locations is not None:
        unplaced = []
        for rows, c in row_cand:
            key = np.sort(np.asarray(rows, np.int64)).tobytes()
            if key in locations and np.isnan(candidates[c].location_nm[0]):
                candidates[c].location_nm = locations[key]
            else:
                keys[c] = key
                unplaced.append((rows, c))
        row_cand = unplaced
    pairs_r = [r for r, _ in row_cand]
    pairs_c = [np.full(r.size, c, np.int64) for r, c in row_cand]
    row_of = np.concatenate(pairs_r) if pairs_r else np.empty(0, np.int64)
    cand_of = np.concatenate(pairs_c) if pairs_c else np.empty(0, np.int64)
    order = np.argsort(row_of, kind="stable")
    row_of, cand_of = row_of[order], cand_of[order]
    # Reuses the scans of earlier calls while the supervoxel voxels are the same (contacts.LOCATE_CACHE).
    best = locate_faces(pr, row_of, cand_of, len(candidates))
    placed = {c for _, c in row_cand}
    for i, c in enumerate(candidates):
        if not np.isnan(c.location_nm[0]):
            continue  # placed already (skeleton end point, or the same rows before)
        if best[i, 0] >= 0:
            c.location_nm = tuple(float(x) for x in lv.centre_of(best[i]))
        else:
            c.location_nm = _fallback_location(pr, c)
        if locations is not None and i in placed and i in keys and best[i, 0] >= 0:
            locations[keys[i]] = c.location_nm


def _fallback_location(pr, c: Candidate) -> tuple[float, float, float]:
    """A voxel of the candidate's first supervoxel (a candidate whose cut has no face: a manual link)."""
    arr = pr.supervoxel_volume().levels[0].array
    lv = pr.supervoxel_volume().levels[0]
    target = np.uint64(c.supervoxels[0])
    for z in range(arr.shape[0]):
        hit = np.argwhere(np.asarray(arr[z]) == target)
        if hit.size:
            idx = np.array([z, *hit[hit.shape[0] // 2]], np.float64)
            return tuple(float(x) for x in lv.centre_of(idx))
    return (math.nan,) * 3


def _add_skeleton_features(pr, candidates, pair_index, skeletons, max_dist) -> None:
    """End-point distance and direction cosine for false splits; end-point candidates for pairs without contact."""
    from scipy.spatial import cKDTree

    ends = {}
    trees = {}
    for sid, sk in skeletons.items():
        verts = np.asarray(sk.vertices_nm, np.float64).reshape(-1, 3)
        if verts.shape[0] == 0:
            continue
        trees[int(sid)] = cKDTree(verts)
        idx = np.asarray(sk.endpoints(), np.int64)
        dirs = np.asarray(sk.endpoint_directions(), np.float64).reshape(-1, 3) if idx.size else np.empty((0, 3))
        ends[int(sid)] = (verts[idx], dirs)
    if not trees:
        return
    all_ids = np.array(sorted(trees), np.int64)
    all_verts = np.concatenate([trees[s].data for s in all_ids])
    owner = np.repeat(all_ids, [trees[s].n for s in all_ids])
    big = cKDTree(all_verts)
    # Best (distance, cosine, end point, other point) per segment pair.
    best: dict[tuple[int, int], tuple[float, float, np.ndarray, np.ndarray]] = {}
    for sid, (pts, dirs) in ends.items():
        for p, d in zip(pts, dirs, strict=True):
            for j in big.query_ball_point(p, max_dist):
                other = int(owner[j])
                if other == sid:
                    continue
                q = all_verts[j]
                dist = float(np.linalg.norm(q - p))
                key = (min(sid, other), max(sid, other))
                cos = math.nan
                other_ends = ends.get(other)
                if other_ends is not None and other_ends[0].shape[0]:
                    k = int(np.argmin(((other_ends[0] - p) ** 2).sum(axis=1)))
                    # Two ends that continue each other point at each other: d ≈ -d_other.
                    cos = float(-np.dot(d, other_ends[1][k]))
                if key not in best or dist < best[key][0]:
                    best[key] = (dist, cos, p, q)
    for key, (dist, cos, p, q) in best.items():
        if key in pair_index:
            c = candidates[pair_index[key]]
            c.features["endpoint_distance_nm"] = dist
            c.features["direction_cosine"] = cos
            continue
        sa, sb = key
        if not (pr.state.has_segment(sa) and pr.state.has_segment(sb)):
            continue
        sv_a, sv_b = _supervoxel_near(pr, sa, p, q), _supervoxel_near(pr, sb, q, p)
        na = int(pr.rag.node_sizes[pr.rag.node_index(pr.segment_supervoxels(sa))].sum())
        nb = int(pr.rag.node_sizes[pr.rag.node_index(pr.segment_supervoxels(sb))].sum())
        skel_small = min(skeletons[sa].path_length_nm, skeletons[sb].path_length_nm)
        feats = dict.fromkeys(SPLIT_FEATURES, math.nan)
        feats.update({
            "contact_area": 0.0, "n_edges": 0.0,
            "log_size_small": math.log10(max(min(na, nb), 1)), "log_size_large": math.log10(max(na, nb, 1)),
            "size_ratio": min(na, nb) / max(na, nb, 1),
            "endpoint_distance_nm": dist, "direction_cosine": cos,
        })
        mid = tuple(float(x) for x in (p + q) / 2)
        # Appended (indices of the located candidates must not move); sorted by kind at the end.
        candidates.append(Candidate(
            id=f"fs-{sa}-{sb}", kind="false_split", location_nm=mid, segments=(sa, sb),
            supervoxels=(sv_a, sv_b), source="skeleton-endpoint", features=feats, impact=float(skel_small),
            impact_unit="nm",
        ))
    for c in candidates:
        if c.kind == "false_split":
            lengths = [skeletons[s].path_length_nm for s in c.segments if s in skeletons]
            if len(lengths) == 2:
                c.impact, c.impact_unit = float(min(lengths)), "nm"
        else:
            sk = skeletons.get(c.segments[0])
            if sk is not None:
                frac = c.features["size_ratio"] / (1.0 + c.features["size_ratio"])
                c.impact, c.impact_unit = float(sk.path_length_nm * frac), "nm"


def _supervoxel_near(pr, segment: int, point, toward) -> int:
    """A supervoxel of ``segment`` at ``point`` (nm), else its largest one."""
    try:
        sv = pr.supervoxel_at(point)
        if sv and pr.segment_of(sv) == segment:
            return int(sv)
    except InputError:
        pass
    svs = pr.segment_supervoxels(segment)
    sizes = pr.rag.node_sizes[pr.rag.node_index(svs)]
    return int(svs[int(np.argmax(sizes))])


def simple_score(c: Candidate) -> float:
    """A fixed likelihood-of-error score: 1 - boundary mean for a false split, the merge score for a false merge."""
    if c.kind == "false_split":
        b = c.features.get("boundary_mean", math.nan)
        return 1.0 - b if not math.isnan(b) else 0.0
    return float(c.features.get("merge_score", 0.0))


def _skeleton_anomalies(pr, skeletons: Mapping, segments, *, neck_ratio: float = 0.35,
                        sharp_angle_deg: float = 60.0, reach_nm: float = 200.0, seeds_per_side: int = 64):
    """Thin necks and sharp or crowded branch points of the skeletons of multi-supervoxel segments.

    Yields ``(segment, name, source supervoxels, sink supervoxels, features)``:

    * a **thin neck**: the thinnest vertex of degree 2 whose radius is below
      ``neck_ratio`` × the skeleton's median radius; the sides are the
      skeleton on either side of it;
    * a **sharp branch**: at a branch point, the branch left over when the
      two most opposite branches are taken as the through-going path, when it
      meets another branch at less than ``sharp_angle_deg``; X-junctions
      (degree ≥ 4) are reported with the same cut (the odd branch vs the rest).

    A side's seeds are the supervoxels of the segment that hold more of its
    skeleton vertices than of the other side's (up to ``seeds_per_side``
    vertices sampled along each side).
    """
    wanted = {int(s) for s in np.asarray(segments).tolist()}
    for sid, sk in skeletons.items():
        if int(sid) in wanted and pr.state.has_segment(int(sid)):
            yield from _anomalies_of(pr, int(sid), sk, neck_ratio=neck_ratio, sharp_angle_deg=sharp_angle_deg,
                                     reach_nm=reach_nm, seeds_per_side=seeds_per_side)


def _anomalies_of(pr, sid: int, sk, *, neck_ratio, sharp_angle_deg, reach_nm, seeds_per_side):
    """The anomalies of one segment's skeleton (see :func:`_skeleton_anomalies`)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components, dijkstra

    verts = np.asarray(sk.vertices_nm, np.float64).reshape(-1, 3)
    edges = np.asarray(sk.edges, np.int64).reshape(-1, 2)
    n = verts.shape[0]
    if n < 3 or edges.shape[0] == 0:
        return
    lengths = np.linalg.norm(verts[edges[:, 0]] - verts[edges[:, 1]], axis=1) + 1e-6
    deg = np.bincount(edges.ravel(), minlength=n)
    radii = np.asarray(sk.radii_nm, np.float64).reshape(-1)

    def sides_without(vertex: int):
        keep = (edges[:, 0] != vertex) & (edges[:, 1] != vertex)
        e = edges[keep]
        g = coo_matrix((np.ones(e.shape[0]), (e[:, 0], e[:, 1])), shape=(n, n))
        return connected_components(g, directed=False)[1]

    def votes(members: np.ndarray) -> dict[int, int]:
        """Vertices per supervoxel of the segment, over up to ``seeds_per_side`` vertices spread along a side."""
        if members.size > seeds_per_side:
            members = members[np.linspace(0, members.size - 1, seeds_per_side).astype(np.int64)]
        out: dict[int, int] = {}
        for vtx in members.tolist():
            try:
                sv = pr.supervoxel_at(verts[vtx])
            except InputError:
                continue
            if sv and pr.segment_of(sv) == sid:
                out[int(sv)] = out.get(int(sv), 0) + 1
        return out

    graph = coo_matrix((np.r_[lengths, lengths], (np.r_[edges[:, 0], edges[:, 1]],
                                                  np.r_[edges[:, 1], edges[:, 0]])), shape=(n, n)).tocsr()
    found = []
    if radii.size == n and np.isfinite(radii).all() and np.median(radii) > 0:
        med = float(np.median(radii))
        inner = np.flatnonzero((deg == 2) & (radii < neck_ratio * med))
        # The thinnest neck with at least ``reach_nm`` of skeleton on both
        # sides: tips taper, and cutting off a tip is no merge error.
        for v in inner[np.argsort(radii[inner], kind="stable")][:20].tolist():
            comp = sides_without(v)
            a, b = [int(x) for x in np.flatnonzero(graph[v].toarray().ravel() > 0)[:2]]
            on_a = (comp[edges[:, 0]] == comp[a]) & (comp[edges[:, 1]] == comp[a])
            on_b = (comp[edges[:, 0]] == comp[b]) & (comp[edges[:, 1]] == comp[b])
            if lengths[on_a].sum() >= reach_nm and lengths[on_b].sum() >= reach_nm:
                found.append(("neck", v, comp == comp[a], comp == comp[b],
                              {"neck_radius_ratio": float(radii[v] / med)}))
                break
    for v in np.flatnonzero(deg >= 3).tolist():
        comp = sides_without(v)
        nbrs = np.flatnonzero(graph[v].toarray().ravel() > 0)
        dist = dijkstra(graph, indices=v, limit=reach_nm)
        dirs = []
        for nb in nbrs.tolist():
            near = (comp == comp[nb]) & np.isfinite(dist)
            d = verts[near].mean(axis=0) - verts[v]
            dirs.append(d / max(np.linalg.norm(d), 1e-9))
        dirs = np.asarray(dirs)
        cos = dirs @ dirs.T
        np.fill_diagonal(cos, np.inf)
        i, j = np.unravel_index(np.argmin(cos), cos.shape)  # the through-going pair
        others = [k for k in range(len(nbrs)) if k not in (i, j)]
        np.fill_diagonal(cos, -np.inf)
        odd = max(others, key=lambda k: cos[k].max())
        angle = float(np.degrees(np.arccos(np.clip(cos[odd].max(), -1, 1))))
        if angle < sharp_angle_deg or len(nbrs) >= 4:
            side = comp == comp[nbrs[odd]]
            found.append(("branch", v, side, ~side & (np.arange(n) != v),
                          {"branch_angle_deg": angle, "junction_degree": float(len(nbrs))}))
    for k, (name, _v, side_a, side_b, extra) in enumerate(found):
        # A supervoxel seeds the side most of its vertices are on (ties: neither).
        va, vb = votes(np.flatnonzero(side_a)), votes(np.flatnonzero(side_b))
        src = sorted(x for x in va if va[x] > vb.get(x, 0))
        snk = sorted(x for x in vb if vb[x] > va.get(x, 0))
        if src and snk:
            yield sid, f"{name}{k}", src, snk, extra
