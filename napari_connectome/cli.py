"""The ``napari-connectome`` command line.

Every command that fails on bad input prints one line,
``napari-connectome: error: FILE: problem``, and exits with code 2; nothing
already saved is touched. ``--debug`` shows the traceback instead.

The GUI commands (``view``, ``demo``) live in the napari face and are found
through the ``napari_connectome.viewer`` entry points, so the engine never
imports napari or Qt and works where they are not installed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from collections.abc import Sequence

from napari_connectome import check as check_cmd
from napari_connectome.errors import ConnectomeError, ConnectomeWarning, InputError, from_os_error

PROG = "napari-connectome"


def _voxel_size_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--voxel-size",
        nargs=3,
        type=float,
        metavar=("Z", "Y", "X"),
        help="voxel size of the finest level in nm (overrides or supplies the file's)",
    )


def _kind_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kind", choices=("image", "labels"), help="treat the volume as an image or as labels"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Local, offline connectome proofreading: open, convert and view EM volumes.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("info", help="describe a volume: shape, levels, voxel size, dtype, chunks")
    p.add_argument("uri", help="path or URI (FILE.h5/dataset for HDF5)")
    p.add_argument("--json", action="store_true", help="print JSON")
    _voxel_size_arg(p)
    _kind_arg(p)

    p = sub.add_parser("convert", help="write an OME-Zarr multiscale pyramid of a volume")
    p.add_argument("src", help="source volume (any supported format)")
    p.add_argument("dst", help="destination OME-Zarr folder (must not exist)")
    _voxel_size_arg(p)
    _kind_arg(p)
    p.add_argument("--chunks", type=int, default=64, help="chunk edge in voxels (default 64)")
    p.add_argument("--ngff", choices=("0.4", "0.5"), default="0.4", help="OME-NGFF version (0.4 = zarr v2, 0.5 = zarr v3)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace DST if it exists (the old one stays until the new one is complete)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--assume-compression", type=float, default=100.0, metavar="RATIO",
                   help="refuse when the output would not fit on disk even compressed RATIO-fold (default 100; inf: no check)")
    p.add_argument("--memory-gb", type=float, metavar="GB", help="memory the write may plan to use (default: what is available)")

    p = sub.add_parser("project", help="create or describe a proofreading project folder")
    psub = p.add_subparsers(dest="project_command", metavar="ACTION")
    c = psub.add_parser("create", help="create a project folder that refers to its volumes")
    c.add_argument("dir", help="the project folder")
    c.add_argument("--raw", required=True, help="the EM volume")
    c.add_argument("--supervoxels", help="supervoxel labels")
    c.add_argument("--boundaries", help="boundary probability map or affinities")
    c.add_argument("--groundtruth", help="ground-truth segmentation (for measuring quality)")
    c.add_argument("--name", help="display name")
    _voxel_size_arg(c)
    i = psub.add_parser("info", help="describe a project folder")
    i.add_argument("dir")
    i.add_argument("--json", action="store_true")
    r = psub.add_parser(
        "restart-log",
        help="start a new edit log (or effort log) when the old one is lost; the old file is kept aside",
    )
    r.add_argument("dir", help="the project folder")
    r.add_argument("--effort-log", action="store_true", help="restart the effort log instead of the edit log")

    p = sub.add_parser("agglomerate", help="build the supervoxel graph of a project and agglomerate it")
    p.add_argument("dir", help="the project folder")
    p.add_argument("--threshold", type=float, help="merge while the mean boundary signal is below T (0..1)")
    p.add_argument("--rebuild", action="store_true", help="rebuild the region graph even if one is stored")
    p.add_argument("--memory-gb", type=float, metavar="GB",
                   help="memory the graph and merge tree may plan to use (default: what is available)")
    p.add_argument("--scheduler", default="threads",
                   help="where the graph's blocks run: threads, synchronous, processes, or tcp://HOST:PORT of a "
                        "Dask scheduler whose workers reach the project (the graph is the same on any)")
    p.add_argument("--workers", type=int, help="threads or processes (default: up to 4)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("skeletonize", help="skeletonize every segment of a project (TEASAR), saved in the project")
    p.add_argument("dir", help="the project folder")
    p.add_argument("--method", choices=("auto", "whole", "blockwise"), default="auto",
                   help="whole: level 0 read at once; blockwise: block by block, large segments from a coarser "
                        "level (default auto: whole up to 256³ voxels)")
    p.add_argument("--max-voxel", type=float, metavar="NM",
                   help="blockwise: large segments come from the coarsest level with voxels no larger (default 40)")
    p.add_argument("--coarse-min", type=int, metavar="VOXELS",
                   help="blockwise: voxels a segment needs at that level to be traced there (default 2000)")
    p.add_argument("--block", type=int, metavar="VOXELS", help="blockwise: block edge in voxels (default 256)")
    p.add_argument("--coarse-block", type=int, metavar="VOXELS",
                   help="blockwise: block edge in voxels of the coarse level (default 128)")
    p.add_argument("--scheduler", default="threads",
                   help="where the blocks run: threads, synchronous, processes, or tcp://HOST:PORT of a Dask "
                        "scheduler whose workers reach the project (the skeletons are the same on any)")
    p.add_argument("--workers", type=int, help="threads or processes (default: up to 4)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("evaluate", help="VI split/merge and adapted Rand error of a segmentation against ground truth")
    p.add_argument("seg", help="a segmentation volume, or a project folder (its current mapping)")
    p.add_argument("gt", help="the ground-truth volume (label 0 is ignored)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--objects", type=int, default=0, metavar="N", help="also list the N worst split and merged bodies")

    p = sub.add_parser("evaluate-synapses", help="precision, recall and F of predicted synapses against ground "
                                                 "truth: post sites and pre→post partners (CREMI protocol)")
    p.add_argument("pred", help="predicted synapses: CSV (.csv) or CREMI HDF5 (.h5, .hdf, .hdf5)")
    p.add_argument("gt", help="ground-truth synapses, same formats (neuron ids ≠ 0 on every row)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--site-distance-nm", type=float, default=200.0, metavar="NM",
                   help="a predicted post site matches a true one this close (default 200)")
    p.add_argument("--partner-distance-nm", type=float, default=400.0, metavar="NM",
                   help="a predicted connection matches a true one when pre and post are each this close "
                        "and the neurons agree (default 400)")
    p.add_argument("--groundtruth-labels", metavar="PATH",
                   help="ground-truth label volume: the neurons of every prediction are read from it "
                        "(and those of a CREMI ground truth, which stores none)")

    p = sub.add_parser("simulate", help="a simulated proofreader answering ranked candidates from ground truth")
    p.add_argument("dir", help="the project folder (its edit log is never touched: the run works on a copy)")
    p.add_argument("--gt", required=True, help="ground-truth volume, same shape and voxel size as the project")
    p.add_argument("--strategy", default="active", help="random, size, static or active; several comma-separated")
    p.add_argument("--decisions", type=int, default=100, help="yes/no decisions to simulate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help='print {"strategy": …, "curve": [{decision, vi_split, vi_merge, minutes}, …]}')
    p.add_argument("--plot", metavar="PNG", help="VI vs decisions and vs minutes, one curve per strategy")
    p.add_argument("--csv", metavar="CSV", help="write the curves as CSV")
    p.add_argument("--overwrite", action="store_true", help="replace existing --csv/--plot files")

    p = sub.add_parser("log", help="export or merge a project's edit log")
    lsub = p.add_subparsers(dest="log_command", metavar="ACTION")
    e = lsub.add_parser("export", help="write the edit log as CSV or JSON (CAVE change-log columns plus ours)")
    e.add_argument("dir", help="the project folder")
    e.add_argument("out", help="output file (.csv or .json)")
    e.add_argument("--format", choices=("csv", "json"), help="default: from OUT's extension")
    e.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    m = lsub.add_parser("merge", help="bring the edits of an offline copy B into project A; conflicts are reported")
    m.add_argument("a", help="the project that receives the edits")
    m.add_argument("b", help="the offline copy (only read)")
    m.add_argument("--json", action="store_true", help="print the report as JSON")

    p = sub.add_parser("effort", help="what proofreading cost: active minutes per mm³ and per neuron")
    esub = p.add_subparsers(dest="effort_command", metavar="ACTION")
    r = esub.add_parser("report", help="report from the effort log and the edit log (idle time excluded)")
    r.add_argument("dir", help="the project folder")
    r.add_argument("--json", action="store_true", help="print the report as JSON")
    r.add_argument("--csv", metavar="F", help="write the per-neuron table as CSV")
    r.add_argument("--volume", choices=("project", "segments"), default="project",
                   help="volume counted: the project region (default) or the union of reviewed segments' boxes")
    r.add_argument("--target-mm3", type=float, default=1.0, metavar="MM3",
                   help="volume of the cost projection in mm³ (default 1)")
    r.add_argument("--overwrite", action="store_true", help="replace the --csv file if it exists")

    p = sub.add_parser("synthetic", help="write a synthetic EM volume and its ground truth as OME-Zarr")
    p.add_argument("dst", help="output folder (raw.ome.zarr and groundtruth.ome.zarr go inside)")
    p.add_argument("--shape", nargs=3, type=int, default=(128, 256, 256), metavar=("Z", "Y", "X"))
    p.add_argument("--voxel-size", nargs=3, type=float, default=(8.0, 8.0, 8.0), metavar=("Z", "Y", "X"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--assume-compression", type=float, default=100.0, metavar="RATIO",
                   help="refuse when the output would not fit on disk even compressed RATIO-fold (default 100; inf: no check)")
    p.add_argument("--memory-gb", type=float, metavar="GB", help="memory the write may plan to use (default: what is available)")
    p.add_argument("--synapses", action="store_true",
                   help="draw synapses at contacts (T-bar, vesicles, PSDs) and write synapses.csv beside the volumes "
                        "(one row per pre→post connection, positions in nm)")
    p.add_argument("--synapse-density", type=float, default=3.0, metavar="PER_UM3",
                   help="presynaptic sites per µm³ with --synapses (default 3; fewer where contacts run out)")

    check_cmd.add_parser(sub)

    p = sub.add_parser("segment", help="segment a project's raw EM: affinities → supervoxels → graph → "
                                       "agglomeration (resumable; stages skipped when up to date)")
    p.add_argument("dir", help="the project folder")
    p.add_argument("--model", default="affinities-fib-10nm", help="registry name of the affinity network")
    p.add_argument("--device", default="auto", help="auto (CUDA > MPS > CPU), cpu, cuda[:N] or mps")
    p.add_argument("--block", type=int, metavar="VOXELS",
                   help="network output block edge (multiple of 4; default: from the device's free memory)")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    p.add_argument("--stage", action="append", choices=("affinities", "supervoxels", "graph"),
                   help="run only this stage (repeatable; default: all)")
    p.add_argument("--threshold", type=float, help="agglomeration threshold (default: the model's, chosen on "
                                                  "held-out training data)")
    p.add_argument("--region", nargs=6, type=float, metavar=("Z0", "Y0", "X0", "Z1", "Y1", "X1"),
                   help="segment only this box, in nm (default: the whole volume)")
    p.add_argument("--supervoxel-block", type=int, default=192, metavar="VOXELS",
                   help="block edge of the supervoxel passes (default 192; the labels do not depend on it)")
    p.add_argument("--scheduler", default="threads",
                   help="threads, synchronous, processes, or tcp://HOST:PORT of a Dask scheduler")
    p.add_argument("--workers", type=int, help="threads or processes (default: 1 for the network, up to 4 after)")
    p.add_argument("--threads", type=int, help="torch threads on the CPU (default: torch's)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("synapses", help="find a project's synapses: synapse network → sites → partners through "
                                        "the segmentation → the project's synapse store and a CSV")
    p.add_argument("dir", help="the project folder")
    p.add_argument("--labels", metavar="URI", help="neuron ids to read partners from (default: the project's "
                                                   "current segmentation, edits included)")
    p.add_argument("--model", default="synapses-synthetic-10nm", help="registry name or weights file of a synapse network")
    p.add_argument("--device", default="auto", help="auto (CUDA > MPS > CPU), cpu, cuda[:N] or mps")
    p.add_argument("--block", type=int, metavar="VOXELS", help="network output block edge (default: from free memory)")
    p.add_argument("--threshold", type=float, help="mask probability of a site (default: the model's, chosen on "
                                                  "held-out data)")
    p.add_argument("--pre-reach", metavar="NM|off", default="model",
                   help="read the pre neuron along the post→pre ray up to NM beyond the predicted pre point "
                        "(default: the model's, chosen on held-out data; off: at the predicted point)")
    p.add_argument("--orient", metavar="NM|off", default="model",
                   help="turn a row round when its pre end is brighter than its post end (the darkest voxel of "
                        "each end's neuron within NM; default: the model's, chosen on held-out data; off: never)")
    p.add_argument("--csv", metavar="PATH", help="also write the table here (default: DIR/exports/synapses.csv)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --csv file")
    p.add_argument("--threads", type=int, help="torch threads on the CPU (default: torch's)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("synapse-import", help="add the synapses of a CSV or CREMI file to a project's synapse store")
    p.add_argument("dir", help="the project folder")
    p.add_argument("file", help="synapse CSV (one row per pre→post, nm) or CREMI HDF5")
    p = sub.add_parser("synapse-export", help="write a project's synapses or connectome (neurons as they are now)")
    p.add_argument("dir", help="the project folder")
    p.add_argument("out", help="output file or folder")
    p.add_argument("--format", choices=("csv", "parquet", "cremi", "neuroglancer", "connectome"),
                   help="default: from OUT's suffix (.csv, .parquet, .h5; a folder: neuroglancer)")
    p.add_argument("--labels", metavar="URI", help="neuron ids from this volume (default: the project's current "
                                                   "segmentation)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")

    p = sub.add_parser("train", help="train or fine-tune an affinity network from labels or a proofread project "
                                     "(rerun the same command to continue)")
    p.add_argument("run_dir", help="the run folder (config, checkpoints, log); the same command again continues it")
    p.add_argument("--raw", help="the EM volume (default with --project: the project's)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--labels", help="labels on the raw's grid, any supported format (0: boundary, see --zero)")
    src.add_argument("--project", metavar="DIR", help="a project: its proofread segmentation inside --box becomes the labels")
    p.add_argument("--sparse", action="store_true", help="--labels are painted strokes: 0 is unpainted, only painted voxels count")
    p.add_argument("--box", nargs=6, type=float, metavar=("Z0", "Y0", "X0", "Z1", "Y1", "X1"),
                   help="train only on the labels inside this box in nm (required with --project)")
    p.add_argument("--zero", choices=("boundary", "unknown"), default="boundary",
                   help="what label 0 means in dense labels: a boundary between bodies (default) or unknown")
    base = p.add_mutually_exclusive_group()
    base.add_argument("--from", dest="base", metavar="NAME", help="fine-tune this registered model, e.g. affinities-fib-10nm")
    base.add_argument("--checkpoint", metavar="PATH", help="fine-tune these weights (.pt) or training checkpoint")
    p.add_argument("--iterations", type=int, default=1000, help="iterations to reach (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seeds the initial weights and every patch (default 0)")
    p.add_argument("--lr", type=float, help="learning rate (default 1e-4 fine-tuning, 5e-4 new)")
    p.add_argument("--patch", nargs=3, type=int, metavar=("Z", "Y", "X"), help="smallest output window (default 16 16 16)")
    p.add_argument("--checkpoint-every", type=int, default=100, metavar="N", help="iterations between checkpoints (default 100)")
    p.add_argument("--threads", type=int, help="torch threads (default: up to 4; results repeat for a fixed count)")
    p.add_argument("--evaluate", action="store_true", help="print the loss on the labelled box before and after")
    p.add_argument("--export", metavar="OUT.pt", help="then write the weights as the registry loads them, and OUT.json")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _voxel_size_arg(p)

    p = sub.add_parser("provenance", help="what made each computed output of a project or volume: software, "
                                          "parameters, inputs, model, device, timings")
    p.add_argument("path", help="a project folder, or an OME-Zarr volume the suite wrote")
    p.add_argument("--json", action="store_true", help="the records as JSON")

    for name, text in (("view", "open volumes or a project in napari with the suite"), ("demo", "the bundled sample in napari with the suite")):
        v = sub.add_parser(name, help=text)
        if name == "view":
            v.add_argument("uris", nargs="+", help="volumes or project folders")
            _voxel_size_arg(v)
            _kind_arg(v)
        else:
            v.add_argument("--sample", choices=("gala-fib", "synthetic"), default="gala-fib")
        v.add_argument("--screenshot", metavar="PNG", help="render off-screen to PNG and exit")
        v.add_argument("--ndisplay", type=int, choices=(2, 3), default=2)
        v.add_argument("--panel", action="append", choices=("proofread", "tasks", "effort", "segment", "synapses"),
                       default=[], help="also dock this panel (repeatable): proofread, tasks (Micro-tasks), effort, "
                                        "segment, synapses")
    return parser


def _print_info(info: dict) -> None:
    vs = " × ".join(f"{v:g}" for v in info["voxel_size_nm"])
    print(f"{info['source']}")
    print(f"  format      {info['format']}  ({info['kind']})")
    print(f"  axes        {','.join(info['axes'])}")
    print(f"  shape       {tuple(info['shape'])}  {info['dtype']}")
    print(f"  voxel size  {vs} nm" + ("  (assumed)" if info["voxel_size_assumed"] else ""))
    print(f"  offset      {tuple(info['offset_nm'])} nm")
    print(f"  levels      {len(info['levels'])}")
    for k, lv in enumerate(info["levels"]):
        lvs = " × ".join(f"{v:g}" for v in lv["voxel_size_nm"])
        print(f"    {k}: shape {tuple(lv['shape'])}  voxel {lvs} nm  chunks {tuple(lv['chunks'])}")
    for note in info["notes"]:
        print(f"  note: {note}")


def _cmd_info(args) -> int:
    from napari_connectome.volume import open_volume

    volume = open_volume(args.uri, voxel_size=args.voxel_size, kind=args.kind)
    info = volume.info()
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print_info(info)
    return 0


def _cmd_convert(args) -> int:
    from napari_connectome.progress import TqdmProgress
    from napari_connectome.pyramid import convert

    if args.chunks < 1:
        raise InputError("--chunks", f"must be ≥ 1, got {args.chunks}")
    progress = TqdmProgress(disable=args.quiet)
    try:
        out = convert(
            args.src,
            args.dst,
            voxel_size=args.voxel_size,
            kind=args.kind,
            chunks=args.chunks,
            ngff=args.ngff,
            progress=progress,
            overwrite=args.overwrite,
            assume_compression=args.assume_compression,
            memory_gb=args.memory_gb,
        )
    finally:
        progress.close()
    print(out)
    return 0


def _cmd_project(args, parser) -> int:
    from napari_connectome.project import create_project, open_project

    if args.project_command == "create":
        project = create_project(
            args.dir,
            raw=args.raw,
            supervoxels=args.supervoxels,
            boundaries=args.boundaries,
            groundtruth=args.groundtruth,
            voxel_size=args.voxel_size,
            name=args.name,
        )
        print(f"created project {project.name!r} in {project.root}")
        for role, rec in project.inputs.items():
            vs = " × ".join(f"{v:g}" for v in rec["voxel_size_nm"])
            note = " (assumed)" if rec["voxel_size_assumed"] else ""
            print(f"  {role:<12} {rec['uri']}  {tuple(rec['shape'])} {rec['dtype']}  {vs} nm{note}")
        return 0
    if args.project_command == "restart-log":
        from napari_connectome.project import restart_log

        which = "effort_log" if args.effort_log else "edit_log"
        aside = restart_log(open_project(args.dir), which)
        what = "effort log" if args.effort_log else "edit log"
        kept = f"; the old one is kept as {aside}" if aside else " (there was no old file)"
        print(f"{args.dir}: the next opening starts a new {what}{kept}")
        return 0
    if args.project_command == "info":
        project = open_project(args.dir)
        if args.json:
            print(json.dumps(project.manifest, indent=2))
        else:
            print(f"{project.name}  ({project.root})")
            for role, rec in project.inputs.items():
                print(f"  {role:<12} {rec['uri']}  {tuple(rec['shape'])} {rec['dtype']}")
        return 0
    parser.parse_args(["project", "--help"])
    return 2


def _cmd_agglomerate(args) -> int:
    from napari_connectome.graph import agglomerate_project, build_project_graph, load_project_graph
    from napari_connectome.graph.project_graph import has_project_graph
    from napari_connectome.progress import TqdmProgress
    from napari_connectome.project import open_project

    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise InputError("--threshold", f"must be between 0 and 1, got {args.threshold}")
    if args.memory_gb is not None and not args.memory_gb > 0:
        raise InputError("--memory-gb", f"must be a positive number of GiB, got {args.memory_gb}")
    if args.workers is not None and args.workers < 1:
        raise InputError("--workers", f"must be at least 1, got {args.workers}")
    project = open_project(args.dir)
    progress = TqdmProgress(disable=args.quiet)
    try:
        if args.rebuild or not has_project_graph(project):
            rag = build_project_graph(project, progress=progress, memory_gb=args.memory_gb,
                                      scheduler=args.scheduler, workers=args.workers)
        else:
            rag, _tree = load_project_graph(project, memory_gb=args.memory_gb)
        tree = agglomerate_project(project, threshold=args.threshold, progress=progress,
                                   memory_gb=args.memory_gb)
    finally:
        progress.close()
    threshold = project.manifest["agglomeration"]["threshold"]
    sv_ids, seg_ids = tree.mapping_at(threshold)
    print(
        f"{project.root}: {len(rag.node_ids)} supervoxels, {len(rag.edges)} edges ({rag.signal}); "
        f"threshold {threshold:g} → {len(set(seg_ids.tolist()))} segments"
    )
    return 0


def _segmentation_array(uri: str):
    """Level-0 segment ids of a volume, or of a project's current mapping."""
    from napari_connectome.project import is_project, open_project
    from napari_connectome.volume import open_volume

    if is_project(uri):
        from napari_connectome.proofread import Proofreader

        proofreader = Proofreader.open(open_project(uri), read_only=True)
        try:
            volume = proofreader.labels_volume()
            return volume, volume.levels[0].read()
        finally:
            proofreader.close()
    volume = open_volume(uri, kind="labels")
    return volume, volume.levels[0].read()


