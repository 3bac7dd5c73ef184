"""A proofreader's stream of micro-tasks: ranking, answers, edits, effort, live VI.

::

    session = TaskSession.open(project, user="ana", gt="project")
    task = session.next_task()            # "Same neuron?" about two segments
    view = session.view()                 # EM + labels crop, skeletons (prepared ahead)
    session.answer("yes")                 # merges them (edit log row carries task.id), next task shown;
                                          # the ranker learns from it in the background
    session.wait()                        # (tests) until it has: the order now reflects that answer
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

**One-step-lagged ranking.** Learning from an answer is slow (the active
ranker refits: ~0.3 s; after a *yes*, finding the candidates again: ~2 s on
256³), and a proofreader must not wait for it. So :meth:`TaskSession.answer`
does only what must be done before it returns (check the answer, apply the
edit of a *yes* so the edit log holds it, write the effort row), then shows
the next task from the order that was current *before* this answer (the
task the prefetcher was already preparing), and hands the learning
(``strategy.observe``, the re-find after an edit, ``strategy.order``) to one
background worker. Candidates this very answer's edit made stale (they name
a segment it merged or cut) are passed over silently, not logged as
``stale``: the re-find brings them back under their new segment ids. The
next :meth:`~TaskSession.answer`, :meth:`~TaskSession.undo` or a
:meth:`~TaskSession.next_task` that must pick a task first waits for that job
(a *join*), so the order used is at most one answer behind. With a person's
think time of seconds the job is done long before the next key press; when
it is not, the join blocks (counted in :attr:`TaskSession.learning_waits`).
``learn_in_background=False`` learns before picking, as a synchronous
session would (for comparison).

Threads. The learning runs in its own worker thread, not the prefetcher's,
driven through a :class:`~napari_connectome.tasks.learning.BackgroundLearner`
(its module tells how the threads share the strategy and the Proofreader).
Only the caller's thread (the GUI's) changes the session's list, order,
answers and current task, at a join, so nothing the GUI reads is
half-updated. A re-found list read while the Proofread panel committed an
edit is not taken: the join finds the list again there, synchronously.

A failed job is not lost. A failed re-find or order is redone synchronously
at the next join (an error then is raised as :class:`InputError`). A failed
``strategy.observe`` cannot be redone safely (it may have half-updated the
ranker), so it is raised at the next join as a one-line
:class:`InputError`, and that call does nothing else (press again to go on);
the answer stays recorded but unlearnt, and an undo of it retracts nothing
from the ranker.

Every answer writes exactly one effort row, timed by an
:class:`~napari_connectome.effort.ActivityClock` from the moment the task was
shown to the answer, idle gaps excluded; undo writes an ``undo`` row timed
the same way (from the moment the task on screen was shown). Edits made
outside tasks (the Proofread panel) are timed by the session's
:class:`~napari_connectome.effort.EffortRecorder`, never by the session (a
recorder the Proofread panel opened before is shared, not doubled).

Waiting. From an answer's key press until the next task is drawn, the
proofreader waits for the suite; the GUI says so with
:meth:`TaskSession.waiting_started` (at the key press) and
:meth:`TaskSession.waiting_ended` (once the next task is drawn). That time
is left out of active time and recorded as ``waiting_s`` on the rows it
falls in (the answered task's, up to the answer; the next one's, from its
display).

Earlier sessions. A question answered *no* or *flagged* in an earlier
session of the project (any proofreader's, not taken back by an undo) is
not asked again while its segments stand: the session reads the effort log
when it opens and its candidate lists leave those out
(:mod:`~napari_connectome.tasks.settled`). *Skip* means "later": a new
session asks it again.

A task whose segments were edited away since its candidates were found
(another panel merged or split one of them) is skipped when it would be
shown, or when it is answered: an effort row with answer ``stale`` and a note,
also added to :attr:`TaskSession.notes`. Candidates are found again after
every accepted edit of the session (in the background, see above), and, when
edits were made outside tasks, once more when the list runs out.

Synapse questions. When the project's synapse store holds detected or
imported rows no one has reviewed, they join the same queue ("Synapse
here?", "Is this the partner?"; see
:mod:`~napari_connectome.tasks.synapse_queue`): one after every
``synapse_every`` segmentation tasks, and all of them once the segmentation
tasks run out. Their answers go to the store and to the synapse classifier
(refit at once: milliseconds), never to the segmentation strategy; they make
no edit. Undo takes back the latest answer of either kind.

Live VI: the contingency table of ground truth against the *supervoxels* is
counted once at opening and relabelled through the current mapping on each
call (milliseconds). It is exact while supervoxels are unchanged; a split
inside a supervoxel (Proofread panel) makes it approximate, and
:meth:`TaskSession.vi` says so (``exact``). With a ground truth, every effort
row the session writes (answers, undos, stale skips, and the recorder's
manual rows) carries ``vi_split``/``vi_merge`` after that row's edit, the
state the proofreader leaves: the effort report's VI curve. It is computed
in :meth:`TaskSession.answer` itself, not in the background: ~1 ms (p50
0.8 ms, p95 1.2 ms on the 256³ synthetic project of
``benchmarks/bench_tasks.py``, 2127 supervoxels; p50 0.6 ms on gala-fib),
small next to the edit it follows, and cached per
:attr:`~napari_connectome.proofread.Proofreader.version`, so the panel's own
:meth:`~TaskSession.vi` call right after an answer costs nothing.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable

from napari_connectome.candidates.apply import apply_candidate, stale_reason
from napari_connectome.effort import DEFAULT_IDLE_S, ActivityClock, Clock, EffortLog, EffortRecorder
from napari_connectome.errors import InputError, warn
from napari_connectome.rank.strategies import Strategy, build_strategy, candidate_key
from napari_connectome.tasks.learning import (
    FIND_ATTEMPTS,
    PLACE_AHEAD,
    Answered,
    BackgroundLearner,
    first_unasked,
    key_counts,
)
from napari_connectome.tasks.live_vi import LiveVI, groundtruth_table, vi_now
from napari_connectome.tasks.model import AnswerResult, Task, check_answer, task_key
from napari_connectome.tasks.prefetch import Prefetcher
from napari_connectome.tasks.settled import settled_tasks, skipping_settled
from napari_connectome.tasks.view import TaskView, crop_edge_nm, prepare_view, view_still_valid

#: Re-find attempts inside one learning job; read at each opening, so a test can change it here.
_FIND_ATTEMPTS = FIND_ATTEMPTS


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
    learning_waits
        Seconds each join that had to wait for a running learning job waited
        (one entry per blocking join of :meth:`answer`, :meth:`undo`,
        :meth:`next_task` or :meth:`progress`; joins of finished jobs and
        :meth:`wait` add nothing).
    learning_joins
        Learning jobs taken by those calls (blocking or not).
    """

    def __init__(self, *, proofreader, own_proofreader: bool, strategy: Strategy, effort: EffortLog,
                 recorder: EffortRecorder, clock: ActivityClock, find: Callable, find_options: dict,
                 gt_table, em_volume, crop_nm, skeletons, prefetch: bool,
                 learn_in_background: bool = True, own_recorder: bool = True, synapses=None,
                 synapse_every: int = 4, place: Callable | None = None, keep: Callable | None = None,
                 settled_earlier: int = 0) -> None:
        self.proofreader = proofreader
        #: Whether :meth:`close` closes the Proofreader. A GUI that shares it
        #: with another panel hands it over by setting this.
        self.owns_proofreader = bool(own_proofreader)
        self.strategy = strategy
        self.effort = effort
        self.recorder = recorder
        #: Whether :meth:`close` closes the recorder and the effort log (not when they were shared).
        self.owns_recorder = bool(own_recorder)
        self._recorder_vi = recorder.vi
        self.clock = clock
        self.em_volume = em_volume
        self.crop_nm = crop_nm
        self.skeletons = skeletons
        self.notes: list[str] = []
        self.current: Task | None = None
        self._find = find
        self._find_options = find_options
        # place(candidates): locations for a finder that leaves candidates unplaced (given place(pr, candidates))
        self._place = None if place is None else (lambda candidates: place(proofreader, candidates))
        # keep(pr): write the candidate list as this session's edits left it for the next session
        self._keep = keep
        self._gt_table = gt_table
        self._live_vi = LiveVI(proofreader, gt_table) if gt_table is not None else None
        self._candidates: list = []
        # (the list, key_counts of it): what progress() counts from, made once per list
        self._key_counts: tuple[list, Counter] | None = None
        self._order: list[int] = []
        self._asked: dict[tuple, str] = {}
        #: Questions an earlier session answered no or flagged, left out of the lists (tasks/settled.py).
        self.settled_earlier = int(settled_earlier)
        self._answers: list[Answered] = []
        self._stale = 0
        self._outside_edits = False
        self._shown_at = 0.0
        self._views: dict[str, TaskView] = {}
        self._closed = False
        self.learning_waits: list[float] = []
        self.learning_joins = 0
        #: The :class:`~napari_connectome.tasks.synapse_queue.SynapseQueue` (None: no synapse questions).
        self.synapses = synapses
        if int(synapse_every) < 1:
            raise InputError("synapse_every", f"must be a whole number ≥ 1, got {synapse_every}")
        self.synapse_every = int(synapse_every)
        self._since_synapse = 0
        self.prefetcher = Prefetcher(self._prepare) if prefetch else None
        self._learner = BackgroundLearner(
            proofreader, strategy, find, find_options, prefetcher=self.prefetcher,
            in_background=learn_in_background, find_attempts=_FIND_ATTEMPTS,
            place=self._place)
        self._edit_connection = proofreader.add_listener(self._on_edit)
        if gt_table is not None:
            recorder.vi = self.vi  # manual edits carry VI too (the recorder is built before the session)
        self._refind()

    # ================================================================ opening
    @classmethod
    def open(cls, project, *, user: str | None = None, strategy="active", gt: str | None = None,
             clock: Clock = time.time, idle_after_s: float = DEFAULT_IDLE_S, find_options: dict | None = None,
             proofreader=None, prefetch: bool = True, crop_nm=None, session: str | None = None,
             model=None, skeletons=None, find: Callable | None = None,
             learn_in_background: bool = True,
             recorder: EffortRecorder | Callable[..., EffortRecorder] | None = None,
             synapses: bool | None = None, synapse_every: int = 4) -> TaskSession:
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
            Candidate finder ``find(proofreader, **find_options)``; default a
            :class:`~napari_connectome.candidates.CandidateCache` (``find_candidates`` again only for
            the segments edits made).
        learn_in_background
            Learn from each answer in a worker thread after the next task is
            shown (one-step-lagged ranking, see the module notes); False: learn
            first, then pick the next task from the new order (slower by the
            learning time; for comparison).
        recorder
            An open :class:`~napari_connectome.effort.EffortRecorder` of this
            ``proofreader`` to share (the Proofread panel's, timing manual
            edits before any task session): its effort log is used and both
            stay open after :meth:`close`. Or a callable ``recorder(vi=...)``
            that returns such a shared recorder, opening it on first use with
            ``vi`` (the VI now, for the log's start) when it is not open yet
            (the GUI's workspace). Default: open the log and a recorder here
            (closed by :meth:`close`).
        synapses
            Ask about the synapse store's unreviewed rows too: None (default)
            when the project has a synapse store, True always (an empty store
            asks nothing), False never.
        synapse_every
            One synapse question after this many segmentation tasks.

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
        place = keep = None
        if find is None:
            # After an answer, only the candidates of the segments the edit made are searched again;
            # and only the ones about to be shown are placed (finding each face was most of a search).
            from napari_connectome.candidates import CandidateCache

            cache = CandidateCache(**{"locate": False, **find_options})
            find_options = {}

            def find(pr):
                return cache(pr)

            if not cache.options["locate"]:
                place = cache.locate
            keep = cache.keep
        strat = strategy if isinstance(strategy, Strategy) else build_strategy(strategy, model=model)
        activity = ActivityClock(clock=clock, idle_after_s=idle_after_s)  # validates idle_after_s first
        table = groundtruth_table(project, gt) if gt is not None else None
        em_volume = project.open_input("raw")
        own = proofreader is None
        if recorder is not None and not isinstance(recorder, EffortRecorder):
            if proofreader is None:
                raise InputError("recorder", "a shared effort recorder needs the proofreader it times")
            recorder = recorder(vi=(lambda: vi_now(proofreader, table)) if table is not None else None)
        if recorder is not None:
            if proofreader is None or recorder.proofreader is not proofreader:
                raise InputError("recorder", "a shared effort recorder must time the proofreader given here")
            if recorder.closed:
                raise InputError("recorder", "the effort recorder to share is closed")
        pr = Proofreader.open(project, user=user, session=session) if own else proofreader
        effort = None
        own_recorder = recorder is None
        try:
            if pr.read_only:
                raise InputError(pr.log.path, "the proofreader is read-only; tasks need to apply edits")
            crop = tuple(float(x) for x in crop_edge_nm(crop_nm, pr.supervoxel_volume().levels[0].voxel_size))
            if skeletons is None:
                skeletons = _project_skeletons(pr)
            if own_recorder:
                # The VI before the first answer: where the report's VI curve starts.
                start = vi_now(pr, table) if table is not None else None
                effort = EffortLog.open(project, user=user or pr.user, session=pr.session, clock=clock,
                                        vi_start=start)
                recorder = EffortRecorder(effort, pr, clock=clock, idle_after_s=idle_after_s)
            # Questions answered no or flagged in earlier sessions are not asked again (tasks/settled.py).
            settled = settled_tasks(recorder.log.rows())
            find = skipping_settled(find, settled)
            if synapses is None:
                synapses = project.component_path("synapses").is_file()
            queue = None
            if synapses:
                from napari_connectome.tasks.synapse_queue import SynapseQueue

                queue = SynapseQueue(pr, user=user or pr.user)
            try:
                return cls(proofreader=pr, own_proofreader=own, strategy=strat, effort=recorder.log,
                           recorder=recorder, clock=activity, find=find, find_options=find_options, gt_table=table,
                           em_volume=em_volume, crop_nm=crop, skeletons=skeletons, prefetch=prefetch, place=place,
                           learn_in_background=learn_in_background, own_recorder=own_recorder, synapses=queue,
                           synapse_every=synapse_every, keep=keep,
                           settled_earlier=sum(len(tids) for tids in settled.values()))
            except BaseException:
                if queue is not None:
                    queue.close()
                raise
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
        note) and the next one shown. Returning the current task never waits
        for the background learning; picking a new one first joins it.

        Raises
        ------
        InputError
            The background learning from the previous answer failed (see the module notes).
        """
        self._check_open()
        if self.current is not None:
            reason = self._stale_reason(self.current)
            if reason is None:
                self._poll()
                return self.current
            self._join()
            self._record_stale(self.current, reason, timed=True)
            return self._advance()
        if not self.clock.running or self._outside_edits:
            # Never shown yet, or the list ran out and edits outside tasks may have made new candidates.
            self._join()
            return self._advance()
        return None

    def touch(self) -> None:
        """A user input (key, click, mouse move, wheel): keeps the clocks from counting the moment as idle."""
        if self._closed:
            return
        self.clock.touch()
        self.recorder.touch()

    def waiting_started(self) -> None:
        """The proofreader pressed an answer and waits for the next task: not active time.

        Call it at the key press, before :meth:`answer` (or :meth:`undo`),
        and :meth:`waiting_ended` once the next task is drawn; see the
        module notes.
        """
        if self._closed:
            return
        self.clock.waiting_started()
        self.recorder.waiting_started()

    def waiting_ended(self) -> None:
        """The next task is drawn: the time from here on is active or idle again."""
        if self._closed:
            return
        self.clock.waiting_ended()
        self.recorder.waiting_ended()

    def answer(self, answer: str) -> AnswerResult:
        """Answer the task on screen and show the next one at once.

        The edit of a *yes* is applied and the effort row written before this
        returns; the strategy learns from the answer in the background, and
        the next task comes from the order as it was before this answer
        (one-step-lagged ranking; see the module notes). A learning job
        still running from the previous answer is waited for first.

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
            An unknown answer; no task on screen; the edit log cannot be
            written; the learning from the previous answer failed (this
            answer is then not taken: nothing is applied or logged).
        """
        self._check_open()
        answer = check_answer(answer)
        task = self.current
        if task is None:
            raise InputError("answer", "no task is shown (the queue is empty)")
        self._join()  # the order this answer picks from; a join never changes the task on screen
        if task.is_synapse:
            return self._answer_synapse(task, answer)
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
        shown, active, idle, answered = self._stop_clock()
        row = self.effort.record(
            task_id=task.id, task_type=task.kind, answer=answer, shown_at=shown, answered_at=answered,
            active_s=active, idle_s=idle, waiting_s=self.clock.waiting_s, edit_id=edit_id,
            candidate_id=task.candidate.id, segments=task.segments, note=note, **self._vi_columns(),
        )
        self._asked[task.key] = answer
        done = Answered(task, answer, edit_id)
        self._answers.append(done)
        learn = done if answer in ("yes", "no") else None
        refind = edit_id is not None
        if not self._learner.in_background:
            # Learn first, then pick from the new order (what a synchronous session does).
            if learn is not None or refind:
                self._submit(learn, refind=refind)
                self._join()
            return AnswerResult(task, answer, edit_id, row, self._advance(), note)
        # The segments this edit merged or cut: their candidates are moot until the re-find renames them.
        moot = frozenset(int(s) for s in task.segments) if refind else frozenset()
        nxt = self._advance(moot=moot, refind=False)
        if learn is not None or refind:
            self._submit(learn, refind=refind)
        if nxt is None and (self._learner.pending or self._outside_edits):
            # The old order ran out: the learning's re-found list may hold more (those renamed by this edit).
            self._join()
            nxt = self._advance()
        return AnswerResult(task, answer, edit_id, row, nxt, note)

    def _answer_synapse(self, task: Task, answer: str) -> AnswerResult:
        """A synapse question's answer: a verdict in the store, the classifier refit; no edit."""
        try:
            batch = self.synapses.answer(task.candidate, answer, task_id=task.id)
        except InputError as exc:
            # The row left the table meanwhile (a new detection run, another program): nothing to answer.
            row = self._record_stale(task, str(exc), timed=True, answered=answer)
            return AnswerResult(task, "stale", None, row, self._advance(), self.notes[-1])
        note = f"verdict {answer} in synapse store batch {batch}" if batch is not None else ""
        shown, active, idle, answered = self._stop_clock()
        row = self.effort.record(
            task_id=task.id, task_type=task.kind, answer=answer, shown_at=shown, answered_at=answered,
            active_s=active, idle_s=idle, waiting_s=self.clock.waiting_s, edit_id=None,
            candidate_id=task.candidate.id, segments=task.segments, note=note, **self._vi_columns(),
        )
        self._asked[task.key] = answer
        self._answers.append(Answered(task, answer, None, learnt=answer in ("yes", "no")))
        return AnswerResult(task, answer, None, row, self._advance(), note)

    def _undo_synapse(self, last: Answered) -> AnswerResult:
        taken = self.synapses.undo()
        again_candidate, _, retraction = taken
        self._answers.pop()
        shown, active, idle, answered = self._stop_clock()
        note = f"took back {last.answer}" + (f" (synapse store batch {retraction})" if retraction is not None else "")
        row = self.effort.record(
            task_id=last.task.id, task_type=last.task.kind, answer="undo", shown_at=shown, answered_at=answered,
            active_s=active, idle_s=idle, waiting_s=self.clock.waiting_s, edit_id=None,
            candidate_id=last.task.candidate.id, segments=last.task.segments, note=note, **self._vi_columns(),
        )
        self._asked.pop(last.task.key, None)
        again = Task.from_synapse(again_candidate)
        self._show(again)
        return AnswerResult(last.task, "undo", None, row, again, f"took back {last.answer}")

    def undo(self) -> AnswerResult | None:
        """Take back the latest answer still in effect and show its task again.

        Waits for the learning from the previous answer first, then undoes
        the answer's edit (a *yes* that applied one) through the Proofreader,
        retracts a *yes* / *no* from the strategy (when it was learnt), logs
        an ``undo`` effort row timed like an answer (from when the task on
        screen was shown), and makes the answered task current again. The
        task that was on screen goes back to the queue unanswered. After an
        undone edit the candidates are found again here (synchronously, as
        the task shown must read as the segmentation does now); the new order
        without the retracted answer is computed in the background.

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
            The learning from the previous answer failed (nothing is undone then).
        """
        self._check_open()
        self._join()
        if not self._answers:
            return None
        last = self._answers[-1]
        if last.task.is_synapse:
            return self._undo_synapse(last)
        undo_id = None
        if last.edit_id is not None:
            undo_id = self.proofreader.undo(last.edit_id, task_id=last.task.id,
                                            suggested_by=f"task:{self.strategy.name}").operation_id
        self._answers.pop()
        if last.answer in ("yes", "no") and last.learnt:
            self._learner.retract(last.task.candidate)
        shown, active, idle, answered = self._stop_clock()
        row = self.effort.record(
            task_id=last.task.id, task_type=last.task.kind, answer="undo", shown_at=shown, answered_at=answered,
            active_s=active, idle_s=idle, waiting_s=self.clock.waiting_s, edit_id=undo_id,
            candidate_id=last.task.candidate.id,
            segments=last.task.segments, note=f"took back {last.answer}", **self._vi_columns(),
        )
        self._asked.pop(last.task.key, None)
        if undo_id is not None:
            self._refind()
        elif last.learnt:
            # The ranker forgot an answer: its order changes; computed behind the task shown again.
            self._submit(None, refind=False)
            if not self._learner.in_background:
                self._join()
        again = self._refreshed(last.task)
        self._show(again)
        return AnswerResult(last.task, "undo", undo_id, row, again, f"took back {last.answer}")

    def progress(self) -> dict:
        """``done`` (answers in effect: yes/no/skip/flag), ``queued`` (candidates not asked yet, the one
        on screen excluded), ``flagged``, ``stale`` (skipped as edited away), the count of each answer, and
        ``earlier`` (questions an earlier session answered no or flagged: not asked, not queued).

        Never waits for the background learning: while it runs after a
        *yes*, ``queued`` counts the list found before that answer.
        """
        self._poll()
        counts = {a: sum(1 for x in self._answers if x.answer == a) for a in ("yes", "no", "skip", "flag")}
        current = self.current.key if self.current is not None else None
        listed = self._key_counts[1] if self._key_counts and self._key_counts[0] is self._candidates else None
        if listed is None:
            listed = key_counts(self._candidates)
            self._key_counts = (self._candidates, listed)
        # The list less the candidates asked or on screen: counted from the few asked, not the many listed.
        excluded = {*self._asked, current} - {None}
        queued = len(self._candidates) - sum(listed.get(repr(k), 0) for k in excluded)  # counted by key text
        if self.synapses is not None:
            queued += sum(1 for c in self.synapses.candidates
                          if (k := task_key(c)) not in self._asked and k != current)
        return {"done": len(self._answers), "queued": queued, "flagged": counts["flag"], "stale": self._stale,
                "earlier": self.settled_earlier, **counts}

    def vi(self) -> dict | None:
        """Live VI against the ground truth: ``vi_split``, ``vi_merge``, ``vi`` (bits), ``exact``; None without gt.

        Computed once per :attr:`~napari_connectome.proofread.Proofreader.version`
        (every edit moves it), so asking again before the next edit is free.
        """
        return None if self._live_vi is None else self._live_vi()

    def _vi_columns(self) -> dict:
        """``vi_split``/``vi_merge`` keywords of an effort row: the VI now (after the row's edit), or Nones."""
        try:
            vi = self.vi()
        except Exception as exc:  # the edit is made already: its effort row must not be lost for a figure
            self.notes.append(f"no VI recorded with this row ({type(exc).__name__}: {exc})")
            vi = None
        if vi is None:
            return {"vi_split": None, "vi_merge": None}
        return {"vi_split": vi["vi_split"], "vi_merge": vi["vi_merge"]}

    # ================================================================ background learning
    @property
    def learning(self) -> bool:
        """True while a background learning job (observe, re-find, order) is running."""
        return self._learner.running

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the background learning and take its result (the new order); for tests and benchmarks.

        Parameters
        ----------
        timeout
            Seconds to wait at most; None: until it is done.

        Returns
        -------
        bool
            True when no learning is pending any more; False when ``timeout`` ran out first.

        Raises
        ------
        InputError
            The learning failed (see the module notes).
        """
        if self._closed:
            return True
        return self._join(timeout=timeout, count=False)

    def _submit(self, answered: Answered | None, *, refind: bool) -> None:
        """Start learning from ``answered`` (None: only re-order), re-finding first when ``refind``."""
        current = self.current.key if self.current is not None else None
        asked = frozenset(self._asked) | ({current} if current is not None else frozenset())
        self._learner.submit(answered, self._candidates, asked, refind=refind)

    def _poll(self) -> None:
        """Take a finished, clean learning result without waiting (anything else waits for a real join)."""
        if self._learner.ready:
            self._join()

    def _join(self, timeout: float | None = None, *, count: bool = True) -> bool:
        """Wait for the learning job (caller's thread) and install its result; see the module notes.

        Returns False when ``timeout`` ran out (nothing installed). ``count``:
        add to :attr:`learning_waits` / :attr:`learning_joins` (not for :meth:`wait`).
        """
        learner = self._learner
        if learner.running:
            t0 = time.perf_counter()
            if not learner.wait(timeout):
                return False
            if count:
                self.learning_waits.append(time.perf_counter() - t0)
        self.learning_joins += int(count and learner.pending)
        taken = learner.take(self._candidates)  # raises a failed observe: this call then does nothing else
        if taken.note:
            self.notes.append(taken.note)
        if taken.redo == "refind":
            self._refind_or_raise()
        elif taken.redo == "reorder":
            self._reorder_or_raise()
        elif taken.candidates is not None:
            self._candidates, self._order = taken.candidates, taken.order
            if taken.key_counts is not None:
                self._key_counts = (taken.candidates, taken.key_counts)
            self._outside_edits = False
        elif taken.order is not None:
            self._order = taken.order
        return True

    def _refind_or_raise(self) -> None:
        try:
            self._refind()
        except InputError:
            raise
        except Exception as exc:
            raise InputError("task session", f"finding the candidates again failed ({type(exc).__name__}: {exc})") from exc

    def _reorder_or_raise(self) -> None:
        try:
            self._order = self._learner.order(self._candidates)
        except InputError:
            raise
        except Exception as exc:
            raise InputError("task session", f"ordering the tasks failed ({type(exc).__name__}: {exc})") from exc

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
        """Stop the workers, the recorder and the effort log; close a Proofreader opened here.

        Waits for a running learning job (its result is dropped; the edit and
        effort logs are complete already). A failure of that job is added to
        :attr:`notes`, not raised: nothing is left that it could change. The
        candidate list, as this session's edits left it, is kept in the project
        for the next session (:mod:`~napari_connectome.candidates.kept`).
        """
        if self._closed:
            return
        self._closed = True
        note = self._learner.shutdown()
        if note is not None:
            self.notes.append(note)
        if self._keep is not None:
            try:
                self._keep(self.proofreader)
            except Exception as exc:  # a cache: the next session searches instead, nothing is lost
                self.notes.append(f"the candidate list was not kept for the next session: {exc}")
        if self.prefetcher is not None:
            self.prefetcher.close()
        if self.synapses is not None:
            self.synapses.close()
        # A shared Proofreader outlives the session: it must stop calling us.
        self._edit_connection.disconnect()
        if self.owns_recorder:
            self.recorder.close()
            self.effort.close()
        else:
            self.recorder.vi = self._recorder_vi  # the session's VI goes with it
        if self.owns_proofreader:
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
        """Find the candidates and order them here (caller's thread): opening, undo, fallbacks."""
        self._candidates = list(self._find(self.proofreader, **self._find_options))
        self._order = self._learner.order(self._candidates)
        self._outside_edits = False
        if self._place is not None:
            self._place(first_unasked(self._candidates, self._order, self._asked, PLACE_AHEAD))

    def _task_of(self, candidate) -> Task:
        """The task asking about ``candidate``, placed first when the finder left it unplaced."""
        if self._place is not None and math.isnan(candidate.location_nm[0]):
            self._place([candidate])
        return Task.from_candidate(candidate)

    def _unasked(self, *, exclude: tuple | None = None):
        for i in self._order:
            c = self._candidates[i]
            key = candidate_key(c)
            if key not in self._asked and key != exclude:
                yield c

    def _advance(self, *, moot: frozenset = frozenset(), refind: bool = True) -> Task | None:
        """Show the first unasked, non-stale candidate in the current order (stale ones are logged).

        Candidates naming a segment in ``moot`` (the ones this answer's edit
        changed) are passed over without a row: they come back re-found.
        ``refind``: when the list runs out after edits outside tasks, find it
        again once (here, synchronously).
        """
        self.current = None
        refound = not refind
        if self._since_synapse >= self.synapse_every and (task := self._synapse_task()) is not None:
            self._since_synapse = 0
            self._show(task)
            return task
        while True:
            task = self._first_showable(moot)
            if task is None and self._outside_edits and not refound:
                self._refind()
                refound = True
                continue
            if task is None:
                task = self._synapse_task()  # the segmentation tasks ran out: the synapse questions go on
            else:
                self._since_synapse += 1
            self._show(task)
            return task

    def _synapse_task(self, *, exclude: tuple | None = None) -> Task | None:
        """The synapse question to ask next (None: none, or no synapse queue)."""
        if self.synapses is None:
            return None
        for cand in self.synapses.order():
            if task_key(cand) not in self._asked and task_key(cand) != exclude:
                return Task.from_synapse(cand)
        return None

    def _stale_reason(self, task: Task) -> str | None:
        # A synapse question makes no edit: it cannot be edited away (a row gone from the store is found
        # when the answer is recorded).
        return None if task.is_synapse else stale_reason(self.proofreader, task.candidate)

    def _first_showable(self, moot: frozenset) -> Task | None:
        for cand in self._unasked():
            reason = stale_reason(self.proofreader, cand)
            if reason is None:
                return self._task_of(cand)
            if moot and not moot.isdisjoint(int(s) for s in cand.segments):
                continue  # made stale by this very answer: re-found under new ids, not a stale skip
            self._record_stale(Task.from_candidate(cand), reason, timed=False)
        return None

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
        if self._since_synapse >= self.synapse_every and (task := self._synapse_task(exclude=current)):
            return task  # the answer to a segmentation task now brings the turn of a synapse question
        for cand in self._unasked(exclude=current):
            if stale_reason(self.proofreader, cand) is None:
                return self._task_of(cand)
        return self._synapse_task(exclude=current)

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
            waiting = self.clock.waiting_s
        else:
            shown = answered_at = self.clock.now()
            active = idle = waiting = 0.0
        row = self.effort.record(
            task_id=task.id, task_type=task.kind, answer="stale", shown_at=shown, answered_at=answered_at,
            active_s=active, idle_s=idle, waiting_s=waiting, candidate_id=task.candidate.id,
            segments=task.segments, note=note,
            **self._vi_columns(),
        )
        self._asked[task.key] = "stale"
        self._stale += 1
        self.notes.append(note)
        if self.current is not None and self.current.key == task.key:
            self.current = None
        return row

    def _refreshed(self, task: Task) -> Task:
        """``task`` as it reads on the segmentation now (same id): from the re-found list, else relabelled."""
        if task.is_synapse:
            return task
        for c in self._candidates:
            if candidate_key(c) == task.key:
                return self._task_of(c)
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


def _project_skeletons(pr):
    """The project's skeleton store if it matches the segmentation now, else None.

    A store built for another state is not recomputed here (a note says so);
    a damaged one — a cache that no longer reads — is rebuilt with a warning
    naming the file, as every derived file is.
    """
    from napari_connectome.skeleton import SkeletonStore
    from napari_connectome.skeleton.store import StaleSkeletonsError

    if not SkeletonStore.path(pr.project).is_file():
        return None
    try:
        return SkeletonStore.load(pr.project, proofreader=pr)
    except StaleSkeletonsError as exc:
        pr.notes.append(f"skeletons not shown in tasks: {exc}")
        return None
    except InputError as exc:
        warn(f"{exc}; rebuilding the skeletons")
        return SkeletonStore.rebuild(pr)
