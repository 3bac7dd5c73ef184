"""Skeletons of segments: TEASAR centre lines (kimimaro) in world nm, stored in the project.

::

    skels = skeletonize(labels, voxel_size=(40, 8, 8), offset=(0, 0, 0))
    store = SkeletonStore.rebuild(proofreader)        # every segment, saved in the project
    proofreader.add_listener(lambda r: store.update_after_edit(proofreader, r))
    paths = skeleton_paths(store.skeletons.values())  # napari Shapes 'path' data
"""

from napari_connectome.skeleton.model import Skeleton, skeleton_paths
from napari_connectome.skeleton.store import SkeletonStore, StaleSkeletonsError
from napari_connectome.skeleton.teasar import DEFAULT_DUST_VOXELS, DEFAULT_TEASAR, skeletonize

__all__ = [
    "DEFAULT_DUST_VOXELS",
    "DEFAULT_TEASAR",
    "Skeleton",
    "SkeletonStore",
    "StaleSkeletonsError",
    "skeleton_paths",
    "skeletonize",
]