def _cmd_skeletonize(args) -> int:
    import time

    from napari_connectome.progress import TqdmProgress
    from napari_connectome.project import open_project
    from napari_connectome.proofread import Proofreader
    from napari_connectome.skeleton import SkeletonStore

    if args.workers is not None and args.workers < 1:
        raise InputError("--workers", f"must be at least 1, got {args.workers}")
    settings = {k: v for k, v in (("max_voxel_nm", args.max_voxel), ("coarse_min_voxels", args.coarse_min),
                                  ("block_voxels", args.block), ("coarse_block_voxels", args.coarse_block))
                if v is not None}
    if settings and args.method == "whole":
        raise InputError("--method", "whole takes no blockwise settings (--max-voxel, --coarse-min, --block, "
                                     "--coarse-block)")
    method = "blockwise" if settings else args.method  # a blockwise setting asks for the blockwise method
    project = open_project(args.dir)
    progress = TqdmProgress(disable=args.quiet)
    t0 = time.perf_counter()
    try:
        # Read-only: the edit log stays free for a proofreader at work; the store is its own file.
        with Proofreader.open(project, read_only=True) as pr:
            store = SkeletonStore.rebuild(pr, method=method, blockwise=settings or None,
                                          scheduler=args.scheduler, workers=args.workers, progress=progress)
    finally:
        progress.close()
    how = "blockwise" if "blockwise" in store.signature else "whole"
    print(f"{len(store)} skeletons ({how}) in {time.perf_counter() - t0:.1f} s -> {SkeletonStore.path(project)}")
    return 0


