"""``napari-connectome check``: read everything once and say what is wrong.

A volume is checked chunk by chunk (:func:`~napari_connectome.volume.chunks.scan_volume`):

* a *missing* chunk is legal in zarr, N5, precomputed and HDF5 and reads as
  the fill value — which is what a writer that skips empty chunks leaves, and
  also what a lost chunk looks like; in a segmentation it silently turns
  segments into background. Each is a **warning** naming its key, its file
  and what it reads as.
* an *undecodable* chunk (truncated, garbage, a failing filter) is an
  **error** naming the chunk and its file.

A project is checked by the small named checks of :data:`PROJECT_CHECKS`, in
order: the manifest against the files it registers, each input volume as
above (and against the shape and dtype the project recorded), the edit log
and the effort log (SQLite ``PRAGMA integrity_check``, format, every row
readable), the supervoxel graph (``rag.npz`` and ``merge_tree.npz`` load and
belong together) and the skeleton store. A check adds findings to the report
and names what it looked at; a loader's error becomes a finding naming the
file, so one damaged file never hides the others.

Exit status of the command: **0** when all is well, **2** when anything was
found — an error or a warning, the suite's code for bad input — and 1 for an
internal error (the CLI's rule).
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from napari_connectome.errors import CancelledError, ConnectomeError, InputError

if TYPE_CHECKING:
    from napari_connectome.progress import Progress
    from napari_connectome.project import Project

Severity = Literal["error", "warning"]
EXIT_OK = 0
#: Problems found: the suite's exit code for bad input.
EXIT_PROBLEMS = 2


# ---------------------------------------------------------------- the report
@dataclass(frozen=True)
class Finding:
    """One problem: how bad, which file, what is wrong (one line)."""

    severity: Severity
    file: str
    problem: str

    def line(self) -> str:
        """``error: FILE: problem``."""
        return f"{self.severity}: {self.file}: {self.problem}"


@dataclass(frozen=True)
class LevelCount:
    """What reading one level of one volume found.

    Attributes
    ----------
    volume
        The volume (its path or URI; for a project, its role: ``raw``, ...).
    level
        0 = the finest level.
    chunks
        Chunks in the level.
    read, missing, undecodable
        Chunks read, absent (they read as ``fill_value``), and failing to decode.
    fill_value
        What a missing chunk reads as.
    """

    volume: str
    level: int
    chunks: int
    read: int
    missing: int
    undecodable: int
    fill_value: object


@dataclass
class CheckReport:
    """What a check found.

    Attributes
    ----------
    path
        What was checked.
    target
        ``"volume"`` or ``"project"``.
    findings
        The problems, in the order found.
    counts
        Chunks per level of every volume read.
    checked
        What was looked at, in words (``"edit log (12 operations)"``).
    """

    path: str
    target: Literal["volume", "project"]
    findings: list[Finding] = field(default_factory=list)
    counts: list[LevelCount] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing was found (no error, no warning)."""
        return not self.findings

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    def add(self, severity: Severity, file: str | os.PathLike, problem: str) -> None:
        """Record one finding (``problem`` is squeezed onto one line)."""
        self.findings.append(Finding(severity, os.fspath(file), " ".join(str(problem).split())))

    def add_exception(self, exc: BaseException, file: str | os.PathLike, *, prefix: str = "") -> None:
        """Record an error raised by a loader: its own file and problem when it names them."""
        if isinstance(exc, InputError):
            where = exc.source or os.fspath(file)
            problem = exc.problem
        elif isinstance(exc, ConnectomeError):
            where, problem = os.fspath(file), str(exc)
        else:  # a library's error from a damaged file: its type says what broke
            where, problem = os.fspath(file), f"cannot be read ({type(exc).__name__}: {exc})"
        self.add("error", where, f"{prefix}{problem}")

    def chunk_totals(self) -> dict[str, int]:
        """Chunks, read, missing and undecodable over every level of every volume."""
        return {
            key: sum(getattr(c, key) for c in self.counts)
            for key in ("chunks", "read", "missing", "undecodable")
        }

    def to_dict(self) -> dict:
        """A JSON-ready report (what ``check --json`` prints)."""
        return {
            "path": self.path,
            "target": self.target,
            "ok": self.ok,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "findings": [asdict(f) for f in self.findings],
            "chunks": self.chunk_totals(),
            "levels": [{**asdict(c), "fill_value": _json_number(c.fill_value)} for c in self.counts],
            "checked": list(self.checked),
        }

    def summary(self) -> str:
        """One line: what was checked and whether all is well."""
        totals = self.chunk_totals()
        parts = []
        if self.counts:
            parts.append(
                f"{totals['chunks']} chunks in {len(self.counts)} level(s): {totals['read']} read, "
                f"{totals['missing']} missing, {totals['undecodable']} undecodable"
            )
        if self.target == "project" and self.checked:
            parts.append("checked " + ", ".join(self.checked))
        head = f"{self.target} {self.path}"
        if self.ok:
            verdict = "all is well"
        else:
            n_err, n_warn = len(self.errors), len(self.warnings)
            verdict = f"{n_err} error{'s' * (n_err != 1)}, {n_warn} warning{'s' * (n_warn != 1)}"
        return f"{head}: {verdict}" + (f" ({'; '.join(parts)})" if parts else "")

    def text(self) -> str:
        """Lines a person reads: one per finding, the summary last."""
        return "\n".join([f.line() for f in self.findings] + [self.summary()])


