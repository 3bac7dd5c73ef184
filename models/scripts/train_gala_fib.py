"""Train the gala-fib affinity U-Net (train crop only) and export its weights.

Held out: the last 50 x-columns of gala-fib *train* (``x >= 150``) are never
trained on; they choose the checkpoint, the supervoxel method and the
agglomeration threshold (``benchmarks/segment_gala.py`` reads them from the
exported file's metadata). gala-fib *test* is not read here at all.

Run (resumes from the newest checkpoint in ``--run``)::

    nice -n 10 python models/scripts/train_gala_fib.py --data ../shared/data/gala-fib \
        --seed 0 --run /work/unet-runs/fib-s0 \
        --out models/napari_connectome_models/weights/affinities-fib-10nm.pt

``--iterations`` trains up to that many iterations; ``--out`` then picks the
checkpoint with the lowest held-out VI (every ``--select-every`` iterations)
and writes it with the chosen post-processing in its metadata.

``--lsd`` adds local shape descriptors (10 channels, Gaussian sigma
``--lsd-sigma-nm``, gala-fib's 10 nm voxels) as an auxiliary target: the
same run otherwise (seed, patches, schedule, selection); the exported network
still predicts affinities only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import h5py
import numpy as np

from napari_connectome.train import AugmentConfig, TrainConfig, TrainingVolume, train
from napari_connectome.train.data import normalise_raw

HOLDOUT_X = 150
INPUT_SHAPE = (64, 96, 96)
VOXEL_SIZE = (10.0, 10.0, 10.0)  # nm (gala-fib is isotropic)


def read(data: Path, split: str, name: str) -> np.ndarray:
    """One gala-fib array."""
    with h5py.File(data / f"{split}-{name}.h5", "r") as f:
        return f["stack"][...]


def make_config(seed: int, iterations: int, threads: int, *, lsd: bool = False,
                lsd_sigma_nm: float = 80.0) -> TrainConfig:
    """The shipped model's training run (``lsd``: plus the LSD head and its target)."""
    from dataclasses import asdict

    from napari_connectome_models.nets.unet import ISOTROPIC, UNetConfig

    from napari_connectome.train.lsd import LSD_CHANNELS

    net = UNetConfig(downsample=ISOTROPIC, base_features=12, feature_factor=2,
                     lsd_channels=LSD_CHANNELS if lsd else 0)
    extra = {"lsd_sigma_nm": float(lsd_sigma_nm), "voxel_size": VOXEL_SIZE} if lsd else {}
    return TrainConfig(net=net.to_dict(), input_shape=INPUT_SHAPE, iterations=iterations, seed=seed,
                       lr=5e-4, batch_size=1, zero="boundary", augment=asdict(AugmentConfig()),
                       checkpoint_every=250, threads=threads, **extra)


def heldout_loss(raw: np.ndarray, gt: np.ndarray, config: TrainConfig):
    """A validate callback: class-balanced BCE on the held-out columns."""
    from napari_connectome.inference import predict_affinities
    from napari_connectome.train import affinities_from_labels, balance_weights

    target, mask = affinities_from_labels(gt, np.asarray(config.net["offsets"]), zero=config.zero)
    mask[..., :HOLDOUT_X] = 0
    weight = balance_weights(target, mask)

    def validate(model, iteration: int) -> dict:
        aff = np.clip(predict_affinities(raw, model), 1e-6, 1 - 1e-6)
        bce = -(target * np.log(aff) + (1 - target) * np.log(1 - aff))
        near = weight[:3].sum()
        return {"val_loss": float((bce * weight).sum() / weight.sum()),
                "val_loss_nn": float((bce[:3] * weight[:3]).sum() / near)}

    return validate


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run", type=Path, required=True, help="checkpoint folder (outside git)")
    parser.add_argument("--iterations", type=int, default=6000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write the chosen checkpoint's weights here")
    parser.add_argument("--select-every", type=int, default=500)
    parser.add_argument("--no-train", action="store_true", help="only select and export")
    parser.add_argument("--lsd", action="store_true", help="local shape descriptors as an auxiliary target")
    parser.add_argument("--lsd-sigma-nm", type=float, default=80.0, help="Gaussian sigma of the LSDs (nm)")
    args = parser.parse_args(argv)
    raw, gt = read(args.data, "train", "image"), read(args.data, "train", "gt.lzf")
    config = make_config(args.seed, args.iterations, args.threads, lsd=args.lsd, lsd_sigma_nm=args.lsd_sigma_nm)
    if not args.no_train:
        from napari_connectome_models.nets.unet import UNetConfig

        ctx = max(UNetConfig.from_dict(config.net).context)
        pad = ctx + AugmentConfig(**config.augment).margin + max(INPUT_SHAPE)
        volume = TrainingVolume.from_arrays(raw, gt, pad=pad, region=((0, 0, 0), (raw.shape[0], raw.shape[1], HOLDOUT_X)))
        t0 = time.time()
        train(volume, config, args.run, validate=heldout_loss(raw, gt, config),
              log=lambda s: print(f"[{time.strftime('%H:%M:%S')}] {s}", flush=True))
        print(f"training: {time.time() - t0:.0f} s", flush=True)
    if args.out is not None:
        from napari_connectome.train.select import export_best

        info = export_best(args.run, normalise_raw(raw), gt, holdout_x=HOLDOUT_X, every=args.select_every,
                           out=args.out, data_name="gala-fib train", seed=args.seed,
                           log=lambda s: print(s, flush=True))
        digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
        print(json.dumps({**info, "sha256": digest}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