def _cmd_evaluate(args) -> int:
    from napari_connectome.metrics import evaluate
    from napari_connectome.volume import open_volume

    seg_volume, seg = _segmentation_array(args.seg)
    gt_volume = open_volume(args.gt, kind="labels")
    if tuple(gt_volume.shape) != tuple(seg.shape):
        raise InputError(args.gt, f"ground truth has shape {gt_volume.shape} but the segmentation {args.seg} has {seg.shape}")
    result = evaluate(seg, gt_volume.levels[0].read())
    summary = {k: float(result[k]) for k in ("vi_split", "vi_merge", "arand")}
    if args.objects:
        summary["split_bodies"] = result["split_bodies"][: args.objects]
        summary["merged_segments"] = result["merged_segments"][: args.objects]
    if args.json:
        print(json.dumps(summary, indent=2, default=float))
    else:
        print(f"VI split {summary['vi_split']:.4f}  merge {summary['vi_merge']:.4f}  "
              f"sum {summary['vi_split'] + summary['vi_merge']:.4f}  adapted Rand error {summary['arand']:.4f}")
        for key in ("split_bodies", "merged_segments"):
            for row in summary.get(key, []):
                print(f"  {key[:-1]}: {row}")
    return 0


def _cmd_evaluate_synapses(args) -> int:
    import numpy as np

    from napari_connectome.synapses import (
        evaluate_synapses,
        points_outside,
        read_cremi,
        read_csv,
        volume_labeller,
    )
    from napari_connectome.volume import open_volume

    def read(path: str):
        suffix = os.path.splitext(path)[1].lower()
        if suffix == ".csv":
            return read_csv(path)
        if suffix in (".h5", ".hdf", ".hdf5"):
            return read_cremi(path)
        raise InputError(path, "is neither a synapse CSV (.csv) nor a CREMI HDF5 file (.h5, .hdf, .hdf5)")

    def check_inside(path: str, table) -> None:
        outside = points_outside(volume, np.concatenate([table.pre, table.post]))
        if outside.any():
            raise InputError(path, f"{int(outside.sum())} of {outside.size} synapse points lie outside "
                                   f"the ground-truth labels {args.groundtruth_labels}")

    volume = labels = None
    if args.groundtruth_labels:
        volume = open_volume(args.groundtruth_labels, kind="labels")
        labels = volume_labeller(volume)
    pred, gt = read(args.pred), read(args.gt)
    gt_is_cremi = not args.gt.lower().endswith(".csv")
    if volume is not None:
        check_inside(args.pred, pred)
        if gt_is_cremi:  # CREMI stores no neuron ids: the labels give them
            check_inside(args.gt, gt)
            gt = gt.with_ids(labels(gt.pre), labels(gt.post))
    elif gt_is_cremi and len(gt):
        raise InputError(args.gt, "a CREMI file stores no neuron ids: give --groundtruth-labels to read them")
    scores = evaluate_synapses(pred, gt, site_distance_nm=args.site_distance_nm,
                               partner_distance_nm=args.partner_distance_nm, gt_labels=labels,
                               pred_source=args.pred, gt_source=args.gt)
    print(json.dumps(scores.to_dict(), indent=2) if args.json else scores.summary())
    return 0


