"""A synthetic volume end to end, stage by stage: time and peak memory of each (issue 13's 1024³ run).

Stages, each timed on its own in this one process (threads, so that the peak
resident memory it prints is all of the work's; ``VmHWM`` reset before each
stage through ``/proc/self/clear_refs``, as ``segment_throughput.py`` does):

``synthetic``
    what ``napari-connectome synthetic DIR --shape N N N`` writes, at 10 nm,
    seed ``--seed``, with neurites filling 90 % of the volume (the
    generator's ``fill_fraction``, as ``bench_agglomerate.py``; the
    command's default leaves more extracellular space, each voxel of which
    becomes a supervoxel of its own here): raw EM and ground truth, OME-Zarr
    pyramids (skipped when ``DIR`` has them).
``supervoxels``
    :func:`~napari_connectome.segment.blockwise.supervoxels_to_zarr`, block by
    block, on affinities made **from the ground truth** (1 where a voxel and its
    neighbour along an axis are the same neuron, Gaussian σ 1 voxel, normal
    noise σ 0.1 seeded per chunk, as ``segment_throughput.py --skip-network``
    does) and read lazily, chunk by chunk: the network is not run — on this
    machine's CPUs it would take hours at 1024³ (its throughput:
    ``segment_throughput.py``).
``graph``, ``merge tree``
    :func:`~napari_connectome.graph.build_project_graph` (blockwise) and
    :func:`~napari_connectome.graph.agglomerate_project` at ``--threshold``.
``skeletons``
    :meth:`~napari_connectome.skeleton.SkeletonStore.rebuild`, blockwise (the
    supervoxels have one level: the coarse level is virtual).
``candidates``
    the candidate search of the task session and the simulator
    (:class:`CandidateCache`, candidates not placed: a session places only
    those it shows).
``first task``
    :meth:`TaskSession.open` (``active``) and its first :meth:`next_task`, on
    a project without a stored contact scan or candidate list: the session
    searches (and keeps the list in the project), orders, and scans the
    volume once for where contacts lie (kept in the project too).
``first task again``
    the same, a second session: the stored list and scan are read instead.
``decisions``
    the simulated proofreader (``bench_decisions.py``'s timing) with
    ``size`` and ``active``, ``--decisions`` each.

Run::

    python benchmarks/bench_end_to_end.py --size 1024 [--dir /tmp/e2e-1024] [--decisions 50]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

GIB = 2**30
OFFSETS = [(-1, 0, 0), (0, -1, 0), (0, 0, -1)]


def _window(index, chunks, shape, halo: int):
    """``(read key, core within the read, core shape)`` of affinity chunk ``index`` read with ``halo`` voxels."""
    lo = [i * c for i, c in zip(index[1:], chunks[1:], strict=True)]
    hi = [min(a + c, n) for a, c, n in zip(lo, chunks[1:], shape, strict=True)]
    elo = [max(a - halo, 0) for a in lo]
    ehi = [min(b + halo, n) for b, n in zip(hi, shape, strict=True)]
    read = tuple(slice(a, b) for a, b in zip(elo, ehi, strict=True))
    core = tuple(slice(a - e, b - e) for a, b, e in zip(lo, hi, elo, strict=True))
    return read, core, tuple(b - a for a, b in zip(lo, hi, strict=True))


class _GtAffinityChunk:
    """One chunk of ground-truth affinities (uint8, × 255): read with 4 voxels of context for the blur."""

    def __init__(self, gt_level, chunks, seed: int, halo: int = 4) -> None:
        self.gt, self.chunks, self.seed, self.halo = gt_level, chunks, seed, halo

    def __call__(self, index):
        from scipy import ndimage as ndi

        read, core, size = _window(index, self.chunks, self.gt.shape, self.halo)
        gt = np.asarray(self.gt.array[read])
        rng = np.random.default_rng([self.seed, *index])
        out = np.empty((len(OFFSETS), *size), np.uint8)
        for c, off in enumerate(OFFSETS):
            same = np.zeros(gt.shape, np.float32)
            here = tuple(slice(-o, None) if o < 0 else slice(None) for o in off)
            there = tuple(slice(0, o) if o < 0 else slice(None) for o in off)
            same[here] = (gt[here] == gt[there]) & (gt[here] != 0)
            a = ndi.gaussian_filter(same, 1.0)[core]
            a += 0.1 * rng.standard_normal(a.shape, dtype=np.float32)
            out[c] = np.rint(255 * np.clip(a, 0.0, 1.0))
        return out


class _RawAffinityChunk:
    """One chunk of affinities from the raw EM (uint8, × 255): ``1 - max`` of the boundary map at both ends.

    The boundary map is ``bench_agglomerate.py``'s: ``1 -`` the Gaussian-smoothed
    (σ 1.5 voxels) raw, normalised by its 0.5 and 99.5 percentiles (of the
    whole volume, taken from a coarse level, so every chunk uses the same).
    """

    def __init__(self, raw_level, chunks, lo: float, hi: float, halo: int = 8) -> None:
        self.raw, self.chunks, self.lo, self.hi, self.halo = raw_level, chunks, lo, hi, halo

    def __call__(self, index):
        from scipy import ndimage as ndi

        read, core, size = _window(index, self.chunks, self.raw.shape, self.halo)
        raw = np.asarray(self.raw.array[read], np.float32)
        smooth = ndi.gaussian_filter(raw, 1.5, mode="nearest")
        p = np.clip(1.0 - (smooth - self.lo) / (self.hi - self.lo), 0.0, 1.0)
        out = np.empty((len(OFFSETS), *size), np.uint8)
        for c, off in enumerate(OFFSETS):
            nb = np.roll(p, shift=[-o for o in off], axis=(0, 1, 2))  # p at j + off (the halo covers the roll)
            out[c] = np.rint(255 * (1.0 - np.maximum(p, nb)))[core]
        return out


def raw_affinities(raw_volume, chunk: int = 128):
    """A lazy ``(3, z, y, x)`` uint8 affinity level of the raw EM (see :class:`_RawAffinityChunk`)."""
    from napari_connectome.volume.lazy import ChunkedArray
    from napari_connectome.volume.model import Level

    lv = raw_volume.levels[0]
    sample = np.asarray(raw_volume.levels[min(2, len(raw_volume.levels) - 1)].array[...], np.float32)
    from scipy import ndimage as ndi

    lo, hi = np.percentile(ndi.gaussian_filter(sample, 0.75), [0.5, 99.5])
    chunks = (len(OFFSETS), *(min(chunk, n) for n in lv.shape))
    arr = ChunkedArray(_RawAffinityChunk(lv, chunks, float(lo), float(hi)), shape=(len(OFFSETS), *lv.shape),
                       dtype=np.uint8, chunks=chunks, source=f"{lv.array.source} (affinities from the raw)")
    return Level(arr, (1.0, *lv.voxel_size), (0.0, *lv.offset), ("c", "z", "y", "x"))


def gt_affinities(gt_volume, seed: int, chunk: int = 128):
    """A lazy ``(3, z, y, x)`` uint8 affinity level of a ground-truth volume."""
    from napari_connectome.volume.lazy import ChunkedArray
    from napari_connectome.volume.model import Level

    lv = gt_volume.levels[0]
    chunks = (len(OFFSETS), *(min(chunk, n) for n in lv.shape))
    arr = ChunkedArray(_GtAffinityChunk(lv, chunks, seed), shape=(len(OFFSETS), *lv.shape), dtype=np.uint8,
                       chunks=chunks, source=f"{lv.array.source} (affinities from ground truth)")
    return Level(arr, (1.0, *lv.voxel_size), (0.0, *lv.offset), ("c", "z", "y", "x"))


class Stages:
    """Times each stage and its peak resident memory; prints one line a stage."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, float, str]] = []

    def run(self, name: str, fn, describe=lambda r: ""):
        from segment_throughput import peak_bytes, reset_peak, rss_bytes

        reset_peak()
        before = rss_bytes()
        t = time.perf_counter()
        result = fn()
        dt = time.perf_counter() - t
        peak = peak_bytes()
        what = describe(result)
        self.rows.append((name, dt, peak / GIB, what))
        print(f"{name:16s} {dt:8.1f} s   peak {peak / GIB:6.2f} GiB (+{(peak - before) / GIB:5.2f})   {what}",
              flush=True)
        return result


