"""TIFF backend (tifffile): multi-page, ImageJ and OME-TIFF files.

Pages are the planes of the volume: a multi-page file is ``(z, y, x)``, a
single page ``(y, x)``; ImageJ hyperstacks and OME-TIFFs may add one channel
or time axis in front. One page is one chunk, read when first indexed; an
uncompressed, contiguous file is memory-mapped instead and read in tiles. An
OME-TIFF pyramid (sub-resolution series) becomes the volume's levels.

Voxel size, first found wins: OME-XML ``PhysicalSizeX/Y/Z`` with their units;
ImageJ's ``spacing`` and ``unit`` with the XResolution/YResolution tags; the
XResolution/YResolution tags with ResolutionUnit (inch, cm, mm, µm). Files
without any get the assumed voxel size, and the volume says so.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import os
import re
import threading
import xml.etree.ElementTree as ET

import numpy as np

from napari_connectome.errors import ChunkReadError, InputError
from napari_connectome.volume.checks import (
    assumed_note,
    assumed_voxel_size,
    infer_kind,
    level_offset,
)
from napari_connectome.volume.lazy import ChunkedArray
from napari_connectome.volume.location import Location
from napari_connectome.volume.model import Level, MultiscaleVolume

SUFFIXES = (".tif", ".tiff", ".btf", ".tf8")
MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# Memory-mapped files are read in tiles of this many pixels in y and x, so a
# huge single plane is not one chunk.
MEMMAP_TILE = 1024

_NM_PER_UNIT = {
    "pm": 1e-3,
    "picometer": 1e-3,
    "å": 0.1,
    "angstrom": 0.1,
    "ångström": 0.1,
    "nm": 1.0,
    "nanometer": 1.0,
    "nanometre": 1.0,
    "um": 1e3,
    "µm": 1e3,
    "μm": 1e3,
    "\\u00b5m": 1e3,
    "micron": 1e3,
    "micrometer": 1e3,
    "micrometre": 1e3,
    "mm": 1e6,
    "millimeter": 1e6,
    "millimetre": 1e6,
    "cm": 1e7,
    "centimeter": 1e7,
    "centimetre": 1e7,
    "m": 1e9,
    "meter": 1e9,
    "metre": 1e9,
    "in": 2.54e7,
    "inch": 2.54e7,
}
# TIFF ResolutionUnit codes (2, 3 standard; 4, 5 written by tifffile and others).
_NM_PER_RESUNIT = {2: 2.54e7, 3: 1e7, 4: 1e6, 5: 1e3}
# Pixels per inch that image software writes when it knows nothing (screen
# resolutions); taken at face value they would claim 0.35 mm pixels.
_PLACEHOLDER_DPI = (1.0, 72.0, 96.0)

_LOG_LOCK = threading.Lock()


def unit_to_nm(unit: str | None) -> float | None:
    """Nanometres in one ``unit`` (``"µm"``, ``"micron"``, ``"nm"``, ``"inch"``...); None if unknown."""
    if unit is None:
        return None
    key = str(unit).strip().lower()
    if key.endswith("s") and key[:-1] in _NM_PER_UNIT and len(key) > 3:
        key = key[:-1]
    return _NM_PER_UNIT.get(key)


def sniff(location: Location) -> bool:
    """A local file named ``*.tif`` / ``*.tiff`` (``.ome.tif`` too) or starting with TIFF magic."""
    if not location.is_local or location.inner or not os.path.isfile(location.path):
        return False
    if location.path.lower().endswith(SUFFIXES):
        return True
    with builtins.open(location.path, "rb") as fh:
        return fh.read(4) in MAGICS


class _LogRecords(logging.Handler):
    """Collects what tifffile logs while a file is parsed (it logs, not raises, on damage)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def _tifffile_log():
    logger = logging.getLogger("tifffile")
    handler = _LogRecords()
    with _LOG_LOCK:
        propagate = logger.propagate
        logger.addHandler(handler)
        # Its messages become our one-line errors and notes, not stderr noise.
        logger.propagate = False
    try:
        yield handler.records
    finally:
        with _LOG_LOCK:
            logger.removeHandler(handler)
            logger.propagate = propagate


def _damage(records: list[logging.LogRecord]) -> str | None:
    for record in records:
        text = record.getMessage()
        if record.levelno >= logging.ERROR and any(
            w in text.lower() for w in ("invalid page offset", "corrupt", "truncat", "failed to reshape")
        ):
            # Drop tifffile's object reprs ("<tifffile.TiffPages @8>"): noise to a person.
            text = re.sub(r"<tifffile\.[^>]*>\s*", "", text)
            return " ".join(text.split())[:200]
    return None


