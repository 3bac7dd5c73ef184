"""Train the synapse U-Net (Synful-style mask + vector) on synthetic EM and export the best checkpoint.

Every seed in ``--train-seeds`` is one volume of ``--shape`` voxels at
``--voxel-size`` nm from :mod:`napari_connectome.synthetic` with
``synapse_density`` sites per µm³ (T-bars, vesicles, PSDs painted; the
ground-truth table from :func:`~napari_connectome.synthetic.synapses.synthetic_synapses`).
The **last** train seed's volume is held out: it is never trained on and
chooses the checkpoint. Test seeds (300 and up) are never generated here.

At every checkpoint the network predicts the whole held-out volume through
:func:`napari_connectome.inference.predict_affinities` (the blockwise
predictor, as inference will run it) and the log records the voxel-level mask
F1 at 0.5 and the median error (nm) of the predicted pre points over the true
mask voxels. Export picks the checkpoint with the best F1, preferring among
those within ``--f1-tolerance`` of it the smallest vector error, measures it
again, and writes the weights with the figures in their metadata; with
``--register`` it also writes the registry entry and the model card from
those measured figures.

Run (resumes from the newest checkpoint in ``--run``)::

    nohup nice -n 19 python models/scripts/train_synapses.py --run /work/synnet-runs/syn-10nm \
        --iterations 3000 --threads 1 > train.log 2>&1 &
    nice -n 19 python models/scripts/train_synapses.py --run /work/synnet-runs/syn-10nm --no-train \
        --out models/napari_connectome_models/weights/synapses-synthetic-10nm.pt --register
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

NAME = "synapses-synthetic-10nm"


def default_name(voxel_size) -> str:
    """``synapses-synthetic-10nm`` for isotropic 10 nm, else e.g. ``synapses-synthetic-40x8x8nm``."""
    vs = [float(v) for v in voxel_size]
    if len(set(vs)) == 1:
        return f"synapses-synthetic-{vs[0]:g}nm"
    return "synapses-synthetic-" + "x".join(f"{v:g}" for v in vs) + "nm"
MODELS = Path(__file__).resolve().parents[1] / "napari_connectome_models"


def spec_of(seed: int, shape, voxel_size, density: float):
    """The synthetic spec of one volume (defaults otherwise)."""
    from napari_connectome.synthetic import SyntheticSpec

    return SyntheticSpec(shape=tuple(int(s) for s in shape), voxel_size=tuple(float(v) for v in voxel_size),
                         seed=int(seed), synapse_density=float(density))


def generate(seed: int, shape, voxel_size, density: float):
    """``(raw uint8, gt uint32, synapse table)`` of one synthetic volume."""
    from napari_connectome.synthetic import generate_block
    from napari_connectome.synthetic.synapses import synthetic_synapses

    spec = spec_of(seed, shape, voxel_size, density)
    raw, gt = generate_block(spec, tuple((0, n) for n in spec.shape))
    return raw, gt, synthetic_synapses(spec).rows()


def heldout(raw, gt, rows, *, voxel_size, mask_radius_nm: float, block_shape):
    """A validate callback: mask F1 and vector error on the whole held-out volume, blockwise."""
    from napari_connectome.inference import predict_affinities
    from napari_connectome.train.synapse_loop import synapse_scores
    from napari_connectome.train.synapse_targets import synapse_targets

    mask, vectors = synapse_targets(rows, gt, voxel_size=voxel_size, mask_radius_nm=mask_radius_nm)

    def validate(model, iteration: int) -> dict:
        pred = predict_affinities(raw, model, block_shape=block_shape)
        return {f"val_{k}": v for k, v in synapse_scores(pred, mask, vectors).items()}

    return validate


def choose(log_path: Path, tolerance: float) -> dict:
    """The log record of the checkpoint to export: best F1, then smallest vector error within ``tolerance``."""
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    scored = [r for r in records if r.get("val_f1") is not None]
    if not scored:
        raise SystemExit(f"{log_path}: no held-out figures logged yet")
    best = max(r["val_f1"] for r in scored)
    close = [r for r in scored if r["val_f1"] >= best - tolerance]
    return min(close, key=lambda r: (np.nan_to_num(r["val_vector_error_nm"], nan=np.inf), -r["iteration"]))


def write_card(path: Path, info: dict) -> None:
    """The model card, its figures taken from the export's measurement."""
    h, d, t = info["holdout_scores"], info["synthetic"], info["train_config"]
    name = info["name"]
    net = t["net"]
    flags = [f"--train-seeds {' '.join(str(v) for v in [*d['train_seeds'], d['holdout_seed']])}",
             f"--shape {' '.join(str(v) for v in d['shape'])}",
             f"--voxel-size {' '.join(f'{v:g}' for v in d['voxel_size'])}",
             f"--synapse-density {d['synapse_density']:g} --mask-radius {d['mask_radius_nm']:g}",
             f"--input-shape {' '.join(str(v) for v in t['input_shape'])} --base-features {net['base_features']}",
             f"--seed {t['seed']} --lr {t['lr']:g} --iterations {t['iterations']}",
             f"--checkpoint-every {t['checkpoint_every']} --threads {t['threads']}",
             f"--hard-negative-weight {t.get('hard_negative_weight', 0.0):g} "
             f"--hard-radius {d.get('hard_radius_nm', 150.0):g}"]
    init = info.get("init")
    if init:
        flags.append("--init INIT.pt")
    start = (f"""
## Starting weights

Fine-tuned from weights with sha256 `{init['sha256']}` (`--init`), which were made by:

    {init.get('measured_by', 'unknown')}

(that model's card, in the git history of this file, states its data and figures).
""" if init else "")
    command = " \\\n    ".join(["nice -n 19 python models/scripts/train_synapses.py --run RUN", *flags])
    history = "\n".join(f"| {r['iteration']} | {r['val_f1']:.4f} | {r['val_precision']:.4f} | {r['val_recall']:.4f} "
                        f"| {r['val_vector_error_nm']:.1f} |" for r in info["history"])
    stopped = (f"The run was stopped at iteration {info['iterations_run']} of the {t['iterations']} asked for "
               "(a CPU time budget); the" if info["iterations_run"] < t["iterations"] else "The")
    text = f"""# {name}

Synful-style synapse network (Buhmann et al. 2021, funkelab/synful): a 3D U-Net with
valid convolutions (`napari_connectome_models.nets.synapse.SynapseUNet`) that predicts,
per voxel, 4 channels:

* channel 0: probability (sigmoid) that the voxel lies in a **post-synaptic mask**
  (within {d['mask_radius_nm']:g} nm of a post-synaptic point, inside the post-synaptic neuron);
* channels 1..3: the vector (z, y, x) from the voxel centre to its synapse's
  **pre-synaptic point**, in units of 100 nm (no activation).

Load it with `napari_connectome_models.registry.load_network("{name}")`; run it with
`napari_connectome.inference.predict_affinities` (blockwise equals whole-volume).

## Network

* pooling {net['downsample']}, {net['base_features']} base feature maps, factor {net['feature_factor']}
* voxel size {info['voxel_size_nm']} nm (z, y, x); context {info['context_voxels']} voxels per side
* training input {t['input_shape']} -> output {info['output_shape']}
* weights: {info['size_bytes']} bytes, sha256 `{info['sha256']}`

## Data

Synthetic only: `napari_connectome.synthetic`, `SyntheticSpec` defaults except
shape {d['shape']}, voxel size {d['voxel_size']} nm and `synapse_density={d['synapse_density']:g}`
(sites per µm³; T-bars, vesicle clouds and PSDs painted at contacts between neurites).
Ground truth: `synthetic_synapses(spec)`, one row per pre→post connection.

* training seeds: {d['train_seeds']} ({d['train_rows']} connections in all)
* held-out seed (checkpoint choice only, never trained on): {d['holdout_seed']} ({d['holdout_rows']} connections)
* test seeds 300 and up are never generated by the training script.

Real EM looks different; this network is a stand-in that lets the synapse pipeline run end to end,
not a detector for real data.

## Protocol

`models/scripts/train_synapses.py`: Adam (lr {t['lr']}), batch {t['batch_size']}, seed {t['seed']},
{t['threads']} torch thread(s); every iteration's patches from `default_rng([seed, iteration])`;
a fraction {t['near_fraction']} of the patches centred near a post point, the rest uniform;
loss = class-balanced BCE on the mask + {t['vector_weight']:g} x MSE on the vectors over true mask
voxels; flips and axis permutations (vectors transformed with them) and intensity augmentation,
no elastic deformation; negatives within {d.get('hard_radius_nm', 150.0):g} nm of a post point weigh
{t.get('hard_negative_weight', 0.0):g} of a positive (0: class balancing alone). Checkpoints every {t['checkpoint_every']} iterations, each scored on the
whole held-out volume (predicted blockwise); exported: iteration **{info['iteration']}** of
{info['iterations_run']} run (best mask F1, smallest vector error within {info['f1_tolerance']} of it).

{start}
## Held-out figures (measured at export on seed {d['holdout_seed']})

| measure | value |
|---|---|
| mask F1 (voxel level, threshold 0.5) | {h['f1']:.4f} |
| mask precision | {h['precision']:.4f} |
| mask recall | {h['recall']:.4f} |
| median vector error (nm, over true mask voxels) | {h['vector_error_nm']:.1f} |
| 90th percentile vector error (nm) | {h['vector_error_nm_p90']:.1f} |
| true mask voxels | {h['mask_voxels']} |

## Reproduce

```sh
{command}
{command} --no-train \\
    --out models/napari_connectome_models/weights/{name}.pt --register
```

{stopped} second command chooses among the checkpoints the log holds, measures the
chosen one again and writes the weights, this card and the registry entry. Bit-identical
weights need the same thread count and machine.

These are voxel-level figures on one synthetic volume; detection-level scores (synapses found,
partners right) need the detection step that turns masks and vectors into synapses. The
class-balanced mask loss trades precision for recall: channel 0 is not a calibrated probability,
and detection should choose its own threshold on held-out data.

## Every checkpoint on the held-out volume (from the run's log)

| iteration | mask F1 | precision | recall | median vector error (nm) |
|---|---|---|---|---|
{history}
"""
    path.write_text(text, encoding="utf-8")


