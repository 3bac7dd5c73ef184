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

Safety (see :mod:`napari_connectome.pyramid.staging`): the pyramid is built
in a staging folder beside ``DST`` (``.NAME.partial-<pid>-<random>``, marked
as ours) and renamed into place only when complete; with ``overwrite=True`` an
existing ``DST`` is renamed aside first and deleted last, so a crash at any
moment leaves the old pyramid or the complete new one, and the next write to
``DST`` finishes or cleans up what an interrupted one left. A write that fails
with an exception removes its staging folder. An existing ``DST`` is never
replaced unless ``overwrite=True``.

Guards, before anything is written: the pyramid must fit on the destination's
disk even if it compressed ``assume_compression``-fold (default 100: more
than EM images, about 1-2×, and most segmentations reach with zstd; chunks
equal to the fill value are not stored at all, so a mostly empty volume may
need the option raised); and a worker's working set (one source chunk, which
the source decodes whole, plus a few blocks) must fit in memory
(:func:`napari_connectome.memory.check_memory`, raised with ``memory_gb``).
A volume whose metadata claims 10^18 voxels is refused in milliseconds.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from napari_connectome.atomic import write_json_atomic
from napari_connectome.blockwise import BlockError, BlockGrid, run_blockwise
from napari_connectome.config import check_voxel_size
from napari_connectome.errors import ConnectomeError, InputError, from_os_error, os_problem
from napari_connectome.memory import check_disk, check_memory, human_bytes
from napari_connectome.outputs import guard_output
from napari_connectome.progress import NullProgress, PartOf, Progress
from napari_connectome.provenance import Recorder, volume_identity, zarr_attributes
from napari_connectome.pyramid.downsample import (
    LevelPlan,
    downsample_mean,
    downsample_mode,
    plan_levels,
    spatial_indices,
)
from napari_connectome.pyramid.staging import StagedFolder
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
# The pyramid must fit on disk even compressed this much (see the module notes).
DEFAULT_ASSUME_COMPRESSION = 100.0
# Working set of one worker, in blocks: the input, the output and the
# temporaries of a reduction.
_BLOCKS_PER_WORKER = 4
# Memory estimates below this are not checked (see _check_fits).
_MEMORY_CHECK_FROM = 2**30
# tensorstore reports an operating-system error as "[os_error_code='28']".
_TS_ERRNO = re.compile(r"os_error_code\W+(\d+)")


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
    assume_compression: float = DEFAULT_ASSUME_COMPRESSION,
    memory_gb: float | None = None,
    provenance=None,
) -> Path:
    """Write ``source`` as an OME-Zarr multiscale pyramid at ``path``.

    Level 0 is copied block by block from the source's lazy array; level
    ``k + 1`` is computed block by block from the written level ``k``
    (:func:`~napari_connectome.pyramid.downsample.plan_levels` decides the
    factors: 2× per level, anisotropy-aware). Memory stays bounded whatever
    the volume's size. The pyramid is built beside ``path`` and put in place
    only when complete (see the module notes).

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
        Replace an existing zarr directory at ``path`` (or the folder an
        interrupted conversion left there). Without it an existing ``path`` is
        an error: nothing saved is ever destroyed by default. The old pyramid
        stays in place until the new one is complete.
    block
        Block shape in voxels (an int or one value per axis), rounded up to
        whole chunks. None: as large as fits in 32 MiB. It changes speed and
        memory, never the bytes written.
    workers
        Threads processing blocks (default: up to 2).
    assume_compression
        Refuse when the pyramid would not fit on the destination's disk even
        compressed this many times (default 100); ``inf`` skips the check.
    memory_gb
        Memory the write may plan to use, in GiB (default:
        :func:`~napari_connectome.memory.memory_limit`).
    provenance
        A :class:`~napari_connectome.provenance.Recorder` of what made the
        volume (``synthetic``, a prediction); None: a ``pyramid`` record. The
        write's parameters, the source's identity and its time are added, and
        the record is stored in the group's attributes.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InputError
        One line: ``path`` exists, bad parameters, labels that are not
        integers, a source chunk that cannot be read
        (:class:`~napari_connectome.errors.ChunkReadError`), a volume that
        cannot fit on disk or in memory, a failed write (full disk, read-only
        or missing folder, permissions).
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
    _check_source_is_not_destination(dst, where)
    workers = max(1, int(workers)) if workers is not None else max(1, min(2, os.cpu_count() or 1))
    level_chunks = [
        tuple(min(c, s) for c, s in zip(chunk_shape, p.shape, strict=True)) for p in plans
    ]
    block_shapes = [
        _block_shape(block, lc, p, dtype.itemsize, axes)
        for p, lc in zip(plans, level_chunks, strict=True)
    ]
    parameters = {
        "shape": list(level0.shape),
        "dtype": dtype.str,
        "kind": kind,
        "voxel_size": list(plans[0].voxel_size),
        "offset": list(level0.offset),
        "chunks": list(chunk_shape),
        "levels": len(plans),
        "ngff": ngff,
        "name": name,
    }
    record = provenance if provenance is not None else Recorder("pyramid")
    record.record["parameters"].update(parameters)
    if isinstance(source, MultiscaleVolume) and "source" not in record.record["inputs"]:
        record.input("source", volume_identity(source))
    staged = StagedFolder(
        dst,
        source=where,
        parameters=parameters,
        overwrite=overwrite,
        replaceable=_replaceable_problem,
        exists_problem=_exists_problem,
    )
    # The estimates first: nothing on disk changes for a volume that cannot fit.
    # Then open() recovers what interrupted writes left (even if it then
    # refuses an existing ``dst``), checks ``dst`` and creates the build.
    _check_fits(
        dst,
        level0,
        plans,
        block_shapes,
        where=where,
        workers=workers,
        assume_compression=assume_compression,
        memory_gb=memory_gb,
    )
    kept = "the existing pyramid is untouched" if os.path.lexists(dst) else "nothing was written"
    with _os_errors(dst, kept):
        stage = staged.open()
    progress = progress or NullProgress()
    reduce = downsample_mode if kind == "labels" else downsample_mean

    import tensorstore as ts

    # A private context: streaming touches each chunk once, so the shared
    # cache would only fill up (and hold memory) for nothing.
    context = ts.Context({"cache_pool": {"total_bytes_limit": 0}})
    try:
        # Counted, not listed: a list of every block of a huge volume is
        # exactly the memory this writer must not hold.
        progress.start(
            sum(_block_count(p.shape, b) for p, b in zip(plans, block_shapes, strict=True)),
            f"writing {dst.name}",
        )
        beat = _Heartbeat(progress, staged)
        stores = [
            _create_array(ts, context, stage / str(k), p.shape, lc, dtype, axes, ngff)
            for k, (p, lc) in enumerate(zip(plans, level_chunks, strict=True))
        ]
        src = _streaming_array(level0.array, context)
        for k, (plan, shape) in enumerate(zip(plans, block_shapes, strict=True)):
            if k == 0:
                task = _copy_task(src, stores[0], dst)
            else:
                task = _downsample_task(stores[k - 1], stores[k], plan.factors, reduce, dst)
            _run_blocks(task, _grid(plan.shape, shape), workers, beat)
        del stores, src
        attrs = _group_attributes(plans, level0.offset, axes, name, kind, ngff)
        attrs.update(zarr_attributes(record.finish()))
        _write_group_metadata(stage, attrs, ngff)
        staged.commit()
    except BaseException as exc:
        # A storage library may still be finishing chunk writes it started
        # before the failure: let them settle so that none recreates a folder.
        staged.discard(settle_s=2.0)
        if isinstance(exc, ConnectomeError) or not isinstance(exc, Exception):
            raise
        if isinstance(exc, OSError):
            raise from_os_error(exc, dst, action=kept) from None
        raise _write_error(dst, exc, kept) from None
    finally:
        progress.close()
    return dst


def _check_fits(
    dst: Path,
    level0: Level,
    plans,
    block_shapes,
    *,
    where: str,
    workers: int,
    assume_compression: float,
    memory_gb: float | None,
) -> None:
    """Refuse, in one line and before writing, a pyramid that cannot fit on disk or in memory.

    Disk: the pyramid's raw bytes (every level's voxels × the item size)
    divided by ``assume_compression`` must fit in the free space beside
    ``dst`` (an old ``dst`` stays until the new one is complete, so its space
    is not counted as free). Memory: per worker, one source chunk (formats
    decode a chunk whole) and a few blocks.
    """
    try:
        ratio = float(assume_compression)
    except (TypeError, ValueError):
        ratio = float("nan")
    if not ratio >= 1:
        raise InputError(
            "assume_compression", f"must be a number ≥ 1 (or inf), got {assume_compression!r}"
        )
    itemsize = level0.dtype.itemsize
    voxels = math.prod(level0.shape)
    raw = sum(math.prod(p.shape) for p in plans) * itemsize
    what = (
        f"the pyramid of {where} (shape {tuple(level0.shape)}, {level0.dtype}, "
        f"{voxels:.3g} voxels, {human_bytes(raw)} uncompressed)"
    )
    if math.isfinite(ratio):
        check_disk(
            raw / ratio,
            what=f"{what}, even compressed {ratio:g}-fold,",
            path=dst,
            hint="if it compresses better (a mostly empty volume), raise --assume-compression",
        )
    block_bytes = 0
    for k, (plan, shape) in enumerate(zip(plans, block_shapes, strict=True)):
        factors = plan.factors if k else (1,) * len(shape)
        block_bytes = max(
            block_bytes, math.prod(b * f for b, f in zip(shape, factors, strict=True))
        )
    from napari_connectome.volume.lazy import NumpyArray

    array = level0.array
    src_chunks: tuple[int, ...] = ()
    if not isinstance(array, NumpyArray):  # an in-memory source costs nothing more to read
        src_chunks = tuple(
            min(int(c), s)
            for c, s in zip(getattr(array, "chunks", ()) or (), level0.shape, strict=False)
        )
    chunk_bytes = math.prod(src_chunks) * itemsize if len(src_chunks) == level0.ndim else 0
    need = _SOURCE_CACHE_BYTES + workers * (
        chunk_bytes + _BLOCKS_PER_WORKER * block_bytes * itemsize
    )
    # A default write needs a few hundred MiB: only a larger estimate (huge
    # source chunks, a huge ``block``) is worth a refusal on a busy machine.
    if need > _MEMORY_CHECK_FROM:
        check_memory(
            need,
            what=f"converting {where} (source chunks {src_chunks}, {workers} workers)",
            source=where,
            limit_gb=memory_gb,
        )


@contextlib.contextmanager
def _os_errors(dst: Path, action: str) -> Iterator[None]:
    """Turn an OSError into one line naming ``dst`` (the name the person gave)."""
    try:
        yield
    except OSError as exc:
        raise from_os_error(exc, dst, action=action) from None


def _write_error(dst: Path, exc: BaseException, action: str) -> InputError:
    """One line for a failed write; an operating-system error inside a library's text is named."""
    text = " ".join(str(exc).split())
    found = _TS_ERRNO.search(text)
    if found:
        code = int(found.group(1))
        return InputError(dst, f"{os_problem(OSError(code, os.strerror(code)))}; {action}")
    return InputError(dst, f"could not be written: {text[:300]}; {action}")


