"""Throughput and peak memory of raw EM -> affinities -> supervoxels -> merge tree, stage by stage.

For each cube size ``N`` in ``--sizes`` a fresh Python process (the script
itself, re-invoked with ``--one N``) does, on one synthetic volume:

1. ``synthetic``: the suite's synthetic EM generator, ``N³`` voxels at
   10 nm (the shipped network's resolution), ``--seed``, fill fraction 0.9.
2. ``network``: affinities of the raw volume with the shipped network
   ``affinities-fib-10nm`` (9 offsets: -1, -3, -9 along z, y, x), block by
   block (``--block``), ``--threads`` torch threads (default 2).
   With ``--skip-network`` the affinities are made from the ground truth
   instead (same segment on both ends and not background -> 1, else 0;
   Gaussian σ = 1 voxel; + normal noise σ 0.1, seeded; clipped to [0, 1]),
   and the output says so: no network figure then.

On those same affinities, each timed on its own:

``boundary``
    ``boundary_from_affinities`` (1 - mean nearest-neighbour affinity).
``flood``
    ``watershed_supervoxels`` on that map: lsd's distance-transform flood
    (threshold 0.5, σ 1, min distance 2) — for comparison; not exact in blocks.
``ascent``
    ``height_supervoxels`` on that map in blocks of ``--ascent-block``³
    (default 128; the labels do not depend on it): steepest ascent of the
    capped distance transform, what ``segment`` makes (threshold 0.5, σ 1,
    cap 16: the shipped model's held-out choice).
``graph``
    ``merge_tree(ascent supervoxels, boundary)``: our region graph and
    its full merge tree.
``relabel@0.5``
    the segmentation volume at threshold 0.5 from that tree (waterz writes
    one, so this is counted on our side of the ours/waterz ratio).
``waterz``
    ``waterz.agglomerate`` on the 3 nearest channels (same convention:
    channel ``d`` at ``j`` links ``j`` and ``j - e_d``, 1 = same object):
    its own watershed + agglomeration (default scoring
    ``OneMinus<MeanAffinity>``) at threshold 0.5, segmentation copied out.
``mwatershed``
    ``mutex_supervoxels`` (mwatershed) on all 9 offsets (biases 0.5).

Columns of the per-size table:

``seconds``       wall time of the stage (``time.perf_counter``; the median of
                  ``--repeats`` runs for the stages after the network).
``Mvoxel/s``      ``N³ / seconds / 10⁶``.
``peak GiB``      the process's peak resident memory *during the stage*
                  (``VmHWM`` of ``/proc/self/status``, reset before the stage
                  through ``/proc/self/clear_refs``), arrays kept from
                  earlier stages included.
``+B/voxel``      that peak minus the resident memory just before the stage,
                  per voxel: what the stage itself adds.
``output``        what it made (supervoxels / segments / channels).

Then, per size: end-to-end voxels/s of our pipeline (network + boundary +
ascent + graph; without the network under ``--skip-network``), the
ratios ``ours/waterz`` (voxels/s of boundary + ascent + graph +
relabel over waterz's total; > 1 = ours faster) and ``ours/mwatershed``
(boundary + ascent + graph over mwatershed), and the process's peak
RSS (``ru_maxrss`` at its end; each size runs in its own process, so it is
that size's own). A final summary lists every size.

``+B/voxel`` is measured on resident memory, so it reads low when a stage
reuses memory the process freed earlier but kept (e.g. ``boundary`` right
after the network at 128³).

Memory: every stage here works on whole in-memory arrays, so its memory
grows with the volume. Before a stage the script estimates what it needs
(bytes per voxel: the larger of the figures in ``BYTES_PER_VOXEL``, measured
with this script on this machine at 256³, and the ``+B/voxel`` measured at
a smaller size in the same invocation) and, when that exceeds the memory available
(``MemAvailable`` × 0.85, or ``--memory-gb``), prints ``not run: needs N GiB``
instead of running it. At 1024³ on a 24 GiB machine that is every stage
after the generator (9 float32 affinity channels alone are 36 GiB): bounded
memory needs the blockwise path. ``--end-to-end-cli`` measures that path
(``napari-connectome segment PROJECT``, wall time and peak RSS of the
command under ``/usr/bin/time -v``) on a synthetic project of each size
(``napari-connectome synthetic --voxel-size 10 10 10 --seed S``, so the
CLI's default fill fraction 0.5, then ``project create --raw --groundtruth``;
``--cli-args ...`` go to ``segment``), when the installed suite has the
command; otherwise it says so and skips.

Run (from the repository root)::

    python benchmarks/segment_throughput.py [--sizes 256 512] [--threads 2] [--block 64]
        [--ascent-block 128] [--seed 0] [--repeats 1] [--skip-network] [--memory-gb GB] [--end-to-end-cli] [--json FILE]

    python benchmarks/segment_throughput.py --sizes 128            # quick
    python benchmarks/segment_throughput.py --skip-network --sizes 1024

Figures only: nothing here passes or fails, and one run of each stage on a
shared machine is noisy (``--repeats`` or a rerun shows the spread).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# the benchmarks folder is on sys.path when a script here runs: share waterz's muzzle
from bench_agglomerate import quiet_stdout

REPO = Path(__file__).resolve().parents[1]
MODEL = "affinities-fib-10nm"
THRESHOLD = 0.5
GIB = 1024**3
STAGES = ("synthetic", "network", "boundary", "flood", "ascent", "graph", "relabel@0.5", "waterz",
          "mwatershed")
#: Peak bytes per voxel each stage adds above what is resident before it
#: (measured with this script on this machine at 256³; used to decide what
#: fits when no smaller size ran in the same invocation). "synthetic" and
#: "network" count the arrays they leave behind (raw/gt; 9 float32 channels).
BYTES_PER_VOXEL = {
    "synthetic": 6.0, "network": 63.0, "boundary": 28.0, "flood": 50.0, "ascent": 30.0,
    "graph": 8.0, "relabel@0.5": 8.0, "waterz": 78.0, "mwatershed": 710.0,
}

#: What each stage after the network reads, and its bytes per voxel (0: all affinity channels).
INPUTS = {
    "boundary": ("3 nearest affinity channels", 12), "flood": ("boundary map", 4),
    "ascent": ("boundary map", 4), "graph": ("supervoxels + boundary map", 8),
    "relabel@0.5": ("supervoxels", 4), "waterz": ("3 nearest affinity channels", 12),
    "mwatershed": ("all affinity channels", 0),
}

# ---------------------------------------------------------------- memory


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_bytes() -> int:
    return _status_kib("VmRSS") * 1024


def reset_peak() -> bool:
    """Reset the peak RSS (VmHWM) to the current RSS; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_bytes() -> int:
    return _status_kib("VmHWM") * 1024