def _open_tiff(path: str):
    import tifffile

    with _tifffile_log() as records:
        try:
            tf = tifffile.TiffFile(path)
            series = tf.series
        except Exception as exc:  # tifffile raises TiffFileError, struct.error, ValueError...
            text = " ".join(str(exc).split())[:200]
            if "not a tiff file" in text.lower():
                raise InputError(path, "not a TIFF file (no TIFF signature)") from None
            raise InputError(path, f"cannot be read as TIFF (truncated or corrupt?): {text}") from None
    damage = _damage(records)
    if damage is not None:
        tf.close()
        raise InputError(path, f"the TIFF file is truncated or corrupt: {damage}")
    notes = [
        " ".join(r.getMessage().split())[:200]
        for r in records
        if r.levelno >= logging.WARNING
    ]
    if not series:
        tf.close()
        raise InputError(path, "the TIFF file holds no images")
    return tf, notes


def _map_axes(series_axes: str, shape, path: str):
    """Map tifffile axis codes to ours: Z/I/Q → z, C → c, T → t; Y, X stay.

    Returns (axes, leading) where ``leading`` lists the positions of the axes
    in front of y, x in the file's order (one page per combination).
    """
    out: list[str] = []
    for code, n in zip(series_axes, shape, strict=True):
        if code == "S" and n > 1:
            raise InputError(
                path,
                f"has {n} samples per pixel (RGB?); EM volumes must be grayscale, one value per pixel",
            )
        if code in "YX":
            out.append(code.lower())
        elif code in "ZIQ":
            out.append("z")
        elif code == "C":
            out.append("c")
        elif code == "T":
            out.append("t")
        elif n == 1:
            out.append("")
        else:
            raise InputError(path, f"has an axis {code!r} of length {n} that is not supported")
    named = [a for a, n in zip(out, shape, strict=True) if a and (n > 1 or a in "yx")]
    for a in ("z", "c", "t"):
        if named.count(a) > 1:
            raise InputError(path, f"has several {a} axes ({series_axes} {tuple(shape)})")
    if "c" in named and "t" in named:
        raise InputError(path, f"has both channel and time axes ({series_axes} {tuple(shape)}); open one at a time")
    if named[-2:] != ["y", "x"]:
        raise InputError(path, f"axes {series_axes} do not end in y, x")
    return out


def _nm(value, unit: str | None, default_unit: str) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    scale = unit_to_nm(unit if unit else default_unit)
    if scale is None or not (np.isfinite(v) and v > 0):
        return None
    return v * scale


def _ome_sizes(tf) -> dict[str, float]:
    """Physical sizes (nm) from OME-XML of the first image."""
    try:
        root = ET.fromstring(tf.ome_metadata)
    except (ET.ParseError, TypeError, ValueError):
        return {}
    pixels = root.find(".//{*}Image/{*}Pixels")
    if pixels is None:
        return {}
    sizes = {}
    for ax in "zyx":
        value = pixels.get(f"PhysicalSize{ax.upper()}")
        if value is None:
            continue
        nm = _nm(value, pixels.get(f"PhysicalSize{ax.upper()}Unit"), "µm")
        if nm is not None:
            sizes[ax] = nm
    return sizes


def _tag_xy(page) -> tuple[float, float] | None:
    """Pixels per unit in x and y from the resolution tags, if both are present."""
    if 282 not in page.tags or 283 not in page.tags:
        return None
    try:
        xres, yres = (float(r) for r in page.resolution)
    except Exception:  # unreadable tag values count as absent
        return None
    if not (np.isfinite(xres) and np.isfinite(yres) and xres > 0 and yres > 0):
        return None
    return xres, yres


def _imagej_sizes(tf) -> dict[str, float]:
    meta = tf.imagej_metadata or {}
    unit = meta.get("unit")
    scale = unit_to_nm(unit)
    if scale is None:
        return {}
    sizes = {}
    xy = _tag_xy(tf.pages.first)
    if xy is not None:
        sizes["x"], sizes["y"] = scale / xy[0], scale / xy[1]
    if "spacing" in meta:
        z = _nm(meta["spacing"], unit, "nm")
        if z is not None:
            sizes["z"] = z
    return sizes


