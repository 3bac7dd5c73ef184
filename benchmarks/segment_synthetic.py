"""Raw EM -> U-Net affinities -> supervoxels -> merge tree on synthetic *test* volumes, threshold chosen without test.

The protocol of ``benchmarks/segment_gala.py`` on synthetic EM
(:mod:`napari_connectome.synthetic`):

* The network (``--weights``, written by ``models/scripts/train_synthetic.py``)
  was trained on synthetic volumes of its train seeds; the last train seed's
  volume was held out and chose the checkpoint, the supervoxel method and the
  agglomeration threshold ``T`` (all in the weights' metadata, with the held-out
  figures: in-sample for ``T``).
* Test: one volume per ``--test-seeds`` seed (seeds the training never used;
  refused when they overlap the weights' train seeds), at the voxel size the
  network was trained for, predicted whole (mirrored at its edges), the same
  post-processing, the merge tree at ``T``: VI split, merge, sum, ARAND (gt 0 =
  extracellular space ignored, log2), per seed and their mean. The threshold
  that minimises the mean test VI is printed, labelled as such: an oracle,
  never a claim.
* Reference: the shipped ``affinities-fib-10nm`` (gala-fib FIB-SEM at 10 nm)
  applied as is, no fine-tuning: (a) with its own post-processing and threshold
  (chosen on gala-fib); (b) the same post-processing with ``T`` chosen on the
  synthetic held-out train volume (the one that chose our model's ``T``);
  (c) its test-chosen ``T`` (oracle).

Run::

    python benchmarks/segment_synthetic.py --weights W [--test-seeds 900 901] [--test-shape Z Y X] \
        [--segment] [--reference ''] [--json | --save-json FILE]
    python benchmarks/segment_synthetic.py --from-json FILE   # the text of saved results
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from napari_connectome.inference import predict_affinities, predict_affinities_flipped
from napari_connectome.segment import (
    PostProcess,
    boundary_from_affinities,
    merge_tree,
    sweep_thresholds,
)
from napari_connectome.train.select import THRESHOLDS

REFERENCE = "affinities-fib-10nm"


def generate(seed: int, shape, voxel_size) -> tuple[np.ndarray, np.ndarray]:
    """Raw (uint8) and ground truth (uint32, 0 = extracellular) of one synthetic volume."""
    from napari_connectome.synthetic import SyntheticSpec, generate_block

    spec = SyntheticSpec(shape=tuple(int(s) for s in shape), voxel_size=tuple(float(v) for v in voxel_size),
                         seed=int(seed))
    return generate_block(spec, tuple((0, n) for n in spec.shape))


def connectivity_floor(gt: np.ndarray) -> dict:
    """VI and ARAND of gt's own 6-connected pieces against gt.

    A synthetic neurite that leaves the volume and comes back (or, at 40 nm
    sections, a thin one that touches itself only diagonally) keeps one label in
    pieces that share no face; a segmentation grown from adjacent supervoxels
    cannot join them, so this split is a floor no network can go below.
    """
    from scipy import ndimage as ndi

    from napari_connectome.metrics import arand_from_table, contingency_table, vi_from_table

    pieces = np.zeros(gt.shape, dtype=np.int64)
    n = 0
    for label in np.unique(gt[gt > 0]):
        lab, k = ndi.label(gt == label)
        pieces[lab > 0] = lab[lab > 0] + n
        n += k
    table = contingency_table(pieces, gt)
    split, merge = vi_from_table(table)
    return {"n_gt_objects": int(len(np.unique(gt[gt > 0]))), "n_pieces": n, "vi_split": split,
            "vi_merge": merge, "vi": split + merge, "arand": arand_from_table(table)}


def row(curve: np.ndarray, threshold: float) -> dict:
    i = int(np.argmin(np.abs(THRESHOLDS - threshold)))
    s, m, a = (float(v) for v in curve[i])
    return {"threshold": float(THRESHOLDS[i]), "vi_split": s, "vi_merge": m, "vi": s + m, "arand": a}


def best_threshold(curve: np.ndarray) -> float:
    return float(THRESHOLDS[int(np.argmin(curve[:, 0] + curve[:, 1]))])


def curve_of(raw: np.ndarray, gt: np.ndarray, model, pp: PostProcess, flip_average: bool,
             voxel_size=(1.0, 1.0, 1.0)) -> tuple[np.ndarray, int]:
    """Threshold sweep (VI split, merge, ARAND per threshold) and the number of supervoxels."""
    predict = predict_affinities_flipped if flip_average else predict_affinities
    aff = predict(raw, model)
    offsets = model.config.offsets
    boundary = boundary_from_affinities(aff, offsets)
    sv = pp.supervoxels(aff, offsets, boundary, voxel_size=voxel_size)
    return sweep_thresholds(merge_tree(sv, boundary), sv, gt, THRESHOLDS), int(sv.max())


def evaluate(model, pp: PostProcess, flip_average: bool, tests: dict, thresholds: dict,
             voxel_size=(1.0, 1.0, 1.0)) -> dict:
    """Per test seed and mean: the figures at each named threshold, and the mean-VI oracle."""
    curves, per_seed = {}, {}
    for seed, (raw, gt) in tests.items():
        t0 = time.perf_counter()
        curve, n_sv = curve_of(raw, gt, model, pp, flip_average, voxel_size)
        curves[seed] = curve
        per_seed[seed] = {"n_supervoxels": n_sv, "n_gt_objects": int(len(np.unique(gt[gt > 0]))),
                          "seconds": time.perf_counter() - t0,
                          **{name: row(curve, t) for name, t in thresholds.items()}}
    mean = np.mean(list(curves.values()), axis=0)
    oracle = best_threshold(mean)
    return {"per_seed": per_seed,
            "mean": {**{name: row(mean, t) for name, t in thresholds.items()}, "test_chosen_oracle": row(mean, oracle)},
            "test_chosen_oracle_per_seed": {s: row(c, best_threshold(c)) for s, c in curves.items()}}


def fmt(r: dict) -> str:
    return (f"T {r['threshold']:.2f}: VI split {r['vi_split']:.3f} + merge {r['vi_merge']:.3f} = {r['vi']:.3f}, "
            f"ARAND {r['arand']:.3f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", type=Path, help="written by models/scripts/train_synthetic.py (required)")
    parser.add_argument("--voxel-size", nargs=3, type=float, metavar=("Z", "Y", "X"),
                        help="default: the voxel size the weights were trained for (must match it)")
    parser.add_argument("--test-seeds", nargs="+", type=int, default=[900, 901])
    parser.add_argument("--test-shape", nargs=3, type=int, metavar=("Z", "Y", "X"),
                        help="default: the shape of the training volumes")
    parser.add_argument("--reference", default=REFERENCE, help="registry model applied as is ('' for none)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--segment", action="store_true",
                        help="also what `segment` makes: steepest-ascent supervoxels, no flip averaging, options "
                             "and threshold chosen for them on the held-out seed")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of text")
    parser.add_argument("--save-json", type=Path, metavar="FILE", help="also write the results as JSON here")
    parser.add_argument("--floor", action="store_true",
                        help="only the split floor of the test volumes' gt (gt's 6-connected pieces against gt)")
    parser.add_argument("--from-json", type=Path, metavar="FILE", help="print the text of saved JSON results")
    args = parser.parse_args(argv)
    if args.from_json is not None:
        report(json.loads(args.from_json.read_text()))
        return 0
    import torch
    from napari_connectome_models.nets.unet import load_network, network_metadata

    if args.weights is None:
        parser.error("--weights is required")
    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    metadata = network_metadata(args.weights)
    syn = metadata.get("synthetic")
    if syn is None:
        print(f"{args.weights}: no synthetic training metadata (not written by train_synthetic.py)", file=sys.stderr)
        return 2
    voxel_size = [float(v) for v in (args.voxel_size or syn["voxel_size"])]
    if voxel_size != [float(v) for v in syn["voxel_size"]]:
        print(f"--voxel-size {voxel_size} differs from the training voxel size {syn['voxel_size']}", file=sys.stderr)
        return 2
    used = set(syn["train_seeds"]) | {syn["holdout_seed"]}
    if used & set(args.test_seeds):
        print(f"test seeds {sorted(used & set(args.test_seeds))} were used in training", file=sys.stderr)
        return 2
    shape = tuple(args.test_shape or syn["shape"])
    tests = {int(s): generate(s, shape, voxel_size) for s in args.test_seeds}
    floor = {seed: connectivity_floor(gt) for seed, (_, gt) in tests.items()}
    if args.floor:
        for seed, f in floor.items():
            print(f"seed {seed}: {f['n_gt_objects']} gt objects in {f['n_pieces']} 6-connected pieces; floor "
                  f"VI split {f['vi_split']:.3f} + merge {f['vi_merge']:.3f}, ARAND {f['arand']:.3f}")
        return 0

    model = load_network(args.weights)
    pp = PostProcess(**metadata["heldout"]["postprocess"])
    threshold = float(metadata["heldout"]["threshold"])
    flip = bool(metadata.get("flip_average", False))
    net = {"weights": str(args.weights), "iteration": metadata.get("iteration"), "postprocess": pp.to_dict(),
           "flip_average": flip, "threshold": threshold, "heldout": metadata["heldout"],
           "test": evaluate(model, pp, flip, tests, {"train_chosen": threshold})}

    seg = None
    if args.segment:
        # what `segment` makes: no flip averaging, steepest-ascent supervoxels, chosen on the held-out seed
        from napari_connectome.train.select import select_for_segment

        raw_h, gt_h = generate(syn["holdout_seed"], syn["shape"], voxel_size)
        choice = select_for_segment(model, raw_h, gt_h, holdout_x=0, voxel_size=voxel_size, log=lambda _s: None)
        spp, st = PostProcess(**choice["postprocess"]), float(choice["threshold"])
        seg = {"postprocess": spp.to_dict(), "threshold": st, "heldout": choice,
               "test": evaluate(model, spp, False, tests, {"train_chosen": st}, voxel_size)}

    ref = None
    if args.reference:
        from napari_connectome_models.registry import load_network as load_registered
        from napari_connectome_models.registry import load_registry, weights_path

        rmodel = load_registered(args.reference)
        rmeta = network_metadata(weights_path(load_registry()[args.reference]))
        rpp = PostProcess(**rmeta["heldout"]["postprocess"])
        rflip = bool(rmeta.get("flip_average", False))
        r_own = float(rmeta["heldout"]["threshold"])
        raw_h, gt_h = generate(syn["holdout_seed"], syn["shape"], voxel_size)
        curve_h, _ = curve_of(raw_h, gt_h, rmodel, rpp, rflip)
        r_held = best_threshold(curve_h)
        ref = {"model": args.reference, "postprocess": rpp.to_dict(), "flip_average": rflip,
               "own_threshold": r_own, "synthetic_heldout_threshold": r_held,
               "heldout": {"own": row(curve_h, r_own), "synthetic_heldout_chosen": row(curve_h, r_held)},
               "test": evaluate(rmodel, rpp, rflip, tests,
                                {"own": r_own, "synthetic_heldout_chosen": r_held})}

    result = {"voxel_size": voxel_size, "test_seeds": list(tests), "test_shape": list(shape), "synthetic": syn,
              "floor": floor,
              "network": net, "segment": seg, "reference": ref, "seconds": time.perf_counter() - t_start}
    if args.save_json is not None:
        args.save_json.write_text(json.dumps(result, indent=1))
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    report(result)
    return 0


def report(result: dict) -> None:
    """The figures as text."""
    net, ref = result["network"], result["reference"]
    syn = result.get("synthetic")
    if syn is None:  # results saved before "synthetic" was part of them
        from napari_connectome_models.nets.unet import network_metadata

        syn = network_metadata(net["weights"])["synthetic"]
    pp, flip, heldout = net["postprocess"], net["flip_average"], net["heldout"]
    vs = "x".join(f"{v:g}" for v in result["voxel_size"])
    print(f"synthetic {vs} nm, test seeds {result['test_seeds']} (shape {result['test_shape']}; never trained on); "
          f"gt 0 (extracellular) ignored, log2")
    print(f"{net['weights']} (iteration {net['iteration']}; train seeds {syn['train_seeds']}, "
          f"held-out seed {syn['holdout_seed']})")
    print(f"chosen on held-out train seed {syn['holdout_seed']}: flip-average {flip}, {pp}")
    print(f"  held-out train  {fmt(heldout)}  (T chosen here: in-sample)")
    t = net["test"]
    for seed, r in t["per_seed"].items():
        print(f"  TEST seed {seed}   {fmt(r['train_chosen'])}  [{r['n_supervoxels']} supervoxels, "
              f"{r['n_gt_objects']} gt objects]")
    print(f"  TEST mean       {fmt(t['mean']['train_chosen'])}  (train-chosen T)")
    for seed, f in result.get("floor", {}).items():
        print(f"  (floor, seed {seed}: gt's {f['n_pieces']} 6-connected pieces against gt: VI split "
              f"{f['vi_split']:.3f}, ARAND {f['arand']:.3f}; no merge tree can join pieces that share no face)")
    print(f"  test-chosen T (oracle, reference only): mean {fmt(t['mean']['test_chosen_oracle'])}")
    seg = result.get("segment")
    if seg is not None:
        st = seg["test"]
        print(f"what `segment` makes (steepest ascent, exact in blocks; no flip averaging), chosen on held-out seed "
              f"{syn['holdout_seed']}: {seg['postprocess']} at T {seg['threshold']:.2f}")
        print(f"  held-out train  {fmt(seg['heldout'])}  (T chosen here: in-sample)")
        for seed, r in st["per_seed"].items():
            print(f"  TEST seed {seed}   {fmt(r['train_chosen'])}  [{r['n_supervoxels']} supervoxels]")
        print(f"  TEST mean       {fmt(st['mean']['train_chosen'])}  (train-chosen T)")
        print(f"  test-chosen T (oracle, reference only): mean {fmt(st['mean']['test_chosen_oracle'])}")
    if ref is not None:
        rt = ref["test"]
        print(f"reference {ref['model']} applied as is (no fine-tuning): flip-average {ref['flip_average']}, "
              f"{ref['postprocess']}")
        print(f"  (a) its own T (chosen on gala-fib): TEST mean {fmt(rt['mean']['own'])}")
        for seed, r in rt["per_seed"].items():
            print(f"        seed {seed}  {fmt(r['own'])}")
        print(f"  (b) T chosen on synthetic held-out seed {syn['holdout_seed']}: held-out "
              f"{fmt(ref['heldout']['synthetic_heldout_chosen'])} (in-sample)")
        print(f"      TEST mean {fmt(rt['mean']['synthetic_heldout_chosen'])}")
        for seed, r in rt["per_seed"].items():
            print(f"        seed {seed}  {fmt(r['synthetic_heldout_chosen'])}")
        print(f"  (c) test-chosen T (oracle, reference only): mean {fmt(rt['mean']['test_chosen_oracle'])}")
    print(f"({result['seconds']:.1f} s)")


if __name__ == "__main__":
    raise SystemExit(main())
