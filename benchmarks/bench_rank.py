"""Ranking speed, retrain speed, and the simulated-proofreader acceptance table on gala-fib test.

1. **Ranking**: ``--n`` (default 10⁴) synthetic candidates with random
   features (both kinds, some features missing) ordered by the ``active``
   strategy (P(error) × impact ÷ seconds, one exploration draw) with a ranker
   trained on 2,000 synthetic examples. Target < 10 s.
2. **Retrain**: one ``partial_update`` (refit on prior + answers) with the
   shipped prior model (or the synthetic one when it is absent); median of
   10. Target < 1 s. Then one classifier fit of a refit on the shipped prior
   set, scikit-learn's ``HistGradientBoostingClassifier`` against the
   compiled ``BoostedTrees`` (``rank/boost.py``) with the same options,
   the ratio, and whether their scores are the same bits.
3. **Acceptance** (``--acceptance``): a project over gala-fib *test*
   agglomerated at ``--threshold`` (default 0.97, the threshold chosen on
   gala-fib *train*, which leaves errors of both kinds); for random / size / static
   / active, ``--decisions`` simulated decisions (each answered from ground
   truth, accepted edits applied). The reachable VI is the lowest total VI
   any strategy reached; the table gives the decisions (and simulated
   minutes) each needed to recover 80 % of the reachable gain.

Run::

    .venv/bin/python benchmarks/bench_rank.py                    # 1 and 2
    .venv/bin/python benchmarks/bench_rank.py --acceptance [--threshold 0.97] [--decisions 450] \\
        [--csv rank.csv] [--plot rank.png]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "engine"))


def synthetic(n: int, seed: int):
    from test_rank import make_candidates

    return make_candidates(n, seed=seed)


def bench_ranking(n: int) -> float:
    from napari_connectome.rank import ActiveStrategy, Ranker

    train, y = synthetic(2000, 1)
    ranker = Ranker().fit_candidates(train, y)
    cands, _ = synthetic(n, 2)
    strat = ActiveStrategy(model=ranker, epsilon=0.1)
    t0 = time.perf_counter()
    order = strat.order(cands)
    dt = time.perf_counter() - t0
    assert order.size == n
    return dt


def bench_retrain() -> tuple[float, str]:
    from napari_connectome.rank import Ranker
    from napari_connectome.rank.strategies import DEFAULT_PRIOR, _load_model

    try:
        ranker, name = _load_model(DEFAULT_PRIOR)
    except Exception:  # no shipped prior yet: a synthetic one of similar size
        train, y = synthetic(3000, 1)
        ranker, name = Ranker().fit_candidates(train, y), "synthetic prior (3,000 examples)"
    n_cols = len(ranker.columns)
    rng = np.random.default_rng(0)
    times = []
    for i in range(10):
        x = ranker._x0[rng.integers(0, ranker._x0.shape[0])].reshape(1, n_cols) if ranker._x0.size else rng.random((1, n_cols))
        t0 = time.perf_counter()
        ranker.partial_update(x, [bool(i % 2)])
        times.append(time.perf_counter() - t0)
    return statistics.median(times), f"{name}, {ranker._x0.shape[0]} prior examples"


def acceptance(threshold: float, decisions: int, seed: int, csv: str | None, plot: str | None) -> list[dict]:
    from napari_connectome.graph import agglomerate_project
    from napari_connectome.rank import decisions_to_reach, plot_curves, simulate, write_curves_csv
    from napari_connectome.samples import gala_fib_path, gala_fib_project

    rows, results = [], []
    with tempfile.TemporaryDirectory() as tmp:
        project = gala_fib_project(Path(tmp) / "gala")
        agglomerate_project(project, threshold=threshold)
        gt = f"{gala_fib_path()}/groundtruth"
        for name in ("random", "size", "static", "active"):
            t0 = time.perf_counter()
            r = simulate(project, gt, strategy=name, decisions=decisions, seed=seed)
            r["wall_s"] = time.perf_counter() - t0
            results.append(r)
    best = min(p["vi_split"] + p["vi_merge"] for r in results for p in r["curve"])
    for r in results:
        d80 = decisions_to_reach(r["curve"], 0.8, best_vi=best)
        c0, c1 = r["curve"][0], r["curve"][-1]
        rows.append({
            "strategy": r["strategy"], "decisions_to_80": d80,
            "minutes_to_80": None if d80 is None else r["curve"][d80]["minutes"],
            "accepted": sum(d["answer"] for d in r["decisions"]), "asked": len(r["decisions"]),
            "vi_start": c0["vi_split"] + c0["vi_merge"], "vi_end": c1["vi_split"] + c1["vi_merge"],
            "split_start": c0["vi_split"], "split_end": c1["vi_split"],
            "merge_start": c0["vi_merge"], "merge_end": c1["vi_merge"], "wall_s": r["wall_s"],
        })
    if csv:
        write_curves_csv(results, csv)
    if plot:
        plot_curves(results, plot, title=f"gala-fib test, agglomeration at {threshold:g}, 80 % of reachable gain")
    print(f"gala-fib test, threshold {threshold:g}, {decisions} decisions max, seed {seed}; "
          f"reachable VI (best reached by any strategy) {best:.3f}")
    print(f"{'strategy':>8} {'dec→80%':>8} {'min→80%':>8} {'accepted':>8} {'asked':>6} "
          f"{'VI start':>8} {'VI end':>7} {'split':>13} {'merge':>13} {'wall s':>7}")
    for r in rows:
        d80 = "never" if r["decisions_to_80"] is None else str(r["decisions_to_80"])
        m80 = "-" if r["minutes_to_80"] is None else f"{r['minutes_to_80']:.1f}"
        print(f"{r['strategy']:>8} {d80:>8} {m80:>8} {r['accepted']:>8} {r['asked']:>6} {r['vi_start']:>8.3f} "
              f"{r['vi_end']:>7.3f} {r['split_start']:>6.3f}→{r['split_end']:<6.3f} "
              f"{r['merge_start']:>6.3f}→{r['merge_end']:<6.3f} {r['wall_s']:>7.1f}")
    return rows


def bench_fit() -> tuple[float, float, bool, str]:
    """One classifier fit of a refit on the shipped prior set: scikit-learn's against the compiled one.

    The options a refit uses (60 trees, 15 leaves, ...), one OpenMP/BLAS thread as in a refit, median
    of 7 each, alternating; and whether the two give the same scores (they must, bit for bit).
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    from napari_connectome.rank.boost import BoostedTrees
    from napari_connectome.rank.ranker import _one_thread
    from napari_connectome.rank.strategies import ActiveStrategy

    ranker = ActiveStrategy().ranker
    x, y = ranker._training_set()
    x = x[:, ranker._usable]
    options = dict(max_iter=ranker.max_iter, learning_rate=0.1, max_leaf_nodes=15,
                   min_samples_leaf=max(2, min(20, y.size // 20)), l2_regularization=1.0, random_state=ranker.seed)
    times: dict[str, list[float]] = {"scikit-learn": [], "compiled": []}
    with _one_thread():
        BoostedTrees(**options).fit(x, y)  # compiled once (numba's cache) before timing
        for _ in range(7):
            for name, make in (("scikit-learn", lambda: HistGradientBoostingClassifier(early_stopping=False,
                                                                                      **options)),
                               ("compiled", lambda: BoostedTrees(**options))):
                t0 = time.perf_counter()
                model = make().fit(x, y)
                times[name].append(time.perf_counter() - t0)
        same = np.array_equal(HistGradientBoostingClassifier(early_stopping=False, **options).fit(x, y)
                              .decision_function(x), BoostedTrees(**options).fit(x, y).decision_function(x))
    del model
    return (statistics.median(times["scikit-learn"]), statistics.median(times["compiled"]), same,
            f"{x.shape[0]} rows × {x.shape[1]} features")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000, help="synthetic candidates to rank")
    ap.add_argument("--acceptance", action="store_true", help="also run the gala-fib test simulation table")
    ap.add_argument("--threshold", type=float, default=0.97)
    ap.add_argument("--decisions", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--csv")
    ap.add_argument("--plot")
    args = ap.parse_args(argv)
    dt = bench_ranking(args.n)
    print(f"rank {args.n} synthetic candidates (active strategy): {dt:.3f} s (target < 10 s)")
    rt, what = bench_retrain()
    print(f"retrain after one answer ({what}): median {rt:.3f} s of 10 (target < 1 s)")
    sk, ours, same, data = bench_fit()
    print(f"one classifier fit ({data}): scikit-learn {1e3 * sk:.1f} ms, compiled {1e3 * ours:.1f} ms "
          f"(ratio scikit-learn/compiled {sk / ours:.2f}); the same scores: {same}")
    if args.acceptance:
        acceptance(args.threshold, args.decisions, args.seed, args.csv, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