def _cmd_simulate(args) -> int:
    from napari_connectome.rank.simulate import run_simulation_cli

    if args.decisions < 0:
        raise InputError("--decisions", f"must be ≥ 0, got {args.decisions}")
    run_simulation_cli(
        args.dir,
        gt=args.gt,
        strategy=args.strategy,
        decisions=args.decisions,
        seed=args.seed,
        as_json=args.json,
        plot=args.plot,
        csv_path=args.csv,
        overwrite=args.overwrite,
    )
    return 0


def _cmd_log(args, parser) -> int:
    from napari_connectome.project import open_project
    from napari_connectome.proofread import export_change_log, merge_logs

    if args.log_command == "export":
        fmt = args.format or ("json" if str(args.out).lower().endswith(".json") else "csv")
        print(export_change_log(open_project(args.dir), args.out, fmt=fmt, overwrite=args.overwrite))
        return 0
    if args.log_command == "merge":
        report = merge_logs(open_project(args.a), open_project(args.b))
        print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
        return 0
    parser.parse_args(["log", "--help"])
    return 2


def _cmd_effort(args, parser) -> int:
    from napari_connectome.effort import effort_report, write_report_csv
    from napari_connectome.effort.report import report_text
    from napari_connectome.project import open_project

    if args.effort_command == "report":
        from napari_connectome.outputs import guard_output

        project = open_project(args.dir)
        if args.csv:  # before the report's work: a refused path costs nothing
            guard_output(args.csv, projects=[project.root], overwrite=args.overwrite, what="--csv")
        report = effort_report(project, volume=args.volume, target_mm3=args.target_mm3)
        if args.csv:
            write_report_csv(report, args.csv, overwrite=args.overwrite, projects=[project.root])
        print(json.dumps(report, indent=1, allow_nan=False) if args.json else report_text(report))
        return 0
    parser.parse_args(["effort", "--help"])
    return 2


