"""HDF5 backend (h5py): one dataset of a file, addressed as ``FILE.h5/path/to/dataset``.

Voxel size and offset come from the attributes the field's tools write:

* CREMI ``resolution`` (z, y, x in nm) and ``offset`` (nm, world position of
  voxel 0, which is what this suite's ``offset`` means too);
* ilastik / Fiji ``element_size_um`` (z, y, x in µm);
* funlib-style ``voxel_size`` (nm unless a ``units`` / ``unit`` attribute says
  otherwise).

The nearest object wins: the dataset's own attributes first, then its parent
groups up to the file's root. Files without any of them get the assumed voxel
size, and the volume says so.

Reads go chunk by chunk through :class:`~napari_connectome.volume.lazy.ChunkedArray`
and the shared chunk cache. The file stays open read-only for as long as the
volume lives; h5py serialises every call through its global lock, so napari's
slicing threads may read it at the same time.
"""

from __future__ import annotations

import builtins
import os
import re

import numpy as np

from napari_connectome.errors import InputError
from napari_connectome.volume.checks import assumed_note, assumed_voxel_size, infer_kind
from napari_connectome.volume.lazy import ChunkedArray
from napari_connectome.volume.location import CONTAINER_SUFFIXES, Location
from napari_connectome.volume.model import Level, MultiscaleVolume

MAGIC = b"\x89HDF\r\n\x1a\n"
# A grid chunk should hold at least this many bytes: HDF5 files written with
# h5py's auto-chunking often have chunks of a few KiB, and one Python-level
# read per such chunk would dominate the time to show a plane.
MIN_GRID_CHUNK_BYTES = 512 * 1024
# Contiguous (unchunked) datasets are read in tiles this wide in y and x.
CONTIGUOUS_TILE = 256
CONTIGUOUS_CHUNK_BYTES = 2 * 1024 * 1024
AXES_BY_NDIM = {2: ("y", "x"), 3: ("z", "y", "x"), 4: ("c", "z", "y", "x")}
LISTED_DATASETS = 12


def _has_magic(path: str) -> bool:
    """True when the HDF5 signature is at byte 0 or after a user block (512 · 2^k)."""
    size = os.path.getsize(path)
    with builtins.open(path, "rb") as fh:
        offset = 0
        while offset + len(MAGIC) <= size and offset <= 64 * 2**20:
            fh.seek(offset)
            if fh.read(len(MAGIC)) == MAGIC:
                return True
            offset = 512 if offset == 0 else offset * 2
    return False


def sniff(location: Location) -> bool:
    """A local file with the HDF5 signature, or named like an HDF5 container.

    Claiming ``*.h5`` files without the signature lets :func:`open` say
    "not an HDF5 file" instead of the vaguer "unknown format".
    """
    if not location.is_local or not os.path.isfile(location.path):
        return False
    if location.path.lower().endswith(CONTAINER_SUFFIXES):
        return True
    return _has_magic(location.path)


def _open_file(location: Location):
    import h5py

    path = location.path
    try:
        try:
            return h5py.File(path, "r")
        except OSError as exc:
            # Read-only shares and some network filesystems refuse HDF5's
            # advisory lock; a reader does not need it.
            if "lock" not in str(exc).lower():
                raise
            return h5py.File(path, "r", locking=False)
    except OSError as exc:
        text = " ".join(str(exc).split())
        m = re.search(r"truncated file: eof = (\d+).*stored_eof = (\d+)", text)
        if m:
            raise InputError(
                path,
                f"the HDF5 file is truncated ({int(m.group(1))} of {int(m.group(2))} bytes present)",
            ) from None
        if "signature not found" in text:
            raise InputError(path, "not an HDF5 file (no HDF5 signature)") from None
        inner = re.sub(r"^Unable to (synchronously )?open file \((.*)\)$", r"\2", text)
        raise InputError(path, f"cannot be read as HDF5 (corrupt file?): {inner[:200]}") from None


def _is_array(obj) -> bool:
    """A dataset this suite can show: numeric or boolean, at least 2-D."""
    import h5py

    return (
        isinstance(obj, h5py.Dataset)
        and obj.dtype.kind in "biuf"
        and obj.shape is not None
        and len(obj.shape) >= 2
    )


def _datasets(group) -> list[str]:
    """Paths (relative to ``group``) of the array datasets below it, in file order."""
    found: list[str] = []

    def visit(name, obj):
        if _is_array(obj):
            found.append(name)

    group.visititems(visit)
    return found


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:LISTED_DATASETS])
    more = len(names) - LISTED_DATASETS
    return shown + (f" (and {more} more)" if more > 0 else "")


