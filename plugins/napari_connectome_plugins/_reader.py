"""The napari reader: every format the engine opens, and project folders.

``get_reader(path)`` is cheap (it sniffs the format, it reads no voxels) and
never raises: it returns None for anything the engine cannot open that
another napari reader claims by name (a ``.png``, a ``.csv``), so napari asks
that reader; for anything nobody else claims it returns a reader that says in
one line why it cannot be opened (napari would otherwise raise its own error
and print a stack trace).

The reader it returns opens volumes lazily with ``on_error="fill"``: a corrupt
chunk shows as zeros and one warning per volume, never an exception inside
napari's drawing. Bad input found while opening shows one error line as a
napari notification and returns napari's "read, but no layers" value
``[(None,)]`` (napari 0.9.2 raises "returned no data" for ``[]`` when the
plugin was chosen by name), so the viewer keeps running.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from napari_connectome_plugins import _notify
from napari_connectome_plugins._layers import layer_data

logger = logging.getLogger(__name__)

LayerData = tuple[Any, dict[str, Any], str]
# napari's sentinel for "this reader handled the path and made no layers".
NO_LAYERS: list[tuple[None]] = [(None,)]

# How each project input is shown when a project opens: (visible, opacity).
ROLE_DISPLAY = {
    "raw": (True, None),
    "supervoxels": (True, 0.5),
    "boundaries": (False, None),
    "groundtruth": (False, 0.6),
}
# The engine's note about label images inside an OME-Zarr image (the reader opens them).
LABELS_NOTE = "also holds label images"
ROLE_ORDER = ("raw", "supervoxels", "boundaries", "groundtruth")
VOXEL_SIZE_HINT = "Set voxel size… (Alt+Z) in the Connectome panel sets the real one"


def can_read(path: str | os.PathLike) -> bool:
    """True if ``path`` is a project folder or a volume the engine can open.

    Cheap: checks for the project manifest or sniffs the format; reads no
    voxels. Never raises.
    """
    try:
        from napari_connectome.project import is_project
        from napari_connectome.volume import parse_uri
        from napari_connectome.volume.open import detect_format

        if is_project(path):
            return True
        detect_format(parse_uri(path))
        return True
    except Exception:  # anything we cannot open is "not ours"
        return False


def get_reader(path: str | os.PathLike | Sequence[str | os.PathLike]) -> Callable | None:
    """npe2 reader hook: a reader function for ``path``, or None if it is not ours.

    Parameters
    ----------
    path
        A file, folder or URI, or a list of them (napari's "stack" mode:
        each is opened as its own layer).

    Returns
    -------
    callable or None
        ``read(path) -> [(data, add_kwargs, layer_type), ...]``.
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else path
    if not isinstance(paths, (list, tuple)) or not paths:
        return None
    if not all(isinstance(p, (str, os.PathLike)) for p in paths):
        return None
    unreadable = [p for p in paths if not can_read(p)]
    if not unreadable:
        return read
    if any(_other_reader_wants(p) for p in unreadable):
        return None  # napari asks the reader made for it
    # Nobody else claims it: our "*" pattern made napari pick us, and returning None would
    # end in napari's ReaderPluginError and a stack trace in the terminal. Say it in one line.
    return _refuse


def _refuse(path, **kwargs) -> list:
    """The reader for paths nobody can open: one error line each, no layers."""
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    for p in paths:
        _notify.error(why_unreadable(p))
    return NO_LAYERS


def why_unreadable(path: str | os.PathLike) -> str:
    """One line saying why the engine cannot open ``path`` (the engine's own words where it has them)."""
    from napari_connectome.errors import ConnectomeError
    from napari_connectome.volume import parse_uri
    from napari_connectome.volume.open import detect_format

    try:
        detect_format(parse_uri(path))
    except ConnectomeError as exc:
        return _notify.one_line(exc)
    except Exception as exc:  # an unexpected refusal is still one line naming the file
        return _notify.one_line(f"{os.fspath(path)}: cannot be opened ({type(exc).__name__}: {exc})")
    return _notify.one_line(f"{os.fspath(path)}: cannot be opened as a volume or a project")


def _other_reader_wants(path: str | os.PathLike) -> bool:
    """Whether another napari reader claims ``path``: a pattern matching it (not just ``*``), or folders."""
    import fnmatch

    name = os.path.basename(os.fspath(path).rstrip("/")).lower()
    folder = os.path.isdir(path)
    try:
        from npe2 import PluginManager

        manager = PluginManager.instance()
        if not any(m.name == "napari" for m in manager.iter_manifests()):
            manager.discover(include_npe1=False)  # outside a viewer nothing is registered yet
        for manifest in manager.iter_manifests():
            if manifest.name == "napari-connectome":
                continue
            for reader in manifest.contributions.readers or []:
                if folder and reader.accepts_directories:
                    return True  # napari's own reader takes folders (image series): let napari choose
                patterns = [p.lower() for p in reader.filename_patterns if p not in ("*", "*.*")]
                if any(fnmatch.fnmatch(name, p) for p in patterns):
                    return True
    except Exception:  # no plugin manager to ask: let napari decide, as before
        logger.debug("could not ask npe2 for readers", exc_info=True)
        return True
    return False


