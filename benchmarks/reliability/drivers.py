"""Python drivers of the campaign: what a napari session does with a project, as a command.

Run by path (``python benchmarks/reliability/drivers.py ACTION DIR ...``) so
each case gets a fresh interpreter, like a person opening the project again.
They keep the CLI's promise themselves: a
:class:`~napari_connectome.errors.ConnectomeError` prints one line
``driver: error: MESSAGE`` and exits 2; any other exception escapes as a
traceback (exit 1), which the campaign counts as a traceback.

Actions
-------
``build DIR [--merges N] [--snapshot-ops K] [--snapshot-dir D]``
    Make the fixture's history: N merges, one split, one undo, with an
    effort row per edit and two task rows, then every skeleton. Copies of the
    edit and effort logs are kept in D when the edit log holds K operations
    (for the "rolled back" damage). Prints a JSON summary.
``edit DIR [--merges N] [--seed S] [--forever]``
    Open for editing (``Proofreader.open``), make N merges at points chosen
    from the segmentation, close. Prints ``opened N_OPS``, ``op UUID`` after
    every committed edit, ``closed N_OPS``. ``--forever`` keeps editing
    until killed (the kill tests).
``skeletons DIR``
    ``Proofreader.open(read_only=True)`` then ``SkeletonStore.open``: prints
    ``{"n": ..., "current": ..., "uuids": [...]}``.
``history DIR``
    ``Proofreader.open(read_only=True)``: prints ``{"uuids": [...]}``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _representatives(pr) -> tuple[dict[int, tuple[float, float, float]], np.ndarray]:
    """One voxel (as a point in nm) per supervoxel, and the graph's edges."""
    level = pr.supervoxel_volume().levels[0]
    sv = np.asarray(level.array[...])
    ids, first = np.unique(sv.ravel(), return_index=True)
    vs = np.asarray(level.voxel_size, dtype=np.float64)
    off = np.asarray(level.offset, dtype=np.float64)
    points = {}
    for i, flat in zip(ids.tolist(), first.tolist(), strict=True):
        if i == 0:
            continue
        idx = np.unravel_index(flat, sv.shape)
        points[int(i)] = tuple(float(x) for x in np.asarray(idx) * vs + off)
    return points, np.asarray(pr.rag.edges)


def _merge_candidates(pr, seed: int) -> list[tuple[int, int]]:
    edges = [tuple(int(x) for x in e) for e in np.asarray(pr.rag.edges)]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(edges))
    return [edges[i] for i in order]


def _do_merges(pr, n: int, seed: int, points, *, forever: bool = False, on_op=None) -> int:
    done = 0
    pairs = _merge_candidates(pr, seed)
    k = 0
    while forever or done < n:
        if k >= len(pairs):
            if not forever:
                break
            result = pr.undo() if pr.can_undo() else None  # keep going: undo what was merged
            if result is None:
                break
            on_op(result)
            continue
        u, v = pairs[k]
        k += 1
        if u not in points or v not in points or pr.segment_of(u) == pr.segment_of(v):
            continue
        result = pr.merge(points[u], points[v])
        done += 1
        if on_op is not None:
            on_op(result)
    return done


def _uuid_of(pr, op_id: int) -> str:
    for row in pr.history():
        if int(row["operation_id"]) == int(op_id):
            return str(row["uuid"])
    return "?"


