"""Applying a candidate's proposed edit, and telling whether it still applies.

One copy shared by the simulated proofreader (:mod:`napari_connectome.rank.simulate`)
and the micro-task session (:mod:`napari_connectome.tasks`): a false split is
fixed by merging its two supervoxels' segments, a false merge by the min-cut
split between its source and sink supervoxels.

A candidate is found on one state of the segmentation. Segment ids are never
reused (every edit mints new ids for the segments it changes), so a candidate
still applies exactly when every segment it names still exists and its
supervoxels are still in them; anything else means someone edited those
segments since (another task's answer, or the Proofread panel).
"""

from __future__ import annotations

from napari_connectome.candidates.model import Candidate
from napari_connectome.errors import InputError


def stale_reason(pr, candidate: Candidate) -> str | None:
    """Why ``candidate`` no longer applies to the proofreader's segmentation now, or None if it does.

    Parameters
    ----------
    pr
        An open :class:`~napari_connectome.proofread.Proofreader`.
    candidate
        A candidate found on an earlier (or the current) state.

    Returns
    -------
    str or None
        One line naming the first thing that changed, e.g. ``"segment 12 no
        longer exists (edited since the task was made)"``.
    """
    for seg in candidate.segments:
        if not pr.state.has_segment(int(seg)):
            return f"segment {int(seg)} no longer exists (edited since the task was made)"
    if candidate.kind == "false_split":
        expected = [int(s) for s in candidate.segments[:2]]
        svs = [int(s) for s in candidate.supervoxels[:2]]
    else:
        expected = [int(candidate.segments[0])] * (len(candidate.supervoxels) + len(candidate.sinks))
        svs = [int(s) for s in (*candidate.supervoxels, *candidate.sinks)]
    for sv, seg in zip(svs, expected, strict=False):
        try:
            now = pr.segment_of(sv)
        except InputError:
            return f"supervoxel {sv} was divided by a split inside it (edited since the task was made)"
        if now != seg:
            return f"supervoxel {sv} moved from segment {seg} to {now} (edited since the task was made)"
    return None


def apply_candidate(pr, candidate: Candidate, *, task_id: str | None = None, suggested_by: str) -> int | None:
    """Apply an accepted candidate's edit through the Proofreader (so it is in the edit log).

    Parameters
    ----------
    pr
        An open, writable :class:`~napari_connectome.proofread.Proofreader`.
    candidate
        ``false_split``: merge the segments of ``candidate.supervoxels[:2]``;
        ``false_merge``: split between ``supervoxels`` (sources) and ``sinks``.
    task_id
        Stored in the edit log row (the micro-task that asked for it).
    suggested_by
        Stored in the edit log row (``"task:active"``, ``"simulate:random"``, ...).

    Returns
    -------
    int or None
        The operation id of the edit, or None when the current state makes it
        moot: the two pieces are one segment already, the cut removes no
        link, or the candidate went stale (a supervoxel changed segment since
        it was found) — a proofreader would find nothing to do there either.
    """
    try:
        if candidate.kind == "false_split":
            a, b = (int(s) for s in candidate.supervoxels[:2])
            if pr.segment_of(a) == pr.segment_of(b):
                return None
            return pr.merge_supervoxels(a, b, task_id=task_id, suggested_by=suggested_by).operation_id
        preview = pr.preview_split_supervoxels(list(candidate.supervoxels), list(candidate.sinks))
        if preview.cut_edges.size == 0:
            return None
        return pr.split(preview, task_id=task_id, suggested_by=suggested_by).operation_id
    except InputError:
        if pr.read_only:
            raise  # not a stale candidate: nothing can be applied at all, say so
        return None
