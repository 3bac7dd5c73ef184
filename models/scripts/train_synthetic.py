"""Train an affinity U-Net on synthetic EM (train seeds only) and export its weights.

The gala-fib protocol (``models/scripts/train_gala_fib.py``) on volumes from
:mod:`napari_connectome.synthetic` (the generator behind ``napari-connectome
synthetic``): every seed in ``--train-seeds`` is one volume of ``--shape``
voxels at ``--voxel-size`` nm. The **last** train seed's volume is held out:
no label of it is trained on; it chooses the checkpoint, the supervoxel method
and the agglomeration threshold (``napari_connectome.train.select.export_best``
with the whole held-out volume as the box). Test seeds
(``benchmarks/segment_synthetic.py``) are never generated here.

The training volumes are laid side by side along x, each mirrored outwards by
the network's context, in one :class:`~napari_connectome.train.TrainingVolume`
whose labels are unknown between them (no link joins two volumes; label ids are
made disjoint).

Networks (the shipped model's kind: valid-convolution U-Net, 12 / 24 / 48 feature maps):

* isotropic voxels (z = y = x): max-pool ``[(2,2,2), (2,2,2)]``, offsets -1, -3, -9
  on every axis, input 64 x 96 x 96, all 48 flips/permutations, elastic deformation;
* anisotropic voxels (z > y = x): max-pool ``[(1,2,2), (2,2,2)]``, offsets z -1, -2 and
  y, x -1, -3, -9, input 36 x 96 x 96, only y and x exchanged, no elastic deformation
  (the loop's deformation displaces z by as many *sections* as y, x by voxels).

Run (resumes from the newest checkpoint in ``--run``)::

    nice -n 19 python models/scripts/train_synthetic.py --voxel-size 8 8 8 \
        --train-seeds 100 101 102 103 104 105 --seed 0 --run /work/unet-runs/synth-iso \
        --iterations 3000 --threads 1
    nice -n 19 python models/scripts/train_synthetic.py --voxel-size 8 8 8 \
        --train-seeds 100 101 102 103 104 105 --seed 0 --run /work/unet-runs/synth-iso \
        --no-train --out /work/unet-runs/synth-iso/affinities-synthetic-8nm.pt
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

from napari_connectome.train import AugmentConfig, TrainConfig, TrainingVolume, train
from napari_connectome.train.data import normalise_raw

#: Default volume shapes (z, y, x) per kind of voxel.
SHAPES = {"isotropic": (96, 192, 192), "anisotropic": (32, 256, 256)}
INPUT_SHAPES = {"isotropic": (64, 96, 96), "anisotropic": (36, 96, 96)}


def kind_of(voxel_size) -> str:
    """``"isotropic"`` when z, y, x are equal, ``"anisotropic"`` when z is coarser than y = x."""
    z, y, x = (float(v) for v in voxel_size)
    if y != x:
        raise ValueError(f"y and x voxel sizes must be equal, got {voxel_size}")
    if z == y:
        return "isotropic"
    if z > y:
        return "anisotropic"
    raise ValueError(f"z finer than y, x is not supported, got {voxel_size}")


def generate(seed: int, shape, voxel_size) -> tuple[np.ndarray, np.ndarray]:
    """Raw (uint8) and ground truth (uint32, 0 = extracellular) of one synthetic volume."""
    from napari_connectome.synthetic import SyntheticSpec, generate_block

    spec = SyntheticSpec(shape=tuple(int(s) for s in shape), voxel_size=tuple(float(v) for v in voxel_size),
                         seed=int(seed))
    return generate_block(spec, tuple((0, n) for n in spec.shape))


def net_config(kind: str) -> dict:
    """The U-Net for this kind of voxel, as a dict."""
    from napari_connectome_models.nets.unet import ISOTROPIC, UNetConfig

    if kind == "isotropic":
        net = UNetConfig(downsample=ISOTROPIC, base_features=12, feature_factor=2)
    else:
        offsets = ((-1, 0, 0), (0, -1, 0), (0, 0, -1), (-2, 0, 0), (0, -3, 0), (0, 0, -3), (0, -9, 0), (0, 0, -9))
        net = UNetConfig(downsample=((1, 2, 2), (2, 2, 2)), base_features=12, feature_factor=2, offsets=offsets)
    return net.to_dict()


def make_config(kind: str, seed: int, iterations: int, threads: int) -> TrainConfig:
    """The training run for this kind of voxel."""
    if kind == "isotropic":
        augment = AugmentConfig()
    else:
        augment = AugmentConfig(isotropic_axes=(1, 2), elastic_p=0.0)
    return TrainConfig(net=net_config(kind), input_shape=INPUT_SHAPES[kind], iterations=iterations, seed=seed,
                       lr=5e-4, batch_size=1, zero="boundary", augment=asdict(augment),
                       checkpoint_every=250, threads=threads)


def side_by_side(volumes, *, gap: int, pad: int) -> TrainingVolume:
    """One training volume: ``volumes`` ((raw, gt) of equal z, y) along x, ``gap`` mirrored voxels between.

    Every volume is mirrored by ``gap // 2`` (x) on both sides; the mirrored
    voxels carry no label (``known`` False), so no affinity target links two
    volumes or a volume with a mirrored copy. Label ids are made disjoint.
    """
    half = gap // 2
    raws, labels, knowns, base = [], [], [], 0
    for raw, gt in volumes:
        r = np.pad(normalise_raw(raw), ((0, 0), (0, 0), (half, half)), mode="reflect")
        g = np.where(gt > 0, gt.astype(np.int64) + base, 0)
        base = int(g.max()) if g.size else base
        raws.append(r)
        labels.append(np.pad(g, ((0, 0), (0, 0), (half, half))))
        k = np.ones(gt.shape, dtype=bool)
        knowns.append(np.pad(k, ((0, 0), (0, 0), (half, half))))
    raw = np.concatenate(raws, axis=2)
    lab = np.concatenate(labels, axis=2).astype(np.uint32)
    known = np.concatenate(knowns, axis=2)
    return TrainingVolume(raw=np.pad(raw, pad, mode="reflect"), labels=np.pad(lab, pad), known=np.pad(known, pad),
                          pad=pad, region=((0, 0, 0), tuple(int(n) for n in raw.shape)))


def heldout_loss(raw: np.ndarray, gt: np.ndarray, config: TrainConfig):
    """A validate callback: class-balanced BCE on the whole held-out volume."""
    from napari_connectome.inference import predict_affinities
    from napari_connectome.train import affinities_from_labels, balance_weights

    target, mask = affinities_from_labels(gt, np.asarray(config.net["offsets"]), zero=config.zero)
    weight = balance_weights(target, mask)
    near = [i for i, o in enumerate(config.net["offsets"]) if sum(abs(v) for v in o) == 1]

    def validate(model, iteration: int) -> dict:
        aff = np.clip(predict_affinities(raw, model), 1e-6, 1 - 1e-6)
        bce = -(target * np.log(aff) + (1 - target) * np.log(1 - aff))
        return {"val_loss": float((bce * weight).sum() / weight.sum()),
                "val_loss_nn": float((bce[near] * weight[near]).sum() / weight[near].sum())}

    return validate


def check_run(run: Path, description: dict) -> None:
    """Refuse a run folder made from other data; write the data description otherwise."""
    run.mkdir(parents=True, exist_ok=True)
    path = run / "synthetic.json"
    if path.exists():
        saved = json.loads(path.read_text())
        if saved != description:
            raise SystemExit(f"{run} was trained on other data: {saved} (now {description}); use a new folder")
    path.write_text(json.dumps(description, indent=1))


def rewrite_metadata(path: Path, extra: dict) -> dict:
    """Add ``extra`` to the metadata of a network written by ``save_network``."""
    import torch

    blob = torch.load(path, map_location="cpu", weights_only=True)
    blob["metadata"] = {**blob.get("metadata", {}), **extra}
    torch.save(blob, path)
    return blob["metadata"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--voxel-size", nargs=3, type=float, required=True, metavar=("Z", "Y", "X"))
    parser.add_argument("--train-seeds", nargs="+", type=int, default=[100, 101, 102, 103, 104, 105],
                        help="synthetic seeds; the last one is held out (selection only)")
    parser.add_argument("--shape", nargs=3, type=int, metavar=("Z", "Y", "X"),
                        help="volume shape per seed (default: 96 192 192 isotropic, 32 256 256 anisotropic)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (weights, patches)")
    parser.add_argument("--run", type=Path, required=True, help="checkpoint folder (outside git)")
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the chosen checkpoint's weights here")
    parser.add_argument("--select-every", type=int, default=250)
    parser.add_argument("--no-train", action="store_true", help="only select and export")
    parser.add_argument("--no-validate", action="store_true", help="no held-out loss at checkpoints")
    args = parser.parse_args(argv)
    if len(args.train_seeds) < 2:
        parser.error("--train-seeds needs at least two seeds (the last one is held out)")
    import torch

    torch.set_num_threads(args.threads)
    kind = kind_of(args.voxel_size)
    shape = tuple(args.shape) if args.shape else SHAPES[kind]
    train_seeds, holdout_seed = [int(s) for s in args.train_seeds[:-1]], int(args.train_seeds[-1])
    description = {"generator": "napari_connectome.synthetic (SyntheticSpec defaults)", "shape": list(shape),
                   "voxel_size": [float(v) for v in args.voxel_size], "train_seeds": train_seeds,
                   "holdout_seed": holdout_seed, "layout": "side by side along x, mirrored gaps unlabelled"}
    check_run(args.run, description)
    config = make_config(kind, args.seed, args.iterations, args.threads)
    raw_h, gt_h = generate(holdout_seed, shape, args.voxel_size)
    if not args.no_train:
        from napari_connectome_models.nets.unet import UNetConfig

        t0 = time.time()
        net = UNetConfig.from_dict(config.net)
        ctx = max(net.context)
        out = net.output_shape(config.input_shape)
        # sample_patch reads ctx + elastic margin around an output window that may stick out by 1/4
        pad = ctx + AugmentConfig(**config.augment).margin + max(out) // 4 + 1
        volume = side_by_side([generate(s, shape, args.voxel_size) for s in train_seeds], gap=2 * ctx, pad=pad)
        print(f"training volume {volume.raw.shape} (padded by {pad}), {len(train_seeds)} seeds "
              f"{train_seeds}, generated in {time.time() - t0:.1f} s; held out: seed {holdout_seed}", flush=True)
        t0 = time.time()
        validate = None if args.no_validate else heldout_loss(raw_h, gt_h, config)
        train(volume, config, args.run, validate=validate,
              log=lambda s: print(f"[{time.strftime('%H:%M:%S')}] {s}", flush=True))
        print(f"training: {time.time() - t0:.0f} s", flush=True)
    if args.out is not None:
        from napari_connectome.train.select import export_best

        args.out.parent.mkdir(parents=True, exist_ok=True)
        vs = "x".join(f"{v:g}" for v in args.voxel_size)
        info = export_best(args.run, normalise_raw(raw_h), gt_h, holdout_x=0, every=args.select_every,
                           out=args.out, data_name=f"synthetic {vs} nm, train seeds {train_seeds}", seed=args.seed,
                           voxel_size=tuple(args.voxel_size), log=lambda s: print(s, flush=True))
        # export_best describes a held-out x range; here the whole volume of the held-out seed is the box
        info = rewrite_metadata(args.out, {
            "holdout": f"synthetic seed {holdout_seed}, whole volume {list(shape)}",
            "synthetic": description, "voxel_size_nm": [float(v) for v in args.voxel_size],
            "train_config": config.to_dict(),
        })
        digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
        print(json.dumps({**info, "sha256": digest}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
