"""Finding candidates again after one edit: with the contact-scan cache and without it.

1. Builds the synthetic project of ``bench_tasks.py`` (its builder: the
   synthetic generator's ground truth cut into supervoxels by a 3-D grid, a
   boundary map from its faces, OME-Zarr, 64³ chunks), 256³ at 8 nm by
   default, the region graph and the agglomeration at 0.5.
2. Opens a :class:`~napari_connectome.proofread.Proofreader` and times
   :func:`~napari_connectome.candidates.find_candidates` on it: the first
   call (the cache is empty: two whole-volume scans, the per-row one over
   every graph row), then ``--edits`` times: merge a false-split candidate
   (as the micro-task flow does after a *yes*) and find again with the cache
   (``contacts.LOCATE_CACHE`` on) and without it (off: the reference), in
   that order, checking that both give the same candidates bit for bit.
   Also printed: the time spent placing the candidates
   (:func:`~napari_connectome.candidates.contacts.locate_faces`), the part
   the cache speeds up; the rest (min-cut previews of the proposed cuts, the
   segment tables) is the same either way.

Figures only, not a pass/fail test (it fails only if the results differ).

Run::

    .venv/bin/python benchmarks/bench_find.py             # 256³, 5 edits (~1 min)
    .venv/bin/python benchmarks/bench_find.py --size 128  # quicker
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _signature(cands) -> list[tuple]:
    # repr: exact for floats, and NaN features compare equal to themselves.
    return [(c.id, repr(c.location_nm), c.supervoxels, c.sinks, tuple((k, repr(v)) for k, v in c.features.items()),
             repr(c.impact)) for c in cands]


class LocateTimer:
    """Wraps ``find.locate_faces`` to add up the time spent placing candidates."""

    def __init__(self) -> None:
        from napari_connectome.candidates import find

        self.seconds = 0.0
        self._inner = find.locate_faces
        find.locate_faces = self

    def __call__(self, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return self._inner(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - t0


def timed_find(pr, timer: LocateTimer, *, cache: bool):
    """``(candidates, total s, locate s)`` of one find_candidates call with the cache on or off."""
    from napari_connectome.candidates import contacts, find_candidates

    contacts.LOCATE_CACHE = cache
    try:
        timer.seconds = 0.0
        t0 = time.perf_counter()
        cands = find_candidates(pr)
        return cands, time.perf_counter() - t0, timer.seconds
    finally:
        contacts.LOCATE_CACHE = True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=256, help="edge of the cubic volume in voxels")
    ap.add_argument("--cell", type=int, default=24, help="grid cell (voxels) cutting bodies into supervoxels")
    ap.add_argument("--edits", type=int, default=5, help="merges, each followed by a cached and an uncached find")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", type=Path, default=None, help="where to write the project (default: a temp dir)")
    args = ap.parse_args(argv)

    from bench_tasks import build_project

    from napari_connectome.candidates import apply_candidate
    from napari_connectome.proofread import Proofreader

    work = Path(tempfile.mkdtemp(prefix="bench-find-", dir=args.dir))
    try:
        t0 = time.perf_counter()
        project, rag, tree = build_project(work, args.size, args.cell, args.seed)
        print(f"{args.size}³ voxels, {rag.n_nodes} supervoxels, {rag.n_edges} graph edges, "
              f"{int(tree.n_segments_at(0.5))} segments at 0.5; built in {time.perf_counter() - t0:.1f} s", flush=True)
        timer = LocateTimer()
        with Proofreader.open(project, user="bench") as pr:
            ref, t_ref, l_ref = timed_find(pr, timer, cache=False)
            cands, t_first, l_first = timed_find(pr, timer, cache=True)
            if _signature(cands) != _signature(ref):
                raise SystemExit("the first cached call differs from the uncached one")
            print(f"{len(cands)} candidates; first call (empty cache): {t_first:.3f} s (placing {l_first:.3f} s); "
                  f"uncached: {t_ref:.3f} s (placing {l_ref:.3f} s)", flush=True)
            cached, uncached, loc_c, loc_u = [], [], [], []
            for k in range(args.edits):
                splits = [c for c in cands if c.kind == "false_split"]
                if not splits:
                    break
                apply_candidate(pr, splits[(7 * k) % len(splits)], suggested_by="bench")
                cands, t_c, l_c = timed_find(pr, timer, cache=True)
                ref, t_u, l_u = timed_find(pr, timer, cache=False)
                if _signature(cands) != _signature(ref):
                    raise SystemExit(f"edit {k + 1}: cached and uncached candidates differ")
                cached.append(t_c)
                uncached.append(t_u)
                loc_c.append(l_c)
                loc_u.append(l_u)
                print(f"merge {k + 1}: re-find with cache {t_c:.3f} s (placing {l_c:.3f} s), without "
                      f"{t_u:.3f} s (placing {l_u:.3f} s): {t_u / t_c:.1f}×; identical", flush=True)
        if cached:
            mc, mu = statistics.median(cached), statistics.median(uncached)
            lc, lu = statistics.median(loc_c), statistics.median(loc_u)
            print(f"median re-find after one merge: {mc:.3f} s with the cache, {mu:.3f} s without: {mu / mc:.1f}× "
                  f"(placing the candidates: {lc:.3f} s vs {lu:.3f} s, {lu / max(lc, 1e-9):.0f}×); "
                  f"first call {t_first:.3f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
