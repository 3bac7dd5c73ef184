"""Supervoxels from a network's affinities (the first stage of the local segmentation)."""

from napari_connectome.supervoxels.ascent import NEAREST, ascent_supervoxels

__all__ = ["NEAREST", "ascent_supervoxels"]
