"""Ground truth for candidates: the true errors of a segmentation, the right answer to each candidate, recall.

Definitions (those of the issue):

* **merge error**: a segment overlapping two or more ground-truth bodies with
  at least ``min_voxels`` voxels each;
* **split error**: a ground-truth body overlapping two or more segments with
  at least ``min_voxels`` voxels each.

Ground-truth label 0 is ignored (unlabelled), and so is segment 0 (background).
"""

from __future__ import annotations

import itertools
import operator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from napari_connectome.arrays import distinct
from napari_connectome.candidates.model import Candidate, proposes_merges
from napari_connectome.errors import InputError


@dataclass(frozen=True)
class TrueError:
    """One error of a segmentation against its ground truth.

    Attributes
    ----------
    kind
        ``"merge"`` (one segment holds several bodies) or ``"split"`` (one
        body lies in several segments).
    segments
        Merge: the segment. Split: the segments holding ``≥ min_voxels`` of the body.
    bodies
        Merge: the bodies with ``≥ min_voxels`` in the segment. Split: the body.
    overlap
        Voxels of each (segment, body) pair named above.
    body_supervoxels
        Merge errors, when supervoxels were given: ``body → {supervoxel: voxels}``
        inside the segment, to tell whether a cut separates the bodies.
    all_segments
        Split errors: every segment overlapping the body (small ones too),
        through which candidates may connect the big pieces.
    """

    kind: Literal["merge", "split"]
    segments: tuple[int, ...]
    bodies: tuple[int, ...]
    overlap: dict = field(default_factory=dict, compare=False, hash=False)
    body_supervoxels: dict = field(default_factory=dict, compare=False, hash=False)
    all_segments: tuple[int, ...] = ()


def _check_same_shape(a: np.ndarray, b: np.ndarray, what_a: str, what_b: str) -> None:
    if a.shape != b.shape:
        raise InputError(what_b, f"shape {b.shape} differs from the {what_a}'s {a.shape}")


def _pairs(x: np.ndarray, y: np.ndarray, mask: np.ndarray):
    """Unique ``(x, y)`` pairs under ``mask`` with their voxel counts."""
    xv = x[mask].astype(np.uint64)
    yv = y[mask].astype(np.uint64)
    if xv.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64)
    pair = np.stack([xv, yv], axis=1)
    uniq, count = np.unique(pair, axis=0, return_counts=True)
    return uniq[:, 0].astype(np.int64), uniq[:, 1].astype(np.int64), count.astype(np.int64)


def true_errors(seg: np.ndarray, gt: np.ndarray, *, min_voxels: int = 1000,
                supervoxels: np.ndarray | None = None) -> list[TrueError]:
    """The merge and split errors of ``seg`` against ``gt``.

    Parameters
    ----------
    seg, gt
        Segment ids and ground-truth body ids per voxel (same shape).
    min_voxels
        Overlap a (segment, body) pair needs to count.
    supervoxels
        The supervoxel of every voxel; with it, merge errors record which
        supervoxels hold each body (needed by :func:`candidate_recall`).

    Returns
    -------
    list[TrueError]
        Merge errors (by segment id), then split errors (by body id).
    """
    seg = np.asarray(seg)
    gt = np.asarray(gt)
    _check_same_shape(seg, gt, "segmentation", "ground truth")
    mask = (gt != 0) & (seg != 0)
    s, b, n = _pairs(seg, gt, mask)
    big = n >= min_voxels
    out: list[TrueError] = []
    sv_counts: dict[tuple[int, int], dict[int, int]] = {}
    merge_segs = [int(x) for x, k in zip(*np.unique(s[big], return_counts=True), strict=True) if k >= 2]
    if supervoxels is not None and merge_segs:
        supervoxels = np.asarray(supervoxels)
        _check_same_shape(seg, supervoxels, "segmentation", "supervoxels")
        m2 = mask & np.isin(seg, np.asarray(merge_segs, dtype=seg.dtype))
        key_seg = seg[m2].astype(np.int64)
        sv_v = supervoxels[m2].astype(np.int64)
        gt_v = gt[m2].astype(np.int64)
        trip, cnt = np.unique(np.stack([key_seg, gt_v, sv_v], axis=1), axis=0, return_counts=True)
        for (ks, kb, ksv), c in zip(trip.tolist(), cnt.tolist(), strict=True):
            sv_counts.setdefault((ks, kb), {})[ksv] = c
    for sid in merge_segs:
        sel = big & (s == sid)
        bodies = tuple(int(x) for x in b[sel])
        out.append(TrueError(
            "merge", (sid,), bodies, overlap={(sid, bb): int(c) for bb, c in zip(bodies, n[sel].tolist(), strict=True)},
            body_supervoxels={bb: sv_counts.get((sid, bb), {}) for bb in bodies},
        ))
    split_bodies = [int(x) for x, k in zip(*np.unique(b[big], return_counts=True), strict=True) if k >= 2]
    for bid in split_bodies:
        sel = big & (b == bid)
        segs = tuple(int(x) for x in s[sel])
        out.append(TrueError(
            "split", segs, (bid,), overlap={(ss, bid): int(c) for ss, c in zip(segs, n[sel].tolist(), strict=True)},
            all_segments=tuple(int(x) for x in s[b == bid]),
        ))
    return out


