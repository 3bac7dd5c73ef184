"""Our region adjacency graph + agglomeration against waterz, same run, same inputs.

Cases
-----
gala-fib
    gala-fib test: its ws supervoxels and gala's p1 boundary map (50 × 100 × 200).
synthetic
    A 128 × 256 × 256 synthetic EM volume (the suite's generator, seed 0,
    fill fraction 0.9). Its boundary map is ``1 - normalised intensity`` of the
    raw smoothed with a Gaussian (σ = 1.5 voxels); the supervoxels are a
    watershed of that map from its local minima (5³ window): an over-
    segmentation of ~8 000 supervoxels. A second volume (seed 1) made the same
    way is its "train" volume.
synthetic 512³ (``--large``)
    The same at 512 × 512 × 512 (about 10^5 supervoxels), at most 3 repeats.
    ``--repeats 1 --large`` took 53 minutes (most of it making the two volumes
    and the two VI sweeps) and peaked at 12.6 GB on a shared 2-core machine:
    113,803 supervoxels, ours 18.6 vs waterz 15.0 Mvoxel/s, ratio 1.24, VI
    equal within 0.0043 over the sweep.

Both tools get the same supervoxels and the same boundary map ``p``. waterz
takes affinities: ``aff[d][i] = 1 - max(p[i], p[i - e_d])`` (float32,
``(3, z, y, x)``; 0 on the first slice of each axis, which has no neighbour).
waterz's default scoring, ``OneMinus<MeanAffinity>``, is then ``1 - mean over
the contact of aff = mean over the contact of max(p[i], p[j])`` — exactly our
``feature="mean"`` score with ``face="max"``, so **a threshold means the same
in both** and no mapping is needed (the VI curves below agree to rounding).

Timed, alternating which goes first, median of ``--repeats``:

ours
    ``build_rag`` (blockwise, default blocks) + ``agglomerate`` (full merge
    tree) + ``mapping_at(T)``; optionally the relabelled volume (``--relabel``)
    to compare like with like, since waterz always writes one.
waterz
    ``waterz.agglomerate(affs, thresholds=[T], fragments=ws.copy())``, its
    segmentation copied out (waterz reuses the buffer). The affinities are
    made before the clock starts (waterz needs them; we do not).

Printed per case: voxels/s of both, the ratio ours/waterz, and VI (split,
merge; bits; gt 0 ignored) of both at their best threshold on the case
(sweep 0..1 step 0.01) and at the threshold chosen on the train volume.

Run::

    .venv/bin/python benchmarks/bench_agglomerate.py [--repeats 5] [--relabel] [--quick] [--large]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

import h5py
import numpy as np

from napari_connectome.graph import agglomerate, build_rag
from napari_connectome.metrics import contingency_table, vi_from_table
from napari_connectome.volume import from_array

REPO = Path(__file__).resolve().parents[1]
GALA = REPO.parent / "shared" / "data" / "gala-fib"
THRESHOLDS = np.round(np.arange(0.0, 1.0001, 0.01), 2)


@contextlib.contextmanager
def quiet_stdout():
    """waterz's C++ core prints progress on stdout: send fd 1 to /dev/null meanwhile."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def affinities(p: np.ndarray) -> np.ndarray:
    affs = np.zeros((3, *p.shape), dtype=np.float32)
    for d in range(3):
        hi = [slice(None)] * 3
        lo = [slice(None)] * 3
        hi[d], lo[d] = slice(1, None), slice(0, -1)
        affs[d][tuple(hi)] = 1.0 - np.maximum(p[tuple(hi)], p[tuple(lo)])
    return affs


def gala_case():
    def read(split, name):
        with h5py.File(GALA / f"{split}-{name}.h5", "r") as f:
            return f["stack"][...]

    return {split: (read(split, "ws.lzf").astype(np.uint64), read(split, "p1.lzf"), read(split, "gt.lzf"))
            for split in ("train", "test")}