def _json_number(value: object) -> object:
    """A fill value JSON can carry: NaN and infinities as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


# ---------------------------------------------------------------- volumes
def _scan_into(report: CheckReport, uri: str | os.PathLike, *, voxel_size=None, kind=None,
               progress: Progress | None = None, role: str | None = None, open_fn=None):
    """Open one volume and read every chunk, adding findings and counts; the volume or None."""
    from napari_connectome.volume import open_volume
    from napari_connectome.volume.chunks import fill_text, scan_volume

    prefix = f"{role}: " if role else ""
    try:
        volume = open_fn() if open_fn is not None else open_volume(uri, voxel_size=voxel_size, kind=kind)
    except Exception as exc:  # unopenable input: one finding, the other checks go on
        report.add_exception(exc, uri, prefix=prefix)
        return None
    try:
        scans = scan_volume(volume, progress=progress)
    except CancelledError:
        raise
    except Exception as exc:  # a level that opened but cannot be reopened for reading
        report.add_exception(exc, volume.source, prefix=prefix)
        return volume
    several = len(scans) > 1
    for scan in scans:
        where = f"{prefix}level {scan.level}: " if several else prefix
        reads_as = fill_text(scan.fill_value, volume.kind)
        listed = {"missing": 0, "undecodable": 0}
        for issue in scan.issues:
            listed[issue.status] += 1
            if issue.status == "missing":
                report.add("warning", issue.file, f"{where}{issue.name} is missing; it reads as {reads_as}")
            else:
                report.add(
                    "error", issue.file,
                    f"{where}{issue.name} cannot be decoded ({issue.detail}); reading it fails, "
                    "and the viewer shows it as 0",
                )
        if scan.missing > listed["missing"]:
            report.add("warning", scan.source, f"{where}{scan.missing - listed['missing']} more missing "
                                               f"chunks (not listed), reading as {reads_as}")
        if scan.undecodable > listed["undecodable"]:
            report.add("error", scan.source,
                       f"{where}{scan.undecodable - listed['undecodable']} more undecodable chunks (not listed)")
        report.counts.append(LevelCount(role or volume.source, scan.level, scan.chunks, scan.read,
                                        scan.missing, scan.undecodable, scan.fill_value))
    return volume


def check_volume(uri: str | os.PathLike, *, voxel_size=None, kind: str | None = None,
                 progress: Progress | None = None) -> CheckReport:
    """Read every chunk of every level of a volume.

    Parameters
    ----------
    uri
        Any volume :func:`~napari_connectome.volume.open_volume` opens.
    voxel_size, kind
        As for :func:`~napari_connectome.volume.open_volume`; ``kind``
        decides whether a missing chunk's 0 is called background.
    progress
        One step per chunk.

    Returns
    -------
    CheckReport
        A volume that cannot be opened is one error finding.
    """
    report = CheckReport(path=os.fspath(uri), target="volume")
    _scan_into(report, uri, voxel_size=voxel_size, kind=kind, progress=progress)
    return report


# ---------------------------------------------------------------- project checks
ProjectCheck = Callable[["Project", CheckReport, "Progress | None"], None]


def _check_manifest(project: Project, report: CheckReport, progress: Progress | None) -> None:
    """Every component the manifest registers exists, and no two share a path.

    (Field types and paths inside the folder are checked by ``open_project``,
    which refuses a damaged manifest outright.)
    """
    from napari_connectome.project import MANIFEST

    manifest_path = project.root / MANIFEST
    components = project.manifest.get("components") or {}
    owners: dict[str, str] = {}
    for name, rel in components.items():
        if rel in owners:
            report.add("error", manifest_path, f"components {owners[rel]!r} and {name!r} both claim {rel!r}")
        owners[rel] = name
        path = project.root / rel
        if not (path.exists() or path.is_symlink()):
            report.add("error", path, f"the manifest registers component {name!r} here, but it is missing")
    report.checked.append(f"manifest ({len(components)} components)")


def _check_inputs(project: Project, report: CheckReport, progress: Progress | None) -> None:
    """Each input volume, chunk by chunk, and against the shape and dtype the project recorded."""
    from napari_connectome.project import MANIFEST

    for role, record in project.inputs.items():
        volume = _scan_into(report, record.get("uri", ""), progress=progress, role=role,
                            open_fn=lambda role=role: project.open_input(role))
        if volume is None:
            continue
        for key, now in (("shape", list(volume.shape)), ("dtype", str(volume.dtype))):
            then = record.get(key)
            if then is not None and then != now:
                report.add("error", volume.source,
                           f"{role}: {key} is now {now} but the project recorded {then} "
                           f"({project.root / MANIFEST}); the input changed since the project was made")
        report.checked.append(role)


def _check_edit_log(project: Project, report: CheckReport, progress: Progress | None) -> None:
    """The edit log opens, passes SQLite's full integrity check, and every row decodes in order."""
    import sqlite3

    from napari_connectome.proofread.log import open_edit_log

    path = project.component_path("edit_log")
    if not path.exists() and not project.history("edit_log") and \
            "edit_log" not in (project.manifest.get("components") or {}):
        report.checked.append("edit log (none yet)")
        return
    # Also the recorded identity: a missing, emptied, foreign or shortened log is an error.
    log = open_edit_log(project, read_only=True)
    try:
        try:
            integrity = log.integrity_check()
        except sqlite3.Error as exc:
            report.add("error", path, f"the edit log is corrupt: {exc}")
            return
        if integrity != "ok":
            report.add("error", path, f"the edit log fails SQLite's integrity check: {integrity}")
            return
        rows = log.rows(with_patch=False)
        for expected, row in enumerate(rows, start=1):
            op = int(row["operation_id"])
            if op != expected:
                report.add("error", path, f"operation {expected} is missing (the log jumps to {op})")
                break
            undo_of = row.get("undo_of")
            if undo_of is not None and not 0 < int(undo_of) < op:
                report.add("error", path, f"operation {op} reverses operation {undo_of}, which does not precede it")
        report.checked.append(f"edit log ({len(rows)} operations)")
    finally:
        log.close(checkpoint=False)


