"""Memory and disk guards: say up front that work will not fit, instead of running the machine out.

Work whose size follows from its input (voxels × bytes, edges × bytes per
edge, a pyramid's bytes on disk) estimates what it needs *before* the large
allocation and calls :func:`check_memory` or :func:`check_disk`; they raise
one :class:`~napari_connectome.errors.InputError` line naming the file, the
estimate and what the machine has, and how to raise the limit.

Environment variables
---------------------
NAPARI_CONNECTOME_MEMORY_GB
    The memory the suite may plan to use, in GiB (default: what the
    operating system reports as available when the check runs). Setting it
    higher than the machine has is allowed: the person has then chosen to
    rely on swap or on an estimate they know to be pessimistic.
"""

from __future__ import annotations

import os
import shutil

from napari_connectome.errors import InputError

ENV_MEMORY_GB = "NAPARI_CONNECTOME_MEMORY_GB"
GiB = 2**30


def human_bytes(n: float) -> str:
    """``1.5 GiB``, ``820 MiB``, ``3.2 EiB`` …"""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            break
        n /= 1024
    else:  # pragma: no cover - the loop always breaks
        unit = "PiB"
    if unit == "PiB" and abs(n) >= 1024:
        return f"{n / 1024:.3g} EiB"
    if unit == "B":
        return f"{int(n)} B"
    # 1000-1023 of a unit: whole numbers, not "1.01e+03".
    return f"{n:.0f} {unit}" if abs(n) >= 1000 else f"{n:.3g} {unit}"


def available_memory() -> int:
    """Bytes of memory the operating system reports as available now (RAM not in use)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:  # other POSIX systems
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # no way to tell: do not block work on a guess
        return 2**62


def memory_limit(limit_gb: float | None = None) -> int:
    """The memory (bytes) work may plan to use: ``limit_gb``, else the environment, else what is available."""
    if limit_gb is None:
        text = os.environ.get(ENV_MEMORY_GB)
        if text is None or not text.strip():
            return available_memory()
        try:
            limit_gb = float(text)
        except ValueError:
            raise InputError(ENV_MEMORY_GB, f"{text!r} is not a number of GiB") from None
        source = ENV_MEMORY_GB
    else:
        source = "--memory-gb"
    if not (limit_gb > 0 and limit_gb < float("inf")):
        raise InputError(source, f"must be a number of GiB > 0, got {limit_gb!r}")
    return int(limit_gb * GiB)


def check_memory(need: float, *, what: str, source, limit_gb: float | None = None, held: float = 0) -> None:
    """Refuse (one line) when ``need`` bytes exceed the memory limit.

    Parameters
    ----------
    need
        Estimated peak bytes of the work.
    what
        The work, e.g. ``"the region graph of 1,000,000 supervoxels"``.
    source
        The file or volume the estimate comes from (named in the error).
    limit_gb
        An explicit limit in GiB (a command's ``--memory-gb``); default:
        :func:`memory_limit`.
    held
        Bytes of ``need`` the work already holds (a check made part-way).
        An explicit limit (``limit_gb`` or the environment) bounds the whole
        ``need``; what the system reports as available no longer includes
        ``held``, so it is added back.
    """
    limit = memory_limit(limit_gb)
    explicit = limit_gb is not None or bool(os.environ.get(ENV_MEMORY_GB, "").strip())
    if not explicit:
        limit += int(held)
    if need > limit:
        raise InputError(
            source,
            f"{what} needs about {human_bytes(need)} of memory, but only {human_bytes(limit)} "
            f"is available; nothing was written (use a smaller region, or raise the limit with "
            f"--memory-gb or {ENV_MEMORY_GB} if the estimate is too pessimistic)",
        )


def free_disk(path) -> int:
    """Free bytes on the file system that holds ``path`` (or its nearest existing parent)."""
    p = os.path.abspath(os.fspath(path))
    while not os.path.exists(p):
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    try:
        return int(shutil.disk_usage(p).free)
    except OSError:
        return 2**62  # cannot tell: the write itself will say if the disk fills


def check_disk(need: float, *, what: str, path, hint: str = "") -> None:
    """Refuse (one line) when ``need`` bytes cannot fit on the disk holding ``path``."""
    free = free_disk(path)
    if need > free:
        extra = f"; {hint}" if hint else ""
        raise InputError(
            path,
            f"{what} needs at least {human_bytes(need)} on disk but only {human_bytes(free)} is free; "
            f"nothing was written{extra}",
        )


_malloc_trim = None  # glibc's malloc_trim once looked up; False where there is none


def release_free_memory() -> None:
    """Hand memory that was freed but kept by the C allocator back to the system.

    glibc keeps freed blocks below its (adaptive, up to 32 MiB) mmap threshold
    in per-thread heaps. Work that frees many mid-sized NumPy arrays made in
    worker threads (per-block results, folded into one sorted array) would
    otherwise hold that memory until the process ends, and the peak would
    count it twice. ``malloc_trim(0)`` returns it; elsewhere this does nothing.
    """
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes

            # The running process's own symbols: libc's on Linux, no search of the disk.
            _malloc_trim = getattr(ctypes.CDLL(None), "malloc_trim", False)
        except (OSError, TypeError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)
