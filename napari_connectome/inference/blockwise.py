"""Affinities of a whole volume, block by block, into a resumable OME-Zarr: any size, any device.

Each block's write box is a valid output of the network and starts on a
multiple of its step (so the pooling grid of every block is the grid of a
whole-volume pass); its input is the box grown by the network's context,
read from the *real* neighbouring voxels, mirrored only at the volume's
border (:meth:`~napari_connectome.volume.model.Level.read` with
``outside="reflect"``, the padding a whole-volume pass uses). A valid
convolution network has no other dependence on where the block is, so the
block-wise result equals the whole-volume one (up to float rounding, ≤ 1e-3
measured in the tests) and no seam can appear.

The block edge comes from the memory the device has free
(:func:`~napari_connectome.inference.device.block_edge_for_memory`) and is
fixed for the run (it names the blocks in the done-ledger); a block that
still runs out of memory is predicted in halves (the network sees the same
voxels, so the bytes do not change) instead of failing.
"""

from __future__ import annotations

import json
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_connectome.blockwise import BlockGrid, Ledger, run_blockwise
from napari_connectome.blockwise.ledger import ledger_path
from napari_connectome.errors import InputError
from napari_connectome.inference.device import Device, block_edge_for_memory, is_out_of_memory
from napari_connectome.progress import Progress
from napari_connectome.pyramid.resumable import ResumableOutput, output_state
from napari_connectome.volume.model import Level

#: Output dtypes: uint8 stores affinity × 255 rounded (a quarter of the disk of float32).
DTYPES = ("uint8", "float32")
PRECISIONS = ("fp32", "bf16", "fp16")
#: Working memory per input voxel of the shipped U-Net, measured on CPU with
#: torch 2.x (activations of the widest level plus the output), with margin.
BYTES_PER_INPUT_VOXEL = 600


@dataclass(frozen=True)
class PredictReport:
    """What a block-wise prediction did.

    Attributes
    ----------
    path
        The output OME-Zarr.
    blocks, ran, skipped
        Blocks in the grid, run now, and found done by an earlier run.
    block_voxels
        The output block edge per axis.
    backoffs
        Blocks that ran out of memory and were predicted in parts (in this process).
    output
        The output, to be marked complete by the caller.
    """

    path: Path
    blocks: int
    ran: int
    skipped: int
    block_voxels: tuple[int, int, int]
    backoffs: int
    output: ResumableOutput


def check_input(level: Level, model, *, model_voxel_size, name: str) -> None:
    """Refuse a volume the network cannot serve, with the reason (2D, too small, other voxel size).

    Raises
    ------
    InputError
    """
    spatial = [level.axes[i] for i in level.spatial]
    if len(spatial) != 3:
        raise InputError(name, f"is {len(spatial)}D (axes {''.join(spatial)}); the network needs a 3D volume (z, y, x)")
    if any(a not in "zyx" for a in level.axes):
        raise InputError(name, f"has axes {level.axes}; give one channel of EM (axes zyx)")
    if model_voxel_size is not None:
        vs = level.spatial_voxel_size
        ratio = [v / m for v, m in zip(vs, model_voxel_size, strict=True)]
        if any(abs(r - 1.0) > 0.15 for r in ratio):
            raise InputError(
                name,
                f"has voxels of {tuple(vs)} nm but the model was trained at {tuple(model_voxel_size)} nm; "
                "write a pyramid level at the model's resolution (napari-connectome convert) or choose a model "
                "trained at this voxel size")
    if min(level._spatial_shape) < 1:
        raise InputError(name, "is empty")


def _normalise(raw: np.ndarray) -> np.ndarray:
    if np.issubdtype(raw.dtype, np.integer):
        return (raw / np.iinfo(raw.dtype).max).astype(np.float32)
    if raw.dtype == bool:
        raise InputError("raw", "is boolean; the network needs EM intensities")
    return raw.astype(np.float32)


def choose_block(model, device: Device, *, requested=None) -> tuple[int, int, int]:
    """The output block edge: ``requested`` rounded to the network's step, or what fits the device's free memory."""
    cfg = model.config
    step = tuple(int(s) for s in cfg.step)
    if requested is not None:
        want = tuple(int(v) for v in (requested if np.ndim(requested) else (requested,) * 3))
        if any(v < 1 for v in want):
            raise InputError("--block", f"must be positive voxels, got {want}")
        block = tuple(max(s, int(math.ceil(w / s)) * s) for w, s in zip(want, step, strict=True))
    else:
        largest = 256 if device.kind == "cuda" else 128
        block = block_edge_for_memory(device.free_bytes, bytes_per_voxel=BYTES_PER_INPUT_VOXEL,
                                      context=tuple(2 * int(c) for c in cfg.context), multiple=step,
                                      fraction=0.25, largest=largest, smallest=max(step))
    valid = tuple(cfg.output_shape(cfg.valid_input_shape(block)))
    if valid != block:
        raise InputError("--block", f"{block} is not a valid output of the network (nearest: {valid})")
    return block


