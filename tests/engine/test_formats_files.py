"""Round trips through the file backends (HDF5, TIFF, slice folders).

Each file is written with the format's own reference library (h5py, tifffile,
imageio); :func:`open_volume` must give back the same voxels, voxel size,
offset and kind, and say when it assumed a voxel size.
"""

from __future__ import annotations

import h5py
import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from napari_connectome.volume import open_volume
from napari_connectome.volume.checks import assumed_voxel_size

SHAPE = (13, 70, 90)  # no axis a multiple of any chunk edge used below

KEYS = [
    (slice(None, None, 2), slice(5, 61, 3), slice(None, None, -7)),
    (4, Ellipsis),
    (Ellipsis, 17),
    (slice(-5, None), 3, slice(10, 80)),
    (-1, -1, -1),
    (slice(2, 11, 4), slice(None, None, -1), slice(33, 34)),
    (slice(12, 1, -3), slice(69, 0, -10), 0),
]


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """A uint8 image with structure in every axis (a plane swap or flip would show)."""
    z, y, x = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    noise = np.random.default_rng(0).integers(0, 40, SHAPE)
    return ((z * 17 + y * 3 + x + noise) % 256).astype(np.uint8)


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    """uint32 segment ids, some above 2**31 (a signed or 16-bit path would corrupt them)."""
    rng = np.random.default_rng(1)
    ids = rng.integers(1, 2**32 - 1, 40, dtype=np.uint64).astype(np.uint32)
    ids[0] = 0
    z, y, x = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    return ids[(z // 4 * 16 + y // 20 * 4 + x // 25) % 40]


def assert_same(volume, expected: np.ndarray) -> None:
    """Full read and strided/partial reads equal NumPy's."""
    array = volume.level0.array
    assert volume.shape == expected.shape
    assert volume.dtype == expected.dtype
    np.testing.assert_array_equal(volume.level0.read(), expected)
    for key in KEYS[: 7 if expected.ndim == 3 else 0]:
        np.testing.assert_array_equal(array[key], expected[key], err_msg=str(key))


def assert_assumed(volume) -> None:
    assert volume.voxel_size_assumed
    assert volume.voxel_size == assumed_voxel_size(volume.ndim, volume.axes)
    assert any("assumed" in note for note in volume.notes)


# --- HDF5 -------------------------------------------------------------------


def test_hdf5_plain_dataset(tmp_path, image, labels):
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f["raw"] = image
    with h5py.File(tmp_path / "seg.h5", "w") as f:
        f["ids"] = labels
    for uri in (path, f"{path}/raw"):
        volume = open_volume(uri)
        assert volume.format == "hdf5"
        assert volume.kind == "image"
        assert volume.axes == ("z", "y", "x")
        assert volume.offset == (0.0, 0.0, 0.0)
        assert_assumed(volume)
        assert_same(volume, image)
    seg = open_volume(tmp_path / "seg.h5")
    assert seg.kind == "labels"
    assert_same(seg, labels)


def test_hdf5_cremi_resolution_and_offset(tmp_path, image, labels):
    path = tmp_path / "sample_A.hdf"
    with h5py.File(path, "w") as f:
        raw = f.create_dataset("volumes/raw", data=image)
        raw.attrs["resolution"] = np.array([40.0, 4.0, 4.0])
        ids = f.create_dataset("volumes/labels/neuron_ids", data=labels, chunks=(4, 32, 32), compression="gzip")
        ids.attrs["resolution"] = (40.0, 4.0, 4.0)
        ids.attrs["offset"] = (80.0, 16.0, 24.0)
    raw = open_volume(f"{path}/volumes/raw")
    assert raw.voxel_size == (40.0, 4.0, 4.0)
    assert raw.offset == (0.0, 0.0, 0.0)
    assert raw.kind == "image" and not raw.voxel_size_assumed
    assert_same(raw, image)
    seg = open_volume(f"{path}/volumes/labels/neuron_ids")
    assert seg.voxel_size == (40.0, 4.0, 4.0)
    assert seg.offset == (80.0, 16.0, 24.0)
    assert seg.kind == "labels"
    assert_same(seg, labels)


def test_hdf5_chunked_compressed_element_size_um(tmp_path, image, labels):
    path = tmp_path / "ilastik.h5"
    with h5py.File(path, "w") as f:
        for name, data, comp in (("exported_data", image, "lzf"), ("seg", labels, "gzip")):
            d = f.create_dataset(name, data=data, chunks=(3, 16, 20), compression=comp)
            d.attrs["element_size_um"] = [0.03, 0.006, 0.006]
    for name, data in (("exported_data", image), ("seg", labels)):
        volume = open_volume(f"{path}/{name}")
        assert volume.voxel_size == pytest.approx((30.0, 6.0, 6.0))
        assert not volume.voxel_size_assumed
        # The read grid stays aligned with the storage chunks.
        assert all(g % c == 0 or g == n for g, c, n in zip(volume.chunks, (3, 16, 20), SHAPE, strict=True))
        assert_same(volume, data)


def test_hdf5_voxel_size_attribute_with_units_on_parent_group(tmp_path, image):
    path = tmp_path / "funlib.h5"
    with h5py.File(path, "w") as f:
        group = f.create_group("em")
        group.attrs["voxel_size"] = [0.05, 0.008, 0.008]
        group.attrs["units"] = "um"
        group.attrs["offset"] = [100.0, 0.0, -8.0]
        group["s0"] = image
    volume = open_volume(f"{path}/em/s0")
    assert volume.voxel_size == pytest.approx((50.0, 8.0, 8.0))
    assert volume.offset == (100.0, 0.0, -8.0)
    assert volume.name.endswith("em/s0")


def test_hdf5_contiguous_large_planes_read_in_tiles(tmp_path):
    data = np.random.default_rng(3).integers(0, 2**16, (3, 300, 600), dtype=np.uint16)
    path = tmp_path / "wide.h5"
    with h5py.File(path, "w") as f:
        f["data"] = data
    volume = open_volume(path)
    assert volume.chunks[1:] == (256, 256)
    np.testing.assert_array_equal(volume.level0.read(), data)
    np.testing.assert_array_equal(volume.level0.array[1, 250:270, 500:520], data[1, 250:270, 500:520])


def test_hdf5_2d_and_4d(tmp_path, image):
    path = tmp_path / "dims.h5"
    with h5py.File(path, "w") as f:
        f["plane"] = image[0]
        f["aff"] = np.stack([image, 255 - image]).astype(np.float32)
    plane = open_volume(f"{path}/plane")
    assert plane.axes == ("y", "x") and len(plane.voxel_size) == 2
    assert_same(plane, image[0])
    aff = open_volume(f"{path}/aff")
    assert aff.axes == ("c", "z", "y", "x")
    assert aff.voxel_size[0] == 1.0
    np.testing.assert_array_equal(aff.level0.read()[1], 255 - image.astype(np.float32))


def test_hdf5_voxel_size_override_wins(tmp_path, image):
    path = tmp_path / "cremi.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("raw", data=image).attrs["resolution"] = [40.0, 4.0, 4.0]
    volume = open_volume(f"{path}/raw", voxel_size=(30, 6, 6))
    assert volume.voxel_size == (30.0, 6.0, 6.0)
    assert not volume.voxel_size_assumed
    plain = tmp_path / "plain.h5"
    with h5py.File(plain, "w") as f:
        f["raw"] = image
    volume = open_volume(plain, voxel_size=(10, 10, 10))
    assert volume.voxel_size == (10.0, 10.0, 10.0)
    assert not volume.voxel_size_assumed
    assert not any("assumed" in n for n in volume.notes)


# --- TIFF -------------------------------------------------------------------


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_tiff_multipage(tmp_path, image, labels, compression):
    for name, data, kind in (("em.tif", image, "image"), ("seg.tiff", labels, "labels")):
        path = tmp_path / name
        tifffile.imwrite(path, data, compression=compression)
        volume = open_volume(path)
        assert volume.format == "tiff"
        assert volume.kind == kind
        assert volume.axes == ("z", "y", "x")
        assert volume.chunks[0] == 1, "one page per chunk"
        assert_assumed(volume)
        assert_same(volume, data)


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_tiff_big_endian(tmp_path, labels, compression):
    path = tmp_path / "be.tif"
    tifffile.imwrite(path, labels, byteorder=">", compression=compression)
    volume = open_volume(path)
    assert volume.dtype == np.dtype(np.uint32)
    assert_same(volume, labels)


def test_tiff_imagej_spacing(tmp_path, image):
    path = tmp_path / "fiji.tif"
    tifffile.imwrite(
        path,
        image,
        imagej=True,
        resolution=(1 / 0.004, 1 / 0.005),
        metadata={"spacing": 0.03, "unit": "um", "axes": "ZYX"},
    )
    volume = open_volume(path)
    assert volume.voxel_size == pytest.approx((30.0, 5.0, 4.0))
    assert not volume.voxel_size_assumed
    assert_same(volume, image)
    override = open_volume(path, voxel_size=(8, 8, 8))
    assert override.voxel_size == (8.0, 8.0, 8.0)


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ({"PhysicalSizeX": 4, "PhysicalSizeXUnit": "nm", "PhysicalSizeY": 4, "PhysicalSizeYUnit": "nm",
          "PhysicalSizeZ": 40, "PhysicalSizeZUnit": "nm"}, (40.0, 4.0, 4.0)),
        # OME's default unit is µm.
        ({"PhysicalSizeX": 0.006, "PhysicalSizeY": 0.005, "PhysicalSizeZ": 0.03}, (30.0, 5.0, 6.0)),
    ],
)
def test_ome_tiff_physical_sizes(tmp_path, image, meta, expected):
    path = tmp_path / "em.ome.tif"
    tifffile.imwrite(path, image, compression="zlib", metadata={"axes": "ZYX", **meta})
    volume = open_volume(path)
    assert volume.voxel_size == pytest.approx(expected)
    assert not volume.voxel_size_assumed
    assert volume.name == "em"
    assert_same(volume, image)


