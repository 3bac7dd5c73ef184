"""Learned agglomeration: an edge classifier trained from ground truth as the merge priority.

gala's method (Nunez-Iglesias et al. 2013, "learning by agglomeration"), on
our region adjacency graph:

* **Features** of the boundary between two regions (each a set of merged
  supervoxels), all recomputed after every merge from exact per-edge sums:
  face count, sum, min, max and a histogram of :data:`LEARN_BINS` bins of the
  boundary signal are *added* when two regions merge (the RAG's 256-bin
  histograms folded to 64 bins, 512 bytes per edge). From them:
  :data:`FEATURE_NAMES` -- mean (exact), min, max (exact), quantiles
  q10..q90 and standard deviation (from the histogram), the fraction of faces
  above 0.5, log contact area and the log sizes of the smaller and larger
  region.
* **Labels** ("assignment" mode): a region belongs to the ground-truth body
  covering most of its voxels, gt label 0 ignored; a boundary is *real*
  (label 1, do not merge) when both regions belong to different bodies.
  Regions with no labelled voxel give no example.
* **Learning by agglomeration** (gala's ``learn_agglomerate``, strict mode):
  epoch 0 labels every flat RAG edge; each further epoch agglomerates the
  training volume with the classifier learned so far as the priority and
  labels every boundary the policy proposes, *performing only the correct
  merges*, so the examples come from the states an agglomeration actually
  visits. Examples of all epochs are pooled (duplicates dropped) and the
  classifier refitted after each epoch; :data:`EPOCHS` = 3 in all.
* **Agglomeration** (:func:`agglomerate_learned`): merge the pair with the
  lowest P(boundary is real), recompute the features of every boundary of the
  merged region, repeat until no two regions touch. The loop is the compiled
  one of mean-boundary agglomeration
  (:class:`~napari_connectome.graph.merge_loop.RescoredLoop`); only the
  features and the classifier run in Python, once per merge. Scores are the
  running maximum of P so the :class:`~.MergeTree` is monotone: ``mapping_at(T)``
  stops at the first merge whose P exceeds ``T``, exactly gala's
  ``agglomerate(T)``.

Protocol, fixed before any test figure was computed
(:func:`train_edge_classifier`):

* The **threshold is 0.5** (:data:`THRESHOLD`): even odds that the boundary
  is real, what gala uses. It is not tuned.
* The **classifier is chosen on the training volume only**, by spatial
  2-fold cross-validation: supervoxels are split by the x coordinate of their
  centroid (low half / high half); for each candidate of
  :func:`candidate_classifiers`, learn on one half's subgraph, agglomerate the
  other half at 0.5 and measure VI split + merge there (gt 0 ignored); the
  candidate with the lowest mean over both directions wins (ties: the first
  listed). It is then learned again on the whole training graph.
* Every random choice is seeded by ``seed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from napari_connectome.arrays import distinct
from napari_connectome.errors import InputError
from napari_connectome.graph.agglomerate import MergeTree
from napari_connectome.graph.rag import RegionGraph
from napari_connectome.progress import NullProgress, Progress

LEARN_BINS = 64
EPOCHS = 3
THRESHOLD = 0.5
FEATURE_NAMES = (
    "mean", "min", "max", "q10", "q25", "q50", "q75", "q90", "std", "frac_above_half",
    "log_area", "log_size_min", "log_size_max",
)
_QUANTILES = (0.10, 0.25, 0.50, 0.75, 0.90)


@dataclass
class EdgeClassifier:
    """A fitted classifier of boundaries: P(the boundary between two regions is real).

    Attributes
    ----------
    estimator
        The fitted scikit-learn estimator (classes 0 = merge, 1 = real boundary).
    name
        Which candidate it is (see :func:`candidate_classifiers`).
    n_examples
        Training examples after pooling the epochs and dropping duplicates.
    selection
        Candidate name -> mean cross-validated VI split + merge on train.
    """

    estimator: object
    name: str
    n_examples: int = 0
    selection: dict[str, float] = field(default_factory=dict)
    feature_names: tuple[str, ...] = FEATURE_NAMES

    def predict_boundary(self, x: np.ndarray) -> np.ndarray:
        """P(real boundary) for each row of the ``(M, F)`` feature matrix."""
        if x.shape[0] == 0:
            return np.empty(0, np.float64)
        proba = self.estimator.predict_proba(x)
        col = int(np.flatnonzero(self.estimator.classes_ == 1)[0])
        return proba[:, col].astype(np.float64)


def candidate_classifiers(seed: int = 0) -> dict[str, object]:
    """The classifiers :func:`train_edge_classifier` chooses from (unfitted, seeded)."""
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "logistic, standardised, C=1": make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000)),
        "logistic, standardised, C=0.1": make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=5000)),
        # gala's DefaultRandomForest.
        "random forest (gala: 100 trees, entropy, depth 20, no bootstrap)": RandomForestClassifier(
            n_estimators=100, criterion="entropy", max_depth=20, bootstrap=False, random_state=seed, n_jobs=1),
        "random forest (200 trees, leaf 5)": RandomForestClassifier(
            n_estimators=200, min_samples_leaf=5, random_state=seed, n_jobs=1),
        "gradient boosting (100 trees, depth 2)": GradientBoostingClassifier(
            n_estimators=100, max_depth=2, random_state=seed),
    }


# ---------------------------------------------------------------- features
def _features(count, total, vmin, vmax, hist, size_a, size_b) -> np.ndarray:
    """``(M, F)`` float64 features of M boundaries from their merged statistics."""
    count = np.asarray(count, np.float64)
    hist = np.asarray(hist, np.float64).reshape(count.size, LEARN_BINS)
    vmin, vmax = np.asarray(vmin, np.float64), np.asarray(vmax, np.float64)
    mean = np.asarray(total, np.float64) / np.maximum(count, 1.0)
    cum = np.cumsum(hist, axis=1)
    rows = np.arange(count.size)
    quantiles = []
    for q in _QUANTILES:
        target = q * cum[:, -1]
        b = np.minimum((cum < target[:, None]).sum(axis=1), LEARN_BINS - 1)
        before = np.where(b > 0, cum[rows, np.maximum(b - 1, 0)], 0.0)
        c = np.maximum(hist[rows, b], 1.0)
        value = (b + np.clip((target - before) / c, 0.0, 1.0)) / LEARN_BINS
        quantiles.append(np.clip(value, vmin, vmax))
    centres = (np.arange(LEARN_BINS) + 0.5) / LEARN_BINS
    var = (hist * (centres[None, :] - mean[:, None]) ** 2).sum(axis=1) / np.maximum(count, 1.0)
    above = hist[:, LEARN_BINS // 2:].sum(axis=1) / np.maximum(count, 1.0)
    la, lb = np.log(np.asarray(size_a, np.float64)), np.log(np.asarray(size_b, np.float64))
    return np.column_stack([mean, vmin, vmax, *quantiles, np.sqrt(var), above, np.log(np.maximum(count, 1.0)),
                            np.minimum(la, lb), np.maximum(la, lb)])


def _edge_stats(rag: RegionGraph):
    """Per RAG edge: count, sum, min, max and the folded ``(E, LEARN_BINS)`` histogram."""
    if rag.histogram is None:
        raise InputError("graph", "the region graph has no per-edge histograms (needed for learned agglomeration)")
    e = rag.n_edges
    count = rag.contact_area.astype(np.float64)
    total = rag.features["mean"].astype(np.float64) * count
    hist = np.zeros((e, LEARN_BINS), np.int64)
    h_edge, h_bin, h_count = rag.histogram
    np.add.at(hist, (h_edge.astype(np.int64), h_bin.astype(np.int64) * LEARN_BINS // rag.n_bins), h_count)
    return count, total, rag.features["min"].astype(np.float64), rag.features["max"].astype(np.float64), hist


def flat_features(rag: RegionGraph) -> np.ndarray:
    """``(E, F)`` features of every RAG edge (each supervoxel its own region)."""
    count, total, vmin, vmax, hist = _edge_stats(rag)
    ends = rag.edge_endpoints()
    sizes = rag.node_sizes.astype(np.float64)
    return _features(count, total, vmin, vmax, hist, sizes[ends[:, 0]], sizes[ends[:, 1]])


# ---------------------------------------------------------------- ground truth
def supervoxel_bodies(rag: RegionGraph, supervoxels, gt) -> list[dict[int, int]]:
    """Per node: ``{gt body: voxels}`` over labelled voxels (gt 0 ignored)."""
    from napari_connectome.metrics import contingency_table

    table = contingency_table(supervoxels, gt)
    pos = rag.node_index(table.seg.astype(np.uint64))
    bodies: list[dict[int, int]] = [{} for _ in range(rag.n_nodes)]
    for p, g, c in zip(pos.tolist(), table.gt.tolist(), table.count.tolist(), strict=True):
        if p >= 0:
            bodies[p][int(g)] = bodies[p].get(int(g), 0) + int(c)
    return bodies


def _main_body(counts: dict[int, int]) -> int | None:
    if not counts:
        return None
    # Most voxels; ties to the smallest id, for determinism.
    return min(counts, key=lambda g: (-counts[g], g))


# ---------------------------------------------------------------- the agglomeration loop
def _agglomerate(rag: RegionGraph, classifier: EdgeClassifier, bodies: list[dict[int, int]] | None,
                 progress: Progress):
    """Merge by lowest P(boundary). With ``bodies``: gala's strict learning mode.

    The loop is the compiled one of mean-boundary agglomeration
    (:class:`~napari_connectome.graph.merge_loop.RescoredLoop`): it pops the
    lowest P, merges (adding the boundary statistics of the two regions
    towards each common neighbour) and hands back the merged region's
    boundaries, which are featurised and rescored here in one batch. The
    merges, their order and P are those of a loop over Python dicts and a
    heap of ``(P, stamp)`` (stamps in the order P were computed; ties
    therefore go to the boundary scored first), the region with fewer
    neighbours merged into the other. ``bodies`` is updated in place.

    Returns the ``(K, 2)`` merges in linkage numbering, their ``(K,)`` P, and
    (strict mode) the features and labels of every proposed boundary.
    """
    from napari_connectome.graph.merge_loop import RescoredLoop

    n = rag.n_nodes
    count, total, vmin, vmax, hist = _edge_stats(rag)
    ends = rag.edge_endpoints()
    sizes = rag.node_sizes.astype(np.float64)
    x_edge = flat_features(rag)  # strict mode: the features each boundary was last scored on
    p0 = classifier.predict_boundary(x_edge)
    main = None
    codes: dict[int, int] = {}
    if bodies is not None:
        def code(counts):
            body = _main_body(counts)
            return -1 if body is None else codes.setdefault(body, len(codes))

        main = np.array([code(c) for c in bodies], np.int64)
    loop = RescoredLoop(ends[:, 0], ends[:, 1], count, total, vmin, vmax, hist, p0, n, main=main)
    del count, total, vmin, vmax, hist
    push_e, push_p = np.empty(0, np.int64), np.empty(0, np.float64)
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    progress.start(max(n - 1, 1), "learned agglomeration")
    try:
        while True:
            # Strict mode: a wrong proposal is an example, not a merge; the
            # boundary comes back rescored once either side changes.
            a, b, edges, nbrs, examples, labels = loop.step(push_e, push_p)
            if examples.size:
                xs.append(x_edge[examples])
                ys.append(labels)
            if a < 0:
                break
            sizes[a] += sizes[b]
            if bodies is not None:
                for g, c in bodies[b].items():
                    bodies[a][g] = bodies[a].get(g, 0) + c
                main[a] = code(bodies[a])
            # The merged region's size changed, so every one of its boundaries
            # has new features: rescore them all in one batch.
            push_e, push_p = edges, np.empty(0, np.float64)
            if edges.size:
                x = _features(loop.count[edges], loop.total[edges], loop.vmin[edges], loop.vmax[edges],
                              loop.hist[edges], np.full(edges.size, sizes[a]), sizes[nbrs])
                push_p = classifier.predict_boundary(x)
                if bodies is not None:
                    x_edge[edges] = x
            progress.advance(1)
    finally:
        progress.close()
    merges, scores = loop.merges()
    x_out = np.concatenate(xs) if xs else np.empty((0, len(FEATURE_NAMES)), np.float64)
    y_out = np.concatenate(ys) if ys else np.empty(0, np.int64)
    return merges, scores, x_out, y_out


def agglomerate_learned(rag: RegionGraph, classifier: EdgeClassifier, *,
                        progress: Progress | None = None) -> MergeTree:
    """Agglomerate by the classifier's P(boundary is real), recording every merge.

    Parameters
    ----------
    rag
        The region adjacency graph (with its per-edge histograms).
    classifier
        From :func:`train_edge_classifier`.
    progress
        One step per merge.

    Returns
    -------
    MergeTree
        ``feature="learned"``; scores are the running maximum of P, so
        ``mapping_at(0.5)`` is every merge made before the first one with
        P > 0.5 (gala's ``agglomerate(0.5)``).
    """
    merges, scores, _, _ = _agglomerate(rag, classifier, None, progress or NullProgress())
    monotone = np.maximum.accumulate(scores) if scores.size else scores
    return MergeTree(node_ids=rag.node_ids.copy(), merges=merges, scores=monotone,
                     edges=rag.edges.copy(), feature="learned")


# ---------------------------------------------------------------- training
def _fit(estimator, x: np.ndarray, y: np.ndarray, name: str) -> EdgeClassifier:
    from sklearn.base import clone

    data = np.unique(np.column_stack([x, y]), axis=0)  # gala: unique examples
    x, y = data[:, :-1], data[:, -1].astype(np.int64)
    if distinct(y).size < 2:
        raise InputError("ground truth", "every training boundary has the same label; "
                         "the classifier needs both merges and real boundaries")
    est = clone(estimator)
    est.fit(x, y)
    return EdgeClassifier(estimator=est, name=name, n_examples=int(y.size))


def learn_by_agglomeration(rag: RegionGraph, bodies: list[dict[int, int]], estimator, *, name: str = "",
                           epochs: int = EPOCHS) -> EdgeClassifier:
    """gala's ``learn_agglomerate`` (strict, assignment labels): flat epoch, then agglomeration epochs."""
    main = np.array([-1 if (m := _main_body(c)) is None else m for c in bodies], np.int64)
    ends = rag.edge_endpoints()
    known = (main[ends[:, 0]] >= 0) & (main[ends[:, 1]] >= 0)
    xs = [flat_features(rag)[known]]
    ys = [(main[ends[known, 0]] != main[ends[known, 1]]).astype(np.int64)]
    clf = _fit(estimator, np.concatenate(xs), np.concatenate(ys), name)
    for _ in range(epochs - 1):
        _, _, x, y = _agglomerate(rag, clf, [dict(c) for c in bodies], NullProgress())
        xs.append(x)
        ys.append(y)
        clf = _fit(estimator, np.concatenate(xs), np.concatenate(ys), name)
    return clf


def subgraph(rag: RegionGraph, keep: np.ndarray) -> RegionGraph:
    """The graph induced by the nodes where ``keep`` (``(N,)`` bool) is true."""
    ends = rag.edge_endpoints()
    ekeep = keep[ends[:, 0]] & keep[ends[:, 1]]
    hist = None
    if rag.histogram is not None:
        h_edge, h_bin, h_count = rag.histogram
        new_index = np.cumsum(ekeep) - 1
        m = ekeep[h_edge]
        hist = (new_index[h_edge[m]].astype(h_edge.dtype), h_bin[m], h_count[m])
    return RegionGraph(
        node_ids=rag.node_ids[keep], node_sizes=rag.node_sizes[keep], edges=rag.edges[ekeep],
        contact_area=rag.contact_area[ekeep], features={k: v[ekeep] for k, v in rag.features.items()},
        signal=rag.signal, voxel_size=rag.voxel_size, histogram=hist, n_bins=rag.n_bins, notes=list(rag.notes),
    )


def _centroid_x(rag: RegionGraph, supervoxels: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    x = np.broadcast_to(np.arange(supervoxels.shape[-1], dtype=np.float64), supervoxels.shape)
    sums = ndimage.sum_labels(x, supervoxels, rag.node_ids.astype(supervoxels.dtype))
    return np.asarray(sums) / rag.node_sizes


def train_edge_classifier(rag: RegionGraph, gt, *, supervoxels, seed: int = 0,
                          candidates: dict[str, object] | None = None) -> EdgeClassifier:
    """Choose and learn the boundary classifier on a training volume (train data only).

    Parameters
    ----------
    rag
        The training volume's region adjacency graph.
    gt
        Its dense ground truth (0 = unlabelled, ignored), same shape as ``supervoxels``.
    supervoxels
        The supervoxel volume the graph was built from (NumPy array).
    seed
        Seeds every random choice (forests, boosting).
    candidates
        Name -> unfitted estimator; :func:`candidate_classifiers` by default.

    Returns
    -------
    EdgeClassifier
        The candidate with the lowest spatially cross-validated VI at
        :data:`THRESHOLD` (see the module docstring), learned on the whole graph.
    """
    from napari_connectome.metrics import Contingency, contingency_table, vi_from_table

    supervoxels, gt = np.asarray(supervoxels), np.asarray(gt)
    if supervoxels.shape != gt.shape:
        raise InputError("ground truth", f"shape {gt.shape} does not match the supervoxels' {supervoxels.shape}")
    candidates = candidate_classifiers(seed) if candidates is None else candidates
    bodies = supervoxel_bodies(rag, supervoxels, gt)
    table = contingency_table(supervoxels, gt)
    cx = _centroid_x(rag, supervoxels)
    low = cx < supervoxels.shape[-1] / 2
    selection: dict[str, float] = {}
    if len(candidates) > 1:
        for name, est in candidates.items():
            vis = []
            for fit_half in (low, ~low):
                val_half = ~fit_half
                clf = learn_by_agglomeration(subgraph(rag, fit_half), [b for b, k in zip(bodies, fit_half, strict=True) if k],
                                             est, name=name)
                val = subgraph(rag, val_half)
                tree = agglomerate_learned(val, clf)
                inside = np.isin(table.seg, val.node_ids.astype(table.seg.dtype))
                part = Contingency(table.gt[inside], table.seg[inside], table.count[inside])
                vis.append(sum(vi_from_table(part.remap(*tree.mapping_at(THRESHOLD)))))
            selection[name] = float(np.mean(vis))
        best = min(selection, key=lambda k: (selection[k], list(candidates).index(k)))
    else:
        best = next(iter(candidates))
    clf = learn_by_agglomeration(rag, bodies, candidates[best], name=best)
    clf.selection = selection
    return clf
