"""OME-Zarr pyramid writer and convert: downsampling, metadata, streaming, safety."""

from __future__ import annotations

import itertools
import json
import math
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from napari_connectome.errors import CancelledError, ChunkReadError, InputError
from napari_connectome.progress import NullProgress
from napari_connectome.pyramid import (
    convert,
    downsample_mean,
    downsample_mode,
    next_factors,
    plan_levels,
    write_ome_zarr,
)
from napari_connectome.synthetic import SyntheticSpec, synthetic_volumes
from napari_connectome.volume.checks import level_offset
from napari_connectome.volume.open import from_array

AXES = ("z", "y", "x")


# --- reference implementations: one window at a time -----------------------


def _windows(shape, factors):
    out_shape = tuple(math.ceil(n / f) for n, f in zip(shape, factors, strict=True))
    for out_idx in itertools.product(*(range(n) for n in out_shape)):
        window = tuple(
            slice(i * f, min((i + 1) * f, n))
            for i, f, n in zip(out_idx, factors, shape, strict=True)
        )
        yield out_idx, window


def naive_mean(data, factors):
    out = np.zeros(
        tuple(math.ceil(n / f) for n, f in zip(data.shape, factors, strict=True)), data.dtype
    )
    for idx, window in _windows(data.shape, factors):
        values = data[window].ravel()
        if data.dtype.kind == "f":
            out[idx] = values.astype(np.float64).mean()
        else:
            total = sum(int(v) for v in values)  # exact, Python ints
            out[idx] = (total + len(values) // 2) // len(values)  # floor(mean + 1/2)
    return out


def naive_mode(data, factors):
    out = np.zeros(
        tuple(math.ceil(n / f) for n, f in zip(data.shape, factors, strict=True)), data.dtype
    )
    for idx, window in _windows(data.shape, factors):
        counts = Counter(data[window].ravel().tolist())
        top = max(counts.values())
        out[idx] = min(v for v, c in counts.items() if c == top)
    return out


SHAPES = [(4, 6, 8), (5, 7, 9), (1, 3, 2), (3, 1, 5)]
FACTORS = [(2, 2, 2), (1, 2, 2), (2, 1, 2)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("factors", FACTORS)
@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint32", "int64", "uint64", "float32"])
def test_mean_matches_a_window_by_window_reference(shape, factors, dtype):
    rng = np.random.default_rng(hash((shape, factors, dtype)) % 2**32)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    if info is not None:
        data = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    else:
        data = rng.normal(100, 50, size=shape).astype(dtype)
    got = downsample_mean(data, factors)
    want = naive_mean(data, factors)
    assert got.dtype == data.dtype
    if np.dtype(dtype).kind == "f":
        np.testing.assert_allclose(got, want, rtol=1e-6)
    else:
        assert np.array_equal(got, want)


def test_mean_rounds_half_up_and_keeps_extremes():
    data = np.array([[[0, 1], [0, 0]], [[0, 0], [0, 0]]], dtype=np.uint8)  # mean 1/8 -> 0
    assert downsample_mean(data, (2, 2, 2)).item() == 0
    data = np.array([[[1, 1], [1, 1]], [[0, 0], [0, 0]]], dtype=np.uint8)  # mean 1/2 -> 1
    assert downsample_mean(data, (2, 2, 2)).item() == 1
    top = np.full((2, 2, 2), np.iinfo(np.uint64).max, dtype=np.uint64)
    assert downsample_mean(top, (2, 2, 2)).item() == np.iinfo(np.uint64).max


@pytest.mark.parametrize("shape", SHAPES + [(6, 10, 12)])
@pytest.mark.parametrize("factors", FACTORS)
@pytest.mark.parametrize("n_labels", [2, 4, 1000])
def test_mode_matches_a_window_by_window_reference(shape, factors, n_labels):
    rng = np.random.default_rng(hash((shape, factors, n_labels)) % 2**32)
    # Few labels: many ties and mixed windows; many labels: every value once.
    data = rng.integers(0, n_labels, size=shape).astype(np.uint64) * np.uint64(2**40 + 7)
    got = downsample_mode(data, factors)
    assert got.dtype == data.dtype
    assert np.array_equal(got, naive_mode(data, factors))


def test_mode_ties_go_to_the_smallest_label():
    window = np.array([[[9, 3], [3, 9]], [[5, 5], [7, 2]]], dtype=np.uint32)  # 9, 3, 5 twice each
    assert downsample_mode(window, (2, 2, 2)).item() == 3
    assert downsample_mode(np.array([[[4, 1], [1, 4]]], dtype=np.uint32), (1, 2, 2)).item() == 1
    # A clear majority wins even against smaller labels.
    assert downsample_mode(np.array([[[0, 8], [8, 8]]], dtype=np.uint32), (1, 2, 2)).item() == 8


def test_mode_never_invents_labels_and_leaves_input_untouched():
    rng = np.random.default_rng(0)
    data = rng.choice(np.array([3, 17, 2**31 + 5], dtype=np.uint32), size=(9, 11, 13))
    before = data.copy()
    out = downsample_mode(data, (2, 2, 2))
    assert np.isin(out, data).all()
    assert np.array_equal(data, before)


# --- level plan -----------------------------------------------------------------


def test_anisotropy_rule():
    assert next_factors((64, 512, 512), (40, 8, 8), AXES) == (1, 2, 2)
    assert next_factors((64, 256, 256), (40, 16, 16), AXES) == (1, 2, 2)  # 40 >= 2 * 16
    assert next_factors((64, 128, 128), (40, 32, 32), AXES) == (2, 2, 2)  # 40 < 2 * 32
    assert next_factors((64, 64, 64), (8, 8, 8), AXES) == (2, 2, 2)
    assert next_factors((1, 64, 64), (8, 8, 8), AXES) == (1, 2, 2)  # one slice stays one
    assert next_factors((3, 64, 64), (8, 8, 8), ("c", "y", "x")) == (1, 2, 2)  # channels stay
    plans = plan_levels((64, 1024, 1024), (40, 8, 8), AXES, (64, 64, 64))
    sizes = [p.voxel_size for p in plans]
    assert sizes[:4] == [(40, 8, 8), (40, 16, 16), (40, 32, 32), (80, 64, 64)]
    assert [p.shape for p in plans][:4] == [
        (64, 1024, 1024),
        (64, 512, 512),
        (64, 256, 256),
        (32, 128, 128),
    ]
    assert all(n <= 64 for n in plans[-1].shape) and any(n > 64 for n in plans[-2].shape)


def test_level_count():
    assert len(plan_levels((10, 20, 30), (8, 8, 8), AXES, (64, 64, 64))) == 1
    assert len(plan_levels((10, 20, 30), (8, 8, 8), AXES, (64, 64, 64), levels=3)) == 3
    assert len(plan_levels((200, 200, 200), (8, 8, 8), AXES, (64, 64, 64))) == 3  # 200 -> 100 -> 50
    # A thin z axis with coarse voxels cannot stall the plan.
    plans = plan_levels((1000, 4, 4), (40, 8, 8), AXES, (64, 64, 64))
    assert plans[-1].shape[0] <= 64
    with pytest.raises(InputError):
        plan_levels((10, 10, 10), (8, 8, 8), AXES, (4, 4, 4), levels=0)


# --- writing ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic():
    spec = SyntheticSpec(shape=(40, 150, 170), voxel_size=(40, 8, 8), offset=(400, -80, 16), seed=2)
    raw, gt = synthetic_volumes(spec, chunks=32)
    return spec, raw, gt, raw.level0.read(), gt.level0.read()


def _read_levels_zarr(path):
    import zarr

    group = zarr.open_group(str(path), mode="r")
    attrs = dict(group.attrs)
    meta = attrs["ome"] if "ome" in attrs else attrs
    datasets = meta["multiscales"][0]["datasets"]
    return meta, [np.asarray(group[d["path"]][...]) for d in datasets]


@pytest.mark.parametrize("ngff", ["0.4", "0.5"])
@pytest.mark.parametrize("which", ["raw", "gt"])
def test_written_pyramid_reads_back(tmp_path, synthetic, ngff, which):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Multiscales, Reader

    spec, raw, gt, raw0, gt0 = synthetic
    volume, data = (raw, raw0) if which == "raw" else (gt, gt0)
    dst = write_ome_zarr(tmp_path / f"{which}.ome.zarr", volume, chunks=32, ngff=ngff)
    assert dst == tmp_path / f"{which}.ome.zarr"
    if ngff == "0.4":
        assert (dst / ".zattrs").exists() and json.loads((dst / "0" / ".zarray").read_text())[
            "compressor"
        ]["cname"] == "zstd"
    else:
        codecs = json.loads((dst / "0" / "zarr.json").read_text())["codecs"]
        assert any(c["name"] == "zstd" for c in codecs)

    meta, levels = _read_levels_zarr(dst)
    ms = meta["multiscales"][0]
    assert [a["unit"] for a in ms["axes"]] == ["nanometer"] * 3
    assert {a["type"] for a in ms["axes"]} == {"space"}
    assert ("image-label" in meta) == (which == "gt")
    assert np.array_equal(levels[0], data)
    vs0 = spec.voxel_size
    for ds, level in zip(ms["datasets"], levels, strict=True):
        scale, translation = (t[t["type"]] for t in ds["coordinateTransformations"])
        assert translation == pytest.approx(level_offset(spec.offset, vs0, scale))
        # Every level covers level 0's extent (within one of its voxels).
        for n0, v0, n, v in zip(data.shape, vs0, level.shape, scale, strict=True):
            assert abs(n * v - n0 * v0) < v
    scales = [
        tuple(t["scale"] for t in ds["coordinateTransformations"] if t["type"] == "scale")[0]
        for ds in ms["datasets"]
    ]
    assert scales[:3] == [[40, 8, 8], [40, 16, 16], [40, 32, 32]]
    assert scales[3] == [80, 64, 64]
    assert all(n <= 32 for n in levels[-1].shape)

    nodes = list(Reader(parse_url(str(dst)))())
    node = nodes[0]
    assert isinstance(node.first(Multiscales), Multiscales)
    assert (node.first(Label) is not None) == (which == "gt")
    assert np.array_equal(np.asarray(node.data[0]), data)
    assert node.metadata["coordinateTransformations"][2][0]["scale"] == [40, 32, 32]


def test_levels_equal_whole_array_downsampling(tmp_path, synthetic):
    """Block by block equals all at once: blocks straddle nothing."""
    _, raw, gt, raw0, gt0 = synthetic
    for volume, data, reduce in ((raw, raw0, downsample_mean), (gt, gt0, downsample_mode)):
        dst = write_ome_zarr(tmp_path / f"{volume.name}.zarr", volume, chunks=16, block=16)
        _, levels = _read_levels_zarr(dst)
        plans = plan_levels(data.shape, volume.voxel_size, AXES, (16, 16, 16))
        expect = data
        for plan, level in zip(plans[1:], levels[1:], strict=True):
            expect = reduce(expect, plan.factors)
            assert np.array_equal(level, expect)


def test_label_levels_only_hold_source_labels(tmp_path, synthetic):
    _, _, gt, _, gt0 = synthetic
    dst = write_ome_zarr(tmp_path / "gt.zarr", gt, chunks=16)
    _, levels = _read_levels_zarr(dst)
    assert len(levels) >= 4
    present = np.unique(gt0)
    for level in levels:
        assert np.isin(level, present).all()
    assert len(np.unique(levels[1])) > 1


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("ngff", ["0.4", "0.5"])
def test_same_bytes_whatever_the_block_size(tmp_path, synthetic, ngff):
    _, raw, gt, _, _ = synthetic
    for volume in (raw, gt):
        opts = {"chunks": 16, "ngff": ngff, "name": volume.name}
        a = write_ome_zarr(tmp_path / f"a_{volume.name}", volume, block=16, **opts)
        b = write_ome_zarr(
            tmp_path / f"b_{volume.name}", volume, block=(48, 80, 32), workers=1, **opts
        )
        c = write_ome_zarr(tmp_path / f"c_{volume.name}", volume, **opts)
        ta, tb, tc = _tree_bytes(a), _tree_bytes(b), _tree_bytes(c)
        assert len(ta) > 20
        assert ta == tb == tc


def test_numpy_source_and_options(tmp_path):
    data = np.arange(2 * 30 * 40, dtype=np.uint16).reshape(2, 30, 40)
    dst = write_ome_zarr(
        tmp_path / "arr.ome.zarr",
        data,
        voxel_size=(50, 4, 4),
        offset=(10, 20, 30),
        chunks=(1, 16, 16),
    )
    meta, levels = _read_levels_zarr(dst)
    ms = meta["multiscales"][0]
    assert ms["name"] == "arr" and ms["type"] == "mean"
    first = ms["datasets"][0]["coordinateTransformations"]
    assert first[0]["scale"] == [50, 4, 4] and first[1]["translation"] == [10, 20, 30]
    assert np.array_equal(levels[0], data)
    assert levels[1].shape == (2, 15, 20)  # z (50 nm >= 2 × 4 nm) kept
    assert "image-label" not in meta


def test_progress_counts_every_block(tmp_path, synthetic):
    _, raw, _, _, _ = synthetic
    progress = NullProgress()
    write_ome_zarr(tmp_path / "p.zarr", raw, chunks=32, block=32, progress=progress)
    assert progress.total > 10 and progress.done == progress.total


class _CancelAfter(NullProgress):
    def __init__(self, steps):
        super().__init__()
        self.steps = steps

    def advance(self, steps=1):
        if self.done >= self.steps:
            self.cancelled = True
        super().advance(steps)


@pytest.mark.parametrize("workers", [1, 2])
def test_cancel_propagates_and_leaves_nothing(tmp_path, synthetic, workers):
    _, raw, _, _, _ = synthetic
    with pytest.raises(CancelledError):
        write_ome_zarr(
            tmp_path / "c.zarr", raw, chunks=16, block=16, progress=_CancelAfter(3), workers=workers
        )
    assert not (tmp_path / "c.zarr").exists()


def test_never_overwrites_without_being_asked(tmp_path, synthetic):
    _, raw, gt, _, _ = synthetic
    dst = write_ome_zarr(tmp_path / "x.ome.zarr", raw, chunks=32)
    before = _tree_bytes(dst)
    with pytest.raises(InputError) as info:
        write_ome_zarr(dst, gt, chunks=32)
    assert (
        "exists" in str(info.value) and str(dst) in str(info.value) and "\n" not in str(info.value)
    )
    assert _tree_bytes(dst) == before
    write_ome_zarr(dst, gt, chunks=32, overwrite=True)
    assert "image-label" in json.loads((dst / ".zattrs").read_text())
    # A folder that is not a zarr is never replaced, even when asked.
    other = tmp_path / "notes"
    other.mkdir()
    (other / "thesis.txt").write_text("precious")
    with pytest.raises(InputError):
        write_ome_zarr(other, raw, overwrite=True)
    assert (other / "thesis.txt").read_text() == "precious"
    (tmp_path / "file.zarr").write_text("x")
    with pytest.raises(InputError):
        write_ome_zarr(tmp_path / "file.zarr", raw, overwrite=True)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ngff": "0.6"},
        {"chunks": 0},
        {"chunks": (8, 8)},
        {"levels": 0},
        {"kind": "mesh"},
        {"voxel_size": (0, 8, 8)},
        {"offset": (0, float("nan"), 0)},
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, kwargs):
    with pytest.raises(InputError) as info:
        write_ome_zarr(tmp_path / "o.zarr", np.zeros((4, 4, 4), np.uint8), **kwargs)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "o.zarr").exists()


