"""The supervoxel graph inside a project: build, agglomerate, load.

Files, in the project's ``graph`` component folder:

* ``rag.npz`` — the :class:`~napari_connectome.graph.rag.RegionGraph`;
* ``merge_tree.npz`` — the :class:`~napari_connectome.graph.agglomerate.MergeTree`.

The manifest records what the graph was built from (``manifest["graph"]``)
and the chosen threshold (``manifest["agglomeration"] = {"threshold": T,
"feature": "mean", ...}``), with the sha256 of each file (checked by
``napari-connectome check``). The segmentation is the supervoxels plus the
mapping at that threshold: no relabelled volume is written.

Both files are *derived*: made deterministically from the project's inputs.
When one the manifest records is missing or cannot be read,
:func:`load_project_graph` rebuilds it with a warning naming the file; the
edit log's fingerprints of the graph and the base segmentation
(:class:`~napari_connectome.proofread.Proofreader`) then refuse the rebuilt
one if it would change the base the edits were made on (the inputs changed).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from napari_connectome.errors import InputError, from_os_error, warn
from napari_connectome.graph.agglomerate import MergeTree, agglomerate
from napari_connectome.graph.rag import RegionGraph, build_rag
from napari_connectome.progress import Progress
from napari_connectome.project import NEEDS_SUPERVOXELS

if TYPE_CHECKING:  # the graph layer sits below project: no import at run time
    from napari_connectome.project import Project

RAG_FILE = "rag.npz"
TREE_FILE = "merge_tree.npz"

#: Threshold used when none is given: regions merge while the mean boundary
#: signal along their contact is at most this, i.e. while the contact looks
#: more like cell interior than membrane. Deliberately conservative: it
#: over-segments rather than over-merges, because a missed merge costs the
#: proofreader one click and a false merge a split. The best threshold depends
#: on the boundary map's calibration (on gala-fib the train-optimal 0.97 over-
#: merges test, whose optimum is 0.81; benchmarks/gala_threshold.py), so a
#: project should pick its own with the threshold slider or
#: ``agglomerate --threshold``; the merge tree makes that instant.
DEFAULT_THRESHOLD = 0.5


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _signal_kind(volume) -> str:
    """Affinities are a 4D volume with 3 channels first; anything else is a boundary map."""
    return "affinities" if volume.ndim == 4 and volume.shape[0] == 3 else "boundaries"


def file_sha256(path: str | Path) -> str:
    """The sha256 of a file, read in 8 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while piece := f.read(8 * 2**20):
            h.update(piece)
    return h.hexdigest()


