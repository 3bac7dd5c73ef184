"""Learned (gala-style) agglomeration: exact merged features, determinism, gala-fib train-only protocol."""

from __future__ import annotations

import heapq

import h5py
import numpy as np
import pytest

from napari_connectome.errors import InputError
from napari_connectome.graph import agglomerate, build_rag
from napari_connectome.graph.learned import (
    FEATURE_NAMES,
    THRESHOLD,
    EdgeClassifier,
    _agglomerate,
    _edge_stats,
    _features,
    _main_body,
    agglomerate_learned,
    flat_features,
    learn_by_agglomeration,
    supervoxel_bodies,
    train_edge_classifier,
)
from napari_connectome.graph.rag import RegionGraph
from napari_connectome.metrics import contingency_table, vi_from_table
from napari_connectome.progress import Progress
from napari_connectome.volume import from_array


def load(shared_data, split):
    def read(name):
        with h5py.File(shared_data / "gala-fib" / f"{split}-{name}.h5", "r") as f:
            return f["stack"][...]

    return read("ws.lzf"), read("p1.lzf"), read("gt.lzf")


def rag_of(ws, p):
    return build_rag(from_array(ws, kind="labels"), from_array(p))


def small_forest():
    from sklearn.ensemble import RandomForestClassifier

    return {"forest": RandomForestClassifier(n_estimators=20, min_samples_leaf=3, random_state=0, n_jobs=1)}


def test_merged_features_equal_those_of_the_merged_volume(shared_data):
    ws, p, _ = load(shared_data, "train")
    ws, p = ws[:20, :50, :80], p[:20, :50, :80]
    rag = rag_of(ws, p)
    ends = rag.edge_endpoints()
    # Two adjacent supervoxels with a common neighbour: the merged boundary
    # is built from two RAG edges.
    for a, b in ends.tolist():
        common = np.intersect1d(rag.neighbors(rag.node_ids[a]), rag.neighbors(rag.node_ids[b]))
        if common.size:
            break
    else:
        pytest.fail("no triangle in the crop")
    ida, idb, idc = rag.node_ids[a], rag.node_ids[b], common[0]
    count, total, vmin, vmax, hist = _edge_stats(rag)
    i, j = rag.edge_index(ida, idc), rag.edge_index(idb, idc)
    c = int(rag.node_index([idc])[0])
    merged = _features([count[i] + count[j]], [total[i] + total[j]], [min(vmin[i], vmin[j])],
                       [max(vmax[i], vmax[j])], (hist[i] + hist[j])[None],
                       [rag.node_sizes[a] + rag.node_sizes[b]], [rag.node_sizes[c]])
    ws2 = np.where(ws == idb, ida, ws).astype(ws.dtype)
    rag2 = rag_of(ws2, p)
    expected = flat_features(rag2)[rag2.edge_index(min(ida, idc), max(ida, idc))]
    np.testing.assert_allclose(merged[0], expected, rtol=1e-5, atol=1e-6)


def test_same_seed_same_tree(shared_data):
    ws, p, gt = load(shared_data, "train")
    rag = rag_of(ws, p)
    trees = [agglomerate_learned(rag, train_edge_classifier(rag, gt, supervoxels=ws, seed=0,
                                                            candidates=small_forest()))
             for _ in range(2)]
    np.testing.assert_array_equal(trees[0].merges, trees[1].merges)
    np.testing.assert_array_equal(trees[0].scores, trees[1].scores)
    assert np.all(np.diff(trees[0].scores) >= 0)
    assert trees[0].feature == "learned"
    assert 0 < trees[0].n_merges_at(THRESHOLD) < rag.n_nodes - 1


def test_graph_without_histograms_is_refused(shared_data):
    ws, p, gt = load(shared_data, "train")
    rag = rag_of(ws, p)
    clf = train_edge_classifier(rag, gt, supervoxels=ws, candidates=small_forest())
    rag.histogram = None
    with pytest.raises(InputError, match="histograms"):
        agglomerate_learned(rag, clf)