class _Heartbeat:
    """Progress that also keeps the build's marker fresh (a live build on a shared disk)."""

    def __init__(self, progress: Progress, staged: StagedFolder) -> None:
        self._progress = progress
        self._staged = staged

    def start(self, total: int, description: str) -> None:
        self._progress.start(total, description)

    def advance(self, steps: int = 1) -> None:
        self._progress.advance(steps)
        self._staged.heartbeat()

    def close(self) -> None:
        self._progress.close()


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


def _check_source_is_not_destination(dst: Path, source: str) -> None:
    """Refuse to write into or over the source, or into any project's state (:func:`guard_output`).

    Whether an existing ``dst`` may be replaced is the staging's decision
    (it knows an interrupted write of ours), so only the places are checked here.
    """
    guard_output(dst, inputs=[source] if source else [], overwrite=True, folder=True, make_parents=True,
                 what="pyramid")


def _exists_problem(dst: Path) -> str:
    """What to say when ``dst`` exists and overwriting was not allowed."""
    text = "already exists; not overwriting it (choose another name, or allow overwriting)"
    if dst.is_dir() and not dst.is_symlink() and _interrupted_write(dst):
        text += (
            "; it looks like an interrupted conversion (arrays without group metadata), "
            "which overwriting replaces"
        )
    return text