def _sv_body_counts(proofreader, gt: np.ndarray):
    """Contingency of the current supervoxels with ``gt``: ``(sv ids, body ids, voxels)``."""
    vol = proofreader.supervoxel_volume()
    lv = vol.levels[0]
    if tuple(gt.shape) != tuple(lv.shape):
        raise InputError("ground truth", f"shape {tuple(gt.shape)} differs from the project's {tuple(lv.shape)}")
    sv = np.asarray(lv.array[:, :, :])
    return _pairs(sv, gt, (gt != 0) & (sv != 0))


class SupervoxelBodies:
    """The ground-truth bodies in every supervoxel, with voxel counts: the majority body of any set of them.

    Counted once (one pass over the volume); graph edits never change it, so
    a simulation labels the candidates of each new state from it in
    microseconds a candidate instead of a pass over the volume each time.
    """

    def __init__(self, sv_ids: np.ndarray, body_ids: np.ndarray, counts: np.ndarray) -> None:
        order = np.lexsort((body_ids, sv_ids))
        self.sv, self.body, self.count = sv_ids[order], body_ids[order], counts[order]
        self.ids, self.start = np.unique(self.sv, return_index=True)
        self.stop = np.r_[self.start[1:], self.sv.size].astype(np.int64)

        self._segments: dict[int, int] = {}

    @classmethod
    def of(cls, proofreader, gt: np.ndarray) -> SupervoxelBodies:
        return cls(*_sv_body_counts(proofreader, np.asarray(gt)))

    @classmethod
    def from_table(cls, table) -> SupervoxelBodies:
        """From a :class:`~napari_connectome.metrics.Contingency` of supervoxels (``seg``) against ``gt``."""
        keep = (np.asarray(table.seg) != 0) & (np.asarray(table.gt) != 0)
        return cls(np.asarray(table.seg)[keep].astype(np.int64), np.asarray(table.gt)[keep].astype(np.int64),
                   np.asarray(table.count)[keep].astype(np.int64))

    def segment_majority(self, proofreader, segment: int) -> int:
        """:meth:`majority` of a segment's supervoxels, remembered: a segment id always means one set."""
        segment = int(segment)
        if segment not in self._segments:
            self._segments[segment] = self.majority(proofreader.segment_supervoxels(segment).astype(np.int64))
        return self._segments[segment]

    def remember_segments(self, proofreader, segments) -> None:
        """:meth:`segment_majority` of many segments at once (one pass over the segment table).

        Asked one by one, each segment scans the whole table and counts its
        own bodies: at 1024³ the first labelling of 0.3 M segments took ~110 s.
        Segments that hold no supervoxel are left to :meth:`segment_majority`
        (which raises).
        """
        known = self._segments
        wanted = distinct(np.fromiter((x for x in map(int, segments) if x not in known), np.uint64))
        if wanted.size == 0:
            return
        st = proofreader.state
        seg = np.asarray(st.seg)
        pos = np.flatnonzero(np.isin(seg, wanted))
        if pos.size == 0:
            return
        held, owner = np.unique(seg[pos], return_inverse=True)
        found = self.majorities(owner.reshape(-1), np.asarray(st.ids)[pos].astype(np.int64), held.size)
        self._segments.update(zip(held.astype(np.int64).tolist(), found.tolist(), strict=True))

    def majorities(self, group: np.ndarray, svs: np.ndarray, n: int) -> np.ndarray:
        """:meth:`majority` of ``n`` sets at once: ``svs[i]`` belongs to set ``group[i]`` (``0..n-1``).

        Every (set, body) total comes from one sort instead of one ``unique`` per set; the answers
        are :meth:`majority`'s, its tie rule (the smallest body) included.
        """
        out = np.zeros(n, np.int64)
        svs = np.asarray(svs, np.int64).reshape(-1)
        group = np.asarray(group, np.int64).reshape(-1)
        if svs.size == 0 or self.ids.size == 0:
            return out
        at = np.clip(np.searchsorted(self.ids, svs), 0, self.ids.size - 1)
        hit = self.ids[at] == svs
        at, group = at[hit], group[hit]
        lengths = self.stop[at] - self.start[at]
        rows = np.repeat(self.start[at] - np.cumsum(lengths) + lengths, lengths) + np.arange(int(lengths.sum()))
        if rows.size == 0:
            return out
        owner, body, count = np.repeat(group, lengths), self.body[rows], self.count[rows].astype(np.float64)
        order = np.lexsort((body, owner))
        o, b, c = owner[order], body[order], count[order]
        first = np.flatnonzero(np.r_[True, (o[1:] != o[:-1]) | (b[1:] != b[:-1])])
        go, gb, total = o[first], b[first], np.add.reduceat(c, first)
        # per set: the largest total, ties to the smallest body
        best = np.lexsort((gb, -total, go))
        lead = best[np.flatnonzero(np.r_[True, go[best][1:] != go[best][:-1]])]
        out[go[lead]] = gb[lead]
        return out

    def majority(self, svs) -> int:
        """The body with most voxels in the supervoxels ``svs`` (the smallest id of a tie; 0 if none)."""
        svs = np.asarray(svs, dtype=np.int64).reshape(-1)
        return int(self.majorities(np.zeros(svs.size, np.int64), svs, 1)[0])


