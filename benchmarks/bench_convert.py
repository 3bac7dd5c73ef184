"""Convert throughput and peak memory: a ≥ 2 GiB synthetic volume to an OME-Zarr pyramid.

1. Generates a synthetic EM volume (``napari_connectome.synthetic``) block by
   block and writes it as plain zarr v2 arrays (blosc-zstd, 64³ chunks, no
   metadata but the arrays'): ``raw`` (uint8, ``--gib`` GiB) and ``gt``
   (uint32 labels, ``--gt-gib`` GiB, the first z slices of the same volume).
   The labels present in ``gt`` are counted while it is written.
2. Runs ``convert(src, dst)`` for each in a child process, so the figures are
   those of the conversion alone: wall time, source MB/s (uncompressed source
   bytes / wall time) and peak RSS, measured four ways: psutil polling of the
   child (every 50 ms), the child's own ``VmHWM`` (read from /proc at its
   end), its ``ru_maxrss`` (``os.wait4``) and
   ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss``. The children are
   spawned by a small launcher process started before the generator runs:
   Linux carries the address space's peak RSS across ``exec`` into
   ``ru_maxrss``, so a child of the benchmark itself would report the
   generator's peak as its own.
3. Checks the outputs: level-0 samples equal the generator's blocks, and
   every label of the three coarsest gt levels is one the source contains
   (and one of the generator's segment list).

The target is a peak RSS below 1 GiB. The generator's own throughput (raw and
labels, Mvoxel/s) is measured first, with one and with two threads.

Run::

    .venv/bin/python benchmarks/bench_convert.py             # 2.25 GiB raw + 2.25 GiB gt
    .venv/bin/python benchmarks/bench_convert.py --quick     # small smoke run
    .venv/bin/python benchmarks/bench_convert.py --gib 4 --dir /scratch --keep
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

# Only the standard library at the top: the --launcher process must stay tiny
# (see run_convert).
XY = 1536
GIB = 2**30


def _shape_for(gib: float, itemsize: int, xy: int) -> tuple[int, int, int]:
    """(z, xy, xy) with at least ``gib`` GiB, z a multiple of 64."""
    z = math.ceil(gib * GIB / itemsize / (xy * xy) / 64) * 64
    return (z, xy, xy)


def _zarr_v2(path: str, shape, dtype: str, chunks):
    import tensorstore as ts

    return ts.open(
        {
            "driver": "zarr",
            "kvstore": {"driver": "file", "path": path},
            "metadata": {
                "shape": list(shape),
                "chunks": list(chunks),
                "dtype": dtype,
                "compressor": {"id": "blosc", "cname": "zstd", "clevel": 5, "shuffle": 1},
                "fill_value": 0,
                "order": "C",
                "dimension_separator": "/",
            },
        },
        create=True,
        context=ts.Context({"cache_pool": {"total_bytes_limit": 0}}),
    ).result()


def generator_speed(spec, threads: int, z: int = 128, xy: int = 512) -> float:
    """Mvoxel/s of generate_block (raw and labels together) over a (z, xy, xy) corner."""
    from napari_connectome.synthetic import generate_block, neuron_segments

    boxes = [
        ((a, a + 64), (b, b + 128), (c, c + 128))
        for a in range(0, z, 64)
        for b in range(0, xy, 128)
        for c in range(0, xy, 128)
    ]
    neuron_segments(spec)  # drawn once, not part of the rate
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        voxels = sum(r[0].size for r in pool.map(lambda box: generate_block(spec, box), boxes))
    return voxels / (time.perf_counter() - start) / 1e6


def write_sources(spec, raw_path: str, gt_path: str, gt_z: int, threads: int):
    """Write raw (whole spec) and gt (first ``gt_z`` slices), blockwise; return the labels in gt."""
    import numpy as np

    from napari_connectome.synthetic import generate_block, neuron_segments

    raw = _zarr_v2(raw_path, spec.shape, "|u1", (64, 64, 64))
    gt = _zarr_v2(gt_path, (gt_z,) + spec.shape[1:], "<u4", (64, 64, 64))
    n_ids = neuron_segments(spec).n_neurons + 1
    counts = np.zeros(n_ids, dtype=np.int64)
    block = (64, 256, 256)
    boxes = [
        tuple((s, min(s + b, n)) for s, b, n in zip((z, y, x), block, spec.shape, strict=True))
        for z in range(0, spec.shape[0], block[0])
        for y in range(0, spec.shape[1], block[1])
        for x in range(0, spec.shape[2], block[2])
    ]

    def one(box):
        r, g = generate_block(spec, box)
        sl = tuple(slice(a, b) for a, b in box)
        futures = [raw[sl].write(r)]
        hist = None
        if box[0][0] < gt_z:
            futures.append(gt[sl].write(g))
            hist = np.bincount(g.ravel(), minlength=n_ids)
        for f in futures:
            f.result()
        return hist

    with ThreadPoolExecutor(threads) as pool:
        # Bounded: map over chunks of boxes so at most a few blocks are alive.
        for i in range(0, len(boxes), 4 * threads):
            for hist in pool.map(one, boxes[i : i + 4 * threads]):
                if hist is not None:
                    counts += hist
    return np.flatnonzero(counts)


_CHILD = """
import sys
from napari_connectome.pyramid import convert
convert(sys.argv[1], sys.argv[2], voxel_size=tuple(map(float, sys.argv[3].split(","))),
        kind=sys.argv[4], chunks=int(sys.argv[5]), ngff=sys.argv[6])
