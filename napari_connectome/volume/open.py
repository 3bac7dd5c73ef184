"""The format-agnostic front: find the backend, open, check, describe.

Each backend module in :mod:`napari_connectome.volume.formats` defines

``sniff(location) -> bool``
    Cheap test whether the location is in this format (no data read).
``open(location, *, on_error, notify) -> MultiscaleVolume``
    Open it lazily. The volume's ``kind`` comes from the format's metadata
    when it has one (else :func:`~napari_connectome.volume.checks.infer_kind`
    decides), and its voxel size from the metadata; when there is none the
    backend uses :func:`~napari_connectome.volume.checks.assumed_voxel_size`
    and sets ``voxel_size_assumed``.

Backends are tried in the order of :data:`FORMATS` (specific containers first).
"""

from __future__ import annotations

import importlib
import os

import numpy as np

from napari_connectome.errors import ConnectomeError, InputError
from napari_connectome.volume.checks import check_volume, infer_kind
from napari_connectome.volume.chunks import missing_chunks_note
from napari_connectome.volume.lazy import NumpyArray
from napari_connectome.volume.location import Location, parse_uri
from napari_connectome.volume.model import Level, MultiscaleVolume

# (format name, backend module); order matters: groups with metadata first.
FORMATS: list[tuple[str, str]] = [
    ("ome-zarr", "napari_connectome.volume.formats.ome_zarr"),
    ("precomputed", "napari_connectome.volume.formats.precomputed"),
    ("n5", "napari_connectome.volume.formats.n5"),
    ("zarr", "napari_connectome.volume.formats.zarr_array"),
    ("hdf5", "napari_connectome.volume.formats.hdf5"),
    ("tiff", "napari_connectome.volume.formats.tiff"),
    ("image-stack", "napari_connectome.volume.formats.image_stack"),
]


def _backend(module: str):
    return importlib.import_module(module)


def detect_format(location: Location) -> str:
    """The name of the format at ``location``; :class:`InputError` if none fits."""
    if location.is_local and not os.path.exists(location.path):
        raise InputError(location.uri, "no such file or directory")
    for name, module in FORMATS:
        try:
            if _backend(module).sniff(location):
                return name
        except ConnectomeError:
            raise
        except Exception:  # a sniff that stumbles means "not mine"
            continue
    if location.is_local and os.path.isdir(location.path) and not os.listdir(location.path):
        raise InputError(location.uri, "the folder is empty: no volume in it")
    raise InputError(
        location.uri,
        "unknown format (expected OME-Zarr, zarr, N5, Neuroglancer precomputed, "
        "HDF5 FILE.h5/dataset, TIFF, or a folder of PNG/TIFF slices)",
    )


def open_volume(
    uri: str | os.PathLike,
    *,
    voxel_size=None,
    kind: str | None = None,
    on_error: str = "raise",
    notify=None,
) -> MultiscaleVolume:
    """Open a volume lazily as a multiscale volume in world units (nm).

    Parameters
    ----------
    uri
        Local path or remote URI (``gs://``, ``s3://``, ``http(s)://``). HDF5
        datasets are addressed as ``FILE.h5/path/to/dataset``.
    voxel_size
        Voxel size of level 0 in nm (``(z, y, x)``). It replaces what the
        metadata says; where the format stores none and this is None, a voxel
        size is assumed and the volume says so (``voxel_size_assumed``).
    kind
        ``"image"`` or ``"labels"``; None infers it from metadata and dtype.
    on_error
        ``"raise"`` (default) or ``"fill"``: what reading a bad chunk does
        later. ``"fill"`` returns zeros and calls ``notify(error)``.
    notify
        Called with the error when ``on_error="fill"`` swallows one.

    Returns
    -------
    MultiscaleVolume
        Levels largest first, each with voxel size and offset in nm. When a
        local zarr, N5 or precomputed level lacks chunk files (counted from a
        directory listing, for levels of at most
        :data:`~napari_connectome.volume.chunks.LIST_LIMIT` chunks), a note
        says how many and what they read as.

    Raises
    ------
    InputError
        One line naming the file and the problem: missing path, unknown
        format, empty array, float data as labels, inconsistent pyramid,
        voxel size ≤ 0.
    """
    if kind not in (None, "image", "labels"):
        raise InputError(str(uri), f"kind must be 'image' or 'labels', got {kind!r}")
    if on_error not in ("raise", "fill"):
        raise InputError(str(uri), f"on_error must be 'raise' or 'fill', got {on_error!r}")
    location = parse_uri(uri)
    fmt = detect_format(location)
    backend = _backend(dict(FORMATS)[fmt])
    try:
        volume = backend.open(location, on_error=on_error, notify=notify)
    except ConnectomeError:
        raise
    except Exception as exc:  # library errors become one line naming the file
        text = " ".join(str(exc).split())[:300]
        raise InputError(location.uri, f"could not be opened as {fmt}: {text}") from None
    volume = finish_volume(volume, voxel_size=voxel_size, kind=kind)
    # After finish_volume: the note names the fill value as labels or image.
    note = missing_chunks_note(volume)
    if note:
        volume.notes.append(note)
    return volume


def finish_volume(volume: MultiscaleVolume, *, voxel_size=None, kind=None) -> MultiscaleVolume:
    """Apply the caller's voxel size and kind, then check the volume."""
    if voxel_size is not None:
        volume = volume.with_voxel_size(_spatial_voxel_size(volume, voxel_size))
    if kind is not None:
        volume.kind = kind
    elif volume.kind not in ("image", "labels"):
        volume.kind = infer_kind(volume.dtype, volume.name)
    check_volume(volume)
    return volume


def _spatial_voxel_size(volume: MultiscaleVolume, voxel_size) -> tuple:
    """Expand a (z, y, x) voxel size to every axis (1 for channel/time)."""
    from napari_connectome.config import check_voxel_size

    vs = check_voxel_size(voxel_size, source=volume.source)
    if len(vs) == volume.ndim:
        return vs
    spatial = [i for i, a in enumerate(volume.axes) if a in ("z", "y", "x")]
    if len(vs) != len(spatial):
        raise InputError(
            volume.source,
            f"voxel size {vs} has {len(vs)} values but the volume has axes {volume.axes}",
        )
    full = [1.0] * volume.ndim
    for i, v in zip(spatial, vs, strict=True):
        full[i] = v
    return tuple(full)


def from_array(
    data: np.ndarray,
    *,
    voxel_size=(1.0, 1.0, 1.0),
    offset=None,
    kind: str | None = None,
    name: str = "array",
    axes=None,
) -> MultiscaleVolume:
    """Wrap an in-memory array as a one-level volume (tests, samples, writers)."""
    data = np.asarray(data)
    axes = tuple(axes) if axes is not None else ("z", "y", "x")[-data.ndim :] if data.ndim <= 3 else tuple(f"d{i}" for i in range(data.ndim))
    from napari_connectome.config import check_voxel_size

    vs = check_voxel_size(voxel_size, source=name, ndim=data.ndim)
    off = tuple(float(o) for o in offset) if offset is not None else (0.0,) * data.ndim
    level = Level(NumpyArray(data, source=name), vs, off, axes)
    volume = MultiscaleVolume(levels=[level], kind=kind or "", source=name, format="memory", name=name)
    return finish_volume(volume, kind=kind)
