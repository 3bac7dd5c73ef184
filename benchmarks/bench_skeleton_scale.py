"""Skeletons at scale: the blockwise, coarse-level skeletonizer against full-resolution skeletons.

For a labels volume with a pyramid (default: the ground-truth neurons of the
250³ synthetic cube of ``bench_decisions.py``, 10 nm voxels, levels at 20 and
40 nm; or ``--volume PATH``), it times

* *full*: kimimaro over the whole level-0 array in one call, one core, with
  its ``fix_borders`` on as in the blocks (so that only resolution and blocks
  differ: with it off, as :meth:`SkeletonStore.rebuild` traces a volume that
  fits in memory, a neurite leaving the volume is traced to the far corner of
  its exit face instead of the face's centre, which alone changes the length
  by ~10 %; printed too);
* *blockwise*: :func:`~napari_connectome.skeleton.blockwise.skeletonize_volume`
  with the level rule (``--max-voxel``, ``--coarse-min``), ``--block`` voxels a
  block, on ``--workers`` (threads, or ``--scheduler processes``);

and prints the speed-up (full ÷ blockwise) and the quality of the blockwise
skeletons against the full-resolution ones, per segment:

* path length ratio (blockwise ÷ full): median, 10th and 90th percentiles,
  and the ratio of the totals;
* coverage: the share of full-resolution skeleton length within ``--tolerance``
  nm of the blockwise skeleton (recall) and the other way round (precision) —
  the same paths, wherever their vertices fall;
* topology: the share of segments with the same number of connected
  components, and the median absolute difference in end points and in
  branch points.

Run::

    python benchmarks/bench_skeleton_scale.py [--volume PATH] [--max-voxel 40] [--workers 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def _components(sk) -> int:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(sk.vertices_nm)
    if n == 0:
        return 0
    e = sk.edges
    g = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n))
    return int(connected_components(g, directed=False)[0])


def _samples(sk, step_nm: float) -> np.ndarray:
    """Points every ``step_nm`` along a skeleton's edges (its vertices included)."""
    v = sk.vertices_nm.astype(np.float64)
    if len(sk.edges) == 0:
        return v
    a, b = v[sk.edges[:, 0]], v[sk.edges[:, 1]]
    n = np.maximum(1, np.ceil(np.linalg.norm(b - a, axis=1) / step_nm).astype(int))
    t = np.concatenate([np.arange(k) / k for k in n])
    rep = np.repeat(np.arange(len(a)), n)
    return np.concatenate([a[rep] + (b[rep] - a[rep]) * t[:, None], v])


def _coverage(ref, other, tol_nm: float) -> float:
    """Share of ``ref``'s sampled length within ``tol_nm`` of ``other``'s."""
    from scipy.spatial import cKDTree

    p = _samples(ref, tol_nm / 4)
    q = _samples(other, tol_nm / 4)
    if len(p) == 0:
        return 1.0
    if len(q) == 0:
        return 0.0
    d, _ = cKDTree(q).query(p, distance_upper_bound=tol_nm)
    return float(np.mean(np.isfinite(d)))


def quality(full: dict, test: dict, *, tol_nm: float) -> dict:
    """Per-segment agreement of ``test`` skeletons with the ``full`` ones (see the module notes)."""
    common = sorted(set(full) & set(test))
    lf = np.array([full[s].path_length_nm for s in common])
    lt = np.array([test[s].path_length_nm for s in common])
    ok = lf > 0
    ratio = lt[ok] / lf[ok]
    rec = np.array([_coverage(full[s], test[s], tol_nm) for s in common])
    prec = np.array([_coverage(test[s], full[s], tol_nm) for s in common])
    w = lf / max(lf.sum(), 1e-9)
    comp = np.array([_components(full[s]) == _components(test[s]) for s in common])
    d_end = np.array([abs(len(full[s].endpoints()) - len(test[s].endpoints())) for s in common])
    d_br = np.array([abs(len(full[s].branch_points()) - len(test[s].branch_points())) for s in common])
    return {
        "segments_full": len(full), "segments_test": len(test), "common": len(common),
        "length_ratio_median": float(np.median(ratio)) if ratio.size else float("nan"),
        "length_ratio_p10_p90": [float(x) for x in np.percentile(ratio, [10, 90])] if ratio.size else [],
        "length_ratio_total": float(lt.sum() / max(lf.sum(), 1e-9)),
        "recall_weighted": float((rec * w).sum()), "precision_weighted": float((prec * w).sum()),
        "recall_median": float(np.median(rec)) if rec.size else float("nan"),
        "same_components": float(comp.mean()) if comp.size else float("nan"),
        "endpoints_abs_diff_median": float(np.median(d_end)) if d_end.size else float("nan"),
        "branch_points_abs_diff_median": float(np.median(d_br)) if d_br.size else float("nan"),
    }


