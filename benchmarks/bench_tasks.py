"""Micro-tasks: how long from an answer's key press until the next task can be drawn.

1. Builds a synthetic project as ``bench_edits.py`` does (the synthetic
   generator's ground truth cut into supervoxels by a 3-D grid, a boundary
   map from its faces, OME-Zarr, 64³ chunks), 256³ at 8 nm by default, then
   the region graph and the agglomeration at 0.5.
2. Opens :class:`~napari_connectome.tasks.TaskSession` s (``active``
   strategy, live VI against the project's ground truth as the panel opens
   it, a fake effort clock) and answers ``--tasks`` tasks each with a
   seeded mix of 30 % yes / 50 % no / 20 % skip. Before each answer the
   "proofreader" looks at the task for ``--think-s`` seconds (a real pause,
   ``time.sleep``: this is when the next view is prepared and the ranker
   learns in the background). Default 1.0 s; the suite's time model
   assumes 10 s per merge decision and 15 s per split decision
   (``napari_connectome.rank.timing``; to be replaced by measured effort-log
   times), so 1 s is conservative: it gives the background work far less
   time than a person would.
3. **key → view** (the honest figure): from the start of ``answer()`` (the
   key press) to ``view()`` returning the next task's view (EM and labels
   crops, skeleton paths, colours), i.e. ``answer()`` + ``view()``: what the
   panel waits for before drawing. Also printed: the old measure (from
   ``answer()`` returning to the view, which hides the time spent in
   ``answer()``), ``answer()`` alone, and how many answers had to wait for
   the previous answer's learning (a *blocked join*) and how long.

Rows, in one run, each session continuing from the state the previous one left:

* ``background, prefetch off`` / ``background, prefetch on``: learning in
  the background (one-step-lagged ranking), think ``--think-s``;
* ``background, prefetch on, think 0``: answers back to back, so every
  answer after a yes/no waits for the learning (the worst case, for honesty);
* ``learn first (old), prefetch on``: ``learn_in_background=False``, the
  ranker refits and (after a yes) the candidates are found again inside
  ``answer()`` before the next task is picked; its ``answer()`` time is the
  learning time the background hides.

Target: key → view p95 < 200 ms with prefetch (row 2). Figures only, not a
pass/fail test.

Run::

    .venv/bin/python benchmarks/bench_tasks.py                 # 256³, 30 tasks per row (~3-4 min)
    .venv/bin/python benchmarks/bench_tasks.py --think-s 3     # a slower (still fast) proofreader
    .venv/bin/python benchmarks/bench_tasks.py --quick         # 128³, 15 tasks per row
    .venv/bin/python benchmarks/bench_tasks.py --project /tmp/bench-decisions/proj   # 250³, 3,000 segments
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


class FakeClock:
    """Effort clock that moves only when told (the effort figures are not what is measured here)."""

    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


def build_project(work: Path, size: int, cell: int, seed: int):
    from bench_edits import build_volumes

    from napari_connectome.graph import agglomerate_project, build_project_graph
    from napari_connectome.project import create_project
    from napari_connectome.pyramid import write_ome_zarr

    spec, raw, gt, sv, boundary, _ = build_volumes(size, cell, seed)
    for name, arr, kind in (("raw", raw, "image"), ("sv", sv, "labels"), ("boundaries", boundary, "image"),
                            ("gt", gt, "labels")):
        write_ome_zarr(work / f"{name}.ome.zarr", arr, voxel_size=spec.voxel_size, kind=kind, chunks=64, levels=1)
    project = create_project(work / "project", raw=work / "raw.ome.zarr", supervoxels=work / "sv.ome.zarr",
                             boundaries=work / "boundaries.ome.zarr", groundtruth=work / "gt.ome.zarr")
    rag = build_project_graph(project)
    tree = agglomerate_project(project, threshold=0.5)
    return project, rag, tree


def run_session(project, *, prefetch: bool, background: bool, tasks: int, think: float, seed: int,
                clock: FakeClock, gt="project") -> dict:
    from napari_connectome.tasks import TaskSession

    rng = np.random.default_rng(seed)
    key_to_view, after_answer, answer_s = [], [], []
    counts = {"yes": 0, "no": 0, "skip": 0}
    # gt="project", as the Micro-tasks panel opens it when the project has a ground truth: answer() then
    # records the live VI on each effort row, and that cost (~1 ms) belongs in key → view.
    with TaskSession.open(project, user="bench", strategy="active", clock=clock, prefetch=prefetch,
                          learn_in_background=background, gt=gt) as s:
        if s.next_task() is None:
            raise SystemExit("no candidates: nothing to benchmark")
        s.view()
        for _ in range(tasks):
            if think > 0:
                time.sleep(think)  # the proofreader looks at the task; the background work runs meanwhile
            clock.t += 5.0
            answer = str(rng.choice(["yes", "no", "skip"], p=[0.3, 0.5, 0.2]))
            t0 = time.perf_counter()
            r = s.answer(answer)
            t1 = time.perf_counter()
            if r.next is None:
                break
            s.view()
            t2 = time.perf_counter()
            key_to_view.append(t2 - t0)
            after_answer.append(t2 - t1)
            answer_s.append(t1 - t0)
            counts[answer] += 1
        waits = list(s.learning_waits)
        joins = s.learning_joins
        hits = s.prefetcher.hits if s.prefetcher else 0
        misses = s.prefetcher.misses if s.prefetcher else len(key_to_view)
    return {"prefetch": prefetch, "background": background, "think_s": think, "key_to_view_s": key_to_view,
            "after_answer_s": after_answer, "answer_s": answer_s, "answers": counts, "waits_s": waits,
            "joins": joins, "hits": hits, "misses": misses}


def pct(values, q) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q)) if values else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=256, help="edge of the cubic volume in voxels")
    ap.add_argument("--cell", type=int, default=24, help="grid cell (voxels) cutting bodies into supervoxels")
    ap.add_argument("--tasks", type=int, default=30, help="tasks answered per row")
    ap.add_argument("--think-s", type=float, default=1.0,
                    help="seconds the proofreader looks at each task before answering (a real decision: ~10 s)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="128³, 15 tasks per row")
    ap.add_argument("--dir", type=Path, default=None, help="where to write the project (default: a temp dir)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--project", type=Path, default=None,
                    help="answer tasks on a copy of this project instead (e.g. /tmp/bench-decisions/proj, the "
                         "250³ cube of 3,000 segments of bench_decisions.py)")
    ap.add_argument("--rows", type=int, nargs="+", choices=[1, 2, 3, 4], default=[1, 2, 3, 4],
                    help="which of the rows below to run (1-based; e.g. --rows 2 on a 1024³ project, where "
                         "each session opens for minutes)")
    args = ap.parse_args(argv)
    if args.quick:
        args.size, args.tasks = 128, 15

    rows = [
        ("background, prefetch off", dict(prefetch=False, background=True, think=args.think_s)),
        ("background, prefetch on", dict(prefetch=True, background=True, think=args.think_s)),
        ("background, prefetch on", dict(prefetch=True, background=True, think=0.0)),
        ("learn first (old), prefetch on", dict(prefetch=True, background=False, think=args.think_s)),
    ]
    rows = [row for i, row in enumerate(rows, 1) if i in args.rows]
    work = Path(tempfile.mkdtemp(prefix="bench-tasks-", dir=args.dir))
    try:
        t0 = time.perf_counter()
        gt = "project"
        if args.project is not None:
            from napari_connectome.graph import load_project_graph
            from napari_connectome.project import open_project

            shutil.copytree(args.project, work / "project")
            project = open_project(work / "project")
            rag, tree = load_project_graph(project, save=False)
            threshold = float(project.manifest["agglomeration"]["threshold"])
            gt = "project" if "groundtruth" in project.manifest.get("inputs", {}) else None
            print(f"a copy of {args.project}: {rag.n_nodes} supervoxels, {rag.n_edges} graph edges, "
                  f"{int(tree.n_segments_at(threshold))} segments at {threshold:.4f}; "
                  f"{args.tasks} tasks per row, answers 30 % yes / 50 % no / 20 % skip", flush=True)
        else:
            project, rag, tree = build_project(work, args.size, args.cell, args.seed)
            print(f"{args.size}³ voxels, {rag.n_nodes} supervoxels, {rag.n_edges} graph edges, "
                  f"{int(tree.n_segments_at(0.5))} segments at 0.5; built in {time.perf_counter() - t0:.1f} s; "
                  f"{args.tasks} tasks per row, answers 30 % yes / 50 % no / 20 % skip", flush=True)
        clock = FakeClock()
        results = {}
        for i, (name, opts) in enumerate(rows):
            t0 = time.perf_counter()
            r = run_session(project, tasks=args.tasks, seed=args.seed + i, clock=clock, gt=gt, **opts)
            r["wall_s"] = time.perf_counter() - t0
            results[f"{name}, think {opts['think']:g} s"] = r
            k, w = r["key_to_view_s"], r["waits_s"]
            blocked = f"{len(w)}/{len(k)} answers waited for the learning"
            if w:
                blocked += f", p50 {pct(w, 50):.0f} ms, max {pct(w, 100):.0f} ms"
            if not opts["background"]:
                blocked = "learning inside answer()"
            print(f"{name} (think {opts['think']:g} s): {len(k)} tasks {r['answers']}; key → view "
                  f"p50 {pct(k, 50):.0f} ms, p95 {pct(k, 95):.0f} ms, max {pct(k, 100):.0f} ms; "
                  f"old measure (answer() return → view) p50 {pct(r['after_answer_s'], 50):.0f} ms, "
                  f"p95 {pct(r['after_answer_s'], 95):.0f} ms; answer() p50 {pct(r['answer_s'], 50):.0f} ms, "
                  f"p95 {pct(r['answer_s'], 95):.0f} ms; {blocked}; prefetch hits {r['hits']}, "
                  f"misses {r['misses']}; {r['wall_s']:.0f} s", flush=True)
        if {2, 4} <= set(args.rows):
            by_row = dict(zip(sorted(args.rows), results.values(), strict=True))
            on, old = by_row[2]["key_to_view_s"], by_row[4]["key_to_view_s"]
            p95 = pct(on, 95)
            print(f"key → view with prefetch and background learning at think {args.think_s:g} s: "
                  f"p50 {pct(on, 50):.0f} ms, p95 {p95:.0f} ms ({'below' if p95 < 200 else 'above'} the 200 ms "
                  f"target); learning first instead: p50 {pct(old, 50):.0f} ms, p95 {pct(old, 95):.0f} ms")
        if args.json:
            figures = {"size": args.size, "tasks": args.tasks, "think_s": args.think_s, "rows": {
                name: {"think_s": r["think_s"], "prefetch": r["prefetch"], "background": r["background"],
                       "key_to_view_p50_ms": pct(r["key_to_view_s"], 50),
                       "key_to_view_p95_ms": pct(r["key_to_view_s"], 95),
                       "after_answer_p50_ms": pct(r["after_answer_s"], 50),
                       "after_answer_p95_ms": pct(r["after_answer_s"], 95),
                       "answer_p95_ms": pct(r["answer_s"], 95), "blocked_joins": len(r["waits_s"]),
                       "joins": r["joins"], "wait_max_ms": pct(r["waits_s"], 100),
                       "hits": r["hits"], "misses": r["misses"], "answers": r["answers"]}
                for name, r in results.items()}}
            args.json.write_text(json.dumps(figures, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