def _tag_sizes(tf) -> dict[str, float]:
    page = tf.pages.first
    xy = _tag_xy(page)
    scale = _NM_PER_RESUNIT.get(int(page.resolutionunit))
    if xy is None or scale is None:
        return {}
    if int(page.resolutionunit) == 2 and xy[0] == xy[1] and xy[0] in _PLACEHOLDER_DPI:
        return {}
    return {"x": scale / xy[0], "y": scale / xy[1]}


def _voxel_size(tf, axes: tuple[str, ...]):
    """(voxel size, assumed, notes) for the level-0 axes."""
    sizes: dict[str, float] = {}
    for reader in (_ome_sizes if tf.is_ome else None, _imagej_sizes if tf.is_imagej else None, _tag_sizes):
        if reader is not None:
            sizes = reader(tf)
            if sizes:
                break
    spatial = [a for a in axes if a in ("z", "y", "x")]
    if not any(a in sizes for a in spatial):
        vs = assumed_voxel_size(len(axes), axes)
        return vs, True, [assumed_note([v for v, a in zip(vs, axes, strict=True) if a in spatial])]
    missing = [a for a in spatial if a not in sizes]
    notes = []
    if missing:
        # A file that calibrates x and y but not z (plain TIFF tags, OME without
        # PhysicalSizeZ) is most often isotropic enough to browse; say so.
        known = next(sizes[a] for a in ("x", "y", "z") if a in sizes)
        for a in missing:
            sizes[a] = known
        notes.append(
            f"{', '.join(missing)} spacing not stored in the file; assumed {known:g} nm like the "
            "other axes (give the real one with --voxel-size or in the Connectome panel)"
        )
    return tuple(sizes[a] if a in sizes else 1.0 for a in axes), bool(missing), notes


def _squeeze(shape) -> tuple[int, ...]:
    return tuple(int(n) for n in shape if n != 1)


def _level_array(tf, series, axes_codes, path: str, source: str, *, lock, on_error, notify):
    """A ChunkedArray over one series (or pyramid level) of the file."""
    shape_file = tuple(int(s) for s in series.shape)
    keep = [i for i, a in enumerate(axes_codes) if a and (shape_file[i] > 1 or a in "yx")]
    shape = tuple(shape_file[i] for i in keep)
    dtype = np.dtype(series.dtype).newbyteorder("=")
    leading_file = shape_file[:-2]
    npages = int(np.prod(leading_file, dtype=np.int64))
    # Our axes put c/t first; the file's page order may differ (ImageJ writes TZCYX).
    order = sorted(range(len(keep) - 2), key=lambda i: {"t": 0, "c": 0, "z": 1}[axes_codes[keep[i]]])
    shape = tuple(shape[i] for i in order) + shape[-2:]
    axes = tuple(axes_codes[keep[i]] for i in order) + ("y", "x")
    size = os.path.getsize(path)

    def to_file_index(index_ours: tuple[int, ...]) -> tuple[int, ...]:
        full = [0] * len(leading_file)
        for pos_ours, i in enumerate(order):
            full[keep[i]] = index_ours[pos_ours]
        return tuple(full)

    offset = series.dataoffset
    if offset is not None and series.keyframe.compression == 1:
        if offset + int(np.prod(shape_file, dtype=np.int64)) * dtype.itemsize > size:
            raise InputError(path, f"the TIFF file is truncated ({size} bytes; its image data needs more)")
        mm = np.memmap(
            path,
            # tifffile reports the dtype in native order; the bytes are in the file's.
            dtype=np.dtype(series.dtype).newbyteorder(tf.byteorder),
            mode="r",
            offset=offset,
            shape=shape_file,
        )
        lead = len(leading_file)
        chunks = (1,) * (len(shape) - 2) + tuple(min(MEMMAP_TILE, s) for s in shape[-2:])

        def read_memmap(index):
            sel = [0] * len(shape_file)
            full = to_file_index(index[:-2])
            for i in range(lead):
                sel[i] = full[i]
            for k, (i, c, s) in enumerate(zip(index[-2:], chunks[-2:], shape[-2:], strict=True)):
                sel[lead + k] = slice(i * c, min((i + 1) * c, s))
            plane = np.array(mm[tuple(sel)], dtype=dtype)
            return plane.reshape((1,) * (len(shape) - 2) + plane.shape)

        return ChunkedArray(
            read_memmap, shape=shape, dtype=dtype, chunks=chunks, source=source,
            on_error=on_error, notify=notify,
        ), axes, []

    pages = series.pages
    keyframe = series.keyframe
    page_shape = tuple(int(s) for s in keyframe.shape)
    if len(pages) == npages and _squeeze(page_shape) == _squeeze(shape_file[-2:]):
        last = pages[npages - 1]
        if last is not None and len(last.dataoffsets):
            end = max(int(o) + int(n) for o, n in zip(last.dataoffsets, last.databytecounts, strict=True))
            if end > size:
                raise InputError(path, f"the TIFF file is truncated ({size} bytes; its last page ends at byte {end})")
        chunks = (1,) * (len(shape) - 2) + shape[-2:]

        def read_page(index):
            p = int(np.ravel_multi_index(to_file_index(index[:-2]), leading_file)) if leading_file else 0
            with lock:
                page = pages[p]
            if page is None:
                raise ChunkReadError(path, f"page {p} is missing (truncated or corrupt file?)")
            plane = np.asarray(page.asarray(), dtype=dtype).reshape(shape[-2:])
            return plane.reshape(chunks)

        return ChunkedArray(
            read_page, shape=shape, dtype=dtype, chunks=chunks, source=source,
            on_error=on_error, notify=notify,
        ), axes, []

    # Pages that are not one plane each (volumetric or odd layouts): read it whole.
    def read_all(index):
        with lock:
            data = np.asarray(series.asarray(), dtype=dtype)
        data = data.reshape(shape_file)
        data = data[tuple(0 if i not in keep else slice(None) for i in range(len(shape_file)))]
        return np.transpose(data, list(order) + [len(order), len(order) + 1])

    note = "the TIFF's pages are not one plane each; it is read whole on first access"
    return ChunkedArray(
        read_all, shape=shape, dtype=dtype, chunks=shape, source=source,
        on_error=on_error, notify=notify,
    ), axes, [note]


