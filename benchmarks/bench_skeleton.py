"""Skeletons: a full re-skeletonization vs the incremental update after one merge.

On the bundled gala-fib sample (test crop, 10 nm voxels), agglomerated at
threshold 0.5, and optionally on a synthetic volume (``--synthetic``: the
demo generator's Voronoi bodies cut into supervoxels, 128 × 256 × 256 at
(40, 8, 8) nm), it

1. times :meth:`SkeletonStore.rebuild` (read the whole segmentation, kimimaro
   over every segment, save) — median of ``--rebuilds`` runs;
2. applies ``--edits`` merges of two touching segments (random region-graph
   edges between different segments, each of at least ``--min-voxels``) and
   times :meth:`SkeletonStore.update_after_edit` for each (crop, kimimaro
   over the merged segment only, save);
3. checks after the last edit that the updated store equals a fresh rebuild.

Prints the medians (s) and their ratio (rebuild ÷ update).

Run::

    .venv/bin/python benchmarks/bench_skeleton.py
    .venv/bin/python benchmarks/bench_skeleton.py --synthetic --edits 5
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def _gala_project(root: Path):
    from napari_connectome.graph import agglomerate_project
    from napari_connectome.samples import gala_fib_project

    project = gala_fib_project(root / "gala")
    agglomerate_project(project, threshold=0.5)
    return project


def _synthetic_project(root: Path):
    from napari_connectome.proofread.demo import make_demo_project

    return make_demo_project(root / "synthetic", shape=(128, 256, 256), n_bodies=60, n_supervoxels=3000,
                             voxel_size=(40.0, 8.0, 8.0), threshold=0.5)


def bench(project, *, edits: int, rebuilds: int, min_voxels: int, seed: int) -> dict:
    from napari_connectome.proofread import Proofreader
    from napari_connectome.skeleton import SkeletonStore

    out: dict = {}
    with Proofreader.open(project, user="bench") as pr:
        shape = pr.labels_volume().levels[0].shape
        times = []
        for _ in range(rebuilds):
            t = time.perf_counter()
            store = SkeletonStore.rebuild(pr)
            times.append(time.perf_counter() - t)
        out.update(shape=tuple(shape), segments=len(np.unique(pr.mapping()[1])), skeletons=len(store),
                   rebuild_s=statistics.median(times))
        rng = np.random.default_rng(seed)
        sizes = dict(zip(pr.rag.node_ids.tolist(), pr.rag.node_sizes.tolist(), strict=True))
        upd = []
        tried = 0
        while len(upd) < edits and tried < 10000:
            tried += 1
            u, v = (int(x) for x in pr.rag.edges[rng.integers(len(pr.rag.edges))])
            su, sv = pr.segment_of(u), pr.segment_of(v)
            if su == sv:
                continue
            seg_size = [sum(sizes.get(int(s), 0) for s in pr.segment_supervoxels(x)) for x in (su, sv)]
            if min(seg_size) < min_voxels:
                continue
            result = pr.merge_supervoxels(u, v)
            t = time.perf_counter()
            store.update_after_edit(pr, result)
            upd.append(time.perf_counter() - t)
        full = SkeletonStore.rebuild(pr, save=False)
        same = full.skeletons.keys() == store.skeletons.keys() and all(
            full.skeletons[k].equals(store.skeletons[k]) for k in full.skeletons)
        out.update(edits=len(upd), update_s=statistics.median(upd) if upd else float("nan"),
                   update_max_s=max(upd) if upd else float("nan"), equals_rebuild=same)
    out["ratio"] = out["rebuild_s"] / out["update_s"]
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--edits", type=int, default=7)
    ap.add_argument("--rebuilds", type=int, default=3)
    ap.add_argument("--min-voxels", type=int, default=5000, help="both merged segments at least this big")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--synthetic", action="store_true", help="also the 128×256×256 synthetic volume")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        cases = [("gala-fib sample, threshold 0.5", _gala_project)]
        if args.synthetic:
            cases.append(("synthetic 128×256×256 at (40, 8, 8) nm", _synthetic_project))
        for name, make in cases:
            project = make(Path(tmp))
            r = bench(project, edits=args.edits, rebuilds=args.rebuilds, min_voxels=args.min_voxels,
                      seed=args.seed)
            print(f"{name}: shape {r['shape']}, {r['segments']} segments, {r['skeletons']} skeletons")
            print(f"  full rebuild        median {r['rebuild_s']:.3f} s ({args.rebuilds} runs)")
            print(f"  update after merge  median {r['update_s']:.3f} s, max {r['update_max_s']:.3f} s "
                  f"({r['edits']} merges)")
            print(f"  ratio rebuild/update {r['ratio']:.1f}x; updated store equals a rebuild: {r['equals_rebuild']}")


if __name__ == "__main__":
    main()
