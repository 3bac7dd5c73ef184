"""The reader hook: cheap refusals, every format, projects, errors as one line."""

from __future__ import annotations

import os

import numpy as np
import pytest
from napari_connectome_plugins import _reader
from napari_connectome_plugins._layers import META_KEY, contrast_limits
from napari_connectome_plugins._reader import NO_LAYERS, get_reader, read, read_layers
from plugin_volumes import SHAPE, WRITERS, image_data, write_tiff, write_zarr


def _meta(layer_tuple) -> dict:
    return layer_tuple[1]["metadata"][META_KEY]


# -- refusals -------------------------------------------------------------------


def test_get_reader_refuses_a_text_file_in_one_line(tmp_path, messages):
    # Nobody else reads a .txt: napari picked us for our "*" pattern, so we say why, in one
    # line, instead of handing napari a None that it turns into a stack trace.
    path = tmp_path / "notes.txt"
    path.write_text("not a volume\n")
    reader = get_reader(str(path))
    assert reader is not None and reader(str(path)) == [(None,)]
    assert [s for s, _ in messages] == ["error"] and "notes.txt" in messages[0][1]


def test_get_reader_refuses_an_unknown_folder(tmp_path):
    folder = tmp_path / "stuff"
    folder.mkdir()
    (folder / "readme.md").write_text("# nothing here\n")
    assert get_reader(str(folder)) is None


def test_get_reader_refuses_empty_and_missing_paths(tmp_path, messages):
    (tmp_path / "empty").mkdir()
    assert get_reader(str(tmp_path / "empty")) is None  # folders: napari's own reader may take them
    assert get_reader([]) is None
    # napari's own reader also claims *.zarr and *.h5: a missing one is left to napari.
    assert get_reader(str(tmp_path / "missing.zarr")) is None
    assert get_reader([str(tmp_path / "missing.h5")]) is None
    for missing in (str(tmp_path / "missing.vol"), [str(tmp_path / "missing.qqq")]):
        reader = get_reader(missing)
        assert reader is not None and reader(missing) == [(None,)]
    assert [s for s, _ in messages] == ["error", "error"]
    assert "missing.vol" in messages[0][1] and "missing.qqq" in messages[1][1]


def test_get_reader_is_cheap(tmp_path, monkeypatch):
    """get_reader sniffs: no backend's open() runs, no voxel is read."""
    path = WRITERS["zarr"](tmp_path)
    import napari_connectome.volume.open as vopen

    def forbidden(*args, **kwargs):
        raise AssertionError("get_reader opened the volume")

    monkeypatch.setattr(vopen, "open_volume", forbidden)
    monkeypatch.setattr(vopen, "finish_volume", forbidden)
    assert callable(get_reader(path))


# -- every format -----------------------------------------------------------------


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_every_format_reads_as_a_layer(tmp_path, fmt, messages):
    path = WRITERS[fmt](tmp_path)
    reader = get_reader(path)
    assert callable(reader)
    layers = reader(path)
    assert len(layers) == 1
    data, kwargs, layer_type = layers[0]
    assert layer_type == "image"
    level0 = data[0] if kwargs.get("multiscale") else data
    assert tuple(level0.shape) == SHAPE
    np.testing.assert_array_equal(np.asarray(level0[1:3, 5:9, 7:20]), image_data()[1:3, 5:9, 7:20])
    meta = _meta(layers[0])
    assert meta["format"] == fmt
    assert meta["shape"] == list(SHAPE)
    assert meta["dtype"] == "uint8"
    assert kwargs["contrast_limits"] == (0.0, 255.0)
    assert len(kwargs["scale"]) == 3 and len(kwargs["translate"]) == 3
    if fmt == "ome-zarr":  # two levels, voxel size from the metadata
        assert kwargs["multiscale"] is True and len(data) == 2
        assert kwargs["scale"] == (10.0, 4.0, 4.0)
        assert not meta["voxel_size_assumed"]
    if fmt == "hdf5":
        assert kwargs["scale"] == (10.0, 10.0, 10.0)


def test_assumed_voxel_size_is_told_once(tmp_path, messages):
    path = write_tiff(tmp_path / "plain.tif", image_data())
    layers = read(path)
    assert _meta(layers[0])["voxel_size_assumed"] is True
    warnings = [text for severity, text in messages if severity == "warning"]
    assert len(warnings) == 1
    assert "assumed" in warnings[0] and "plain.tif" in warnings[0]
    assert "\n" not in warnings[0]


