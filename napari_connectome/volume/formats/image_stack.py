"""A folder of 2-D slices (PNG or TIFF), one per z, in natural order of file names.

``slice2.png`` comes before ``slice10.png``. Every slice must be a grayscale
image of the same shape and dtype; the folder is checked when it is opened
(from the file headers only), and each slice is read when first indexed, one
slice per chunk. Slices store no z spacing, so the voxel size is assumed (and
the volume says so) unless the caller gives one.
"""

from __future__ import annotations

import builtins
import os
import re
import struct

import numpy as np

from napari_connectome.errors import ChunkReadError, InputError
from napari_connectome.volume.checks import assumed_note, assumed_voxel_size, infer_kind
from napari_connectome.volume.lazy import ChunkedArray
from napari_connectome.volume.location import Location
from napari_connectome.volume.model import Level, MultiscaleVolume

PNG_SUFFIXES = (".png",)
TIFF_SUFFIXES = (".tif", ".tiff")
# Files whose presence marks a folder as a chunked container (zarr v2/v3, N5,
# Neuroglancer precomputed): those backends own it, even when it holds PNGs.
CONTAINER_MARKERS = (".zarray", ".zattrs", ".zgroup", "zarr.json", "attributes.json", "info")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour types: 0 gray, 2 RGB, 3 palette, 4 gray + alpha, 6 RGBA.
PNG_GRAY = 0


def natural_key(name: str) -> list:
    """Sort key that orders digit runs by value: ``slice2`` < ``slice10``."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in re.split(r"(\d+)", name) if part]


def _slices(folder: str) -> list[str]:
    """Every entry named like a slice (hidden ones aside), in natural order — files or not.

    An entry named like a slice that is not a regular file (a folder, a link
    loop, a named pipe) is kept here and refused when the stack opens: left
    out, it would silently shift every later slice by one section.
    """
    names = [
        n
        for n in os.listdir(folder)
        if not n.startswith(".") and n.lower().endswith(PNG_SUFFIXES + TIFF_SUFFIXES)
    ]
    return sorted(names, key=natural_key)


def _check_regular(path: str) -> None:
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise InputError(path, f"a slice of the stack cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(mode):
        raise InputError(path, "is named like a slice but is not a file (a folder, link or pipe); "
                               "the stack would lose a section — move it out of the folder")


def sniff(location: Location) -> bool:
    """A local folder holding PNG or TIFF files, and no zarr/N5/precomputed metadata."""
    if not location.is_local or not os.path.isdir(location.path):
        return False
    entries = set(os.listdir(location.path))
    if entries.intersection(CONTAINER_MARKERS):
        return False
    return bool(_slices(location.path))


def _png_header(path: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, colour type) from a PNG's IHDR chunk, without decoding pixels."""
    with builtins.open(path, "rb") as fh:
        head = fh.read(26)
    if len(head) < 26 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise InputError(path, "not a PNG file (bad or missing header)")
    width, height = struct.unpack(">II", head[16:24])
    bit_depth, colour = head[24], head[25]
    dtype = np.dtype(np.uint16 if bit_depth == 16 else np.uint8)
    return (int(height), int(width)), dtype, colour


def _tiff_header(path: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, samples per pixel) of a single-image TIFF, without decoding pixels."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            series = tf.series[0]
            shape = tuple(int(s) for s in series.shape)
            dtype = np.dtype(series.dtype).newbyteorder("=")
            samples = int(series.keyframe.samplesperpixel)
    except InputError:
        raise
    except Exception as exc:  # tifffile raises several kinds on damaged files
        text = " ".join(str(exc).split())[:200]
        raise InputError(path, f"cannot be read as TIFF (truncated or corrupt?): {text}") from None
    return shape, dtype, samples


def _header(path: str):
    """(shape, dtype) of one slice; InputError if it is not a grayscale 2-D image."""
    if path.lower().endswith(PNG_SUFFIXES):
        shape, dtype, colour = _png_header(path)
        if colour != PNG_GRAY:
            kind = {2: "an RGB", 3: "a palette (indexed colour)", 4: "a gray + alpha", 6: "an RGBA"}.get(
                colour, f"a colour type {colour}"
            )
            raise InputError(path, f"is {kind} PNG; slices must be grayscale, one value per pixel")
        return shape, dtype
    shape, dtype, samples = _tiff_header(path)
    if samples > 1:
        raise InputError(path, f"has {samples} samples per pixel (RGB?); slices must be grayscale, one value per pixel")
    if len(shape) != 2:
        raise InputError(path, f"holds an image of shape {shape}; each slice must be one 2-D image")
    return shape, dtype


def _read(path: str) -> np.ndarray:
    if path.lower().endswith(PNG_SUFFIXES):
        import imageio.v3 as iio

        return np.asarray(iio.imread(path))
    import tifffile

    return np.asarray(tifffile.imread(path))


def open(location: Location, *, on_error: str = "raise", notify=None) -> MultiscaleVolume:  # noqa: A001
    """Open a folder of slices lazily, one slice per chunk.

    Parameters
    ----------
    location
        A local folder of PNG or TIFF files.
    on_error, notify
        What reading a bad slice does later (see :func:`open_volume`).

    Returns
    -------
    MultiscaleVolume
        One level, axes ``(z, y, x)``, voxel size assumed.

    Raises
    ------
    InputError
        No slices, PNG and TIFF mixed, a colour slice, or a slice whose shape
        or dtype differs from the first one (the message names that file).
    """
    folder = location.path
    if not os.path.isdir(folder):
        raise InputError(folder, "not a folder of image slices")
    names = _slices(folder)
    if not names:
        raise InputError(folder, "the folder holds no PNG or TIFF slices")
    kinds = {n.lower().endswith(PNG_SUFFIXES) for n in names}
    if len(kinds) > 1:
        raise InputError(folder, "mixes PNG and TIFF slices; keep one kind of file per folder")
    paths = [os.path.join(folder, n) for n in names]
    for path in paths:
        _check_regular(path)
    shape0, dtype0 = _header(paths[0])
    for path in paths[1:]:
        shape, dtype = _header(path)
        if shape != shape0 or dtype != dtype0:
            raise InputError(
                path,
                f"slice has shape {shape} and dtype {dtype}, but {names[0]} has shape {shape0} "
                f"and dtype {dtype0}; every slice must match",
            )

    def read_slice(index: tuple[int, int, int]) -> np.ndarray:
        path = paths[index[0]]
        try:
            plane = _read(path)
        except Exception as exc:  # imageio/tifffile raise many kinds on damaged files
            text = " ".join(str(exc).split())[:200]
            raise ChunkReadError(path, f"the slice could not be read (truncated or corrupt?): {text}") from None
        if plane.shape != shape0:
            raise ChunkReadError(path, f"slice has shape {plane.shape}, expected {shape0}")
        return plane.reshape((1,) + shape0)

    shape = (len(paths),) + shape0
    axes = ("z", "y", "x")
    array = ChunkedArray(
        read_slice,
        shape=shape,
        dtype=dtype0,
        chunks=(1,) + shape0,
        source=folder,
        on_error=on_error,
        notify=notify,
    )
    voxel_size = assumed_voxel_size(3, axes)
    name = os.path.basename(os.path.normpath(folder))
    return MultiscaleVolume(
        levels=[Level(array, voxel_size, (0.0, 0.0, 0.0), axes)],
        kind=infer_kind(dtype0, name),
        source=location.uri,
        format="image-stack",
        name=name,
        voxel_size_assumed=True,
        notes=[assumed_note(voxel_size)],
    )