def available_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


# ---------------------------------------------------------------- data


def synthetic(n: int, seed: int, *, want_raw: bool, want_gt: bool):
    from napari_connectome.synthetic import SyntheticSpec, synthetic_volumes

    spec = SyntheticSpec(shape=(n, n, n), voxel_size=(10.0, 10.0, 10.0), seed=seed, fill_fraction=0.9)
    raw, gt = synthetic_volumes(spec)
    return (raw.levels[0].read() if want_raw else None), (gt.levels[0].read() if want_gt else None)


def gt_affinities(gt: np.ndarray, offsets, seed: int, *, sigma: float = 1.0, noise: float = 0.1) -> np.ndarray:
    """Affinities from ground truth: 1 where both ends are the same segment (not 0), smoothed, noisy, in [0, 1]."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    out = np.zeros((len(offsets), *gt.shape), dtype=np.float32)
    tmp = np.empty(gt.shape, dtype=np.float32)
    for c, off in enumerate(offsets):
        here = tuple(slice(-o, None) if o < 0 else slice(0, None if o == 0 else -o) for o in off)
        there = tuple(slice(0, o) if o < 0 else slice(o, None) for o in off)
        out[c][here] = (gt[here] == gt[there]) & (gt[here] != 0)
        ndi.gaussian_filter(out[c], sigma, output=tmp)
        out[c] = tmp
        rng.standard_normal(out=tmp, dtype=np.float32)
        tmp *= noise
        out[c] += tmp
        np.clip(out[c], 0.0, 1.0, out=out[c])
    return out


# ---------------------------------------------------------------- one size


class Runner:
    """Times stages, measures their peak memory, skips those that would not fit."""

    def __init__(self, voxels: int, bytes_per_voxel: dict, memory_gb: float | None):
        self.voxels = voxels
        self.bpv = bytes_per_voxel
        self.memory_gb = memory_gb
        self.rows: dict[str, dict] = {}
        self.can_reset = reset_peak()

    def budget(self) -> int:
        if self.memory_gb is not None:
            return int(self.memory_gb * GIB) - rss_bytes()
        return int(available_bytes() * 0.85)

    def needs(self, name: str) -> int:
        return int(self.bpv[name] * self.voxels)

    def skip(self, name: str, why: str) -> None:
        self.rows[name] = {"stage": name, "run": False, "why": why}
        print(f"  {name:12s} not run: {why}", flush=True)

    def run(self, name: str, func, describe=None, *, repeats: int = 1):
        need, budget = self.needs(name), self.budget()
        if need > budget:
            self.skip(name, f"needs ~{need / GIB:.1f} GiB, {budget / GIB:.1f} GiB available")
            return None
        before = rss_bytes()
        reset_peak()
        times = []
        for _ in range(max(repeats, 1)):
            result = None  # the previous run's output is not counted in this one's memory
            t0 = time.perf_counter()
            result = func()
            times.append(time.perf_counter() - t0)
        seconds = statistics.median(times)
        peak = peak_bytes() if self.can_reset else None
        row = {"stage": name, "run": True, "seconds": seconds, "all_seconds": times,
               "voxels_per_s": self.voxels / seconds, "peak_bytes": peak,
               "added_bytes_per_voxel": (peak - before) / self.voxels if peak else None,
               "output": describe(result) if describe else ""}
        self.rows[name] = row
        spread = f" (median of {len(times)}: {min(times):.2f}-{max(times):.2f})" if len(times) > 1 else ""
        print(f"  {name:12s} {seconds:9.2f} s  {row['voxels_per_s'] / 1e6:8.2f} Mvoxel/s  {row['output']}{spread}",
              flush=True)
        return result


def n_labels(a: np.ndarray) -> str:
    import fastremap

    return f"{len(fastremap.unique(a)):,} labels"


def one_size(n: int, args) -> dict:
    from napari_connectome.segment import (
        boundary_from_affinities,
        merge_tree,
        mutex_supervoxels,
        nearest_channels,
        watershed_supervoxels,
    )
    from napari_connectome.segment.heights import HeightParams, height_supervoxels
    from napari_connectome.segment.pipeline import segmentation_at

    voxels = n**3
    measured = args.measured_bpv or {}
    bpv = {k: max(v, float(measured.get(k, 0.0))) for k, v in BYTES_PER_VOXEL.items()}
    r = Runner(voxels, bpv, args.memory_gb)
    print(f"\n== {n}³ = {voxels / 1e6:.1f} Mvoxels"
          f"{' (network skipped: affinities from ground truth)' if args.skip_network else ''}", flush=True)
    if args.skip_network:
        from napari_connectome_models.registry import load_registry

        offsets = [tuple(int(v) for v in o) for o in load_registry()[MODEL].offsets]
    else:
        from napari_connectome_models.registry import load_network

        model = load_network(MODEL)
        offsets = [tuple(int(v) for v in o) for o in model.config.offsets]
    want_raw, want_gt = not args.skip_network, args.skip_network
    data = r.run("synthetic", lambda: synthetic(n, args.seed, want_raw=want_raw, want_gt=want_gt),
                 lambda d: "raw uint8" if want_raw else "ground truth uint32")
    if data is None:
        return {"size": n, "rows": r.rows, "peak_rss_bytes": _maxrss()}
    raw, gt = data
    del data
    affs = None
    if args.skip_network:
        r.skip("network", "skipped (--skip-network)")
        if (4 * len(offsets) + 8) * voxels > r.budget():  # the affinities alone (+ temporaries)
            r.skip("affinities", f"the {len(offsets)} float32 affinity channels alone need "
                                 f"{4 * len(offsets) * voxels / GIB:.1f} GiB, {r.budget() / GIB:.1f} GiB available")
        else:
            t0 = time.perf_counter()
            affs = gt_affinities(gt, offsets, args.seed)
            print(f"  (affinities from ground truth: {time.perf_counter() - t0:.1f} s, not a stage)", flush=True)
        del gt
    else:
        affs = r.run("network", lambda: predict(raw, model, args), lambda a: f"{a.shape[0]} channels float32")
        del raw
    if affs is None:
        for name in STAGES[2:]:
            what, size = INPUTS[name]
            size = size if size else 4 * len(offsets)
            r.skip(name, f"no affinities; would need ~{(r.needs(name) + size * voxels) / GIB:.0f} GiB "
                         f"({size * voxels / GIB:.0f} GiB of input: {what}; + ~{r.bpv[name]:.0f} B/voxel "
                         f"for the stage)")
        return {"size": n, "rows": r.rows, "peak_rss_bytes": _maxrss(), "skip_network": args.skip_network}

    rep = args.repeats
    boundary = r.run("boundary", lambda: boundary_from_affinities(affs, offsets), lambda b: "float32", repeats=rep)
    sv = None
    if boundary is not None:
        r.run("flood", lambda: watershed_supervoxels(boundary), lambda s: f"{int(s.max()):,} supervoxels",
              repeats=rep)
        ablock = (args.ascent_block,) * 3
        params = HeightParams(threshold=0.5, sigma=1.0, cap=16.0)
        sv = r.run("ascent", lambda: height_supervoxels(boundary, params, block_shape=ablock),
                   lambda s: f"{int(s.max()):,} supervoxels", repeats=rep)
    else:
        r.skip("flood", "no boundary map")
        r.skip("ascent", "no boundary map")
    tree = None
    if sv is not None:
        tree = r.run("graph", lambda: merge_tree(sv, boundary), lambda t: "merge tree", repeats=rep)
    else:
        r.skip("graph", "no supervoxels")
    if tree is not None:
        r.run("relabel@0.5", lambda: segmentation_at(tree, sv, THRESHOLD), n_labels, repeats=rep)
    else:
        r.skip("relabel@0.5", "no merge tree")
    tree = sv = boundary = None  # free them before the baselines
    near = nearest_channels(offsets)

    def waterz_run():
        import waterz

        nn = affs[near] if near != [0, 1, 2] else affs[:3]  # a contiguous view when first
        with quiet_stdout():
            return [s.copy() for s in waterz.agglomerate(np.ascontiguousarray(nn), thresholds=[THRESHOLD])][0]

    if importlib.util.find_spec("waterz") is not None:
        r.run("waterz", waterz_run, n_labels, repeats=rep)
    else:
        r.skip("waterz", "waterz is not installed")
    if importlib.util.find_spec("mwatershed") is not None:
        r.run("mwatershed", lambda: mutex_supervoxels(affs, offsets), lambda s: f"{int(s.max()):,} labels",
              repeats=rep)
    else:
        r.skip("mwatershed", "mwatershed is not installed")
    return {"size": n, "rows": r.rows, "peak_rss_bytes": _maxrss(), "skip_network": args.skip_network}


def predict(raw, model, args):
    from napari_connectome.inference import predict_affinities

    return predict_affinities(raw, model, block_shape=(args.block,) * 3, threads=args.threads)


def _maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


# ---------------------------------------------------------------- report


def summary(result: dict) -> dict:
    rows, n = result["rows"], result["size"]

    def secs(*names):
        if all(rows.get(k, {}).get("run") for k in names):
            return sum(rows[k]["seconds"] for k in names)
        return None

    voxels = n**3
    out = {}
    post = secs("boundary", "ascent", "graph")
    out["post_vps"] = voxels / post if post else None
    e2e = secs("network", "boundary", "ascent", "graph")
    out["end_to_end_vps"] = voxels / e2e if e2e else None
    ours_w, wz = secs("boundary", "ascent", "graph", "relabel@0.5"), secs("waterz")
    out["ours_over_waterz"] = wz / ours_w if ours_w and wz else None
    mw = secs("mwatershed")
    out["ours_over_mwatershed"] = mw / post if post and mw else None
    return out


def print_table(result: dict) -> None:
    n, rows = result["size"], result["rows"]
    print(f"\n-- {n}³ ({n**3 / 1e6:.1f} Mvoxels){' — network skipped' if result.get('skip_network') else ''}")
    print(f"{'stage':12s} {'seconds':>9s} {'Mvoxel/s':>9s} {'peak GiB':>9s} {'+B/voxel':>9s}  output")
    for name, row in rows.items():
        if not row["run"]:
            print(f"{name:12s} not run: {row['why']}")
            continue
        peak = f"{row['peak_bytes'] / GIB:9.2f}" if row["peak_bytes"] else f"{'?':>9s}"
        add = f"{row['added_bytes_per_voxel']:9.1f}" if row["added_bytes_per_voxel"] is not None else f"{'?':>9s}"
        print(f"{name:12s} {row['seconds']:9.2f} {row['voxels_per_s'] / 1e6:9.2f} {peak} {add}  {row['output']}")
    s = summary(result)

    def fmt(v, unit=""):
        return "n/a" if v is None else f"{v / 1e6:.2f} Mvoxel/s" if unit == "v" else f"{v:.2f}"

    print(f"ours, boundary + ascent + graph:            {fmt(s['post_vps'], 'v')}")
    if result.get("skip_network"):
        print("ours, end to end (network + ascent + graph): n/a (network skipped)")
    else:
        print(f"ours, end to end (network + ascent + graph): {fmt(s['end_to_end_vps'], 'v')}")
    print(f"ratio ours/waterz (voxels/s, boundary + ascent + graph + relabel vs waterz total; > 1 = ours faster): "
          f"{fmt(s['ours_over_waterz'])}")
    print(f"ratio ours/mwatershed (voxels/s, boundary + ascent + graph vs mutex watershed; > 1 = ours faster): "
          f"{fmt(s['ours_over_mwatershed'])}")
    print(f"peak RSS of the {n}³ process: {result['peak_rss_bytes'] / GIB:.2f} GiB")


# ---------------------------------------------------------------- CLI path


def cli_available(python: str) -> bool:
    proc = subprocess.run([python, "-m", "napari_connectome", "segment", "--help"], capture_output=True, text=True)
    return proc.returncode == 0


def timed_command(cmd: list[str], log: Path) -> tuple[float, int | None, int]:
    """(wall seconds, peak RSS bytes or None, return code) of ``cmd`` under ``/usr/bin/time -v``."""
    gnu_time = shutil.which("time") or "/usr/bin/time"
    report = log.with_suffix(".time")
    use_time = Path(gnu_time).is_file()
    full = [gnu_time, "-v", "-o", str(report), *cmd] if use_time else cmd
    t0 = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run(full, stdout=f, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - t0
    peak = None
    if use_time and report.is_file():
        for line in report.read_text().splitlines():
            if "Maximum resident set size" in line:
                peak = int(line.split(":")[-1]) * 1024
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return seconds, peak, rc


def end_to_end_cli(sizes, args) -> list[dict]:
    python = sys.executable
    print("\n== end to end through the command line: napari-connectome segment PROJECT")
    if not cli_available(python):
        print("not available: `python -m napari_connectome segment --help` fails with this installation; skipped")
        return []
    out = []
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="nc-throughput-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        for n in sizes:
            base = work / f"s{n}"
            shutil.rmtree(base, ignore_errors=True)
            base.mkdir()
            nc = [python, "-m", "napari_connectome"]
            steps = [
                ("synthetic", [*nc, "synthetic", str(base / "data"), "--shape", str(n), str(n), str(n),
                               "--voxel-size", "10", "10", "10", "--seed", str(args.seed), "--quiet"]),
                ("project", [*nc, "project", "create", str(base / "project"),
                             "--raw", str(base / "data" / "raw.ome.zarr"),
                             "--groundtruth", str(base / "data" / "groundtruth.ome.zarr")]),
                ("segment", [*nc, "segment", str(base / "project"), *args.cli_args]),
            ]
            row = {"size": n}
            for name, cmd in steps:
                seconds, peak, rc = timed_command(cmd, base / f"{name}.log")
                row[name] = {"seconds": seconds, "peak_rss_bytes": peak, "rc": rc}
                if rc != 0:
                    print(f"{n}³ {name}: failed (exit {rc}), see {base / f'{name}.log'}")
                    break
                print(f"{n}³ {name:9s} {seconds:9.1f} s  {n**3 / seconds / 1e6:8.2f} Mvoxel/s  "
                      f"peak RSS {peak / GIB if peak else float('nan'):.2f} GiB", flush=True)
            out.append(row)
            if not args.workdir:
                shutil.rmtree(base, ignore_errors=True)
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return out


# ---------------------------------------------------------------- main


def run_size_in_subprocess(n: int, args, measured: dict) -> dict | None:
    fd, path = tempfile.mkstemp(suffix=".json", prefix="nc-throughput-")
    os.close(fd)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", str(n), "--result", path,
           "--seed", str(args.seed), "--threads", str(args.threads), "--block", str(args.block),
           "--repeats", str(args.repeats), "--ascent-block", str(args.ascent_block),
           "--measured-bpv", json.dumps(measured)]
    if args.skip_network:
        cmd.append("--skip-network")
    if args.memory_gb is not None:
        cmd += ["--memory-gb", str(args.memory_gb)]
    try:
        rc = subprocess.run(cmd).returncode
        text = Path(path).read_text()
        if rc != 0 or not text:
            print(f"{n}³: the process failed (exit {rc}{', killed: out of memory?' if rc in (-9, 137) else ''})")
            return None
        return json.loads(text)
    finally:
        Path(path).unlink(missing_ok=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="cube edges (default 256 512)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the network (default 2)")
    parser.add_argument("--block", type=int, default=64, help="network output block edge (default 64)")
    parser.add_argument("--ascent-block", type=int, default=128,
                        help="block edge of ascent_supervoxels (default 128; the labels do not depend on it)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs of each post-processing stage, median reported (default 1; the network runs once)")
    parser.add_argument("--skip-network", action="store_true",
                        help="affinities from the ground truth (smoothed + noise) instead of the network")
    parser.add_argument("--memory-gb", type=float, help="memory a size may use (default: 85%% of MemAvailable)")
    parser.add_argument("--end-to-end-cli", action="store_true",
                        help="also time `napari-connectome segment` on a synthetic project of each size")
    parser.add_argument("--cli-only", action="store_true",
                        help="only the end-to-end command line runs (block-wise, bounded memory), not the in-memory stages")
    parser.add_argument("--cli-args", nargs=argparse.REMAINDER, default=[],
                        help="extra arguments for `segment` (must come last)")
    parser.add_argument("--workdir", help="keep the --end-to-end-cli projects here (default: a temporary folder)")
    parser.add_argument("--json", metavar="FILE", help="also write all figures as JSON")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--measured-bpv", type=json.loads, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.one is not None:
        result = one_size(args.one, args)
        if args.result:
            Path(args.result).write_text(json.dumps(result))
        return 0

    import platform

    import torch

    print(f"segment_throughput: sizes {args.sizes}, seed {args.seed}, torch threads {args.threads}, "
          f"network block {args.block}³, ascent block {args.ascent_block}³, {os.cpu_count()} CPUs, "
          f"{available_bytes() / GIB:.1f} GiB available, {platform.processor() or platform.machine()}, "
          f"torch {torch.__version__}")
    if args.skip_network:
        print("network SKIPPED: affinities from the ground truth (smoothed + noise); no network figures")
    results, measured = [], {}
    for n in ([] if args.cli_only else sorted(args.sizes)):
        result = run_size_in_subprocess(n, args, measured)
        if result is None:
            continue
        results.append(result)
        for name, row in result["rows"].items():
            if row.get("run") and row.get("added_bytes_per_voxel") is not None and n >= 128:
                measured[name] = max(row["added_bytes_per_voxel"], 1.0)
        print_table(result)

    print("\n== summary (Mvoxel/s; peak RSS of each size's own process)")
    print(f"{'size':>6s} {'network':>8s} {'bnd+asc':>9s} {'flood':>8s} {'graph':>8s} {'waterz':>8s} "
          f"{'mws':>8s} {'e2e':>8s} {'/waterz':>8s} {'/mws':>8s} {'peak RSS':>9s}")
    for result in results:
        rows, s = result["rows"], summary(result)

        def v(*names, rows=rows, n=result["size"]):
            if all(rows.get(k, {}).get("run") for k in names):
                return f"{n**3 / sum(rows[k]['seconds'] for k in names) / 1e6:8.2f}"
            return f"{'-':>8s}"

        r = lambda x: f"{x:8.2f}" if x is not None else f"{'-':>8s}"  # noqa: E731
        print(f"{result['size']:>5d}³ {v('network')} {v('boundary', 'ascent'):>9s} {v('flood')} {v('graph')} "
              f"{v('waterz')} {v('mwatershed')} {r(s['end_to_end_vps'] / 1e6 if s['end_to_end_vps'] else None)} "
              f"{r(s['ours_over_waterz'])} {r(s['ours_over_mwatershed'])} "
              f"{result['peak_rss_bytes'] / GIB:8.2f}G")
    print("('-': not run; e2e = network + boundary + ascent + graph; flood: lsd's flood, for comparison; /waterz, /mws: our voxels/s over theirs)")

    cli = end_to_end_cli(sorted(args.sizes), args) if (args.end_to_end_cli or args.cli_only) else None
    if args.json:
        Path(args.json).write_text(json.dumps({"sizes": results, "cli": cli, "skip_network": args.skip_network},
                                              indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