def _replaceable_problem(dst: Path) -> str | None:
    """None if an existing ``dst`` may be replaced when asked, else why not.

    A zarr (group or array metadata at its top), an empty folder, or what an
    interrupted conversion left (level arrays without group metadata) may be
    replaced; anything else is someone's data and never is.
    """
    if dst.is_symlink() or not dst.is_dir():
        return "exists and is not a zarr folder; not replacing it"
    try:
        entries = os.listdir(dst)
    except OSError as exc:
        return f"exists and cannot be read ({os_problem(exc)}); not replacing it"
    if not entries or any(f in entries for f in _ZARR_FILES) or _interrupted_write(dst):
        return None
    return "exists and is not a zarr folder; not replacing it"


def _interrupted_write(dst: Path) -> bool:
    """Whether ``dst`` holds only what a write of this suite leaves when interrupted.

    That is level arrays ``0``, ``1``, ... (each a folder with zarr array
    metadata) and temporary or marker files, but no group metadata: earlier
    versions wrote the group metadata last, directly at ``dst``.
    """
    try:
        entries = os.listdir(dst)
    except OSError:
        return False
    if not entries or any(f in (".zgroup", ".zattrs", "zarr.json") for f in entries):
        return False
    levels = 0
    for entry in entries:
        path = dst / entry
        if entry.isdigit() and path.is_dir() and not path.is_symlink():
            if not ((path / ".zarray").is_file() or (path / "zarr.json").is_file()):
                return False
            levels += 1
        elif entry.startswith((".zgroup", ".zattrs", ".zarr.json", "zarr.json")) and entry.endswith(
            (".partial", ".tmp")
        ):  # a group metadata file being written (atomic_write's temporary)
            continue
        else:
            return False
    return levels > 0


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


