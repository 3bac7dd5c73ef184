"""Convert any supported volume into an OME-Zarr pyramid."""

from __future__ import annotations

import os
from pathlib import Path

from napari_connectome.errors import from_os_error
from napari_connectome.progress import Progress
from napari_connectome.pyramid.write import DEFAULT_ASSUME_COMPRESSION, write_ome_zarr


def convert(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    voxel_size=None,
    kind: str | None = None,
    chunks: int | tuple[int, ...] = 64,
    ngff: str = "0.4",
    levels: int | None = None,
    name: str | None = None,
    progress: Progress | None = None,
    overwrite: bool = False,
    assume_compression: float = DEFAULT_ASSUME_COMPRESSION,
    memory_gb: float | None = None,
) -> Path:
    """Open ``src`` in any supported format and write it as an OME-Zarr pyramid at ``dst``.

    Parameters
    ----------
    src
        Anything :func:`~napari_connectome.volume.open.open_volume` opens
        (OME-Zarr, zarr, N5, precomputed, HDF5 ``FILE.h5/dataset``, TIFF, a
        folder of slices; local or remote). Its level 0 is converted.
    dst
        The OME-Zarr directory to create.
    voxel_size
        Voxel size of level 0 in nm, ``(z, y, x)``; replaces the source's
        (needed when the format stores none and the assumed one is wrong).
    kind
        ``"image"`` or ``"labels"``; None keeps what the source says or infers.
    chunks, ngff, levels, name, progress, overwrite, assume_compression, memory_gb
        As in :func:`~napari_connectome.pyramid.write.write_ome_zarr`: the
        pyramid is built beside ``dst`` and swapped in when complete, so an
        existing ``dst`` survives a failed or interrupted conversion.

    Returns
    -------
    Path
        ``dst``.

    Raises
    ------
    InputError
        One line naming the file: unreadable or unknown source, a corrupt
        chunk (:class:`~napari_connectome.errors.ChunkReadError`), ``dst``
        exists, a volume too large for the disk or the memory (metadata
        claiming 10^18 voxels is refused at once), a failed write (full disk,
        read-only folder, permissions). A failed conversion leaves ``dst`` as
        it was, and no staging folder.
    """
    from napari_connectome.volume.open import open_volume

    try:
        volume = open_volume(src, voxel_size=voxel_size, kind=kind)
    except OSError as exc:  # a reader that let one through: still one line naming the file
        raise from_os_error(exc, os.fspath(src), action="nothing was written") from None
    return write_ome_zarr(
        dst,
        volume,
        kind=kind,
        chunks=chunks,
        levels=levels,
        ngff=ngff,
        name=name,
        progress=progress,
        overwrite=overwrite,
        assume_compression=assume_compression,
        memory_gb=memory_gb,
    )