def region_grid(shape, block, context, region=None) -> BlockGrid:
    """Blocks of ``block`` voxels over ``region`` (grown to whole blocks of the volume's grid) or the whole volume.

    Raises
    ------
    InputError
        A region outside the volume or empty.
    """
    from napari_connectome.volume.roi import Roi

    block = tuple(int(b) for b in (block if np.ndim(block) else (block,) * 3))
    if region is None:
        return BlockGrid.of_shape(shape, block_voxels=block, context_voxels=context)
    lo, hi = (tuple(int(v) for v in region[0]), tuple(int(v) for v in region[1]))
    lo = tuple(max(0, a) for a in lo)
    hi = tuple(min(n, b) for b, n in zip(hi, shape, strict=True))
    if any(b <= a for a, b in zip(lo, hi, strict=True)):
        raise InputError("region", f"{region} voxels does not overlap the volume {tuple(shape)}")
    begin = tuple(a // k * k for a, k in zip(lo, block, strict=True))
    end = tuple(min(n, -(-b // k) * k) for b, k, n in zip(hi, block, shape, strict=True))
    return BlockGrid(Roi(begin, tuple(e - b for b, e in zip(begin, end, strict=True))), block_nm=block,
                     context_nm=context, unit="voxel")


class _Network:
    """The model on its device, shared by the worker threads of one run."""

    def __init__(self, model, device: Device, precision: str, threads: int | None) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device.name)
        self.kind = device.kind
        self.model = model.to(self.device).eval()
        self.precision = precision
        self.threads = threads
        self.backoffs = 0
        self._lock = threading.Lock()

    def forward(self, x: np.ndarray) -> np.ndarray:
        torch = self.torch
        if self.threads and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        t = torch.from_numpy(np.ascontiguousarray(x))[None, None].to(self.device)
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        with torch.no_grad():
            if dtype is None:
                y = self.model(t)
            else:
                with torch.autocast(device_type="cuda" if self.kind == "cuda" else "cpu", dtype=dtype):
                    y = self.model(t)
        return y[0].float().cpu().numpy()

    def predict(self, padded: np.ndarray, out_shape: tuple[int, ...], context: tuple[int, ...],
                step: tuple[int, ...]) -> np.ndarray:
        """The network's output for ``padded`` (output + 2 · context); halves on out of memory."""
        try:
            return self.forward(padded)
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            if self.kind == "cuda":
                self.torch.cuda.empty_cache()
        axis = int(np.argmax(out_shape))
        half = (out_shape[axis] // 2) // step[axis] * step[axis]
        if half < max(step[axis], 8) or out_shape[axis] - half < 8:
            raise InputError("device memory", f"out of memory even for a block of {out_shape} voxels")
        with self._lock:
            self.backoffs += 1
        parts = []
        for lo, hi in ((0, half), (half, out_shape[axis])):
            sl = [slice(None)] * 3
            sl[axis] = slice(lo, hi + 2 * context[axis])
            shape = list(out_shape)
            shape[axis] = hi - lo
            parts.append(self.predict(padded[tuple(sl)], tuple(shape), context, step))
        return np.concatenate(parts, axis=axis + 1)


class _PredictBlock:
    """One block's prediction: picklable, so a Dask cluster's workers can run it.

    A worker process gets the raw volume's address, the model and the
    output's path, and opens them on first use (volume handles and torch
    devices do not travel).
    """

    def __init__(self, level: Level, model, output: ResumableOutput, device: Device, precision: str,
                 threads: int | None, block: tuple[int, ...], dtype: str) -> None:
        self.level, self.model, self.output = level, model, output
        self.device, self.precision, self.threads = device, precision, threads
        self.block, self.dtype = block, dtype
        self.context = tuple(int(c) for c in model.config.context)
        self.step = tuple(int(s) for s in model.config.step)
        self._net: _Network | None = None
        self._lock = threading.Lock()

    @property
    def backoffs(self) -> int:
        return 0 if self._net is None else self._net.backoffs

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if not isinstance(self.level, tuple):  # (a worker may pickle it again before opening it)
            state["level"] = (str(self.level.array.source), tuple(self.level.spatial_voxel_size))
        if not isinstance(self.output, tuple):
            state["output"] = (str(self.output.path), self.output.signature)
        state["_net"], state["_lock"] = None, None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._reopened = False

    def _open(self) -> None:
        if isinstance(self.level, tuple):
            from napari_connectome.volume import open_volume

            source, vs = self.level
            self.level = open_volume(source, voxel_size=vs).levels[0]
        if isinstance(self.output, tuple):
            path, signature = self.output
            self.output = ResumableOutput.reopen(path, signature=signature)
        if self._net is None:
            self._net = _Network(self.model, self.device, self.precision, self.threads)

    def __call__(self, b) -> int:
        with self._lock:
            self._open()
        level, block, context = self.level, self.block, self.context
        lo = [int(v) for v in b.write_roi.begin]
        hi = [int(v) for v in b.write_roi.end]
        full_hi = [a + n for a, n in zip(lo, block, strict=True)]  # a far-border block is clipped: predict it whole
        sl = tuple(slice(a - c, h + c) for a, h, c in zip(lo, full_hi, context, strict=True))
        raw = _normalise(level.read(level.roi_of(sl), outside="reflect"))
        affs = self._net.predict(raw, block, context, self.step)
        keep = (slice(None), *(slice(0, h - a) for a, h in zip(lo, hi, strict=True)))
        self.output.write((slice(None), *(slice(a, h) for a, h in zip(lo, hi, strict=True))),
                          _quantise(affs[keep], self.dtype))
        return b.block_id


def _quantise(affs: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "float32":
        return affs.astype(np.float32, copy=False)
    return np.clip(np.rint(affs * 255.0), 0, 255).astype(np.uint8)


def predict_to_zarr(level: Level, model, out: str | os.PathLike, *, device: Device, signature: dict[str, Any],
                    block=None, dtype: str = "uint8", precision: str = "fp32", scheduler="threads",
                    workers: int | None = None, threads: int | None = None, progress: Progress | None = None,
                    cancel=None, region=None, before_writing=None) -> PredictReport:
    """Predict affinities of ``level`` block by block into the OME-Zarr ``out``, resuming an earlier run.

    Parameters
    ----------
    level
        The raw EM (3D, at the model's voxel size).
    model
        The network (``config`` with ``context``, ``step``, ``offsets``, valid shapes).
    out
        OME-Zarr folder of the output ``(c, z, y, x)``; its done-ledger lives inside.
    device
        From :func:`~napari_connectome.inference.device.choose_device`.
    signature
        What identifies the run besides the grid (model sha256, input identity, ...): an
        output made with another signature is not continued (:class:`~napari_connectome.pyramid.resumable.OutputMismatch`).
    block
        Output block edge (voxels; an int or ``(z, y, x)``), a multiple of the network's step. None: from
        the device's free memory.
    dtype
        ``"uint8"`` (affinity × 255, default) or ``"float32"``.
    precision
        ``"fp32"``, or autocast to ``"bf16"`` / ``"fp16"`` (GPU; measured against fp32 before use).
    scheduler, workers
        As for :func:`~napari_connectome.blockwise.run_blockwise`. One worker by default: the network
        already uses every core (CPU) or the whole GPU.
    threads
        torch intra-op threads (CPU; default: torch's). Fixed per run, so the bytes do not depend on it
        between runs.
    progress, cancel
        Progress (one step per block) and a cancel flag, checked between blocks.
    region
        ``(begin, end)`` voxel indices (z, y, x) of the part to predict, grown to whole blocks;
        None: the whole volume. The output always has the volume's shape (fill 0 elsewhere).
    before_writing
        Called (no arguments) before anything is written when the output is not already complete
        with this signature; it may raise to refuse the run (e.g. supervoxels that have edits).

    The output is left incomplete (resumable); the caller marks it complete with its
    provenance record (``report.output.finish(record)``).

    Raises
    ------
    InputError
        Bad parameters, a 2D or empty volume, an unwritable output, or out of memory at the smallest block.
    """
    if dtype not in DTYPES:
        raise InputError("--dtype", f"{dtype!r} is not one of {', '.join(DTYPES)}")
    if precision not in PRECISIONS:
        raise InputError("--precision", f"{precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.kind == "cpu":
        raise InputError("--precision", "fp16 needs a GPU; on the CPU use fp32 or bf16")
    cfg = model.config
    context = tuple(int(c) for c in cfg.context)
    block = choose_block(model, device, requested=block)
    shape = tuple(int(level.shape[i]) for i in level.spatial)
    grid = region_grid(shape, block, context, region)
    channels = int(cfg.out_channels)
    full_signature = {**signature, "grid": grid.describe(), "dtype": dtype, "precision": precision,
                      "offsets": [list(map(int, o)) for o in getattr(cfg, "offsets", None) or ()]}
    if before_writing is not None and output_state(out) != (json.loads(json.dumps(full_signature)), True):
        before_writing()
    output = ResumableOutput.open(out, shape=(channels, *shape), chunks=(channels, *block), dtype=dtype,
                                  axes="czyx", voxel_size=level.spatial_voxel_size, offset=level.spatial_offset,
                                  kind="image", signature=full_signature)
    process = _PredictBlock(level, model, output, device, precision, threads, block, dtype)
    ledger = Ledger(ledger_path(out), signature={"grid": grid.describe(), "run": full_signature})
    try:
        summary = run_blockwise(process, grid, scheduler=scheduler, workers=workers or 1, ledger=ledger,
                                progress=progress, cancel=cancel, description="affinities")
    finally:
        ledger.close()
    return PredictReport(Path(out), len(grid), summary.ran, summary.skipped, block, process.backoffs, output)
