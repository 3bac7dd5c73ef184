"""The napari writer: an image or labels layer to OME-Zarr (a multiscale pyramid).

The layer's ``scale`` becomes the voxel size (nm) and its ``translate`` the
offset, so the written volume lies where the layer lies. Lazy data (a layer
opened through this plugin) is streamed level 0 chunk by chunk through the
engine's pyramid writer, never loaded whole.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from napari_connectome_plugins import _notify
from napari_connectome_plugins._layers import META_KEY

# OME-NGFF version written (0.4: zarr v2, read by every OME-Zarr tool today).
NGFF = "0.4"


def _axes(ndim: int, attributes: dict[str, Any]) -> tuple[str, ...] | None:
    meta = (attributes.get("metadata") or {}).get(META_KEY) or {}
    axes = meta.get("axes")
    if isinstance(axes, (list, tuple)) and len(axes) == ndim:
        return tuple(str(a) for a in axes)
    if ndim in (2, 3):
        return ("z", "y", "x")[-ndim:]
    if ndim == 4:
        return ("c", "z", "y", "x")
    return None


def _is_lazy(array: Any) -> bool:
    """An engine lazy array (or anything with its interface and integer chunks)."""
    chunks = getattr(array, "chunks", None)
    return (
        hasattr(array, "shape")
        and hasattr(array, "dtype")
        and hasattr(array, "__getitem__")
        and isinstance(chunks, tuple)
        and all(isinstance(c, (int, np.integer)) for c in chunks)
        and not isinstance(array, np.ndarray)
    )


def layer_source(data: Any, attributes: dict[str, Any], kind: str):
    """The engine volume (or array) to write for a layer's data and attributes.

    Returns
    -------
    tuple
        ``(source, voxel_size, offset)``; ``source`` is a one-level
        :class:`~napari_connectome.volume.MultiscaleVolume` over lazy level-0
        data, or a NumPy array.
    """
    from napari_connectome.volume import Level, MultiscaleVolume

    if attributes.get("multiscale"):
        data = data[0]  # the writer builds its own pyramid from the full resolution
    ndim = len(data.shape)
    scale = tuple(float(s) for s in (attributes.get("scale") if attributes.get("scale") is not None else (1.0,) * ndim))
    translate = tuple(
        float(t) for t in (attributes.get("translate") if attributes.get("translate") is not None else (0.0,) * ndim)
    )
    axes = _axes(ndim, attributes)
    if _is_lazy(data) and axes is not None:
        name = str(attributes.get("name") or kind)
        level = Level(data, scale, translate, axes)
        volume = MultiscaleVolume(
            levels=[level], kind=kind, source=name, format="napari-layer", name=name
        )
        return volume, scale, translate
    return np.asarray(data), scale, translate


class NapariProgress:
    """The engine's progress protocol shown as a napari progress bar (activity dock)."""

    def __init__(self) -> None:
        self._bar = None

    def start(self, total: int, description: str) -> None:
        from napari.utils import progress

        self.close()
        self._bar = progress(total=total, desc=description)

    def advance(self, steps: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(steps)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _write_one(path, data: Any, attributes: dict[str, Any], kind: str, progress) -> None:
    from napari_connectome.pyramid import write_ome_zarr

    source, scale, translate = layer_source(data, attributes, kind)
    if isinstance(source, np.ndarray):
        write_ome_zarr(
            path, source, voxel_size=scale, offset=translate, kind=kind, ngff=NGFF, progress=progress
        )
    else:
        write_ome_zarr(path, source, kind=kind, ngff=NGFF, progress=progress)


def _write(path: str, data: Any, attributes: dict[str, Any], kind: str) -> list[str]:
    from napari_connectome.errors import ConnectomeError, from_os_error

    progress = NapariProgress()
    try:
        _write_one(path, data, attributes, kind, progress)
    except ConnectomeError as exc:
        _notify.error(exc)
        return []
    except OSError as exc:  # the file system said no: one line, like every other failure
        _notify.error(from_os_error(exc, path, action="nothing was written"))
        return []
    finally:
        progress.close()
    return [os.fspath(path)]


def _label_name(name: str, taken: set[str]) -> str:
    """A folder name for a label image: letters, digits, ``._-``; unique."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "labels"
    candidate, i = base, 1
    while candidate in taken:
        i += 1
        candidate = f"{base}_{i}"
    taken.add(candidate)
    return candidate


def write_image_with_labels(path: str, layer_data: list[tuple]) -> list[str]:
    """npe2 writer: one image layer and its labels layers as one OME-Zarr image.

    The image is written at ``path``; each labels layer becomes an NGFF label
    image in ``path/labels/NAME`` (listed in ``path/labels``), which the
    napari-connectome reader opens together with the image.

    Returns
    -------
    list of str
        ``[path]``; ``[]`` after one error line (what this call had
        written is removed, nothing that existed before is touched).
    """
    from napari_connectome.errors import ConnectomeError, InputError, from_os_error

    images = [d for d in layer_data if d[2] == "image"]
    labels = [d for d in layer_data if d[2] == "labels"]
    dst = Path(path)
    existed = dst.exists()
    progress = NapariProgress()
    try:
        if len(images) != 1 or not labels or len(images) + len(labels) != len(layer_data):
            raise InputError(
                dst, "select one image layer and its labels layers to save them as one OME-Zarr"
            )
        data, attributes, _ = images[0]
        _write_one(dst, data, attributes, "image", progress)
        taken: set[str] = set()
        names = []
        for data, attributes, _ in labels:
            name = _label_name(str(attributes.get("name") or "labels"), taken)
            _write_one(dst / "labels" / name, data, attributes, "labels", progress)
            names.append(name)
        _write_labels_group(dst / "labels", names)
    except (ConnectomeError, OSError) as exc:
        if not existed and dst.exists():
            shutil.rmtree(dst, ignore_errors=True)
        _notify.error(exc if isinstance(exc, ConnectomeError) else from_os_error(exc, dst, action="nothing was written"))
        return []
    finally:
        progress.close()
    return [os.fspath(path)]


def _write_labels_group(folder: Path, names: list[str]) -> None:
    """The NGFF ``labels`` group that lists the label images (zarr v2, NGFF 0.4)."""
    (folder / ".zgroup").write_text(json.dumps({"zarr_format": 2}) + "\n", encoding="utf-8")
    (folder / ".zattrs").write_text(json.dumps({"labels": names}, indent=2) + "\n", encoding="utf-8")


def write_image(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """npe2 writer: an image layer to OME-Zarr at ``path``; returns ``[path]``.

    Errors (the path exists, bad voxel size, ...) show one line as a napari
    notification and return ``[]``; nothing existing is overwritten.
    """
    return _write(path, data, attributes, "image")


def write_labels(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """npe2 writer: a labels layer to OME-Zarr at ``path``; returns ``[path]``."""
    return _write(path, data, attributes, "labels")
