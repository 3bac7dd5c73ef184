"""The supervoxel graph inside a project: build, agglomerate, load.

Files, in the project's ``graph`` component folder:

* ``rag.npz`` — the :class:`~napari_connectome.graph.rag.RegionGraph`;
* ``merge_tree.npz`` — the :class:`~napari_connectome.graph.agglomerate.MergeTree`.

The manifest records what the graph was built from (``manifest["graph"]``)
and the chosen threshold (``manifest["agglomeration"] = {"threshold": T,
"feature": "mean", ...}``). The segmentation is the supervoxels plus the
mapping at that threshold: no relabelled volume is written.
"""

from __future__ import annotations

import datetime as _dt
from typing import TYPE_CHECKING

from napari_connectome.errors import InputError
from napari_connectome.graph.agglomerate import MergeTree, agglomerate
from napari_connectome.graph.rag import RegionGraph, build_rag
from napari_connectome.progress import Progress

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


def build_project_graph(project: Project, *, block_shape=(64, 256, 256),
                        progress: Progress | None = None) -> RegionGraph:
    """Build the project's region adjacency graph and save it in the project.

    Uses the ``supervoxels`` input and the ``boundaries`` input (a boundary
    map, or affinities when it has 3 channels first); without a boundary
    input, a proxy from the ``raw`` intensity (said so in the graph's notes
    and ``signal``).

    Raises
    ------
    InputError
        The project has no supervoxels, or shapes disagree.
    """
    inputs = project.inputs
    if "supervoxels" not in inputs:
        raise InputError(project.root, "the project has no supervoxels; create it with --supervoxels")
    supervoxels = project.open_input("supervoxels")
    if "boundaries" in inputs:
        signal = project.open_input("boundaries")
        rag = build_rag(supervoxels, signal, signal_kind=_signal_kind(signal),
                        block_shape=block_shape, progress=progress)
    else:
        rag = build_rag(supervoxels, None, raw=project.open_input("raw"),
                        block_shape=block_shape, progress=progress)
    folder = project.component_path("graph")
    folder.mkdir(parents=True, exist_ok=True)
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
    }
    # A tree made on an older graph no longer matches it.
    stale = folder / TREE_FILE
    if stale.exists():
        stale.unlink()
    project.register_component("graph")  # also saves the manifest
    return rag


def has_project_graph(project: Project) -> bool:
    """True if the project holds a saved region adjacency graph."""
    return (project.component_path("graph") / RAG_FILE).is_file()


def load_project_graph(project: Project) -> tuple[RegionGraph, MergeTree | None]:
    """The project's graph and merge tree (None if not agglomerated yet).

    Raises
    ------
    InputError
        The project has no graph yet, or its files are damaged.
    """
    folder = project.component_path("graph")
    path = folder / RAG_FILE
    if not path.is_file():
        raise InputError(project.root, "the project has no supervoxel graph yet; run agglomerate first")
    rag = RegionGraph.load(path)
    tree_path = folder / TREE_FILE
    tree = MergeTree.load(tree_path) if tree_path.is_file() else None
    if tree is not None and (tree.node_ids.shape != rag.node_ids.shape or tree.edges.shape != rag.edges.shape):
        raise InputError(tree_path, "the merge tree does not belong to the saved graph; run agglomerate again")
    return rag, tree


def agglomerate_project(project: Project, *, threshold: float | None = None, feature: str = "mean",
                        progress: Progress | None = None) -> MergeTree:
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
        rag, tree = load_project_graph(project)
    else:
        rag, tree = build_project_graph(project, progress=progress), None
    if tree is None or tree.feature != feature:
        tree = agglomerate(rag, feature=feature, progress=progress)
        tree.save(project.component_path("graph") / TREE_FILE)
    project.manifest["agglomeration"] = {
        "threshold": threshold,
        "feature": feature,
        "chosen_by": chosen_by,
        "n_segments": tree.n_segments_at(threshold),
        "file": TREE_FILE,
        "modified": _now(),
    }
    project.register_component("graph")
    return tree