def _resolve(h5file, location: Location):
    """The dataset the location addresses, or an InputError that lists the choices."""
    import h5py

    path = location.path
    inner = (location.inner or "").strip("/")
    if inner:
        if inner not in h5file:
            names = _datasets(h5file)
            choices = f"; its datasets: {_listing(names)}" if names else "; the file holds no datasets"
            raise InputError(location.uri, f"no dataset {inner!r} in the file{choices}")
        obj = h5file[inner]
        if isinstance(obj, h5py.Group):
            names = [f"{inner}/{n}" for n in _datasets(obj)]
            if not names:
                raise InputError(location.uri, f"{inner!r} is a group with no image datasets in it")
            raise InputError(
                location.uri,
                f"{inner!r} is a group, not a dataset; address one as {path}/{names[0]}: {_listing(names)}",
            )
        if not isinstance(obj, h5py.Dataset):
            raise InputError(location.uri, f"{inner!r} is not a dataset")
        return obj
    names = _datasets(h5file)
    if not names:
        raise InputError(path, "the HDF5 file holds no image datasets (numeric, 2-D or more)")
    if len(names) > 1:
        raise InputError(
            path,
            f"has several datasets; address one as {path}/{names[0]}: {_listing(names)}",
        )
    return h5file[names[0]]


def open_dataset(location: Location):
    """``(file, dataset)``: the dataset :func:`open` would open, read-only; the caller closes the file.

    For tools that need the HDF5 dataset itself (``napari-connectome check``
    asks it which chunks are allocated).

    Raises
    ------
    InputError
        As :func:`open` does for the file and the dataset path.
    """
    h5file = _open_file(location)
    try:
        return h5file, _resolve(h5file, location)
    except BaseException:
        h5file.close()
        raise


