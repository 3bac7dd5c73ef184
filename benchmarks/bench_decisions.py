"""The simulated proofreader's decisions per second on a 250³ synthetic cube of ~3,000 segments.

Protocol (issue 13's fourth item):

* The cube: the suite's synthetic EM generator at 250 × 250 × 250 voxels of 10 nm
  (seed 3, fill fraction 0.9); boundary map ``1 - normalised intensity`` of the
  Gaussian-smoothed raw; watershed supervoxels from its 5³ local minima (the
  construction of ``bench_agglomerate.py``, ~14,000 supervoxels); a project over
  them, agglomerated at the threshold that leaves the segment count nearest
  ``--segments`` (default 3,000). Built once into ``--dir``.
* ``simulate`` (what ``napari-connectome simulate`` runs) with each strategy,
  answering from the generator's ground truth. Printed: the set-up (the
  supervoxel × ground-truth table, the first full candidate search), then the
  decisions per second after it, and how many decisions were accepted edits
  (an accepted edit is what costs: candidates are searched again).
* The same run with a full candidate search after every accepted edit (what
  the simulator did before :class:`~napari_connectome.candidates.CandidateCache`),
  the same decisions (``--before`` fewer: no ratio), and the ratio.

* Per decision, the milliseconds of each phase: search (the candidate cache),
  featurise and predict (the ranker's), refit (the ranker's after each
  answer), and the rest (ground-truth labels of new candidates, applying an
  accepted edit, VI). For ``active``, the prequential AUC of its answers (each
  scored by the model before it learnt it); ``--recalibrate-growth G`` runs
  it again with the ranker's Platt scaling refitted only when the answers
  grew by ``G`` and compares.

Figures (2-core VM shared with other work, so ±30 %; ``--decisions 100
--before 0 --seeds 0 1 2``):

* before the incremental search: ``size`` 34.8 decisions/s; ``active`` 1.0
  decision/s (77 of 100 accepted: nearly every accept splits a piece off one
  segment of ~5,800 supervoxels, whose ~2,700 contacts and two cuts are
  searched again).
* with it, and features kept per candidate: ``size`` 192.5, ``active`` 2.9.
* now (what depends on a candidate alone kept per candidate object, the
  cache's update in numpy, VI read only after an edit, the split preview's
  seeds checked at once): ``size`` 222.9 decisions/s (2 accepted); ``active``
  2.9–3.0 decisions/s, the same decisions as before (seed 0: 77 accepted,
  prequential AUC 0.935, VI 5.468 → 3.446): per decision search 57 ms,
  featurise 10, predict 36, refit 199, the rest 47.
* after the compiled trees, the kept key order and the serial-indexed rows
  (what made ``active`` at 1024³ 0.12 → 0.18 decisions/s): ``size`` 182–209
  decisions/s; ``active`` 2.3–2.8 decisions/s over four runs, the same
  decisions (77 accepted, AUC 0.935, VI 3.446): per decision search 67–86 ms,
  featurise 7–10, predict 12–15 (was 31–36), refit 215–265, the rest 51–68.
* ``active`` branches early: seed 1 ends like seed 0 (77 accepted, VI
  3.431, AUC 0.912), seed 2 does not (61 accepted, VI 4.624, AUC 0.831).
* ``--recalibrate-growth 1.5`` (Platt scaling refitted only as the answers
  grow by half): refit 84–99 ms instead of ~300 (same loaded run), 3.7–4.4
  decisions/s, but VI 4.618 / 4.649 / 4.645 and AUC 0.839 / 0.797 / 0.836 on
  seeds 0 / 1 / 2 (57–60 accepted): every seed ends where the unlucky seed of
  the default does. Not the default.

* the refit's trees grown by compiled loops (``rank/boost.py``, the same
  trees bit for bit) with the calibration folds on threads, and a segment's
  last merges read off its tree by compiled loops; the old code and this
  alternately, same conditions: ``active`` 3.1 → 4.3–4.8 decisions/s, the
  same decisions (77 accepted, VI 3.446, AUC 0.935); refit 193–197 →
  101–108 ms, search 62 → 50–57 ms.

* ``active`` learning by correction (the prior model kept, its log-odds
  corrected by trees grown on the answers alone: ``rank/ranker.py``), a
  split whose seeds are every supervoxel of the segment read off without a
  max-flow, the candidate cache telling its list's serials: see the README
  for the figures of this stop (``--compare-refit`` runs the refitting
  learner in the same process and prints the ratio).

* an edit's search reading only the rows at its new segments, a split's pieces reading their merge trees
  off the tree they were cut from, cuts of few free supervoxels without a max-flow, the false splits built
  as columns, and integer ``np.unique`` by sorting (NumPy 2.3+'s hash table was 60x slower): seeds 0-4
  at 10.2 / 11.2 / 8.3 / 8.3 / 9.2 decisions/s, the same decisions (README).

* an edit's false splits made from columns with their serials, reductions for each pair's strongest row,
  seed overlaps by one sort, labels once per segment, a split's preview and plan without Python-int lists,
  the correction's bins computed directly: against the previous code run alternately seed by seed, 1.12 /
  1.18 / 1.56 / 1.36 / 1.15 times the decisions/s on seeds 0-4, the same decisions (README).

* the decisions with fewer garbage collections (``collector.fewer_collections``), ground truth read only for
  the candidate picked, new candidates read by C-level passes, a split's plan taking its preview's links, an
  unstable score sort with ties put in list order before their keys: against the previous code run
  alternately, 1.33 / 1.43 / 1.14 / 1.35 / 1.34 times the decisions/s on seeds 0-4 (12.5-15.8), the same
  decisions; 1024³ 0.339 -> 0.447 (README).

* on the next stop's VM the same code made 25.9-27.3 decisions/s on seeds 0-4 (the code before the stop
  above, run alternately with it there: 15.8-21.1): above 20 on that machine, 12.5-15.8 on the one before,
  so this figure is the machine's as much as the code's. Then the correction's trees reading the kept
  feature rows in place and the candidate cache splicing its list: 1024³ (``--project``) 0.552 -> 0.731
  decisions/s, 250³ unchanged within noise (README).

What is left per accepted edit: the search of the grown segment (its ~2,700 pairs, its merge tree's
cuts) and making, featurising and dropping its new candidates as objects.

Run::

    python benchmarks/bench_decisions.py [--dir /tmp/bench-decisions] [--decisions 200] [--strategies size active]
        [--before 0] [--recalibrate-growth 1.5] [--compare-refit] [--seeds 0 1 2 3 4]
    python benchmarks/bench_decisions.py --project /tmp/e2e-1024/project --gt /tmp/e2e-1024/data/groundtruth.ome.zarr \
        --strategies active --decisions 30 --before 0      # the 1024³ project of bench_end_to_end.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def build(folder: Path, segments: int):
    from bench_agglomerate import synthetic_volume

    from napari_connectome.graph import agglomerate_project, load_project_graph
    from napari_connectome.project import create_project, is_project, open_project
    from napari_connectome.pyramid.write import write_ome_zarr

    proj = folder / "proj"
    if not is_project(proj):
        folder.mkdir(parents=True, exist_ok=True)
        ws, p, gt = synthetic_volume(3, (250, 250, 250))
        raw = (255 * (1 - p)).astype(np.uint8)
        for name, a, kind in (("sv", ws.astype(np.uint32), "labels"), ("p", p, "image"), ("raw", raw, "image"),
                              ("gt", gt.astype(np.uint32), "labels")):
            write_ome_zarr(folder / f"{name}.ome.zarr", a, voxel_size=(10, 10, 10), kind=kind, chunks=64,
                           overwrite=True)
        create_project(proj, raw=str(folder / "raw.ome.zarr"), supervoxels=str(folder / "sv.ome.zarr"),
                       boundaries=str(folder / "p.ome.zarr"))
    project = open_project(proj)
    if "agglomeration" not in project.manifest:
        agglomerate_project(project, threshold=0.5)
        project.save()
    _rag, tree = load_project_graph(project, save=False)
    grid = np.unique(tree.scores)
    counts = np.array([tree.n_segments_at(t) for t in grid])
    threshold = float(grid[int(np.argmin(np.abs(counts - segments)))])
    agglomerate_project(project, threshold=threshold)
    project.save()
    return project, str(folder / "gt.ome.zarr"), threshold, tree.n_segments_at(threshold), tree.n_nodes


class _Phases:
    """Seconds spent in each phase of the decisions (search, featurise, predict, refit), by wrapping them."""

    def __init__(self) -> None:
        self.seconds = {"search": 0.0, "featurise": 0.0, "predict": 0.0, "refit": 0.0}
        self.on = False

    def wrap(self, phase: str, fn):
        def timed(*args, **kwargs):
            if not self.on:
                return fn(*args, **kwargs)
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[phase] += time.perf_counter() - t
        return timed


def timed_run(project, gt, strategy: str, decisions: int, find=None, recalibrate_growth=None, seed: int = 0,
              learning: str | None = None) -> dict:
    from napari_connectome.candidates import CandidateCache
    from napari_connectome.rank.simulate import simulate
    from napari_connectome.rank.strategies import build_strategy

    stamps: list[float] = []
    phases = _Phases()

    class Clock:
        def start(self, total, description=""):
            stamps.append(time.perf_counter())
            phases.on = True

        def advance(self, n=1):
            stamps.append(time.perf_counter())

        def close(self):
            phases.on = False

    config = {"name": strategy, "seed": seed} if strategy in ("random", "active") else {"name": strategy}
    if learning is not None:
        config["learning"] = learning
    strat = build_strategy(config)
    ranker = getattr(strat, "ranker", None)
    if ranker is not None:
        if recalibrate_growth is not None:
            ranker.recalibrate_growth = float(recalibrate_growth)
        ranker.featurize = phases.wrap("featurise", ranker.featurize)
        ranker.predict_proba = phases.wrap("predict", ranker.predict_proba)
        ranker._learn = phases.wrap("refit", ranker._learn)
    if find is None:
        cache = CandidateCache(locate=False)  # as simulate() does: it shows nothing
        find = cache
    t0 = time.perf_counter()
    result = simulate(project, gt, strategy=strat, decisions=decisions, seed=seed, find=phases.wrap("search", find),
                      progress=Clock())
    total = time.perf_counter() - t0
    made = len(result["decisions"])
    setup = stamps[0] - t0
    loop = stamps[-1] - stamps[0]
    asked = [row for rows in getattr(strat, "_asked", {}).values() for row in rows]
    auc = float("nan")
    if asked and 0 < sum(y for _, y in asked) < len(asked):
        from sklearn.metrics import roc_auc_score

        # Prequential: each answer scored by the model before it learnt that answer.
        auc = float(roc_auc_score([y for _, y in asked], [z for z, _ in asked]))
    return {"strategy": strategy, "decisions": made, "accepted": sum(d["answer"] for d in result["decisions"]),
            "setup_s": setup, "loop_s": loop, "per_s": made / loop if loop > 0 else float("inf"), "total_s": total,
            "phases": dict(phases.seconds), "auc": auc, "asked": [d["candidate"] for d in result["decisions"]],
            "answers": [d["answer"] for d in result["decisions"]],
            "vi": [round(p["vi_split"] + p["vi_merge"], 4) for p in (result["curve"][0], result["curve"][-1])]}


def _phase_text(run: dict) -> str:
    n = max(run["decisions"], 1)
    parts = [f"{k} {1000 * v / n:.0f}" for k, v in run["phases"].items()]
    other = run["loop_s"] - sum(run["phases"].values())
    return "ms/decision: " + ", ".join(parts) + f", the rest (label, apply, VI) {1000 * other / n:.0f}"


def _max_rss_gib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/bench-decisions"))
    parser.add_argument("--segments", type=int, default=3000)
    parser.add_argument("--decisions", type=int, default=200)
    parser.add_argument("--before", type=int, help="decisions of the full-search run (default: as many as "
                                                    "--decisions, so the two do the same work; 0: skip)")
    parser.add_argument("--strategies", nargs="+", default=["size", "active"])
    parser.add_argument("--recalibrate-growth", type=float,
                        help="also run `active` with the ranker's Platt scaling refitted only when the answers "
                             "grew by this factor (Ranker.recalibrate_growth; default 1: every answer) and "
                             "compare decisions and prequential AUC")
    parser.add_argument("--compare-refit", action="store_true",
                        help="also run `active` learning by refits (learning='refit', what it did before the "
                             "correction) and print both and the ratio of decisions/s")
    parser.add_argument("--project", type=Path,
                        help="run on this project instead of the 250³ cube (e.g. the 1024³ one "
                             "bench_end_to_end.py made in DIR/project); needs --gt. The simulation works on "
                             "a copy of its manifest and graph: the project is not changed")
    parser.add_argument("--gt", help="ground-truth labels of --project (e.g. DIR/data/groundtruth.ome.zarr)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="exploration seeds of `active` (each a run of its own; the --recalibrate-growth "
                             "comparison too): its picks branch early, so one seed says little about quality")
    args = parser.parse_args(argv)
    from napari_connectome.candidates import find_candidates

    if args.project is not None:
        from napari_connectome.project import open_project

        if not args.gt:
            parser.error("--project needs --gt")
        project, gt = open_project(args.project), args.gt
        print(f"project {args.project}, ground truth {gt}")
    else:
        project, gt, threshold, n_segments, n_sv = build(args.dir, args.segments)
        print(f"cube 250³: {n_sv} supervoxels, threshold {threshold:.4f} → {n_segments} segments")
    for strategy in args.strategies:
        for seed in args.seeds if strategy == "active" else [0]:
            now = timed_run(project, gt, strategy, args.decisions, seed=seed)
            label = f"{strategy} seed {seed}" if strategy == "active" else strategy
            print(f"{label:6s} incremental: {now['decisions']} decisions ({now['accepted']} accepted) in "
                  f"{now['loop_s']:.1f} s after {now['setup_s']:.1f} s of set-up: {now['per_s']:.1f} decisions/s; "
                  f"VI {now['vi'][0]:.3f} → {now['vi'][1]:.3f}")
            print(f"{'':6s} {_phase_text(now)}; max RSS so far {_max_rss_gib():.1f} GiB")
            if strategy == "active":
                print(f"{'':6s} prequential AUC of the answers (each scored before it was learnt): {now['auc']:.3f}")
            if strategy == "active" and args.compare_refit:
                old = timed_run(project, gt, strategy, args.decisions, seed=seed, learning="refit")
                same = sum(a == b for a, b in zip(old["asked"], now["asked"], strict=False))
                print(f"{label:6s} learning by refits: {old['decisions']} decisions ({old['accepted']} accepted), "
                      f"{old['per_s']:.1f} decisions/s, VI → {old['vi'][1]:.3f}, prequential AUC {old['auc']:.3f}; "
                      f"the correction/refits ratio of decisions/s {now['per_s'] / old['per_s']:.2f}; the same "
                      f"candidate asked at {same} of {min(old['decisions'], now['decisions'])} decisions")
                print(f"{'':6s} {_phase_text(old)}")
            if strategy == "active" and args.recalibrate_growth:
                old = timed_run(project, gt, strategy, args.decisions, recalibrate_growth=args.recalibrate_growth,
                                seed=seed, learning="refit")
                same = sum(a == b for a, b in zip(old["asked"], now["asked"], strict=False))
                print(f"{label:6s} recalibrated at growth {args.recalibrate_growth:g}: {old['decisions']} decisions "
                      f"({old['accepted']} accepted), {old['per_s']:.1f} decisions/s, prequential AUC "
                      f"{old['auc']:.3f}, VI → {old['vi'][1]:.3f}; the same candidate asked at {same} of "
                      f"{min(old['decisions'], now['decisions'])} decisions")
                print(f"{'':6s} {_phase_text(old)}")
        before = args.decisions if args.before is None else args.before
        if before:
            old = timed_run(project, gt, strategy, before, find=lambda pr: find_candidates(pr), seed=seed)
            same = old["decisions"] == now["decisions"]
            print(f"{strategy:6s} full search: {old['decisions']} decisions ({old['accepted']} accepted) in "
                  f"{old['loop_s']:.1f} s: {old['per_s']:.2f} decisions/s"
                  + (f"; ratio incremental/full {now['per_s'] / old['per_s']:.1f}" if same else
                     " (fewer decisions than the incremental run: no ratio)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
