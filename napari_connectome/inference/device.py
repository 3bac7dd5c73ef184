"""Which device runs the network, and why: CUDA > MPS > CPU, said in one sentence.

What users of napari EM plugins report most is a GPU that is silently not
used (a CPU-only torch wheel, a hidden device, a driver too old) and a run
that dies out of memory with no control over tiles. So the choice is always
explained — the ``reason`` names what was found and what was missing — and a
requested device that cannot be used is refused with that reason, never
replaced quietly by the CPU. The memory the device has free is measured
here, so the tiling can be chosen from it (:func:`block_edge_for_memory`),
and :func:`with_backoff` halves the block when the device runs out anyway.

torch is imported only when a function here is called: the engine runs,
and its tests pass, without the ``models`` extra.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from napari_connectome.errors import InputError
from napari_connectome.memory import available_memory, human_bytes

CHOICES = ("auto", "cuda", "mps", "cpu")


@dataclass(frozen=True)
class Device:
    """A device chosen to run the network.

    Attributes
    ----------
    name
        torch device string: ``cuda:0``, ``mps`` or ``cpu``.
    kind
        ``cuda``, ``mps`` or ``cpu``.
    reason
        One sentence: what was found, and why this device (for the panel and the provenance).
    free_bytes
        Memory free on the device when it was chosen (CPU: available RAM).
    description
        The hardware, e.g. ``NVIDIA H200 (139.8 GiB)`` or ``2 CPU cores``.
    """

    name: str
    kind: str
    reason: str
    free_bytes: int
    description: str

    def as_record(self) -> dict[str, Any]:
        """The device as a provenance field."""
        return {"name": self.name, "kind": self.kind, "description": self.description, "reason": self.reason}


def _torch():
    try:
        import torch
    except ImportError:
        raise InputError("torch", "is not installed; install the suite's models extra "
                                  "(pip install 'napari-connectome[models]')") from None
    return torch


def _cuda_problem(torch) -> str:
    """Why CUDA cannot be used, in words (for the reason and the refusal)."""
    if getattr(torch.version, "cuda", None) is None:
        return f"torch {torch.__version__} is a CPU-only build (install a CUDA wheel of torch to use a GPU)"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return f"CUDA_VISIBLE_DEVICES={visible!r} hides every GPU"
    try:
        count = torch.cuda.device_count()
    except Exception as exc:  # a driver problem surfaces here
        return f"the CUDA driver did not answer ({type(exc).__name__}: {exc})"
    if count == 0:
        return f"torch {torch.__version__} has CUDA {torch.version.cuda}, but no GPU is visible (driver or container)"
    return "CUDA is not usable"


def _mps_available(torch) -> bool:
    backend = getattr(getattr(torch, "backends", None), "mps", None)
    return bool(backend is not None and backend.is_available())


def choose_device(requested: str = "auto") -> Device:
    """The device to run on: ``auto`` (CUDA > MPS > CPU) or the one ``requested``.

    Raises
    ------
    InputError
        An unknown name, or a requested device that cannot be used (with the reason).
    """
    requested = str(requested).strip().lower()
    base = requested.split(":")[0]
    if base not in CHOICES:
        raise InputError("--device", f"{requested!r} is not one of {', '.join(CHOICES)} (cuda:N picks a GPU)")
    torch = _torch()
    cuda_ok = torch.cuda.is_available()
    if base in ("auto", "cuda") and cuda_ok:
        index = int(requested.split(":")[1]) if ":" in requested else 0
        if index >= torch.cuda.device_count():
            raise InputError("--device", f"{requested}: only {torch.cuda.device_count()} GPU(s) are visible")
        free, total = torch.cuda.mem_get_info(index)
        name = torch.cuda.get_device_name(index)
        why = "requested" if base == "cuda" else "a CUDA GPU was found"
        return Device(f"cuda:{index}", "cuda", f"{why}: {name}, {human_bytes(free)} free of {human_bytes(total)}",
                      int(free), f"{name} ({human_bytes(total)})")
    if base == "cuda":
        raise InputError("--device", f"cuda cannot be used: {_cuda_problem(torch)}")
    if base in ("auto", "mps") and _mps_available(torch):
        free = available_memory()  # unified memory: the system's
        why = "requested" if base == "mps" else f"no CUDA GPU ({_cuda_problem(torch)}); Apple MPS was found"
        return Device("mps", "mps", why, int(free), "Apple GPU (MPS)")
    if base == "mps":
        raise InputError("--device", "mps cannot be used: this torch build or machine has no Apple MPS backend")
    cores = os.cpu_count() or 1
    if base == "cpu":
        why = "requested"
    else:
        why = f"no GPU: {_cuda_problem(torch)}" + ("" if _mps_available(torch) else "; no Apple MPS")
    return Device("cpu", "cpu", f"CPU ({why})", int(available_memory()), f"{cores} CPU core(s)")


def block_edge_for_memory(free_bytes: int, *, bytes_per_voxel: float, context: tuple[int, ...],
                          multiple: tuple[int, ...] = (1, 1, 1), fraction: float = 0.5,
                          largest: int = 512, smallest: int = 16) -> tuple[int, ...]:
    """The largest output block (voxels per axis, one cube edge, grid-aligned) that fits ``fraction`` of ``free_bytes``.

    Parameters
    ----------
    bytes_per_voxel
        The network's working memory per *input* voxel (activations, outputs), measured or estimated.
    context
        Voxels of context the network needs in total per axis (input = output + context).
    multiple
        The output edge per axis must be a multiple of this (the network's downsampling).

    Raises
    ------
    InputError
        Not even the smallest block fits.
    """
    budget = float(free_bytes) * float(fraction)
    edge = int(largest)
    while edge >= smallest:
        out = tuple(max(m, (edge // m) * m) for m in multiple)
        need = bytes_per_voxel
        for o, c in zip(out, context, strict=True):
            need *= o + c
        if need <= budget:
            return out
        edge //= 2
    raise InputError("device memory", f"{human_bytes(free_bytes)} free is too little for the smallest block "
                                      f"({smallest} voxels per axis plus {tuple(context)} of context)")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for the errors a device raises when it runs out of memory."""
    if isinstance(exc, MemoryError):
        return True
    name = type(exc).__name__
    return name == "OutOfMemoryError" or (isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower())


def with_backoff(run: Callable[[tuple[int, ...]], Any], block: tuple[int, ...], *,
                 multiple: tuple[int, ...] = (1, 1, 1), smallest: int = 16,
                 on_backoff: Callable[[tuple[int, ...], BaseException], None] | None = None) -> tuple[Any, tuple[int, ...]]:
    """``run(block)``; out of memory → the block halved (grid-aligned) and run again, down to ``smallest``.

    Returns ``(result, the block that worked)``; the caller keeps using that block.

    Raises
    ------
    InputError
        Out of memory even at the smallest block.
    """
    current = tuple(int(b) for b in block)
    while True:
        try:
            return run(current), current
        except Exception as exc:
            if not is_out_of_memory(exc):
                raise
            _empty_cache()
            smaller = tuple(max(m, ((b // 2) // m) * m) for b, m in zip(current, multiple, strict=True))
            if smaller == current or min(smaller) < smallest:
                raise InputError("device memory", f"out of memory even with blocks of {current} voxels "
                                                  f"({type(exc).__name__})") from None
            if on_backoff is not None:
                on_backoff(smaller, exc)
            current = smaller


def _empty_cache() -> None:
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
