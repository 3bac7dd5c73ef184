"""Raw EM -> U-Net affinities -> supervoxels -> merge tree on gala-fib *test*, threshold chosen without test.

Protocol (nothing is tuned on test):

* The network (``affinities-fib-10nm`` from the registry, or ``--weights``)
  was trained on gala-fib *train* with the columns ``x >= 150`` held out; the
  checkpoint, the supervoxel method and the agglomeration threshold ``T`` were
  chosen on that held-out box (stored in the weights' metadata by
  ``models/scripts/train_gala_fib.py``).
* Held-out train box: the figures at ``T`` (in-sample for ``T``: it was chosen there).
* Test: the whole test volume predicted (mirrored at its edges), the same
  post-processing, the merge tree at ``T``: VI split, merge, sum, ARAND (gt 0
  ignored, log2). Test's own best threshold is printed, labelled as such:
  it is an oracle, never a claim.
* gala's p1 boundary map through the same pipeline (our watershed supervoxels
  on p1, our region graph and merge tree): its watershed setting and
  threshold chosen the same way on the same held-out train box.

Run::

    python benchmarks/segment_gala.py [--data ../shared/data/gala-fib] [--weights FILE] [--ascent] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import h5py
import numpy as np

from napari_connectome.inference import predict_affinities, predict_affinities_flipped
from napari_connectome.segment import (
    PostProcess,
    boundary_from_affinities,
    merge_tree,
    sweep_thresholds,
)
from napari_connectome.train.select import CANDIDATES, THRESHOLDS

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "gala-fib"
MODEL = "affinities-fib-10nm"
HOLDOUT_X = 150
TARGET = 0.52


def read(data: Path, split: str, name: str) -> np.ndarray:
    with h5py.File(data / f"{split}-{name}.h5", "r") as f:
        return f["stack"][...]


def curve_of(supervoxels, boundary, gt) -> np.ndarray:
    return sweep_thresholds(merge_tree(supervoxels, boundary), supervoxels, gt, THRESHOLDS)


def row(curve: np.ndarray, threshold: float) -> dict:
    i = int(np.argmin(np.abs(THRESHOLDS - threshold)))
    s, m, a = (float(v) for v in curve[i])
    return {"threshold": float(THRESHOLDS[i]), "vi_split": s, "vi_merge": m, "vi": s + m, "arand": a}


def best_row(curve: np.ndarray) -> dict:
    return row(curve, float(THRESHOLDS[int(np.argmin(curve[:, 0] + curve[:, 1]))]))


def evaluate_network(model, metadata: dict, data: Path) -> dict:
    pp = PostProcess(**metadata["heldout"]["postprocess"])
    threshold = float(metadata["heldout"]["threshold"])
    offsets = model.config.offsets
    flip_average = bool(metadata.get("flip_average", False))
    predict = predict_affinities_flipped if flip_average else predict_affinities
    out = {"postprocess": pp.to_dict(), "threshold": threshold, "iteration": metadata.get("iteration"),
           "flip_average": flip_average}
    for split in ("train", "test"):
        t0 = time.perf_counter()
        raw, gt = read(data, split, "image"), read(data, split, "gt.lzf")
        aff = predict(raw, model)
        t_pred = time.perf_counter() - t0
        if split == "train":
            aff, gt = aff[..., HOLDOUT_X:], gt[..., HOLDOUT_X:]
        boundary = boundary_from_affinities(aff, offsets)
        sv = pp.supervoxels(aff, offsets, boundary)
        curve = curve_of(sv, boundary, gt)
        key = "heldout" if split == "train" else "test"
        out[key] = {"at_train_threshold": row(curve, threshold), "own_best": best_row(curve),
                    "n_supervoxels": int(sv.max()), "predict_seconds": t_pred}
    return out


def evaluate_ascent(model, metadata: dict, data: Path, entry) -> dict:
    """What ``segment`` makes, in memory: no flip averaging, steepest-ascent supervoxels (exact in blocks),
    the options and threshold chosen on the held-out box (weights' metadata, else the registry entry)."""
    from napari_connectome.segment.project_run import chosen_postprocess

    pp, threshold = chosen_postprocess(entry, metadata)
    if threshold is None:
        raise SystemExit("this model has no choice for segment: run models/scripts/select_segment.py")
    curves, counts = {}, {}
    for split in ("train", "test"):
        raw, gt = read(data, split, "image"), read(data, split, "gt.lzf")
        aff = predict_affinities(raw, model)
        if split == "train":
            aff, gt = aff[..., HOLDOUT_X:], gt[..., HOLDOUT_X:]
        boundary = boundary_from_affinities(aff, model.config.offsets)
        sv = pp.supervoxels(aff, model.config.offsets, boundary)
        curves[split] = curve_of(sv, boundary, gt)
        counts[split] = int(sv.max())
    return {"postprocess": pp.to_dict(), "threshold": threshold, "heldout": row(curves["train"], threshold),
            "test": {"at_train_threshold": row(curves["test"], threshold), "own_best": best_row(curves["test"]),
                     "n_supervoxels": counts["test"]}}


def evaluate_p1(data: Path) -> dict:
    p_tr = read(data, "train", "p1.lzf")[..., HOLDOUT_X:]
    gt_tr = read(data, "train", "gt.lzf")[..., HOLDOUT_X:]
    best = None
    for pp in (c for c in CANDIDATES if c.method == "watershed"):
        sv = pp.supervoxels(None, None, p_tr)
        r = best_row(curve_of(sv, p_tr, gt_tr))
        if best is None or r["vi"] < best[1]["vi"]:
            best = (pp, r)
    pp, held = best
    p_te, gt_te = read(data, "test", "p1.lzf"), read(data, "test", "gt.lzf")
    sv = pp.supervoxels(None, None, p_te)
    curve = curve_of(sv, p_te, gt_te)
    return {"postprocess": pp.to_dict(), "threshold": held["threshold"], "heldout": held,
            "test": {"at_train_threshold": row(curve, held["threshold"]), "own_best": best_row(curve),
                     "n_supervoxels": int(sv.max())}}


def load(args):
    from napari_connectome_models.nets.unet import load_network, network_metadata

    if args.weights is not None:
        return load_network(args.weights), network_metadata(args.weights), str(args.weights)
    from napari_connectome_models.registry import load_network as load_registered
    from napari_connectome_models.registry import load_registry, weights_path

    model = load_registered(args.model)
    path = weights_path(load_registry()[args.model])
    return model, network_metadata(path), f"registry:{args.model}"


def fmt(r: dict) -> str:
    return (f"T {r['threshold']:.2f}: VI split {r['vi_split']:.3f} + merge {r['vi_merge']:.3f} = {r['vi']:.3f}, "
            f"ARAND {r['arand']:.3f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default=MODEL, help="registry name")
    parser.add_argument("--weights", type=Path, help="a weights file instead of the registry's")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-p1", action="store_true")
    parser.add_argument("--ascent", action="store_true",
                        help="also what `segment` makes: steepest-ascent supervoxels (exact in blocks), no flip "
                             "averaging, options and threshold chosen for it on the held-out box")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not (args.data / "test-image.h5").is_file():
        print(f"{args.data}: gala-fib data not found", file=sys.stderr)
        return 2
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model, metadata, source = load(args)
    net = evaluate_network(model, metadata, args.data)
    p1 = None if args.no_p1 else evaluate_p1(args.data)
    entry = None
    if args.weights is None:
        from napari_connectome_models.registry import load_registry

        entry = load_registry()[args.model]
    ascent = evaluate_ascent(model, metadata, args.data, entry) if args.ascent else None
    result = {"model": source, "network": net, "p1": p1, "ascent": ascent, "target_test_vi": TARGET,
              "seconds": time.perf_counter() - t0}
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"gala-fib, {source} (iteration {net['iteration']}); gt 0 ignored, log2")
    print(f"chosen on held-out train (x >= {HOLDOUT_X}): flip-average {net['flip_average']}, {net['postprocess']}")
    print(f"  held-out train  {fmt(net['heldout']['at_train_threshold'])}  (T chosen here: in-sample)")
    t = net["test"]["at_train_threshold"]
    print(f"  TEST            {fmt(t)}  [{net['test']['n_supervoxels']} supervoxels] "
          f"(target <= {TARGET}: {'reached' if t['vi'] <= TARGET else 'NOT reached'})")
    print(f"  test-chosen T (oracle, reference only): {fmt(net['test']['own_best'])}")
    if p1 is not None:
        print(f"gala p1 through the same pipeline, chosen on the same held-out box: {p1['postprocess']}")
        print(f"  held-out train  {fmt(p1['heldout'])}")
        print(f"  TEST            {fmt(p1['test']['at_train_threshold'])}")
        print(f"  test-chosen T (oracle, reference only): {fmt(p1['test']['own_best'])}")
    if ascent is not None:
        print(f"segment's supervoxels (steepest ascent, exact in blocks; no flip averaging), chosen on the held-out "
              f"box: {ascent['postprocess']} at T {ascent['threshold']:.2f}")
        print(f"  held-out train  {fmt(ascent['heldout'])}")
        print(f"  TEST            {fmt(ascent['test']['at_train_threshold'])}  "
              f"[{ascent['test']['n_supervoxels']} supervoxels]")
        print(f"  test-chosen T (oracle, reference only): {fmt(ascent['test']['own_best'])}")
    print(f"({result['seconds']:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