def test_gala_fib_train_only_protocol(shared_data):
    """The full protocol: classifier chosen and learned on train, P = 0.5, one evaluation on test."""
    (ws_tr, p_tr, gt_tr), (ws_te, p_te, gt_te) = load(shared_data, "train"), load(shared_data, "test")
    rag_tr, rag_te = rag_of(ws_tr, p_tr), rag_of(ws_te, p_te)
    clf = train_edge_classifier(rag_tr, gt_tr, supervoxels=ws_tr, seed=0)
    table_te = contingency_table(ws_te, gt_te)
    split, merge = vi_from_table(table_te.remap(*agglomerate_learned(rag_te, clf).mapping_at(THRESHOLD)))

    # Baseline: mean-boundary agglomeration at the threshold chosen on train.
    table_tr = contingency_table(ws_tr, gt_tr)
    tree_tr = agglomerate(rag_tr)
    thresholds = np.round(np.arange(0, 1.001, 0.01), 6)
    train_vi = [sum(vi_from_table(table_tr.remap(*tree_tr.mapping_at(t)))) for t in thresholds]
    t_train = thresholds[int(np.argmin(train_vi))]
    base = sum(vi_from_table(table_te.remap(*agglomerate(rag_te).mapping_at(t_train))))

    assert split + merge < base - 0.1
    # Measured (benchmarks/gala_threshold.py): test VI 0.231 + 0.551 = 0.782,
    # baseline 0.932. The acceptance target (<= 0.52) is NOT reached: p1 is
    # calibrated differently on test than on train, and merge errors dominate.
    assert split + merge == pytest.approx(0.782, abs=0.01)


# ------------------------------------------------------------------ the compiled loop against the Python loop
# Edge record fields (a list shared by both directions of the adjacency).
_COUNT, _SUM, _MIN, _MAX, _HIST, _STAMP, _X = range(7)


def reference_agglomerate(rag: RegionGraph, classifier: EdgeClassifier, bodies: list[dict[int, int]] | None,
                 progress: Progress):
    """The Python loop learned agglomeration used before the compiled one (dicts + heapq), kept as the reference.

    Merge by lowest P(boundary). With ``bodies``: gala's strict learning mode.

    Returns the merges ``(a, b)`` in linkage numbering, their P, and (strict
    mode) the features and labels of every proposed boundary.
    """
    n = rag.n_nodes
    count, total, vmin, vmax, hist = _edge_stats(rag)
    ends = rag.edge_endpoints()
    sizes = rag.node_sizes.astype(np.float64).tolist()
    adj: list[dict | None] = [{} for _ in range(n)]
    stamp = 0
    heap = []
    x0 = flat_features(rag)
    p0 = classifier.predict_boundary(x0)
    for i, (a, b) in enumerate(ends.tolist()):
        rec = [count[i], total[i], vmin[i], vmax[i], hist[i], stamp, x0[i]]
        adj[a][b] = rec
        adj[b][a] = rec
        heap.append((float(p0[i]), stamp, a, b))
        stamp += 1
    heapq.heapify(heap)
    main = [_main_body(c) for c in bodies] if bodies is not None else None
    cluster = list(range(n))
    merged: list[tuple[int, int]] = []
    scores: list[float] = []
    xs: list[np.ndarray] = []
    ys: list[int] = []
    progress.start(max(n - 1, 1), "learned agglomeration")
    try:
        while heap:
            s, st, a, b = heapq.heappop(heap)
            adj_a, adj_b = adj[a], adj[b]
            if adj_a is None or adj_b is None:
                continue
            rec = adj_a.get(b)
            if rec is None or rec[_STAMP] != st:
                continue  # stale: the boundary was rescored since
            if bodies is not None:
                ma, mb = main[a], main[b]
                if ma is not None and mb is not None:
                    xs.append(rec[_X])
                    ys.append(int(ma != mb))
                    if ma != mb:
                        # Strict mode: a wrong proposal is an example, not a
                        # merge; the boundary comes back rescored once either
                        # side changes.
                        continue
            if len(adj_a) < len(adj_b):
                a, b, adj_a, adj_b = b, a, adj_b, adj_a
            merged.append((cluster[a], cluster[b]))
            scores.append(s)
            cluster[a] = n + len(scores) - 1
            sizes[a] += sizes[b]
            if bodies is not None:
                for g, c in bodies[b].items():
                    bodies[a][g] = bodies[a].get(g, 0) + c
                main[a] = _main_body(bodies[a])
            del adj_a[b]
            del adj_b[a]
            for c, eb in adj_b.items():
                adj_c = adj[c]
                del adj_c[b]
                ea = adj_a.get(c)
                if ea is None:
                    adj_a[c] = eb
                    adj_c[a] = eb
                    continue
                ea[_COUNT] += eb[_COUNT]
                ea[_SUM] += eb[_SUM]
                ea[_MIN] = min(ea[_MIN], eb[_MIN])
                ea[_MAX] = max(ea[_MAX], eb[_MAX])
                ea[_HIST] = ea[_HIST] + eb[_HIST]
            adj[b] = None
            # The merged region's size changed, so every one of its boundaries
            # has new features: rescore them all in one batch.
            nbrs = list(adj_a)
            if nbrs:
                recs = [adj_a[c] for c in nbrs]
                x = _features([r[_COUNT] for r in recs], [r[_SUM] for r in recs], [r[_MIN] for r in recs],
                              [r[_MAX] for r in recs], np.stack([r[_HIST] for r in recs]),
                              [sizes[a]] * len(nbrs), [sizes[c] for c in nbrs])
                p = classifier.predict_boundary(x)
                for c, r, xi, pi in zip(nbrs, recs, x, p.tolist(), strict=True):
                    r[_STAMP] = stamp
                    r[_X] = xi
                    heapq.heappush(heap, (pi, stamp, a, c))
                    stamp += 1
            progress.advance(1)
    finally:
        progress.close()
    x_out = np.asarray(xs, np.float64).reshape(-1, len(FEATURE_NAMES))
    return merged, scores, x_out, np.asarray(ys, np.int64)


