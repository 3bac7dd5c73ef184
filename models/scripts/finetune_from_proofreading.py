"""Does proofreading teach the network? Fine-tune the shipped model on a proofread box, measure on a held-out one.

On the bundled gala-fib sample (50 x 100 x 200 at 10 nm; the *test* crop,
so the weights written here are an experiment, never a shipped model):

1. two projects over the sample, agglomerated at 0.5: ``auto`` (left as it
   is) and ``proofread``, where a simulated proofreader fixes box A
   (``x < 1000 nm``): every pair of supervoxels whose ground-truth body is
   the same is merged, every segment holding two bodies is split — edits in
   the project's log, as a person would make them in the Proofread panel;
2. ``napari-connectome train`` fine-tunes ``affinities-fib-10nm`` on each
   project's segmentation inside box A (same seed, iterations and patches);
3. the shipped and both fine-tuned networks are scored against the ground
   truth on box A and on the held-out box B (``x >= 1000 nm``): class-balanced
   loss and affinity accuracy, with ground-truth label 0 read as a boundary
   (membrane voxels count) and as unknown (only body-body pairs count).

Run (about 15 minutes on two CPU cores)::

    python models/scripts/finetune_from_proofreading.py --work /tmp/finetune --iterations 150
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

BOX_A = (0, 0, 0, 500, 1000, 1000)
BOX_B = (0, 0, 1000, 500, 1000, 2000)


def proofread_box(project, box_voxels) -> dict:
    """Fix the segmentation inside ``box_voxels`` from the ground truth, with logged edits; VI before/after."""
    from napari_connectome.metrics import evaluate
    from napari_connectome.proofread import Proofreader

    vols = project.volumes()
    sv = vols["supervoxels"].levels[0].read()
    gt = vols["groundtruth"].levels[0].read()
    with Proofreader.open(project) as pr:
        seg = pr.labels_volume().levels[0].read()
        before = evaluate(seg[box_voxels], gt[box_voxels])
        body = {}
        for s in np.unique(sv[box_voxels]).tolist():
            g = gt[sv == s]
            g = g[g > 0]
            body[s] = int(np.bincount(g).argmax()) if g.size else 0
        splits = merges = 0
        for seg_id in np.unique(seg[box_voxels]).tolist():
            svs = [s for s in np.unique(sv[box_voxels][seg[box_voxels] == seg_id]).tolist() if body.get(s)]
            bodies = sorted({body[s] for s in svs})
            for b in bodies[1:]:
                src = [s for s in svs if body[s] == bodies[0]]
                snk = [s for s in svs if body[s] == b]
                pr.split(pr.preview_split_supervoxels(src, snk))
                splits += 1
        for b in sorted(set(body.values()) - {0}):
            first, *rest = [s for s, bb in body.items() if bb == b]
            for s in rest:
                if pr.segment_of(s) != pr.segment_of(first):
                    pr.merge_supervoxels(first, s)
                    merges += 1
        after = evaluate(pr.labels_volume().levels[0].read()[box_voxels], gt[box_voxels])
    keep = ("vi_split", "vi_merge", "arand")
    return {"merges": merges, "splits": splits, "before": {k: float(before[k]) for k in keep},
            "after": {k: float(after[k]) for k in keep}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True, help="a new folder for projects, runs and results")
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    from napari_connectome_models.nets.unet import load_network
    from napari_connectome_models.registry import load_network as registered

    from napari_connectome.cli import main as cli
    from napari_connectome.graph import agglomerate_project
    from napari_connectome.samples import gala_fib_project, gala_fib_volumes
    from napari_connectome.train import evaluate, from_volumes
    from napari_connectome.train.sources import parse_box

    args.work.mkdir(parents=True, exist_ok=True)
    results: dict = {"iterations": args.iterations, "box_a_nm": BOX_A, "box_b_nm": BOX_B}
    a_voxels = tuple(slice(int(b / 10), int(e / 10)) for b, e in zip(BOX_A[:3], BOX_A[3:], strict=True))
    for name in ("auto", "proofread"):
        project = gala_fib_project(args.work / name)
        agglomerate_project(project, threshold=0.5)
        if name == "proofread":
            results["proofreading_box_a"] = proofread_box(project, a_voxels)
            print(f"proofread box A: {results['proofreading_box_a']}", flush=True)
        code = cli(["train", str(args.work / f"run-{name}"), "--project", str(project.root),
                    "--box", *map(str, BOX_A), "--from", "affinities-fib-10nm", "--iterations", str(args.iterations),
                    "--checkpoint-every", "50", "--threads", str(args.threads), "--quiet", "--evaluate",
                    "--export", str(args.work / f"fib-{name}.pt")])
        if code:
            return code
    volumes = gala_fib_volumes()
    nets = {"shipped": registered("affinities-fib-10nm"),
            "fine-tuned on the automatic segmentation": load_network(args.work / "fib-auto.pt"),
            "fine-tuned on the proofread segmentation": load_network(args.work / "fib-proofread.pt")}
    rows = []
    for box_name, box in (("A (trained on)", BOX_A), ("B (held out)", BOX_B)):
        data = from_volumes(volumes["raw"], volumes["groundtruth"], box=parse_box(box), context=60)
        for zero in ("unknown", "boundary"):
            for net_name, net in nets.items():
                m = evaluate(net, data, zero=zero)
                rows.append({"box": box_name, "gt_zero": zero, "network": net_name, **m})
                print(f"{box_name:15s} GT 0 = {zero:8s} {net_name:42s} loss {m['loss']:.4f} "
                      f"accuracy {m['accuracy']:.4f}", flush=True)
    results["scores"] = rows
    (args.work / "results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
