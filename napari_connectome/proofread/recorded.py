"""An operation as an edit log recorded it, ready to be applied to another Proofreader.

Offline merge (:mod:`napari_connectome.proofread.merge`) re-applies the
operations of one copy of a project to another. What it hands the
Proofreader is this record — the effect and everything the new log row must
keep (who, when, which task, which uuid) — not the inputs of the edit: the
effect is applied as recorded, never recomputed (no min-cut, no watershed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from napari_connectome.proofread.ops import Effect, Patch

#: Operation types a log row may have.
OPERATION_TYPES = ("merge", "split", "split_supervoxel", "undo", "redo")


@dataclass
class RecordedOperation:
    """One operation to apply as recorded (see :meth:`~napari_connectome.proofread.Proofreader.apply_recorded`).

    Attributes
    ----------
    type
        ``merge``, ``split``, ``split_supervoxel``, ``undo`` or ``redo``.
    effect
        What it does to the supervoxel graph, in the receiving state's ids.
    supervoxels
        The supervoxels it names (clicked, seeded, split or minted).
    seeds
        The seed points (nm) as logged.
    task_id, suggested_by
        The task it answered and what proposed it, or None.
    undo_of
        For an undo or redo: the operation id (in the receiving log) it reverses.
    patch
        The voxel patch of a split inside a supervoxel, or None.
    uuid
        Kept across copies: how a later merge recognises the operation.
    user, session
        Who made it and in which session (None: the receiving Proofreader's).
    timestamp, unix_time
        When it was made (ISO UTC text and unix seconds); None: now.
    extra
        Added to the row's payload (e.g. ``merged_from``).
    """

    type: str
    effect: Effect
    supervoxels: list[int]
    seeds: object = field(default_factory=list)
    task_id: str | None = None
    suggested_by: str | None = None
    undo_of: int | None = None
    patch: Patch | None = None
    uuid: str | None = None
    user: str | None = None
    session: str | None = None
    timestamp: str | None = None
    unix_time: float | None = None
    extra: dict = field(default_factory=dict)