def test_tiff_resolution_tags_without_z(tmp_path, image):
    path = tmp_path / "tags.tif"
    tifffile.imwrite(path, image, resolution=(1e7 / 8, 1e7 / 8), resolutionunit="CENTIMETER")
    volume = open_volume(path)
    assert volume.voxel_size == pytest.approx((8.0, 8.0, 8.0))
    # x and y are known, z was guessed: the volume must say so.
    assert volume.voxel_size_assumed
    assert any("z spacing" in note for note in volume.notes)


def test_tiff_single_page_is_2d(tmp_path, image):
    path = tmp_path / "plane.tif"
    tifffile.imwrite(path, image[5])
    volume = open_volume(path)
    assert volume.axes == ("y", "x")
    assert_same(volume, image[5])


def test_tiff_pyramid_levels(tmp_path, image):
    path = tmp_path / "pyr.ome.tif"
    plane = image[0]
    with tifffile.TiffWriter(path) as tw:
        tw.write(plane, subifds=1, metadata={"axes": "YX", "PhysicalSizeX": 0.004, "PhysicalSizeY": 0.004})
        tw.write(plane[::2, ::2], subfiletype=1)
    volume = open_volume(path)
    assert len(volume.levels) == 2
    assert volume.levels[1].shape == (35, 45)
    assert volume.levels[1].voxel_size == pytest.approx((8.0, 8.0))
    np.testing.assert_array_equal(volume.levels[1].read(), plane[::2, ::2])


