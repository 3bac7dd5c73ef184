"""What proofreading cost: minutes per mm³ and per neuron, edits per neuron, a projection.

Figures come from two logs: the effort log (active time per answer and per
manual edit) and the edit log, the source of truth for edits (only edits
still in effect count as merges and splits; undos are counted apart).

Neurons
-------
A *neuron* is a segment as it is **now** (after every edit) that a task or an
edit touched. A task's segments are followed through the edit log's lineage
(``before_roots`` → ``after_roots``) to the segments they became; an edit in
effect is attributed to the segments that hold its supervoxels now. When one
row or edit ends on several neurons, its minutes and its edit count are split
evenly between them (so per-neuron sums equal the totals); the per-neuron
``tasks`` column counts every task that touched the neuron.

Cost projection
---------------
``edits per mm³ here × target volume × measured seconds per edit``, for
merges and splits apart, plus ``other decisions per mm³ × target × their
mean seconds``. Seconds per merge (split) are the mean active time of the
tasks whose answer made a merge (split); when no task made one, the manual
edits of that type are used. It assumes that error density and proofreading
speed stay as measured here, which a small or hand-picked volume need not show.

So the projection carries a plain ``warning`` (and ``reliable`` False) when
the measured volume is under :data:`MIN_PROJECTION_MM3` (10⁻³ mm³, a
100 µm cube) or holds fewer than :data:`MIN_PROJECTION_NEURONS` (10)
reviewed neurons. Why these: a 100 µm cube is about the smallest block that
holds whole dendritic arbors of cortical neurons (100–300 µm across) and
some hundred cell bodies (mouse cortex: ~10⁵ neurons per mm³); below it the
measured error density is that of a few cell parts, and multiplying it by
10³ or more only multiplies that accident. Edits per neuron are heavy-tailed
(the report's ``top5_share``): with fewer than ten neurons one or two of them
set the mean. The figures are still given, for whoever knows better.

Waiting
-------
Time the proofreader spent waiting for the suite (from an answer's key
press to the next task drawn; the effort log's ``waiting_s``) is counted
neither active nor idle: ``minutes_waiting``.

VI curve
--------
With a ground truth, the task session stores the live VI before its first
answer (the effort log's session start, version 3) and after each row's
edit (version 2). ``vi_curve`` lists them in order — each session's start
just before its first row, then the rows that carry VI — against the active
minutes counted up to that point (over all rows, those without VI too):
how VI changed as time was spent. ``event`` says which point is which
(``start``, ``task``, ``manual``). ``vi_start`` is the first point: the
state before the first answer when it was recorded (older logs: after the
first row, and ``vi_from_start`` is False), ``vi_end`` the last. A session
that made things worse reads as a curve that rises.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np

from napari_connectome.arrays import distinct
from napari_connectome.atomic import atomic_write
from napari_connectome.effort.log import EffortLog
from napari_connectome.errors import InputError, from_os_error

VOLUMES = ("project", "segments")
#: Largest level (voxels) read to find the segments' bounding boxes.
MAX_BOX_VOXELS = 2**27
#: Voxels per slab read at a time while finding bounding boxes.
SLAB_VOXELS = 2**23
NM3_PER_MM3 = 1e18
CSV_COLUMNS = ("segment", "minutes", "merges", "splits", "edits", "tasks")
_EDIT_TYPES = ("merge", "split", "split_supervoxel")
#: Below this measured volume (mm³) the cost projection carries a warning (see the module notes).
MIN_PROJECTION_MM3 = 1e-3
#: With fewer reviewed neurons than this the cost projection carries a warning (see the module notes).
MIN_PROJECTION_NEURONS = 10
_TASK_ANSWERS = ("yes", "no", "skip", "flag", "undo", "stale")


def _mean(values) -> float | None:
    values = list(values)
    return float(np.mean(values)) if values else None


def _stats(values: np.ndarray) -> dict:
    if values.size == 0:
        return {"mean": None, "p50": None, "p95": None}
    return {
        "mean": float(values.mean()),
        "p50": float(np.percentile(values, 50)),
        "p95": float(np.percentile(values, 95)),
    }


def _open_edit_history(project):
    """``(proofreader | None, history rows)``: the edit log replayed read-only."""
    if "supervoxels" not in project.inputs:
        return None, []
    from napari_connectome.graph import has_project_graph
    from napari_connectome.proofread import Proofreader

    if not has_project_graph(project):
        return None, []  # no graph, so no edit could have been made
    pr = Proofreader.open(project, read_only=True)
    pr.close()  # the replayed state stays readable
    return pr, pr.history()


class _Lineage:
    """Which current segments each past segment became, from the edit log."""

    def __init__(self, history: list[dict], current: set[int] | None) -> None:
        self.children: dict[int, list[int]] = {}
        for row in history:
            for b in row["before_roots"]:
                self.children[int(b)] = [int(a) for a in row["after_roots"]]
        self.current = current
        self._memo: dict[int, frozenset[int]] = {}

    def now(self, segment: int) -> frozenset[int]:
        segment = int(segment)
        if segment in self._memo:
            return self._memo[segment]
        # Iterative walk: ids only grow along the lineage, so there is no cycle.
        out: set[int] = set()
        stack, seen = [segment], set()
        while stack:
            s = stack.pop()
            if s in seen:
                continue
            seen.add(s)
            kids = self.children.get(s)
            if kids:
                stack.extend(kids)
            elif s != 0 and (self.current is None or s in self.current):
                out.add(s)
        self._memo[segment] = frozenset(out)
        return self._memo[segment]

    def of(self, segments) -> list[int]:
        out: set[int] = set()
        for s in segments:
            out |= self.now(s)
        return sorted(out)


def _edit_segments(pr, row: dict, lineage: _Lineage) -> list[int]:
    """The current segments holding an edit's supervoxels (its result's lineage if none is left)."""
    out: set[int] = set()
    if pr is not None:
        for sv in row["supervoxel_ids"]:
            try:
                seg = pr.segment_of(int(sv))
            except (InputError, KeyError, IndexError, ValueError):
                continue  # divided by a later split inside it
            if seg:
                out.add(int(seg))
    return sorted(out) if out else lineage.of(row["after_roots"])


def _spatial(level) -> tuple[tuple[int, ...], tuple[float, ...]]:
    keep = [i for i, a in enumerate(level.axes) if a in ("z", "y", "x")] or list(range(level.ndim))
    return tuple(level.shape[i] for i in keep), tuple(float(level.voxel_size[i]) for i in keep)


def _project_volume(project) -> tuple[float, str]:
    role = "supervoxels" if "supervoxels" in project.inputs else "raw"
    level = project.open_input(role).levels[0]
    shape, vs = _spatial(level)
    mm3 = float(np.prod(shape, dtype=np.float64) * np.prod(vs) / NM3_PER_MM3)
    text = (
        f"project region: {role} level 0, {' × '.join(map(str, shape))} voxels of "
        f"{' × '.join(f'{v:g}' for v in vs)} nm = {mm3:.4g} mm³"
    )
    return mm3, text


def _segments_volume(pr, neurons: list[int]) -> tuple[float, str]:
    if pr is None or not neurons:
        return 0.0, "union of the bounding boxes of reviewed segments: no segment reviewed yet (0 mm³)"
    volume = pr.labels_volume()
    k = next((i for i, lv in enumerate(volume.levels) if int(np.prod(lv.shape)) <= MAX_BOX_VOXELS),
             len(volume.levels) - 1)
    level = volume.levels[k]
    if level.ndim != 3:
        raise InputError(volume.source, f"segments must be 3D (z, y, x), got axes {level.axes}")
    shape, vs = _spatial(level)
    targets = np.asarray(sorted(neurons), dtype=np.uint64)
    lo = np.full((targets.size, 3), np.iinfo(np.int64).max, np.int64)
    hi = np.full((targets.size, 3), -1, np.int64)
    from scipy.ndimage import find_objects

    step = max(1, SLAB_VOXELS // max(1, shape[1] * shape[2]))
    for z0 in range(0, shape[0], step):
        z1 = min(shape[0], z0 + step)
        data = np.asarray(level.array[z0:z1, :, :]).astype(np.uint64, copy=False)
        idx = np.searchsorted(targets, data)
        found = targets[np.minimum(idx, targets.size - 1)] == data
        dense = np.where(found, idx + 1, 0).astype(np.int64)
        for i, box in enumerate(find_objects(dense, max_label=targets.size)):
            if box is None:
                continue
            a = np.array([box[0].start + z0, box[1].start, box[2].start])
            b = np.array([box[0].stop + z0, box[1].stop, box[2].stop])
            lo[i] = np.minimum(lo[i], a)
            hi[i] = np.maximum(hi[i], b)
    mask = np.zeros(shape, dtype=bool)
    boxed = 0
    for a, b in zip(lo, hi, strict=True):
        if (b > a).all():
            mask[a[0]:b[0], a[1]:b[1], a[2]:b[2]] = True
            boxed += 1
    count = int(mask.sum())
    mm3 = float(count * np.prod(vs) / NM3_PER_MM3)
    text = (
        f"union of the bounding boxes of {boxed} reviewed segments, counted at level {k} "
        f"({' × '.join(f'{v:g}' for v in vs)} nm voxels): {count} voxels = {mm3:.4g} mm³"
    )
    return mm3, text


def _corrupt_logs(path: Path) -> list[str]:
    return sorted(
        p.name for p in path.parent.glob(path.name + ".corrupt-*")
        if not p.name.endswith(("-wal", "-shm", "-journal"))
    )


def effort_report(project, *, volume: str = "project", target_mm3: float = 1.0, proofreader=None) -> dict:
    """Effort figures of a project, from its effort log and its edit log.

    Parameters
    ----------
    project
        A :class:`~napari_connectome.project.Project` or its folder.
    volume
        ``"project"``: the project's region (supervoxels level 0 shape ×
        voxel size). ``"segments"``: the union (voxels counted once) of the
        bounding boxes of the reviewed segments.
    target_mm3
        Volume of the cost projection (mm³).
    proofreader
        An open :class:`~napari_connectome.proofread.Proofreader` of this
        project to read the edits and the current segments from (the GUI
        shares its own); by default the edit log is replayed read-only.

    Returns
    -------
    dict
        ``minutes_active``, ``minutes_idle``, ``minutes_waiting`` (waiting
        for the suite, neither active nor idle), ``volume`` (mode),
        ``volume_mm3``, ``volume_basis``, ``minutes_per_mm3``, ``neurons``,
        ``minutes_per_neuron``, ``minutes_per_neuron_stats`` {mean, p50,
        p95}, ``minutes_unattributed``, ``tasks`` {total, yes, no, skip,
        flag, undo, stale}, ``manual`` {total, merge, split,
        split_supervoxel, undo, redo}, ``edits`` {merge, split, undo, redo}
        (edit log: merges and splits in effect), ``edits_per_neuron``
        {mean, p50, p95, top5_share, merge{mean, p50, p95}, split{...}},
        ``t_merge_s``, ``t_split_s``, ``t_decision_s``,
        ``cost_projection`` {volume_mm3, merge_edits, split_edits,
        decisions, t_merge_s, t_split_s, t_decision_s, hours, basis,
        measured_mm3, neurons, scale, reliable, warning},
        ``per_neuron`` [{segment, minutes, merges, splits, edits, tasks}],
        ``vi_curve`` [{minutes_active, vi_split, vi_merge, vi, event}] (see
        the module notes), ``vi_start``, ``vi_end`` (bits; None without VI),
        ``vi_from_start`` (the curve starts before the first answer),
        ``vi_rows`` {tasks, manual, starts} (points on the curve),
        ``sessions``, ``users``, ``effort_log``, ``recovered_from``,
        ``corrupt_logs``. Missing figures are None (never NaN). The same
        logs always give the same dict.

    Raises
    ------
    InputError
        No effort log yet, a corrupt one, a bad ``volume`` or ``target_mm3``.
    """
    from napari_connectome.project import Project, open_project

    if volume not in VOLUMES:
        raise InputError("--volume", f"must be 'project' or 'segments', got {volume!r}")
    try:
        target = float(target_mm3)
    except (TypeError, ValueError):
        target = float("nan")
    if not (target > 0 and math.isfinite(target)):
        raise InputError("target volume", f"must be a finite number of mm³ > 0, got {target_mm3!r}")
    if not isinstance(project, Project):
        project = open_project(project)
    log = EffortLog.open(project, read_only=True)
    try:
        rows = log.rows()
        sessions = log.sessions()
    finally:
        log.close()

    if proofreader is not None:
        pr, history = proofreader, proofreader.history()
    else:
        pr, history = _open_edit_history(project)
    current = {int(s) for s in distinct(pr.mapping()[1])} if pr is not None else None
    lineage = _Lineage(history, current)
    by_op = {int(r["operation_id"]): r for r in history}
    in_effect = [r for r in history if r["type"] in _EDIT_TYPES and not r["undone"]]

    # ---- per neuron
    minutes: dict[int, float] = {}
    merges: dict[int, float] = {}
    splits: dict[int, float] = {}
    tasks_on: dict[int, int] = {}
    touched: set[int] = set()
    unattributed = 0.0
    for row in rows:
        if row["segments"]:
            segs = lineage.of(row["segments"])
        elif row["edit_id"] is not None and int(row["edit_id"]) in by_op:
            segs = _edit_segments(pr, by_op[int(row["edit_id"])], lineage)
        else:
            segs = []
        if not segs:
            unattributed += row["active_s"] / 60.0
            continue
        touched.update(segs)
        for s in segs:
            minutes[s] = minutes.get(s, 0.0) + row["active_s"] / 60.0 / len(segs)
            if row["task_type"] != "manual":
                tasks_on[s] = tasks_on.get(s, 0) + 1
    for edit in in_effect:
        segs = _edit_segments(pr, edit, lineage)
        touched.update(segs)
        bucket = merges if edit["type"] == "merge" else splits
        for s in segs:
            bucket[s] = bucket.get(s, 0.0) + 1.0 / len(segs)
    neurons = sorted(touched)
    per_neuron = [
        {
            "segment": s, "minutes": minutes.get(s, 0.0), "merges": merges.get(s, 0.0),
            "splits": splits.get(s, 0.0), "edits": merges.get(s, 0.0) + splits.get(s, 0.0),
            "tasks": tasks_on.get(s, 0),
        }
        for s in neurons
    ]
    m_arr = np.array([r["merges"] for r in per_neuron], dtype=np.float64)
    s_arr = np.array([r["splits"] for r in per_neuron], dtype=np.float64)
    e_arr = m_arr + s_arr
    top5 = None
    if e_arr.size and e_arr.sum() > 0:
        k = math.ceil(0.05 * e_arr.size)
        # Ties broken by segment id (per_neuron is sorted by it): reproducible.
        order = sorted(range(e_arr.size), key=lambda i: (-e_arr[i], neurons[i]))
        top5 = float(e_arr[order[:k]].sum() / e_arr.sum())
    epn = _stats(e_arr)
    epn["top5_share"] = top5
    epn["merge"] = _stats(m_arr)
    epn["split"] = _stats(s_arr)

    # ---- totals
    task_rows = [r for r in rows if r["task_type"] != "manual"]
    manual_rows = [r for r in rows if r["task_type"] == "manual"]
    tasks = {"total": len(task_rows), **{a: sum(r["answer"] == a for r in task_rows) for a in _TASK_ANSWERS}}
    manual = {"total": len(manual_rows),
              **{a: sum(r["answer"] == a for r in manual_rows) for a in (*_EDIT_TYPES, "undo", "redo")}}
    n_merge = sum(r["type"] == "merge" for r in in_effect)
    n_split = sum(r["type"] in ("split", "split_supervoxel") for r in in_effect)
    edits = {
        "merge": n_merge, "split": n_split,
        "undo": sum(r["type"] == "undo" for r in history),
        "redo": sum(r["type"] == "redo" for r in history),
    }
    minutes_active = float(sum(r["active_s"] for r in rows) / 60.0)
    minutes_idle = float(sum(r["idle_s"] for r in rows) / 60.0)
    minutes_waiting = float(sum(r["waiting_s"] for r in rows) / 60.0)

    # ---- measured times
    def edit_type(row) -> str | None:
        op = by_op.get(int(row["edit_id"])) if row["edit_id"] is not None else None
        return None if op is None else op["type"]

    t_merge = _mean(r["active_s"] for r in task_rows if edit_type(r) == "merge")
    t_split = _mean(r["active_s"] for r in task_rows if edit_type(r) in ("split", "split_supervoxel"))
    decisions = [r for r in task_rows if edit_type(r) not in _EDIT_TYPES]
    t_decision = _mean(r["active_s"] for r in decisions)
    t_manual_merge = _mean(r["active_s"] for r in manual_rows if r["answer"] == "merge")
    t_manual_split = _mean(r["active_s"] for r in manual_rows if r["answer"] in ("split", "split_supervoxel"))

    if volume == "project":
        volume_mm3, volume_basis = _project_volume(project)
    else:
        volume_mm3, volume_basis = _segments_volume(pr, neurons)
    projection = _projection(
        volume_mm3, volume_basis, target, n_merge, n_split, len(decisions),
        (t_merge, "tasks") if t_merge is not None else (t_manual_merge, "manual merges"),
        (t_split, "tasks") if t_split is not None else (t_manual_split, "manual splits"),
        t_decision, n_neurons=len(neurons),
    )
    vi_curve, vi_rows = _vi_curve(rows, sessions)
    corrupt = _corrupt_logs(log.path)
    attributed = np.array([r["minutes"] for r in per_neuron], dtype=np.float64)
    return {
        "minutes_active": minutes_active,
        "minutes_idle": minutes_idle,
        "minutes_waiting": minutes_waiting,
        "volume": volume,
        "volume_mm3": volume_mm3,
        "volume_basis": volume_basis,
        "minutes_per_mm3": minutes_active / volume_mm3 if volume_mm3 > 0 else None,
        "neurons": len(neurons),
        "minutes_per_neuron": minutes_active / len(neurons) if neurons else None,
        "minutes_per_neuron_stats": _stats(attributed),
        "minutes_unattributed": float(unattributed),
        "tasks": tasks,
        "manual": manual,
        "edits": edits,
        "edits_per_neuron": epn,
        "t_merge_s": t_merge,
        "t_split_s": t_split,
        "t_decision_s": t_decision,
        "cost_projection": projection,
        "per_neuron": per_neuron,
        "vi_curve": vi_curve,
        "vi_start": vi_curve[0]["vi"] if vi_curve else None,
        "vi_end": vi_curve[-1]["vi"] if vi_curve else None,
        "vi_from_start": bool(vi_curve) and vi_curve[0]["event"] == "start",
        "vi_rows": vi_rows,
        "sessions": len(sessions),
        "users": sorted({r["user"] for r in rows} | {s["user"] for s in sessions}),
        "effort_log": str(log.path),
        "recovered_from": str(log.path.parent / corrupt[-1]) if corrupt else None,
        "corrupt_logs": corrupt,
    }


def _vi_point(minutes: float, split: float, merge: float, event: str) -> dict:
    return {"minutes_active": minutes, "vi_split": split, "vi_merge": merge, "vi": split + merge, "event": event}


def _vi_curve(rows: list[dict], sessions: list[dict]) -> tuple[list[dict], dict]:
    """The VI at each session's start and on the rows, against cumulative active minutes; counts per kind."""
    starts = {s["session"]: (float(s["vi_split_start"]), float(s["vi_merge_start"])) for s in sessions
              if s.get("vi_split_start") is not None and s.get("vi_merge_start") is not None}
    curve, counts = [], {"tasks": 0, "manual": 0, "starts": 0}
    active_s = 0.0
    for row in rows:
        start = starts.pop(row["session"], None)
        if start is not None:  # the state before this session's first row
            curve.append(_vi_point(active_s / 60.0, *start, "start"))
            counts["starts"] += 1
        active_s += row["active_s"]
        if row.get("vi_split") is None or row.get("vi_merge") is None:
            continue
        kind = "manual" if row["task_type"] == "manual" else "tasks"
        curve.append(_vi_point(active_s / 60.0, float(row["vi_split"]), float(row["vi_merge"]),
                               "manual" if kind == "manual" else "task"))
        counts[kind] += 1
    return curve, counts