def synthetic_volume(seed: int, shape):
    import scipy.ndimage as ndi
    from skimage.segmentation import watershed

    from napari_connectome.synthetic import SyntheticSpec, synthetic_volumes

    raw, gt = synthetic_volumes(SyntheticSpec(shape=tuple(shape), seed=seed, fill_fraction=0.9))
    raw, gt = raw.levels[0].read(), gt.levels[0].read()
    smooth = ndi.gaussian_filter(raw.astype(np.float32), 1.5)
    lo, hi = np.percentile(smooth, [0.5, 99.5])
    p = np.clip(1.0 - (smooth - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    markers, _ = ndi.label(p == ndi.minimum_filter(p, size=5))
    ws = watershed(p, markers).astype(np.uint64)
    return ws, p, gt


def synthetic_case(shape):
    return {"train": synthetic_volume(1, shape), "test": synthetic_volume(0, shape)}


def ours(ws, p, threshold, relabel):
    rag = build_rag(from_array(ws, kind="labels"), from_array(p))
    tree = agglomerate(rag)
    sv, seg = tree.mapping_at(threshold)
    if relabel:
        seg = seg[np.searchsorted(sv, ws)]
    return tree


def waterz_run(affs, ws, thresholds):
    import waterz

    with quiet_stdout():
        return [s.copy() for s in waterz.agglomerate(affs, thresholds=list(thresholds), fragments=ws.copy())]


def our_curve(ws, p, gt):
    tree = agglomerate(build_rag(from_array(ws, kind="labels"), from_array(p)))
    table = contingency_table(ws, gt)
    return np.array([vi_from_table(table.remap(*tree.mapping_at(t))) for t in THRESHOLDS])


def waterz_curve(affs, ws, gt):
    # waterz's thresholds must be > its smallest score to yield a segmentation;
    # every one is evaluated on the volume it returns, as it comes (keeping all
    # 101 volumes would take 101 GB at 512³).
    import waterz

    with quiet_stdout():
        return np.array([vi_from_table(contingency_table(s, gt))
                         for s in waterz.agglomerate(affs, thresholds=list(THRESHOLDS), fragments=ws.copy())])


def best(curve):
    i = int(np.argmin(curve.sum(1)))
    return THRESHOLDS[i], curve[i]


def run_case(name, case, repeats, relabel):
    ws, p, gt = case["test"]
    affs = affinities(p)
    voxels = ws.size
    # Threshold chosen on the train volume with our pipeline (same meaning in waterz).
    t_train, _ = best(our_curve(*case["train"]))
    times = {"ours": [], "waterz": []}
    for r in range(repeats):
        order = ("ours", "waterz") if r % 2 == 0 else ("waterz", "ours")
        for who in order:
            t0 = time.perf_counter()
            if who == "ours":
                ours(ws, p, t_train, relabel)
            else:
                waterz_run(affs, ws, [t_train])
            times[who].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratios = [w / o for o, w in zip(times["ours"], times["waterz"], strict=True)]
    c_ours, c_waterz = our_curve(ws, p, gt), waterz_curve(affs, ws, gt)
    i_train = int(np.argmin(np.abs(THRESHOLDS - t_train)))
    print(f"\n== {name}: {ws.shape}, {len(np.unique(ws))} supervoxels, {voxels / 1e6:.1f} Mvoxels, {repeats} repeats")
    print(f"ours   {med['ours']:7.3f} s  {voxels / med['ours'] / 1e6:7.2f} Mvoxel/s  "
          f"(RAG + full merge tree + mapping{' + relabelled volume' if relabel else ''})")
    print(f"waterz {med['waterz']:7.3f} s  {voxels / med['waterz'] / 1e6:7.2f} Mvoxel/s  (one threshold)")
    print(f"throughput ratio ours/waterz: median {statistics.median(ratios):.2f} "
          f"(range {min(ratios):.2f}-{max(ratios):.2f})")
    for who, curve in (("ours", c_ours), ("waterz", c_waterz)):
        tb, vb = best(curve)
        vt = curve[i_train]
        print(f"{who:6s} VI at best T {tb:.2f}: split {vb[0]:.3f} merge {vb[1]:.3f} (sum {vb.sum():.3f}); "
              f"at train-chosen T {t_train:.2f}: split {vt[0]:.3f} merge {vt[1]:.3f} (sum {vt.sum():.3f})")
    print(f"max |VI ours - VI waterz| over the sweep: {np.abs(c_ours - c_waterz).max():.4f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--relabel", action="store_true", help="also write the relabelled volume (as waterz does)")
    parser.add_argument("--quick", action="store_true", help="synthetic case at 64 x 128 x 128")
    parser.add_argument("--large", action="store_true",
                        help="also the synthetic case at 512³ (20-55 minutes; 12.6 GB of memory)")
    args = parser.parse_args(argv)
    try:
        import waterz  # noqa: F401
    except ImportError:
        print("waterz is not installed: pip install waterz (the test extra has it)", file=sys.stderr)
        return 2
    if (GALA / "test-ws.lzf.h5").is_file():
        run_case("gala-fib test (ws + p1)", gala_case(), args.repeats, args.relabel)
    else:
        print(f"{GALA}: not found, gala-fib case skipped", file=sys.stderr)
    shape = (64, 128, 128) if args.quick else (128, 256, 256)
    run_case("synthetic", synthetic_case(shape), args.repeats, args.relabel)
    if args.large:
        run_case("synthetic 512³", synthetic_case((512, 512, 512)), max(1, min(args.repeats, 3)), args.relabel)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