_SEGMENTS, _FIRST_TWO = operator.attrgetter("segments"), operator.itemgetter(slice(2))


def label_candidates(candidates: list[Candidate], proofreader, gt: np.ndarray, *,
                     bodies: SupervoxelBodies | None = None) -> np.ndarray:
    """The right answer to every candidate, from ground truth: True = do the proposed edit.

    A false split (merge) is right when both segments' majority bodies are
    the same; a false merge (split) when the source side's and the sink
    side's majority bodies differ. A piece with no ground truth (all 0)
    makes the answer False: nothing supports the edit.

    Parameters
    ----------
    bodies
        :class:`SupervoxelBodies` of ``gt`` counted before (valid while the supervoxels are unchanged);
        None: counted now.

    Raises
    ------
    InputError
        ``gt`` has another shape than the project's supervoxels.
    """
    if bodies is None:
        bodies = SupervoxelBodies.of(proofreader, gt)
    out = np.zeros(len(candidates), dtype=bool)
    # C-level passes (map, attrgetter): an edit brings ~2,000 new candidates, one Python pass each was
    # most of labelling them.
    is_merge = proposes_merges(candidates)
    merges, cuts = np.flatnonzero(is_merge).tolist(), np.flatnonzero(~is_merge).tolist()
    if merges:
        # Every pair's two segments as one array, each distinct segment's majority looked up once.
        pairs = np.fromiter(itertools.chain.from_iterable(map(_FIRST_TWO, map(_SEGMENTS, map(candidates.__getitem__,
                                                                                               merges)))),
                            np.int64, 2 * len(merges)).reshape(-1, 2)
        segments, where = np.unique(pairs, return_inverse=True)
        bodies.remember_segments(proofreader, segments.tolist())
        found = map(bodies._segments.get, segments.tolist(), itertools.repeat(-1))
        major = np.fromiter(found, np.int64, segments.size)[where.reshape(-1, 2)]
        out[merges] = (major[:, 0] != 0) & (major[:, 0] == major[:, 1])
        for k in np.flatnonzero((major < 0).any(axis=1)).tolist():
            # not remembered above: a segment with no supervoxel left
            c = candidates[merges[k]]
            try:
                a, b = (bodies.segment_majority(proofreader, s) for s in c.segments[:2])
            except InputError:
                out[merges[k]] = False  # a segment an edit has replaced since
                continue
            out[merges[k]] = a != 0 and a == b
    if cuts:
        # both sides of every cut at once: side 2j is candidate j's source side, 2j + 1 its sink side
        sides = [side for i in cuts for side in (candidates[i].supervoxels, candidates[i].sinks)]
        lengths = np.fromiter((len(x) for x in sides), np.int64, len(sides))
        flat = np.fromiter(itertools.chain.from_iterable(sides), np.int64, int(lengths.sum()))
        major = bodies.majorities(np.repeat(np.arange(len(sides)), lengths), flat, len(sides)).reshape(-1, 2)
        out[cuts] = (major[:, 0] != 0) & (major[:, 1] != 0) & (major[:, 0] != major[:, 1])
    return out


def _separates(c: Candidate, body_svs: dict) -> bool:
    """Whether a candidate's cut puts most of two of the bodies on opposite sides."""
    src = set(c.supervoxels)
    snk = set(c.sinks)
    sides = []
    for counts in body_svs.values():
        on_src = sum(n for sv, n in counts.items() if sv in src)
        on_snk = sum(n for sv, n in counts.items() if sv in snk)
        sides.append(1 if on_src > on_snk else 2 if on_snk > on_src else 0)
    return 1 in sides and 2 in sides


