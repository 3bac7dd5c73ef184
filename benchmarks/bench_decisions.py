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

Run::

    python benchmarks/bench_decisions.py [--dir /tmp/bench-decisions] [--decisions 200] [--strategies size active]
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


def timed_run(project, gt, strategy: str, decisions: int, find=None) -> dict:
    from napari_connectome.rank.simulate import simulate

    stamps: list[float] = []

    class Clock:
        def start(self, total, description=""):
            stamps.append(time.perf_counter())

        def advance(self, n=1):
            stamps.append(time.perf_counter())

        def close(self):
            pass

    t0 = time.perf_counter()
    result = simulate(project, gt, strategy=strategy, decisions=decisions, find=find, progress=Clock())
    total = time.perf_counter() - t0
    made = len(result["decisions"])
    setup = stamps[0] - t0
    loop = stamps[-1] - stamps[0]
    return {"strategy": strategy, "decisions": made, "accepted": sum(d["answer"] for d in result["decisions"]),
            "setup_s": setup, "loop_s": loop, "per_s": made / loop if loop > 0 else float("inf"), "total_s": total}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/bench-decisions"))
    parser.add_argument("--segments", type=int, default=3000)
    parser.add_argument("--decisions", type=int, default=200)
    parser.add_argument("--before", type=int, help="decisions of the full-search run (default: as many as "
                                                    "--decisions, so the two do the same work; 0: skip)")
    parser.add_argument("--strategies", nargs="+", default=["size", "active"])
    args = parser.parse_args(argv)
    from napari_connectome.candidates import find_candidates

    project, gt, threshold, n_segments, n_sv = build(args.dir, args.segments)
    print(f"cube 250³: {n_sv} supervoxels, threshold {threshold:.4f} → {n_segments} segments")
    for strategy in args.strategies:
        now = timed_run(project, gt, strategy, args.decisions)
        print(f"{strategy:6s} incremental: {now['decisions']} decisions ({now['accepted']} accepted) in "
              f"{now['loop_s']:.1f} s after {now['setup_s']:.1f} s of set-up: {now['per_s']:.1f} decisions/s")
        before = args.decisions if args.before is None else args.before
        if before:
            old = timed_run(project, gt, strategy, before, find=lambda pr: find_candidates(pr))
            same = old["decisions"] == now["decisions"]
            print(f"{strategy:6s} full search: {old['decisions']} decisions ({old['accepted']} accepted) in "
                  f"{old['loop_s']:.1f} s: {old['per_s']:.2f} decisions/s"
                  + (f"; ratio incremental/full {now['per_s'] / old['per_s']:.1f}" if same else
                     " (fewer decisions than the incremental run: no ratio)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
