"""Candidate recall on gala-fib test: are the true errors of our agglomeration among the candidates?

Protocol:

1. A project over the bundled gala-fib sample (the gala-fib *test* crop:
   watershed supervoxels, gala's boundary map p1, ground truth; 10 nm).
2. For each threshold (default 0.5, the engine's default, 0.7 and 0.97,
   which leaves many merge errors): the merge tree at that threshold is the segmentation; its true
   errors against the ground truth (merge error: a segment overlapping two
   bodies with ≥ 1,000 voxels each; split error: a body covered by two
   segments with ≥ 1,000 voxels each; gt 0 ignored).
3. :func:`~napari_connectome.candidates.find_candidates` on a Proofreader of
   that project (no skeletons): candidates per kind, recall of each kind of
   error, runtime.
4. Precision at 50 with a fixed score (no learning): ``1 - boundary mean``
   for a false split, the merge score for a false merge; a candidate is
   right when ground truth says its edit is right
   (:func:`~napari_connectome.candidates.label_candidates`); also per kind
   (top 50 of each kind). The base rate (fraction right among all
   candidates) is printed beside it.

Merge errors that no cut between supervoxels can fix (a body lying inside
a supervoxel that mostly belongs to another body: only a split inside the
supervoxel fixes it) are counted in the recall, and also shown apart as
``(graph)``: the errors a graph cut can fix, and the recall over them.

Run::

    .venv/bin/python benchmarks/candidate_recall.py [--thresholds 0.5 0.7 0.97] [--skeletons] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def run(threshold: float, root: Path, *, min_voxels: int = 1000, k: int = 50, weakest_links: int = 2,
        skeletons: bool = False) -> dict:
    from napari_connectome.candidates import (
        candidate_recall,
        find_candidates,
        label_candidates,
        precision_at,
        simple_score,
        true_errors,
    )
    from napari_connectome.graph import agglomerate_project
    from napari_connectome.proofread import Proofreader
    from napari_connectome.samples import gala_fib_project

    project = gala_fib_project(root / f"gala-{threshold:g}")
    agglomerate_project(project, threshold=threshold)
    pr = Proofreader.open(project, user="benchmark")
    try:
        gt = np.asarray(project.open_input("groundtruth").levels[0].array[:, :, :])
        seg = np.asarray(pr.labels_volume().levels[0].array[:, :, :])
        sv = np.asarray(pr.supervoxel_volume().levels[0].array[:, :, :])
        errors = true_errors(seg, gt, min_voxels=min_voxels, supervoxels=sv)
        skels, t_skel = None, 0.0
        if skeletons:
            from napari_connectome.skeleton import skeletonize

            t0 = time.perf_counter()
            lv = pr.labels_volume().levels[0]
            skels = skeletonize(seg, voxel_size=lv.voxel_size, offset=lv.offset)
            t_skel = time.perf_counter() - t0
        t0 = time.perf_counter()
        cands = find_candidates(pr, weakest_links=weakest_links, skeletons=skels)
        t_find = time.perf_counter() - t0
        t0 = time.perf_counter()
        labels = label_candidates(cands, pr, gt)
        t_label = time.perf_counter() - t0
        scores = np.array([simple_score(c) for c in cands])
        rec = candidate_recall(cands, errors, labels=labels, scores=scores, k=k)
    finally:
        pr.close()
    kinds = np.array([c.kind for c in cands])
    per_kind = {
        kind: precision_at(labels[kinds == kind], scores[kinds == kind], k=k)["precision_at_k"]
        for kind in ("false_split", "false_merge")
    }
    kinds = kinds.tolist()
    return {
        "threshold": threshold,
        "segments": int(np.unique(seg[seg > 0]).size),
        "merge_errors": rec["merge_errors"],
        "split_errors": rec["split_errors"],
        "candidates_false_split": kinds.count("false_split"),
        "candidates_false_merge": kinds.count("false_merge"),
        "merge_recall": rec["merge_recall"],
        "split_recall": rec["split_recall"],
        "recall": rec["recall"],
        "merge_errors_graph": rec["merge_errors_graph"],
        "merge_recall_graph": rec["merge_recall_graph"],
        "precision_at_50": rec["precision_at_k"],
        "precision_at_50_false_split": per_kind["false_split"],
        "precision_at_50_false_merge": per_kind["false_merge"],
        "base_rate": float(labels.mean()) if labels.size else float("nan"),
        "find_s": t_find,
        "skeletonize_s": t_skel,
        "by_source": {src: sum(c.source == src for c in cands) for src in sorted({c.source for c in cands})},
        "label_s": t_label,
        "uncovered": [(e.kind, e.segments, e.bodies) for e in rec["uncovered"]],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.5, 0.7, 0.97])
    ap.add_argument("--min-voxels", type=int, default=1000)
    ap.add_argument("--weakest-links", type=int, default=2, help="last merges proposed per segment")
    ap.add_argument("--skeletons", action="store_true",
                    help="skeletonize every segment (kimimaro) and add the skeleton candidates and features")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [run(t, Path(tmp), min_voxels=args.min_voxels, weakest_links=args.weakest_links,
                    skeletons=args.skeletons) for t in args.thresholds]
    if args.json:
        print(json.dumps(rows, indent=1, default=str))
        return 0
    what = "graph and skeletons" if args.skeletons else "the graph only (no skeletons)"
    print(f"gala-fib test (bundled sample), candidates from {what}")
    head = ("T", "segs", "merge err", "(graph)", "split err", "cand FS", "cand FM", "merge rec", "(graph)",
            "split rec", "recall", "P@50", "P@50 FS", "P@50 FM", "base", "find s")
    print(" ".join(f"{h:>9}" for h in head))
    for r in rows:
        vals = (r["threshold"], r["segments"], r["merge_errors"], r["merge_errors_graph"], r["split_errors"],
                r["candidates_false_split"], r["candidates_false_merge"], r["merge_recall"], r["merge_recall_graph"],
                r["split_recall"], r["recall"], r["precision_at_50"], r["precision_at_50_false_split"],
                r["precision_at_50_false_merge"], r["base_rate"], r["find_s"])
        print(" ".join(f"{v:>9.3g}" if isinstance(v, float) else f"{v:>9}" for v in vals))
        print(f"{'':>9} candidates by source: {r['by_source']}")
        for u in r["uncovered"]:
            print(f"{'':>9} not covered: {u[0]} error, segments {u[1]}, bodies {u[2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