def cmd_build(args) -> int:
    from napari_connectome.effort import EffortLog
    from napari_connectome.proofread import Proofreader
    from napari_connectome.skeleton.store import SkeletonStore

    root = Path(args.dir)
    snap = Path(args.snapshot_dir) if args.snapshot_dir else None
    made: list[dict] = []

    def session(n_merges: int, seed: int, *, split: bool, undo: bool, tasks: int) -> None:
        pr = Proofreader.open(root, user="campaign")
        log = EffortLog.open(pr.project, user="campaign", session=pr.session)
        try:
            points, _ = _representatives(pr)
            now = time.time() - 3600

            def record(result) -> None:
                nonlocal now
                made.append({"operation_id": result.operation_id, "type": result.type,
                             "uuid": _uuid_of(pr, result.operation_id)})
                log.record(task_id=None, task_type="manual", answer=result.type, shown_at=now,
                           answered_at=now + 7.5, active_s=7.5, idle_s=0.0, edit_id=result.operation_id,
                           segments=result.after_segments)
                now += 10

            _do_merges(pr, n_merges, seed, points, on_op=record)
            if split:
                merges = [m for m in made if m["type"] == "merge"]
                for m in reversed(merges):
                    row = next(r for r in pr.history() if int(r["operation_id"]) == m["operation_id"])
                    svs = [int(s) for s in row["supervoxel_ids"]]
                    if len(svs) < 2 or pr.segment_of(svs[0]) != pr.segment_of(svs[1]):
                        continue
                    try:
                        record(pr.split(sources_nm=[points[svs[0]]], sinks_nm=[points[svs[1]]], inside=False))
                        break
                    except Exception as exc:  # noqa: BLE001 - try another pair
                        _say(f"note: split not possible here ({exc})")
            if undo and pr.can_undo():
                record(pr.undo())
            for t in range(tasks):
                log.record(task_id=f"task-{seed}-{t}", task_type="merge", answer="no", shown_at=now,
                           answered_at=now + 4.0, active_s=4.0, idle_s=0.0, segments=[])
                now += 5
        finally:
            log.close()
            pr.close()

    session(max(1, args.snapshot_ops), 1, split=False, undo=False, tasks=1)
    if snap is not None:
        snap.mkdir(parents=True, exist_ok=True)
        for name in ("edits.sqlite", "effort.sqlite"):
            if (root / name).exists():
                shutil.copy2(root / name, snap / name)
    session(max(0, args.merges - args.snapshot_ops), 2, split=True, undo=True, tasks=1)
    pr = Proofreader.open(root, user="campaign", read_only=True)
    try:
        store = SkeletonStore.rebuild(pr)
        n_skel = len(store)
        uuids = [str(r["uuid"]) for r in pr.history()]
    finally:
        pr.close()
    _say(json.dumps({"ops": made, "uuids": uuids, "skeletons": n_skel}))
    return 0


def cmd_edit(args) -> int:
    from napari_connectome.proofread import Proofreader

    pr = Proofreader.open(args.dir, user=f"driver-{args.seed}")
    try:
        _say(f"opened {len(pr.history())}")
        points, _ = _representatives(pr)
        _do_merges(pr, args.merges, args.seed, points, forever=args.forever,
                   on_op=lambda r: _say(f"op {_uuid_of(pr, r.operation_id)}"))
        n = len(pr.history())
    finally:
        pr.close()
    _say(f"closed {n}")
    return 0


def cmd_skeletons(args) -> int:
    from napari_connectome.proofread import Proofreader
    from napari_connectome.skeleton.store import SkeletonStore

    pr = Proofreader.open(args.dir, read_only=True)
    try:
        store = SkeletonStore.open(pr)
        out = {"n": len(store), "current": bool(store.is_current(pr)),
               "uuids": [str(r["uuid"]) for r in pr.history()]}
    finally:
        pr.close()
    _say(json.dumps(out))
    return 0


def cmd_history(args) -> int:
    from napari_connectome.proofread import Proofreader

    pr = Proofreader.open(args.dir, read_only=True)
    try:
        out = {"uuids": [str(r["uuid"]) for r in pr.history()], "notes": list(pr.notes)}
    finally:
        pr.close()
    _say(json.dumps(out))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="driver")
    sub = parser.add_subparsers(dest="action", required=True)
    b = sub.add_parser("build")
    b.add_argument("dir")
    b.add_argument("--merges", type=int, default=6)
    b.add_argument("--snapshot-ops", type=int, default=3)
    b.add_argument("--snapshot-dir")
    e = sub.add_parser("edit")
    e.add_argument("dir")
    e.add_argument("--merges", type=int, default=1)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--forever", action="store_true")
    s = sub.add_parser("skeletons")
    s.add_argument("dir")
    h = sub.add_parser("history")
    h.add_argument("dir")
    args = parser.parse_args(argv)

    from napari_connectome.errors import ConnectomeError

    try:
        return {"build": cmd_build, "edit": cmd_edit, "skeletons": cmd_skeletons,
                "history": cmd_history}[args.action](args)
    except ConnectomeError as exc:
        print(f"driver: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