def test_labels_and_uint16_images(tmp_path, messages):
    import tifffile

    labels = (np.indices(SHAPE).sum(axis=0) // 7 + 1).astype(np.uint32)
    tifffile.imwrite(tmp_path / "seg.tif", labels)
    (data, kwargs, layer_type), = read_layers(tmp_path / "seg.tif")
    assert layer_type == "labels"
    assert "contrast_limits" not in kwargs

    img = (image_data().astype(np.uint16) * 200 + 1000).astype(np.uint16)
    path = write_zarr(tmp_path / "em16.zarr", img)
    (data, kwargs, layer_type), = read_layers(path, kind="image")
    assert layer_type == "image"
    lo, hi = kwargs["contrast_limits"]
    assert img.min() <= lo < hi <= img.max()


def test_contrast_limits_read_only_the_coarsest_level():
    from napari_connectome.volume import Level, MultiscaleVolume, NumpyArray

    reads = []

    class Counting(NumpyArray):
        def __getitem__(self, key):
            reads.append(self.source)
            return super().__getitem__(key)

    big = np.random.default_rng(0).normal(100, 10, (64, 64, 64)).astype(np.float32)
    small = big[::4, ::4, ::4]
    levels = [
        Level(Counting(big, source="level0"), (1.0, 1.0, 1.0), (0.0,) * 3, ("z", "y", "x")),
        Level(Counting(small, source="level2"), (4.0, 4.0, 4.0), (1.5,) * 3, ("z", "y", "x")),
    ]
    volume = MultiscaleVolume(levels=levels, kind="image", source="mem", format="memory", name="m")
    lo, hi = contrast_limits(volume)
    assert reads == ["level2"]
    assert 50 < lo < 100 < hi < 150


# -- samples and projects -----------------------------------------------------------


def test_gala_file_opens_as_its_four_volumes(gala_path, messages):
    layers = read(str(gala_path))
    names = [k["name"] for _, k, _ in layers]
    assert [n.rsplit("/", 1)[-1] for n in names] == ["raw", "supervoxels", "boundaries", "groundtruth"]
    types = [t for _, _, t in layers]
    assert types == ["image", "labels", "image", "labels"]
    for _, kwargs, _ in layers:
        assert kwargs["scale"] == (10.0, 10.0, 10.0)
        assert kwargs["translate"] == (0.0, 0.0, 0.0)
    visible = {k["name"].rsplit("/", 1)[-1]: k["visible"] for _, k, _ in layers}
    assert visible == {"raw": True, "supervoxels": True, "boundaries": False, "groundtruth": False}
    assert not [m for m in messages if m[0] in ("error", "warning")]


def test_gala_dataset_opens_alone(gala_path, messages):
    reader = get_reader(f"{gala_path}/supervoxels")
    (data, kwargs, layer_type), = reader(f"{gala_path}/supervoxels")
    assert layer_type == "labels"
    assert data.shape == (50, 100, 200)
    assert kwargs["scale"] == (10.0, 10.0, 10.0)


def test_project_folder_opens_as_its_inputs(gala_project, messages):
    root = str(gala_project.root)
    reader = get_reader(root)
    assert callable(reader)
    layers = reader(root)
    assert [k["name"] for _, k, _ in layers] == ["raw", "supervoxels", "boundaries", "groundtruth"]
    assert [t for _, _, t in layers] == ["image", "labels", "image", "labels"]
    assert [k["visible"] for _, k, _ in layers] == [True, True, False, False]
    for layer in layers:
        meta = _meta(layer)
        assert meta["project"] == os.path.abspath(root)
        assert meta["role"] == layer[1]["name"]
        assert layer[1]["scale"] == (10.0, 10.0, 10.0)
    assert not [m for m in messages if m[0] == "error"]


# -- errors -------------------------------------------------------------------------------


def test_missing_file_at_read_time_is_one_error_line(tmp_path, messages):
    """The file vanished between get_reader and read: one line, napari's "no layers" value."""
    path = WRITERS["tiff"](tmp_path)
    reader = get_reader(path)
    os.remove(path)
    assert reader(path) == NO_LAYERS
    errors = [text for severity, text in messages if severity == "error"]
    assert len(errors) == 1
    assert "vol.tif" in errors[0] and "\n" not in errors[0]


def test_project_with_a_missing_input_opens_the_rest(tmp_path, gala_path, messages):
    import shutil

    from napari_connectome.project import create_project

    copy = tmp_path / "copy.h5"
    shutil.copy(gala_path, copy)
    extra = tmp_path / "extra.h5"
    shutil.copy(gala_path, extra)
    project = create_project(
        tmp_path / "proj", raw=f"{copy}/raw", supervoxels=f"{extra}/supervoxels"
    )
    os.remove(extra)
    layers = read(str(project.root))
    assert [k["name"] for _, k, _ in layers] == ["raw"]
    errors = [text for severity, text in messages if severity == "error"]
    assert len(errors) == 1 and "extra.h5" in errors[0] and "\n" not in errors[0]


def test_broken_project_manifest_is_one_error_line(gala_project, messages):
    (gala_project.root / "napari-connectome.json").write_text("{ not json")
    assert read(str(gala_project.root)) == NO_LAYERS
    errors = [text for severity, text in messages if severity == "error"]
    assert len(errors) == 1 and "napari-connectome.json" in errors[0] and "\n" not in errors[0]


def test_unexpected_exception_is_still_one_line(tmp_path, messages, monkeypatch):
    path = WRITERS["tiff"](tmp_path)

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(_reader, "_volume_layers", boom)
    assert read(path) == NO_LAYERS
    (severity, text), = messages
    assert severity == "error" and "disk on fire second line" in text and "\n" not in text


def _corrupt_zarr(tmp_path):
    """A zarr volume with two corrupt chunks (garbage where zstd data should be)."""
    path = write_zarr(tmp_path / "bad.zarr", image_data())
    chunk_dir = os.path.join(path, "c", "0", "0")
    chunk_files = sorted(os.listdir(chunk_dir))
    for name in chunk_files[:2]:
        with open(os.path.join(chunk_dir, name), "wb") as f:
            f.write(b"\x00garbage, not a zstd frame" * 3)
    return path


def test_corrupt_chunks_read_as_zeros_with_one_warning(tmp_path, messages):
    path = _corrupt_zarr(tmp_path)
    (data, kwargs, layer_type), = read(path)
    assert not [m for m in messages if "could not be read" in m[1]]  # opening reads no chunk
    first = np.asarray(data[0:4, 0:16, 0:16])  # the first corrupt chunk
    assert first.shape == (4, 16, 16) and not first.any()
    second = np.asarray(data[0:4, 0:16, 16:32])  # the second one: no second warning
    assert second.shape == (4, 16, 16) and not second.any()
    good = np.asarray(data[0:4, 0:16, 32:48])
    np.testing.assert_array_equal(good, image_data()[0:4, 0:16, 32:48])
    warnings = [text for severity, text in messages if severity == "warning"]
    chunk_warnings = [w for w in warnings if "could not be read" in w]
    assert len(chunk_warnings) == 1
    assert "bad.zarr" in chunk_warnings[0] and "\n" not in chunk_warnings[0]


def test_missing_chunks_are_one_warning(tmp_path, messages):
    from plugin_volumes import labels_data

    path = write_zarr(tmp_path / "seg.zarr", labels_data())
    for key in (("c", "0", "0", "0"), ("c", "1", "1", "2")):
        os.remove(os.path.join(path, *key))
    (data, kwargs, layer_type), = read(path)
    assert layer_type == "labels"
    missing = [(s, t) for s, t in messages if "chunks are missing" in t]
    assert len(missing) == 1
    severity, text = missing[0]
    assert severity == "warning" and "\n" not in text
    assert text.startswith(f"{path}: 2 of 12 chunks are missing and read as 0 (background)")
    assert "napari-connectome check" in text


def test_layers_read_only_the_chunks_of_the_plane_napari_shows(monkeypatch):
    # napari 0.9 asks a multiscale level for level[:, y0:y1, x0:x1] and picks the plane later;
    # our arrays must not read the whole level for it (4.8× napari's z-step before).
    from napari_connectome_plugins._layers import layer_data

    from napari_connectome.volume import from_array

    volume = from_array(np.zeros((64, 32, 32), np.uint8))
    volume.arrays[0].chunks = (8, 16, 16)
    data, _kwargs, _kind = layer_data(volume)
    level = data[0] if isinstance(data, list) else data
    source = volume.arrays[0]
    seen = []
    original = type(source).__getitem__
    monkeypatch.setattr(type(source), "__getitem__", lambda self, key: seen.append(key) or original(self, key))
    plane = np.asarray(level[:, 0:32, 0:32][20])
    assert plane.shape == (32, 32)
    assert len(seen) == 4  # the 2 × 2 chunks of one 8-plane slab, not all 8 slabs
