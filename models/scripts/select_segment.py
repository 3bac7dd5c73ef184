"""Choose the block-wise supervoxel options and threshold of a registered model on its held-out box.

``napari-connectome segment`` makes steepest-ascent supervoxels (exact in
blocks) and agglomerates them at a threshold. Models exported by ``train``
carry that choice in their metadata; the shipped gala-fib model was exported
before, so this script makes the choice for it the same way
(:func:`napari_connectome.train.select.select_for_segment`: every ascent
candidate scored on the held-out box of gala-fib *train*, ``x >= 150``, which
the training never drew labels from) and writes it into the model's registry
entry (``"segment"``). The test volume is not read.

Run from the repository root::

    python models/scripts/select_segment.py [--model affinities-fib-10nm] [--data ../shared/data/gala-fib] [--dry-run]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[2]
REGISTRY = REPO / "models" / "napari_connectome_models" / "registry.json"
HOLDOUT_X = 150


def main(argv=None) -> int:
    from napari_connectome_models.registry import load_network, load_registry

    from napari_connectome.train.data import normalise_raw
    from napari_connectome.train.select import select_for_segment

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="affinities-fib-10nm")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "gala-fib")
    parser.add_argument("--dry-run", action="store_true", help="print the choice, do not write the registry")
    args = parser.parse_args(argv)

    entry = load_registry()[args.model]
    model = load_network(args.model)
    with h5py.File(args.data / "train-image.h5", "r") as f:
        raw = normalise_raw(f["stack"][...])
    with h5py.File(args.data / "train-gt.lzf.h5", "r") as f:
        gt = np.asarray(f["stack"][...])[..., HOLDOUT_X:]
    choice = select_for_segment(model, raw, gt, holdout_x=HOLDOUT_X, voxel_size=entry.voxel_size_nm,
                                log=lambda s: print(s, flush=True))
    choice["data"] = f"gala-fib train, held-out box x >= {HOLDOUT_X}"
    choice["script"] = "models/scripts/select_segment.py"
    print(f"chose {choice['postprocess']} at T {choice['threshold']:.2f}: held-out VI "
          f"{choice['vi_split']:.3f} + {choice['vi_merge']:.3f} = {choice['vi']:.3f}, ARAND {choice['arand']:.3f}")
    if args.dry_run:
        return 0
    registry = json.loads(REGISTRY.read_text(encoding="utf-8"))
    for record in registry["models"]:
        if record["name"] == args.model:
            record["segment"] = choice
    REGISTRY.write_text(json.dumps(registry, indent=2) + "\n", encoding="utf-8")
    print(f"wrote the choice into {REGISTRY.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