# --- folders of slices --------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_png_slice_folder(tmp_path, image, dtype):
    data = image.astype(dtype) * (257 if dtype == np.uint16 else 1)
    folder = tmp_path / "slices"
    folder.mkdir()
    # Written out of order, named so that plain string sorting would put 10 before 2.
    for z in np.random.default_rng(4).permutation(SHAPE[0]):
        iio.imwrite(folder / f"slice{z}.png", data[z])
    (folder / "README.txt").write_text("not a slice")
    volume = open_volume(folder)
    assert volume.format == "image-stack"
    assert volume.chunks == (1, 70, 90)
    assert_assumed(volume)
    assert_same(volume, data)
    override = open_volume(folder, voxel_size=(30, 4, 4))
    assert override.voxel_size == (30.0, 4.0, 4.0) and not override.voxel_size_assumed


def test_tiff_slice_folder_labels(tmp_path, labels):
    folder = tmp_path / "seg_slices"
    folder.mkdir()
    for z in range(SHAPE[0]):
        tifffile.imwrite(folder / f"z_{z:03d}.tif", labels[z])
    volume = open_volume(folder)
    assert volume.kind == "labels"
    assert_same(volume, labels)


def test_zarr_like_folder_is_not_a_slice_folder(tmp_path, image):
    from napari_connectome.volume.formats import image_stack
    from napari_connectome.volume.location import parse_uri

    folder = tmp_path / "looks_like.zarr"
    folder.mkdir()
    iio.imwrite(folder / "0.png", image[0])
    assert image_stack.sniff(parse_uri(folder))
    (folder / ".zattrs").write_text("{}")
    assert not image_stack.sniff(parse_uri(folder))


