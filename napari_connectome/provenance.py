"""Provenance: what made a computed output — software, parameters, inputs, model, tiling, device, timings.

Every output the suite computes carries one record, so a figure or a
segmentation can be traced to the code and the data it came from:

* outputs inside a project (graph, merge tree, skeletons, and the
  inference stages) are recorded in the project's manifest under
  ``"provenance"``, keyed by the component;
* volumes the suite writes (``convert``, ``synthetic``, predictions) carry
  theirs in the OME-Zarr group's attributes under
  ``"napari_connectome": {"provenance": …}``, where any zarr reader sees it —
  without the times and the host, so that the same work gives the same bytes.

Inputs are identified without reading their voxels (a volume can be
terabytes): format, shape, dtype, voxel size, and a digest of the metadata
the format stores. A record is plain JSON; ``napari-connectome provenance
PATH`` prints the records of a project or a volume.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import platform
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Key of the provenance record in an OME-Zarr group's attributes.
ATTRIBUTE = "napari_connectome"
#: The record format (bumped when a field changes meaning).
SCHEMA = 1

_METADATA_FILES = (".zattrs", ".zarray", ".zgroup", "zarr.json", "info", "attributes.json")
#: How deep below a store's root metadata is looked for (root, a level, an array in a level's group).
_METADATA_DEPTH = 2


def suite_version() -> str:
    """The installed suite's version (from the package metadata: importing the package root would
    pull in the whole engine, and this module sits below it)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("napari-connectome")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def software(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Versions of the suite, Python, NumPy and any already imported ``extra`` packages (e.g. torch)."""
    import numpy as np

    out = {"napari-connectome": suite_version(), "python": platform.python_version(), "numpy": np.__version__}
    from importlib.metadata import PackageNotFoundError, version

    for name in extra:
        module = sys.modules.get(name)
        if module is None:
            continue  # not used by this run
        found = getattr(module, "__version__", None)
        if found is None:  # some (kimimaro) keep it only in their distribution's metadata
            try:
                found = version(name)
            except PackageNotFoundError:
                continue
        out[name] = str(found)
    return out


def _metadata_digest(path: Path) -> str | None:
    """sha256 over the metadata files a chunked format keeps (not the chunks), or a small file's stamp.

    Metadata lives in the store's root and its arrays' folders (a level or
    two down); chunk trees below them can hold millions of files, so the walk
    stops at :data:`_METADATA_DEPTH` and never lists a chunk folder.
    """
    h = hashlib.sha256()
    found = False
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            depth = len(Path(root).relative_to(path).parts)
            # Below the root (where OME-Zarr levels are named 0, 1, …), zarr v3's "c/" trees and v2's
            # nested chunk indices (digits) hold chunks; deeper folders too.
            if depth >= _METADATA_DEPTH:
                dirs[:] = []
            else:
                dirs[:] = sorted(d for d in dirs if d != "c" and (depth == 0 or not d.isdigit()))
            for name in sorted(files):
                if name in _METADATA_FILES:
                    file = Path(root) / name
                    h.update(str(file.relative_to(path)).encode())
                    h.update(file.read_bytes())
                    found = True
    elif path.is_file():
        stat = path.stat()
        # A single-file format (HDF5, TIFF): its size and modification time stand for its content;
        # hashing gigabytes to open a record would cost more than the output.
        h.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        found = True
    return h.hexdigest() if found else None


def volume_identity(volume) -> dict[str, Any]:
    """What identifies a :class:`~napari_connectome.volume.MultiscaleVolume` without reading its voxels."""
    level = volume.levels[0]
    identity: dict[str, Any] = {
        "source": str(volume.source),
        "format": volume.format,
        "shape": list(level.shape),
        "dtype": str(level.dtype),
        "voxel_size_nm": [float(v) for v in level.voxel_size],
        "offset_nm": [float(v) for v in level.offset],
        "levels": len(volume.levels),
    }
    local = local_path(str(volume.source))
    if local is not None:
        digest = _metadata_digest(local)
        if digest is not None:
            identity["metadata_sha256"] = digest
    return identity


def local_path(source: str) -> Path | None:
    """The local file or folder behind a source URI (``file.h5/dataset`` → ``file.h5``), else None."""
    if "://" in source and not source.startswith("file://"):
        return None
    path = Path(source.removeprefix("file://"))
    while not path.exists() and path.parent != path:
        path = path.parent  # an HDF5 dataset inside its file
    return path if path.exists() and str(path) != path.anchor else None


def _jsonable(value: Any) -> Any:
    """Parameters as JSON: tuples → lists, numpy scalars → numbers, paths → strings."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 1) == 0:
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


class Recorder:
    """Collects one output's record while it is computed; see :func:`recording`.

    Attributes
    ----------
    record
        The record so far (JSON-able dict).
    """

    def __init__(self, kind: str, *, parameters: Mapping[str, Any] | None = None,
                 inputs: Mapping[str, Any] | None = None, extra_software: tuple[str, ...] = ()) -> None:
        self.record: dict[str, Any] = {
            "schema": SCHEMA,
            "kind": kind,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "software": software(extra_software),
            "host": {"platform": platform.platform(), "cpus": os.cpu_count()},
            "parameters": _jsonable(dict(parameters or {})),
            "inputs": _jsonable(dict(inputs or {})),
            "timings_s": {},
        }
        self._extra = extra_software
        self._start = time.perf_counter()

    def input(self, name: str, identity: Mapping[str, Any]) -> None:
        """Add an input's identity (:func:`volume_identity`, or any JSON-able description)."""
        self.record["inputs"][name] = _jsonable(dict(identity))

    def set(self, key: str, value: Any) -> None:
        """Set a field: ``model`` (name, sha256), ``tiling``, ``device``, ``outputs`` …"""
        self.record[key] = _jsonable(value)

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Time a stage; its seconds are added to ``timings_s[stage]``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - start
            timings = self.record["timings_s"]
            timings[stage] = round(timings.get(stage, 0.0) + spent, 4)

    def finish(self) -> dict[str, Any]:
        """The finished record (total time; software again, for packages imported meanwhile)."""
        self.record["timings_s"]["total"] = round(time.perf_counter() - self._start, 4)
        self.record["software"] = software(self._extra)
        return self.record


# -- where records live --------------------------------------------------------------
def record_in_project(project, component: str, record: Mapping[str, Any]) -> None:
    """Keep ``record`` in the project's manifest under ``provenance[component]`` (saved by the caller)."""
    project.manifest.setdefault("provenance", {})[component] = _jsonable(dict(record))


#: Fields that differ between two runs of the same work (when, how long, on which machine,
#: and how this run went: blocks resumed, memory back-offs).
VARYING = ("created", "timings_s", "host", "run")


def zarr_attributes(record: Mapping[str, Any]) -> dict[str, Any]:
    """The group attributes that carry ``record`` in an OME-Zarr the suite writes.

    Without the :data:`VARYING` fields: the same inputs and parameters must
    give the same bytes, metadata included (resumed, re-blocked and repeated
    runs are compared byte for byte). Times of project outputs are kept in
    the project's manifest.
    """
    stable = {k: v for k, v in dict(record).items() if k not in VARYING}
    return {ATTRIBUTE: {"provenance": _jsonable(stable)}}
