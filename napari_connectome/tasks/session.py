"""A proofreader's stream of micro-tasks: ranking, answers, edits, effort, live VI.

::

    session = TaskSession.open(project, user="ana", gt="project")
    task = session.next_task()            # "Same neuron?" about two segments
    view = session.view()                 # EM + labels crop, skeletons (prepared ahead)
    session.answer("yes")                 # merges them (edit log row carries task.id), next task shown
    session.undo()                        # takes it back: edit undone, ranker forgets, task shown again

The flow (as :func:`~napari_connectome.rank.simulate` does it, with a person
answering): the candidates of the current segmentation are ordered by the
strategy and the first one not asked yet is shown. *Yes* applies its edit
through :func:`~napari_connectome.candidates.apply_candidate` and the
candidates are found again on the new state (a task keeps its id across
re-finding: the id is a hash of what it proposes); *no*, *skip* and *flag*
change nothing in the segmentation. *Yes* and *no* teach the strategy;
*skip* and *flag* do not (a flag is for an expert, not an answer). A task
asked once (any answer) is not asked again in this session, unless an undo
puts it back on screen.

Every answer writes exactly one effort row, timed by an
:class:`~napari_connectome.effort.ActivityClock` from the moment the task was
shown to the answer, idle gaps excluded; undo writes an ``undo`` row timed
the same way (from the moment the task on screen was shown). Edits made
outside tasks (the Proofread panel) are timed by the session's
:class:`~napari_connectome.effort.EffortRecorder`, never by the session.

A task whose segments were edited away since its candidates were found
(another panel merged or split one of them) is skipped when it would be
shown, or when it is answered: an effort row with answer ``stale`` and a note,
also added to :attr:`TaskSession.notes`. Candidates are found again after
every accepted edit of the session, and, when edits were made outside tasks,
once more when the list runs out.

Live VI: the contingency table of ground truth against the *supervoxels* is
counted once at opening and relabelled through the current mapping on each
call (milliseconds). It is exact while supervoxels are unchanged; a split
inside a supervoxel (Proofread panel) makes it approximate, and
:meth:`TaskSession.vi` says so (``exact``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from napari_connectome.candidates.apply import apply_candidate, stale_reason
from napari_connectome.effort import DEFAULT_IDLE_S, ActivityClock, Clock, EffortLog, EffortRecorder
from napari_connectome.errors import InputError
from napari_connectome.rank.strategies import Strategy, build_strategy, candidate_key
from napari_connectome.tasks.model import AnswerResult, Task, check_answer
from napari_connectome.tasks.prefetch import Prefetcher
from napari_connectome.tasks.view import TaskView, crop_edge_nm, prepare_view, view_still_valid


@dataclass
class _Answered:
    """One answer in effect (undo takes the latest back)."""

    task: Task
    answer: str
    edit_id: int | None


class TaskSession:
    """One proofreader's stream of micro-tasks over a project. Open it with :meth:`open`.

    Attributes
    ----------
    proofreader
        The :class:`~napari_connectome.proofread.Proofreader` edits go through.
    effort
        The project's :class:`~napari_connectome.effort.EffortLog` (same user and session as the edits).
    recorder
        Times edits made outside tasks.
    strategy
        The :class:`~napari_connectome.rank.Strategy` ordering the tasks (and learning from answers).
    clock
        The :class:`~napari_connectome.effort.ActivityClock` of the task on screen.
    current
        The task on screen, or None when none is left.
    notes
        Stale skips and other things to tell the proofreader, newest last.
    skeletons
        ``segment id → Skeleton`` used for the views (the project's store when it has a current one), or None.
    em_volume
        The EM volume the crops are read from.
    crop_nm
        Crop edge (nm per axis).
    """

    def __init__(self, *, proofreader, own_proofreader: bool, strategy: Strategy, effort: EffortLog,
                 recorder: EffortRecorder, clock: ActivityClock, find: Callable, find_options: dict,
                 gt_table, em_volume, crop_nm, skeletons, prefetch: bool) -> None:
        self.proofreader = proofreader
        self._own_proofreader = own_proofreader
        self.strategy = strategy
        self.effort = effort
        self.recorder = recorder
        self.clock = clock
        self.em_volume = em_volume
        self.crop_nm = crop_nm
        self.skeletons = skeletons
        self.notes: list[str] = []
        self.current: Task | None = None
        self._find = find
        self._find_options = find_options
        self._gt_table = gt_table
        self._candidates: list = []
        self._order: list[int] = []
        self._asked: dict[tuple, str] = {}
        self._answers: list[_Answered] = []
        self._stale = 0
        self._outside_edits = False
        self._shown_at = 0.0
        self._views: dict[str, TaskView] = {}
        self._closed = False
        self.prefetcher = Prefetcher(self._prepare) if prefetch else None
        proofreader.add_listener(self._on_edit)
        self._refind()

    # ================================================================ opening
    @classmethod
    def open(cls, project, *, user: str | None = None, strategy="active", gt: str | None = None,
             clock: Clock = time.time, idle_after_s: float = DEFAULT_IDLE_S, find_options: dict | None = None,
             proofreader=None, prefetch: bool = True, crop_nm=None, session: str | None = None,
             model=None, skeletons=None, find: Callable | None = None) -> TaskSession:
        """Open a task session on a project (and its effort log).

        Parameters
        ----------
        project
            A :class:`~napari_connectome.project.Project` or its folder, with
            supervoxels, a graph and usually an agglomeration.
        user
            Recorded on every edit and effort row (default: the proofreader's, or the login name).
        strategy
            A strategy name (``active``, ``static``, ``size``, ``random``), a config dict, or a built
            :class:`~napari_connectome.rank.Strategy`.
        gt
            Ground truth for live VI: a labels URI of the supervoxels' shape and voxel size, or
            ``"project"`` for the project's own ``groundtruth`` input; None: no VI.
        clock
            Seconds since the epoch (``time.time``; tests pass a fake).
        idle_after_s
            A gap between inputs longer than this is idle (not counted as active time).
        find_options
            Keyword options of :func:`~napari_connectome.candidates.find_candidates`.
        proofreader
            An open, writable Proofreader to share (the Proofread panel's); default: open one
            (closed by :meth:`close`).
        prefetch
            Prepare the next task's view in a worker thread.
        crop_nm
            Edge of the EM / labels crop in nm (one number or z, y, x); default 64 level-0 voxels.
        session
            Session id for a Proofreader opened here (default: a new one).
        model
            Prior model of ``static`` / ``active`` (a Ranker, registry name or path).
        skeletons
            ``segment id → Skeleton`` for the views; default: the project's skeleton store when it
            matches the segmentation now, else none (skeletons are not computed here).
        find
            Candidate finder ``find(proofreader, **find_options)``; default ``find_candidates``.

        Raises
        ------
        InputError
            Ground truth of another shape or voxel size; a read-only proofreader; a bad strategy,
            crop or idle threshold; an effort log that cannot be written.
        """
        from napari_connectome.project import Project, open_project
        from napari_connectome.proofread import Proofreader

        if not isinstance(project, Project):
            project = open_project(project)
        find_options = dict(find_options or {})
        if find is None:
            from napari_connectome.candidates import find_candidates as find
        strat = strategy if isinstance(strategy, Strategy) else build_strategy(strategy, model=model)
        activity = ActivityClock(clock=clock, idle_after_s=idle_after_s)  # validates idle_after_s first
        table = _gt_table(project, gt) if gt is not None else None
        em_volume = project.open_input("raw")
        own = proofreader is None
        pr = Proofreader.open(project, user=user, session=session) if own else proofreader
        effort = None
        try:
            if pr.read_only:
                raise InputError(pr.log.path, "the proofreader is read-only; tasks need to apply edits")
            crop = tuple(float(x) for x in crop_edge_nm(crop_nm, pr.supervoxel_volume().levels[0].voxel_size))
            if skeletons is None:
                skeletons = _project_skeletons(pr)
            effort = EffortLog.open(project, user=user or pr.user, session=pr.session, clock=clock)
            recorder = EffortRecorder(effort, pr, clock=clock, idle_after_s=idle_after_s)
            return cls(proofreader=pr, own_proofreader=own, strategy=strat, effort=effort, recorder=recorder,
                       clock=activity, find=find, find_options=find_options, gt_table=table,
                       em_volume=em_volume, crop_nm=crop, skeletons=skeletons, prefetch=prefetch)
        except BaseException:
            if effort is not None:
                effort.close()
            if own:
                pr.close()
            raise

    # ================================================================ tasks
    def next_task(self) -> Task | None:
        """The task on screen: the current one, or the next one when there is none.

        Starts the task's active-time clock when it is shown. A current task
        whose segments were edited away meanwhile is skipped (``stale`` row,
        note) and the next one shown.
        """
        self._check_open()
        if self.current is not None:
            reason = stale_reason(self.proofreader, self.current.candidate)
            if reason is None:
                return self.current
            self._record_stale(self.current, reason, timed=True)
            return self._advance()
        if not self.clock.running or self._outside_edits:
            # Never shown yet, or the list ran out and edits outside tasks may have made new candidates.
            return self._advance()
        return None

    def touch(self) -> None:
        """A user input (key, click, mouse move, wheel): keeps the clocks from counting the moment as idle."""
        if self._closed:
            return
        self.clock.touch()
        self.recorder.touch()

    def answer(self, answer: str) -> AnswerResult:
        """Answer the task on screen and show the next one.

        Parameters
        ----------
        answer
            ``yes`` (apply the proposed edit), ``no``, ``skip`` or ``flag`` (for an expert).

        Returns
        -------
        AnswerResult
            With ``answer`` ``stale`` (and a note) when the task's segments
            were edited away before the answer: nothing is applied or learnt.

        Raises
        ------
        InputError
            An unknown answer; no task on screen; the edit log cannot be written.
        """
        self._check_open()
        answer = check_answer(answer)
        task = self.current
        if task is None:
            raise InputError("answer", "no task is shown (the queue is empty)")
        reason = stale_reason(self.proofreader, task.candidate)
        if reason is not None:
            row = self._record_stale(task, reason, timed=True, answered=answer)
            nxt = self._advance()
            return AnswerResult(task, "stale", None, row, nxt, self.notes[-1])
        edit_id, note = None, ""
        if answer == "yes":
            edit_id = apply_candidate(self.proofreader, task.candidate, task_id=task.id,
                                      suggested_by=f"task:{self.strategy.name}")
            if edit_id is None:
                note = "the proposed edit had nothing left to change (moot); nothing was applied"
        if answer in ("yes", "no"):
            self.strategy.observe(task.candidate, answer == "yes")
        shown, active, idle, answered = self._stop_clock()
        row = self.effort.record(
            task_id=task.id, task_type=task.kind, answer=answer, shown_at=shown, answered_at=answered,
            active_s=active, idle_s=idle, edit_id=edit_id, candidate_id=task.candidate.id,
            segments=task.segments, note=note,
        )
        self._asked[task.key] = answer
        self._answers.append(_Answered(task, answer, edit_id))
        if edit_id is not None:
            self._refind()
        nxt = self._advance()
        return AnswerResult(task, answer, edit_id, row, nxt, note)

    def undo(self) -> AnswerResult | None:
        """Take back the latest answer still in effect and show its task again.

        Undoes its edit (a *yes* that applied one) through the Proofreader,
        retracts a *yes* / *no* from the strategy, logs an ``undo`` effort row
        timed like an answer (from when the task on screen was shown), and
        makes the answered task current again. The task that was on screen
        goes back to the queue unanswered.

        Returns
        -------
        AnswerResult or None
            ``answer="undo"``, ``edit_id`` the undo operation (or None when the
            answer made no edit); None when there is no answer to take back.

        Raises
        ------
        InputError
            The edit cannot be undone because later edits (e.g. in the
            Proofread panel) changed its segments; nothing is changed then.
        """
        self._check_open()
        if not self._answers:
            return None
        last = self._answers[-1]
        undo_id = None
        if last.edit_id is not None:
            undo_id = self.proofreader.undo(last.edit_id, task_id=last.task.id,
                                            suggested_by=f"task:{self.strategy.name}").operation_id
        self._answers.pop()
        if last.answer in ("yes", "no"):
            self.strategy.retract(last.task.candidate)
        shown, active, idle, answered = self._stop_clock()
        row = self.effort.record(
            task_id=last.task.id, task_type=last.task.kind, answer="undo", shown_at=shown, answered_at=answered,
            active_s=active, idle_s=idle, edit_id=undo_id, candidate_id=last.task.candidate.id,
            segments=last.task.segments, note=f"took back {last.answer}",
        )
        self._asked.pop(last.task.key, None)
        if undo_id is not None:
            self._refind()
        again = self._refreshed(last.task)
        self._show(again)
        return AnswerResult(last.task, "undo", undo_id, row, again, f"took back {last.answer}")

    def progress(self) -> dict:
        """``done`` (answers in effect: yes/no/skip/flag), ``queued`` (candidates not asked yet, the one
        on screen excluded), ``flagged``, ``stale`` (skipped as edited away) and the count of each answer."""
        counts = {a: sum(1 for x in self._answers if x.answer == a) for a in ("yes", "no", "skip", "flag")}
        current = self.current.key if self.current is not None else None
        queued = sum(1 for c in self._candidates if (k := candidate_key(c)) not in self._asked and k != current)
        return {"done": len(self._answers), "queued": queued, "flagged": counts["flag"], "stale": self._stale,
                **counts}

    def vi(self) -> dict | None:
        """Live VI against the ground truth: ``vi_split``, ``vi_merge``, ``vi`` (bits), ``exact``; None without gt."""
        if self._gt_table is None:
            return None
        from napari_connectome.metrics import vi_from_table

        split, merge = vi_from_table(self._gt_table.remap(*self.proofreader.mapping()))
        return {"vi_split": float(split), "vi_merge": float(merge), "vi": float(split + merge),
                "exact": not self.proofreader.overlay.active}

    # ================================================================ views
    def view(self, task: Task | None = None) -> TaskView:
        """The prepared view of ``task`` (default: the current one), from the prefetcher when it is ready.

        Raises
        ------
        InputError
            No task given and none on screen.
        """
        self._check_open()
        task = task or self.current
        if task is None:
            raise InputError("view", "no task is shown (the queue is empty)")
        pr = self.proofreader
        cached = self._views.get(task.id)
        if cached is not None and view_still_valid(pr, cached, task):
            return cached
        view = None
        if self.prefetcher is not None:
            view = self.prefetcher.take(task, lambda v: view_still_valid(pr, v, task))
        if view is None:
            view = self._prepare(task)
        if view.version >= 0:
            self._views = {task.id: view}
        return view

    def _prepare(self, task: Task) -> TaskView:
        return prepare_view(self, task)

    # ================================================================ closing
    def close(self) -> None:
        """Stop the worker, the recorder and the effort log; close a Proofreader opened here."""
        if self._closed:
            return
        self._closed = True
        if self.prefetcher is not None:
            self.prefetcher.close()
        self.recorder.close()
        self.effort.close()
        if self._own_proofreader:
            self.proofreader.close()

    def __enter__(self) -> TaskSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ================================================================ internals
    def _check_open(self) -> None:
        if self._closed:
            raise InputError("task session", "is closed")

    def _on_edit(self, result) -> None:
        # Edits made outside tasks may create candidates the list lacks; they
        # are looked for once the list runs out (see the module notes).
        if getattr(result, "task_id", None) is None:
            self._outside_edits = True

    def _refind(self) -> None:
        self._candidates = list(self._find(self.proofreader, **self._find_options))
        self._order = [int(i) for i in self.strategy.order(self._candidates)] if self._candidates else []
        self._outside_edits = False

    def _reorder(self) -> None:
        # Answers retrain the strategy: the order is asked again before every pick.
        self._order = [int(i) for i in self.strategy.order(self._candidates)] if self._candidates else []

    def _unasked(self, *, exclude: tuple | None = None):
        for i in self._order:
            c = self._candidates[i]
            key = candidate_key(c)
            if key not in self._asked and key != exclude:
                yield c

    def _advance(self) -> Task | None:
        """Show the first unasked, non-stale candidate in the strategy's order (stale ones are logged)."""
        self.current = None
        self._reorder()
        refound = False
        while True:
            cand = next(self._unasked(), None)
            if cand is None and self._outside_edits and not refound:
                self._refind()
                refound = True
                continue
            if cand is None:
                self._show(None)
                return None
            task = Task.from_candidate(cand)
            reason = stale_reason(self.proofreader, cand)
            if reason is None:
                self._show(task)
                return task
            self._record_stale(task, reason, timed=False)

    def _show(self, task: Task | None) -> None:
        """Make ``task`` current and start its clock (also with none: the clock then times an undo)."""
        self.current = task
        self._shown_at = self.clock.start()
        if self.prefetcher is None:
            return
        ahead = self._predicted_next()
        self.prefetcher.keep_only([task, ahead])
        if ahead is not None:
            self.prefetcher.submit(ahead)

    def _predicted_next(self) -> Task | None:
        """The task shown after the current one if the answer changes neither the list nor the order."""
        current = self.current.key if self.current is not None else None
        for cand in self._unasked(exclude=current):
            if stale_reason(self.proofreader, cand) is None:
                return Task.from_candidate(cand)
        return None

    def _stop_clock(self) -> tuple[float, float, float, float]:
        """``(shown_at, active_s, idle_s, answered_at)`` of the span on screen, which ends now."""
        if not self.clock.running:
            now = self.clock.start()
            self._shown_at = now
        active, idle = self.clock.stop()
        return self._shown_at, active, idle, self.clock.stopped_at

    def _record_stale(self, task: Task, reason: str, *, timed: bool, answered: str | None = None) -> int:
        """Log a task skipped because its segments were edited away; it is not asked again."""
        note = f"task {task.id} ({task.question} segments {', '.join(map(str, task.segments))}) skipped: {reason}"
        if answered is not None:
            note += f"; the answer {answered!r} was not applied"
        if timed:
            shown, active, idle, answered_at = self._stop_clock()
        else:
            shown = answered_at = self.clock.now()
            active = idle = 0.0
        row = self.effort.record(
            task_id=task.id, task_type=task.kind, answer="stale", shown_at=shown, answered_at=answered_at,
            active_s=active, idle_s=idle, candidate_id=task.candidate.id, segments=task.segments, note=note,
        )
        self._asked[task.key] = "stale"
        self._stale += 1
        self.notes.append(note)
        if self.current is not None and self.current.key == task.key:
            self.current = None
        return row

    def _refreshed(self, task: Task) -> Task:
        """``task`` as it reads on the segmentation now (same id): from the re-found list, else relabelled."""
        for c in self._candidates:
            if candidate_key(c) == task.key:
                return Task.from_candidate(c)
        from dataclasses import replace

        c = task.candidate
        pr = self.proofreader
        try:
            if c.kind == "false_split":
                segments = tuple(pr.segment_of(int(s)) for s in c.supervoxels[:2])
            else:
                segments = (pr.segment_of(int(c.supervoxels[0])),)
        except InputError:
            return task  # a supervoxel was divided: shown as it was; answering it reports it stale
        return Task.from_candidate(replace(c, segments=segments))


def _gt_table(project, gt):
    """The contingency table of ground truth against the supervoxels (level 0), counted once."""
    from napari_connectome.metrics import contingency_table
    from napari_connectome.rank.simulate import open_groundtruth

    uri = gt
    if isinstance(gt, str) and gt == "project":
        record = project.inputs.get("groundtruth")
        if record is None:
            raise InputError(project.root, "the project has no groundtruth input for live VI")
        uri = record["uri"]
    sv_volume, gt_volume = open_groundtruth(project, uri)
    labels = np.asarray(gt_volume.levels[0].array[...])
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError(uri, f"ground truth labels must be integers, not {labels.dtype}")
    return contingency_table(sv_volume.levels[0].array, labels)


def _project_skeletons(pr):
    """The project's skeleton store if it matches the segmentation now, else None (never computed here)."""
    from napari_connectome.skeleton import SkeletonStore

    if not SkeletonStore.path(pr.project).is_file():
        return None
    try:
        return SkeletonStore.load(pr.project, proofreader=pr)
    except InputError as exc:
        pr.notes.append(f"skeletons not shown in tasks: {exc}")
        return None
