"""Scoring predicted synapses against ground truth: the CREMI / Synful protocol.

Two scores, each a one-to-one (Hungarian) matching:

* **sites** — predicted postsynaptic sites against true ones, a pair being
  admissible within ``site_distance_nm``;
* **partners** — predicted connections (rows) against true ones, a pair being
  admissible when both its pre and its post lie within
  ``partner_distance_nm`` and it joins the same two neurons.

Among the matchings with the most admissible pairs the one of least total
cost is taken, so the counts never depend on the order of the rows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from napari_connectome.errors import InputError
from napari_connectome.synapses.table import Labeller, SynapseTable


@dataclass(frozen=True)
class MatchCounts:
    """One matching's counts, and the matched pairs (indices into predicted, true).

    ``precision`` of no predictions and ``recall`` of no truths are 0.
    """

    tp: int
    fp: int
    fn: int
    pairs: np.ndarray = field(repr=False, compare=False)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 0.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0

    @property
    def f_score(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def to_dict(self) -> dict:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "precision": self.precision,
                "recall": self.recall, "f_score": self.f_score}


@dataclass(frozen=True)
class SynapseScores:
    """The result of :func:`evaluate_synapses`.

    Attributes
    ----------
    sites
        Postsynaptic sites; ``pairs`` index the unique post points
        (:func:`post_sites`) of each table.
    partners
        Connections; ``pairs`` index rows of the predicted and true tables.
    site_distance_nm, partner_distance_nm
        The thresholds used.
    """

    sites: MatchCounts
    partners: MatchCounts
    site_distance_nm: float
    partner_distance_nm: float

    def to_dict(self) -> dict:
        """Plain numbers, ready for JSON."""
        return {
            "sites": self.sites.to_dict(),
            "partners": self.partners.to_dict(),
            "site_distance_nm": self.site_distance_nm,
            "partner_distance_nm": self.partner_distance_nm,
        }

    def summary(self) -> str:
        """One line: site and partner precision / recall / F with their counts."""
        s, p = self.sites, self.partners
        return (f"sites P {s.precision:.3f} R {s.recall:.3f} F {s.f_score:.3f} "
                f"(TP {s.tp} FP {s.fp} FN {s.fn}, ≤ {self.site_distance_nm:g} nm); "
                f"partners P {p.precision:.3f} R {p.recall:.3f} F {p.f_score:.3f} "
                f"(TP {p.tp} FP {p.fp} FN {p.fn}, ≤ {self.partner_distance_nm:g} nm)")


def post_sites(table: SynapseTable) -> np.ndarray:
    """The distinct post points of ``table`` (a site shared by rows counts once), ``(k, 3)`` nm."""
    if not len(table):
        return np.zeros((0, 3))
    return np.unique(table.post, axis=0)


def match(cand_pred: np.ndarray, cand_true: np.ndarray, cost: np.ndarray, n_pred: int, n_true: int) -> np.ndarray:
    """A one-to-one matching with the most candidate pairs, and among those the least total cost.

    Parameters
    ----------
    cand_pred, cand_true
        Index pairs ``(cand_pred[k], cand_true[k])`` that may be matched.
    cost
        Their costs (≥ 0).
    n_pred, n_true
        How many items each side has.

    Returns
    -------
    numpy.ndarray
        ``(m, 2)`` int64 matched pairs, sorted by predicted index.
    """
    from scipy.optimize import linear_sum_assignment
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if not len(cand_pred):
        return np.zeros((0, 2), np.int64)
    # Solved per connected component of the candidate graph: each stays small
    # even when the tables hold 10⁴ sites, where one dense matrix would not.
    n = n_pred + n_true
    graph = coo_matrix((np.ones(len(cand_pred)), (cand_pred, cand_true + n_pred)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    edge_comp = comp[cand_pred]
    order = np.argsort(edge_comp, kind="stable")
    bounds = np.flatnonzero(np.diff(edge_comp[order])) + 1
    out = []
    for edges in np.split(order, bounds):
        rows, r_idx = np.unique(cand_pred[edges], return_inverse=True)
        cols, c_idx = np.unique(cand_true[edges], return_inverse=True)
        if len(edges) == 1:
            out.append([[rows[0], cols[0]]])
            continue
        c = cost[edges]
        # A non-candidate costs more than any matching of candidates can, so
        # the solver first maximises the number of candidate pairs; the ones it
        # still has to use are discarded below.
        big = (float(c.max()) + 1.0) * (min(len(rows), len(cols)) + 1)
        dense = np.full((len(rows), len(cols)), big)
        allowed = np.zeros(dense.shape, bool)
        dense[r_idx, c_idx] = c
        allowed[r_idx, c_idx] = True
        ri, ci = linear_sum_assignment(dense)
        keep = allowed[ri, ci]
        out.append(np.stack([rows[ri[keep]], cols[ci[keep]]], axis=1))
    pairs = np.concatenate([np.asarray(p, dtype=np.int64).reshape(-1, 2) for p in out])
    return pairs[np.argsort(pairs[:, 0], kind="stable")]


def _near(a: np.ndarray, b: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs ``(i, j)`` with ``|a[i] - b[j]| ≤ radius`` and their distances."""
    from scipy.spatial import cKDTree

    if not len(a) or not len(b):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    # The tree finds candidates a hair beyond the radius; the test proper is the
    # plain Euclidean distance below, so a pair on the boundary is decided the
    # same way however the tree rounds.
    found = cKDTree(a).query_ball_tree(cKDTree(b), r=radius * (1 + 1e-9) + 1e-9)
    i = np.repeat(np.arange(len(a)), [len(f) for f in found]).astype(np.int64)
    j = np.fromiter((x for f in found for x in f), dtype=np.int64, count=len(i))
    d = np.sqrt(((a[i] - b[j]) ** 2).sum(axis=1))
    keep = d <= radius
    return i[keep], j[keep], d[keep]


