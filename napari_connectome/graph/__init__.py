"""The supervoxel graph: region adjacency graph, agglomeration and its merge tree."""

from napari_connectome.graph.agglomerate import MergeTree, agglomerate
from napari_connectome.graph.learned import (
    EdgeClassifier,
    agglomerate_learned,
    train_edge_classifier,
)
from napari_connectome.graph.project_graph import (
    DEFAULT_THRESHOLD,
    agglomerate_project,
    build_project_graph,
    has_project_graph,
    load_project_graph,
)
from napari_connectome.graph.rag import FEATURES, SIGNALS, RegionGraph, build_rag

__all__ = [
    "DEFAULT_THRESHOLD",
    "EdgeClassifier",
    "FEATURES",
    "SIGNALS",
    "MergeTree",
    "RegionGraph",
    "agglomerate",
    "agglomerate_learned",
    "agglomerate_project",
    "build_project_graph",
    "build_rag",
    "has_project_graph",
    "load_project_graph",
    "train_edge_classifier",
]