def test_remote_destinations_are_refused():
    with pytest.raises(InputError):
        write_ome_zarr("gs://bucket/volume.ome.zarr", np.zeros((4, 4, 4), np.uint8))


def test_float_labels_are_refused(tmp_path):
    with pytest.raises(InputError):
        write_ome_zarr(tmp_path / "f.zarr", np.zeros((4, 4, 4), np.float32), kind="labels")


# --- convert ----------------------------------------------------------------------


def test_convert_hdf5_to_ome_zarr(tmp_path, synthetic):
    import h5py

    _, _, _, raw0, gt0 = synthetic
    src = tmp_path / "vol.h5"
    with h5py.File(src, "w") as f:
        f.create_dataset("raw", data=raw0, chunks=(8, 32, 32))
        f.create_dataset("seg", data=gt0, chunks=(8, 32, 32))
    out = convert(f"{src}/raw", tmp_path / "raw.ome.zarr", voxel_size=(40, 8, 8), chunks=32)
    meta, levels = _read_levels_zarr(out)
    assert np.array_equal(levels[0], raw0)
    assert meta["multiscales"][0]["datasets"][1]["coordinateTransformations"][0]["scale"] == [
        40,
        16,
        16,
    ]
    out = convert(
        f"{src}/seg", tmp_path / "seg.ome.zarr", voxel_size=(40, 8, 8), chunks=32, ngff="0.5"
    )
    meta, levels = _read_levels_zarr(out)
    assert "image-label" in meta and np.array_equal(levels[0], gt0)
    with pytest.raises(InputError):
        convert(f"{src}/raw", out)  # exists
    with pytest.raises(InputError):
        convert(tmp_path / "missing.h5/raw", tmp_path / "never.zarr")
    assert not (tmp_path / "never.zarr").exists()


