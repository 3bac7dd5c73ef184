"""Write a volume as an OME-Zarr multiscale pyramid, streaming, in bounded memory.

Layout written (``DST`` is a directory)::

    DST/.zgroup, DST/.zattrs        NGFF 0.4: zarr v2 group; "multiscales" in .zattrs
    DST/zarr.json                   NGFF 0.5: zarr v3 group; attributes["ome"]
    DST/0, DST/1, ...               one array per level, largest first

* NGFF 0.4 arrays are zarr v2 with the blosc compressor (zstd, byte shuffle)
  and ``"/"`` as dimension separator; NGFF 0.5 arrays are zarr v3 with the
  ``bytes`` + ``zstd`` codecs and ``dimension_names``.
* Axes have type ``"space"`` and unit ``"nanometer"`` (``"channel"`` /
  ``"time"`` for ``c`` / ``t``). Each level has a ``scale`` (its voxel size in
  nm) and a ``translation`` (the world position of the centre of its voxel 0,
  :func:`~napari_connectome.volume.checks.level_offset`).
* A segmentation is written as a *labels-only* OME-Zarr: the same multiscale
  group with an ``"image-label"`` entry in its attributes (NGFF's marker of a
  label image; there is no parent image, so it carries no ``"source"``), and
  ``"type": "mode"`` in the multiscale. Readers that know NGFF labels
  (ome-zarr-py, napari-ome-zarr, this suite) open it as labels; others still
  see a valid multiscale image.

The group metadata is written last, atomically: a write that crashes leaves
arrays without group metadata, which no reader takes for a complete pyramid;
a write that fails with an exception removes what it wrote. An existing
``DST`` is never replaced unless ``overwrite=True``.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import math
import os
import shutil
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np

from napari_connectome.atomic import write_json_atomic
from napari_connectome.config import check_voxel_size
from napari_connectome.errors import ConnectomeError, InputError
from napari_connectome.progress import NullProgress, Progress
from napari_connectome.pyramid.downsample import (
    LevelPlan,
    downsample_mean,
    downsample_mode,
    plan_levels,
    spatial_indices,
)
from napari_connectome.volume.checks import assumed_voxel_size, infer_kind, level_offset
from napari_connectome.volume.model import SPATIAL_AXES, Level, MultiscaleVolume

# Largest array a block may hold, in bytes (the input of a downsampling step,
# or a block of level 0). Memory stays a few of these per worker.
DEFAULT_BLOCK_BYTES = 32 * 2**20
# Chunk cache for sources whose chunks do not line up with the blocks.
_SOURCE_CACHE_BYTES = 64 * 2**20
_ZARR3_TYPES = {
    "b": "bool",
    "i1": "int8",
    "i2": "int16",
    "i4": "int32",
    "i8": "int64",
    "u1": "uint8",
    "u2": "uint16",
    "u4": "uint32",
    "u8": "uint64",
    "f2": "float16",
    "f4": "float32",
    "f8": "float64",
}
_ZARR_FILES = (".zgroup", ".zattrs", ".zarray", "zarr.json")


def write_ome_zarr(
    path: str | os.PathLike,
    source: MultiscaleVolume | np.ndarray,
    *,
    voxel_size=None,
    offset=None,
    kind: str | None = None,
    chunks: int | tuple[int, ...] = 64,
    levels: int | None = None,
    ngff: str = "0.4",
    name: str | None = None,
    progress: Progress | None = None,
    overwrite: bool = False,
    block: int | tuple[int, ...] | None = None,
    workers: int | None = None,
) -> Path:
    """Write ``source`` as an OME-Zarr multiscale pyramid at ``path``.

    Level 0 is copied block by block from the source's lazy array; level
    ``k + 1`` is computed block by block from the written level ``k``
    (:func:`~napari_connectome.pyramid.downsample.plan_levels` decides the
    factors: 2× per level, anisotropy-aware). Memory stays bounded whatever
    the volume's size.

    Parameters
    ----------
    path
        The OME-Zarr directory to create (local).
    source
        A volume (its level 0 is used) or a NumPy array.
    voxel_size
        Voxel size of level 0 in nm, ``(z, y, x)`` or one value per axis. None:
        the volume's own; for an array, the assumed default (see
        ``NAPARI_CONNECTOME_DEFAULT_VOXEL_SIZE``).
    offset
        World position in nm of the centre of voxel 0. None: the volume's own
        (0 for an array).
    kind
        ``"image"`` (mean downsampling) or ``"labels"`` (mode downsampling,
        written with NGFF's ``image-label`` metadata). None: the volume's kind,
        or inferred from the array's dtype.
    chunks
        Chunk shape: an int for every spatial axis (non-spatial axes get 1),
        or one value per axis. Clipped to each level's shape.
    levels
        Number of levels including level 0. None: until every spatial axis of
        the coarsest level fits in one chunk (at least one level).
    ngff
        ``"0.4"`` (zarr v2, blosc-zstd) or ``"0.5"`` (zarr v3, zstd).
    name
        Name stored in the metadata; default: the directory's name without
        ``.ome.zarr`` / ``.zarr``.
    progress
        Told the number of blocks, then advanced once per block. A
        :class:`~napari_connectome.errors.CancelledError` it raises stops the
        write (what was written is removed) and propagates.
    overwrite
        Replace an existing zarr directory at ``path``. Without it an existing
        ``path`` is an error: nothing saved is ever destroyed by default.
    block
        Block shape in voxels (an int or one value per axis), rounded up to
        whole chunks. None: as large as fits in 32 MiB. It changes speed and
        memory, never the bytes written.
    workers
        Threads processing blocks (default: up to 2).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InputError
        One line: ``path`` exists, bad parameters, labels that are not
        integers, a source chunk that cannot be read
        (:class:`~napari_connectome.errors.ChunkReadError`), a failed write.
    """
    if "://" in os.fspath(path):
        raise InputError(path, "only local folders can be written; convert locally, then upload")
    dst = Path(path)
    if ngff not in ("0.4", "0.5"):
        raise InputError(dst, f"ngff must be '0.4' or '0.5', got {ngff!r}")
    level0, kind, vol_name, where = _resolve_source(
        source, voxel_size=voxel_size, offset=offset, kind=kind
    )
    axes = level0.axes
    dtype = level0.dtype
    if dtype.kind not in "biuf" or (dtype.kind == "f" and dtype.itemsize > 8):
        raise InputError(dst, f"cannot write {dtype} data to OME-Zarr")
    if kind == "labels" and dtype.kind not in "biu":
        raise InputError(dst, f"{dtype} data cannot be labels: segment ids must be integers")
    chunk_shape = _chunk_shape(chunks, axes, dst)
    plans = plan_levels(level0.shape, level0.voxel_size, axes, chunk_shape, levels)
    name = name or _default_name(dst) or vol_name
    _check_destination(dst, overwrite=overwrite, source=where)
    workers = max(1, int(workers)) if workers is not None else max(1, min(2, os.cpu_count() or 1))
    progress = progress or NullProgress()
    reduce = downsample_mode if kind == "labels" else downsample_mean

    import tensorstore as ts

    # A private context: streaming touches each chunk once, so the shared
    # cache would only fill up (and hold memory) for nothing.
    context = ts.Context({"cache_pool": {"total_bytes_limit": 0}})
    level_chunks = [
        tuple(min(c, s) for c, s in zip(chunk_shape, p.shape, strict=True)) for p in plans
    ]
    blocks = [
        _blocks(p.shape, _block_shape(block, lc, p, dtype.itemsize, axes))
        for p, lc in zip(plans, level_chunks, strict=True)
    ]
    dst.mkdir(parents=True)
    try:
        progress.start(sum(len(b) for b in blocks), f"writing {dst.name}")
        stores = [
            _create_array(ts, context, dst / str(k), p.shape, lc, dtype, axes, ngff)
            for k, (p, lc) in enumerate(zip(plans, level_chunks, strict=True))
        ]
        src = _streaming_array(level0.array, context)
        for k, (plan, level_blocks) in enumerate(zip(plans, blocks, strict=True)):
            if k == 0:
                task = _copy_task(src, stores[0], dst)
            else:
                task = _downsample_task(stores[k - 1], stores[k], plan.factors, reduce, dst)
            _run_blocks(task, level_blocks, workers, progress)
        _write_group_metadata(
            dst, _group_attributes(plans, level0.offset, axes, name, kind, ngff), ngff
        )
    except BaseException as exc:
        shutil.rmtree(dst, ignore_errors=True)
        if isinstance(exc, ConnectomeError) or not isinstance(exc, Exception):
            raise
        text = " ".join(str(exc).split())[:300]
        raise InputError(dst, f"could not be written: {text}") from None
    finally:
        progress.close()
    return dst


def _resolve_source(source, *, voxel_size, offset, kind) -> tuple[Level, str, str, str]:
    """Level 0 of the source with the caller's voxel size / offset; its kind, name and origin."""
    if isinstance(source, MultiscaleVolume):
        level = source.level0
        volume_kind, vol_name, where = source.kind, source.name, source.source
    elif isinstance(source, np.ndarray):
        from napari_connectome.volume.lazy import NumpyArray

        axes = (
            ("z", "y", "x")[-source.ndim :]
            if source.ndim <= 3
            else tuple(f"d{i}" for i in range(source.ndim))
        )
        level = Level(
            NumpyArray(source), assumed_voxel_size(source.ndim, axes), (0.0,) * source.ndim, axes
        )
        volume_kind, vol_name, where = "", "array", "array"
    else:
        raise InputError(
            None, f"cannot write a {type(source).__name__}: give a volume or a NumPy array"
        )
    if level.ndim == 0 or any(s == 0 for s in level.shape):
        raise InputError(where, f"the array is empty (shape {level.shape})")
    vs, off = level.voxel_size, level.offset
    if voxel_size is not None:
        vs = _per_axis(voxel_size, level.axes, where, "voxel size")
        vs = check_voxel_size(vs, source=where, ndim=level.ndim)
    if offset is not None:
        off = _per_axis(offset, level.axes, where, "offset", fill=0.0)
        if not all(math.isfinite(o) for o in off):
            raise InputError(where, f"offset {off} is not one finite number per axis")
    kind = kind or volume_kind or infer_kind(level.dtype, vol_name)
    if kind not in ("image", "labels"):
        raise InputError(where, f"kind must be 'image' or 'labels', got {kind!r}")
    return Level(level.array, tuple(vs), tuple(off), level.axes), kind, vol_name, where


def _per_axis(values, axes, where, what, fill=1.0) -> tuple[float, ...]:
    """Expand a (z, y, x) value to every axis (``fill`` for channel / time)."""
    try:
        values = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise InputError(where, f"{what} {values!r} is not a list of numbers") from None
    if len(values) == len(axes):
        return values
    spatial = [i for i, a in enumerate(axes) if a in SPATIAL_AXES]
    if len(values) != len(spatial):
        raise InputError(
            where, f"{what} {values} has {len(values)} values but the volume has axes {axes}"
        )
    full = [fill] * len(axes)
    for i, v in zip(spatial, values, strict=True):
        full[i] = v
    return tuple(full)


def _chunk_shape(chunks, axes, dst) -> tuple[int, ...]:
    spatial = set(spatial_indices(axes))
    if isinstance(chunks, (int, np.integer)):
        out = tuple(int(chunks) if i in spatial else 1 for i in range(len(axes)))
    else:
        try:
            out = tuple(int(c) for c in chunks)
        except (TypeError, ValueError):
            raise InputError(
                dst, f"chunks must be an int or one int per axis, got {chunks!r}"
            ) from None
        if len(out) != len(axes):
            raise InputError(dst, f"chunks {out} has {len(out)} values for axes {axes}")
    if any(c < 1 for c in out):
        raise InputError(dst, f"chunks must be ≥ 1 voxel, got {out}")
    return out


def _default_name(dst: Path) -> str:
    base = dst.name
    for suffix in (".ome.zarr", ".zarr"):
        if base.lower().endswith(suffix):
            return base[: -len(suffix)]
    return base


def _check_destination(dst: Path, *, overwrite: bool, source: str) -> None:
    """Refuse to write over data (unless asked), or into / over the source."""
    if source and os.path.exists(source):
        a, b = Path(source).resolve(), dst.resolve()
        if a == b or b in a.parents or a in b.parents:
            raise InputError(dst, f"the output would overwrite or sit inside the source {source}")
    if not (dst.exists() or dst.is_symlink()):
        return
    if not overwrite:
        raise InputError(
            dst, "already exists; not overwriting it (choose another name, or allow overwriting)"
        )
    if not dst.is_dir() or dst.is_symlink():
        raise InputError(dst, "exists and is not a zarr folder; not replacing it")
    entries = os.listdir(dst)
    if entries and not any(f in entries for f in _ZARR_FILES):
        raise InputError(dst, "exists and is not a zarr folder; not replacing it")
    shutil.rmtree(dst)


def _block_shape(block, chunks, plan: LevelPlan, itemsize: int, axes) -> tuple[int, ...]:
    """Block shape of a level, in whole chunks."""
    if block is not None:
        want = (
            (int(block),) * len(chunks)
            if isinstance(block, (int, np.integer))
            else tuple(int(b) for b in block)
        )
        if len(want) != len(chunks) or any(b < 1 for b in want):
            raise InputError("block", f"block must be an int or one int per axis, got {block!r}")
        return tuple(c * math.ceil(b / c) for b, c in zip(want, chunks, strict=True))
    # Grow the block by whole chunks, last axis first (contiguous reads), while
    # the largest array involved (the input of the reduction) fits the budget.
    grow = np.prod(plan.factors) * itemsize
    shape = list(chunks)
    order = [i for i in reversed(spatial_indices(axes))]
    changed = True
    while changed:
        changed = False
        for i in order:
            if shape[i] >= plan.shape[i]:
                continue
            trial = shape.copy()
            trial[i] = min(shape[i] * 2, chunks[i] * math.ceil(plan.shape[i] / chunks[i]))
            if np.prod(trial) * grow <= DEFAULT_BLOCK_BYTES:
                shape = trial
                changed = True
    return tuple(shape)


def _blocks(shape, block) -> list[tuple[slice, ...]]:
    """Every block of the grid, in C order."""
    ranges = [
        [slice(s, min(s + b, n)) for s in range(0, n, b)] for n, b in zip(shape, block, strict=True)
    ]
    return [tuple(r) for r in itertools.product(*ranges)]


def _create_array(ts, context, path: Path, shape, chunks, dtype: np.dtype, axes, ngff: str):
    fill = False if dtype.kind == "b" else 0
    if ngff == "0.4":
        spec = {
            "driver": "zarr",
            "kvstore": {"driver": "file", "path": str(path)},
            "metadata": {
                "shape": list(shape),
                "chunks": list(chunks),
                "dtype": dtype.str,
                # Byte shuffle helps multi-byte ids; blosc leaves uint8 as is.
                "compressor": {"id": "blosc", "cname": "zstd", "clevel": 5, "shuffle": 1},
                "fill_value": fill,
                "order": "C",
                "filters": None,
                "dimension_separator": "/",
            },
        }
    else:
        key = "b" if dtype.kind == "b" else dtype.str[1:]
        spec = {
            "driver": "zarr3",
            "kvstore": {"driver": "file", "path": str(path)},
            "metadata": {
                "shape": list(shape),
                "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(chunks)}},
                "chunk_key_encoding": {"name": "default"},
                "data_type": _ZARR3_TYPES[key],
                "codecs": [
                    {"name": "bytes", "configuration": {"endian": "little"}}
                    if dtype.itemsize > 1
                    else {"name": "bytes"},
                    {"name": "zstd", "configuration": {"level": 5, "checksum": False}},
                ],
                "fill_value": fill,
                "dimension_names": list(axes),
            },
        }
    return ts.open(spec, create=True, context=context).result()


def _streaming_array(array, context):
    """The source array read through a small private cache instead of the shared one."""
    from napari_connectome.volume.cache import ChunkCache
    from napari_connectome.volume.lazy import ChunkedArray, TensorStoreArray

    if isinstance(array, TensorStoreArray):
        import tensorstore as ts

        try:
            store = ts.open(
                array.store.spec(retain_context=False), context=context, read=True
            ).result()
        except Exception:  # a driver that cannot be reopened: read it as it is
            return array
        return TensorStoreArray(
            store, source=array.source, on_error=array.on_error, notify=array.notify
        )
    if isinstance(array, ChunkedArray):
        return ChunkedArray(
            array.read_chunk,
            shape=array.shape,
            dtype=array.dtype,
            chunks=array.chunks,
            source=array.source,
            cache=ChunkCache(_SOURCE_CACHE_BYTES),
            on_error=array.on_error,
            notify=array.notify,
        )
    return array


def _copy_task(src, store, dst: Path) -> Callable[[tuple[slice, ...]], None]:
    def task(box):
        data = np.asarray(src[box])
        _write(store, box, data, dst)

    return task


def _downsample_task(
    prev, store, factors, reduce, dst: Path
) -> Callable[[tuple[slice, ...]], None]:
    def task(box):
        in_box = tuple(
            slice(b.start * f, min(b.stop * f, n))
            for b, f, n in zip(box, factors, prev.shape, strict=True)
        )
        data = prev[in_box].read().result()
        _write(store, box, reduce(data, factors), dst)

    return task


def _write(store, box, data: np.ndarray, dst: Path) -> None:
    try:
        store[box].write(data).result()
    except Exception as exc:  # tensorstore: disk full, permissions, ...
        text = " ".join(str(exc).split())[:300]
        raise InputError(dst, f"could not be written: {text}") from None


def _run_blocks(task, blocks, workers: int, progress: Progress) -> None:
    """Run ``task`` on every block with ``workers`` threads, a bounded number in flight.

    Progress is advanced from the calling thread, in block order, so a
    progress bar (and its cancel button) need not be thread-safe.
    """
    if workers == 1:
        for box in blocks:
            task(box)
            progress.advance(1)
        return
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        pending: deque[concurrent.futures.Future] = deque()
        try:
            for box in blocks:
                pending.append(pool.submit(task, box))
                if len(pending) > workers:
                    pending.popleft().result()
                    progress.advance(1)
            while pending:
                pending.popleft().result()
                progress.advance(1)
        finally:
            for future in pending:
                future.cancel()


def _group_attributes(plans, offset0, axes, name: str, kind: str, ngff: str) -> dict:
    from napari_connectome import __version__

    vs0 = plans[0].voxel_size
    axes_meta = []
    for a in axes:
        if a in SPATIAL_AXES:
            axes_meta.append({"name": a, "type": "space", "unit": "nanometer"})
        elif a == "c":
            axes_meta.append({"name": a, "type": "channel"})
        elif a == "t":
            axes_meta.append({"name": a, "type": "time"})
        else:
            axes_meta.append({"name": a})
    datasets = [
        {
            "path": str(k),
            "coordinateTransformations": [
                {"type": "scale", "scale": [float(v) for v in p.voxel_size]},
                {
                    "type": "translation",
                    "translation": [float(o) for o in level_offset(offset0, vs0, p.voxel_size)],
                },
            ],
        }
        for k, p in enumerate(plans)
    ]
    method = "mode" if kind == "labels" else "mean"
    multiscale = {
        "name": name,
        "axes": axes_meta,
        "datasets": datasets,
        "type": method,
        "metadata": {
            "description": f"2x {method} per level, an axis halved only while its voxel is "
            "finer than twice the finest voxel of the level",
            "method": f"napari_connectome.pyramid.downsample_{method}",
            "version": __version__,
        },
    }
    if ngff == "0.4":
        multiscale = {"version": "0.4", **multiscale}
        attrs: dict = {"multiscales": [multiscale]}
        if kind == "labels":
            attrs["image-label"] = {"version": "0.4"}
        return attrs
    ome: dict = {"version": "0.5", "multiscales": [multiscale]}
    if kind == "labels":
        ome["image-label"] = {}
    return {"ome": ome}


def _write_group_metadata(dst: Path, attrs: dict, ngff: str) -> None:
    """Write the group metadata, each file atomically: the last step of a write."""
    if ngff == "0.4":
        files = {".zgroup": {"zarr_format": 2}, ".zattrs": attrs}
    else:
        files = {"zarr.json": {"zarr_format": 3, "node_type": "group", "attributes": attrs}}
    for fname, content in files.items():
        write_json_atomic(dst / fname, content, tmp_name=f".{fname}.partial")