def _cmd_synthetic(args) -> int:
    from napari_connectome.progress import TqdmProgress
    from napari_connectome.pyramid import write_ome_zarr_folder
    from napari_connectome.synthetic import SyntheticSpec, synthetic_volumes

    density = args.synapse_density if args.synapses else 0.0
    spec = SyntheticSpec(shape=tuple(args.shape), voxel_size=tuple(args.voxel_size), seed=args.seed,
                         synapse_density=density)
    table_path = None
    if args.synapses:
        from pathlib import Path

        from napari_connectome.synapses import SynapseTable, write_csv
        from napari_connectome.synthetic.synapses import synthetic_synapses

        table_path = Path(args.dst) / "synapses.csv"
        if table_path.exists():
            raise InputError(table_path, "exists already; choose a new output folder (nothing was changed)")
    raw, gt = synthetic_volumes(spec)
    progress = TqdmProgress(disable=args.quiet)
    try:
        paths = write_ome_zarr_folder(
            args.dst,
            {"raw.ome.zarr": raw, "groundtruth.ome.zarr": gt},
            progress=progress,
            assume_compression=args.assume_compression,
            memory_gb=args.memory_gb,
        )
    finally:
        progress.close()
    for path in paths:
        print(path)
    if table_path is not None:
        synapses = synthetic_synapses(spec)
        write_csv(SynapseTable(**synapses.rows()), table_path)
        print(f"{table_path}  ({synapses.n_synapses} synapses, {len(synapses)} connections)")
    return 0