def _vi_line(report: dict) -> str:
    curve = report.get("vi_curve") or []
    if not curve:
        return "VI           — (no ground truth: VI not recorded)"
    a, b = curve[0], curve[-1]
    n = report.get("vi_rows") or {}
    over = f"{n.get('tasks', 0)} answers" + (f" and {n['manual']} manual edits" if n.get("manual") else "")
    change = b["vi"] - a["vi"]
    verdict = "better" if change < 0 else "worse" if change > 0 else "unchanged"
    since = ("from before the first answer" if report.get("vi_from_start")
             else "from after the first answer (the state before it was not recorded)")
    return (f"VI           {a['vi']:.3f} → {b['vi']:.3f} bits ({change:+.3f} bits: {verdict}; "
            f"split {a['vi_split']:.3f} → {b['vi_split']:.3f}, merge {a['vi_merge']:.3f} → {b['vi_merge']:.3f}) "
            f"over {over}, {since}")


def _projection_warning(volume_mm3: float, n_neurons: int, scale: float) -> str | None:
    """Why extrapolating from this measurement is not meaningful, in plain words; None when it may be."""
    reasons = []
    if volume_mm3 < MIN_PROJECTION_MM3:
        reasons.append(f"only {volume_mm3:.3g} mm³ was measured (less than {MIN_PROJECTION_MM3:g} mm³, "
                       "a 100 µm cube)")
    if n_neurons < MIN_PROJECTION_NEURONS:
        reasons.append(f"only {n_neurons} neuron{'s' if n_neurons != 1 else ''} were reviewed "
                       f"(fewer than {MIN_PROJECTION_NEURONS})")
    if not reasons:
        return None
    return (f"not a reliable projection: {' and '.join(reasons)}; scaling it ×{scale:.3g} multiplies what "
            "happened in this small sample — measure on a larger volume before trusting the hours")


