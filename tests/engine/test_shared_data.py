"""The real EM fixtures in ``shared/data`` open with the right shape, dtype, kind and voxel size.

The data lives beside the checkout (``../shared/data``, also in CI) or where
``NAPARI_CONNECTOME_SHARED_DATA`` points; without it these tests skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from conftest import missing

from napari_connectome.volume import open_volume
from napari_connectome.volume.checks import assumed_voxel_size


def _shared_data() -> Path:
    env = os.environ.get("NAPARI_CONNECTOME_SHARED_DATA")
    if env:
        return Path(env)
    return (Path(__file__).resolve().parents[2] / ".." / "shared" / "data").resolve()


DATA = _shared_data()
FIB = DATA / "gala-fib"
SNEMI = DATA / "gala-snemi-mini"

# file name -> (dtype, kind); gala-fib: README.md of shared/data.
FIB_FILES = {
    "train-image.h5": (np.uint8, "image"),
    "test-image.h5": (np.uint8, "image"),
    "train-gt.lzf.h5": (np.int32, "labels"),
    "test-gt.lzf.h5": (np.int32, "labels"),
    "train-ws.lzf.h5": (np.int32, "labels"),
    "test-ws.lzf.h5": (np.int32, "labels"),
    "train-p1.lzf.h5": (np.float32, "image"),
    "test-p1.lzf.h5": (np.float32, "image"),
}
SNEMI_FILES = {
    "train-labels.tif": (np.uint8, "labels"),  # uint8 ids: labels by its name
    "train-probabilities.tif": (np.uint8, "image"),
    "train-fragments.tif": (np.uint16, "labels"),
}


def _need(path: Path) -> Path:
    if not path.exists():
        missing(f"shared EM data not found at {path} (set NAPARI_CONNECTOME_SHARED_DATA)")
    return path


@pytest.mark.parametrize("inner", ["", "/stack"], ids=["file", "file/stack"])
@pytest.mark.parametrize("name", sorted(FIB_FILES))
def test_gala_fib(name, inner):
    path = _need(FIB / name)
    dtype, kind = FIB_FILES[name]
    volume = open_volume(f"{path}{inner}")
    assert volume.format == "hdf5"
    assert volume.shape == (50, 100, 200)
    assert volume.axes == ("z", "y", "x")
    assert volume.dtype == np.dtype(dtype)
    assert volume.kind == kind
    # The files store no voxel size: assumed, and said so.
    assert volume.voxel_size_assumed
    assert volume.voxel_size == assumed_voxel_size(3)
    assert any("assumed" in note for note in volume.notes)
    plane = volume.level0.array[25]
    assert plane.shape == (100, 200)
    assert plane.any(), "a real EM plane is not all zeros"


@pytest.mark.parametrize("name", sorted(FIB_FILES))
def test_gala_fib_given_voxel_size(name):
    path = _need(FIB / name)
    volume = open_volume(path, voxel_size=(10, 10, 10))
    assert volume.voxel_size == (10.0, 10.0, 10.0)
    assert not volume.voxel_size_assumed
    assert not any("assumed" in note for note in volume.notes)


def test_gala_fib_reads_match_h5py():
    import h5py

    path = _need(FIB / "test-gt.lzf.h5")
    volume = open_volume(path)
    with h5py.File(path, "r") as f:
        want = f["stack"][...]
    np.testing.assert_array_equal(volume.level0.read(), want)
    np.testing.assert_array_equal(volume.level0.array[7:40:5, ::-3, 101], want[7:40:5, ::-3, 101])


@pytest.mark.parametrize("name", sorted(SNEMI_FILES))
def test_snemi_mini(name):
    import tifffile

    path = _need(SNEMI / name)
    dtype, kind = SNEMI_FILES[name]
    volume = open_volume(path)
    assert volume.format == "tiff"
    assert volume.shape == (32, 160, 160)
    assert volume.dtype == np.dtype(dtype)
    assert volume.kind == kind
    assert volume.voxel_size_assumed
    np.testing.assert_array_equal(volume.level0.read(), tifffile.imread(path))
    given = open_volume(path, voxel_size=(10, 10, 10))
    assert given.voxel_size == (10.0, 10.0, 10.0) and not given.voxel_size_assumed