def _cmd_segment(args) -> int:
    from napari_connectome.errors import CancelledError
    from napari_connectome.progress import TqdmProgress
    from napari_connectome.project import open_project
    from napari_connectome.segment.project_run import segment_project

    if args.workers is not None and args.workers < 1:
        raise InputError("--workers", f"must be at least 1, got {args.workers}")
    if args.threads is not None and args.threads < 1:
        raise InputError("--threads", f"must be at least 1, got {args.threads}")
    region = None
    if args.region is not None:
        from napari_connectome.volume.roi import parse_box

        region = parse_box(args.region, name="--region")
    project = open_project(args.dir)
    progress = TqdmProgress(disable=args.quiet)

    def say(message: str) -> None:
        if not args.quiet:
            print(f"{PROG}: {message}", file=sys.stderr)

    try:
        report = segment_project(project, model=args.model, device=args.device, block=args.block,
                                 precision=args.precision, threshold=args.threshold, stages=args.stage,
                                 supervoxel_block=args.supervoxel_block, region_nm=region,
                                 scheduler=args.scheduler, workers=args.workers, threads=args.threads,
                                 progress=progress, notify=say)
    except (CancelledError, KeyboardInterrupt):
        progress.close()
        print(f"{PROG}: segmentation stopped; finished blocks are kept: run the same command to resume",
              file=sys.stderr)
        return 130
    finally:
        progress.close()
    stages = ", ".join(f"{k} {v}" for k, v in report.stages.items())
    figures = report.figures
    line = f"{project.root}: {stages}"
    if "supervoxels" in figures:
        line += f"; {figures['supervoxels']} supervoxels"
    if "segments" in figures:
        line += f"; threshold {figures['threshold']:g} → {figures['segments']} segments"
    print(line)
    return 0



def _distance_or_word(value: str, flag: str, *, positive: bool) -> float | str:
    """``"model"``, ``"off"`` or a finite distance in nm (> 0 when ``positive``, else ≥ 0) from a CLI option."""
    if value in ("model", "off"):
        return value
    try:
        distance = float(value)
    except ValueError:
        raise InputError(flag, f"is a distance in nm or 'off', got {value!r}") from None
    if not math.isfinite(distance) or distance < 0 or (positive and distance == 0):
        raise InputError(flag, f"must be a distance {'>' if positive else '≥'} 0 nm, got {value}")
    return distance

def _cmd_synapses(args) -> int:
    from napari_connectome.errors import CancelledError
    from napari_connectome.progress import TqdmProgress
    from napari_connectome.project import open_project
    from napari_connectome.synapses.project_run import detect_in_project

    if args.threads is not None and args.threads < 1:
        raise InputError("--threads", f"must be at least 1, got {args.threads}")
    reach = _distance_or_word(args.pre_reach, "--pre-reach", positive=False)
    orient = _distance_or_word(args.orient, "--orient", positive=True)
    project = open_project(args.dir)
    proofreader = None
    if args.labels is not None:
        from napari_connectome.volume import open_volume

        segmentation = open_volume(args.labels, kind="labels")
    else:
        from napari_connectome.graph.project_graph import has_project_graph
        from napari_connectome.proofread import Proofreader

        if not has_project_graph(project):
            raise InputError(project.root, "has no segmentation yet: run `napari-connectome segment DIR` first, "
                                           "or give --labels URI")
        proofreader = Proofreader.open(project, read_only=True)
        segmentation = proofreader.labels_volume()
    progress = TqdmProgress(disable=args.quiet)

    def say(message: str) -> None:
        if not args.quiet:
            print(f"{PROG}: {message}", file=sys.stderr)

    try:
        report = detect_in_project(project, segmentation, model=args.model, device=args.device, block=args.block,
                                   threshold=args.threshold, csv_path=args.csv, overwrite=args.overwrite,
                                   pre_reach_nm=None if reach == "off" else reach,
                                   orient_radius_nm=None if orient == "off" else orient,
                                   threads=args.threads, progress=progress, notify=say)
    except (CancelledError, KeyboardInterrupt):
        progress.close()
        print(f"{PROG}: synapse detection stopped; finished blocks are kept: run the same command to resume",
              file=sys.stderr)
        return 130
    finally:
        progress.close()
        if proofreader is not None:
            proofreader.close()
    f = report.figures
    left = ", ".join(f"{f[k]} {k.replace('_', ' ')}" for k in ("on_background", "self_connections", "outside",
                                                               "duplicates") if f[k])
    if f.get("reversed"):
        left = (left + ", " if left else "") + f"{f['reversed']} turned round by their darker end (before de-duplication)"
    print(f"{project.root}: prediction {report.prediction}; {f['synapses']} synapses, {f['connections']} "
          f"connections (batch {report.batch}){'; left out: ' + left if left else ''} → {f['csv']}")
    return 0