def _projection(volume_mm3, volume_basis, target, n_merge, n_split, n_decisions, t_merge, t_split,
                t_decision, *, n_neurons: int) -> dict:
    (tm, tm_src), (ts, ts_src) = t_merge, t_split
    out = {"volume_mm3": target, "merge_edits": None, "split_edits": None, "decisions": None,
           "t_merge_s": tm, "t_split_s": ts, "t_decision_s": t_decision, "hours": None,
           "measured_mm3": volume_mm3, "neurons": n_neurons, "scale": None, "reliable": False}
    if volume_mm3 <= 0:
        out["basis"] = "no volume counted yet, so nothing to scale"
        out["warning"] = "not a projection: no volume was measured"
        return out
    scale = target / volume_mm3
    out["scale"] = scale
    out["warning"] = _projection_warning(volume_mm3, n_neurons, scale)
    out["reliable"] = out["warning"] is None
    out["merge_edits"] = n_merge * scale
    out["split_edits"] = n_split * scale
    out["decisions"] = n_decisions * scale
    missing = [what for what, n, t in (("merges", n_merge, tm), ("splits", n_split, ts),
                                      ("other decisions", n_decisions, t_decision)) if n and t is None]
    terms = [(out["merge_edits"], tm), (out["split_edits"], ts), (out["decisions"], t_decision)]
    if not missing:
        out["hours"] = sum(n * (t or 0.0) for n, t in terms) / 3600.0
    out["basis"] = (
        f"{n_merge} merges and {n_split} splits in effect and {n_decisions} other task decisions over "
        f"{volume_mm3:.4g} mm³ ({volume_basis.split(':')[0]}), scaled linearly to {target:g} mm³; "
        f"seconds per merge from {tm_src}, per split from {ts_src}, mean active time of the rest for "
        "other decisions; assumes the error density and speed measured here hold"
        + (f"; no measured time for {', '.join(missing)}, so no hours" if missing else "")
    )
    return out


