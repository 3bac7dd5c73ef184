"""The project folder: the proofreading workspace on disk.

A project is a directory holding ``napari-connectome.json`` (the manifest): a
versioned record of its inputs (raw EM, optional supervoxels and boundary map,
by reference — the data are never copied), their voxel size in nm, and the
*components* that later stages write inside the folder (the supervoxel graph,
the edit log, tasks, the effort log). A component is registered by name with
the path it owns, so every stage finds its files through the manifest and an
older suite can tell what it does not know.

The manifest is written atomically (temporary file, fsync, rename): a crash
leaves either the old or the new manifest, never half of one.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from napari_connectome.atomic import write_json_atomic
from napari_connectome.config import check_voxel_size
from napari_connectome.errors import InputError
from napari_connectome.volume import MultiscaleVolume, open_volume, parse_uri

MANIFEST = "napari-connectome.json"
FORMAT = "napari-connectome-project"
VERSION = 1
INPUT_KINDS = {"raw": "image", "supervoxels": "labels", "boundaries": "image", "groundtruth": "labels"}

# Where each later stage keeps its state inside the project (relative paths).
# Registering them up front keeps two stages from claiming the same file.
COMPONENT_PATHS = {
    "graph": "graph",  # region adjacency graph and merge tree (issue: supervoxel graph)
    "edit_log": "edits.sqlite",  # append-only edit log
    "tasks": "tasks",  # ranked candidates and micro-tasks
    "effort_log": "effort.sqlite",  # active time per task
    "skeletons": "skeletons",
    "exports": "exports",
}


def is_project(path: str | os.PathLike) -> bool:
    """True if ``path`` is a directory holding a project manifest."""
    p = Path(path)
    return p.is_dir() and (p / MANIFEST).is_file()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _reference(uri: str | os.PathLike) -> str:
    """How an input is stored: absolute for local paths, as given for URIs."""
    loc = parse_uri(uri)
    if not loc.is_local:
        return loc.uri
    path = os.path.abspath(loc.path)
    return f"{path}/{loc.inner}" if loc.inner else path


@dataclass
class Project:
    """An open project folder.

    Attributes
    ----------
    root
        The project directory.
    manifest
        The parsed manifest (see :func:`create_project` for its fields).
    """

    root: Path
    manifest: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.manifest.get("name") or self.root.name

    @property
    def voxel_size(self) -> tuple[float, ...] | None:
        """The voxel size (nm) the user gave at creation, or None if from metadata."""
        vs = self.manifest.get("voxel_size_nm")
        return tuple(vs) if vs else None

    @property
    def inputs(self) -> dict[str, dict]:
        """Input records by role (``raw``, ``supervoxels``, ``boundaries``, ...)."""
        return dict(self.manifest.get("inputs", {}))

    def component_path(self, component: str) -> Path:
        """Where a stage keeps its files (``graph``, ``edit_log``, ``tasks``, ...)."""
        rel = self.manifest.get("components", {}).get(component) or COMPONENT_PATHS.get(component)
        if rel is None:
            raise InputError(self.root / MANIFEST, f"unknown project component {component!r}")
        return self.root / rel

    def open_input(self, role: str, *, on_error: str = "raise", notify=None) -> MultiscaleVolume:
        """Open one input volume lazily, at the project's voxel size."""
        record = self.inputs.get(role)
        if record is None:
            raise InputError(self.root / MANIFEST, f"the project has no {role} volume")
        volume = open_volume(
            record["uri"],
            voxel_size=self.voxel_size,
            kind=record.get("kind"),
            on_error=on_error,
            notify=notify,
        )
        volume.name = f"{role}" if not volume.name else f"{role}: {volume.name}"
        return volume

    def volumes(self, *, on_error: str = "raise", notify=None) -> dict[str, MultiscaleVolume]:
        """Every input volume, opened lazily, raw first."""
        return {
            role: self.open_input(role, on_error=on_error, notify=notify) for role in self.inputs
        }

    def save(self) -> None:
        """Write the manifest atomically."""
        self.manifest["modified"] = _now()
        write_json_atomic(self.root / MANIFEST, self.manifest)

    def register_component(self, component: str, relative_path: str | None = None) -> Path:
        """Record that a stage now keeps files in the project; returns their path."""
        rel = relative_path or COMPONENT_PATHS.get(component)
        if rel is None:
            raise InputError(component, "a new project component needs a relative path")
        comps = self.manifest.setdefault("components", {})
        clash = [c for c, p in comps.items() if p == rel and c != component]
        if clash:
            raise InputError(self.root / rel, f"already belongs to component {clash[0]!r}")
        comps[component] = rel
        self.save()
        return self.root / rel


