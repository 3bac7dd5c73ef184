"""Writing files so that a crash leaves the old file or the new one, never half of one.

Every saved artefact of the suite (project manifest, region graph, merge tree,
skeletons, exports, pyramid metadata) goes through :func:`atomic_write`: the
content goes to a temporary file beside the target, is flushed to disk, and
replaces the target with one rename.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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


@contextmanager
def atomic_write(path: str | os.PathLike, *, tmp_name: str | None = None) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``.

    Parameters
    ----------
    path
        The file to (re)place.
    tmp_name
        Name of the temporary file in the same folder (default ``NAME.tmp``);
        give one with the right extension when a writer infers the format
        from it.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    tmp = path.with_name(tmp_name or path.name + ".tmp")
    try:
        yield tmp
        _fsync_path(tmp, os.O_RDONLY)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
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