class Recorder:
    """A deterministic stand-in classifier that records every feature batch it scores."""

    def __init__(self, rule):
        self.rule, self.batches = rule, []

    def predict_boundary(self, x):
        self.batches.append(np.array(x, copy=True))
        return self.rule(np.asarray(x, np.float64))


WEIGHTS = np.random.default_rng(42).normal(size=len(FEATURE_NAMES))
RULES = {
    # few distinct values: most proposals tie, the stamps decide
    "quantised": lambda x: np.round((np.abs(np.nan_to_num(x) @ WEIGHTS) * 7.3) % 1.0, 1),
    "constant": lambda x: np.full(x.shape[0], 0.5),
    "mean": lambda x: x[:, 0].copy(),
}


def random_graph(seed: int) -> RegionGraph:
    """Random pairs (high degree), edges in random order and orientation, exact histograms of random faces."""
    rng = np.random.default_rng(seed)
    n = 60 + 30 * seed
    a, b = rng.integers(0, n, 5 * n), rng.integers(0, n, 5 * n)
    keep = a != b
    pairs = np.unique(np.stack([np.minimum(a, b)[keep], np.maximum(a, b)[keep]], axis=1), axis=0)
    pairs = pairs[rng.permutation(len(pairs))]
    swap = rng.random(len(pairs)) < 0.5
    pairs[swap] = pairs[swap][:, ::-1]
    area = rng.integers(1, 12, len(pairs))
    edge = np.repeat(np.arange(len(pairs)), area)
    faces = (rng.integers(0, 16, edge.size) / 16 + (edge % 3) / 8).clip(0, 1).astype(np.float32)
    mean = (np.bincount(edge, faces) / area).astype(np.float32)
    vmin = np.full(len(pairs), np.inf, np.float32)
    vmax = np.full(len(pairs), -np.inf, np.float32)
    np.minimum.at(vmin, edge, faces)
    np.maximum.at(vmax, edge, faces)
    bins = np.minimum((faces * 256).astype(np.int64), 255)
    keys, counts = np.unique(edge * 256 + bins, return_counts=True)
    ids = np.sort(rng.choice(10_000, n, replace=False)).astype(np.uint64) + 1
    return RegionGraph(node_ids=ids, node_sizes=rng.integers(1, 500, n).astype(np.int64),
                       edges=ids[pairs], contact_area=area.astype(np.int64),
                       features={"mean": mean, "min": vmin, "max": vmax}, signal="boundaries",
                       voxel_size=(1.0, 1.0, 1.0), histogram=(keys // 256, keys % 256, counts.astype(np.int64)))


def random_bodies(n: int, seed: int) -> list[dict[int, int]]:
    """Few bodies, so merges within one are common; some regions unlabelled, some with ties between bodies."""
    rng = np.random.default_rng(1000 + seed)
    out = []
    for _ in range(n):
        k = rng.choice([0, 1, 1, 2, 3])
        out.append({int(g): int(rng.integers(1, 4)) for g in rng.choice(np.arange(1, 6), k, replace=False)})
    return out


class Counting(Progress):
    def __init__(self):
        self.steps, self.closed = 0, False

    def start(self, total, description=""):
        self.total = total

    def advance(self, n=1):
        self.steps += n

    def close(self):
        self.closed = True


def assert_same_run(rag, rule_or_classifier, bodies=None):
    """Both loops: the same merges (same order, same sides), the same P, the same scored batches and examples."""
    runs = []
    for loop in (reference_agglomerate, _agglomerate):
        clf = Recorder(rule_or_classifier) if callable(rule_or_classifier) else Recorder(
            rule_or_classifier.predict_boundary)
        progress = Counting()
        merged, scores, x, y = loop(rag, clf, None if bodies is None else [dict(c) for c in bodies], progress)
        runs.append((np.asarray(merged, np.int64).reshape(-1, 2), np.asarray(scores, np.float64), x, y,
                     clf.batches, progress.steps))
    (m0, s0, x0, y0, b0, p0), (m1, s1, x1, y1, b1, p1) = runs
    np.testing.assert_array_equal(m1, m0)
    np.testing.assert_array_equal(s1, s0)
    np.testing.assert_array_equal(x1, x0)
    np.testing.assert_array_equal(y1, y0)
    assert x1.dtype == x0.dtype and y1.dtype == y0.dtype and x1.shape[1] == len(FEATURE_NAMES)
    assert len(b1) == len(b0)
    for u, v in zip(b0, b1, strict=True):
        np.testing.assert_array_equal(v, u)
    assert p1 == p0 == len(m0)
    return m0, y0


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("rule", list(RULES))
@pytest.mark.parametrize("seed", range(4))
def test_the_compiled_loop_makes_the_python_loops_merges_on_random_graphs(seed, rule, strict):
    rag = random_graph(seed)
    bodies = random_bodies(rag.n_nodes, seed) if strict else None
    merges, labels = assert_same_run(rag, RULES[rule], bodies)
    if strict:
        assert 0 < labels.sum() < labels.size  # examples of both kinds: refusals happened
        assert len(merges) < rag.n_nodes - 1
    else:
        assert len(merges) > rag.n_nodes // 2


def test_the_compiled_loop_makes_the_python_loops_merges_on_gala_fib(shared_data):
    """A forest learned by agglomeration on train (so the strict epochs ran both loops' way), then
    the full agglomeration of train and test and one strict epoch on train, compared loop for loop."""
    ws, p, gt = load(shared_data, "train")
    ws_te, p_te, _ = load(shared_data, "test")
    rag, rag_te = rag_of(ws, p), rag_of(ws_te, p_te)
    bodies = supervoxel_bodies(rag, ws, gt)
    clf = learn_by_agglomeration(rag, bodies, small_forest()["forest"], name="forest")
    for graph in (rag, rag_te):
        merges, _ = assert_same_run(graph, clf)
        assert len(merges) == graph.n_nodes - 1
    merges, labels = assert_same_run(rag, clf, bodies)
    assert 0 < labels.sum() < labels.size
    # many of the forest's P are equal (multiples of 1/20 averaged over leaves): ties are exercised
    p_all = clf.predict_boundary(flat_features(rag))
    assert np.unique(p_all).size < p_all.size


def test_a_graph_without_edges_and_a_single_edge():
    for seed in range(2):
        rag = random_graph(seed)
        one = RegionGraph(node_ids=rag.node_ids[:2], node_sizes=rag.node_sizes[:2], edges=rag.node_ids[None, :2],
                          contact_area=np.array([3]), features={k: v[:1] for k, v in rag.features.items()},
                          signal="boundaries", voxel_size=(1.0, 1.0, 1.0),
                          histogram=(np.array([0, 0]), np.array([5, 9]), np.array([1, 2])))
        none = RegionGraph(node_ids=rag.node_ids[:3], node_sizes=rag.node_sizes[:3], edges=np.empty((0, 2), np.uint64),
                           contact_area=np.empty(0, np.int64), features={k: v[:0] for k, v in rag.features.items()},
                           signal="boundaries", voxel_size=(1.0, 1.0, 1.0),
                           histogram=(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64)))
        for graph in (one, none):
            for bodies in (None, [{1: 2}, {1 + seed: 1}, {}][: graph.n_nodes]):
                assert_same_run(graph, RULES["mean"], bodies)
