"""Supervoxels + boundary map -> region graph -> merge tree; threshold sweeps against ground truth."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from napari_connectome.graph import MergeTree, agglomerate, build_rag
from napari_connectome.metrics import arand_from_table, contingency_table, vi_from_table
from napari_connectome.segment.supervoxels import (
    boundary_from_affinities,
    mutex_supervoxels,
    watershed_supervoxels,
)
from napari_connectome.volume import from_array


@dataclass(frozen=True)
class PostProcess:
    """How affinities become supervoxels (a serialisable strategy).

    Attributes
    ----------
    method
        ``"watershed"`` (distance-transform watershed of the boundary map),
        ``"ascent"`` (steepest ascent of the same distance, capped: exact in
        blocks, the one ``segment`` uses) or ``"mutex"`` (mutex watershed on
        all affinity offsets).
    threshold, sigma, min_distance
        :func:`~napari_connectome.segment.watershed_supervoxels` options
        (``threshold`` and ``sigma`` also for ``"ascent"``).
    cap, boundary_weight
        ``"ascent"``: distances are capped here (finest voxel edges), and how much the
        boundary map steers the ascent inside cells
        (:class:`~napari_connectome.segment.heights.HeightParams`).
    bias_short, bias_long
        :func:`~napari_connectome.segment.mutex_supervoxels` options.
    """

    method: str = "watershed"
    threshold: float = 0.5
    sigma: float = 1.0
    min_distance: int = 2
    bias_short: float = 0.5
    bias_long: float = 0.5
    cap: float = 16.0
    boundary_weight: float = 0.0

    def height_params(self, voxel_size=(1.0, 1.0, 1.0)):
        """The :class:`~napari_connectome.segment.heights.HeightParams` of an ``"ascent"``."""
        from napari_connectome.segment.heights import HeightParams

        return HeightParams(threshold=self.threshold, sigma=self.sigma, cap=self.cap,
                            voxel_size=tuple(float(v) for v in voxel_size), boundary_weight=self.boundary_weight)

    def to_dict(self) -> dict:
        """Plain dict."""
        return asdict(self)

    def supervoxels(self, affinities: np.ndarray, offsets, boundary: np.ndarray | None = None, *,
                    voxel_size=(1.0, 1.0, 1.0)) -> np.ndarray:
        """Supervoxels of ``affinities`` (``boundary`` is computed when not given)."""
        if self.method == "ascent":
            from napari_connectome.segment.heights import height_supervoxels

            if boundary is None:
                boundary = boundary_from_affinities(affinities, offsets)
            return height_supervoxels(boundary, self.height_params(voxel_size))
        if self.method == "watershed":
            if boundary is None:
                boundary = boundary_from_affinities(affinities, offsets)
            return watershed_supervoxels(boundary, threshold=self.threshold, sigma=self.sigma,
                                         min_distance=self.min_distance)
        if self.method == "mutex":
            return mutex_supervoxels(affinities, offsets, bias_short=self.bias_short, bias_long=self.bias_long)
        raise ValueError(f"unknown supervoxel method {self.method!r}")


def merge_tree(supervoxels: np.ndarray, boundary: np.ndarray, *, feature: str = "mean") -> MergeTree:
    """Our region graph on the boundary map (face = max of the two voxels) and its merge tree."""
    rag = build_rag(from_array(supervoxels, kind="labels"), from_array(boundary.astype(np.float32)))
    return agglomerate(rag, feature=feature)


def sweep_thresholds(tree: MergeTree, supervoxels: np.ndarray, gt: np.ndarray, thresholds) -> np.ndarray:
    """``(T, 3)``: VI split, VI merge and ARAND (gt 0 ignored) of the merge tree at each threshold."""
    table = contingency_table(supervoxels, gt)
    out = []
    for t in thresholds:
        remapped = table.remap(*tree.mapping_at(float(t)))
        out.append((*vi_from_table(remapped), arand_from_table(remapped)))
    return np.asarray(out)


def segmentation_at(tree: MergeTree, supervoxels: np.ndarray, threshold: float) -> np.ndarray:
    """Segment labels of every voxel at ``threshold``."""
    src, dst = tree.mapping_at(float(threshold))
    lut = np.arange(int(supervoxels.max()) + 1, dtype=np.int64)
    lut[np.asarray(src, dtype=np.int64)] = dst
    return lut[supervoxels]
