"""Bad input gives one line that names the file (or parameter) and the problem.

Every case goes through :func:`open_volume` and through the command line
(``python -m napari_connectome info``), which must exit with code 2 and print
that one line, never a traceback.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from napari_connectome.errors import ChunkReadError, InputError
from napari_connectome.volume import open_volume

HAS_CLI = (Path(__file__).resolve().parents[2] / "napari_connectome" / "__main__.py").exists()


def _h5(path: Path, **datasets) -> Path:
    with h5py.File(path, "w") as f:
        for name, data in datasets.items():
            f[name] = data
    return path


def _truncate(path: Path, keep: float | int) -> Path:
    data = path.read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else keep
    path.write_bytes(data[:n])
    return path


def _volume() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (8, 40, 50), dtype=np.uint8)


def missing(tmp: Path):
    return tmp / "nowhere" / "raw.zarr", {}, "no such file"


def unknown_dat(tmp: Path):
    path = tmp / "x.dat"
    path.write_text("these are not voxels\n" * 10)
    return path, {}, "unknown format"


def unrelated_folder(tmp: Path):
    folder = tmp / "stuff"
    folder.mkdir()
    (folder / "notes.txt").write_text("hello")
    (folder / "table.csv").write_text("a,b\n1,2\n")
    return folder, {}, "unknown format"


def empty_folder(tmp: Path):
    folder = tmp / "empty"
    folder.mkdir()
    return folder, {}, "empty"


def truncated_hdf5(tmp: Path):
    path = _truncate(_h5(tmp / "cut.h5", raw=_volume()), 0.5)
    return path, {}, "truncated"


def text_named_h5(tmp: Path):
    path = tmp / "fake.h5"
    path.write_text("not hdf5 at all")
    return path, {}, "not an HDF5 file"


def corrupt_hdf5_header(tmp: Path):
    path = _h5(tmp / "garbled.h5", raw=_volume())
    data = bytearray(path.read_bytes())
    data[8:200] = b"\xff" * 192  # keep the signature, destroy the superblock
    path.write_bytes(bytes(data))
    return path, {}, "HDF5"


def truncated_tiff_compressed(tmp: Path):
    path = tmp / "cut.tif"
    tifffile.imwrite(path, _volume(), compression="zlib")
    return _truncate(path, 0.5), {}, "truncated or corrupt"


def truncated_tiff_raw(tmp: Path):
    path = tmp / "cut_raw.tif"
    tifffile.imwrite(path, _volume())
    return _truncate(path, 0.5), {}, "truncated"


def truncated_tiff_header(tmp: Path):
    path = tmp / "stub.tif"
    tifffile.imwrite(path, _volume())
    return _truncate(path, 100), {}, "truncated or corrupt"


def text_named_tif(tmp: Path):
    path = tmp / "fake.tif"
    path.write_text("not a tiff at all")
    return path, {}, "not a TIFF file"


def rgb_tiff(tmp: Path):
    path = tmp / "colour.tif"
    tifffile.imwrite(path, np.zeros((20, 20, 3), np.uint8), photometric="rgb")
    return path, {}, "grayscale"


def empty_array(tmp: Path):
    return _h5(tmp / "empty.h5", raw=np.zeros((0, 10, 10), np.uint8)), {}, "empty"


def float_labels(tmp: Path):
    path = _h5(tmp / "prob.h5", p=np.random.default_rng(1).random((4, 8, 8), dtype=np.float32))
    return path, {"kind": "labels"}, "cannot be labels"


def zero_voxel(tmp: Path):
    return _h5(tmp / "zero.h5", raw=_volume()), {"voxel_size": (0, 4, 4)}, "voxel size must be > 0"


def negative_voxel(tmp: Path):
    return _h5(tmp / "neg.h5", raw=_volume()), {"voxel_size": (-1, 4, 4)}, "voxel size must be > 0"


def several_datasets(tmp: Path):
    path = tmp / "cremi.h5"
    with h5py.File(path, "w") as f:
        f["volumes/raw"] = _volume()
        f["volumes/labels/neuron_ids"] = _volume().astype(np.uint64)
    return path, {}, "several datasets; address one as"


def group_not_dataset(tmp: Path):
    path = tmp / "grp.h5"
    with h5py.File(path, "w") as f:
        f["volumes/raw"] = _volume()
        f["volumes/other"] = _volume()
    return f"{path}/volumes", {}, "is a group, not a dataset"


def missing_dataset(tmp: Path):
    return f"{_h5(tmp / 'one.h5', raw=_volume())}/volumes/raw", {}, "no dataset 'volumes/raw'"


def rgb_png_folder(tmp: Path):
    folder = tmp / "rgb_slices"
    folder.mkdir()
    for z in range(3):
        iio.imwrite(folder / f"s{z}.png", np.zeros((16, 16, 3), np.uint8))
    return folder, {}, "grayscale"


def odd_slice(tmp: Path):
    folder = tmp / "slices"
    folder.mkdir()
    for z in range(12):
        iio.imwrite(folder / f"s{z}.png", np.zeros((16, 16) if z != 10 else (16, 15), np.uint8))
    # The odd file is named: s10, which natural order puts after s2.
    return folder, {}, r"s10.png: slice has shape (16, 15)"


CASES = [
    missing,
    unknown_dat,
    unrelated_folder,
    empty_folder,
    truncated_hdf5,
    text_named_h5,
    corrupt_hdf5_header,
    truncated_tiff_compressed,
    truncated_tiff_raw,
    truncated_tiff_header,
    text_named_tif,
    rgb_tiff,
    empty_array,
    float_labels,
    zero_voxel,
    negative_voxel,
    several_datasets,
    group_not_dataset,
    missing_dataset,
    rgb_png_folder,
    odd_slice,
]


def _source(uri) -> str:
    """The part of the message that must name the input: the file or folder itself."""
    text = str(uri)
    return text.split(".h5/")[0] + ".h5" if ".h5/" in text else text


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_open_volume_one_line(tmp_path, case):
    uri, kwargs, problem = case(tmp_path)
    with pytest.raises(InputError) as info:
        open_volume(uri, **kwargs)
    text = str(info.value)
    assert "\n" not in text
    assert _source(uri) in text
    assert problem in text
    assert "Traceback" not in text


def _cli_args(uri, kwargs) -> list[str]:
    args = [sys.executable, "-m", "napari_connectome", "info", str(uri)]
    if "voxel_size" in kwargs:
        args += ["--voxel-size", *(str(v) for v in kwargs["voxel_size"])]
    if "kind" in kwargs:
        args += ["--kind", kwargs["kind"]]
    return args


@pytest.mark.skipif(not HAS_CLI, reason="napari_connectome/__main__.py not written yet")
@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
def test_cli_exit_2_one_line(tmp_path, case):
    uri, kwargs, problem = case(tmp_path)
    proc = subprocess.run(_cli_args(uri, kwargs), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr
    assert "\n" not in err, err
    assert _source(uri) in err
    assert problem in err


# --- damage found only when a chunk is read -----------------------------------


def _corrupt_hdf5_chunk(tmp: Path) -> tuple[Path, np.ndarray]:
    data = np.random.default_rng(2).integers(0, 2**16, (16, 64, 64), dtype=np.uint16)
    path = tmp / "chunky.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("raw", data=data, chunks=(16, 64, 64), compression="gzip")
    with h5py.File(path, "r") as f:
        info = f["raw"].id.get_chunk_info(0)
    blob = bytearray(path.read_bytes())
    start = info.byte_offset + info.size // 3
    blob[start : start + 64] = b"\x00" * 64
    path.write_bytes(bytes(blob))
    return path, data


def test_corrupt_hdf5_chunk_read_raises_one_line(tmp_path):
    path, _ = _corrupt_hdf5_chunk(tmp_path)
    volume = open_volume(path)
    with pytest.raises(ChunkReadError) as info:
        volume.level0.array[3]
    text = str(info.value)
    assert "\n" not in text
    assert str(path) in text


def test_corrupt_hdf5_chunk_fill_gives_zeros_and_notifies(tmp_path):
    path, _ = _corrupt_hdf5_chunk(tmp_path)
    seen = []
    volume = open_volume(path, on_error="fill", notify=seen.append)
    out = volume.level0.array[3, 10:20]
    assert out.shape == (10, 64) and not out.any()
    assert len(seen) == 1 and str(path) in str(seen[0])


def test_corrupt_tiff_page_read_raises_one_line(tmp_path):
    data = np.random.default_rng(3).integers(0, 255, (6, 64, 64), dtype=np.uint8)
    path = tmp_path / "pages.tif"
    tifffile.imwrite(path, data, compression="zlib")
    with tifffile.TiffFile(path) as tf:
        offset = tf.pages[2].dataoffsets[0]
        count = tf.pages[2].databytecounts[0]
    blob = bytearray(path.read_bytes())
    blob[offset + 2 : offset + count] = b"\xff" * (count - 2)
    path.write_bytes(bytes(blob))
    volume = open_volume(path)
    np.testing.assert_array_equal(volume.level0.array[1], data[1])
    with pytest.raises(ChunkReadError) as info:
        volume.level0.array[2]
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_bad_kind_and_on_error_are_named(tmp_path):
    path = _h5(tmp_path / "ok.h5", raw=_volume())
    with pytest.raises(InputError, match="kind must be"):
        open_volume(path, kind="segmentation")
    with pytest.raises(InputError, match="on_error must be"):
        open_volume(path, on_error="ignore")