def main(argv=None) -> int:
    from napari_connectome.graph import agglomerate_project, build_project_graph
    from napari_connectome.project import create_project, is_project, open_project
    from napari_connectome.proofread import Proofreader
    from napari_connectome.segment.blockwise import remove_work, supervoxels_to_zarr
    from napari_connectome.skeleton import SkeletonStore
    from napari_connectome.volume import open_volume

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--dir", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threshold", type=float,
                    help="agglomeration threshold (default: the one leaving --segments-per-supervoxel segments)")
    ap.add_argument("--segments-per-supervoxel", type=float, default=0.2)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--decisions", type=int, default=50)
    ap.add_argument("--strategies", nargs="*", default=["size", "active"])
    ap.add_argument("--affinities", choices=("raw", "gt"), default="raw",
                    help="where the affinities come from (not the network; see the module notes)")
    ap.add_argument("--reuse", action="store_true",
                    help="keep the graph, merge tree and skeletons the folder's project has (time the rest)")
    args = ap.parse_args(argv)
    n = args.size
    folder = args.dir or Path(f"/tmp/e2e-{n}")
    folder.mkdir(parents=True, exist_ok=True)
    st = Stages()
    print(f"{n}³ voxels of 10 nm ({n**3 / 1e9:.2f} Gvoxel) in {folder}, {args.workers} threads")
    data = folder / "data"
    if not (data / "groundtruth.ome.zarr").exists():
        from napari_connectome.pyramid import write_ome_zarr_folder
        from napari_connectome.synthetic import SyntheticSpec, synthetic_volumes

        raw, gt = synthetic_volumes(SyntheticSpec(shape=(n, n, n), voxel_size=(10, 10, 10), seed=args.seed,
                                                  fill_fraction=0.9))
        st.run("synthetic", lambda: write_ome_zarr_folder(data, {"raw.ome.zarr": raw, "groundtruth.ome.zarr": gt}))
    gt_uri = str(data / "groundtruth.ome.zarr")
    gt = open_volume(gt_uri)
    proj = folder / "project"
    if not is_project(proj):
        aff = (raw_affinities(open_volume(str(data / "raw.ome.zarr"))) if args.affinities == "raw"
               else gt_affinities(gt, args.seed))
        report = st.run("supervoxels", lambda: supervoxels_to_zarr(
            aff, OFFSETS, folder / "supervoxels.ome.zarr", folder / "boundaries.ome.zarr", folder / "work",
            signature={"bench": "end_to_end", "size": n, "seed": args.seed}, block=128, workers=args.workers),
            lambda r: f"{r.n_supervoxels:,} supervoxels")
        del report
        remove_work(folder / "work")
        create_project(proj, raw=str(data / "raw.ome.zarr"), supervoxels=str(folder / "supervoxels.ome.zarr"),
                       boundaries=str(folder / "boundaries.ome.zarr"))
    project = open_project(proj)
    built = args.reuse and "agglomeration" in project.manifest and project.manifest.get("graph")
    if built:
        print("graph, merge tree: reused (--reuse)")
    else:
        rag = st.run("graph", lambda: build_project_graph(project, workers=args.workers),
                     lambda r: f"{r.n_nodes:,} nodes, {r.n_edges:,} edges")
        del rag

        def tree_and_threshold():
            tree = agglomerate_project(project, threshold=args.threshold)
            t = args.threshold
            if t is None:  # the threshold after the merge that leaves the asked share of segments
                merges = int(round(tree.n_nodes * (1.0 - args.segments_per_supervoxel)))
                t = float(np.sort(np.asarray(tree.scores))[min(max(merges, 1), len(tree.scores)) - 1])
                tree = agglomerate_project(project, threshold=t)
            return tree, t

        tree, threshold = st.run("merge tree", tree_and_threshold,
                                 lambda r: f"{r[0].n_segments_at(r[1]):,} segments at {r[1]:.4f}")
        del tree
        project.save()
    with Proofreader.open(project, read_only=True) as pr:
        if args.reuse and SkeletonStore.path(project).is_file():
            print("skeletons: reused (--reuse)")
        else:
            st.run("skeletons", lambda: SkeletonStore.rebuild(pr, method="blockwise", workers=args.workers),
                   lambda s: f"{len(s):,} skeletons")
    import sklearn.ensemble  # noqa: F401  (imported once here: its ~2 s would otherwise land in "first task")

    from napari_connectome.candidates import CandidateCache, contacts, kept

    # What a task session and the simulator search (candidates placed only when shown: see first task).
    with Proofreader.open(project, read_only=True) as pr:
        st.run("candidates", lambda: CandidateCache(locate=False, kept=False)(pr), lambda c: f"{len(c):,} candidates")
    # The first session on a project searches and scans the volume once for where contacts lie and keeps
    # both in the project; later sessions read them ("first task again").
    (project.component_path("graph") / contacts.GEOMETRY_FILE).unlink(missing_ok=True)
    (project.component_path("graph") / kept.CANDIDATES_FILE).unlink(missing_ok=True)
    from napari_connectome.tasks.session import TaskSession

    def first_task():
        session = TaskSession.open(project, user="bench", strategy="active", prefetch=False,
                                   learn_in_background=False)
        try:
            return session.next_task()
        finally:
            session.close()

    st.run("first task", first_task, lambda t: "a task" if t is not None else "no task")
    st.run("first task again", first_task, lambda t: "a task" if t is not None else "no task")
    from bench_decisions import timed_run

    for strategy in args.strategies:
        run = st.run(f"{strategy} x{args.decisions}", lambda s=strategy: timed_run(project, gt_uri, s, args.decisions),
                     lambda r: f"{r['decisions']} decisions ({r['accepted']} accepted), "
                               f"{r['per_s']:.2f} decisions/s after {r['setup_s']:.0f} s of set-up")
        del run
    print("\nstage            seconds   peak GiB")
    for name, dt, peak, _what in st.rows:
        print(f"{name:16s} {dt:8.1f}   {peak:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