def read(path: str | os.PathLike | Sequence[str | os.PathLike], **kwargs) -> list:
    """Read one path (or several) into napari layer data.

    Errors become one-line napari notifications; the viewer keeps running.
    Returns ``[(None,)]`` when nothing could be opened.
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    layers: list[LayerData] = []
    for p in paths:
        layers.extend(read_layers(p))
    return layers or NO_LAYERS


def read_layers(
    path: str | os.PathLike, *, voxel_size=None, kind: str | None = None, report: bool = True
) -> list[LayerData]:
    """Layer data for a project folder (all its inputs) or a single volume.

    Parameters
    ----------
    path
        Project folder, or volume URI (``FILE.h5/dataset`` for HDF5).
    voxel_size
        Voxel size of level 0 in nm ``(z, y, x)``, replacing the metadata's
        (ignored for projects, which keep their own).
    kind
        ``"image"`` or ``"labels"``; None infers it.
    report
        Show errors as napari notifications (True) or raise them (False).

    Returns
    -------
    list
        ``[(data, add_kwargs, layer_type), ...]``; empty when it failed and
        ``report`` is True.
    """
    from napari_connectome.errors import ConnectomeError
    from napari_connectome.project import is_project

    try:
        if is_project(path):
            return _project_layers(path, report=report)
        members = hdf5_members(path)
        if len(members) > 1:
            return _member_layers(path, members, voxel_size=voxel_size, kind=kind, report=report)
        return _volume_layers(path, voxel_size=voxel_size, kind=kind, report=report)
    except ConnectomeError as exc:
        if not report:
            raise
        _notify.error(exc)
    except Exception as exc:  # a library or our own bug: still one line, viewer lives
        if not report:
            raise
        logger.debug("reading %s failed", path, exc_info=True)
        _notify.error(f"{os.fspath(path)}: could not be opened: {type(exc).__name__}: {exc}")
    return []


def ngff_labels(path: str | os.PathLike) -> list[str]:
    """Names of the label images an OME-Zarr image lists in its ``labels`` group.

    Reads only the group's metadata (zarr v2 ``.zattrs`` or v3 ``zarr.json``);
    empty for anything else.
    """
    import json

    labels_dir = os.path.join(os.fspath(path), "labels")
    for name, pick in ((".zattrs", lambda d: d), ("zarr.json", lambda d: (d.get("attributes") or {}).get("ome") or {})):
        try:
            with open(os.path.join(labels_dir, name), encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, ValueError):
            continue
        names = pick(doc).get("labels") if isinstance(doc, dict) else None
        if isinstance(names, list):
            return [str(n) for n in names if str(n) and "/" not in str(n) and str(n) not in (".", "..")]
    return []


def _ngff_label_layers(path, *, voxel_size, report) -> list[LayerData]:
    """The NGFF label images stored inside an OME-Zarr image, as labels layers."""
    from napari_connectome.errors import ConnectomeError

    layers, volumes = [], []
    base = os.fspath(path).rstrip("/")
    for name in ngff_labels(base):
        try:
            volume = _open(f"{base}/labels/{name}", voxel_size=voxel_size, kind="labels")
        except ConnectomeError as exc:
            if not report:
                raise
            _notify.error(exc)
            continue
        layers.append(layer_data(volume, name=name, opacity=0.5))
        volumes.append(volume)
    _tell_notes(base, volumes)
    return layers


def hdf5_members(path: str | os.PathLike) -> list[str]:
    """The image datasets of a local HDF5 file given without a dataset path.

    Empty for anything else (a dataset address, another format, an
    unreadable file: opening it later says what is wrong).
    """
    from napari_connectome.volume import parse_uri
    from napari_connectome.volume.location import CONTAINER_SUFFIXES

    try:
        location = parse_uri(path)
        if not location.is_local or location.inner or not os.path.isfile(location.path):
            return []
        if not location.path.lower().endswith(CONTAINER_SUFFIXES):
            return []
        import h5py

        found: list[str] = []

        def visit(name, obj):
            if (
                isinstance(obj, h5py.Dataset)
                and obj.dtype.kind in "biuf"
                and len(obj.shape or ()) >= 2
            ):
                found.append(name)

        with h5py.File(location.path, "r") as f:
            f.visititems(visit)
        return found
    except Exception:  # not readable as HDF5: the backend reports it on open
        return []


def _member_layers(path, members, *, voxel_size, kind, report) -> list[LayerData]:
    """Every image dataset of one HDF5 file as a layer (display by dataset name)."""
    from napari_connectome.errors import ConnectomeError
    from napari_connectome.project import INPUT_KINDS

    base = os.fspath(path).rstrip("/")
    order = {r: i for i, r in enumerate(ROLE_ORDER)}
    members = sorted(members, key=lambda m: (order.get(m.rsplit("/", 1)[-1], len(order)), members.index(m)))
    layers, volumes = [], []
    for member in members:
        role = member.rsplit("/", 1)[-1]
        known = role in ROLE_DISPLAY
        try:
            volume = _open(
                f"{base}/{member}",
                voxel_size=voxel_size,
                kind=kind if kind is not None or not known else INPUT_KINDS[role],
            )
        except ConnectomeError as exc:
            if not report:
                raise
            _notify.error(exc)
            continue
        visible, opacity = ROLE_DISPLAY.get(role, (True, None))
        layers.append(
            layer_data(volume, visible=visible, opacity=opacity, role=role if known else None)
        )
        volumes.append(volume)
    _tell_notes(base, volumes)
    return layers


def _open(path, *, voxel_size=None, kind=None):
    """Open a volume lazily; unreadable chunks read as zeros with one warning."""
    from napari_connectome.volume import open_volume

    name = os.path.basename(os.fspath(path).rstrip("/")) or os.fspath(path)
    return open_volume(
        path,
        voxel_size=voxel_size,
        kind=kind,
        on_error="fill",
        notify=_notify.chunk_error_notifier(name),
    )


def _volume_layers(path, *, voxel_size=None, kind=None, report=True) -> list[LayerData]:
    """One volume as a layer; an OME-Zarr image brings its NGFF label images along."""
    volume = _open(path, voxel_size=voxel_size, kind=kind)
    labels = []
    if volume.format == "ome-zarr" and volume.kind == "image":
        labels = _ngff_label_layers(path, voxel_size=voxel_size, report=report)
        if labels:  # open now: the engine's hint to open them is no longer news
            volume.notes = [n for n in volume.notes if not n.startswith(LABELS_NOTE)]
    _tell_notes(volume.source, [volume])
    return [layer_data(volume)] + labels


def _project_layers(root, *, report: bool) -> list[LayerData]:
    from napari_connectome.errors import ConnectomeError
    from napari_connectome.project import open_project

    project = open_project(root)
    root_text = os.path.abspath(os.fspath(project.root))
    roles = [r for r in ROLE_ORDER if r in project.inputs]
    roles += [r for r in project.inputs if r not in roles]
    layers: list[LayerData] = []
    volumes = []
    for role in roles:
        try:
            volume = project.open_input(
                role, on_error="fill", notify=_notify.chunk_error_notifier(f"{project.name}: {role}")
            )
        except ConnectomeError as exc:
            if not report:
                raise
            _notify.error(f"project {project.name}, {role}: {exc}")
            continue
        visible, opacity = ROLE_DISPLAY.get(role, (True, None))
        layers.append(
            layer_data(
                volume, role=role, project=root_text, name=role, visible=visible, opacity=opacity
            )
        )
        volumes.append(volume)
    _tell_notes(f"project {project.name}", volumes)
    return layers


def _tell_notes(where: str, volumes) -> None:
    """One warning when a voxel size was assumed, one when chunks are missing; other notes as one info line."""
    from napari_connectome.volume.chunks import MISSING_NOTE_MARK

    # Missing chunks read as background in a segmentation: a warning, not
    # news in passing — one for all the volumes opened together.
    missing = [
        (f"{v.name}: {n}" if len(volumes) > 1 else n)
        for v in volumes
        for n in v.notes
        if MISSING_NOTE_MARK in n
    ]
    if missing:
        _notify.warning(f"{where}: " + "; ".join(missing))
    assumed = [v for v in volumes if v.voxel_size_assumed]
    if assumed:
        note = next((n for v in assumed for n in v.notes if "assumed" in n), None)
        if note and len(volumes) == 1:
            _notify.warning(f"{where}: {note}; in the panel, Alt+Z sets it")
        else:
            vs = " × ".join(f"{x:g}" for x in assumed[0].voxel_size)
            names = ", ".join(v.name or v.source for v in assumed)
            _notify.warning(
                f"{where}: voxel size not stored; assumed {vs} nm for {names}; {VOXEL_SIZE_HINT}"
            )
    others: list[str] = []
    for v in volumes:
        for n in v.notes:
            if "assumed" not in n and MISSING_NOTE_MARK not in n and n not in others:
                others.append(n)
    if others:
        _notify.info(f"{where}: " + "; ".join(others))