def _grid(shape, block) -> BlockGrid:
    """The blocks of a level, in voxels (every axis, channel and time too)."""
    return BlockGrid.of_shape(shape, block_voxels=block)


def _block_count(shape, block) -> int:
    """Number of blocks of the grid (exact, Python ints: no overflow for any shape)."""
    return len(_grid(shape, block))


def _blocks(shape, block) -> Iterator[tuple[slice, ...]]:
    """Every block of the grid, in C order, one at a time (the grid is lazy: memory stays flat)."""
    return (b.write_roi.index_slices() for b in _grid(shape, block))


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
    # Every chunk is stored, also one equal to the fill value (a few bytes compressed):
    # then a chunk missing from our pyramid means lost data, and `check` and the
    # note at open can say so instead of taking it for an empty region.
    spec["store_data_equal_to_fill_value"] = True
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
    # A failure (disk full, permissions, ...) propagates to write_ome_zarr,
    # which removes the build and names the problem (_write_error).
    store[box].write(data).result()


def _run_blocks(task, grid: BlockGrid, workers: int, progress: Progress) -> None:
    """Run ``task(box)`` on every block of ``grid`` with ``workers`` threads (:func:`run_blockwise`).

    Progress is advanced from the calling thread, in block order, so a
    progress bar (and its cancel button) need not be thread-safe. A block's
    error goes out as it was raised: :func:`write_ome_zarr` words it for
    the destination, which is what a person needs to know, not the block.
    """
    try:
        run_blockwise(lambda block: task(block.write_roi.index_slices()), grid,
                      scheduler="threads" if workers > 1 else "synchronous", workers=workers,
                      progress=PartOf(progress))
    except BlockError as exc:
        raise exc.error from None


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