def _project_neurons(project, labels_uri):
    """``(points → neuron ids, closer)``: through ``labels_uri``, else the project's current segmentation."""
    if labels_uri is not None:
        from napari_connectome.synapses.labels import labels_at
        from napari_connectome.volume import open_volume

        volume = open_volume(labels_uri, kind="labels")
        return (lambda points: labels_at(volume, points)), (lambda: None)
    from napari_connectome.graph.project_graph import has_project_graph
    from napari_connectome.proofread import Proofreader

    if not has_project_graph(project):
        raise InputError(project.root, "has no segmentation yet: run `napari-connectome segment DIR` first, "
                                       "or give --labels URI")
    pr = Proofreader.open(project, read_only=True)

    def neurons(points):
        import numpy as np

        return np.asarray([pr.segment_at(p) for p in points], dtype=np.uint64)

    return neurons, pr.close


def _cmd_synapse_import(args) -> int:
    from napari_connectome.project import open_project
    from napari_connectome.synapses.project_run import import_into_project

    project = open_project(args.dir)
    batch, rows = import_into_project(project, args.file)
    print(f"{project.root}: {rows} synapse rows from {args.file} → batch {batch}")
    return 0


def _cmd_synapse_export(args) -> int:
    from pathlib import Path

    from napari_connectome.outputs import guard_output
    from napari_connectome.project import open_project
    from napari_connectome.synapses.project_run import current_table

    project = open_project(args.dir)
    out = Path(args.out)
    fmt = args.format or {".csv": "csv", ".parquet": "parquet", ".h5": "cremi", ".hdf": "cremi",
                          ".hdf5": "cremi", "": "neuroglancer"}.get(out.suffix.lower())
    if fmt is None:
        raise InputError(out, "cannot tell the format from the suffix: give --format")
    guard_output(out, projects=[project.root], overwrite=args.overwrite, folder=fmt == "neuroglancer",
                 what="synapse export")
    if out.exists() and not args.overwrite:
        raise InputError(out, "exists already; give --overwrite to replace it (nothing was written)")
    neurons, close = _project_neurons(project, args.labels)
    try:
        table = current_table(project, neurons)
    finally:
        close()
    if fmt == "csv":
        from napari_connectome.synapses import write_csv

        write_csv(table, out)
    elif fmt == "parquet":
        from napari_connectome.synapses.export import write_parquet

        write_parquet(table, out)
    elif fmt == "cremi":
        from napari_connectome.synapses import write_cremi

        write_cremi(table, out)
    elif fmt == "neuroglancer":
        from napari_connectome.synapses.export import write_neuroglancer

        write_neuroglancer(table, out, overwrite=args.overwrite)
    else:
        import numpy as np

        from napari_connectome.synapses.export import write_connectome_csv

        keep = (table.pre_id != 0) & (table.post_id != 0) & (table.pre_id != table.post_id)
        pairs = np.stack([table.pre_id[keep], table.post_id[keep]], axis=1)
        if len(pairs):
            uniq, inverse, count = np.unique(pairs, axis=0, return_inverse=True, return_counts=True)
            score = np.bincount(inverse.reshape(-1), weights=table.score[keep].astype(np.float64))
        else:
            uniq, count, score = np.zeros((0, 2), np.uint64), np.zeros(0, int), np.zeros(0)
        write_connectome_csv(uniq[:, 0], uniq[:, 1], count, score, out)
    print(f"{out}  ({len(table)} synapse rows, {fmt})")
    return 0


def _cmd_provenance(args) -> int:
    from napari_connectome.provenance_report import format_record, read_provenance

    records = read_provenance(args.path)
    if args.json:
        print(json.dumps(records, indent=2, sort_keys=True))
    else:
        print("\n".join(format_record(what, record) for what, record in records.items()))
    return 0


