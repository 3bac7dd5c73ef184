"""The output guard: no command or panel writes over what a proofreader has saved.

Every file or folder the suite writes at a path a person chose (an export, a
report, a plot, a converted pyramid) passes :func:`guard_output` first. It
refuses, in one line naming the target:

* a target that is, or lies inside, a project's own state — the manifest, the
  edit log and effort log with their SQLite ``-wal``/``-shm``/``-journal``
  files, the graph, skeletons and tasks folders, any component the manifest
  names (:func:`napari_connectome.layout.state_paths`) — of *any* project on
  the target's path, not only the one the command works on;
* a target that is one of the command's inputs, lies inside one, or (for a
  folder that would be replaced) holds one;
* an existing target, unless ``overwrite`` is given (then it is replaced by
  one atomic rename, see :mod:`napari_connectome.atomic`);
* a folder where a file is wanted, or a missing parent folder.

Symbolic links are followed: a link to an edit log is still the edit log.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from napari_connectome.errors import InputError
from napari_connectome.layout import MANIFEST, read_manifest_quietly, state_paths


def _forms(path: Path) -> list[Path]:
    """The path as written (absolute) and with every symbolic link resolved."""
    absolute = Path(os.path.abspath(path))
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):  # a link loop: the absolute form is all there is
        return [absolute]
    return [absolute] if resolved == absolute else [absolute, resolved]


def project_roots(path: str | os.PathLike) -> list[Path]:
    """Project folders that hold ``path`` (or are it), innermost first."""
    roots: list[Path] = []
    for form in _forms(Path(path)):
        for folder in (form, *form.parents):
            try:
                if (folder / MANIFEST).is_file() and folder not in roots:
                    roots.append(folder)
            except OSError:
                continue
    return roots


def _local_input(uri) -> Path | None:
    """The local file or folder behind an input URI (an HDF5 ``FILE.h5/dataset`` gives the file)."""
    text = os.fspath(uri)
    if "://" in text and not text.startswith("file://"):
        return None
    text = text[len("file://"):] if text.startswith("file://") else text
    p = Path(text)
    # ``FILE.h5/dataset``: the part that exists on disk is what a write could destroy
    # (nothing, when no part exists: a name like "array" for data held in memory).
    for candidate in (p, *p.parents):
        if candidate == Path(candidate.anchor) or str(candidate) in ("", "."):
            return None
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return None


def _inside(a: Path, b: Path) -> bool:
    """True if ``a`` is ``b`` or lies inside it."""
    return a == b or b in a.parents


def _project_inputs(root: Path) -> list[str]:
    """The input URIs a project's manifest names (its EM, supervoxels, ...)."""
    inputs = read_manifest_quietly(root).get("inputs")
    if not isinstance(inputs, dict):
        return []
    return [r["uri"] for r in inputs.values() if isinstance(r, dict) and isinstance(r.get("uri"), str)]


def guard_output(path: str | os.PathLike, *, inputs: Iterable = (), projects: Iterable = (),
                 overwrite: bool = False, folder: bool = False, make_parents: bool = False,
                 what: str = "output") -> Path:
    """Check that writing ``path`` destroys nothing saved; returns it as a :class:`Path`.

    Parameters
    ----------
    path
        The file (or, with ``folder``, the folder) about to be written.
    inputs
        The command's inputs (paths or URIs): the output may not be one of
        them, lie inside one, or hold one.
    projects
        Project folders the command works on: their state is protected
        wherever the target is, and so are the input volumes their
        manifests name (a CSV must not land on the raw EM).
    overwrite
        Allow replacing an existing target of the same kind.
    folder
        The output is a folder (a pyramid), not a file.
    make_parents
        The writer creates missing parent folders (a pyramid's ``DST``), so
        a missing parent is not refused.
    what
        How the output is called in the message (``"--csv"``, ``"export"``).

    Raises
    ------
    InputError
        One line naming the target and why it was refused; nothing is written.
    """
    text = os.fspath(path)
    if not text.strip():
        raise InputError(what, "no output file given")
    if "://" in text:
        raise InputError(text, "only local files can be written; write locally, then upload")
    target = Path(text)
    forms = _forms(target)
    # A project's state, of any project the target lies in (or is).
    roots = project_roots(target)
    roots += [Path(os.path.abspath(r)) for r in projects if Path(os.path.abspath(r)) not in roots]
    inputs = list(inputs)
    for root in roots:
        inputs += _project_inputs(root)
    for root in roots:
        state = [(q, label) for s, label in state_paths(root, read_manifest_quietly(root)).items()
                 for q in _forms(s)]
        for form in forms:
            if form == root:
                raise InputError(target, "is a project folder; choose a new file or folder for the "
                                         f"{what} (nothing was written)")
            for q, label in state:
                if _inside(form, q) or (folder and _inside(q, form)):
                    where = "is" if form == q else ("holds" if _inside(q, form) else "lies inside")
                    raise InputError(
                        target,
                        f"{where} the {label} of the project {root}; writing the {what} there would "
                        "destroy saved work — choose another file (nothing was written)",
                    )
    # The command's inputs.
    for uri in inputs:
        if uri is None:
            continue
        source = _local_input(uri)
        if source is None:
            continue
        for q in _forms(source):
            for form in forms:
                if _inside(form, q) or _inside(q, form):
                    raise InputError(
                        target, f"is, holds or lies inside the input {os.fspath(uri)}; choose another "
                        f"file for the {what} (nothing was written)",
                    )
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.exists() and not make_parents:
        raise InputError(target, f"the folder {parent} does not exist (nothing was written)")
    if parent.exists() and not parent.is_dir():
        raise InputError(target, f"{parent} is a file, not a folder (nothing was written)")
    if target.is_symlink() and not target.exists():
        raise InputError(target, "is a broken symbolic link; not writing through it")
    if target.exists():
        if folder and not target.is_dir():
            raise InputError(target, "exists and is a file, not a folder; not replacing it")
        if not folder and target.is_dir():
            raise InputError(target, f"is a folder; give a file name for the {what}")
        if not overwrite:
            raise InputError(
                target, "already exists; not replacing it (choose another name, or pass --overwrite)"
            )
    return target