def site_candidates(pred: np.ndarray, true: np.ndarray, *, distance_nm: float):
    """Admissible (predicted, true) site pairs and their distance: within ``distance_nm``."""
    return _near(pred, true, distance_nm)


def partner_candidates(pred: SynapseTable, true: SynapseTable, pred_pairs: np.ndarray, *, distance_nm: float):
    """Admissible (predicted, true) row pairs and their cost ``max(pre distance, post distance)``.

    ``pred_pairs`` is ``(n, 2)``: the neuron pair each predicted row is scored with.
    """
    i, j, d_post = _near(pred.post, true.post, distance_nm)
    d_pre = np.sqrt(((pred.pre[i] - true.pre[j]) ** 2).sum(axis=1))
    same = (pred_pairs[i, 0] == true.pre_id[j]) & (pred_pairs[i, 1] == true.post_id[j])
    keep = (d_pre <= distance_nm) & same
    return i[keep], j[keep], np.maximum(d_pre, d_post)[keep]


def _distance(value, name: str) -> float:
    try:
        d = float(value)
    except (TypeError, ValueError):
        raise InputError(name, f"{value!r} is not a distance in nm") from None
    if not np.isfinite(d) or d <= 0:
        raise InputError(name, f"must be a positive distance in nm, got {value!r}")
    return d


def evaluate_synapses(
    pred: SynapseTable,
    gt: SynapseTable,
    *,
    site_distance_nm: float = 200.0,
    partner_distance_nm: float = 400.0,
    gt_labels: Labeller | None = None,
    pred_source: str | os.PathLike | None = None,
    gt_source: str | os.PathLike | None = None,
) -> SynapseScores:
    """Score predicted synapses against ground truth (CREMI / Synful protocol).

    Parameters
    ----------
    pred, gt
        The predicted and the true connections.
    site_distance_nm
        A predicted post site may match a true one this close (nm).
    partner_distance_nm
        A predicted row may match a true one when its pre and its post each
        lie this close to the true row's (nm), and it joins the same neurons.
    gt_labels
        Maps ``(n, 3)`` points in nm to ground-truth neuron ids. When given,
        a predicted row's neurons are those of the ground truth at its pre
        and post points, not its own ``pre_id`` / ``post_id`` (a prediction
        made through another segmentation is scored in the true one).
    pred_source, gt_source
        The files the tables came from, named in errors.

    Returns
    -------
    SynapseScores

    Raises
    ------
    InputError
        An empty table, a true row with a background (0) neuron, a distance
        that is not positive.
    """
    site_d = _distance(site_distance_nm, "site_distance_nm")
    partner_d = _distance(partner_distance_nm, "partner_distance_nm")
    if not len(pred):
        raise InputError(pred_source or "prediction", "holds no synapses: nothing to evaluate")
    if not len(gt):
        raise InputError(gt_source or "ground truth", "holds no synapses: nothing to evaluate against")
    background = int(((gt.pre_id == 0) | (gt.post_id == 0)).sum())
    if background:
        raise InputError(gt_source or "ground truth",
                         f"{background} of {len(gt)} rows have neuron id 0 (background) at the pre or post "
                         "site; every true connection needs two neurons")

    p_sites, t_sites = post_sites(pred), post_sites(gt)
    i, j, d = site_candidates(p_sites, t_sites, distance_nm=site_d)
    pairs = match(i, j, d, len(p_sites), len(t_sites))
    sites = MatchCounts(tp=len(pairs), fp=len(p_sites) - len(pairs), fn=len(t_sites) - len(pairs), pairs=pairs)

    if gt_labels is None:
        neurons = np.stack([pred.pre_id, pred.post_id], axis=1)
    else:
        neurons = np.stack([_labels_at(gt_labels, pred.pre, pred_source),
                            _labels_at(gt_labels, pred.post, pred_source)], axis=1)
    i, j, c = partner_candidates(pred, gt, neurons, distance_nm=partner_d)
    pairs = match(i, j, c, len(pred), len(gt))
    partners = MatchCounts(tp=len(pairs), fp=len(pred) - len(pairs), fn=len(gt) - len(pairs), pairs=pairs)
    return SynapseScores(sites=sites, partners=partners, site_distance_nm=site_d, partner_distance_nm=partner_d)


def _labels_at(labels: Labeller, points: np.ndarray, source) -> np.ndarray:
    ids = np.asarray(labels(points)).reshape(-1)
    if len(ids) != len(points):
        raise InputError(source or "gt_labels", f"the ground-truth labels gave {len(ids)} ids for {len(points)} points")
    if ids.dtype.kind == "i" and (ids < 0).any():
        raise InputError(source or "gt_labels", "the ground-truth labels gave negative neuron ids")
    return ids.astype(np.uint64)