def open(location: Location, *, on_error: str = "raise", notify=None) -> MultiscaleVolume:  # noqa: A001
    """Open a TIFF lazily, one page per chunk.

    Parameters
    ----------
    location
        A local TIFF file.
    on_error, notify
        What reading a bad page does later (see :func:`open_volume`).

    Returns
    -------
    MultiscaleVolume
        Axes ``(y, x)`` or ``(z, y, x)``, optionally with ``c`` or ``t`` first;
        OME pyramids give one level per resolution.

    Raises
    ------
    InputError
        Not a TIFF, truncated or corrupt, RGB, or axes this suite cannot show.
    """
    path = location.path
    tf, notes = _open_tiff(path)
    try:
        series = tf.series[0]
        axes_codes = _map_axes(series.axes, series.shape, path)
        # Reads from several napari threads share one file handle: tifffile
        # guards its own seeks+reads with the handle's lock once it exists.
        tf.filehandle.set_lock(True)
        lock = tf.filehandle.lock
        levels_series = list(getattr(series, "levels", None) or [series])
        arrays = []
        for k, lv in enumerate(levels_series):
            codes = axes_codes if k == 0 else _map_axes(lv.axes, lv.shape, path)
            array, axes, extra = _level_array(
                tf, lv, codes, path, location.uri if k == 0 else f"{location.uri} (level {k})",
                lock=lock, on_error=on_error, notify=notify,
            )
            arrays.append((array, axes))
            notes.extend(extra)
    except BaseException:
        tf.close()
        raise
    if len(tf.series) > 1:
        notes.append(f"the file holds {len(tf.series)} image series; opened the first")

    axes0 = arrays[0][1]
    vs0, assumed, vs_notes = _voxel_size(tf, axes0)
    notes.extend(vs_notes)
    shape0 = arrays[0][0].shape
    offset0 = (0.0,) * len(axes0)
    levels = []
    for array, axes in arrays:
        if axes != axes0:
            levels.append(Level(array, vs0, offset0, axes))  # check_volume reports the mismatch
            continue
        vs = tuple(
            v * (n0 / n if a in ("z", "y", "x") else 1.0)
            for v, n0, n, a in zip(vs0, shape0, array.shape, axes, strict=True)
        )
        levels.append(Level(array, vs, level_offset(offset0, vs0, vs), axes))
    dtype = arrays[0][0].dtype
    return MultiscaleVolume(
        levels=levels,
        kind=infer_kind(dtype, location.name),
        source=location.uri,
        format="tiff",
        name=location.name,
        voxel_size_assumed=assumed,
        notes=notes,
    )
