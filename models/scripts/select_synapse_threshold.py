"""Choose a registered synapse model's detection threshold on its held-out training volume.

The mask probabilities of a network trained with a class-balanced loss are
not calibrated (recall near 0.94 at 0.5 on the held-out volume, precision
0.30), so the threshold ``napari-connectome synapses`` uses is chosen like
``segment``'s: on the volume the training held out (its seed is in the
weights' metadata; test seeds are never generated here), by the best site F
(:func:`napari_connectome.synapses.select.choose_detection`, with the pre ray's reach), and written into
the model's registry entry (``"detect"``).

Run from the repository root::

    python models/scripts/select_synapse_threshold.py [--model synapses-synthetic-10nm] [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REGISTRY = REPO / "models" / "napari_connectome_models" / "registry.json"


def main(argv=None) -> int:
    from napari_connectome.inference import predict_affinities
    from napari_connectome.inference.models import load_model
    from napari_connectome.synapses import SynapseTable
    from napari_connectome.synapses.select import (
        MIN_VOLUMES,
        ORIENT_RADII,
        REACHES,
        choose_detection,
        pool_curves,
        threshold_curve,
    )
    from napari_connectome.synthetic import SyntheticSpec, generate_block
    from napari_connectome.synthetic.synapses import synthetic_synapses

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="synapses-synthetic-10nm")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--shape", nargs=3, type=int, metavar=("Z", "Y", "X"),
                        help="render the held-out seed this large (default: the training volumes' shape); a "
                             "larger one holds more synapses to choose on, and is still never trained on")
    parser.add_argument("--extra-seeds", nargs="*", type=int, default=[],
                        help="more held-out volumes (seeds the training never used, below the test seeds' 300): "
                             "the scores are pooled over all, so the choice rests on more synapses")
    parser.add_argument("--dry-run", action="store_true", help="print the choice, do not write the registry")
    args = parser.parse_args(argv)

    entry, net, meta = load_model(args.model, task="synapses")
    data = meta["synthetic"]
    shape = tuple(args.shape) if args.shape else tuple(data["shape"])
    used = {int(s) for s in data.get("train_seeds", [])}
    seeds = [int(data["holdout_seed"]), *args.extra_seeds]
    if used & set(seeds) or any(s >= 300 for s in seeds):
        parser.error(f"held-out seeds {seeds} must be unused in training ({sorted(used)}) and below 300 (test seeds)")
    per_volume, n_truth = [], 0
    for seed in seeds:
        spec = SyntheticSpec(shape=shape, voxel_size=tuple(data["voxel_size"]), seed=seed,
                             synapse_density=float(data["synapse_density"]))
        raw, gt = generate_block(spec, tuple(slice(0, n) for n in spec.shape))
        truth = SynapseTable(**synthetic_synapses(spec).rows())
        n_truth += len(truth)
        block = (48, 80, 80) if len(set(spec.voxel_size)) == 1 else (24, 96, 96)
        prediction = predict_affinities(raw, net, block_shape=block, threads=args.threads)
        per_volume.append([threshold_curve(prediction, gt, truth, voxel_size=spec.voxel_size, offset=spec.offset,
                                           pre_reach_nm=reach, min_volume_nm3=v, raw=raw,
                                           orient_radius_nm=radius)
                           for reach in REACHES for v in MIN_VOLUMES for radius in ORIENT_RADII])
    curves = pool_curves(per_volume)
    for curve in curves:
        for row in curve:
            s, p = row["sites"], row["partners"]
            reach = "off" if row["pre_reach_nm"] is None else f"{row['pre_reach_nm']:g} nm"
            orient = "off" if row["orient_radius_nm"] is None else f"{row['orient_radius_nm']:g} nm"
            print(f"T {row['threshold']:.2f}, pre ray {reach}, pieces ≥ {row['min_volume_nm3']:.0e} nm³, "
                  f"orient {orient}: "
                  f"{row['detected']:3d} detected; sites P "
                  f"{s['precision']:.3f} R {s['recall']:.3f} F {s['f_score']:.3f}; partners F {p['f_score']:.3f}")
    best = choose_detection(curves)
    choice = {"threshold": best["threshold"], "pre_reach_nm": best["pre_reach_nm"],
              "min_volume_nm3": best["min_volume_nm3"], "orient_radius_nm": best["orient_radius_nm"],
              "heldout": {"sites": best["sites"], "partners": best["partners"]},
              "curve": [{"threshold": r["threshold"], "pre_reach_nm": r["pre_reach_nm"],
                         "min_volume_nm3": r["min_volume_nm3"], "orient_radius_nm": r["orient_radius_nm"],
                         "site_f": r["sites"]["f_score"], "partner_f": r["partners"]["f_score"]}
                        for curve in curves for r in curve],
              "data": f"synthetic seeds {seeds} (the training's held-out seed first, none trained on), each "
                      f"{list(spec.shape)} at {list(spec.voxel_size)} nm, {n_truth} connections in all, scores "
                      f"pooled; neurons from the true labels",
              "script": "models/scripts/select_synapse_threshold.py",
              "command": " ".join(["python models/scripts/select_synapse_threshold.py",
                                   *(sys.argv[1:] if argv is None else argv)])}
    print(f"chose T {best['threshold']:.2f}, pre ray {best['pre_reach_nm']}, pieces ≥ {best['min_volume_nm3']:.0e} nm³, "
          f"orient {best['orient_radius_nm']}: held-out site F {best['sites']['f_score']:.3f}, "
          f"partner F {best['partners']['f_score']:.3f}")
    if args.dry_run:
        return 0
    registry = json.loads(REGISTRY.read_text(encoding="utf-8"))
    for record in registry["models"]:
        if record["name"] == entry.name:
            record["detect"] = json.loads(json.dumps(choice, default=float))
    REGISTRY.write_text(json.dumps(registry, indent=2) + "\n", encoding="utf-8")
    print(f"wrote the choice into {REGISTRY}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