with open("/proc/self/status") as fh:
    print(next(line for line in fh if line.startswith("VmHWM")).split()[1])
"""


def _launcher() -> None:
    """Run convert children on request (JSON lines on stdin) and measure them.

    Linux records the old address space's peak RSS into a process's
    ``ru_maxrss`` when it execs; a child spawned by the benchmark itself
    would inherit the generator's peak. Spawned from this small process
    instead, ``ru_maxrss`` (``os.wait4`` and ``RUSAGE_CHILDREN``) measures
    the conversion.
    """
    import psutil

    for line in sys.stdin:
        request = json.loads(line)
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", _CHILD, *request["args"]], stdout=subprocess.PIPE)
        watched = psutil.Process(proc.pid)
        peak = 0
        while True:
            try:
                rss = watched.memory_info().rss
                rss += sum(c.memory_info().rss for c in watched.children(recursive=True))
                peak = max(peak, rss)
            except psutil.Error:
                pass
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.05)
        wall = time.perf_counter() - start
        out = proc.stdout.read().decode().split()
        proc.stdout.close()
        reply = {
            "exit": os.waitstatus_to_exitcode(status),
            "wall_s": wall,
            "rss_poll": peak,
            "rss_wait4": usage.ru_maxrss * 1024,
            "rss_children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
            "rss_vmhwm": int(out[-1]) * 1024 if out else 0,
        }
        print(json.dumps(reply), flush=True)


def run_convert(launcher, src: str, dst: str, kind: str, voxel_size, chunks: int, ngff: str) -> dict:
    """Convert in a child of the launcher; wall time and peak RSS four ways."""
    args = [src, dst, ",".join(map(str, voxel_size)), kind, str(chunks), ngff]
    launcher.stdin.write(json.dumps({"args": args}) + "\n")
    launcher.stdin.flush()
    reply = json.loads(launcher.stdout.readline())
    if reply["exit"] != 0:
        raise SystemExit(f"convert failed for {src} (exit {reply['exit']})")
    return reply


def check_output(spec, dst: str, which: str, present, samples: int = 6):
    """Level-0 samples equal the generator; coarse label levels hold only source labels."""
    import numpy as np
    import zarr

    from napari_connectome.synthetic import generate_block, neuron_segments

    group = zarr.open_group(dst, mode="r")
    datasets = group.attrs["multiscales"][0]["datasets"]
    levels = [group[d["path"]] for d in datasets]
    rng = np.random.default_rng(0)
    shape0 = levels[0].shape
    for _ in range(samples):
        lo = [int(rng.integers(0, max(1, n - 64))) for n in shape0]
        box = tuple((a, min(a + 64, n)) for a, n in zip(lo, shape0, strict=True))
        raw, gt = generate_block(spec, box)
        got = levels[0][tuple(slice(a, b) for a, b in box)]
        if not np.array_equal(got, raw if which == "raw" else gt):
            return False, f"level 0 differs from the generator at {box}"
    note = f"{len(levels)} levels, level-0 samples match"
    if which == "gt":
        segment_ids = set(neuron_segments(spec).label_ids().tolist()) | {0}
        present = set(present.tolist())
        for k in range(max(0, len(levels) - 3), len(levels)):
            ids = set(np.unique(levels[k][...]).tolist())
            if not ids <= present:
                return False, f"level {k} has labels absent from the source: {sorted(ids - present)[:5]}"
            if not ids <= segment_ids:
                return False, f"level {k} has labels outside the segment list"
        note += f"; labels of the 3 coarsest levels ⊆ the {len(present)} in the source"
    return True, note


def du(path: str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=2.25, help="raw source size in GiB (uint8)")
    parser.add_argument("--gt-gib", type=float, default=None, help="gt source size in GiB (uint32); default --gib")
    parser.add_argument("--dir", default=None, help="where to write (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the files")
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--chunks", type=int, default=64)
    parser.add_argument("--ngff", default="0.4", choices=["0.4", "0.5"])
    parser.add_argument("--threads", type=int, default=2, help="threads generating the source")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--launcher", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.launcher:
        _launcher()
        return 0
    # Started before anything big is allocated here (see _launcher).
    launcher = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--launcher"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        return _benchmark(args, launcher)
    finally:
        launcher.stdin.close()
        launcher.wait()


def _benchmark(args, launcher) -> int:
    import numpy as np

    from napari_connectome.synthetic import SyntheticSpec, neuron_segments

    xy = 256 if args.quick else XY
    raw_shape = (128, xy, xy) if args.quick else _shape_for(args.gib, 1, xy)
    gt_gib = args.gt_gib if args.gt_gib is not None else args.gib
    gt_z = 64 if args.quick else min(raw_shape[0], _shape_for(gt_gib, 4, xy)[0])
    spec = SyntheticSpec(shape=raw_shape, voxel_size=(8.0, 8.0, 8.0), seed=args.seed)
    workdir = tempfile.mkdtemp(prefix="bench_convert_", dir=args.dir)
    print(f"working in {workdir}", flush=True)
    try:
        t = time.perf_counter()
        segments = neuron_segments(spec)
        print(
            f"segment list: {len(segments)} segments, {segments.n_neurons} neurons "
            f"({time.perf_counter() - t:.2f} s)",
            flush=True,
        )
        speed_1 = generator_speed(spec, 1, z=64 if args.quick else 128, xy=min(xy, 512))
        speed_2 = generator_speed(spec, 2, z=64 if args.quick else 128, xy=min(xy, 512))
        print(f"generator: {speed_1:.1f} Mvoxel/s (1 thread), {speed_2:.1f} Mvoxel/s (2 threads)", flush=True)

        raw_src, gt_src = os.path.join(workdir, "raw.zarr"), os.path.join(workdir, "gt.zarr")
        t = time.perf_counter()
        present = write_sources(spec, raw_src, gt_src, gt_z, args.threads)
        gen_s = time.perf_counter() - t
        voxels = spec.n_voxels
        print(
            f"sources written in {gen_s:.1f} s ({voxels / gen_s / 1e6:.1f} Mvoxel/s incl. "
            f"compression and the gt copy): raw {raw_shape} uint8, gt {(gt_z,) + raw_shape[1:]} uint32",
            flush=True,
        )

        rows = []
        for which, src, shape, itemsize, kind in (
            ("raw", raw_src, raw_shape, 1, "image"),
            ("gt", gt_src, (gt_z,) + raw_shape[1:], 4, "labels"),
        ):
            dst = os.path.join(workdir, f"{which}.ome.zarr")
            print(f"converting {which} ...", flush=True)
            figures = run_convert(launcher, src, dst, kind, spec.voxel_size, args.chunks, args.ngff)
            nbytes = int(np.prod(shape)) * itemsize
            ok, note = check_output(spec, dst, which, present)
            rows.append(
                {
                    "volume": which,
                    "shape": shape,
                    "dtype": "uint8" if itemsize == 1 else "uint32",
                    "source_gib": nbytes / GIB,
                    "source_on_disk_gib": du(src) / GIB,
                    "output_on_disk_gib": du(dst) / GIB,
                    "mb_per_s": nbytes / 1e6 / figures["wall_s"],
                    "ok": ok,
                    "note": note,
                    **figures,
                }
            )
            if not args.keep:
                shutil.rmtree(dst, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    mib = 2**20
    print()
    print(f"generator (raw + gt, Mvoxel/s): {speed_1:.1f} with 1 thread, {speed_2:.1f} with 2 threads")
    header = (
        f"{'volume':<6} {'shape':<18} {'dtype':<6} {'src GiB':>8} {'src disk':>9} {'out disk':>9} "
        f"{'wall s':>7} {'MB/s':>7} {'RSS poll':>9} {'VmHWM':>9} {'RSS wait4':>10} {'RSS child':>10}  check"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['volume']:<6} {str(r['shape']):<18} {r['dtype']:<6} {r['source_gib']:>8.2f} "
            f"{r['source_on_disk_gib']:>9.2f} {r['output_on_disk_gib']:>9.2f} {r['wall_s']:>7.1f} "
            f"{r['mb_per_s']:>7.1f} {r['rss_poll'] / mib:>7.0f}Mi {r['rss_vmhwm'] / mib:>7.0f}Mi "
            f"{r['rss_wait4'] / mib:>8.0f}Mi "
            f"{r['rss_children'] / mib:>8.0f}Mi  {'OK' if r['ok'] else 'FAIL'}: {r['note']}"
        )
    peak = max(max(r["rss_poll"], r["rss_vmhwm"], r["rss_wait4"]) for r in rows)
    target = "met" if peak < GIB else "MISSED"
    print(f"peak RSS {peak / mib:.0f} MiB: target < 1024 MiB {target}")
    print(json.dumps({"generator_mvox_s": [speed_1, speed_2], "rows": rows}, default=str))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