def register(info: dict) -> None:
    """Add or replace the registry entry of ``info["name"]``."""
    path = MODELS / "registry.json"
    registry = json.loads(path.read_text())
    name = info["name"]
    entry = {"name": name, "task": "synapses", "file": f"weights/{name}.pt", "sha256": info["sha256"],
             "voxel_size_nm": info["voxel_size_nm"], "fov_voxels": info["train_config"]["input_shape"],
             "output_shape": info["output_shape"], "context_voxels": info["context_voxels"],
             "card": f"cards/{name}.md"}
    registry["models"] = [m for m in registry["models"] if m["name"] != name] + [entry]
    path.write_text(json.dumps(registry, indent=2) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--voxel-size", nargs=3, type=float, default=[10.0, 10.0, 10.0], metavar=("Z", "Y", "X"))
    parser.add_argument("--train-seeds", nargs="+", type=int, default=[200, 201, 202, 203, 204, 205],
                        help="synthetic seeds; the last one is held out (checkpoint choice only)")
    parser.add_argument("--shape", nargs=3, type=int, default=[96, 160, 160], metavar=("Z", "Y", "X"))
    parser.add_argument("--synapse-density", type=float, default=3.0, help="sites per µm³")
    parser.add_argument("--mask-radius", type=float, default=80.0, help="post-synaptic mask radius, nm")
    parser.add_argument("--input-shape", nargs=3, type=int, default=[64, 80, 80], metavar=("Z", "Y", "X"))
    parser.add_argument("--base-features", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0, help="training seed (weights, patches)")
    parser.add_argument("--run", type=Path, required=True, help="checkpoint folder (outside git)")
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--checkpoint-every", type=int, default=100)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the chosen checkpoint's weights here")
    parser.add_argument("--register", action="store_true", help="with --out: write the registry entry and card")
    parser.add_argument("--predict-block", nargs=3, type=int, default=[48, 80, 80], metavar=("Z", "Y", "X"),
                        help="output block of the held-out prediction")
    parser.add_argument("--f1-tolerance", type=float, default=0.01)
    parser.add_argument("--no-train", action="store_true", help="only choose and export")
    parser.add_argument("--init", type=Path, help="start from these synapse weights (fine-tuning)")
    parser.add_argument("--hard-negative-weight", type=float, default=0.0,
                        help="weight of a negative voxel near a synapse, as a fraction of a positive's (default 0)")
    parser.add_argument("--hard-radius", type=float, default=150.0,
                        help="negatives within this distance of a post point are hard, nm (default 150)")
    parser.add_argument("--name", help="registry name (default: from the voxel size, e.g. synapses-synthetic-10nm)")
    args = parser.parse_args(argv)
    name = args.name or default_name(args.voxel_size)
    if len(args.train_seeds) < 2:
        parser.error("--train-seeds needs at least two seeds (the last one is held out)")
    if args.register and (args.out is None or args.out.resolve() != MODELS / "weights" / f"{name}.pt"):
        parser.error(f"--register needs --out {MODELS / 'weights' / (name + '.pt')}")
    if any(s >= 300 for s in args.train_seeds):
        parser.error("seeds 300 and up are test seeds")
    import torch
    from napari_connectome_models.nets.synapse import SynapseNetConfig, save_synapse_network

    from napari_connectome.train.synapse_loop import (
        SynapseTrainConfig,
        SynapseVolume,
        synapse_augment,
        synapse_network_from_checkpoint,
        train_synapses,
    )

    torch.set_num_threads(args.threads)
    vs = tuple(float(v) for v in args.voxel_size)
    if vs[1] != vs[2]:
        parser.error("y and x voxel sizes must be equal")
    # Isotropic: pooling 2 on every axis, all 48 flips/permutations. Anisotropic (z coarser): the
    # affinity networks' ANISOTROPIC pooling, flips on every axis and permutations of y and x only.
    isotropic = len(set(vs)) == 1
    shape = tuple(args.shape)
    train_seeds, holdout_seed = [int(s) for s in args.train_seeds[:-1]], int(args.train_seeds[-1])
    from napari_connectome_models.nets.unet import ANISOTROPIC

    net = SynapseNetConfig(downsample=((2, 2, 2), (2, 2, 2)) if isotropic else ANISOTROPIC,
                           base_features=args.base_features, feature_factor=2)
    try:
        net.output_shape(tuple(args.input_shape))
    except ValueError as exc:
        parser.error(f"--input-shape {args.input_shape} does not fit this network ({exc})")
    description = {"generator": "napari_connectome.synthetic, SyntheticSpec defaults otherwise",
                   "shape": list(shape), "voxel_size": list(vs), "synapse_density": args.synapse_density,
                   "train_seeds": train_seeds, "holdout_seed": holdout_seed, "mask_radius_nm": args.mask_radius,
                   "hard_radius_nm": args.hard_radius}
    config = SynapseTrainConfig(net=net.to_dict(), input_shape=tuple(args.input_shape), iterations=args.iterations,
                                seed=args.seed, lr=args.lr, augment=asdict(synapse_augment(isotropic_axes=(0, 1, 2) if isotropic else (1, 2))),
                                hard_negative_weight=args.hard_negative_weight,
                                checkpoint_every=args.checkpoint_every, threads=args.threads, data=description,
                                init=None if args.init is None else {"weights": str(args.init.resolve()),
                                                                     "sha256": hashlib.sha256(args.init.read_bytes()).hexdigest()})
    raw_h, gt_h, rows_h = generate(holdout_seed, shape, vs, args.synapse_density)
    block = net.output_shape(config.input_shape)
    # held-out blocks of their own size: few, large blocks (tiling does not change the values)
    validate = heldout(raw_h, gt_h, rows_h, voxel_size=vs, mask_radius_nm=args.mask_radius,
                       block_shape=tuple(args.predict_block))
    t0 = time.time()
    pad = max(net.context)
    volumes, n_rows = [], 0
    for s in train_seeds:
        raw, gt, rows = generate(s, shape, vs, args.synapse_density)
        n_rows += len(rows["pre"])
        volumes.append(SynapseVolume.from_arrays(raw, gt, rows, voxel_size=vs, pad=pad,
                                                 mask_radius_nm=args.mask_radius, hard_radius_nm=args.hard_radius))
    frac = np.mean([v.mask.mean() for v in volumes])
    print(f"{len(volumes)} training volumes {shape} (seeds {train_seeds}, {n_rows} connections, mask "
          f"{100 * frac:.2f} % of voxels) in {time.time() - t0:.1f} s; held out: seed {holdout_seed} "
          f"({len(rows_h['pre'])} connections)", flush=True)
    if not args.no_train:
        t0 = time.time()
        train_synapses(volumes, config, args.run, validate=validate,
                       log=lambda s: print(f"[{time.strftime('%H:%M:%S')}] {s}", flush=True))
        print(f"training: {time.time() - t0:.0f} s", flush=True)
    if args.out is not None:
        chosen = choose(args.run / "log.jsonl", args.f1_tolerance)
        history = [{k: r[k] for k in ("iteration", "val_f1", "val_precision", "val_recall", "val_vector_error_nm")}
                   for r in map(json.loads, (args.run / "log.jsonl").read_text().splitlines())
                   if r.get("val_f1") is not None]
        last = max(int(json.loads(x)["iteration"]) for x in (args.run / "log.jsonl").read_text().splitlines()
                   if x.strip())
        ckpt = args.run / f"checkpoint-{int(chosen['iteration']):07d}.pt"
        model = synapse_network_from_checkpoint(ckpt)
        with torch.no_grad():
            scores = {k[4:]: v for k, v in validate(model, chosen["iteration"]).items()}
        description = {**description, "train_rows": n_rows, "holdout_rows": len(rows_h["pre"])}
        init_info = None
        if args.init is not None:
            from napari_connectome_models.nets import read_network

            _, _, init_meta = read_network(args.init)
            init_info = {"sha256": config.init["sha256"], "measured_by": init_meta.get("measured_by", "unknown")}
        info = {"name": name, "init": init_info,
                "iteration": int(chosen["iteration"]), "iterations_run": last, "holdout_scores": scores,
                "holdout": f"synthetic seed {holdout_seed}, whole volume {list(shape)}",
                "synthetic": description, "voxel_size_nm": list(vs), "train_config": config.to_dict(),
                "history": history, "output_shape": list(block), "context_voxels": list(net.context), "f1_tolerance": args.f1_tolerance,
                "measured_by": "python models/scripts/train_synapses.py "
                               + " ".join(sys.argv[1:] if argv is None else argv)}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        save_synapse_network(model, args.out, **info)
        data = args.out.read_bytes()
        info = {**info, "sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data)}
        if args.register:
            register(info)
            write_card(MODELS / "cards" / f"{name}.md", info)
        print(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
