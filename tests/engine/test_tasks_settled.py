"""Which earlier answers settle a question (tasks/settled.py), from effort rows alone."""

from __future__ import annotations

from napari_connectome.candidates import Candidate
from napari_connectome.tasks import task_id
from napari_connectome.tasks.settled import settled_tasks, skipping_settled, without_settled


def row(tid, answer, cid, task_type="merge"):
    return {"task_type": task_type, "task_id": tid, "answer": answer, "candidate_id": cid}


def test_the_latest_answer_in_effect_decides():
    rows = [
        row("t-1", "no", "fs-1-2"),                       # settled
        row("t-2", "no", "fs-3-4"), row("t-2", "undo", "fs-3-4"),  # taken back
        row("t-3", "flag", "fm-5-0", "split"),            # flagged: settled
        row("t-4", "skip", "fs-6-7"),                     # later: not settled
        row("t-5", "no", "fs-8-9"), row("t-5", "undo", "fs-8-9"), row("t-5", "flag", "fs-8-9"),  # re-answered
        row("t-6", "yes", "fs-1-3"),                      # an edit, not a settled question
        row("t-7", "no", "fs-1-4"), row("t-7", "stale", "fs-1-4"),  # stale skips record no answer
        row("t-8", "undo", "fs-2-2"),                     # an undo with nothing before it
        row("t-9", "no", "syn", "synapse"),               # synapse questions have their own store
        row(None, "merge", None, "manual"),
        row("t-10", "no", None),                          # no candidate id recorded
    ]
    assert settled_tasks(rows) == {"fs-1-2": {"t-1"}, "fm-5-0": {"t-3"}, "fs-8-9": {"t-5"}, "fs-1-4": {"t-7"}}
    assert settled_tasks([]) == {}


def cand(cid, sv, kind="false_split"):
    return Candidate(id=cid, kind=kind, location_nm=(0.0, 0.0, 0.0), segments=(1, 2), supervoxels=sv,
                     sinks=() if kind == "false_split" else (99,))


def test_candidates_need_the_same_id_and_the_same_task():
    a, b, c = cand("fs-1-2", (10, 11)), cand("fs-1-3", (12, 13)), cand("fs-1-2", (14, 15))
    settled = {"fs-1-2": {task_id(a)}}
    # c has a's id but proposes another edit (another task id): asked.
    assert without_settled([a, b, c], settled) == [b, c]
    assert without_settled([a, b], {}) == [a, b]
    found = skipping_settled(lambda pr, **kw: [a, b, c], settled)
    assert found(None) == [b, c]
    plain = lambda pr: [a]  # noqa: E731
    assert skipping_settled(plain, {}) is plain
