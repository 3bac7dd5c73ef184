"""Write OME-Zarr multiscale pyramids, streaming, and convert any volume to one."""

from napari_connectome.pyramid.convert import convert
from napari_connectome.pyramid.downsample import (
    LevelPlan,
    downsample_mean,
    downsample_mode,
    next_factors,
    plan_levels,
)
from napari_connectome.pyramid.folder import write_ome_zarr_folder
from napari_connectome.pyramid.write import write_ome_zarr

__all__ = [
    "LevelPlan",
    "convert",
    "downsample_mean",
    "downsample_mode",
    "next_factors",
    "plan_levels",
    "write_ome_zarr",
    "write_ome_zarr_folder",
]