def _plain_zarr(path: Path, data: np.ndarray, chunks) -> None:
    import zarr

    arr = zarr.create_array(
        str(path), shape=data.shape, chunks=chunks, dtype=data.dtype, zarr_format=2, fill_value=0
    )
    arr[...] = data


def test_convert_zarr_source_and_refuse_to_write_into_it(tmp_path, synthetic):
    pytest.importorskip("napari_connectome.volume.formats.zarr_array")
    _, _, _, raw0, _ = synthetic
    src = tmp_path / "plain.zarr"
    _plain_zarr(src, raw0, (16, 64, 64))
    out = convert(src, tmp_path / "out.ome.zarr", voxel_size=(40, 8, 8), chunks=32)
    _, levels = _read_levels_zarr(out)
    assert np.array_equal(levels[0], raw0)
    with pytest.raises(InputError):
        convert(src, src / "inside.ome.zarr")
    with pytest.raises(InputError):
        convert(src, src, overwrite=True)
    assert (src / ".zarray").exists()


def test_convert_corrupt_chunk_is_one_line_and_leaves_nothing(tmp_path, synthetic):
    pytest.importorskip("napari_connectome.volume.formats.zarr_array")
    _, _, _, raw0, _ = synthetic
    src = tmp_path / "bad.zarr"
    _plain_zarr(src, raw0, (16, 64, 64))
    chunk = next(p for p in src.rglob("*") if p.is_file() and not p.name.startswith("."))
    chunk.write_bytes(b"not a blosc chunk at all")
    with pytest.raises(ChunkReadError) as info:
        convert(src, tmp_path / "out.ome.zarr", voxel_size=(40, 8, 8))
    assert "\n" not in str(info.value) and "bad.zarr" in str(info.value)
    assert not (tmp_path / "out.ome.zarr").exists()


