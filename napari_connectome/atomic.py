"""Writing files so that a crash leaves the old file or the new one, never half of one.

Every saved artefact of the suite (project manifest, region graph, merge tree,
skeletons, exports, pyramid metadata) goes through :func:`atomic_write`: the
content goes to a temporary file beside the target, is flushed to disk, and
replaces the target with one rename.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def fsync_dir(path: str | os.PathLike) -> None:
    """Make renames inside folder ``path`` durable (best effort: some file systems refuse)."""
    _fsync_path(Path(path), os.O_RDONLY)


def _fsync_path(path: Path, flags: int) -> None:
    try:
        fd = os.open(path, flags)
    except OSError:  # some filesystems refuse opening directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def unique_tmp_name(name: str) -> str:
    """``name`` with ``.<pid>-<random>`` before its last extension (after the first character of a hidden name)."""
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem.strip("."):
        return f"{name}.{tag}"
    return f"{stem}.{tag}.{ext}"


# What ``unique_tmp_name`` makes of a hidden name: ``.NAME.<pid>-<8 hex>[.ext]``.
_TEMPORARY = re.compile(r"^\..+\.(\d+)-[0-9a-f]{8}(\.[A-Za-z0-9]+)?$")


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host may be running; when in doubt, yes.

    On Windows the answer is always yes: there ``os.kill(pid, 0)`` is not a
    probe but a console control event sent to the process.
    """
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, OverflowError):  # PermissionError: another user's, alive
        return True
    return True


def remove_dead_temporaries(folder: str | os.PathLike) -> list[str]:
    """Remove the temporary files that killed writers of :func:`atomic_write` left in ``folder``.

    A writer killed between creating its temporary file and the rename
    leaves ``.NAME.<pid>-<random>[.ext]`` beside ``NAME``: the target itself
    is whole (old or new), but the leftover would stay forever and a resumed
    run's folder would not equal an uninterrupted one's. Only files whose
    process is gone from this host are removed (ours and live ones stay);
    the folder itself is not descended. Call it where one run owns the
    folder's files (a resumed output, the project's own segmentation).

    Returns
    -------
    list of str
        The names removed.
    """
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    removed = []
    for name in names:
        m = _TEMPORARY.match(name)
        if m is None or process_alive(int(m.group(1))):  # (this process is alive too)
            continue
        path = Path(folder) / name
        if path.is_symlink() or not path.is_file():
            continue
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(name)
    return removed


@contextmanager
def atomic_write(path: str | os.PathLike, *, tmp_name: str | None = None) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``.

    Parameters
    ----------
    path
        The file to (re)place.
    tmp_name
        Name of the temporary file in the same folder (default
        ``.NAME.<unique>.tmp``); give one with the right extension when a
        writer infers the format from it (a unique part is added before the
        extension).

    On an exception the temporary file is removed and ``path`` is untouched.
    Two programs writing the same target at once never share a temporary
    file: its name carries the process id and a random part, so the last
    rename wins and neither sees the other's half-written bytes.
    """
    path = Path(path)
    tmp = path.with_name(unique_tmp_name(tmp_name or f".{path.name}.tmp"))
    try:
        yield tmp
        _fsync_path(tmp, os.O_RDONLY)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:
            # A writer's "disk full" often names no file: the one being saved is the one to name.
            exc.filename = os.fspath(path)
        raise
    # Make the rename itself durable.
    _fsync_path(path.parent, os.O_RDONLY)


def write_json_atomic(path: str | os.PathLike, data, *, indent: int | None = 2, tmp_name: str | None = None) -> Path:
    """Write ``data`` as JSON atomically; returns the path."""
    with atomic_write(path, tmp_name=tmp_name) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=indent)
        f.write("\n")
    return Path(path)


def save_npz_atomic(path: str | os.PathLike, arrays: dict) -> Path:
    """Write NumPy arrays as an ``.npz`` atomically; returns the path."""
    import numpy as np

    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return Path(path)