def _graph_folder(project: Project) -> Path:
    """The graph component's folder, made if missing; a file in its place is refused in one line."""
    folder = project.component_path("graph")
    if folder.exists() and not folder.is_dir():
        raise InputError(folder, "is a file where the project keeps its graph folder; move it away (nothing was changed)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise from_os_error(exc, folder, action="the graph was not saved") from None
    return folder


def build_project_graph(project: Project, *, block_shape=(64, 256, 256),
                        progress: Progress | None = None, memory_gb: float | None = None,
                        scheduler="threads", workers: int | None = None) -> RegionGraph:
    """Build the project's region adjacency graph and save it in the project.

    Uses the ``supervoxels`` input and the ``boundaries`` input (a boundary
    map, or affinities when it has 3 channels first); without a boundary
    input, a proxy from the ``raw`` intensity (said so in the graph's notes
    and ``signal``).

    Parameters
    ----------
    memory_gb
        Memory the graph may plan to use, in GiB (``--memory-gb``; see
        :func:`~napari_connectome.graph.rag.build_rag`).
    scheduler, workers
        Where the blocks run (``--scheduler``: threads, processes or a Dask scheduler's address; see
        :func:`~napari_connectome.graph.rag.build_rag`); the graph is the same on any.

    Raises
    ------
    InputError
        The project has no supervoxels, shapes disagree, or the graph would
        need more memory than the limit.
    """
    from napari_connectome.provenance import Recorder, volume_identity

    _graph_folder(project)  # a file in its place is refused before the work, not after
    rec = Recorder("region-graph", parameters={"block_shape_voxels": block_shape, "memory_gb": memory_gb})
    with rec.timed("build"):
        rag = _build_rag(project, block_shape=block_shape, progress=progress, memory_gb=memory_gb,
                         identify=lambda role, volume: rec.input(role, volume_identity(volume)),
                         scheduler=scheduler, workers=workers)
    rec.set("outputs", {"n_nodes": rag.n_nodes, "n_edges": rag.n_edges, "signal": rag.signal})
    return _save_graph(project, rag, record=rec.finish())


def _build_rag(project: Project, *, block_shape, progress, memory_gb: float | None = None,
               identify=None, scheduler="threads", workers: int | None = None) -> RegionGraph:
    """The region graph of the project's inputs, in memory.

    ``identify(role, volume)`` is told each input the graph is built from (for its provenance).
    """
    inputs = project.inputs
    if "supervoxels" not in inputs:
        raise InputError(project.root, NEEDS_SUPERVOXELS)
    # The raw intensity stands in for the signal only without a boundary map.
    roles = ("supervoxels", "boundaries") if "boundaries" in inputs else ("supervoxels", "raw")
    volumes = {role: project.open_input(role) for role in roles}
    if identify is not None:
        for role, volume in volumes.items():
            identify(role, volume)
    if "boundaries" in volumes:
        signal = volumes["boundaries"]
        return build_rag(volumes["supervoxels"], signal, signal_kind=_signal_kind(signal),
                         block_shape=block_shape, progress=progress, memory_gb=memory_gb, scheduler=scheduler,
                         workers=workers)
    return build_rag(volumes["supervoxels"], None, raw=volumes["raw"],
                     block_shape=block_shape, progress=progress, memory_gb=memory_gb, scheduler=scheduler,
                     workers=workers)


def _save_graph(project: Project, rag: RegionGraph, *, keep_tree: bool = False,
                record: dict | None = None) -> RegionGraph:
    """Save the graph and record it; an older merge tree is dropped unless ``keep_tree`` (a repair).

    ``record``: its provenance (:mod:`napari_connectome.provenance`), kept in the manifest.
    """
    from napari_connectome.provenance import record_in_project

    inputs = project.inputs
    folder = _graph_folder(project)
    rag.save(folder / RAG_FILE)
    project.manifest["graph"] = {
        "file": f"{RAG_FILE}",
        "signal": rag.signal,
        "supervoxels": inputs["supervoxels"]["uri"],
        "signal_source": inputs.get("boundaries", inputs["raw"])["uri"],
        "n_nodes": rag.n_nodes,
        "n_edges": rag.n_edges,
        "built": _now(),
        "notes": list(rag.notes),
        "sha256": file_sha256(folder / RAG_FILE),
    }
    # A tree made on an older graph no longer matches it. A repair rebuilds the
    # same graph from the same inputs, so its tree stays (its shape is checked on load).
    stale = folder / TREE_FILE
    if not keep_tree:
        if stale.exists():
            stale.unlink()
        # the dropped tree is no longer expected: its absence is not damage to warn about
        (project.manifest.get("agglomeration") or {}).pop("tree_sha256", None)
    if record is not None:
        record["outputs"] = {**record.get("outputs", {}), "sha256": project.manifest["graph"]["sha256"]}
        record_in_project(project, "graph", record)
    project.register_component("graph")  # also saves the manifest
    return rag


def has_project_graph(project: Project) -> bool:
    """True if the project holds a region adjacency graph, or recorded one (then it is rebuilt on load)."""
    return (project.component_path("graph") / RAG_FILE).is_file() or bool(project.manifest.get("graph"))


def _damage(exc: BaseException) -> str:
    if isinstance(exc, InputError):
        return exc.problem
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:120]}"


def _load_or_rebuild_rag(project: Project, *, save: bool, progress, memory_gb: float | None = None) -> RegionGraph:
    path = project.component_path("graph") / RAG_FILE
    recorded = bool(project.manifest.get("graph"))
    folder = project.component_path("graph")
    if folder.exists() and not folder.is_dir():  # said as the one problem it is, before any rebuild
        _graph_folder(project)
    if not path.is_file():
        if not recorded:
            raise InputError(project.root, "the project has no supervoxel graph yet; run agglomerate first")
        warn(f"{path}: the supervoxel graph is missing; rebuilding it from the project's inputs")
    else:
        try:
            return RegionGraph.load(path)
        except (MemoryError, KeyboardInterrupt):
            raise
        except Exception as exc:  # any damage to a derived file: rebuilding it loses nothing
            warn(f"{path}: the supervoxel graph is damaged ({_damage(exc)}); rebuilding it from the project's inputs")
    rag = _build_rag(project, block_shape=(64, 256, 256), progress=progress, memory_gb=memory_gb)
    return _save_graph(project, rag, keep_tree=True) if save else rag