def _check_effort_log(project: Project, report: CheckReport, progress: Progress | None) -> None:
    """The effort log opens read-only (its own full integrity check and schema check) and every row reads."""
    from napari_connectome.effort.log import EffortLog

    path = project.component_path("effort_log")
    recorded = project.history("effort_log") or {}
    if not path.exists() and not (recorded.get("id") or recorded.get("rows")):
        report.checked.append("effort log (none yet)")
        return
    log = EffortLog.open(project, read_only=True)  # also checks the identity the project recorded
    try:
        rows = log.rows()
        report.checked.append(f"effort log ({len(rows)} answers)")
    finally:
        log.close(checkpoint=False)


def _graph_problems(rag) -> list[str]:
    """What is inconsistent inside a loaded region graph (lengths, order, endpoints)."""
    import numpy as np

    problems = []
    n, e = rag.n_nodes, rag.n_edges
    if rag.node_sizes.shape != (n,):
        problems.append(f"{rag.node_sizes.shape[0]} node sizes for {n} nodes")
    if rag.contact_area.shape != (e,):
        problems.append(f"{rag.contact_area.shape[0]} contact areas for {e} edges")
    for name, values in rag.features.items():
        if np.shape(values) != (e,):
            problems.append(f"feature {name!r} has {np.shape(values)[0]} values for {e} edges")
    if n > 1 and not bool(np.all(rag.node_ids[1:] > rag.node_ids[:-1])):
        problems.append("node ids are not sorted and unique")
    if e:
        if not bool(np.all(rag.edges[:, 0] < rag.edges[:, 1])):
            problems.append("an edge does not run from the smaller id to the larger")
        if not bool(np.isin(rag.edges, rag.node_ids).all()):
            problems.append("an edge ends at a supervoxel that is not a node")
    return problems