@pytest.mark.parametrize("ngff", ["0.4", "0.5"])
def test_open_volume_reads_the_pyramid_back(tmp_path, synthetic, ngff):
    pytest.importorskip("napari_connectome.volume.formats.ome_zarr")
    from napari_connectome import open_volume

    spec, raw, gt, raw0, gt0 = synthetic
    for volume, data, kind in ((raw, raw0, "image"), (gt, gt0, "labels")):
        dst = write_ome_zarr(tmp_path / f"{kind}.ome.zarr", volume, chunks=32, ngff=ngff)
        back = open_volume(dst)
        assert back.kind == kind
        assert not back.voxel_size_assumed
        plans = plan_levels(spec.shape, spec.voxel_size, AXES, (32, 32, 32))
        assert len(back.levels) == len(plans)
        for level, plan in zip(back.levels, plans, strict=True):
            assert level.shape == plan.shape
            assert level.voxel_size == pytest.approx(plan.voxel_size)
            assert level.offset == pytest.approx(
                level_offset(spec.offset, spec.voxel_size, plan.voxel_size)
            )
        assert np.array_equal(back.level0.read(), data)


def test_small_array_from_a_volume_keeps_its_world_position(tmp_path):
    volume = from_array(np.ones((3, 5, 7), np.uint8), voxel_size=(2, 3, 4), offset=(1, 2, 3))
    dst = write_ome_zarr(tmp_path / "s.zarr", volume)
    meta, levels = _read_levels_zarr(dst)
    assert len(levels) == 1
    t = meta["multiscales"][0]["datasets"][0]["coordinateTransformations"]
    assert t == [
        {"type": "scale", "scale": [2, 3, 4]},
        {"type": "translation", "translation": [1, 2, 3]},
    ]
    assert not any(name.endswith(".partial") for name in os.listdir(dst))
