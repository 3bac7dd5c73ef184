"""Training data from labels: dense or sparse label volumes, arrays, or a project's proofread segmentation.

Three sources, one result (:class:`TrainingData`):

* **dense labels** — every voxel labelled; label 0 means a boundary (gala's
  and SNEMI's convention: membranes are 0) or "unknown" (``zero``);
* **sparse labels** — painted in napari or elsewhere: label 0 is *not
  painted*, and only pairs of two painted voxels enter the loss;
* **a project's proofread segmentation** inside a box in nm — the segments
  as the proofreader left them (the edit log replayed), so the corrections
  teach the network.

The raw is read around the labelled box with as much real context as the
network needs (mirrored only where the volume ends), so the voxels at the
box's faces are predicted from real EM, as they are at inference.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from napari_connectome.errors import InputError
from napari_connectome.train.targets import ZERO_MODES
from napari_connectome.volume.roi import parse_box  # noqa: F401  (part of the training API: --box)

if TYPE_CHECKING:  # annotations only: the volume package is imported where it is used
    from napari_connectome.project import Project
    from napari_connectome.volume import Level, MultiscaleVolume, Roi


@dataclass
class TrainingData:
    """Raw and labels on one grid, and where the labels may be used.

    Attributes
    ----------
    raw
        ``(z, y, x)`` EM as read (integers or floats in [0, 1]); it may reach
        beyond the labelled region (real context).
    labels
        Integer labels, same shape.
    known
        Where a label may be used: inside the region, and painted when sparse.
    region
        ``((z0, y0, x0), (z1, y1, x1))``: the labelled box in voxels of these
        arrays; training windows are drawn here.
    zero
        Meaning of label 0 (``"boundary"`` or ``"unknown"``; sparse labels
        are always ``"unknown"``).
    voxel_size
        nm per voxel (z, y, x).
    identity
        What the data are, JSON-able: sources, box, sparse, the edit log's
        state. It goes into the run's config, so a rerun on other data is
        refused instead of mixed into an old run.
    """

    raw: np.ndarray
    labels: np.ndarray
    known: np.ndarray
    region: tuple[tuple[int, int, int], tuple[int, int, int]]
    zero: str
    voxel_size: tuple[float, float, float]
    identity: dict = field(default_factory=dict)

    @property
    def labelled_voxels(self) -> int:
        """Voxels whose label is used and is not 0."""
        return int(np.count_nonzero(self.known & (self.labels != 0)))


def _check_raw(raw: np.ndarray, name: str) -> None:
    if raw.ndim != 3:
        raise InputError(name, f"the raw must be a 3D (z, y, x) volume, got shape {raw.shape}")
    if np.issubdtype(raw.dtype, np.floating):
        lo, hi = float(np.nanmin(raw)), float(np.nanmax(raw))
        # floats are used as they are: the shipped networks see raw / 255 of uint8 EM
        if lo < 0.0 or hi > 1.0 or not (math.isfinite(lo) and math.isfinite(hi)):
            raise InputError(name, f"float raw must lie in [0, 1] (it spans {lo:g} .. {hi:g}); "
                                   "give integer EM or scale it to [0, 1]")
    elif not np.issubdtype(raw.dtype, np.integer):
        raise InputError(name, f"the raw must be integers or floats, not {raw.dtype}")


def _check_labels(dtype, shape, raw_shape, name: str, raw_name: str) -> None:
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.bool_)):
        raise InputError(name, f"labels must be integers, not {np.dtype(dtype)} (a probability map or an image?)")
    if tuple(shape) != tuple(raw_shape):
        raise InputError(name, f"labels have shape {tuple(shape)} but the raw {raw_name} has {tuple(raw_shape)}")


def _check_zero(zero: str) -> None:
    if zero not in ZERO_MODES:
        raise InputError("zero", f"must be one of {', '.join(ZERO_MODES)}, got {zero!r}")


def _digest(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _painted_box(known: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """The bounding box ``(begin, end)`` of the True voxels, or None."""
    idx = np.argwhere(known)
    if idx.size == 0:
        return None
    return tuple(int(v) for v in idx.min(0)), tuple(int(v) + 1 for v in idx.max(0))


def _finish(raw, labels, known, region, *, zero, voxel_size, identity, where: str) -> TrainingData:
    data = TrainingData(raw=raw, labels=labels, known=known, region=region, zero=zero,
                        voxel_size=tuple(float(v) for v in voxel_size), identity=identity)
    if data.labelled_voxels == 0:
        what = "painted" if identity.get("sparse") else "labelled"
        raise InputError(where, f"has no {what} voxels{' inside the box' if identity.get('box_nm') else ''}; "
                                "nothing to train on")
    return data


def from_arrays(raw: np.ndarray, labels: np.ndarray, *, sparse: bool = False, zero: str = "boundary",
                voxel_size=(1.0, 1.0, 1.0), context: int = 0, raw_name: str = "raw",
                labels_name: str = "labels") -> TrainingData:
    """Training data from in-memory arrays (a napari Image and Labels layer).

    Parameters
    ----------
    raw
        ``(z, y, x)`` EM; integers, or floats in [0, 1]. Any array that numpy
        can slice (a lazy level is read only where it is needed).
    labels
        Integer labels of the same shape.
    sparse
        Label 0 means "not painted": only pairs of two painted voxels count,
        and training windows are drawn around the painted voxels only (the
        raw is read in their bounding box plus ``context``).
    zero
        Meaning of label 0 for dense labels (see
        :func:`~napari_connectome.train.targets.affinities_from_labels`).
    voxel_size
        nm per voxel (z, y, x).
    context
        Voxels of raw kept around the painted box (sparse) for the network's
        field of view; the rest is dropped.
    raw_name, labels_name
        Names used in messages and in the identity (the layers' names).

    Returns
    -------
    TrainingData
    """
    _check_zero(zero)
    labels = np.asarray(labels)
    _check_labels(labels.dtype, labels.shape, raw.shape, labels_name, raw_name)
    if labels.ndim != 3:
        raise InputError(labels_name, f"labels must be 3D (z, y, x), got shape {labels.shape}")
    if sparse:
        box = _painted_box(labels != 0)
        if box is None:
            raise InputError(labels_name, "has no painted voxels; paint some labels first (0 is unpainted)")
        lo = [max(b - context, 0) for b in box[0]]
        hi = [min(e + context, n) for e, n in zip(box[1], labels.shape, strict=True)]
        crop = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
        raw_c, lab_c = np.asarray(raw[crop]), labels[crop]
        region = (tuple(b - a for b, a in zip(box[0], lo, strict=True)),
                  tuple(e - a for e, a in zip(box[1], lo, strict=True)))
        known = lab_c != 0
        zero = "unknown"
    else:
        raw_c, lab_c = np.asarray(raw), labels
        region = ((0, 0, 0), tuple(int(n) for n in labels.shape))
        known = np.ones(labels.shape, dtype=bool)
    _check_raw(raw_c, raw_name)
    identity = {"source": "arrays", "raw": raw_name, "labels": labels_name, "sparse": bool(sparse),
                "zero": zero, "voxel_size_nm": [float(v) for v in voxel_size],
                "sha256": _digest(raw_c, lab_c)}
    return _finish(raw_c, lab_c.astype(np.int64, copy=False), known, region, zero=zero,
                   voxel_size=voxel_size, identity=identity, where=labels_name)


def box_slices(level: Level, box: Roi, *, what: str = "--box") -> tuple[slice, slice, slice]:
    """The voxels of ``level`` whose centres lie in ``box`` (a :class:`~napari_connectome.volume.Roi` in nm).

    Voxel centres, not faces: a box ``0 .. 400`` nm over 10 nm voxels is
    voxels 0 .. 39, as a person counting voxels expects.

    Raises
    ------
    InputError
        The box reaches outside the volume, or holds no voxel centre.
    """
    vs, off = level.spatial_voxel_size, level.spatial_offset
    if box.dims != len(vs):
        raise InputError(what, f"box {box} has {box.dims} axes; the volume has {len(vs)}")
    # a centre within a millionth of a voxel of a face counts as on it (nm in binary are inexact)
    lo = [math.ceil((b - o) / v - 1e-6) for b, o, v in zip(box.begin, off, vs, strict=True)]
    hi = [math.ceil((e - o) / v - 1e-6) for e, o, v in zip(box.end, off, vs, strict=True)]
    shape = [level.shape[i] for i in level.spatial]
    if any(a < 0 or b > n for a, b, n in zip(lo, hi, shape, strict=True)):
        raise InputError(what, f"box {box} nm reaches outside the volume's box {level.roi} nm")
    if any(b <= a for a, b in zip(lo, hi, strict=True)):
        raise InputError(what, f"box {box} nm holds no voxel (voxel size {tuple(vs)} nm)")
    return tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))


def from_volumes(raw: MultiscaleVolume, labels: MultiscaleVolume, *, box: Roi | None = None, sparse: bool = False,
                 zero: str = "boundary", context: int = 0, labels_identity: dict | None = None) -> TrainingData:
    """Training data from two volumes on one grid (any format :func:`~napari_connectome.volume.open_volume` reads).

    Parameters
    ----------
    raw, labels
        :class:`~napari_connectome.volume.MultiscaleVolume` (level 0 is used).
    box
        A :class:`~napari_connectome.volume.Roi` in nm: only labels inside
        it are used, and the raw is read around it with ``context`` voxels of
        real context. None: the whole volume.
    sparse, zero
        As in :func:`from_arrays`.
    context
        Voxels of raw read around the box (the network's context plus the
        augmentation's margin).
    labels_identity
        What identifies the labels when they are not a file (a project's
        segmentation); default: the labels volume's identity.

    Returns
    -------
    TrainingData
    """
    from napari_connectome.provenance import volume_identity

    _check_zero(zero)
    rl, ll = raw.levels[0], labels.levels[0]
    raw_name, labels_name = str(raw.source), str(labels.source)
    if len(rl.spatial) != 3 or rl.ndim != 3:
        raise InputError(raw_name, f"the raw must be a 3D (z, y, x) volume, got axes {rl.axes}")
    _check_labels(ll.dtype, ll.shape, rl.shape, labels_name, raw_name)
    if not np.allclose(rl.spatial_voxel_size, ll.spatial_voxel_size, rtol=1e-6):
        raise InputError(labels_name, f"labels have voxel size {tuple(ll.spatial_voxel_size)} nm but the raw "
                                      f"{raw_name} has {tuple(rl.spatial_voxel_size)} nm")
    identity = {"source": "volumes", "raw": volume_identity(raw),
                "labels": labels_identity if labels_identity is not None else volume_identity(labels),
                "sparse": bool(sparse), "zero": "unknown" if sparse else zero,
                "voxel_size_nm": [float(v) for v in rl.spatial_voxel_size]}
    if box is None:
        lab = np.asarray(ll.read())
        if sparse:
            # windows only where something is painted; the raw is kept whole (it is read anyway)
            found = _painted_box(lab != 0)
            if found is None:
                raise InputError(labels_name, "has no painted voxels; nothing to train on")
            region = found
        else:
            region = ((0, 0, 0), tuple(int(n) for n in lab.shape))
        raw_a = np.asarray(rl.read())
        known = lab != 0 if sparse else np.ones(lab.shape, dtype=bool)
    else:
        sl = box_slices(ll, box)
        identity["box_nm"] = [list(box.begin), list(box.end)]
        identity["box_voxels"] = [[s.start for s in sl], [s.stop for s in sl]]
        lab_box = np.asarray(ll.read(ll.roi_of(sl)))
        grown = tuple(slice(s.start - context, s.stop + context) for s in sl)
        raw_a = np.asarray(rl.read(rl.roi_of(grown), outside="reflect"))
        lab = np.zeros(raw_a.shape, dtype=lab_box.dtype)
        inner = tuple(slice(context, context + (s.stop - s.start)) for s in sl)
        lab[inner] = lab_box
        known = np.zeros(raw_a.shape, dtype=bool)
        known[inner] = lab_box != 0 if sparse else True
        region = (tuple(s.start for s in inner), tuple(s.stop for s in inner))
    _check_raw(raw_a, raw_name)
    return _finish(raw_a, lab.astype(np.int64, copy=False), known, region,
                   zero="unknown" if sparse else zero, voxel_size=rl.spatial_voxel_size,
                   identity=identity, where=labels_name if box is None else f"--box {box}")


def from_project(project: Project | str | os.PathLike, *, box: Roi | None, raw: MultiscaleVolume | None = None,
                 zero: str = "boundary", context: int = 0) -> TrainingData:
    """Training data from a project's proofread segmentation inside ``box``: the corrections teach the network.

    The segmentation is the project's as the proofreader left it: its base
    supervoxels and merge tree with the edit log replayed (merges, splits,
    undos). The log's state (last operation, edits in effect) is part of the
    identity, so a run started before more edits is not continued on the
    edited data by mistake.

    Parameters
    ----------
    project
        A :class:`~napari_connectome.project.Project` or its folder.
    box
        A :class:`~napari_connectome.volume.Roi` in nm (required: a whole
        volume's automatic segmentation has not been proofread).
    raw
        The EM volume (default: the project's ``raw`` input).
    zero
        Meaning of segment 0 (no supervoxel there); ``"boundary"`` by default.
    context
        Voxels of raw read around the box.

    Returns
    -------
    TrainingData
    """
    from napari_connectome.project import open_project
    from napari_connectome.proofread import Proofreader
    from napari_connectome.proofread.history import EDIT_TYPES

    if box is None:
        raise InputError("--box", "training from a project needs a box (Z0 Y0 X0 Z1 Y1 X1 in nm) of proofread segments")
    if not hasattr(project, "manifest"):
        project = open_project(project)
    raw = raw if raw is not None else project.open_input("raw")
    proofreader = Proofreader.open(project, read_only=True)
    try:
        rows = proofreader.history()
        edits = [r for r in rows if r["type"] in EDIT_TYPES and not r["undone"]]
        identity = {"project": str(Path(project.root).resolve()), "segmentation": "proofread",
                    "last_operation": max((int(r["operation_id"]) for r in rows), default=0),
                    "edits_in_effect": len(edits)}
        segments = proofreader.labels_volume()
        return from_volumes(raw, segments, box=box, sparse=False, zero=zero, context=context,
                            labels_identity=identity)
    finally:
        proofreader.close()
