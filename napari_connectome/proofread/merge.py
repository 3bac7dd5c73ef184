"""Merging the edit logs of two offline copies of one project.

Two copies (A and B) of one project were edited apart. Operations are
identified across copies by their ``uuid``: the logs share a prefix (the
edits made before the copy), then each went on alone. :func:`merge_logs`
re-applies B's later operations, in order, after A's, *into A's log*:
each becomes a new row with A's next operation id and new segment ids
(CAVE-style root ids are never shared between copies; the report maps B's
ids to A's), keeping B's uuid, user, session, task and timestamp, and naming
its origin in the payload.

An operation of B is a **conflict**, skipped and listed, when

* it touches a segment that A changed since the fork (the supervoxels of
  every segment an A operation retired or created), or one that a skipped
  operation of B touched (a later edit of the same object depends on it);
* it reverses (undo/redo) a skipped operation;
* it no longer applies to A's graph (an edge to cut is gone, a link to add
  exists already).

Nothing is lost: B's log is only read, A's only appended to, and every
skipped operation stays in B with the reason in the report. Merging again
later recognises what was already brought over by its uuid.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field

from napari_connectome.errors import InputError
from napari_connectome.proofread.log import EditLog
from napari_connectome.proofread.ops import Effect, Patch
from napari_connectome.proofread.recorded import RecordedOperation
from napari_connectome.proofread.session import Proofreader
from napari_connectome.proofread.state import EffectConflict


@dataclass
class MergeReport:
    """What :func:`merge_logs` did.

    Attributes
    ----------
    fork_after
        The last operation id both logs share (0: none).
    a_only
        Number of A's operations after the fork.
    applied
        ``{"from_operation", "operation_id", "uuid", "type"}`` per operation
        of B written into A.
    skipped
        ``{"from_operation", "uuid", "type", "reason"}`` per conflict.
    already_present
        uuids of B's operations that A had already (an earlier merge).
    root_ids
        B's segment id -> A's, for the segments the applied operations made.
    supervoxel_ids
        B's minted supervoxel id -> A's.
    """

    fork_after: int = 0
    a_only: int = 0
    applied: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    already_present: list[str] = field(default_factory=list)
    root_ids: dict[int, int] = field(default_factory=dict)
    supervoxel_ids: dict[int, int] = field(default_factory=dict)

    @property
    def conflicts(self) -> list[dict]:
        return self.skipped

    def summary(self) -> str:
        """One line for a person."""
        text = (
            f"merged {len(self.applied)} operation(s) after the shared {self.fork_after}; "
            f"{len(self.skipped)} conflict(s) skipped"
        )
        if self.skipped:
            text += " (" + "; ".join(
                f"#{s['from_operation']} {s['type']}: {s['reason']}" for s in self.skipped[:3]
            ) + (" …" if len(self.skipped) > 3 else "") + ")"
        if self.already_present:
            text += f"; {len(self.already_present)} already present"
        return text

    def to_dict(self) -> dict:
        return {
            "fork_after": self.fork_after,
            "a_only": self.a_only,
            "applied": self.applied,
            "skipped": self.skipped,
            "already_present": self.already_present,
            "root_ids": {str(k): v for k, v in self.root_ids.items()},
            "supervoxel_ids": {str(k): v for k, v in self.supervoxel_ids.items()},
        }


def _same_inputs(a, b) -> None:
    for role in sorted(set(a.inputs) | set(b.inputs)):
        ra, rb = a.inputs.get(role), b.inputs.get(role)
        if role not in ("raw", "supervoxels", "boundaries"):
            continue
        if (ra is None) != (rb is None):
            raise InputError(b.root, f"is not a copy of {a.root}: only one of them has a {role} volume")
        if ra is None:
            continue
        for key in ("shape", "dtype", "voxel_size_nm"):
            if ra.get(key) != rb.get(key):
                raise InputError(
                    b.root, f"is not a copy of {a.root}: their {role} volumes differ in {key} "
                    f"({rb.get(key)} vs {ra.get(key)})"
                )


def merge_logs(project_a, project_b, *, user: str | None = None, lock_timeout: float = 2.0) -> MergeReport:
    """Append the edits that copy B made since the fork to project A's log.

    Parameters
    ----------
    project_a
        The project that receives the edits (its log is appended to).
    project_b
        The other copy (only read).
    user
        Recorded as the merging user in each merged row's payload.

    Returns
    -------
    MergeReport
        What was applied, what was skipped and why, and how ids were mapped.

    Raises
    ------
    InputError
        The projects are not copies of one project (different inputs,
        supervoxel graph or base segmentation), a log is corrupt or locked.
    """
    from napari_connectome.project import Project, open_project

    a_proj = project_a if isinstance(project_a, Project) else open_project(project_a)
    b_proj = project_b if isinstance(project_b, Project) else open_project(project_b)
    if a_proj.root.resolve() == b_proj.root.resolve():
        raise InputError(b_proj.root, "is the same project as the one to merge into")
    _same_inputs(a_proj, b_proj)
    pa = Proofreader.open(a_proj, user=user, track_footprints=True, lock_timeout=lock_timeout)
    try:
        b_log = EditLog(b_proj.component_path("edit_log"), read_only=True)
        try:
            b_meta = b_log.meta()
            rows_b = b_log.rows()
        finally:
            b_log.close()
        report = MergeReport()
        if not rows_b:
            return report
        a_meta = pa.log.meta()
        for key, what in (("graph", "supervoxel graph"), ("base", "base segmentation")):
            if b_meta.get(key) != a_meta.get(key):
                raise InputError(
                    b_proj.root, f"its edits were made on another {what} than {a_proj.root}'s; they cannot be merged"
                )
        pb = Proofreader.open(b_proj, graph=(pa.rag, pa.tree), read_only=True, track_footprints=True)
        pb.close()
        rows_a = pa.log.rows(with_patch=False)
        fork = 0
        while fork < min(len(rows_a), len(rows_b)) and rows_a[fork]["uuid"] == rows_b[fork]["uuid"]:
            fork += 1
        report.fork_after = int(rows_b[fork - 1]["operation_id"]) if fork else 0
        report.a_only = len(rows_a) - fork
        a_by_uuid = {r["uuid"]: r for r in rows_a}
        changed_a: set[int] = set()
        for r in rows_a[fork:]:
            changed_a |= pa.footprints.get(int(r["operation_id"]), set())
        max_base = int(pa.state.ids[pa.state.n_base - 1])
        sv_map: dict[int, int] = {}
        op_map: dict[int, int] = {int(r["operation_id"]): int(r["operation_id"]) for r in rows_b[:fork]}
        shared = {n for r in rows_b[:fork] for n in Effect.from_json(r["payload"]["effect"]).nodes_added}
        skipped_b: set[int] = set()
        skipped_ops: set[int] = set()
        for row in rows_b[fork:]:
            b_id = int(row["operation_id"])
            kind = row["type"]
            effect = Effect.from_json(row["payload"]["effect"])
            present = a_by_uuid.get(row["uuid"])
            if present is not None:
                report.already_present.append(row["uuid"])
                op_map[b_id] = int(present["operation_id"])
                mine = Effect.from_json(present["payload"]["effect"])
                for nb, na in zip(effect.nodes_added, mine.nodes_added, strict=False):
                    sv_map.setdefault(nb, na)
                continue
            reason = None
            foot_b = pb.footprints.get(b_id, set())
            undo_of = row["undo_of"]
            if undo_of is not None and int(undo_of) in skipped_ops:
                reason = f"it reverses operation {undo_of}, which was skipped"
            elif undo_of is not None and int(undo_of) not in op_map:
                reason = f"it reverses operation {undo_of}, unknown to {a_proj.root}"
            elif foot_b & skipped_b:
                reason = "it changes segments that a skipped operation changed"
            else:
                foot_a = {sv_map.get(s, s) for s in foot_b if s <= max_base or s in sv_map or s in shared}
                both = foot_a & changed_a
                if both:
                    reason = (
                        f"{a_proj.root.name} changed the same segments since the copy "
                        f"(supervoxel {min(both)}, …)"
                    )
            if reason is None:
                # Only supervoxels B minted after the fork get new ids; base ones
                # and those minted before the copy are the same in A.
                fresh = [n for n in effect.nodes_added if n > max_base and n not in sv_map and n not in shared]
                first = max(pa.state.next_id, int(pa.state.ids[-1]) + 1)
                for k, n in enumerate(fresh):
                    sv_map[n] = first + k
                translated = effect.relabel(sv_map, op_map)
                patch = None
                if row.get("patch") is not None:
                    patch = Patch.decode(row["payload"]["patch"], row["patch"]).relabel(sv_map)
                    translated.patches_on = []
                merged_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")
                extra = {"merged_from": {
                    "project": str(b_proj.root), "operation_id": b_id, "uuid": row["uuid"],
                    "merged_by": pa.user, "merged_at": merged_at,
                }}
                try:
                    result = pa.apply_recorded(RecordedOperation(
                        type=kind, effect=translated,
                        supervoxels=[sv_map.get(int(s), int(s)) for s in row["supervoxel_ids"]],
                        seeds=row["seeds_nm"], task_id=row["task_id"], suggested_by=row["suggested_by"],
                        undo_of=None if undo_of is None else op_map[int(undo_of)], patch=patch,
                        uuid=row["uuid"], user=row["user"], session=row["session"],
                        timestamp=row["timestamp"], unix_time=float(row["unix_time"]), extra=extra,
                    ))
                except EffectConflict as exc:
                    for n in fresh:
                        sv_map.pop(n, None)
                    reason = f"it no longer applies ({exc.problem})"
                else:
                    op_map[b_id] = result.operation_id
                    for rb, ra in zip(row["after_roots"], result.after_segments, strict=True):
                        report.root_ids[int(rb)] = int(ra)
                    report.applied.append({
                        "from_operation": b_id, "operation_id": result.operation_id,
                        "uuid": row["uuid"], "type": kind,
                    })
                    # What B brings in now counts as changed for B's later
                    # operations only through B's own order: nothing to add.
                    continue
            skipped_ops.add(b_id)
            skipped_b |= foot_b
            report.skipped.append({"from_operation": b_id, "uuid": row["uuid"], "type": kind, "reason": reason})
        report.supervoxel_ids = {k: v for k, v in sv_map.items()}
        return report
    finally:
        pa.close()

