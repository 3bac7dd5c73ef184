"""Time the learned agglomeration's merge loop: the compiled loop against the Python loop it replaced.

Cases
-----
gala-fib
    gala-fib train and test crops (50 × 100 × 200; ws supervoxels, p1 boundaries).
synthetic (``--synthetic``)
    A 64 × 192 × 192 synthetic volume (seed 0 test, seed 1 train), supervoxels
    and boundaries made as in ``bench_agglomerate.py``: a few thousand regions.

The classifiers are learned once, outside the clock, by
:func:`~napari_connectome.graph.learned.learn_by_agglomeration` on train:
gala's forest (100 trees, entropy, depth 20), and a standardised logistic
regression, whose predict is cheap so the loop's own cost shows.

Timed, alternating which goes first, median (min) of ``--repeats``:

compiled
    :func:`napari_connectome.graph.learned._agglomerate`, the loop of
    :func:`~napari_connectome.graph.learned.agglomerate_learned` (on the
    :class:`~napari_connectome.graph.merge_loop.RescoredLoop`);
python
    the Python loop over dicts and ``heapq`` it replaced, kept as the
    reference in ``tests/engine/test_learned_agglomeration.py``.

Runs: the full agglomeration of train and of test, and the strict learning
mode on train (``bodies`` from the ground truth: wrong proposals become
examples, not merges), as one epoch of ``learn_by_agglomeration`` runs it.
Printed per run: seconds, merges, predict calls, and the seconds outside
``predict_boundary`` (the loop, the features). The two loops' merges, scores
and examples are checked equal.

Run::

    .venv/bin/python benchmarks/bench_learned.py [--repeats 3] [--synthetic]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import h5py
import numpy as np

from napari_connectome.graph import build_rag
from napari_connectome.graph import learned as L
from napari_connectome.progress import NullProgress
from napari_connectome.volume import from_array

REPO = Path(__file__).resolve().parents[1]
GALA = REPO.parent / "shared" / "data" / "gala-fib"


def gala(split):
    def read(name):
        with h5py.File(GALA / f"{split}-{name}.h5", "r") as f:
            return f["stack"][...]

    return read("ws.lzf"), read("p1.lzf"), read("gt.lzf")


def synthetic(split):
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_agglomerate import synthetic_volume

    return synthetic_volume(1 if split == "train" else 0, (64, 192, 192))


class Timed:
    """Wraps a classifier, counting its predict calls and their time."""

    def __init__(self, clf):
        self.clf, self.calls, self.seconds = clf, 0, 0.0

    def predict_boundary(self, x):
        t = time.perf_counter()
        p = self.clf.predict_boundary(x)
        self.seconds += time.perf_counter() - t
        self.calls += 1
        return p


def run_case(name, load, repeats):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    sys.path.insert(0, str(REPO / "tests" / "engine"))
    from test_learned_agglomeration import reference_agglomerate

    ws_tr, p_tr, gt_tr = load("train")
    ws_te, p_te, _ = load("test")
    rag_tr = build_rag(from_array(ws_tr, kind="labels"), from_array(p_tr))
    rag_te = build_rag(from_array(ws_te, kind="labels"), from_array(p_te))
    bodies = L.supervoxel_bodies(rag_tr, ws_tr, gt_tr)
    forest = L.candidate_classifiers(0)["random forest (gala: 100 trees, entropy, depth 20, no bootstrap)"]
    logistic = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
    classifiers = {"forest": L.learn_by_agglomeration(rag_tr, bodies, forest, name="forest"),
                   "logistic": L.learn_by_agglomeration(rag_tr, bodies, logistic, name="logistic")}
    print(f"\n== {name}: train {rag_tr.n_nodes} supervoxels / {rag_tr.n_edges} edges, "
          f"test {rag_te.n_nodes} / {rag_te.n_edges}; {repeats} repeats, median (min)")
    loops = {"compiled": L._agglomerate, "python": reference_agglomerate}
    for cname, clf in classifiers.items():
        runs = {"agglomerate train": (rag_tr, None), "agglomerate test": (rag_te, None),
                "strict train": (rag_tr, bodies)}
        for rname, (rag, bod) in runs.items():
            total = {k: [] for k in loops}
            rest = {k: [] for k in loops}
            out = {}
            for r in range(repeats):
                for lname in (list(loops) if r % 2 == 0 else list(loops)[::-1]):
                    counter = Timed(clf)
                    t = time.perf_counter()
                    merged, scores, x, y = loops[lname](rag, counter, None if bod is None else [dict(c) for c in bod],
                                                        NullProgress())
                    dt = time.perf_counter() - t
                    total[lname].append(dt)
                    rest[lname].append(dt - counter.seconds)
                    out[lname] = (np.asarray(merged, np.int64).reshape(-1, 2), np.asarray(scores), x, y,
                                  counter.calls)
            a, b = out["compiled"], out["python"]
            same = all(np.array_equal(u, v) for u, v in zip(a[:4], b[:4], strict=True))
            for lname in loops:
                print(f"{cname:8s} {rname:18s} {lname:8s} {statistics.median(total[lname]):7.3f} s "
                      f"({min(total[lname]):.3f})  outside predict {statistics.median(rest[lname]):6.3f} s  "
                      f"{len(out[lname][0]):5d} merges, {out[lname][4]:5d} predict calls")
            print(f"{'':8s} {'':18s} same merges, scores and examples: {same}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--synthetic", action="store_true", help="also the synthetic case (a few thousand regions)")
    args = ap.parse_args(argv)
    run_case("gala-fib", gala, args.repeats)
    if args.synthetic:
        run_case("synthetic 64 × 192 × 192", synthetic, args.repeats)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
