"""The skeletons layer: one napari Shapes ``path`` per skeleton branch, coloured by segment.

Paths are given in voxel units of the segmentation's level 0 with
``scale = voxel size`` and ``translate = offset``, the same transform as the
image and labels layers, so the skeletons line up with them and napari's
sliders step through the same planes.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

LAYER_NAME = "skeletons"


def segment_colour(segment_id: int) -> np.ndarray:
    """A bright RGBA colour that depends only on the segment id."""
    rng = np.random.default_rng(int(segment_id))
    rgb = rng.uniform(0.25, 1.0, 3)
    rgb[rng.integers(3)] = 1.0  # keep one channel full so no path is dark on the black canvas
    return np.append(rgb, 1.0)


def skeleton_layer_data(skeletons: Mapping, *, voxel_size, offset) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """``(paths in voxel units, RGBA colour per path, segment id per path)``."""
    vs = np.asarray(voxel_size, dtype=np.float64)
    off = np.asarray(offset, dtype=np.float64)
    paths, ids = [], []
    for seg, sk in skeletons.items():
        for branch in sk.branches():
            paths.append((branch.astype(np.float64) - off) / vs)
            ids.append(int(seg))
    ids_arr = np.asarray(ids, dtype=np.int64)
    colours = np.array([segment_colour(s) for s in ids_arr]).reshape(-1, 4)
    return paths, colours, ids_arr


def show_skeletons(viewer, store=None, *, skeletons: Mapping | None = None, voxel_size=None, offset=None,
                   name: str = LAYER_NAME, edge_width_nm: float = 20.0):
    """Add the skeletons layer to ``viewer``, or replace its paths if it is there.

    Parameters
    ----------
    store
        A :class:`~napari_connectome.skeleton.SkeletonStore` (its voxel size and
        offset come with it); or give ``skeletons`` with ``voxel_size`` and ``offset``.
    edge_width_nm
        Line width in nm (drawn in voxel units of the finest axis).

    Returns
    -------
    napari.layers.Shapes
    """
    if store is not None:
        skeletons = store.skeletons
        voxel_size = store.signature["voxel_size_nm"]
        offset = store.signature["offset_nm"]
    if skeletons is None or voxel_size is None or offset is None:
        raise ValueError("show_skeletons needs a store, or skeletons with voxel_size and offset")
    paths, colours, ids = skeleton_layer_data(skeletons, voxel_size=voxel_size, offset=offset)
    width = float(edge_width_nm) / float(min(voxel_size))
    features = {"segment_id": ids}
    if name in viewer.layers:
        layer = viewer.layers[name]
        layer.data = []
        layer.scale, layer.translate = tuple(voxel_size), tuple(offset)
        if paths:
            layer.add_paths(paths, edge_width=width, edge_color=colours)
        layer.features = features
        return layer
    return viewer.add_shapes(
        paths, shape_type="path", edge_color=colours if len(paths) else "white", edge_width=width,
        face_color="transparent", scale=tuple(voxel_size), translate=tuple(offset), name=name,
        features=features, blending="translucent_no_depth",
    )
