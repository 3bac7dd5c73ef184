"""Synapse rows as yes/no questions for a proofreader, and the features a classifier learns their answers from.

Every detected or imported row in force that no one has reviewed is a
question about one pre→post connection, drawn at its post point with both
neurons and both points:

* **"Synapse here?"** — is there a synapse from this pre neuron onto this post
  neuron here? (the site and the partner in one look);
* **"Is this the partner?"** — asked instead when another row of the same
  synapse (same batch and synapse id: one T-bar) was already confirmed, so
  the site is settled and only this partner is in question.

A *yes* keeps the row (a reviewed copy that outlives re-detection), a *no*
takes it out (:meth:`~napari_connectome.synapses.store.SynapseStore.review`).

The features are what the table and the neurons say about a row, cheap to
compute for every row after each answer: the network's score, the pre→post
distance, the size of its synapse (partners) and its rank there, how close
the nearest row of the *reversed* pair is (a detector that confuses the T-bar
with a PSD reports both directions: one of them is wrong), how crowded the
place is, whether the synapse already has a confirmed partner, and the
**side contrast**: how much darker the pre neuron is just behind the pre
point than the post neuron just behind the post point (the vesicle cloud
lies behind a T-bar, nothing comparable behind a PSD). On the synthetic test
volume 303 the pre side is the darker one for 72 % of the right detections
and 37 % of the reversed ones: a cue the classifier can weigh, not a rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from napari_connectome.synapses.table import SynapseTable

#: Feature columns, in matrix order.
FEATURES = ("log_score", "length_nm", "partners", "score_rank", "reversed_nm", "neighbours", "confirmed_partner",
            "side_contrast")
QUESTIONS = {"synapse": "Synapse here?", "partner": "Is this the partner?"}
#: Rows whose post points lie within this distance are neighbours (the usual matching distance).
NEIGHBOUR_NM = 500.0
#: Side contrast: balls of this radius, centred this far behind each point (away from the other), nm.
SIDE_RADIUS_NM = 80.0
SIDE_BEHIND_NM = 60.0


@dataclass(frozen=True)
class SynapseCandidate:
    """One unreviewed synapse row, as a question.

    Attributes
    ----------
    row, batch
        The row's number and batch in the project's synapse store.
    kind
        ``"synapse"`` or ``"partner"`` (see the module notes).
    pre, post
        Points (z, y, x) in nm.
    pre_id, post_id
        The neurons at those points now.
    score
        The detector's score (µm³ of mask; 1 for imported rows without one).
    features
        :data:`FEATURES` → value (NaN where undefined).
    """

    row: int
    batch: int
    kind: str
    pre: tuple[float, float, float]
    post: tuple[float, float, float]
    pre_id: int
    post_id: int
    score: float
    features: dict[str, float] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"syn-{self.row}"

    @property
    def question(self) -> str:
        return QUESTIONS[self.kind]

    @property
    def segments(self) -> tuple[int, ...]:
        """Post neuron first (the one the view is centred in), then the pre neuron."""
        return (int(self.post_id), int(self.pre_id))

    @property
    def location_nm(self) -> tuple[float, float, float]:
        return self.post


def side_box(pre, post, *, voxel_size, offset) -> tuple[slice, slice, slice]:
    """Level-0 voxel slices holding both side balls of a row (unclipped: clip to the volume before reading)."""
    vs, off = np.asarray(voxel_size, float), np.asarray(offset, float)
    reach = SIDE_BEHIND_NM + SIDE_RADIUS_NM
    lo = np.floor((np.minimum(pre, post) - reach - off) / vs).astype(int)
    hi = np.ceil((np.maximum(pre, post) + reach - off) / vs).astype(int) + 1
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def side_contrast(raw: np.ndarray, labels: np.ndarray, *, origin_nm, voxel_size, pre, post, pre_id: int,
                  post_id: int) -> float:
    """Mean grey of the pre neuron behind the pre point minus that of the post neuron behind the post point.

    Parameters
    ----------
    raw, labels
        A crop (z, y, x) holding both balls (:func:`side_box`), labels as neuron ids.
    origin_nm
        World position of the crop's voxel (0, 0, 0) centre.
    voxel_size
        nm.
    pre, post
        The row's points, nm.
    pre_id, post_id
        The neurons now.

    Returns
    -------
    float
        Grey levels (negative: the pre side is darker); NaN when a ball holds no voxel of its neuron.
    """
    vs = np.asarray(voxel_size, float)
    centres = np.asarray(origin_nm, float) + np.stack(np.indices(raw.shape), axis=-1) * vs
    pre, post = np.asarray(pre, float), np.asarray(post, float)
    u = pre - post
    u = u / max(float(np.linalg.norm(u)), 1e-9)
    means = []
    for point, sign, neuron in ((pre, 1.0, pre_id), (post, -1.0, post_id)):
        centre = point + sign * SIDE_BEHIND_NM * u
        inside = (np.linalg.norm(centres - centre, axis=-1) <= SIDE_RADIUS_NM) & (labels == neuron)
        if not inside.any():
            return float("nan")
        means.append(float(raw[inside].mean()))
    return means[0] - means[1]


def synapse_features(table: SynapseTable, batches: np.ndarray, confirmed: set[tuple[int, int]],
                     contrast: np.ndarray | None = None) -> np.ndarray:
    """``(n, len(FEATURES))`` features of every row of ``table`` (neuron ids as they are now).

    Parameters
    ----------
    table
        Rows in force, with current neuron ids.
    batches
        Each row's batch (a synapse id is unique within one batch).
    confirmed
        ``(batch, synapse_id)`` of the synapses with a row confirmed *yes*.
    contrast
        Each row's :func:`side_contrast` (None: not measured, NaN).
    """
    from scipy.spatial import cKDTree

    n = len(table)
    out = np.full((n, len(FEATURES)), np.nan)
    if n == 0:
        return out
    batches = np.asarray(batches, dtype=np.int64).reshape(-1)
    out[:, 0] = np.log10(np.maximum(table.score.astype(np.float64), 1e-9))
    out[:, 1] = np.linalg.norm(table.pre - table.post, axis=1)
    group = np.stack([batches, table.synapse_id], axis=1)
    _, inverse, counts = np.unique(group, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    out[:, 2] = counts[inverse]
    # rank of the score within the synapse: 0 for its best row
    order = np.lexsort((-table.score, inverse))
    rank = np.empty(n)
    start = 0
    for g_count in np.bincount(inverse[order]):
        rank[order[start:start + g_count]] = np.arange(g_count)
        start += g_count
    out[:, 3] = rank
    # nearest row of the reversed neuron pair (its post near this row's post)
    by_pair: dict[tuple[int, int], list[int]] = {}
    for k, pair in enumerate(zip(table.pre_id.tolist(), table.post_id.tolist(), strict=True)):
        by_pair.setdefault(pair, []).append(k)
    for k in range(n):
        rev = by_pair.get((int(table.post_id[k]), int(table.pre_id[k])))
        if rev and table.pre_id[k] != table.post_id[k]:
            out[k, 4] = float(np.min(np.linalg.norm(table.post[rev] - table.post[k], axis=1)))
    tree = cKDTree(table.post)
    out[:, 5] = np.array([len(x) - 1 for x in tree.query_ball_point(table.post, NEIGHBOUR_NM)])
    out[:, 6] = [1.0 if (int(b), int(s)) in confirmed else 0.0 for b, s in zip(batches, table.synapse_id,
                                                                                strict=True)]
    if contrast is not None:
        out[:, 7] = np.asarray(contrast, dtype=np.float64).reshape(n)
    return out


def review_candidates(rows: np.ndarray, batches: np.ndarray, table: SynapseTable, *, reviewable: np.ndarray,
                      confirmed: set[tuple[int, int]], contrast: np.ndarray | None = None) -> list[SynapseCandidate]:
    """The questions: one per reviewable row, features computed over all rows in force.

    Parameters
    ----------
    rows, batches, table
        The store's rows in force (:meth:`~napari_connectome.synapses.store.SynapseStore.current`
        with ``with_rows=True``), neuron ids read now.
    reviewable
        Boolean per row: rows that may be asked about (detected or imported, not yet reviewed); of
        those, only rows joining two neurons now are asked.
    confirmed, contrast
        As :func:`synapse_features`.
    """
    x = synapse_features(table, batches, confirmed, contrast)
    # A row inside one neuron, or on background, is no connection now (an edit may make it one again).
    connects = (table.pre_id != table.post_id) & (table.pre_id > 0) & (table.post_id > 0)
    out = []
    for k in np.flatnonzero(np.asarray(reviewable, dtype=bool) & connects):
        kind = "partner" if x[k, 6] > 0 else "synapse"
        out.append(SynapseCandidate(
            row=int(rows[k]), batch=int(batches[k]), kind=kind,
            pre=tuple(float(v) for v in table.pre[k]), post=tuple(float(v) for v in table.post[k]),
            pre_id=int(table.pre_id[k]), post_id=int(table.post_id[k]), score=float(table.score[k]),
            features=dict(zip(FEATURES, (float(v) for v in x[k]), strict=True))))
    return out


def feature_rows(candidates: list[SynapseCandidate]) -> np.ndarray:
    """``(n, len(FEATURES))`` matrix of the candidates' features."""
    return np.array([[c.features[f] for f in FEATURES] for c in candidates], dtype=np.float64).reshape(-1,
                                                                                                       len(FEATURES))