def _cmd_train(args) -> int:
    import signal

    from napari_connectome.errors import CancelledError
    from napari_connectome.progress import TqdmProgress
    from napari_connectome.train import run as train_run
    from napari_connectome.train import sources
    from napari_connectome.volume import open_volume

    if args.sparse and args.project:
        raise InputError("--sparse", "applies to --labels; a project's segmentation is dense")
    box = sources.parse_box(args.box) if args.box is not None else None
    train_run.check_run_folder(args.run_dir)
    if args.export:
        train_run.check_export(args.run_dir, args.export)
    if args.project:
        from napari_connectome.project import open_project

        project = open_project(args.project)
        raw = open_volume(args.raw, voxel_size=args.voxel_size, kind="image") if args.raw else project.open_input("raw")
    else:
        if not args.raw:
            raise InputError("--raw", "is needed with --labels (the EM the labels belong to)")
        raw = open_volume(args.raw, voxel_size=args.voxel_size, kind="image")
    plan = train_run.plan(base=args.base or args.checkpoint, voxel_size=raw.levels[0].spatial_voxel_size,
                          patch=args.patch)
    if args.project:
        data = sources.from_project(project, box=box, raw=raw, zero=args.zero, context=plan.context)
    else:
        labels = open_volume(args.labels, voxel_size=args.voxel_size, kind="labels")
        data = sources.from_volumes(raw, labels, box=box, sparse=args.sparse, zero=args.zero, context=plan.context)
    config = train_run.make_config(plan, data, iterations=args.iterations, seed=args.seed, lr=args.lr,
                                   checkpoint_every=args.checkpoint_every, threads=args.threads)
    if args.evaluate:
        before = train_run.base_network(config)
        if before is not None:
            m = train_run.evaluate(before, data)
            print(f"before: loss {m['loss']:.4f}, affinity accuracy {m['accuracy']:.4f} ({m['pairs']} pairs)")
    progress = TqdmProgress(disable=args.quiet, unit="it")

    def stop_soon(signum, frame) -> None:
        # The first Ctrl-C ends the run after the current iteration, with a checkpoint;
        # a second one stops at once (the last checkpoint stays).
        progress.cancelled = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, stop_soon)
    try:
        last = train_run.run_training(data, config, args.run_dir, progress=progress, log=progress.write)
    except CancelledError:
        progress.close()
        found = train_run.latest_checkpoint(args.run_dir)
        at = train_run.checkpoint_iteration(found) if found else 0
        print(f"{PROG}: cancelled at iteration {at}/{config.iterations}; the same command continues the run",
              file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, previous)
        progress.close()
    print(f"{args.run_dir}: iteration {train_run.checkpoint_iteration(last)}/{config.iterations}, "
          f"checkpoint {last.name}")
    if args.evaluate:
        from napari_connectome.train import network_from_checkpoint

        m = train_run.evaluate(network_from_checkpoint(last), data)
        print(f"after:  loss {m['loss']:.4f}, affinity accuracy {m['accuracy']:.4f} ({m['pairs']} pairs)")
    if args.export:
        print(train_run.export_weights(args.run_dir, args.export))
    return 0


def _cmd_gui(args) -> int:
    from importlib.metadata import entry_points

    found = {ep.name: ep for ep in entry_points(group="napari_connectome.viewer")}
    if args.command not in found:
        raise ConnectomeError(
            f"'{args.command}' needs the napari face: pip install 'napari-connectome[all]'"
        )
    try:
        func = found[args.command].load()
    except ImportError as exc:
        raise ConnectomeError(
            f"'{args.command}' needs napari and a Qt binding ({exc}); pip install 'napari-connectome[all]'"
        ) from None
    # Only when asked: a viewer plugin of an older napari face has no ``panels``.
    extra = {"panels": args.panel} if args.panel else {}
    if args.command == "view":
        return int(func(args.uris, voxel_size=args.voxel_size, kind=args.kind, screenshot=args.screenshot,
                        ndisplay=args.ndisplay, **extra))
    return int(func(sample=args.sample, screenshot=args.screenshot, ndisplay=args.ndisplay, **extra))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 2 bad input, 1 internal error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    with warnings.catch_warnings():
        # What the engine says without stopping (a damaged cache rebuilt, ...): one line each.
        warnings.simplefilter("always", ConnectomeWarning)
        shown = warnings.showwarning

        def show(message, category, *rest, **kwargs) -> None:
            if issubclass(category, ConnectomeWarning):
                print(f"{PROG}: warning: {message}", file=sys.stderr)
            else:
                shown(message, category, *rest, **kwargs)

        warnings.showwarning = show
        return _run(args, parser)


def _run(args, parser) -> int:
    try:
        if args.command == "info":
            return _cmd_info(args)
        if args.command == "convert":
            return _cmd_convert(args)
        if args.command == "project":
            return _cmd_project(args, parser)
        if args.command == "synthetic":
            return _cmd_synthetic(args)
        if args.command == "agglomerate":
            return _cmd_agglomerate(args)
        if args.command == "skeletonize":
            return _cmd_skeletonize(args)
        if args.command == "evaluate":
            return _cmd_evaluate(args)
        if args.command == "evaluate-synapses":
            return _cmd_evaluate_synapses(args)
        if args.command == "simulate":
            return _cmd_simulate(args)
        if args.command == "log":
            return _cmd_log(args, parser)
        if args.command == "effort":
            return _cmd_effort(args, parser)
        if args.command == "provenance":
            return _cmd_provenance(args)
        if args.command == "segment":
            return _cmd_segment(args)
        if args.command == "synapses":
            return _cmd_synapses(args)
        if args.command == "synapse-import":
            return _cmd_synapse_import(args)
        if args.command == "synapse-export":
            return _cmd_synapse_export(args)
        if args.command == "check":
            return check_cmd.run(args)
        if args.command == "train":
            return _cmd_train(args)
        return _cmd_gui(args)
    except ConnectomeError as exc:
        if args.debug:
            raise
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and friends: not an error
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (stderr must stay open until exit)
        return 0
    except OSError as exc:  # the file system said no: read-only, full, not a folder, ...
        if args.debug:
            raise
        print(f"{PROG}: error: {from_os_error(exc, action='nothing saved was changed')}", file=sys.stderr)
        return 2
    except MemoryError:
        if args.debug:
            raise
        print(f"{PROG}: error: {args.command}: ran out of memory; nothing saved was changed (try a smaller "
              "region, or close other programs)", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug, not bad input: one line, and how to see more
        if args.debug:
            raise
        text = " ".join(str(exc).split())[:300]
        print(f"{PROG}: internal error: {type(exc).__name__}: {text} (run with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
