"""Questions settled in earlier sessions: a *no* or a *flag* still in effect is not asked again.

A task session remembers what it asked only while it is open; the effort log
remembers every answer. A proofreader who answered *no* ("these are not the
same neuron") yesterday should not be asked the same question about the same
segments today, and a *flag* is waiting for someone else. So a session reads
the log when it opens and leaves out every merge or split candidate whose
latest answer in effect, in any earlier session of the project, is *no* or
*flag*. An ``undo`` row takes back the answer before it (as it did in its
session); *yes* made an edit (its candidate is gone while the edit stands);
*skip* means "later", and a new session is later.

"The same question" is the same candidate id *and* the same task id: the id
names the segments asked about (``fs-A-B``, ``fm-S-…``) and the task id what
is proposed (its supervoxels). Segment ids are never reused, so once an edit
gives one of the segments a new id (a merge, a split, an undone one), its
candidates carry new ids and are asked again: a conservative rule (it may ask
again about a segment an undo restored), but one that needs no task id of the
listed candidates but those whose candidate id was settled (a hash of what each
proposes: ~20 s for the 1.4 M candidates of a 1024³ volume).
"""

from __future__ import annotations

from collections.abc import Callable

from napari_connectome.tasks.model import task_id

#: Answers that settle a question for later sessions.
SETTLING = ("no", "flag")
#: Answers that an ``undo`` row can take back.
_ANSWERS = ("yes", "no", "skip", "flag")


def settled_tasks(rows) -> dict[str, set[str]]:
    """``{candidate id: task ids}`` of the questions ``rows`` (effort rows, oldest first) settled.

    Parameters
    ----------
    rows
        Effort log rows (:meth:`~napari_connectome.effort.EffortLog.rows`): ``task_type``,
        ``task_id``, ``answer``, ``candidate_id``.
    """
    answers: dict[str, list[tuple[str, str | None]]] = {}
    for row in rows:
        if row["task_type"] not in ("merge", "split") or not row["task_id"]:
            continue
        stack = answers.setdefault(row["task_id"], [])
        if row["answer"] == "undo":
            if stack:
                stack.pop()
        elif row["answer"] in _ANSWERS:
            stack.append((row["answer"], row["candidate_id"]))
    settled: dict[str, set[str]] = {}
    for tid, stack in answers.items():
        if stack and stack[-1][0] in SETTLING and stack[-1][1]:
            settled.setdefault(stack[-1][1], set()).add(tid)
    return settled


def without_settled(candidates: list, settled: dict[str, set[str]]) -> list:
    """``candidates`` less those whose question is ``settled`` (see the module notes).

    A candidate's task id (a hash of what it proposes) is made only for the few whose id was settled.
    """
    if not settled:
        return candidates
    return [c for c in candidates if (tids := settled.get(c.id)) is None or task_id(c) not in tids]


def skipping_settled(find: Callable, settled: dict[str, set[str]]) -> Callable:
    """A finder ``find(proofreader, **options)`` whose lists leave out the ``settled`` questions."""
    if not settled:
        return find

    def found(proofreader, **options):
        return without_settled(list(find(proofreader, **options)), settled)

    return found
