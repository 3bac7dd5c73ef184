"""What the panel draws for one task, computed off the GUI thread: EM and labels crops, skeletons, colours.

Reads only a crop around the decision point, at full resolution (level 0):
the EM through the data plane (the raw input's lazy array, sliced), the
labels as the *supervoxel* crop relabelled through the involved segments'
supervoxel lists. Why not ``Proofreader.labels_volume()``: its reader
caches each region's supervoxel positions, and a read racing a split inside
a supervoxel (which invalidates cached boxes only when it commits) could
store a stale entry that later redraws would keep showing. The supervoxel
crop has no cache, and the segments' member lists are read from the state
in one step each; a read that overlaps an edit is caught by comparing
:attr:`~napari_connectome.proofread.Proofreader.version` before and after
(see :attr:`TaskView.version`).

Skeletons are not computed here (TEASAR of a whole segment can take seconds):
they come from the project's skeleton store when it has one (a store entry
is the skeleton of that segment id, and ids are never reused, so entries of
segments still in existence stay right after other edits); segments without
an entry simply have none.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from napari_connectome.errors import InputError
from napari_connectome.tasks.colours import PALETTE
from napari_connectome.tasks.model import Task
from napari_connectome.volume.model import voxel_index

#: Default crop edge (z, y, x), in level-0 voxels, clamped at the volume's faces: 256 voxels
#: across (2 µm at 8 nm) so the proofreader sees the neurites' course and their neighbours, not
#: a keyhole, and 64 sections deep to step through without leaving the task (the view is 2D
#: first; a 64³ crop, 0.5 µm at 8 nm, misled proofreaders into wrong "yes" answers).
DEFAULT_CROP_VOXELS = (64, 256, 256)
#: Label of the far (sink) side of a proposed cut in a "Cut here?" view: segment id + this
#: (segment ids stay far below 2**62), so both sides of one segment can be drawn apart.
OTHER_SIDE = 1 << 62


@dataclass
class TaskView:
    """Everything the GUI needs to draw a task.

    Attributes
    ----------
    task
        The task drawn.
    em
        Level-0 EM crop (z, y, x) around the decision point.
    labels
        Segment ids over the same crop (uint64), 0 outside the involved segments.
        For a "Cut here?" task, the two sides of the proposed cut (the split
        the engine would make): the source side keeps the segment id, the
        other side is labelled segment id + :data:`OTHER_SIDE`.
    offset_nm
        World position (nm) of the centre of crop voxel (0, 0, 0): napari's ``translate``.
    voxel_size_nm
        Level-0 voxel size (nm): napari's ``scale``.
    point_nm
        The decision point (z, y, x) in nm.
    skeleton_paths
        ``(N, 3)`` nm polylines of the involved segments' skeletons (empty when the project has none).
    colors
        Label (segment id, or a cut side's label) → RGBA (0..1).
    point_voxel
        Index of the decision point's voxel in the crop (where the orthogonal planes go).
    version
        :attr:`Proofreader.version` the labels were read at; -1 when an edit
        landed during the read (the labels may mix two states: prepare again).
    skeleton_segments
        The segment of each of :attr:`skeleton_paths`.
    label_names
        Label → what it is (``"segment 12"``, ``"segment 12, other side of the cut"``).
    display_labels
        :attr:`labels` renumbered 1, 2, … (uint8) for drawing: a viewer maps
        small values to colours directly (napari's numpy path refuses
        labels above 2**16), and a quarter of the bytes of ``uint64``
        ids is less to move per section.
    display_values
        The label each display label ``i + 1`` stands for.
    synapse_nm
        For a synapse question: its ``(pre point, post point)`` in nm, drawn
        as two points and the arrow between them; None otherwise.
    """

    task: Task
    em: np.ndarray
    labels: np.ndarray
    offset_nm: tuple[float, float, float]
    voxel_size_nm: tuple[float, float, float]
    point_nm: tuple[float, float, float]
    skeleton_paths: list[np.ndarray] = field(default_factory=list)
    colors: dict[int, tuple[float, float, float, float]] = field(default_factory=dict)
    point_voxel: tuple[int, int, int] = (0, 0, 0)
    version: int = -1
    skeleton_segments: list[int] = field(default_factory=list)
    label_names: dict[int, str] = field(default_factory=dict)
    display_labels: np.ndarray | None = None
    display_values: tuple[int, ...] = ()
    synapse_nm: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None

    def same_as(self, other: TaskView) -> bool:
        """True when both draw the same thing (arrays equal, same placement, paths and colours)."""
        return (
            self.task.id == other.task.id
            and self.offset_nm == other.offset_nm and self.voxel_size_nm == other.voxel_size_nm
            and self.point_nm == other.point_nm and self.point_voxel == other.point_voxel
            and self.colors == other.colors and self.synapse_nm == other.synapse_nm
            and np.array_equal(self.em, other.em) and np.array_equal(self.labels, other.labels)
            and len(self.skeleton_paths) == len(other.skeleton_paths)
            and all(np.array_equal(a, b) for a, b in zip(self.skeleton_paths, other.skeleton_paths, strict=True))
        )


def crop_edge_nm(crop_nm, voxel_size) -> np.ndarray:
    """The crop's edge per axis in nm: ``crop_nm`` (one number or three), default :data:`DEFAULT_CROP_VOXELS`."""
    vs = np.asarray(voxel_size, dtype=np.float64)
    if crop_nm is None:
        return np.asarray(DEFAULT_CROP_VOXELS, dtype=np.float64) * vs
    try:
        edge = np.asarray(crop_nm, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError("crop_nm", f"{crop_nm!r} is not a length in nm (one number or z, y, x)") from None
    if edge.size == 1:
        edge = np.repeat(edge, 3)
    if edge.size != 3 or not np.isfinite(edge).all() or (edge <= 0).any():
        raise InputError("crop_nm", f"{crop_nm!r} must be one positive length in nm or three (z, y, x)")
    return edge


def crop_box(point_nm, *, shape, voxel_size, offset, crop_nm=None) -> tuple[tuple[slice, ...], tuple[int, ...]]:
    """Level-0 slices of the crop around ``point_nm`` (clamped to the volume) and the point's voxel in it.

    The crop is centred on the point's voxel, ``crop_nm`` wide (rounded to
    whole voxels, at least one); near a face of the volume it is cut, not
    shifted, so the point stays where it is in the world.
    """
    vs = np.asarray(voxel_size, dtype=np.float64)
    off = np.asarray(offset, dtype=np.float64)
    shp = np.asarray(shape, dtype=np.int64)
    p = np.asarray(point_nm, dtype=np.float64).reshape(-1)
    if p.size != 3 or not np.isfinite(p).all():
        raise InputError("decision point", f"{point_nm!r} is not a point (z, y, x) in nm")
    centre = np.clip(voxel_index(p, voxel_size=vs, offset=off), 0, shp - 1)
    half = np.array([max(0, math.floor(e / v / 2.0)) for e, v in zip(crop_edge_nm(crop_nm, vs), vs, strict=True)])
    lo = np.maximum(centre - half, 0)
    hi = np.minimum(centre + half + 1, shp)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    return box, tuple(int(c - a) for c, a in zip(centre, lo, strict=True))


def _spatial_key(volume, box: tuple[slice, ...]) -> tuple:
    # Non-spatial leading axes (a channel or time axis of the raw input): the first one is shown.
    return tuple(box[("z", "y", "x").index(a)] if a in ("z", "y", "x") else 0 for a in volume.axes)


def segment_colors(segments) -> dict[int, tuple[float, float, float, float]]:
    """Segment id → RGBA from :data:`PALETTE`, in the order given (distinct within a task)."""
    return {int(s): PALETTE[i % len(PALETTE)] for i, s in enumerate(segments)}


def _skeleton_paths(skeletons, segments) -> tuple[list[np.ndarray], list[int]]:
    """The segments' skeleton polylines (nm) and the segment of each."""
    if skeletons is None:
        return [], []
    from napari_connectome.skeleton import skeleton_paths

    get = skeletons.get if isinstance(skeletons, Mapping) or hasattr(skeletons, "get") else None
    if get is None:
        return [], []
    paths, owners = [], []
    for seg in segments:
        sk = get(int(seg))
        if sk is None:
            continue
        for p in skeleton_paths([sk]):
            paths.append(np.asarray(p, dtype=np.float64))
            owners.append(int(seg))
    return paths, owners


def cut_sides(pr, task: Task) -> tuple[np.ndarray, np.ndarray] | None:
    """The supervoxels on each side of the split a "Cut here?" task proposes, or None.

    The same min cut :func:`~napari_connectome.candidates.apply_candidate`
    commits on *yes* (``preview_split_supervoxels``), nothing logged; None
    for a merge task or when the cut cannot be computed now (the task is
    then stale, and is skipped when shown or answered).
    """
    cand = task.candidate
    if task.kind != "split" or not cand.supervoxels or not cand.sinks:
        return None
    try:
        preview = pr.preview_split_supervoxels(list(cand.supervoxels), list(cand.sinks))
    except InputError:
        return None
    return (np.asarray(preview.source_supervoxels, dtype=np.uint64),
            np.asarray(preview.sink_supervoxels, dtype=np.uint64))


def prepare_view(source, task: Task, *, em_volume=None, crop_nm=None, skeletons=None) -> TaskView:
    """Read and assemble what the panel draws for ``task``.

    Parameters
    ----------
    source
        A :class:`~napari_connectome.tasks.TaskSession` (its proofreader, EM
        volume, crop size and skeletons are used unless given here) or a
        :class:`~napari_connectome.proofread.Proofreader`.
    task
        The task to draw.
    em_volume
        The EM volume (default: the project's ``raw`` input, opened lazily).
    crop_nm
        Crop edge in nm, one number or (z, y, x); default 64 level-0 voxels.
    skeletons
        ``segment id → Skeleton`` (a :class:`~napari_connectome.skeleton.SkeletonStore`
        or a dict); default: the session's, or none.

    Returns
    -------
    TaskView
    """
    pr = getattr(source, "proofreader", source)
    if em_volume is None:
        em_volume = getattr(source, "em_volume", None)
    if em_volume is None:
        em_volume = pr.project.open_input("raw")
    if crop_nm is None:
        crop_nm = getattr(source, "crop_nm", None)
    if skeletons is None:
        skeletons = getattr(source, "skeletons", None)
    version = pr.version
    sv_level = pr.supervoxel_volume().levels[0]
    vs = tuple(float(v) for v in sv_level.voxel_size)
    box, point_voxel = crop_box(task.location_nm, shape=sv_level.shape, voxel_size=vs,
                                offset=sv_level.offset, crop_nm=crop_nm)
    em = np.asarray(em_volume.levels[0].array[_spatial_key(em_volume, box)])
    sv = np.asarray(sv_level.array[box])
    labels = np.zeros(sv.shape, dtype=np.uint64)
    sides = cut_sides(pr, task)
    names: dict[int, str] = {}
    if sides is not None:
        seg = int(task.segments[0])
        # Source side keeps the id; the far side is drawn apart (see OTHER_SIDE).
        labels[np.isin(sv, sides[0])] = np.uint64(seg)
        labels[np.isin(sv, sides[1])] = np.uint64(seg + OTHER_SIDE)
        names = {seg: f"segment {seg}, this side of the cut", seg + OTHER_SIDE: f"segment {seg}, other side of the cut"}
    else:
        for seg in task.segments:
            try:
                members = pr.segment_supervoxels(int(seg))
            except InputError:
                continue  # edited away: the task is stale and will be skipped; nothing to draw for it
            labels[np.isin(sv, members)] = np.uint64(seg)
            names[int(seg)] = f"segment {int(seg)}"
        if task.is_synapse:
            # segments are (post, pre): name each by its role
            for role, seg in zip(("post", "pre"), task.segments, strict=True):
                if int(seg) in names:
                    names[int(seg)] = f"{role}-synaptic neuron {int(seg)}"
    colors = _colors(source, pr, task, sides)
    display_values = tuple(names)
    display = np.zeros(labels.shape, dtype=np.uint8)
    for i, value in enumerate(display_values):
        display[labels == np.uint64(value)] = i + 1
    if pr.version != version:
        version = -1  # an edit landed while reading: the member lists may be from two states
    offset_nm = tuple(float(x) for x in sv_level.centre_of([b.start for b in box]))
    paths, owners = _skeleton_paths(skeletons, task.segments)
    return TaskView(
        task=task, em=em, labels=labels, offset_nm=offset_nm, voxel_size_nm=vs,
        point_nm=tuple(float(x) for x in task.location_nm),
        skeleton_paths=paths, colors=colors, point_voxel=point_voxel, version=version,
        skeleton_segments=owners, label_names=names, display_labels=display, display_values=display_values,
        synapse_nm=(task.candidate.pre, task.candidate.post) if task.is_synapse else None,
    )


def _colors(source, pr, task: Task, sides) -> dict[int, tuple[float, float, float, float]]:
    """Label → RGBA: the session's stable colours when it has them (``source.colours``), else :data:`PALETTE`.

    With stable colours (:class:`~napari_connectome.tasks.colours.SegmentColours`)
    a "Cut here?" view shows each side in the colour it will have if the cut
    is made (the larger side keeps the segment's colour).
    """
    stable = getattr(source, "colours", None)
    if stable is None:
        if sides is not None:
            seg = int(task.segments[0])
            return {seg: PALETTE[0], seg + OTHER_SIDE: PALETTE[1]}
        return segment_colors(task.segments)
    if sides is not None:
        seg = int(task.segments[0])
        source_rgba, sink_rgba = stable.split_preview(pr, seg, sides[0], sides[1])
        return {seg: source_rgba, seg + OTHER_SIDE: sink_rgba}
    return stable.for_segments(task.segments, pr)


def view_still_valid(pr, view: TaskView | None, task: Task) -> bool:
    """True when ``view`` (prepared earlier, maybe in another thread) shows ``task`` as it is now.

    It must be for the same task id, segments and decision point, read
    without an edit landing in the middle, and either at the current
    version or with every involved segment still in existence (an edit
    elsewhere leaves those segments' voxels, and so the crop, unchanged:
    any change to a segment gives it a new id).
    """
    if view is None or view.version < 0:
        return False
    if (view.task.id, view.task.segments, view.task.location_nm) != (task.id, task.segments, task.location_nm):
        return False
    if view.version == pr.version:
        return True
    return all(pr.state.has_segment(int(s)) for s in task.segments)