def _check_digest(report: CheckReport, path: Path, recorded: str | None) -> None:
    """A derived file whose bytes differ from the sha256 recorded when it was saved."""
    from napari_connectome.graph.project_graph import file_sha256

    if recorded and path.is_file() and file_sha256(path) != recorded:
        report.add("error", path, "its bytes differ from those recorded when it was saved (damaged or replaced); "
                                  "it is rebuilt from the inputs when the project is opened")


def _check_graph(project: Project, report: CheckReport, progress: Progress | None) -> None:
    """``rag.npz`` and ``merge_tree.npz`` load, are sound, match the manifest and belong together."""
    import numpy as np

    from napari_connectome.graph.agglomerate import MergeTree
    from napari_connectome.graph.project_graph import RAG_FILE, TREE_FILE
    from napari_connectome.graph.rag import RegionGraph

    folder = project.component_path("graph")
    rag_path, tree_path = folder / RAG_FILE, folder / TREE_FILE
    recorded = project.manifest.get("graph")
    agglomerated = project.manifest.get("agglomeration")
    if not rag_path.exists():
        if recorded:
            report.add("error", rag_path, "the manifest records a supervoxel graph, but the file is missing")
        if tree_path.exists():
            report.add("error", tree_path, f"a merge tree without its graph ({RAG_FILE} is missing)")
        report.checked.append("graph (none yet)" if not (recorded or tree_path.exists()) else "graph")
        return
    rag = tree = None
    try:
        rag = RegionGraph.load(rag_path)
    except Exception as exc:  # InputError from the loader, or a KeyError from a file missing an array
        report.add_exception(exc, rag_path)
    _check_digest(report, rag_path, (recorded or {}).get("sha256"))
    if tree_path.exists():
        _check_digest(report, tree_path, (agglomerated or {}).get("tree_sha256"))
    if rag is not None:
        for problem in _graph_problems(rag):
            report.add("error", rag_path, f"the graph is inconsistent: {problem}")
        if recorded:
            for key, actual in (("n_nodes", rag.n_nodes), ("n_edges", rag.n_edges)):
                if recorded.get(key) is not None and int(recorded[key]) != actual:
                    report.add("error", rag_path, f"holds {actual} {key[2:]} but the manifest records {recorded[key]}")
    if tree_path.exists():
        try:
            tree = MergeTree.load(tree_path)
        except Exception as exc:  # as for the graph
            report.add_exception(exc, tree_path)
    elif agglomerated:
        report.add("error", tree_path, "the manifest records an agglomeration, but the merge tree is missing")
    if rag is not None and tree is not None and not (
        np.array_equal(tree.node_ids, rag.node_ids) and np.array_equal(tree.edges, rag.edges)
    ):
        report.add("error", tree_path,
                   f"the merge tree does not belong to {RAG_FILE} ({tree.n_nodes} nodes and "
                   f"{len(tree.edges)} edges, the graph has {rag.n_nodes} and {rag.n_edges}, or other ids); "
                   "run agglomerate again")
    if rag is None:
        report.checked.append("graph")
    else:
        with_tree = ", merge tree" if tree is not None else ""
        report.checked.append(f"graph ({rag.n_nodes} supervoxels, {rag.n_edges} edges{with_tree})")