def _per_level(levels: dict) -> str:
    """``"N at (z, y, x) nm, ..."``: how many segments were traced at each voxel size."""
    from collections import Counter

    return ", ".join(f"{n} at {'×'.join(f'{v:g}' for v in vs)} nm" for vs, n in sorted(Counter(levels.values()).items()))


def _peak_gib() -> float:
    """Peak resident memory of this process and its finished children (GiB)."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 2**20


def _whole(labels, lv0, *, fix_borders: bool) -> dict:
    import kimimaro

    from napari_connectome.skeleton import DEFAULT_DUST_VOXELS, DEFAULT_TEASAR, Skeleton

    raw = kimimaro.skeletonize(labels, teasar_params=DEFAULT_TEASAR, anisotropy=lv0.spatial_voxel_size,
                               dust_threshold=DEFAULT_DUST_VOXELS, progress=False, fix_branching=True,
                               fix_borders=fix_borders, parallel=1)
    off = np.asarray(lv0.spatial_offset)
    return {int(k): Skeleton(int(k), np.asarray(s.vertices) + off, s.edges, s.radius)
            for k, s in raw.items() if len(s.vertices)}


def main(argv=None) -> None:
    from napari_connectome.skeleton.blockwise import skeletonize_volume
    from napari_connectome.volume import open_volume

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--volume", default="/tmp/bench-decisions/gt.ome.zarr",
                    help="a labels volume with a pyramid (default: bench_decisions.py's ground truth; "
                         "run that benchmark once to make it)")
    ap.add_argument("--max-voxel", type=float, nargs="+", default=[40.0], metavar="NM")
    ap.add_argument("--coarse-min", type=int, default=2000)
    ap.add_argument("--block", type=int, nargs="+", default=[256])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--scheduler", default="threads")
    ap.add_argument("--tolerance", type=float, default=100.0, metavar="NM",
                    help="distance (nm) within which two skeletons' paths count as the same")
    ap.add_argument("--no-full", action="store_true",
                    help="time the blockwise run only (a volume too large to skeletonize whole: 1024³)")
    args = ap.parse_args(argv)

    vol = open_volume(args.volume)
    lv0 = vol.levels[0]
    print(f"volume {args.volume}: {lv0.shape} voxels of {lv0.spatial_voxel_size} nm, levels "
          f"{[lv.spatial_voxel_size[0] for lv in vol.levels]}")
    if args.no_full:
        for mx, block in [(m, b) for m in args.max_voxel for b in args.block]:
            t = time.perf_counter()
            sk, levels = skeletonize_volume(vol, max_voxel_nm=mx, coarse_min_voxels=args.coarse_min,
                                            block_voxels=block, scheduler=args.scheduler, workers=args.workers)
            dt = time.perf_counter() - t
            per_level = _per_level(levels)
            print(f"blockwise, max voxel {mx:g} nm, block {block}, {args.workers} {args.scheduler}: {len(sk)} "
                  f"skeletons in {dt:.1f} s ({np.prod(lv0.shape) / dt / 1e6:.2f} Mvoxel/s); segments per level "
                  f"{per_level}; peak memory {_peak_gib():.2f} GiB", flush=True)
        return
    t = time.perf_counter()
    labels = np.asarray(lv0.array[...])
    full = _whole(labels, lv0, fix_borders=True)
    t_full = time.perf_counter() - t
    print(f"full resolution, whole array, 1 core: {len(full)} skeletons in {t_full:.1f} s "
          f"({np.prod(lv0.shape) / t_full / 1e6:.2f} Mvoxel/s)")
    q = quality(full, _whole(labels, lv0, fix_borders=False), tol_nm=args.tolerance)
    del labels
    print(f"  the same with fix_borders off (the in-memory store's tracing): length ratio total "
          f"{q['length_ratio_total']:.3f}, recall {q['recall_weighted']:.3f}, precision {q['precision_weighted']:.3f}")
    for mx, block in [(m, b) for m in args.max_voxel for b in args.block]:
        t = time.perf_counter()
        sk, levels = skeletonize_volume(vol, max_voxel_nm=mx, coarse_min_voxels=args.coarse_min,
                                        block_voxels=block, scheduler=args.scheduler,
                                        workers=args.workers)
        dt = time.perf_counter() - t
        per_level = _per_level(levels)
        print(f"\nblockwise, max voxel {mx:g} nm, block {block}, {args.workers} {args.scheduler}: "
              f"{len(sk)} skeletons in {dt:.1f} s ({np.prod(lv0.shape) / dt / 1e6:.2f} Mvoxel/s); "
              f"speed-up over full {t_full / dt:.2f}x; segments per level {per_level}")
        q = quality(full, sk, tol_nm=args.tolerance)
        for k, v in q.items():
            print(f"  {k}: {np.round(v, 3).tolist() if isinstance(v, list) else round(v, 3)}")


if __name__ == "__main__":
    main()