# --- napari slices from several threads at once -------------------------------


def _hammer(volume, expected: np.ndarray, reads: int = 200) -> None:
    """Eight threads read random planes with caching off; every read must be exact."""
    from concurrent.futures import ThreadPoolExecutor

    from napari_connectome.volume.cache import ChunkCache

    volume.level0.array.cache = ChunkCache(0)  # every read goes to the file
    rng = np.random.default_rng(5)
    planes = rng.integers(0, expected.shape[0], reads)

    def read(z):
        return z, volume.level0.array[int(z)]

    with ThreadPoolExecutor(8) as pool:
        for z, plane in pool.map(read, planes):
            np.testing.assert_array_equal(plane, expected[z])


def test_threaded_reads_hdf5(tmp_path, labels):
    path = tmp_path / "t.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("seg", data=labels, chunks=(1, 35, 45), compression="gzip")
    _hammer(open_volume(path), labels)


@pytest.mark.parametrize("compression", [None, "zlib"])
def test_threaded_reads_tiff(tmp_path, compression):
    # Pages big enough that unguarded seeks and reads of one file handle would
    # interleave (they did, in about 1 read of 6, before the handle's lock was set).
    data = np.random.default_rng(6).integers(0, 255, (20, 256, 256), dtype=np.uint8)
    path = tmp_path / "t.tif"
    tifffile.imwrite(path, data, compression=compression)
    _hammer(open_volume(path), data, reads=800)


def test_threaded_reads_png_folder(tmp_path, image):
    for z in range(SHAPE[0]):
        iio.imwrite(tmp_path / f"{z}.png", image[z])
    _hammer(open_volume(tmp_path), image)


def test_formats_found_by_magic_bytes_not_names(tmp_path, image):
    h5 = tmp_path / "volume.data"
    with h5py.File(h5, "w", userblock_size=512) as f:  # signature at byte 512, not 0
        f["raw"] = image
    tif = tmp_path / "scan.img"
    tifffile.imwrite(tif, image, compression="zlib")
    for path, fmt in ((h5, "hdf5"), (tif, "tiff")):
        volume = open_volume(path)
        assert volume.format == fmt
        assert_same(volume, image)