def _check_skeletons(project: Project, report: CheckReport, progress: Progress | None) -> None:
    """The skeleton store loads (every array present, its format understood)."""
    from napari_connectome.skeleton.store import SkeletonStore

    path = SkeletonStore.path(project)
    if not path.exists():
        # A registered folder that vanished is the manifest check's finding.
        report.checked.append("skeletons (none yet)")
        return
    try:
        store = SkeletonStore.load(project)
    except Exception as exc:  # InputError, or zipfile's BadZipFile from a truncated file
        report.add_exception(exc, path)
        return
    report.checked.append(f"skeletons ({len(store)} segments)")


#: The checks of a project, in order: ``(name, check(project, report, progress))``.
#: A check adds findings to the report and appends what it looked at to
#: ``report.checked``; an exception it lets out becomes one error finding
#: (so later checks still run). Add a check by appending to this list.
PROJECT_CHECKS: list[tuple[str, ProjectCheck]] = [
    ("manifest", _check_manifest),
    ("inputs", _check_inputs),
    ("edit log", _check_edit_log),
    ("effort log", _check_effort_log),
    ("graph", _check_graph),
    ("skeletons", _check_skeletons),
]


def check_project(root: str | os.PathLike, *, progress: Progress | None = None) -> CheckReport:
    """Check a project: manifest, input volumes, logs and derived files (:data:`PROJECT_CHECKS`).

    Parameters
    ----------
    root
        The project folder.
    progress
        One step per chunk of each input volume.

    Returns
    -------
    CheckReport
        A project whose manifest cannot be opened is one error finding.
    """
    from napari_connectome.project import MANIFEST, open_project

    report = CheckReport(path=os.fspath(root), target="project")
    try:
        project = open_project(root)
    except Exception as exc:  # the manifest is what every other check needs
        report.add_exception(exc, Path(root) / MANIFEST)
        return report
    for name, run_check in PROJECT_CHECKS:
        try:
            run_check(project, report, progress)
        except CancelledError:
            raise
        except InputError as exc:  # a loader's one line names its own file
            report.add_exception(exc, project.root)
        except Exception as exc:  # one check's failure is a finding; the next check still runs
            report.add_exception(exc, project.root, prefix=f"{name}: ")
    return report


def check(path: str | os.PathLike, *, voxel_size=None, kind: str | None = None,
          progress: Progress | None = None) -> CheckReport:
    """Check a project folder (:func:`check_project`) or a volume (:func:`check_volume`).

    Raises
    ------
    InputError
        ``voxel_size`` or ``kind`` given for a project (it keeps its own).
    """
    from napari_connectome.project import is_project

    if is_project(path):
        if voxel_size is not None or kind is not None:
            option = "--voxel-size" if voxel_size is not None else "--kind"
            raise InputError(option, f"{os.fspath(path)} is a project, which keeps its own; leave {option} out")
        return check_project(path, progress=progress)
    return check_volume(path, voxel_size=voxel_size, kind=kind, progress=progress)


# ---------------------------------------------------------------- command line
def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``check PATH [--json] [--voxel-size Z Y X] [--kind image|labels] [--quiet]``.

    Parameters
    ----------
    subparsers
        What ``ArgumentParser.add_subparsers`` returned.
    """
    p = subparsers.add_parser(
        "check",
        help="read every chunk of a volume, or check a project's volumes, logs and derived files",
        description="Reads every chunk of every level (missing chunks are warnings, undecodable ones "
                    "errors) and, for a project, its manifest, edit log, effort log, graph and "
                    "skeletons. Exit status 0: all is well; 2: something was found.",
    )
    p.add_argument("path", help="a volume (any supported format) or a project folder")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--voxel-size", nargs=3, type=float, metavar=("Z", "Y", "X"),
                   help="voxel size of the finest level in nm (volumes only)")
    p.add_argument("--kind", choices=("image", "labels"),
                   help="treat the volume as an image or as labels (volumes only)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``check`` from parsed arguments; prints the report.

    Returns
    -------
    int
        :data:`EXIT_OK` (0) when all is well, :data:`EXIT_PROBLEMS` (2) when
        anything was found.
    """
    from napari_connectome.progress import TqdmProgress

    progress = TqdmProgress(disable=args.quiet)
    try:
        report = check(args.path, voxel_size=args.voxel_size, kind=args.kind, progress=progress)
    finally:
        progress.close()
    print(json.dumps(report.to_dict(), indent=2, default=str) if args.json else report.text())
    return EXIT_OK if report.ok else EXIT_PROBLEMS
