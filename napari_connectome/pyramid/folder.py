"""Write several volumes as OME-Zarr pyramids into one folder, all or nothing."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from napari_connectome.errors import InputError, from_os_error
from napari_connectome.memory import check_disk, human_bytes
from napari_connectome.progress import Progress
from napari_connectome.pyramid.downsample import plan_levels
from napari_connectome.pyramid.staging import StagedFolder, remove_tree
from napari_connectome.pyramid.write import (
    DEFAULT_ASSUME_COMPRESSION,
    _chunk_shape,
    write_ome_zarr,
)
from napari_connectome.volume.model import MultiscaleVolume


def write_ome_zarr_folder(
    folder: str | os.PathLike,
    volumes: dict[str, MultiscaleVolume],
    *,
    chunks: int | tuple[int, ...] = 64,
    ngff: str = "0.4",
    progress: Progress | None = None,
    assume_compression: float = DEFAULT_ASSUME_COMPRESSION,
    memory_gb: float | None = None,
) -> list[Path]:
    """Write each volume as ``folder/NAME``, and leave nothing half-written on failure.

    A new ``folder`` is built beside its final place and renamed into it
    when every pyramid is complete, exactly like one pyramid (see
    :mod:`napari_connectome.pyramid.staging`): an interrupted run leaves
    nothing at ``folder``, and the next run cleans up after it. Into an
    existing folder the pyramids are written one after the other, each put
    in place atomically; when one fails, those this call wrote are removed
    again. (A process killed between two pyramids there leaves the first
    ones complete, never half-written.)

    Parameters
    ----------
    folder
        The output folder.
    volumes
        File name (``"raw.ome.zarr"``) -> volume, written in this order,
        each with its own kind.
    chunks, ngff, progress, assume_compression, memory_gb
        As in :func:`~napari_connectome.pyramid.write.write_ome_zarr`;
        ``progress`` is started once per volume.

    Returns
    -------
    list of Path
        The pyramids written, in order.

    Raises
    ------
    InputError
        One line naming the file: a name that exists already, a folder path
        that is a file, not enough disk for all the pyramids, a failed write.
    """
    folder = Path(folder)
    for name in volumes:
        if not name or os.sep in name or name in (".", ".."):
            raise InputError(name, "must be a plain file name")
    if os.path.lexists(folder) and (folder.is_symlink() or not folder.is_dir()):
        raise InputError(folder, "exists and is not a folder; nothing was written")
    existing = [folder / n for n in volumes if os.path.lexists(folder / n)]
    if existing:
        raise InputError(
            existing[0], "already exists; not overwriting it (choose another output folder)"
        )
    _check_total_disk(folder, volumes, chunks, assume_compression)
    options = {
        "chunks": chunks,
        "ngff": ngff,
        "progress": progress,
        "assume_compression": assume_compression,
        "memory_gb": memory_gb,
    }
    if os.path.lexists(folder):
        return _into_existing(folder, volumes, options)

    staged = StagedFolder(
        folder,
        source=", ".join(v.source or v.name for v in volumes.values()),
        parameters={"volumes": list(volumes), "chunks": chunks, "ngff": ngff},
        overwrite=False,
        replaceable=lambda _: "exists",
        exists_problem=lambda _: (
            "already exists; not overwriting it (choose another output folder)"
        ),
    )
    try:
        stage = staged.open()
    except OSError as exc:
        raise from_os_error(exc, folder, action="nothing was written") from None
    try:
        for name, volume in volumes.items():
            try:
                write_ome_zarr(stage / name, volume, kind=volume.kind, **options)
            except InputError as exc:
                # Name the file the person asked for, not the staging folder.
                raise _renamed(exc, stage, folder) from None
        staged.commit()
    except BaseException as exc:
        staged.discard(settle_s=0.5)
        if isinstance(exc, OSError):
            raise from_os_error(exc, folder, action="nothing was written") from None
        raise
    return [folder / name for name in volumes]


def _into_existing(folder: Path, volumes: dict[str, MultiscaleVolume], options) -> list[Path]:
    written: list[Path] = []
    try:
        for name, volume in volumes.items():
            written.append(write_ome_zarr(folder / name, volume, kind=volume.kind, **options))
    except BaseException:
        for path in written:  # ours, written a moment ago: all or nothing
            remove_tree(path)
        raise
    return written


def _renamed(exc: InputError, stage: Path, folder: Path) -> InputError:
    """The same error, naming ``folder/...`` instead of the staging folder."""
    source = exc.source or ""
    if not source.startswith(str(stage)):
        return exc
    return type(exc)(str(folder) + source[len(str(stage)) :], exc.problem)


def _check_total_disk(folder: Path, volumes, chunks, assume_compression) -> None:
    """Refuse before writing anything when all the pyramids together cannot fit on disk."""
    try:
        ratio = float(assume_compression)
    except (TypeError, ValueError):
        return  # write_ome_zarr names the bad value
    if not (ratio >= 1 and math.isfinite(ratio)):
        return
    total = 0
    for volume in volumes.values():
        level = volume.level0
        plans = plan_levels(
            level.shape, level.voxel_size, level.axes, _chunk_shape(chunks, level.axes, folder)
        )
        total += sum(math.prod(p.shape) for p in plans) * np.dtype(level.dtype).itemsize
    check_disk(
        total / ratio,
        what=f"{len(volumes)} pyramids ({human_bytes(total)} uncompressed), "
        f"even compressed {ratio:g}-fold,",
        path=folder,
        hint="if they compress better, raise --assume-compression",
    )
