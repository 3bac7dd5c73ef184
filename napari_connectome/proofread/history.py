"""The operations of an edit log in memory: which edits are in effect, what undo and redo reverse.

Undo and redo are new operations (CAVE style): an undo reverses the latest
edit still in effect (or a named one), a redo the latest undo, and a new
edit clears the redo list, as in every editor. This module keeps only the
bookkeeping — the stacks, which edit each undo/redo chain goes back to, the
rows as logged — and never touches the segmentation; the Proofreader checks
that an old edit's segments are unchanged before reversing it.
"""

from __future__ import annotations

from dataclasses import dataclass

from napari_connectome.proofread.ops import Effect

#: Operation types that are edits (the rest, ``undo`` and ``redo``, reverse one).
EDIT_TYPES = ("merge", "split", "split_supervoxel")


@dataclass
class Operation:
    """One applied operation, as undo and redo need it.

    Attributes
    ----------
    op_id, type
        Its operation id in the log and its type.
    effect
        What it did to the supervoxel graph (its inverse undoes it).
    undo_of
        The operation an undo or redo reverses, else None.
    supervoxels
        The supervoxels it names.
    before, after
        Segment ids it retired and created.
    digests
        ``(anchor supervoxel, digest of the component's members)`` per
        segment it created: how a later undo sees that they are unchanged.
    """

    op_id: int
    type: str
    effect: Effect
    undo_of: int | None
    supervoxels: list[int]
    before: list[int]
    after: list[int]
    digests: list[tuple[int, str]]


class History:
    """Applied operations in log order, with the undo and redo stacks.

    Attributes
    ----------
    ops
        Operation id -> :class:`Operation`.
    undo_stack, redo_stack
        Ids an undo / a redo would reverse, the next one last.
    last_id
        The latest operation id (0: none).
    """

    def __init__(self) -> None:
        self.ops: dict[int, Operation] = {}
        self.undo_stack: list[int] = []
        self.redo_stack: list[int] = []
        self.last_id = 0
        self._rows: list[dict] = []
        self._in_effect: dict[int, bool] = {}

    def add(self, op: Operation, row: dict) -> None:
        """Record an operation just applied, and its log row (payload and patch left out)."""
        self.ops[op.op_id] = op
        if op.type in EDIT_TYPES:
            self.undo_stack.append(op.op_id)
            self.redo_stack.clear()  # a new edit ends what could be redone
            self._in_effect[op.op_id] = True
        elif op.type == "undo":
            if op.undo_of in self.undo_stack:
                self.undo_stack.remove(op.undo_of)
            self.redo_stack.append(op.op_id)
            self._in_effect[self.origin(op.op_id)] = False
        else:  # redo: reverses an undo
            if op.undo_of in self.redo_stack:
                self.redo_stack.remove(op.undo_of)
            self.undo_stack.append(op.op_id)
            self._in_effect[self.origin(op.op_id)] = True
        self._rows.append({k: v for k, v in row.items() if k not in ("payload", "patch")})
        self.last_id = op.op_id

    def origin(self, op_id: int) -> int:
        """The edit an undo/redo chain goes back to."""
        op = self.ops[op_id]
        while op.type not in EDIT_TYPES and op.undo_of in self.ops:
            op = self.ops[op.undo_of]
        return op.op_id

    def rows(self) -> list[dict]:
        """The log's operations, oldest first, with ``undone`` (True for an edit not in effect now)."""
        out = []
        for row in self._rows:
            r = dict(row)
            r["undone"] = r["type"] in EDIT_TYPES and not self._in_effect.get(r["operation_id"], True)
            out.append(r)
        return out

    def later_touching(self, op_id: int) -> list[int]:
        """Later operations that retired a segment ``op_id`` created (what to undo first)."""
        made = set(self.ops[op_id].after)
        return [i for i, o in self.ops.items() if i > op_id and set(o.before) & made]
