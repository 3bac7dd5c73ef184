"""The tensorstore backends: OME-Zarr, zarr, N5, precomputed.

Each format is written with its own reference library (ome-zarr-py,
zarr-python, tensorstore's n5 and precomputed drivers), then opened with
``open_volume``; voxels, voxel size, offset and kind must come back exactly
at every level.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import numpy as np
import pytest
import tensorstore as ts
import zarr

from napari_connectome.errors import ChunkReadError, InputError
from napari_connectome.volume import open_volume
from napari_connectome.volume.cache import tensorstore_context
from napari_connectome.volume.formats import n5, ome_zarr, precomputed, zarr_array
from napari_connectome.volume.location import Location
from napari_connectome.volume.open import finish_volume

# ome-zarr-py deprecates coordinate_transformations in favour of `scale`, which
# cannot express translations; the tests need translations.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ome_zarr")

VS0 = (30.0, 8.0, 8.0)  # anisotropic, like serial-section EM


def _pyramid(data: np.ndarray, levels: int = 3) -> list[np.ndarray]:
    """Level k keeps every 2**k-th voxel in y and x (z stays: anisotropic data)."""
    return [np.ascontiguousarray(data[:, :: 2**k, :: 2**k]) for k in range(levels)]


@pytest.fixture(scope="module")
def image() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return _pyramid(rng.integers(0, 256, size=(12, 40, 48), dtype=np.uint8))


@pytest.fixture(scope="module")
def labels() -> list[np.ndarray]:
    rng = np.random.default_rng(2)
    # Ids above 2**32 make sure nothing narrows uint64 on the way.
    ids = rng.integers(0, 50, size=(12, 40, 48)).astype(np.uint64) + np.uint64(2**40)
    return _pyramid(ids)


def _vs(k: int) -> tuple[float, float, float]:
    return (VS0[0], VS0[1] * 2**k, VS0[2] * 2**k)


def _check(volume, pyramid, voxel_sizes, offsets, kind):
    assert volume.kind == kind
    assert len(volume.levels) == len(pyramid)
    for k, (level, data) in enumerate(zip(volume.levels, pyramid, strict=True)):
        assert level.axes == ("z", "y", "x"), k
        assert level.shape == data.shape, k
        assert level.dtype == data.dtype, k
        np.testing.assert_array_equal(level.read(), data, err_msg=f"level {k}")
        assert level.voxel_size == pytest.approx(voxel_sizes[k]), k
        assert level.offset == pytest.approx(offsets[k]), k


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text
    return text


def _to_memory(root: Path) -> Location:
    """Copy a written folder into tensorstore's memory kvstore (shared context).

    The backends then read it as they read gs://, s3:// or http(s)://: every
    metadata file and chunk through ``Location.kvstore()``, nothing through
    the file system.
    """
    prefix = f"bucket-{uuid.uuid4().hex}/{root.name}"
    kv = ts.KvStore.open(f"memory://{prefix}/", context=tensorstore_context()).result()
    for path in root.rglob("*"):
        if path.is_file():
            kv.write(path.relative_to(root).as_posix(), path.read_bytes()).result()
    return Location(uri=f"memory://{prefix}", scheme="memory", path=prefix)


# ---------------------------------------------------------------- OME-Zarr

AXES = [{"name": a, "type": "space", "unit": "nanometer"} for a in ("z", "y", "x")]


def _ngff_transforms(offset0, levels=3, scale0=VS0):
    out = []
    for k in range(levels):
        sc = [scale0[0], scale0[1] * 2**k, scale0[2] * 2**k]
        tr = [o + (s - s0) / 2 for o, s, s0 in zip(offset0, sc, scale0, strict=True)]
        out.append([{"type": "scale", "scale": sc}, {"type": "translation", "translation": tr}])
    return out


def _write_ome(root: Path, fmt_name: str, image, labels, *, axes=AXES, transforms=None):
    from ome_zarr.format import FormatV04, FormatV05
    from ome_zarr.writer import write_multiscale, write_multiscale_labels

    fmt = {"0.4": FormatV04(), "0.5": FormatV05()}[fmt_name]
    transforms = transforms or _ngff_transforms((150.0, 40.0, 24.0))
    group = zarr.open_group(str(root), mode="w", zarr_format=fmt.zarr_format)
    write_multiscale(
        image, group, fmt=fmt, axes=axes, coordinate_transformations=transforms,
        storage_options={"chunks": (4, 16, 16)},
    )
    if labels is not None:
        write_multiscale_labels(
            labels, group, name="cells", fmt=fmt, axes=axes, coordinate_transformations=transforms,
            storage_options={"chunks": (4, 16, 16)},
        )
    return transforms


def _expected(transforms):
    return [t[0]["scale"] for t in transforms], [t[1]["translation"] for t in transforms]


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_image_and_labels(tmp_path, image, labels, version):
    root = tmp_path / "sample.ome.zarr"
    transforms = _write_ome(root, version, image, labels)
    vs, off = _expected(transforms)
    assert off[0] == [150.0, 40.0, 24.0] and off[1] == [150.0, 44.0, 28.0]

    vol = open_volume(root)
    assert vol.format == "ome-zarr" and vol.name == "sample"
    _check(vol, image, vs, off, "image")
    assert vol.chunks == (4, 16, 16)
    assert not vol.voxel_size_assumed
    assert any("cells" in n for n in vol.notes)  # says where its labels are

    seg = open_volume(root / "labels" / "cells")
    _check(seg, labels, vs, off, "labels")


def test_ome_zarr_uint8_labels_are_labels_by_metadata(tmp_path, image):
    # uint8 named "cells" would infer as an image; image-label must decide.
    root = tmp_path / "x.ome.zarr"
    _write_ome(root, "0.4", image, [np.asarray(a, dtype=np.uint8) for a in image])
    assert open_volume(root / "labels" / "cells").kind == "labels"
    assert open_volume(root).kind == "image"


def test_ome_zarr_units_are_converted_to_nm(tmp_path, image):
    axes = [{"name": a, "type": "space", "unit": "micrometer"} for a in ("z", "y", "x")]
    transforms = [
        [{"type": "scale", "scale": [0.03, 0.008 * 2**k, 0.008 * 2**k]},
         {"type": "translation", "translation": [1.5, 0.5, 0.25]}]
        for k in range(3)
    ]
    root = tmp_path / "um.ome.zarr"
    _write_ome(root, "0.4", image, None, axes=axes, transforms=transforms)
    vol = open_volume(root)
    _check(vol, image, [_vs(k) for k in range(3)], [(1500.0, 500.0, 250.0)] * 3, "image")


def test_ome_zarr_unitless_axes_read_as_nm_with_a_note(tmp_path, image):
    root = tmp_path / "nounit.ome.zarr"
    _write_ome(root, "0.4", image, None, axes=["z", "y", "x"])
    vol = open_volume(root)
    assert vol.voxel_size == VS0
    assert any("no unit" in n and "nanometres" in n for n in vol.notes)


def test_ome_zarr_multiscale_transforms_compose(tmp_path, image):
    root = tmp_path / "ms.ome.zarr"
    transforms = _write_ome(root, "0.4", image, None)
    attrs = json.loads((root / ".zattrs").read_text())
    # Applied after each dataset's own: world = 2 * (dataset world) + (100, -8, 0).
    attrs["multiscales"][0]["coordinateTransformations"] = [
        {"type": "scale", "scale": [2, 1, 1]},
        {"type": "translation", "translation": [100, -8, 0]},
    ]
    (root / ".zattrs").write_text(json.dumps(attrs))
    vs, off = _expected(transforms)
    vs = [[2 * v[0], v[1], v[2]] for v in vs]
    off = [[2 * o[0] + 100, o[1] - 8, o[2]] for o in off]
    _check(open_volume(root), image, vs, off, "image")


def test_ome_zarr_0_4_attributes_in_zarr_v3(tmp_path, image):
    # Some writers put 0.4-style "multiscales" straight into a v3 zarr.json.
    root = tmp_path / "hybrid.zarr"
    transforms = _ngff_transforms((0.0, 0.0, 0.0))
    group = zarr.open_group(str(root), mode="w", zarr_format=3)
    for k, data in enumerate(image):
        arr = group.create_array(f"{k}", shape=data.shape, dtype=data.dtype, chunks=(4, 16, 16))
        arr[...] = data
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": AXES,
            "datasets": [{"path": f"{k}", "coordinateTransformations": t} for k, t in enumerate(transforms)],
        }
    ]
    vol = open_volume(root)
    assert vol.format == "ome-zarr"
    _check(vol, image, *_expected(transforms), "image")


def test_ome_zarr_channel_axis(tmp_path, image):
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_multiscale

    stack = [np.stack([a, 255 - a]) for a in image[:2]]
    axes = [{"name": "c", "type": "channel"}] + AXES
    transforms = [
        [{"type": "scale", "scale": [1, 30, 8 * 2**k, 8 * 2**k]}] for k in range(2)
    ]
    root = tmp_path / "c.ome.zarr"
    group = zarr.open_group(str(root), mode="w", zarr_format=2)
    write_multiscale(stack, group, fmt=FormatV04(), axes=axes, coordinate_transformations=transforms)
    vol = open_volume(root)
    assert vol.axes == ("c", "z", "y", "x")
    assert vol.levels[1].voxel_size == (1.0, 30.0, 16.0, 16.0)
    assert vol.levels[1].offset == (0.0, 0.0, 0.0, 0.0)
    np.testing.assert_array_equal(vol.levels[1].read(), stack[1])


def test_ome_zarr_0_3_without_transforms_assumes_and_derives_levels(tmp_path, image):
    from ome_zarr.format import FormatV03
    from ome_zarr.writer import write_multiscale

    root = tmp_path / "old.ome.zarr"
    group = zarr.open_group(str(root), mode="w", zarr_format=2)
    write_multiscale(image[:2], group, fmt=FormatV03(), axes="zyx")
    vol = open_volume(root)
    assert vol.voxel_size_assumed and any("assumed" in n for n in vol.notes)
    _check(vol, image[:2], [(1, 1, 1), (1, 2, 2)], [(0, 0, 0), (0, 0.5, 0.5)], "image")
    # The real voxel size given by the person scales every level alike.
    vol = open_volume(root, voxel_size=VS0)
    _check(vol, image[:2], [_vs(0), _vs(1)], [(0, 0, 0), (0, 4, 4)], "image")
    assert not vol.voxel_size_assumed


def test_ome_zarr_bioformats2raw_layout_opens_series_0(tmp_path, image):
    root = tmp_path / "b2r.ome.zarr"
    zarr.open_group(str(root), mode="w", zarr_format=2).attrs["bioformats2raw.layout"] = 3
    transforms = _write_ome(root / "0", "0.4", image, None)
    vol = open_volume(root)
    _check(vol, image, *_expected(transforms), "image")
    assert any("series 0" in n for n in vol.notes)


# ---------------------------------------------------------------- plain zarr


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_array_with_funlib_attributes(tmp_path, labels, zarr_format):
    path = tmp_path / f"seg_v{zarr_format}.zarr"
    arr = zarr.create_array(str(path), shape=labels[0].shape, chunks=(4, 16, 16), dtype=labels[0].dtype, zarr_format=zarr_format)
    arr[...] = labels[0]
    arr.attrs.update({"voxel_size": [30, 8, 8], "offset": [300, 80, 16], "axis_names": ["z", "y", "x"]})
    vol = open_volume(path)
    assert vol.format == "zarr"
    _check(vol, labels[:1], [VS0], [(300.0, 80.0, 16.0)], "labels")  # uint64: inferred labels
    assert not vol.voxel_size_assumed and vol.notes == []


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_array_without_attributes_assumes_a_voxel_size(tmp_path, image, zarr_format):
    path = tmp_path / f"raw_v{zarr_format}.zarr"
    arr = zarr.create_array(str(path), shape=image[0].shape, chunks=(4, 16, 16), dtype="uint8", zarr_format=zarr_format)
    arr[...] = image[0]
    vol = open_volume(path)
    _check(vol, image[:1], [(1.0, 1.0, 1.0)], [(0.0, 0.0, 0.0)], "image")
    assert vol.voxel_size_assumed
    assert any("assumed" in n for n in vol.notes)


def test_zarr_array_older_funlib_resolution_and_channels(tmp_path, image):
    path = tmp_path / "affs.zarr"
    data = np.stack([image[0], image[0] // 2, 255 - image[0]])
    arr = zarr.create_array(str(path), shape=data.shape, chunks=(3, 4, 16, 16), dtype="uint8", zarr_format=2)
    arr[...] = data
    arr.attrs.update({"resolution": [30, 8, 8], "offset": [30, 16, 8]})
    vol = open_volume(path)
    assert vol.axes == ("c", "z", "y", "x")
    assert vol.voxel_size == (1.0, 30.0, 8.0, 8.0)
    assert vol.offset == (0.0, 30.0, 16.0, 8.0)
    np.testing.assert_array_equal(vol.levels[0].read(), data)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_group_lists_its_arrays(tmp_path, image, zarr_format):
    root = tmp_path / "container.zarr"
    group = zarr.open_group(str(root), mode="w", zarr_format=zarr_format)
    group.create_array("raw", shape=(4, 4, 4), dtype="uint8")
    group.create_group("volumes").create_array("labels", shape=(4, 4, 4), dtype="uint64")
    with pytest.raises(InputError) as err:
        open_volume(root)
    text = _one_line(err.value)
    assert str(root) in text
    assert "without OME-Zarr multiscales; open one of its arrays: raw, volumes/labels" in text


# ---------------------------------------------------------------- N5


def _write_n5(root: Path, pyramid, group_attrs, factors=True):
    for k, data in enumerate(pyramid):
        store = ts.open(
            {
                "driver": "n5",
                "kvstore": {"driver": "file", "path": str(root / f"s{k}")},
                "metadata": {
                    "dimensions": list(reversed(data.shape)),
                    "blockSize": [16, 16, 4],
                    "dataType": str(data.dtype),
                    "compression": {"type": "gzip"},
                },
                "create": True,
            }
        ).result()
        store.write(data.T).result()  # N5 is x, y, z
        if factors:
            attrs_file = root / f"s{k}" / "attributes.json"
            attrs = json.loads(attrs_file.read_text())
            attrs["downsamplingFactors"] = [2**k, 2**k, 1]
            attrs_file.write_text(json.dumps(attrs))
    (root / "attributes.json").write_text(json.dumps({"n5": "2.5.1", **group_attrs}))


def test_n5_multiscale_group(tmp_path, image):
    root = tmp_path / "raw.n5"
    _write_n5(root, image, {"resolution": [8, 8, 30], "offset": [24, 40, 150]})
    vol = open_volume(root)
    assert vol.format == "n5"
    offsets = [(150.0, 40.0 + (8 * 2**k - 8) / 2, 24.0 + (8 * 2**k - 8) / 2) for k in range(3)]
    _check(vol, image, [_vs(k) for k in range(3)], offsets, "image")
    # Axes come out z, y, x: voxel (z=1, y=2, x=3) is what was written there.
    assert vol.levels[0].array[1, 2, 3] == image[0][1, 2, 3]
    assert vol.chunks == (4, 16, 16)


def test_n5_pixel_resolution_in_micrometres_and_labels(tmp_path, labels):
    root = tmp_path / "seg.n5"
    _write_n5(root, labels[:2], {"pixelResolution": {"dimensions": [0.008, 0.008, 0.03], "unit": "um"}})
    vol = open_volume(root)
    offsets = [(0.0, 0.0, 0.0), (0.0, 4.0, 4.0)]
    _check(vol, labels[:2], [_vs(0), _vs(1)], offsets, "labels")


def test_n5_cosem_transform_per_level(tmp_path, image):
    root = tmp_path / "cosem.n5"
    _write_n5(root, image[:2], {}, factors=False)
    for k in range(2):
        attrs_file = root / f"s{k}" / "attributes.json"
        attrs = json.loads(attrs_file.read_text())
        attrs["transform"] = {
            "axes": ["z", "y", "x"],
            "scale": list(_vs(k)),
            "translate": [15.0, 4.0 * 2**k, 4.0 * 2**k],
            "units": ["nm", "nm", "nm"],
        }
        attrs_file.write_text(json.dumps(attrs))
    vol = open_volume(root)
    _check(vol, image[:2], [_vs(0), _vs(1)], [(15, 4, 4), (15, 8, 8)], "image")
    assert not vol.voxel_size_assumed


def test_n5_factors_missing_are_derived_from_shapes(tmp_path, image):
    root = tmp_path / "nofactors.n5"
    _write_n5(root, image[:2], {"resolution": [8, 8, 30]}, factors=False)
    vol = open_volume(root)
    _check(vol, image[:2], [_vs(0), _vs(1)], [(0, 0, 0), (0, 4, 4)], "image")
    assert any("derived" in n for n in vol.notes)


def test_n5_single_dataset_without_resolution(tmp_path, image):
    root = tmp_path / "plain.n5"
    _write_n5(root, image[:1], {}, factors=False)
    vol = open_volume(root / "s0")
    _check(vol, image[:1], [(1, 1, 1)], [(0, 0, 0)], "image")
    assert vol.voxel_size_assumed


# ---------------------------------------------------------------- precomputed


def _write_precomputed(root: Path, pyramid, *, kind, encoding, voxel_offset0):
    dtype = str(pyramid[0].dtype)
    for k, data in enumerate(pyramid):
        scale = {
            "size": list(reversed(data.shape)),
            "resolution": [8 * 2**k, 8 * 2**k, 30],
            "voxel_offset": [voxel_offset0[0] // 2**k, voxel_offset0[1] // 2**k, voxel_offset0[2]],
            "chunk_size": [16, 16, 4],
            "encoding": encoding,
        }
        if encoding == "compressed_segmentation":
            scale["compressed_segmentation_block_size"] = [8, 8, 4]
        spec = {
            "driver": "neuroglancer_precomputed",
            "kvstore": {"driver": "file", "path": str(root)},
            "scale_metadata": scale,
            "create": True,
        }
        if k == 0:
            spec["multiscale_metadata"] = {"type": kind, "data_type": dtype, "num_channels": 1}
        store = ts.open(spec).result()
        store[ts.d["channel"][0]].translate_to[0, 0, 0].write(data.T).result()


def _precomputed_offsets(n, voxel_offset0):
    out = []
    for k in range(n):
        res = (30, 8 * 2**k, 8 * 2**k)
        vo = (voxel_offset0[2], voxel_offset0[1] // 2**k, voxel_offset0[0] // 2**k)
        out.append(tuple(v * r + (r - r0) / 2 for v, r, r0 in zip(vo, res, VS0, strict=True)))
    return out


def test_precomputed_image(tmp_path, image):
    root = tmp_path / "img"
    vo = (64, 32, 5)  # x, y, z
    _write_precomputed(root, image, kind="image", encoding="raw", voxel_offset0=vo)
    vol = open_volume(root)
    assert vol.format == "precomputed"
    offsets = _precomputed_offsets(3, vo)
    assert offsets[0] == (150.0, 256.0, 512.0)  # voxel_offset × resolution
    assert offsets[1] == (150.0, 260.0, 516.0)
    _check(vol, image, [_vs(k) for k in range(3)], offsets, "image")


def test_precomputed_segmentation(tmp_path, labels):
    root = tmp_path / "seg"
    vo = (16, 8, 2)
    _write_precomputed(root, labels[:2], kind="segmentation", encoding="compressed_segmentation", voxel_offset0=vo)
    vol = open_volume(root)
    _check(vol, labels[:2], [_vs(0), _vs(1)], _precomputed_offsets(2, vo), "labels")


def test_precomputed_uint8_segmentation_is_labels(tmp_path, image):
    root = tmp_path / "mask"
    _write_precomputed(root, image[:1], kind="segmentation", encoding="raw", voxel_offset0=(0, 0, 0))
    assert open_volume(root).kind == "labels"


# ---------------------------------------------------------------- remote code path


@pytest.mark.parametrize("fmt", ["ome-zarr-0.4", "ome-zarr-0.5", "zarr", "n5", "precomputed"])
def test_remote_code_path_reads_through_kvstore(tmp_path, image, fmt):
    root = tmp_path / "vol"
    if fmt.startswith("ome-zarr"):
        transforms = _write_ome(root, fmt[-3:], image, None)
        backend, (vs, off) = ome_zarr, _expected(transforms)
    elif fmt == "zarr":
        arr = zarr.create_array(str(root), shape=image[0].shape, chunks=(4, 16, 16), dtype="uint8")
        arr[...] = image[0]
        arr.attrs.update({"voxel_size": list(VS0), "offset": [30, 8, 8]})
        backend, image, vs, off = zarr_array, image[:1], [VS0], [(30, 8, 8)]
    elif fmt == "n5":
        _write_n5(root, image, {"resolution": [8, 8, 30]})
        backend, vs = n5, [_vs(k) for k in range(3)]
        off = [(0, 0, 0), (0, 4, 4), (0, 12, 12)]
    else:
        _write_precomputed(root, image, kind="image", encoding="raw", voxel_offset0=(0, 0, 0))
        backend, vs = precomputed, [_vs(k) for k in range(3)]
        off = [(0, 0, 0), (0, 4, 4), (0, 12, 12)]
    location = _to_memory(root)
    assert backend.sniff(location)
    vol = finish_volume(backend.open(location, on_error="raise", notify=None))
    _check(vol, image, vs, off, "image")
    assert vol.source.startswith("memory://")


# ---------------------------------------------------------------- bad input


def _chunk_files(root: Path) -> list[Path]:
    meta = {".zarray", ".zattrs", ".zgroup", "zarr.json", "attributes.json", "info"}
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name not in meta)


def _write_level0(kind: str, root: Path, data: np.ndarray) -> Path:
    """Write one level in format ``kind``; returns the folder holding its chunks."""
    if kind in ("zarr2", "zarr3"):
        arr = zarr.create_array(str(root), shape=data.shape, chunks=(4, 16, 16), dtype=data.dtype, zarr_format=int(kind[-1]))
        arr[...] = data
        return root
    if kind == "n5":
        _write_n5(root, [data], {"resolution": [8, 8, 30]})
        return root / "s0"
    _write_precomputed(root, [data], kind="image", encoding="raw", voxel_offset0=(0, 0, 0))
    return root


@pytest.mark.parametrize("fmt", ["zarr2", "zarr3", "n5", "precomputed"])
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_bad_chunk_raises_one_line_naming_the_file(tmp_path, image, fmt, damage):
    root = tmp_path / "bad"
    where = _write_level0(fmt, root, image[0])
    chunk = _chunk_files(where)[0]
    raw = chunk.read_bytes()
    chunk.write_bytes(b"\x07garbage" * 9 if damage == "garbage" else raw[: len(raw) // 2])
    level = open_volume(root).levels[0]
    with pytest.raises(ChunkReadError) as err:
        level.read()
    text = _one_line(err.value)
    assert str(where) in text
    assert str(chunk) in text  # the very file, not only its dataset


def test_bad_chunk_fill_returns_zeros_and_notifies_once(tmp_path, image):
    root = tmp_path / "bad.zarr"
    _write_level0("zarr2", root, image[0])
    _chunk_files(root)[0].write_bytes(b"not zstd")
    seen = []
    vol = open_volume(root, on_error="fill", notify=seen.append)
    out = vol.levels[0].read()
    assert out.shape == image[0].shape and out.dtype == np.uint8
    assert not out.any()
    assert len(seen) == 1 and isinstance(seen[0], ChunkReadError)
    assert str(root) in str(seen[0])


def _ome_attrs(root: Path) -> tuple[Path, dict]:
    path = root / ".zattrs"
    return path, json.loads(path.read_text())


def test_ome_zarr_scale_length_differs_from_axes(tmp_path, image):
    root = tmp_path / "bad.ome.zarr"
    _write_ome(root, "0.4", image, None)
    path, attrs = _ome_attrs(root)
    attrs["multiscales"][0]["datasets"][1]["coordinateTransformations"][0]["scale"] = [16, 16]
    path.write_text(json.dumps(attrs))
    with pytest.raises(InputError) as err:
        open_volume(root)
    text = _one_line(err.value)
    assert text.startswith(str(root)) and "inconsistent pyramid metadata" in text
    assert "2 values for 3 axes" in text


def test_ome_zarr_non_positive_scale(tmp_path, image):
    root = tmp_path / "zero.ome.zarr"
    _write_ome(root, "0.5", image, None)
    path = root / "zarr.json"
    doc = json.loads(path.read_text())
    doc["attributes"]["ome"]["multiscales"][0]["datasets"][0]["coordinateTransformations"][0]["scale"] = [30, 0, 8]
    path.write_text(json.dumps(doc))
    with pytest.raises(InputError, match="inconsistent pyramid metadata.*must be > 0") as err:
        open_volume(root)
    assert str(root) in _one_line(err.value)


def test_ome_zarr_level_that_does_not_cover_level0(tmp_path, image):
    root = tmp_path / "short.ome.zarr"
    _write_ome(root, "0.4", image, None)
    path, attrs = _ome_attrs(root)
    # Level 1 holds 20 × 24 voxels in y, x: at 32 nm they would span twice level 0.
    attrs["multiscales"][0]["datasets"][1]["coordinateTransformations"][0]["scale"] = [30, 32, 32]
    path.write_text(json.dumps(attrs))
    with pytest.raises(InputError) as err:
        open_volume(root)
    text = _one_line(err.value)
    assert text.startswith(str(root)) and "inconsistent pyramid metadata: level" in text


def test_ome_zarr_missing_dataset_path(tmp_path, image):
    root = tmp_path / "gone.ome.zarr"
    _write_ome(root, "0.4", image, None)
    path, attrs = _ome_attrs(root)
    attrs["multiscales"][0]["datasets"][2]["path"] = "s9"
    path.write_text(json.dumps(attrs))
    with pytest.raises(InputError) as err:
        open_volume(root)
    text = _one_line(err.value)
    assert str(root) in text and "inconsistent pyramid metadata" in text and "'s9' does not exist" in text


def test_n5_level_that_does_not_cover_level0(tmp_path, image):
    root = tmp_path / "bad.n5"
    _write_n5(root, image[:2], {"resolution": [8, 8, 30]})
    attrs_file = root / "s1" / "attributes.json"
    attrs = json.loads(attrs_file.read_text())
    attrs["downsamplingFactors"] = [4, 4, 1]
    attrs_file.write_text(json.dumps(attrs))
    with pytest.raises(InputError, match="inconsistent pyramid metadata") as err:
        open_volume(root)
    assert str(root) in _one_line(err.value)


def test_precomputed_resolution_of_wrong_length(tmp_path, image):
    root = tmp_path / "badinfo"
    _write_precomputed(root, image[:1], kind="image", encoding="raw", voxel_offset0=(0, 0, 0))
    info = json.loads((root / "info").read_text())
    info["scales"][0]["resolution"] = [8, 8]
    (root / "info").write_text(json.dumps(info))
    with pytest.raises(InputError, match="inconsistent pyramid metadata.*2 values for 3 axes") as err:
        open_volume(root)
    assert str(root / "info") in _one_line(err.value)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_empty_zarr_array(tmp_path, zarr_format):
    path = tmp_path / "empty.zarr"
    zarr.create_array(str(path), shape=(0, 10, 10), chunks=(1, 5, 5), dtype="uint8", zarr_format=zarr_format)
    with pytest.raises(InputError, match="empty") as err:
        open_volume(path)
    assert str(path) in _one_line(err.value)


def test_invalid_json_metadata_is_one_line(tmp_path, image):
    root = tmp_path / "broken.ome.zarr"
    _write_ome(root, "0.4", image, None)
    (root / ".zattrs").write_text('{"multiscales": [')
    with pytest.raises(InputError, match="not valid JSON") as err:
        open_volume(root)
    assert os.fspath(root / ".zattrs") in _one_line(err.value)