def _input_record(role: str, uri, voxel_size) -> tuple[dict, MultiscaleVolume]:
    kind = INPUT_KINDS[role]
    volume = open_volume(uri, voxel_size=voxel_size, kind=kind)
    record = {
        "uri": _reference(uri),
        "kind": kind,
        "format": volume.format,
        "shape": list(volume.shape),
        "dtype": str(volume.dtype),
        "voxel_size_nm": list(volume.voxel_size),
        "voxel_size_assumed": volume.voxel_size_assumed,
        "offset_nm": list(volume.offset),
        "levels": len(volume.levels),
    }
    return record, volume


def create_project(
    root: str | os.PathLike,
    *,
    raw: str | os.PathLike,
    supervoxels: str | os.PathLike | None = None,
    boundaries: str | os.PathLike | None = None,
    groundtruth: str | os.PathLike | None = None,
    voxel_size=None,
    name: str | None = None,
    user: str | None = None,
) -> Project:
    """Create a project folder that refers to its input volumes.

    Parameters
    ----------
    root
        The project directory; created if missing, and it must not hold a
        project already (nothing saved is ever overwritten).
    raw
        URI of the EM volume.
    supervoxels, boundaries, groundtruth
        Optional URIs of the supervoxel labels, the boundary map (or
        affinities) and a ground-truth segmentation for measuring quality.
    voxel_size
        Voxel size of level 0 in nm, ``(z, y, x)``; None takes it from the
        files' metadata (and records when it had to be assumed).
    name
        Display name (default: the folder's name).
    user
        Who created it (default: the login name).

    Returns
    -------
    Project
        The new project.

    Raises
    ------
    InputError
        A project already exists at ``root``, an input cannot be opened, or
        the inputs disagree in shape or voxel size with the raw volume.
    """
    root = Path(root)
    if is_project(root):
        raise InputError(root, "a project already exists here; open it instead (nothing was changed)")
    if root.exists() and not root.is_dir():
        raise InputError(root, "exists and is not a directory")
    if voxel_size is not None:
        voxel_size = check_voxel_size(voxel_size, source="--voxel-size")
    inputs: dict[str, dict] = {}
    raw_record, raw_volume = _input_record("raw", raw, voxel_size)
    inputs["raw"] = raw_record
    for role, uri in (("supervoxels", supervoxels), ("boundaries", boundaries), ("groundtruth", groundtruth)):
        if uri is None:
            continue
        record, volume = _input_record(role, uri, voxel_size)
        spatial = [i for i, a in enumerate(volume.axes) if a in ("z", "y", "x")]
        raw_spatial = [i for i, a in enumerate(raw_volume.axes) if a in ("z", "y", "x")]
        shape = [volume.shape[i] for i in spatial]
        raw_shape = [raw_volume.shape[i] for i in raw_spatial]
        if shape != raw_shape:
            raise InputError(
                uri, f"{role} have shape {tuple(shape)} but the raw volume has {tuple(raw_shape)}"
            )
        vs = [volume.voxel_size[i] for i in spatial]
        raw_vs = [raw_volume.voxel_size[i] for i in raw_spatial]
        if any(abs(a - b) > 1e-6 * max(a, b) for a, b in zip(vs, raw_vs, strict=True)):
            raise InputError(
                uri, f"{role} have voxel size {tuple(vs)} nm but the raw volume has {tuple(raw_vs)} nm"
            )
        inputs[role] = record
    root.mkdir(parents=True, exist_ok=True)
    from napari_connectome import __version__

    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "name": name or root.resolve().name,
        "created": _now(),
        "created_by": user or _login(),
        "suite_version": __version__,
        "voxel_size_nm": list(voxel_size) if voxel_size is not None else None,
        "inputs": inputs,
        "components": {},
    }
    project = Project(root=root, manifest=manifest)
    project.save()
    return project


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"


def open_project(root: str | os.PathLike) -> Project:
    """Open an existing project folder.

    Raises
    ------
    InputError
        No manifest, a manifest that is not valid JSON, not ours, or from a
        newer suite.
    """
    root = Path(root)
    path = root / MANIFEST
    if not root.exists():
        raise InputError(root, "no such project folder")
    if not path.is_file():
        raise InputError(root, f"not a napari-connectome project (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, f"the project manifest is unreadable: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(path, "not a napari-connectome project manifest")
    version = manifest.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise InputError(
            path, f"project version {version!r} is newer than this suite understands ({VERSION}); update napari-connectome"
        )
    if "raw" not in manifest.get("inputs", {}):
        raise InputError(path, "the project manifest names no raw volume")
    return Project(root=root, manifest=manifest)
