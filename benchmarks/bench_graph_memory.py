"""Peak memory and time of the region graph and the merge tree at 10⁶ supervoxels.

Cases (128 × 256 × 256 voxels, seed 0, boundary map uniform random float32):

random
    Every voxel an independent random id in ``1 .. 10⁶``: about 10⁶
    supervoxels and 2.5 × 10⁷ face-adjacent edges (almost every face is an
    edge of its own), the worst case for the number of edges per voxel.
compact
    A discrete Voronoi diagram of 10⁶ random seeds (each voxel takes the id
    of its nearest seed): 10⁶ small blob-like supervoxels of ~8 voxels, about
    12 neighbours each (~6 × 10⁶ edges).

Each stage runs in a child process of its own, so its peak resident memory
(``VmHWM``, reset with ``/proc/self/clear_refs`` after the input is made or
loaded) is its own:

graph
    ``build_rag`` on the in-memory volumes, then ``RegionGraph.save``.
tree
    ``RegionGraph.load`` of that file, ``agglomerate`` (the full merge tree),
    then ``MergeTree.save``.

Printed per stage: time, peak RSS (absolute, and above what the process held
before the stage: the volumes or the loaded graph), ``n_nodes``, ``n_edges``,
bytes per edge (the growth over the stage divided by the edges), the memory
guard's estimate for the stage (what :func:`~napari_connectome.memory.check_memory`
was asked about) and the saved file's size. A watchdog in the parent kills a
child whose resident memory passes ``--kill-gb`` (default 12), so a run that
would exhaust a shared machine stops with a line saying so.

Measured on a 2-CPU machine (2026-12, ``memory_gb`` unset; the volumes
themselves are 0.1 GiB; "before" is the graph code of commit b88e7f0 run
the same way, ``PYTHONPATH`` pointing at a copy of it)::

    case     stage   time     peak RSS   above before   bytes/edge   guard estimate
    random   graph    20 s    2.44 GiB   +2.34 GiB        100         3.38 GiB
    random   tree    271 s    3.59 GiB   +1.81 GiB         78         2.31 GiB
                    (re-run 2026-12-04 beside other work: 473 s wall, 285 s CPU, 3.59 GiB)
    compact  graph     6 s    1.14 GiB   +1.01 GiB        184         1.35 GiB
    compact  tree     20 s    0.95 GiB   +0.37 GiB         67         0.74 GiB
    before:
    random   graph   130 s    6.71 GiB   +6.60 GiB        283
    random   tree    killed past 10 GiB (the issue saw 12 GB)
    compact  graph    35 s    2.68 GiB   +2.56 GiB        466
    compact  tree    320 s    3.50 GiB   +2.93 GiB        532

Random: 999,744 supervoxels, 25,033,934 edges, 25,034,667 histogram
entries; compact: 10^6 supervoxels, 5,908,307 edges, 12,771,135 entries.

Run (one at a time on a shared machine; ``nice`` keeps it polite)::

    nice -n 10 .venv/bin/python benchmarks/bench_graph_memory.py             # both cases, 128 × 256 × 256
    nice -n 10 .venv/bin/python benchmarks/bench_graph_memory.py --case random
    .venv/bin/python benchmarks/bench_graph_memory.py --quick                # 32 × 64 × 64, 2.5 × 10⁴ ids
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

SHAPE = (128, 256, 256)
N_IDS = 1_000_000
QUICK_SHAPE = (32, 64, 64)
QUICK_IDS = 25_000


def make_volumes(case: str, shape, n_ids: int, seed: int = 0):
    """Supervoxels (uint32) and a boundary map (float32 in [0, 1]) of ``case``."""
    rng = np.random.default_rng(seed)
    if case == "random":
        sv = rng.integers(1, n_ids + 1, size=shape, dtype=np.uint32)
    elif case == "compact":
        from scipy import ndimage as ndi

        n_vox = int(np.prod(shape))
        seeds = rng.choice(n_vox, size=min(n_ids, n_vox), replace=False)
        not_seed = np.ones(n_vox, dtype=bool)
        not_seed[seeds] = False
        ids = np.zeros(n_vox, dtype=np.uint32)
        ids[seeds] = np.arange(1, seeds.size + 1, dtype=np.uint32)
        # Nearest seed of every voxel: the discrete Voronoi diagram.
        nearest = ndi.distance_transform_edt(
            not_seed.reshape(shape), return_distances=False, return_indices=True
        ).astype(np.int32, copy=False)
        flat = np.ravel_multi_index(tuple(nearest), shape)
        del nearest
        sv = ids[flat].reshape(shape)
        del flat, ids, not_seed
    else:
        raise ValueError(case)
    boundary = rng.random(shape, dtype=np.float32)
    return sv, boundary


def _status(field: str) -> int:
    """A ``kB`` field of /proc/self/status, in bytes."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> None:
    """Make VmHWM start again from the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        pass


def _record_guard() -> list[float]:
    """Record every need the memory guard is asked about (it still decides)."""
    import importlib

    import napari_connectome.memory as memory

    asked: list[float] = []
    check = memory.check_memory

    def recording(need, **kwargs):
        asked.append(float(need))
        return check(need, **kwargs)

    for name in ("napari_connectome.graph.rag", "napari_connectome.graph.agglomerate"):
        importlib.import_module(name).check_memory = recording
    return asked


def _cpu_seconds() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def child(stage: str, case: str, shape, n_ids: int, folder: Path) -> dict:
    """One stage, measured in this (child) process; returns its figures."""
    from napari_connectome.graph import MergeTree, RegionGraph, agglomerate, build_rag
    from napari_connectome.volume import from_array

    asked = _record_guard()
    rag_path = folder / f"{case}-rag.npz"
    out: dict = {"stage": stage, "case": case}
    if stage == "graph":
        sv, boundary = make_volumes(case, shape, n_ids)
        sv_vol, b_vol = from_array(sv, kind="labels"), from_array(boundary)
        _reset_peak()
        before = _status("VmRSS")
        t0, c0 = time.perf_counter(), _cpu_seconds()
        rag = build_rag(sv_vol, b_vol)
        out["seconds"], out["cpu_seconds"] = time.perf_counter() - t0, _cpu_seconds() - c0
        out["peak"], out["before"] = _status("VmHWM"), before
        t0 = time.perf_counter()
        rag.save(rag_path)
        out["save_seconds"] = time.perf_counter() - t0
        out["file_bytes"] = rag_path.stat().st_size
        out["n_nodes"], out["n_edges"] = rag.n_nodes, rag.n_edges
        out["n_hist"] = int(rag.histogram[0].size) if rag.histogram else 0
    else:
        t0 = time.perf_counter()
        rag = RegionGraph.load(rag_path)
        out["load_seconds"] = time.perf_counter() - t0
        _reset_peak()
        before = _status("VmRSS")
        t0, c0 = time.perf_counter(), _cpu_seconds()
        tree = agglomerate(rag)
        out["seconds"], out["cpu_seconds"] = time.perf_counter() - t0, _cpu_seconds() - c0
        out["peak"], out["before"] = _status("VmHWM"), before
        tree_path = folder / f"{case}-tree.npz"
        t0 = time.perf_counter()
        tree.save(tree_path)
        out["save_seconds"] = time.perf_counter() - t0
        out["file_bytes"] = tree_path.stat().st_size
        t0 = time.perf_counter()
        MergeTree.load(tree_path)
        out["tree_load_seconds"] = time.perf_counter() - t0
        out["n_nodes"], out["n_edges"], out["n_merges"] = rag.n_nodes, rag.n_edges, tree.n_merges
    out["estimate"] = max(asked, default=0.0)
    return out


def _watch(proc: subprocess.Popen, kill_bytes: int, state: dict) -> None:
    """Kill ``proc`` if its resident memory passes ``kill_bytes``; remember the highest seen."""
    status = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                    state["max"] = max(state.get("max", 0), rss)
                    if rss > kill_bytes:
                        state["killed"] = rss
                        proc.kill()
        except OSError:
            pass
        time.sleep(0.2)


def run_stage(stage: str, case: str, args, folder: Path) -> dict | None:
    cmd = [sys.executable, __file__, "--child", stage, "--case", case, "--dir", str(folder)]
    if args.quick:
        cmd.append("--quick")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    state: dict = {}
    watcher = threading.Thread(target=_watch, args=(proc, int(args.kill_gb * 2**30), state), daemon=True)
    watcher.start()
    stdout, _ = proc.communicate()
    watcher.join()
    if "killed" in state:
        print(f"{case:8s} {stage:6s} KILLED: resident memory passed {args.kill_gb} GiB "
              f"({state['killed'] / 2**30:.2f} GiB seen)")
        return None
    if proc.returncode != 0:
        print(f"{case:8s} {stage:6s} failed (exit {proc.returncode})")
        return None
    return json.loads(stdout.strip().splitlines()[-1])


def report(r: dict) -> None:
    gib = 2**30
    grew = r["peak"] - r["before"]
    per_edge = grew / max(r["n_edges"], 1)
    extra = (f"{r['n_hist']:,} histogram entries, save {r['save_seconds']:.1f} s" if r["stage"] == "graph"
             else f"load graph {r['load_seconds']:.1f} s, save tree {r['save_seconds']:.1f} s, "
                  f"load tree {r['tree_load_seconds']:.1f} s, {r['n_merges']} merges")
    print(f"{r['case']:8s} {r['stage']:6s} {r['seconds']:7.1f} s (cpu {r['cpu_seconds']:6.1f} s)  peak RSS {r['peak'] / gib:5.2f} GiB "
          f"(+{grew / gib:5.2f} over {r['before'] / gib:4.2f} held before)  "
          f"nodes {r['n_nodes']:,}  edges {r['n_edges']:,}  {per_edge:5.0f} B/edge  "
          f"guard estimate {r['estimate'] / gib:5.2f} GiB  file {r['file_bytes'] / 2**20:.0f} MiB  {extra}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", choices=("random", "compact", "both"), default="both")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SHAPE} with {QUICK_IDS} ids")
    parser.add_argument("--kill-gb", type=float, default=12.0, help="stop a child past this resident memory")
    parser.add_argument("--dir", help="where the graph and tree files go (default: a temporary folder)")
    parser.add_argument("--graph-only", action="store_true", help="skip the merge tree")
    parser.add_argument("--child", choices=("graph", "tree"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    shape, n_ids = (QUICK_SHAPE, QUICK_IDS) if args.quick else (SHAPE, N_IDS)
    if args.child:
        print(json.dumps(child(args.child, args.case, shape, n_ids, Path(args.dir))))
        return 0
    cases = ("random", "compact") if args.case == "both" else (args.case,)
    print(f"volume {shape}, {n_ids:,} ids, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for case in cases:
            for stage in ("graph",) if args.graph_only else ("graph", "tree"):
                r = run_stage(stage, case, args, Path(tmp))
                if r is None:
                    break
                report(r)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