def _load_or_rebuild_tree(project: Project, rag: RegionGraph, *, save: bool, progress,
                          memory_gb: float | None = None) -> MergeTree | None:
    path = project.component_path("graph") / TREE_FILE
    agglo = project.manifest.get("agglomeration") or {}
    problem = None
    if path.is_file():
        try:
            tree = MergeTree.load(path)
        except (MemoryError, KeyboardInterrupt):
            raise
        except Exception as exc:
            problem = f"is damaged ({_damage(exc)})"
        else:
            if tree.node_ids.shape == rag.node_ids.shape and tree.edges.shape == rag.edges.shape:
                return tree
            problem = "does not belong to the saved graph"
    elif agglo.get("tree_sha256"):
        problem = "is missing"
    if problem is None:
        return None
    if not agglo:
        raise InputError(path, f"the merge tree {problem}; run agglomerate again")
    feature = agglo.get("feature", "mean")
    warn(f"{path}: the merge tree {problem}; recomputing it from the graph ({feature} boundary)")
    tree = agglomerate(rag, feature=feature, progress=progress, memory_gb=memory_gb)
    if save:
        tree.save(path)
        project.manifest["agglomeration"]["tree_sha256"] = file_sha256(path)
        project.save()
    return tree


def load_project_graph(project: Project, *, save: bool = True, progress: Progress | None = None,
                       memory_gb: float | None = None) -> tuple[RegionGraph, MergeTree | None]:
    """The project's graph and merge tree (None if not agglomerated yet).

    A file the manifest records but that is missing or cannot be read is
    rebuilt from the inputs (deterministically), with a warning naming it.

    Parameters
    ----------
    save
        Save what was rebuilt (False for read-only work: it is rebuilt in
        memory only).
    progress
        Told about a rebuild.
    memory_gb
        Memory a rebuild may plan to use, in GiB (see :func:`build_project_graph`).

    Raises
    ------
    InputError
        The project has no graph yet, or a rebuild is impossible.
    """
    rag = _load_or_rebuild_rag(project, save=save, progress=progress, memory_gb=memory_gb)
    tree = _load_or_rebuild_tree(project, rag, save=save, progress=progress, memory_gb=memory_gb)
    return rag, tree


def agglomerate_project(project: Project, *, threshold: float | None = None, feature: str = "mean",
                        progress: Progress | None = None, memory_gb: float | None = None) -> MergeTree:
    """Agglomerate the project's supervoxels and record the chosen threshold.

    Builds the graph first if the project has none. An existing merge tree
    on the same graph and feature is reused, so changing only the threshold
    is instant.

    Parameters
    ----------
    threshold
        Merge regions whose mean boundary signal is ``<= threshold`` (in
        ``[0, 1]``); None: :data:`DEFAULT_THRESHOLD`.
    feature
        The edge feature averaged (``"mean"``, ``"q50"``, ...).
    memory_gb
        Memory the graph and the merge tree may plan to use, in GiB
        (``--memory-gb``; see :func:`~napari_connectome.graph.rag.build_rag`
        and :func:`~napari_connectome.graph.agglomerate.agglomerate`).

    Returns
    -------
    MergeTree
        The full merge tree, saved in the project.
    """
    chosen_by = "user"
    if threshold is None:
        threshold, chosen_by = DEFAULT_THRESHOLD, "default"
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        raise InputError("--threshold", f"{threshold!r} is not a number") from None
    if not 0.0 <= threshold <= 1.0:
        raise InputError("--threshold", f"{threshold} is outside [0, 1] (the boundary signal's range)")
    if has_project_graph(project):
        rag, tree = load_project_graph(project, memory_gb=memory_gb)
    else:
        rag, tree = build_project_graph(project, progress=progress, memory_gb=memory_gb), None
    tree_sha = (project.manifest.get("agglomeration") or {}).get("tree_sha256")
    if tree is None or tree.feature != feature:
        from napari_connectome.provenance import Recorder, record_in_project

        rec = Recorder("merge-tree", parameters={"feature": feature, "memory_gb": memory_gb},
                       inputs={"graph": {"sha256": project.manifest["graph"].get("sha256")}})
        with rec.timed("agglomerate"):
            tree = agglomerate(rag, feature=feature, progress=progress, memory_gb=memory_gb)
        tree_path = _graph_folder(project) / TREE_FILE
        tree.save(tree_path)
        tree_sha = file_sha256(tree_path)
        rec.set("outputs", {"sha256": tree_sha, "n_merges": int(tree.n_merges)})
        record_in_project(project, "merge tree", rec.finish())
    project.manifest["agglomeration"] = {
        "threshold": threshold,
        "feature": feature,
        "chosen_by": chosen_by,
        "n_segments": tree.n_segments_at(threshold),
        "file": TREE_FILE,
        "modified": _now(),
        "tree_sha256": tree_sha,
    }
    project.register_component("graph")
    return tree
