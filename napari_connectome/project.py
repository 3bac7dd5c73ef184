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

import contextlib
import datetime as _dt
import getpass
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from napari_connectome import sqlite_log
from napari_connectome.atomic import write_json_atomic
from napari_connectome.config import check_voxel_size
from napari_connectome.errors import InputError, from_os_error
from napari_connectome.layout import COMPONENT_PATHS, MANIFEST, MANIFEST_LOCK
from napari_connectome.volume import MultiscaleVolume, open_volume, parse_uri

FORMAT = "napari-connectome-project"
VERSION = 1
INPUT_KINDS = {"raw": "image", "supervoxels": "labels", "boundaries": "image", "groundtruth": "labels"}
#: Manifest sections that record the identity of the project's logs
#: (``manifest["history"][section]``); changed only through :meth:`Project.record_history`.
HISTORY_SECTIONS = ("edit_log", "effort_log")

# What a project made from the EM volume alone still needs, said where its lack stops work.
NEEDS_SUPERVOXELS = (
    "this project has only its EM volume; proofreading needs supervoxels (the EM cut into small "
    "pieces): segment it here with the Segment panel or napari-connectome segment DIR, or make a "
    "project that names supervoxels from elsewhere (New project… in the Connectome panel)"
)


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

    @contextlib.contextmanager
    def _manifest_lock(self) -> Iterator[None]:
        """Hold the project's manifest lock: two programs never interleave a read-change-write."""
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; the rename stays atomic
            yield
            return
        try:
            fd = os.open(self.root / MANIFEST_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise from_os_error(exc, self.root / MANIFEST, action="the project cannot be changed") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _disk_history(self) -> dict:
        """``manifest["history"]`` as it is on disk now (another program may have recorded since)."""
        try:
            disk = json.loads((self.root / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            return dict(self.manifest.get("history") or {})
        history = disk.get("history") if isinstance(disk, dict) else None
        return dict(history) if isinstance(history, dict) else {}

    def _write(self) -> None:
        try:
            write_json_atomic(self.root / MANIFEST, self.manifest)
        except OSError as exc:
            raise from_os_error(exc, self.root / MANIFEST, action="the project was not changed") from None

    def save(self) -> None:
        """Write the manifest atomically.

        The ``history`` section is taken from the file as it is now, never
        from memory: it is changed only by :meth:`record_history`, so a
        program holding an older manifest cannot roll back what another
        recorded about the logs.
        """
        with self._manifest_lock():
            self.manifest["history"] = self._disk_history()
            self.manifest["modified"] = _now()
            self._write()

    def history(self, section: str) -> dict | None:
        """What the project recorded about one of its logs (``edit_log``, ``effort_log``), or None."""
        value = (self.manifest.get("history") or {}).get(section)
        return dict(value) if isinstance(value, dict) else None

    def record_history(self, section: str, values: dict | None) -> None:
        """Record (or, with None, forget) the identity of a log in the manifest, atomically.

        Re-reads the manifest under the lock first, so concurrent recorders
        never undo each other, and changes nothing else on disk.
        """
        if section not in HISTORY_SECTIONS:
            raise InputError(self.root / MANIFEST, f"unknown history section {section!r}")
        with self._manifest_lock():
            history = self._disk_history()
            if values is None:
                history.pop(section, None)
            else:
                history[section] = dict(values)
            try:
                disk = json.loads((self.root / MANIFEST).read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError):
                disk = None
            if not isinstance(disk, dict) or disk.get("format") != FORMAT:
                disk = dict(self.manifest)
            disk["history"] = history
            self.manifest["history"] = history
            try:
                write_json_atomic(self.root / MANIFEST, disk)
            except OSError as exc:
                raise from_os_error(exc, self.root / MANIFEST, action="the project was not changed") from None

    def set_aside(self, component: str, *, stamp: str | None = None) -> Path | None:
        """Move a component's file (and its SQLite sidecars) to ``NAME.aside-<UTC stamp>``; returns it.

        Nothing is deleted: the old file stays beside the new one for a person
        to inspect or restore. Returns None when there was no file.
        """
        path = self.component_path(component)
        if not (path.exists() or path.is_symlink()):
            return None
        stamp = stamp or _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        try:
            return sqlite_log.move_aside(path, f"aside-{stamp}")
        except OSError as exc:
            raise from_os_error(exc, path, action="it could not be moved aside") from None

    def input_is(self, role: str, uri: str | os.PathLike) -> bool:
        """Whether the project's ``role`` input is ``uri``, as :meth:`set_input` records it."""
        return (self.inputs.get(role) or {}).get("uri") == _reference(uri)

    def set_input(self, role: str, uri: str | os.PathLike) -> dict:
        """Record ``uri`` as the project's ``role`` volume (one the suite computed, say) and save.

        The volume must have the raw volume's spatial shape and voxel size.

        Raises
        ------
        InputError
            Unknown role, a volume that cannot be opened, or one that does not match the raw volume.
        """
        if role not in INPUT_KINDS or role == "raw":
            raise InputError(self.root / MANIFEST, f"{role!r} is not an input a stage can set")
        record, volume = _input_record(role, uri, self.voxel_size)
        raw = self.inputs.get("raw") or {}
        spatial = [i for i, a in enumerate(volume.axes) if a in ("z", "y", "x")]
        shape = [volume.shape[i] for i in spatial]
        raw_shape = list(raw.get("shape", shape))[-3:]
        if raw and shape != raw_shape:
            raise InputError(uri, f"{role} have shape {tuple(shape)} but the raw volume has {tuple(raw_shape)}")
        self.manifest.setdefault("inputs", {})[role] = record
        self.save()
        return record

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


def restart_log(project: Project, component: str = "edit_log") -> Path | None:
    """Start a new edit log (or effort log) on the next opening, keeping the old file aside.

    The explicit way out when a log was lost (the openings refuse a missing,
    emptied, foreign or shortened log): the old file, if any, is renamed to
    ``NAME.aside-<UTC stamp>`` and the project's record of it is replaced by
    a note of the restart. Nothing is deleted.

    Returns
    -------
    Path or None
        Where the old file now is (None if there was none).
    """
    if component not in HISTORY_SECTIONS:
        raise InputError(component, f"only {' and '.join(HISTORY_SECTIONS)} can be restarted")
    aside = project.set_aside(component)
    project.record_history(component, {"restarted": _now(), "aside": None if aside is None else aside.name,
                                       "previous": project.history(component)})
    # The next opening registers the new file; until then the project has none.
    if (project.manifest.get("components") or {}).pop(component, None) is not None:
        project.save()
    return aside


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
    from napari_connectome.outputs import guard_output

    root = Path(root)
    if is_project(root):
        raise InputError(root, "a project already exists here; open it instead (nothing was changed)")
    if root.exists() and not root.is_dir():
        raise InputError(root, "exists and is not a directory")
    # A new project may not be made inside another project's state (its graph folder, say).
    guard_output(root, folder=True, overwrite=True, what="project")
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
    made = [p for p in (root, *root.parents) if not p.exists()]
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise from_os_error(exc, root, action="no project was created") from None
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
    try:
        project.save()
    except (InputError, OSError) as exc:
        # A full or failing disk: leave nothing that looks like a half project.
        for leftover in (root / MANIFEST_LOCK, root / MANIFEST):
            with contextlib.suppress(OSError):
                leftover.unlink()
        for folder in made:  # innermost first: only the folders made here, and only if empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        problem = exc.problem if isinstance(exc, InputError) else str(from_os_error(exc))
        raise InputError(root, f"{problem.split(';')[0]}; no project was created") from None
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
        No manifest, a manifest that is not valid JSON, not ours, from a
        newer suite, or damaged (a field of the wrong type or out of range).
    """
    root = Path(root)
    path = root / MANIFEST
    if not root.exists():
        raise InputError(root, "no such project folder")
    if not root.is_dir():
        raise InputError(root, "is a file, not a project folder")
    if not path.is_file():
        raise InputError(root, f"not a napari-connectome project (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise from_os_error(exc, path, action="the project manifest could not be read") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(path, f"the project manifest is unreadable: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(path, "not a napari-connectome project manifest")
    version = manifest.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version > VERSION:
        raise InputError(
            path, f"project version {version!r} is newer than this suite understands ({VERSION}); update napari-connectome"
        )
    problem = _manifest_problem(manifest)
    if problem:
        raise InputError(path, f"the project manifest is damaged: {problem} (restore it from a backup)")
    return Project(root=root, manifest=manifest)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _manifest_problem(manifest: dict) -> str | None:
    """What is wrong with a parsed manifest's fields, or None.

    Checked once here so that no later stage meets a list where a mapping
    belongs, or a threshold of ``"abc"``, half-way through its work.
    """
    inputs = manifest.get("inputs")
    if not isinstance(inputs, dict):
        return f"'inputs' must be a mapping of role to volume, not {type(inputs).__name__}"
    if "raw" not in inputs:
        return "it names no raw volume"
    for role, record in inputs.items():
        if not isinstance(record, dict):
            return f"input {role!r} must be a mapping, not {type(record).__name__}"
        uri = record.get("uri")
        if not isinstance(uri, str) or not uri.strip():
            return f"input {role!r} has no 'uri'"
        kind = record.get("kind")
        if kind is not None and kind not in ("image", "labels"):
            return f"input {role!r} has kind {kind!r} (image or labels)"
    components = manifest.get("components", {})
    if not isinstance(components, dict):
        return f"'components' must be a mapping, not {type(components).__name__}"
    for name, rel in components.items():
        if not isinstance(rel, str) or not rel.strip():
            return f"component {name!r} has no path"
        parts = Path(rel).parts
        if Path(rel).is_absolute() or ".." in parts:
            return f"component {name!r} points outside the project ({rel!r})"
    vs = manifest.get("voxel_size_nm")
    if vs is not None and (not isinstance(vs, list) or not vs or not all(_is_number(v) and v > 0 for v in vs)):
        return f"'voxel_size_nm' must be positive numbers, got {vs!r}"
    for key in ("graph", "agglomeration", "history"):
        value = manifest.get(key)
        if value is not None and not isinstance(value, dict):
            return f"{key!r} must be a mapping, not {type(value).__name__}"
    agglo = manifest.get("agglomeration") or {}
    if "threshold" in agglo:
        t = agglo["threshold"]
        if not _is_number(t) or not 0.0 <= t <= 1.0:
            return f"the agglomeration threshold must be a number in [0, 1], got {t!r}"
    for section, value in (manifest.get("history") or {}).items():
        if not isinstance(value, dict):
            return f"history {section!r} must be a mapping"
    return None