def write_report_csv(report: dict, path: str | os.PathLike, *, overwrite: bool = False,
                     projects=()) -> Path:
    """Write the per-neuron table of a report as CSV (atomically); returns the path.

    Columns: segment, minutes, merges, splits, edits, tasks. ``path`` passes
    :func:`~napari_connectome.outputs.guard_output`: never a project's own
    file (nor an input of ``projects``), and an existing file only with
    ``overwrite``.
    """
    from napari_connectome.outputs import guard_output

    path = guard_output(path, projects=projects, overwrite=overwrite, what="--csv")
    try:
        with atomic_write(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(CSV_COLUMNS)
            for row in report["per_neuron"]:
                writer.writerow([row[c] for c in CSV_COLUMNS])
    except OSError as exc:
        raise from_os_error(exc, path, action="nothing was written") from None
    return path


def _fmt(value, spec: str = ".3g", unit: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{unit}"


def report_text(report: dict, *, max_neurons: int = 20) -> str:
    """A human-readable summary of :func:`effort_report` (the CLI's default output)."""
    t, e, m = report["tasks"], report["edits"], report["manual"]
    epn, proj = report["edits_per_neuron"], report["cost_projection"]
    lines = [
        f"effort log   {report['effort_log']}",
        f"sessions     {report['sessions']}  users: {', '.join(report['users']) or '—'}",
        f"active       {report['minutes_active']:.2f} min   (excluded: idle {report['minutes_idle']:.2f} min, "
        f"waiting for the suite {report.get('minutes_waiting', 0.0):.2f} min)",
        f"volume       {_fmt(report['volume_mm3'], '.4g', ' mm³')}   counted: {report['volume_basis']}",
        f"min / mm³    {_fmt(report['minutes_per_mm3'], '.4g', ' min/mm³')}",
        f"neurons      {report['neurons']}   min / neuron {_fmt(report['minutes_per_neuron'], '.3g', ' min')}",
        f"tasks        {t['total']}: yes {t['yes']}, no {t['no']}, skip {t['skip']}, flag {t['flag']}, "
        f"undo {t['undo']}, stale {t['stale']}",
        f"manual edits {m['total']}",
        f"edits        merge {e['merge']}, split {e['split']} (in effect); undo {e['undo']}, redo {e['redo']}",
        f"edits/neuron mean {_fmt(epn['mean'], '.3g', ' edits')}, p50 {_fmt(epn['p50'], '.3g', ' edits')}, "
        f"p95 {_fmt(epn['p95'], '.3g', ' edits')}; "
        f"top 5 % of neurons hold {_fmt(None if epn['top5_share'] is None else 100 * epn['top5_share'], '.1f', ' %')} of edits",
        f"  merge      p50 {_fmt(epn['merge']['p50'], '.3g', ' merges')}, p95 {_fmt(epn['merge']['p95'], '.3g', ' merges')}",
        f"  split      p50 {_fmt(epn['split']['p50'], '.3g', ' splits')}, p95 {_fmt(epn['split']['p95'], '.3g', ' splits')}",
        f"t_merge      {_fmt(report['t_merge_s'], '.1f', ' s')}   t_split {_fmt(report['t_split_s'], '.1f', ' s')}   "
        f"other decision {_fmt(report['t_decision_s'], '.1f', ' s')}",
        f"projection   {proj['volume_mm3']:g} mm³: {_fmt(proj['hours'], '.4g', ' h')} "
        f"({_fmt(proj['merge_edits'], '.4g')} merges, {_fmt(proj['split_edits'], '.4g')} splits, "
        f"{_fmt(proj['decisions'], '.4g')} other decisions)",
        f"  basis      {proj['basis']}",
        *([f"  WARNING    {proj['warning']}"] if proj.get("warning") else []),
        _vi_line(report),
    ]
    if report["recovered_from"]:
        lines.append(f"note         a corrupt effort log was moved aside: {report['recovered_from']}")
    rows = report["per_neuron"]
    if rows:
        lines.append("")
        lines.append(f"{'segment':>10} {'minutes':>9} {'merges':>7} {'splits':>7} {'tasks':>6}")
        top = sorted(rows, key=lambda r: (-r["minutes"], r["segment"]))[:max_neurons]
        for r in top:
            lines.append(f"{r['segment']:>10} {r['minutes']:>9.2f} {r['merges']:>7.3g} {r['splits']:>7.3g} {r['tasks']:>6}")
        if len(rows) > len(top):
            lines.append(f"… {len(rows) - len(top)} more neurons (use --csv for all)")
    return "\n".join(lines)
