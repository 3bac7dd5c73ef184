"""Micro-tasks: how long the next task takes to appear after an answer, with and without prefetch.

1. Builds a synthetic project as ``bench_edits.py`` does (the synthetic
   generator's ground truth cut into supervoxels by a 3-D grid, a boundary
   map from its faces, OME-Zarr, 64³ chunks), 256³ at 8 nm by default, then
   the region graph and the agglomeration at 0.5.
2. Opens a :class:`~napari_connectome.tasks.TaskSession` (``active``
   strategy, a fake effort clock) and answers ``--tasks`` tasks with a seeded
   mix of yes / no / skip. Before each answer the "proofreader" looks at the
   task for ``--think`` seconds (a real pause: a person takes seconds, and
   that is when the next view is prepared).
3. **Latency** = from ``answer()`` returning control (the edit applied, the
   candidates found again after a *yes*, the next task chosen) to
   ``view()`` returning the new current task's view (EM and labels crops,
   skeleton paths, colours): what the panel waits for before drawing. It is
   measured in one run for two sessions on the same project, prefetch off
   then on (each continues from the state the previous one left).

Prints p50 / p95 (ms) for both, their ratio, the prefetch hit rate and the
time ``answer()`` itself took. Target: p95 < 200 ms with prefetch. Figures
only, not a pass/fail test.

Run::

    .venv/bin/python benchmarks/bench_tasks.py             # 256³, 40 tasks per mode
    .venv/bin/python benchmarks/bench_tasks.py --quick     # 128³, 20 tasks per mode
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


def run_session(project, *, prefetch: bool, tasks: int, think: float, seed: int, clock: FakeClock) -> dict:
    from napari_connectome.tasks import TaskSession

    rng = np.random.default_rng(seed)
    latency, answer_s = [], []
    counts = {"yes": 0, "no": 0, "skip": 0}
    with TaskSession.open(project, user="bench", strategy="active", clock=clock, prefetch=prefetch) as s:
        if s.next_task() is None:
            raise SystemExit("no candidates: nothing to benchmark")
        s.view()
        for _ in range(tasks):
            time.sleep(think)  # the proofreader looks at the task
            clock.t += 5.0
            answer = str(rng.choice(["yes", "no", "skip"], p=[0.3, 0.5, 0.2]))
            t0 = time.perf_counter()
            r = s.answer(answer)
            t1 = time.perf_counter()
            if r.next is None:
                break
            s.view()
            t2 = time.perf_counter()
            answer_s.append(t1 - t0)
            latency.append(t2 - t1)
            counts[answer] += 1
        hits = s.prefetcher.hits if s.prefetcher else 0
        misses = s.prefetcher.misses if s.prefetcher else len(latency)
    return {"prefetch": prefetch, "latency_s": latency, "answer_s": answer_s, "answers": counts,
            "hits": hits, "misses": misses}


def pct(values, q) -> float:
    return float(np.percentile(np.asarray(values) * 1000.0, q)) if values else float("nan")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=256, help="edge of the cubic volume in voxels")
    ap.add_argument("--cell", type=int, default=24, help="grid cell (voxels) cutting bodies into supervoxels")
    ap.add_argument("--tasks", type=int, default=40, help="tasks answered per mode (prefetch off, on)")
    ap.add_argument("--think", type=float, default=0.25, help="seconds the proofreader looks at each task")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="128³, 20 tasks per mode")
    ap.add_argument("--dir", type=Path, default=None, help="where to write the project (default: a temp dir)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    if args.quick:
        args.size, args.tasks = 128, 20

    work = Path(tempfile.mkdtemp(prefix="bench-tasks-", dir=args.dir))
    try:
        t0 = time.perf_counter()
        project, rag, tree = build_project(work, args.size, args.cell, args.seed)
        print(f"{args.size}³ voxels, {rag.n_nodes} supervoxels, {rag.n_edges} graph edges, "
              f"{int(tree.n_segments_at(0.5))} segments at 0.5; built in {time.perf_counter() - t0:.1f} s", flush=True)
        clock = FakeClock()
        results = []
        for i, prefetch in enumerate((False, True)):
            t0 = time.perf_counter()
            r = run_session(project, prefetch=prefetch, tasks=args.tasks, think=args.think, seed=args.seed + i,
                            clock=clock)
            r["wall_s"] = time.perf_counter() - t0
            results.append(r)
            lat = r["latency_s"]
            print(f"prefetch {'on ' if prefetch else 'off'}: {len(lat)} tasks ({r['answers']}), next task shown "
                  f"p50 {pct(lat, 50):.1f} ms, p95 {pct(lat, 95):.1f} ms, max {pct(lat, 100):.1f} ms; "
                  f"answer() p50 {pct(r['answer_s'], 50):.0f} ms, p95 {pct(r['answer_s'], 95):.0f} ms; "
                  f"prefetch hits {r['hits']}, misses {r['misses']}; {r['wall_s']:.1f} s", flush=True)
        off, on = results
        ratio50 = pct(off["latency_s"], 50) / max(pct(on["latency_s"], 50), 1e-9)
        ratio95 = pct(off["latency_s"], 95) / max(pct(on["latency_s"], 95), 1e-9)
        p95 = pct(on["latency_s"], 95)
        print(f"prefetch speed-up: p50 ×{ratio50:.1f}, p95 ×{ratio95:.1f}; with prefetch p95 {p95:.1f} ms "
              f"({'below' if p95 < 200 else 'above'} the 200 ms target)")
        if args.json:
            figures = {"size": args.size, "tasks": args.tasks, "think_s": args.think,
                       "off": {"p50_ms": pct(off["latency_s"], 50), "p95_ms": pct(off["latency_s"], 95)},
                       "on": {"p50_ms": pct(on["latency_s"], 50), "p95_ms": p95,
                              "hits": on["hits"], "misses": on["misses"]}}
            args.json.write_text(json.dumps(figures, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
