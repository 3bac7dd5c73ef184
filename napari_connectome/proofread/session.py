"""The Proofreader: merge, split (with preview), split inside a supervoxel, undo, redo — logged first.

State = base segmentation + the edit log. The base is the agglomeration's
segments at the project's threshold (``manifest["agglomeration"]``), or
every supervoxel on its own; opening a project replays the log on top of it
and gives the same state, ids included, every time.

Every edit follows the same three steps:

1. compute its whole effect in memory (min-cut, watershed, new ids), without
   touching the state;
2. write one log row in one transaction and wait for the commit;
3. only then change the in-memory state and bump :attr:`Proofreader.version`.

A crash between 2 and 3 loses nothing: the next opening replays the row.

Segment ids behave like CAVE's root ids: a segment created by an edit gets
a new id from a counter that only grows (above every supervoxel id), never
an old one — an undo too creates new ids. Supervoxels minted by a split
inside a supervoxel take ids from the same counter.

**Undo and redo** are new operations (CAVE style). :meth:`Proofreader.undo`
reverses the most recent edit still in effect; :meth:`Proofreader.redo`
reverses the most recent undo, as long as no new edit was made since (a new
edit clears the redo list, as in every editor). ``undo(operation_id=N)``
reverses an older edit only if the segments it made are still exactly as it
left them; if a later operation changed them it is refused, naming the
operations to undo first — applying the inverse of an old edit to segments
that moved on would cut or join things the user never saw together.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import hashlib
import threading
import time
import uuid as _uuid
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from napari_connectome.arrays import distinct, overlaps
from napari_connectome.errors import InputError
from napari_connectome.events import Connection, Signal
from napari_connectome.project import NEEDS_SUPERVOXELS
from napari_connectome.proofread.history import History, Operation
from napari_connectome.proofread.inside import preview_inside
from napari_connectome.proofread.log import (
    DEFAULT_LOCK_TIMEOUT,
    EditLog,
    open_edit_log,
    record_edit_log,
)
from napari_connectome.proofread.ops import Effect, Patch
from napari_connectome.proofread.overlay import LabelReader, Overlay, proofread_volume
from napari_connectome.proofread.preview import SplitPreview, describe_split
from napari_connectome.proofread.recorded import OPERATION_TYPES, RecordedOperation
from napari_connectome.proofread.split import min_cut
from napari_connectome.proofread.state import (
    EffectConflict,
    Plan,
    SegmentationState,
    members_digest,
)


@dataclass
class EditResult:
    """What an edit did.

    Attributes
    ----------
    operation_id
        Its row in the edit log.
    type
        ``merge``, ``split``, ``split_supervoxel``, ``undo`` or ``redo``.
    before_segments, after_segments
        Segment ids that the edit retired and the ones it created.
    supervoxels
        The supervoxels it names (clicked, seeded, split or minted).
    bbox_nm
        ``((z0, y0, x0), (z1, y1, x1))`` world box (nm) where supervoxel
        voxels changed (a split inside a supervoxel), or None when only the
        mapping changed (the segments' colours change wherever they are).
    task_id
        The task the edit answered (as logged), or None for an edit made
        outside tasks.
    """

    operation_id: int
    type: str
    before_segments: list[int]
    after_segments: list[int]
    supervoxels: list[int]
    bbox_nm: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None
    task_id: str | None = None


def _supervoxel_ids(values) -> np.ndarray:
    """Supervoxel ids as a flat uint64 array (ints, numpy integers or whole floats; never negative)."""
    ids = np.asarray(values).ravel()
    if ids.dtype.kind not in "iu":
        ids = ids.astype(np.int64) if ids.size else ids.astype(np.uint64)
    if ids.dtype.kind == "i" and ids.size and ids.min() < 0:
        raise InputError("split", f"{int(ids.min())} is not a supervoxel id")
    return ids.astype(np.uint64, copy=False)


def _now() -> tuple[str, float]:
    t = time.time()
    iso = _dt.datetime.fromtimestamp(t, _dt.timezone.utc).isoformat(timespec="milliseconds")
    return iso, t


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"


def _digest_array(*arrays) -> str:
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode())
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


class Proofreader:
    """An open proofreading session on a project.

    Use :meth:`open`. Reads (:meth:`segment_at`, :meth:`labels_volume`, …)
    are safe from any thread; edits are serialised by a lock.

    Attributes
    ----------
    version
        Increments on every change of the state; a viewer redraws when it moves.
    user, session
        Recorded on every edit.
    notes
        Things a person should be told about how the state was built.
    """

    def __init__(self, *, project, rag, tree, base_edges, threshold, supervoxels, log: EditLog,
                 user: str, session: str, read_only: bool, as_of: int | None) -> None:
        self.project = project
        self.rag = rag
        self.tree = tree
        self.threshold = threshold
        self.user = user
        self.session = session
        self.read_only = read_only or as_of is not None
        self.as_of = as_of
        self.notes: list[str] = []
        self.version = 0
        self.log = log
        self.state = SegmentationState(rag, base_edges)
        self.overlay = Overlay()
        self._sv_volume = supervoxels
        self._reader = LabelReader(supervoxels, self.overlay, self._table)
        self._level0_shape = tuple(int(s) for s in supervoxels.levels[0].shape)
        self._lock = threading.RLock()
        self._history = History()
        self._signal = None
        #: Emitted with the :class:`EditResult` after every committed edit (editing thread).
        self.edited = Signal("edited")
        self.footprints: dict[int, set[int]] | None = None

    # ================================================================ opening
    @classmethod
    def open(cls, project, *, user: str | None = None, session: str | None = None,
             graph=None, read_only: bool = False, as_of: int | None = None,
             lock_timeout: float = DEFAULT_LOCK_TIMEOUT, track_footprints: bool = False,
             progress=None) -> Proofreader:
        """Open a project for proofreading: base segmentation + replay of its edit log.

        Parameters
        ----------
        project
            A :class:`~napari_connectome.project.Project` or its folder.
        user
            Name recorded on every edit (default: the login name).
        session
            Proofreading session id recorded on every edit (default: a new one).
        graph
            ``(RegionGraph, MergeTree | None)`` to use instead of the
            project's saved graph (tests, benchmarks). Without it the saved
            graph is loaded, or built if the project has none.
        read_only
            Replay the log but never write to it (edits are refused).
        as_of
            Replay only up to this operation id (read-only).
        lock_timeout
            Seconds to wait for another program's lock on the log.
        track_footprints
            Record, for every replayed operation, the supervoxels of the
            segments it touched (for :func:`~napari_connectome.proofread.merge.merge_logs`).
        progress
            Told about building the graph, when the project has none yet.

        Raises
        ------
        InputError
            No supervoxels; the log is corrupt, locked, or made on another
            graph; an operation of the log does not replay.
        """
        from napari_connectome.project import Project, open_project

        if not isinstance(project, Project):
            project = open_project(project)
        if "supervoxels" not in project.inputs:
            raise InputError(project.root, NEEDS_SUPERVOXELS)
        if graph is None:
            from napari_connectome.graph import (
                build_project_graph,
                has_project_graph,
                load_project_graph,
            )

            if not has_project_graph(project):
                build_project_graph(project, progress=progress)
            # Read-only work repairs a damaged graph in memory only: it never writes.
            rag, tree = load_project_graph(project, save=not (read_only or as_of is not None), progress=progress)
        else:
            rag, tree = graph
        supervoxels = project.open_input("supervoxels")
        if supervoxels.ndim != 3:
            raise InputError(supervoxels.source, f"supervoxels must be 3D (z, y, x), got axes {supervoxels.axes}")
        agglo = project.manifest.get("agglomeration") or {}
        threshold = agglo.get("threshold") if tree is not None else None
        log_path = project.component_path("edit_log")
        log = open_edit_log(project, read_only=read_only or as_of is not None, lock_timeout=lock_timeout)
        try:
            meta = log.meta()
            graph_digest = _digest_array(rag.node_ids, rag.edges)
            has_ops = log.last_id() > 0
            notes = []
            if has_ops and meta.get("graph") and meta["graph"] != graph_digest:
                raise InputError(
                    log_path,
                    "the edit log was recorded on another supervoxel graph (the graph was rebuilt since); "
                    "its edits cannot be replayed on this one — move the log aside to start afresh",
                )
            if has_ops and "threshold" in meta:
                logged = None if meta["threshold"] == "none" else float(meta["threshold"])
                if logged != threshold:
                    if logged is not None and tree is None:
                        raise InputError(
                            log_path, f"the edits were made on the agglomeration at threshold {logged}, "
                            "but the project has no merge tree now; run agglomerate again",
                        )
                    notes.append(
                        f"the edits were made on the agglomeration at threshold {logged}, "
                        f"not at the project's {threshold}: that base is used"
                    )
                    threshold = logged
            base_edges = (
                tree.merge_edges_at(threshold) if tree is not None and threshold is not None
                else np.empty((0, 2), np.uint64)
            )
            base_digest = _digest_array(np.asarray(base_edges, dtype=np.uint64))
            if has_ops and meta.get("base") and meta["base"] != base_digest:
                raise InputError(
                    log_path,
                    "the edit log was recorded on another base segmentation (the merge tree changed); "
                    "move the log aside to start afresh",
                )
            if not has_ops and not log.read_only:
                log.set_meta({
                    "graph": graph_digest, "base": base_digest,
                    "threshold": "none" if threshold is None else repr(float(threshold)),
                    "n_supervoxels": str(int(rag.node_ids.size)),
                })
            pr = cls(
                project=project, rag=rag, tree=tree, base_edges=base_edges, threshold=threshold,
                supervoxels=supervoxels, log=log, user=user or _login(),
                session=session or _dt.datetime.now().strftime("%Y%m%dT%H%M%S-") + _uuid.uuid4().hex[:8],
                read_only=read_only, as_of=as_of,
            )
            pr.notes.extend(notes)
            if track_footprints:
                pr.footprints = {}
            pr._replay(log.rows(as_of=as_of))
        except BaseException:
            log.close(checkpoint=False)
            raise
        if not log.read_only and "edit_log" not in project.manifest.get("components", {}):
            project.register_component("edit_log")
        return pr

    def _replay(self, rows: list[dict]) -> None:
        for row in rows:
            op_id = int(row["operation_id"])
            source = f"{self.log.path}: operation {op_id}"
            payload = row["payload"]
            effect = Effect.from_json(payload["effect"])
            if row.get("patch") is not None:
                self.overlay.add(op_id, Patch.decode(payload["patch"], row["patch"], source=source))
            try:
                plan = self.state.plan(effect, source=source)
            except EffectConflict as exc:
                raise InputError(
                    self.log.path,
                    f"operation {op_id} does not replay on this project ({exc.problem}); the log was left untouched",
                ) from None
            after = [int(r) for r in row["after_roots"]]
            anchors = plan.anchors(self.state.ids)
            if len(after) != len(plan.components) or anchors != [int(a) for a in payload.get("anchors", anchors)]:
                raise InputError(
                    self.log.path,
                    f"operation {op_id} does not replay on this project (it made {len(after)} segments, "
                    f"the replay {len(plan.components)}); the log was left untouched",
                )
            self._apply(op_id, row, plan, after)

    # ================================================================ reading
    def _table(self):
        st = self.state
        return st.ids, st.seg

    def _voxel_index(self, point_nm, *, what: str = "point") -> tuple[int, int, int]:
        try:
            p = np.asarray(point_nm, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise InputError(what, f"{point_nm!r} is not a point (z, y, x) in nm") from None
        if p.size != 3 or not np.isfinite(p).all():
            raise InputError(what, f"{point_nm!r} is not a point (z, y, x) in nm")
        lv = self._sv_volume.levels[0]
        idx = lv.voxel_at(p)
        shape = np.asarray(self._level0_shape)
        if (idx < 0).any() or (idx >= shape).any():
            extent = ", ".join(f"{a:g}–{b:g}" for a, b in zip(lv.roi.begin, lv.roi.end, strict=True))
            raise InputError(
                f"{what} {tuple(float(x) for x in p)} nm",
                f"is outside the volume (z, y, x extent {extent} nm)",
            )
        return tuple(int(i) for i in idx)

    def _sv_at_index(self, idx) -> int:
        return int(self._reader.supervoxels(0, tuple(int(i) for i in idx)))

    def supervoxel_at(self, point_nm) -> int:
        """The supervoxel at a world point (nm), split patches included; 0 = background."""
        return self._sv_at_index(self._voxel_index(point_nm))

    def segment_at(self, point_nm) -> int:
        """The segment at a world point (nm); 0 = background."""
        sv = self.supervoxel_at(point_nm)
        return self.segment_of(sv) if sv else 0

    def segment_of(self, sv_id: int) -> int:
        """The segment a supervoxel belongs to now (0 for the background)."""
        (segment,) = self._segments_of([int(sv_id)])
        return segment

    def _segments_of(self, sv_ids: list[int]) -> set[int]:
        """The segments of many supervoxels at once (:meth:`segment_of`'s errors; unknown ids first)."""
        ids = np.asarray(sv_ids, dtype=np.uint64)
        out = {0} if (ids == 0).any() else set()
        ids = ids[ids != 0]
        if ids.size:
            pos = self.state.positions(ids)
            dead = ~self.state.alive[pos]
            if dead.any():
                raise InputError("supervoxel", f"{int(ids[dead][0])} was divided by a split inside it and exists no more")
            out.update(distinct(self.state.seg[pos]).astype(np.int64).tolist())
        return out

    def segment_supervoxels(self, segment_id: int) -> np.ndarray:
        """Supervoxel ids of a segment (sorted uint64)."""
        members = self.state.members(int(segment_id))
        if members.size == 0:
            raise InputError("segment", f"{int(segment_id)} does not exist (an edit may have replaced it)")
        return self.state.ids[members].copy()

    def mapping(self) -> tuple[np.ndarray, np.ndarray]:
        """``(sv_ids, segment_ids)`` of every supervoxel now, sorted by supervoxel id."""
        return self.state.mapping()

    def labels_volume(self):
        """The segmentation now, as a lazy multiscale labels volume (segment ids, uint64).

        Reads the base supervoxels (plus split patches) of the requested
        region only and remaps them through the current mapping; after an
        edit the next read shows it — nothing is rewritten.
        """
        return proofread_volume(self._reader, what="segments", name="segments")

    def supervoxel_volume(self):
        """The supervoxels now (split patches applied), as a lazy multiscale labels volume."""
        return proofread_volume(self._reader, what="supervoxels", name="supervoxels (edited)")

    def history(self) -> list[dict]:
        """The log's operations, oldest first, with ``undone`` (True for an edit not in effect now)."""
        return self._history.rows()

    def can_undo(self) -> bool:
        return bool(self._history.undo_stack) and not self.read_only

    def can_redo(self) -> bool:
        return bool(self._history.redo_stack) and not self.read_only

    def add_listener(self, callback: Callable[[EditResult], None]) -> Connection:
        """Call ``callback(result)`` after every committed edit (from the editing thread).

        Returns the connection: ``.disconnect()`` (or calling it) stops the
        calls, as does :meth:`remove_listener`. A closed panel must do so.
        """
        return self.edited.connect(callback)

    def remove_listener(self, callback: Callable[[EditResult], None]) -> bool:
        """Stop calling ``callback`` after edits; True when it was listening."""
        return self.edited.disconnect(callback)

    # ================================================================ edits
    def merge(self, point_a_nm, point_b_nm, *, task_id=None, suggested_by: str | None = None) -> EditResult:
        """Merge the segments under two points (any two supervoxels, touching or not)."""
        a = self._seed_supervoxel(point_a_nm, "first merge point")
        b = self._seed_supervoxel(point_b_nm, "second merge point")
        return self._merge(a, b, seeds=[list(map(float, point_a_nm)), list(map(float, point_b_nm))],
                           task_id=task_id, suggested_by=suggested_by)

    def merge_supervoxels(self, sv_a: int, sv_b: int, *, task_id=None,
                          suggested_by: str | None = None) -> EditResult:
        """Merge the segments of two supervoxels given by id (for task queues)."""
        for sv in (sv_a, sv_b):
            self.segment_of(sv)
        return self._merge(int(sv_a), int(sv_b), seeds=[], task_id=task_id, suggested_by=suggested_by)

    def _merge(self, a: int, b: int, *, seeds, task_id, suggested_by) -> EditResult:
        sa, sb = self.segment_of(a), self.segment_of(b)
        if sa == sb:
            raise InputError("merge", f"both points are in segment {sa} already; nothing to merge")
        return self._execute("merge", Effect(edges_added=[(a, b)]), supervoxels=[a, b], seeds=seeds,
                             task_id=task_id, suggested_by=suggested_by)

    def _seed_supervoxel(self, point_nm, what: str) -> int:
        sv = self._sv_at_index(self._voxel_index(point_nm, what=what))
        if sv == 0:
            raise InputError(
                f"{what} {tuple(float(x) for x in np.ravel(point_nm))} nm", "is in the background (no supervoxel there)"
            )
        return sv

    def preview_split(self, sources_nm, sinks_nm, *, inside: bool | None = None) -> SplitPreview:
        """Compute a split without committing it.

        Parameters
        ----------
        sources_nm, sinks_nm
            Seed points (z, y, x) in nm on either side of the cut; all in one segment.
        inside
            None: split inside a supervoxel when every seed falls in one,
            else cut the supervoxel graph. True / False force one of them.

        Raises
        ------
        InputError
            A seed outside the volume or in the background; no source or no
            sink; seeds in different segments; a supervoxel holding both a
            source and a sink for a graph split.
        """
        sources_nm = [list(map(float, np.ravel(p))) for p in (sources_nm or [])]
        sinks_nm = [list(map(float, np.ravel(p))) for p in (sinks_nm or [])]
        if not sources_nm or not sinks_nm:
            side = "sink" if sources_nm else "source"
            raise InputError(
                "split", f"all seeds are on one side: add at least one {side} seed on the other side of the cut"
            )
        src_idx = [self._voxel_index(p, what="source seed") for p in sources_nm]
        snk_idx = [self._voxel_index(p, what="sink seed") for p in sinks_nm]
        src_sv = [self._sv_at_index(i) for i in src_idx]
        snk_sv = [self._sv_at_index(i) for i in snk_idx]
        for pts, svs, what in ((sources_nm, src_sv, "source seed"), (sinks_nm, snk_sv, "sink seed")):
            for p, sv in zip(pts, svs, strict=True):
                if sv == 0:
                    raise InputError(f"{what} {tuple(p)} nm", "is in the background (no supervoxel there)")
        segs = {self.segment_of(sv) for sv in src_sv + snk_sv}
        if len(segs) > 1:
            raise InputError(
                "split", f"the seeds are in different segments {sorted(segs)}; put every seed in the segment to split"
            )
        (segment,) = segs
        one = len(set(src_sv + snk_sv)) == 1
        if inside is None:
            inside = one
        version = self.version
        if inside:
            if not one:
                raise InputError(
                    "split", "a split inside a supervoxel needs every seed in that one supervoxel; "
                    f"these seeds are in supervoxels {sorted(set(src_sv + snk_sv))}"
                )
            return preview_inside(self, segment, src_sv[0], src_idx, snk_idx, sources_nm, sinks_nm, version)
        both = sorted(set(src_sv) & set(snk_sv))
        if both:
            raise InputError(
                "split", f"supervoxel {both[0]} holds both a source and a sink seed: a graph cut cannot "
                "separate them; move a seed, or put every seed in that supervoxel to split inside it",
            )
        return self._preview_graph(segment, src_sv, snk_sv, sources_nm, sinks_nm, version)

    def preview_split_supervoxels(self, source_svs, sink_svs) -> SplitPreview:
        """A graph split between supervoxels given by id (for task queues)."""
        # As arrays: a task's cut names every supervoxel of a segment (thousands), and lists of Python ints
        # through sets and sorts were ~2 ms of every split a simulated proofreader made.
        src, snk = _supervoxel_ids(source_svs), _supervoxel_ids(sink_svs)
        if not src.size or not snk.size:
            raise InputError("split", "all seeds are on one side: give at least one source and one sink supervoxel")
        segs = self._segments_of(np.concatenate([src, snk]))
        if 0 in segs:
            raise InputError("split", "supervoxel 0 is the background")
        if len(segs) > 1:
            raise InputError("split", f"the supervoxels are in different segments {sorted(segs)}")
        if overlaps(src, snk):
            raise InputError("split", f"supervoxel {int(np.intersect1d(src, snk)[0])} is both a source and a sink: "
                                      "a graph cut cannot separate it from itself")
        return self._preview_graph(segs.pop(), src, snk, [], [], self.version)

    def _preview_graph(self, segment, src_sv, snk_sv, sources_nm, sinks_nm, version) -> SplitPreview:
        st = self.state
        src_sv, snk_sv = _supervoxel_ids(src_sv), _supervoxel_ids(snk_sv)
        members = st.members(segment)
        pairs, caps = st.active_edges(members)
        side, cut = min_cut(members, pairs, caps, st.positions(src_sv), st.positions(snk_sv))
        cut_pairs = st.ids[pairs[cut]] if cut.size else np.empty((0, 2), np.uint64)
        effect = Effect(edges_removed=[tuple(map(int, p)) for p in cut_pairs])
        plan = st.plan(effect, edges=(members, pairs))
        cut_edges = np.asarray(cut_pairs, dtype=np.uint64).reshape(-1, 2)
        src_ids, snk_ids = st.ids[members[side]].copy(), st.ids[members[~side]].copy()
        problem, message = describe_split(cut_edges, src_ids, snk_ids, plan, inside=False, supervoxel=None)
        return SplitPreview(
            segment_id=int(segment),
            source_supervoxels=src_ids,
            sink_supervoxels=snk_ids,
            cut_edges=cut_edges,
            inside_supervoxel=False, bbox_nm=None, supervoxel=None, patch_offset=None, patch=None,
            sources_nm=sources_nm, sinks_nm=sinks_nm, version=version, message=message, problem=problem,
            _effect=effect, _plan=plan, _new_patch=None, _proofreader=self,
            _seed_svs=distinct(np.concatenate([src_sv, snk_sv])).tolist(),
            _seed_sides=(tuple(src_sv.tolist()), tuple(snk_sv.tolist())),
        )

    def split(self, preview: SplitPreview | None = None, *, sources_nm=None, sinks_nm=None,
              inside: bool | None = None, task_id=None, suggested_by: str | None = None,
              force: bool = False) -> EditResult:
        """Commit a split: from a preview, or computed from seed points.

        A preview computed before the state changed is recomputed from its
        seeds (the result may differ from what was shown; the new preview is
        what is committed).

        Raises
        ------
        InputError
            The split would separate nothing (the preview's ``problem``: no
            link cut, a side empty, the segment left in one piece) and
            ``force`` is False: nothing is logged, as a row that changes
            nothing would read as work done.
        """
        with self._lock:
            if preview is None:
                if sources_nm is None or sinks_nm is None:
                    raise InputError("split", "give a preview, or sources_nm and sinks_nm")
                preview = self.preview_split(sources_nm, sinks_nm, inside=inside)
            elif preview.version != self.version or preview._proofreader is not self:
                if not preview.sources_nm:
                    preview = self.preview_split_supervoxels(*preview._seed_sides)
                else:
                    preview = self.preview_split(
                        preview.sources_nm, preview.sinks_nm, inside=preview.inside_supervoxel
                    )
            if preview.problem is not None and not force:
                raise InputError(
                    "split", f"{preview.problem}; nothing was committed (move the seeds, or force it)"
                )
            kind = "split_supervoxel" if preview.inside_supervoxel else "split"
            seeds = {"sources": preview.sources_nm, "sinks": preview.sinks_nm}
            if preview.inside_supervoxel:
                svs = [int(preview.supervoxel), *[int(n) for n in preview._effect.nodes_added]]
            else:
                svs = list(preview._seed_svs)
            return self._execute(kind, preview._effect, supervoxels=svs, seeds=seeds, task_id=task_id,
                                 suggested_by=suggested_by, plan=preview._plan, patch=preview._new_patch,
                                 bbox_nm=preview.bbox_nm)

    def undo(self, operation_id: int | None = None, *, task_id=None, suggested_by: str | None = None) -> EditResult:
        """Reverse the latest edit in effect (or ``operation_id``), as a new operation.

        Raises
        ------
        InputError
            Nothing to undo; the operation is not an edit in effect; later
            operations changed its segments (undo those first).
        """
        with self._lock:
            self._check_writable()
            stack = self._history.undo_stack
            if operation_id is None:
                if not stack:
                    raise InputError("undo", "nothing to undo")
                target = stack[-1]
            else:
                target = int(operation_id)
                if target not in stack:
                    raise InputError(
                        f"operation {target}", "is not an edit in effect (unknown, already undone, or an undo itself)"
                    )
            self._check_unchanged(target, "undone")
            op = self._history.ops[target]
            return self._execute("undo", op.effect.inverse(), supervoxels=op.supervoxels, seeds=[],
                                 task_id=task_id, suggested_by=suggested_by, undo_of=target)

    def redo(self, *, task_id=None, suggested_by: str | None = None) -> EditResult:
        """Reverse the latest undo, as a new operation (only until a new edit is made)."""
        with self._lock:
            self._check_writable()
            if not self._history.redo_stack:
                raise InputError("redo", "nothing to redo")
            target = self._history.redo_stack[-1]
            self._check_unchanged(target, "redone")
            op = self._history.ops[target]
            return self._execute("redo", op.effect.inverse(), supervoxels=op.supervoxels, seeds=[],
                                 task_id=task_id, suggested_by=suggested_by, undo_of=target)

    def apply_recorded(self, op: RecordedOperation) -> EditResult:
        """Apply an operation as another log recorded it: its effect, not its inputs, as a new row.

        The row keeps the record's uuid, user, session, task and time; it gets
        this log's next operation id and new segment ids. Used by offline merge.

        Raises
        ------
        InputError
            An unknown operation type; an undo/redo that names no operation
            of this log; a read-only proofreader.
        EffectConflict
            The effect does not apply to this state (an edge to cut is gone,
            a link to add exists, a patch is unknown or already on).
        """
        if op.type not in OPERATION_TYPES:
            raise InputError("recorded operation", f"type must be one of {', '.join(OPERATION_TYPES)}, got {op.type!r}")
        if (op.undo_of is None) != (op.type not in ("undo", "redo")):
            need = "needs" if op.undo_of is None else "takes no"
            raise InputError("recorded operation", f"a {op.type!r} operation {need} undo_of")
        if op.undo_of is not None and int(op.undo_of) not in self._history.ops:
            raise InputError("recorded operation", f"operation {op.undo_of} to reverse is not in this log")
        when = None
        if op.timestamp is not None and op.unix_time is not None:
            when = (str(op.timestamp), float(op.unix_time))
        return self._execute(
            op.type, op.effect, supervoxels=[int(s) for s in op.supervoxels], seeds=op.seeds,
            task_id=op.task_id, suggested_by=op.suggested_by,
            undo_of=None if op.undo_of is None else int(op.undo_of), patch=op.patch, uuid=op.uuid,
            row_extra=dict(op.extra) or None, user=op.user, session=op.session, when=when,
        )

    def _check_unchanged(self, op_id: int, verb: str) -> None:
        op = self._history.ops[op_id]
        st = self.state
        changed = False
        for anchor, digest in op.digests:
            pos = st._find(anchor)
            if pos is None or not st.alive[pos]:
                changed = True
                break
            members = st.members(int(st.seg[pos]))
            if members_digest(st.ids[members]) != digest:
                changed = True
                break
        if changed:
            later = self._history.later_touching(op_id)
            hint = f"; undo operation(s) {', '.join(map(str, later[-3:]))} first" if later else ""
            raise InputError(
                f"operation {op_id}", f"cannot be {verb}: later edits changed the segments it made{hint}"
            )

    def close(self) -> None:
        """Close the log (the state stays readable)."""
        self.log.close()

    def __enter__(self) -> Proofreader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ================================================================ internals
    def _check_writable(self) -> None:
        if self.read_only:
            why = f"opened as of operation {self.as_of}" if self.as_of is not None else "opened read-only"
            raise InputError(self.log.path, f"this proofreader was {why}; edits are not possible")

    def _execute(self, kind: str, effect: Effect, *, supervoxels, seeds, task_id, suggested_by,
                 undo_of: int | None = None, plan: Plan | None = None, patch: Patch | None = None,
                 bbox_nm=None, uuid: str | None = None, row_extra: dict | None = None,
                 user: str | None = None, session: str | None = None, when=None) -> EditResult:
        with self._lock:
            self._check_writable()
            op_id = self._history.last_id + 1
            if patch is not None:
                effect.patches_on = [op_id]
            if plan is None:
                plan = self.state.plan(effect, source=kind)
            for p in effect.patches_on:
                if p not in self.overlay.patches and not (patch is not None and p == op_id):
                    raise EffectConflict(kind, f"the split patch of operation {p} is unknown")
                if p in self.overlay.active:
                    raise EffectConflict(kind, f"the split patch of operation {p} is already on")
            for p in effect.patches_off:
                if p not in self.overlay.active:
                    raise EffectConflict(kind, f"the split patch of operation {p} is not on")
            first = max(self.state.next_id, max(effect.nodes_added, default=0) + 1)
            new_ids = list(range(first, first + len(plan.components)))
            iso, unix = when if when is not None else _now()
            payload = {"effect": effect.to_json(), "anchors": plan.anchors(self.state.ids)}
            blob = None
            if patch is not None:
                payload["patch"], blob = patch.encode()
            if row_extra:
                payload.update(row_extra)
            row = {
                "uuid": uuid or str(_uuid.uuid4()),
                "type": kind,
                "supervoxel_ids": list(map(int, supervoxels)),
                "seeds_nm": seeds,
                "user": user or self.user,
                "timestamp": iso,
                "unix_time": unix,
                "session": session or self.session,
                "task_id": task_id,
                "before_roots": list(plan.before_segments),
                "after_roots": new_ids,
                "suggested_by": suggested_by,
                "undo_of": undo_of,
                "payload": payload,
                "patch": blob,
            }
            written = self.log.append(row, expect_last=self._history.last_id)
            row["operation_id"] = written
            if patch is not None:
                self.overlay.add(written, patch)
            result = self._apply(written, row, plan, new_ids, bbox_nm=bbox_nm)
            record_edit_log(self.project, self.log)
        self.edited.emit(result)
        return result

    def _apply(self, op_id: int, row: dict, plan: Plan, new_ids: list[int], *, bbox_nm=None) -> EditResult:
        st = self.state
        effect = plan.effect
        if self.footprints is not None:
            before = np.flatnonzero(np.isin(st.seg, np.array(plan.before_segments, dtype=np.uint64)))
            foot = {int(s) for s in st.ids[before]}
        digests = st.commit(plan, new_ids)
        if self.footprints is not None:
            for comp in plan.components:
                foot.update(int(s) for s in st.ids[comp])
            self.footprints[op_id] = foot
        switched = list(effect.patches_on) + list(effect.patches_off)
        if switched:
            self.overlay.switch(effect.patches_on, effect.patches_off)
            boxes = self.overlay.boxes(switched)
            self._reader.invalidate(boxes)
            if bbox_nm is None:
                bbox_nm = self._box_nm(boxes)
        anchors = plan.anchors(st.ids)
        kind = row["type"]
        undo_of = row.get("undo_of")
        op = Operation(op_id, kind, effect, None if undo_of is None else int(undo_of),
                       [int(s) for s in row["supervoxel_ids"]], list(plan.before_segments), list(new_ids),
                       list(zip(anchors, digests, strict=True)))
        self._history.add(op, row)
        self.version += 1
        return EditResult(op_id, kind, list(plan.before_segments), list(new_ids), list(op.supervoxels), bbox_nm,
                          task_id=row.get("task_id"))

    def _box_nm(self, boxes):
        if not boxes:
            return None
        lo = np.min([b[0] for b in boxes], axis=0)
        hi = np.max([b[1] for b in boxes], axis=0)
        roi = self._sv_volume.levels[0].roi_of(tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True)))
        return roi.begin, roi.end

    def supervoxel_size(self, sv: int) -> int | None:
        """Voxels of a supervoxel: from the graph, or counted in the patch that minted it; None if unknown."""
        pos = self.state._find(sv)
        if pos is not None and 0 < pos < self.state.n_base:
            return int(self.rag.node_sizes[pos - 1])
        for patch in self.overlay.patches.values():
            count = int((patch.data == np.uint64(sv)).sum())
            if count:
                return count
        return None