def candidate_recall(candidates: list[Candidate], errors: list[TrueError], *,
                     labels: np.ndarray | None = None, scores: np.ndarray | None = None,
                     k: int = 50) -> dict:
    """Fraction of the true errors that the candidates cover.

    * A split error (body split into segments s1 … sn) is covered when the
      false-split candidates between segments of that body (small pieces
      included) connect s1 … sn.
    * A merge error (segment s holding bodies b1 … bn) is covered when a
      false-merge candidate on s has a cut that puts most of two of those
      bodies on opposite sides (needs ``true_errors(..., supervoxels=...)``).

    Parameters
    ----------
    labels, scores
        With both: also ``precision_at_k`` = fraction of right candidates
        among the ``k`` highest scores.

    Returns
    -------
    dict
        ``merge_errors``, ``merge_covered``, ``merge_recall``,
        ``split_errors``, ``split_covered``, ``split_recall``, ``recall``
        (both kinds together; NaN where there is no error), ``n_candidates``,
        ``merge_errors_graph`` and ``merge_recall_graph`` (merge errors that
        a cut between supervoxels can fix at all, see :func:`graph_fixable`),
        ``uncovered`` (the errors not covered), and ``precision_at_k``, ``k``
        when asked.
    """
    by_segment: dict[int, list[Candidate]] = {}
    split_pairs = []
    for c in candidates:
        if c.kind == "false_merge":
            by_segment.setdefault(int(c.segments[0]), []).append(c)
        else:
            split_pairs.append((int(c.segments[0]), int(c.segments[1])))
    merge_n = merge_ok = split_n = split_ok = graph_n = graph_ok = 0
    uncovered = []
    for e in errors:
        if e.kind == "merge":
            merge_n += 1
            hit = any(_separates(c, e.body_supervoxels) for c in by_segment.get(e.segments[0], []))
            merge_ok += hit
            if graph_fixable(e):
                graph_n += 1
                graph_ok += hit
        else:
            split_n += 1
            hit = _connected(e.segments, set(e.all_segments) | set(e.segments), split_pairs)
            split_ok += hit
        if not hit:
            uncovered.append(e)

    def frac(a, b):
        return a / b if b else float("nan")

    out = {
        "n_candidates": len(candidates),
        "merge_errors": merge_n, "merge_covered": merge_ok, "merge_recall": frac(merge_ok, merge_n),
        "split_errors": split_n, "split_covered": split_ok, "split_recall": frac(split_ok, split_n),
        "recall": frac(merge_ok + split_ok, merge_n + split_n),
        "merge_errors_graph": graph_n, "merge_recall_graph": frac(graph_ok, graph_n),
        "uncovered": uncovered,
    }
    if labels is not None and scores is not None:
        out.update(precision_at(labels, scores, k=k), k=k)
    return out


def graph_fixable(error: TrueError) -> bool:
    """Whether a merge error can be fixed by cutting between supervoxels at all.

    It can when giving every supervoxel of the segment to its majority body
    (the best cut there is) puts most of two of the bodies on opposite
    sides; it cannot when a body lies inside a supervoxel that mostly
    belongs to another (only a split inside that supervoxel fixes it).
    """
    if error.kind != "merge":
        return True
    owner: dict[int, tuple[int, int]] = {}
    for body, counts in error.body_supervoxels.items():
        for sv, n in counts.items():
            if sv not in owner or n > owner[sv][1]:
                owner[sv] = (body, n)
    homes = 0
    for body, counts in error.body_supervoxels.items():
        own = sum(n for sv, n in counts.items() if owner[sv][0] == body)
        homes += own * 2 > sum(counts.values())
    return homes >= 2


def precision_at(labels: np.ndarray, scores: np.ndarray, *, k: int = 50) -> dict:
    """``{"precision_at_k": …}``: right candidates among the ``k`` highest scores (ties: candidate order)."""
    labels = np.asarray(labels, bool)
    scores = np.asarray(scores, np.float64)
    if labels.shape != scores.shape:
        raise InputError("scores", f"{scores.shape[0]} scores for {labels.shape[0]} labels")
    if labels.size == 0:
        return {"precision_at_k": float("nan")}
    top = np.argsort(-scores, kind="stable")[:k]
    return {"precision_at_k": float(labels[top].mean())}


def _connected(targets, allowed: set, pairs) -> bool:
    """Whether ``targets`` are one component of the graph ``pairs`` restricted to ``allowed``."""
    from scipy.cluster.hierarchy import DisjointSet

    sets = DisjointSet(allowed)
    for a, b in pairs:
        if a in sets and b in sets:
            sets.merge(a, b)
    return len({sets[s] for s in targets}) == 1