def _grid_chunks(shape, storage_chunks, itemsize: int) -> tuple[int, ...]:
    """The chunk grid the lazy array reads in.

    Chunked datasets: whole storage chunks, doubled along the axis with the
    fewest voxels until a grid chunk holds at least ``MIN_GRID_CHUNK_BYTES``
    (grid chunks stay aligned with storage chunks, so h5py never decodes a
    storage chunk twice for one grid chunk). Contiguous datasets: tiles of
    ``CONTIGUOUS_TILE`` in y and x and enough z planes for about
    ``CONTIGUOUS_CHUNK_BYTES``.
    """
    shape = [max(1, int(s)) for s in shape]
    if storage_chunks:
        chunks = [min(int(c), s) for c, s in zip(storage_chunks, shape, strict=True)]
        while int(np.prod(chunks)) * itemsize < MIN_GRID_CHUNK_BYTES:
            growable = [i for i, (c, s) in enumerate(zip(chunks, shape, strict=True)) if c < s]
            if not growable:
                break
            i = min(growable, key=lambda j: chunks[j])
            chunks[i] = min(chunks[i] * 2, shape[i])
        return tuple(chunks)
    chunks = [1] * len(shape)
    for i in (-1, -2):
        if len(shape) >= -i:
            chunks[i] = min(CONTIGUOUS_TILE, shape[i])
    if len(shape) >= 3:
        plane = chunks[-1] * chunks[-2] * itemsize
        chunks[-3] = int(min(64, max(1, CONTIGUOUS_CHUNK_BYTES // plane), shape[-3]))
    return tuple(chunks)


def _attr_values(value) -> list[float] | None:
    try:
        values = np.asarray(value, dtype=float).ravel()
    except (TypeError, ValueError):
        return None
    return [float(v) for v in values]


def _attr_text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.size:
        return _attr_text(value.ravel()[0])
    return str(value)


def _fit_axes(values: list[float], axes: tuple[str, ...]) -> tuple[float, ...] | None:
    """Per-axis values from an attribute written for the spatial axes or for every axis."""
    spatial = [i for i, a in enumerate(axes) if a in ("z", "y", "x")]
    if len(values) == len(axes):
        return tuple(values[i] if i in spatial else 1.0 for i in range(len(axes)))
    if len(values) == len(spatial):
        out = [1.0] * len(axes)
        for i, v in zip(spatial, values, strict=True):
            out[i] = v
        return tuple(out)
    return None


def _valid(voxel_size) -> bool:
    return all(np.isfinite(v) and v > 0 for v in voxel_size)


def _metadata(dataset, axes):
    """(voxel size, offset, notes) from the nearest attributes; voxel size None when absent."""
    from napari_connectome.volume.formats.tiff import unit_to_nm

    notes: list[str] = []
    voxel_size = offset = None
    obj = dataset
    while True:
        attrs = obj.attrs
        if voxel_size is None:
            for key in ("resolution", "element_size_um", "voxel_size"):
                if key not in attrs:
                    continue
                values = _attr_values(attrs[key])
                fitted = _fit_axes(values, axes) if values is not None else None
                if fitted is None:
                    notes.append(f"attribute {key!r} = {attrs[key]!r} does not fit axes {axes}; ignored")
                    continue
                scale = 1.0
                if key == "element_size_um":
                    scale = 1000.0
                else:
                    unit = next((attrs[u] for u in ("units", "unit") if u in attrs), None)
                    if unit is not None:
                        scale = unit_to_nm(_attr_text(unit)) or 1.0
                spatial = [a in ("z", "y", "x") for a in axes]
                fitted = tuple(v * scale if s else v for v, s in zip(fitted, spatial, strict=True))
                if not _valid(fitted):
                    notes.append(f"attribute {key!r} gives voxel size {fitted} nm, not > 0; ignored")
                    continue
                voxel_size = fitted
                break
        if offset is None and "offset" in attrs:
            values = _attr_values(attrs["offset"])
            fitted = _fit_axes(values, axes) if values is not None else None
            if fitted is None or not all(np.isfinite(v) for v in fitted):
                notes.append(f"attribute 'offset' = {attrs['offset']!r} does not fit axes {axes}; ignored")
            else:
                offset = tuple(v if a in ("z", "y", "x") else 0.0 for v, a in zip(fitted, axes, strict=True))
        if obj.name == "/" or (voxel_size is not None and offset is not None):
            break
        obj = obj.parent
    return voxel_size, offset, notes


def open(location: Location, *, on_error: str = "raise", notify=None) -> MultiscaleVolume:  # noqa: A001
    """Open one HDF5 dataset lazily.

    Parameters
    ----------
    location
        The file, with ``location.inner`` the dataset path; without one the
        file's only image dataset is opened.
    on_error, notify
        What reading a bad chunk does later (see :func:`open_volume`).

    Returns
    -------
    MultiscaleVolume
        One level, axes ``(y, x)``, ``(z, y, x)`` or ``(c, z, y, x)``.

    Raises
    ------
    InputError
        Not HDF5, truncated, no such dataset, several datasets and none chosen,
        a group instead of a dataset, or a dataset that is not an image.
    """
    h5file = _open_file(location)
    try:
        dataset = _resolve(h5file, location)
        name_in_file = dataset.name.lstrip("/")
        uri = f"{location.path}/{name_in_file}"
        if dataset.dtype.kind not in "biuf":
            raise InputError(uri, f"holds {dataset.dtype} values, not numbers")
        ndim = len(dataset.shape or ())
        axes = AXES_BY_NDIM.get(ndim)
        if axes is None:
            raise InputError(
                uri, f"has {ndim} axes {dataset.shape}; expected 2 (y, x), 3 (z, y, x) or 4 (c, z, y, x)"
            )
    except BaseException:
        h5file.close()
        raise

    voxel_size, offset, notes = _metadata(dataset, axes)
    assumed = voxel_size is None
    if assumed:
        voxel_size = assumed_voxel_size(ndim, axes)
        notes.append(assumed_note([v for v, a in zip(voxel_size, axes, strict=True) if a != "c"]))
    if offset is None:
        offset = (0.0,) * ndim
    if ndim == 4:
        notes.append("4-D dataset read as channels, z, y, x")

    shape = tuple(int(s) for s in dataset.shape)
    chunks = _grid_chunks(shape, dataset.chunks, dataset.dtype.itemsize)

    def read_chunk(index: tuple[int, ...]) -> np.ndarray:
        sel = tuple(
            slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(index, chunks, shape, strict=True)
        )
        return dataset[sel]

    array = ChunkedArray(
        read_chunk,
        shape=shape,
        dtype=dataset.dtype,
        chunks=chunks,
        source=uri,
        on_error=on_error,
        notify=notify,
    )
    stem = os.path.basename(location.path)
    for suffix in CONTAINER_SUFFIXES + (".lzf",):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    # A file with one dataset is named after the file; otherwise the dataset
    # path tells which of several it is.
    name = stem if location.inner is None else f"{stem}/{name_in_file}"
    level = Level(array, tuple(float(v) for v in voxel_size), tuple(float(o) for o in offset), axes)
    return MultiscaleVolume(
        levels=[level],
        kind=infer_kind(dataset.dtype, f"{stem}/{name_in_file}"),
        source=location.uri,
        format="hdf5",
        name=name,
        voxel_size_assumed=assumed,
        notes=notes,
    )
