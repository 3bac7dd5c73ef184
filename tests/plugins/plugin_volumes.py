"""Small volumes in every format, written with the formats' own libraries (test helpers)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

SHAPE = (8, 32, 48)


def image_data(shape=SHAPE, dtype=np.uint8) -> np.ndarray:
    """A deterministic, non-constant image."""
    z, y, x = np.indices(shape)
    return ((z * 31 + y * 7 + x * 3) % 251).astype(dtype)


def labels_data(shape=SHAPE) -> np.ndarray:
    """Deterministic labels: blocks of 8 × 16 × 16 voxels."""
    z, y, x = np.indices(shape)
    return (1 + (z // 8) * 100 + (y // 16) * 10 + x // 16).astype(np.uint32)


def write_hdf5(path: Path, data: np.ndarray, *, resolution=(10.0, 10.0, 10.0)) -> str:
    import h5py

    with h5py.File(path, "w") as f:
        ds = f.create_dataset("raw", data=data, chunks=(4, 16, 16))
        if resolution is not None:
            ds.attrs["resolution"] = np.asarray(resolution)
    return str(path)


def write_zarr(path: Path, data: np.ndarray) -> str:
    import zarr

    arr = zarr.create_array(str(path), shape=data.shape, chunks=(4, 16, 16), dtype=data.dtype)
    arr[...] = data
    return str(path)


def write_ome_zarr_lib(path: Path, data: np.ndarray, *, scale=(10.0, 4.0, 4.0)) -> str:
    """A two-level OME-Zarr written by the ome-zarr library (not by the suite's writer)."""
    from ome_zarr.writer import write_image

    write_image(
        data,
        str(path),
        axes=["z", "y", "x"],
        scale=dict(zip("zyx", scale, strict=True)),
        axes_units=dict.fromkeys("zyx", "nanometer"),
        scale_factors=[{"z": 1, "y": 2, "x": 2}],
        method="nearest",
        storage_options={"chunks": (4, 16, 16)},
    )
    return str(path)


def write_n5(path: Path, data: np.ndarray) -> str:
    import tensorstore as ts

    spec = {
        "driver": "n5",
        "kvstore": {"driver": "file", "path": str(path)},
        "metadata": {
            "dimensions": list(data.shape[::-1]),
            "blockSize": [16, 16, 4],
            "dataType": str(data.dtype),
            "compression": {"type": "raw"},
        },
        "create": True,
        "delete_existing": True,
    }
    store = ts.open(spec).result()
    store[...] = data.transpose()  # N5 stores x, y, z
    return str(path)


def write_tiff(path: Path, data: np.ndarray) -> str:
    import tifffile

    tifffile.imwrite(str(path), data)
    return str(path)


def write_png_folder(path: Path, data: np.ndarray) -> str:
    import imageio.v3 as iio

    path.mkdir()
    for i, plane in enumerate(data):
        iio.imwrite(path / f"slice_{i:03d}.png", plane)
    return str(path)


WRITERS = {
    "hdf5": lambda tmp: write_hdf5(tmp / "vol.h5", image_data()),
    "zarr": lambda tmp: write_zarr(tmp / "vol.zarr", image_data()),
    "ome-zarr": lambda tmp: write_ome_zarr_lib(tmp / "vol.ome.zarr", image_data()),
    "n5": lambda tmp: write_n5(tmp / "vol.n5", image_data()),
    "tiff": lambda tmp: write_tiff(tmp / "vol.tif", image_data()),
    "image-stack": lambda tmp: write_png_folder(tmp / "slices", image_data()),
}


def gui_env(tmp_path: Path) -> dict:
    """Environment for a GUI subprocess: this display, a private cache."""
    env = dict(os.environ)
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    return env


PYTHON = sys.executable
