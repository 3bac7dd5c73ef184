"""Affinities -> supervoxels -> region graph -> merge tree (segmentations at any threshold)."""

from napari_connectome.segment.ascent import ascent_supervoxels
from napari_connectome.segment.pipeline import PostProcess, merge_tree, sweep_thresholds
from napari_connectome.segment.supervoxels import (
    boundary_from_affinities,
    mutex_supervoxels,
    nearest_channels,
    watershed_supervoxels,
)

__all__ = [
    "PostProcess",
    "ascent_supervoxels",
    "boundary_from_affinities",
    "merge_tree",
    "mutex_supervoxels",
    "nearest_channels",
    "sweep_thresholds",
    "watershed_supervoxels",
]
