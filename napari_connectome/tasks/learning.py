"""Learning from each answer in a worker thread, and handing back the new candidate order.

The task session shows the next task from the order as it was before an
answer and leaves the learning to a :class:`BackgroundLearner` (the
one-step-lagged ranking of :mod:`napari_connectome.tasks.session`). A job
is: ``strategy.observe`` of the answer (when it is a *yes* or *no*), finding
the candidates again (after an edit), ``strategy.order`` of the list. The
session submits one job per answer and, before it next picks a task, takes
its result (a *join*: :meth:`~BackgroundLearner.wait`, then
:meth:`~BackgroundLearner.take`).

Threads. The learning runs in its own ``ThreadPoolExecutor(max_workers=1)``,
not the prefetcher's: a 2 s re-find queued in front of a view preparation
would delay the very view the proofreader waits for. The job computes into
its own variables; only the caller's thread (the GUI's) changes the session's
list, order, answers and current task, from what :meth:`~BackgroundLearner.take`
hands back, so nothing the GUI reads is half-updated. Every ``strategy`` call
(observe, order, retract) goes through the learner and holds its one lock,
so two never run at once. The re-find reads the shared Proofreader while the
Proofread panel may commit an edit (in the GUI thread): a read overlapping a
commit can mix two states. Blocking edits for 2 s behind a lock is not
acceptable, so the job reads optimistically: it notes
:attr:`~napari_connectome.proofread.Proofreader.version` before reading, and
the take (in the editing thread, so no commit is half done at that moment)
accepts the re-found list only if the version is unchanged; otherwise the
caller finds it again, synchronously (the worker also retries at once when
it sees the version move, so this is rare).

A failed job is not lost: :meth:`~BackgroundLearner.take` raises a failed
``strategy.observe`` (it cannot be redone safely) and asks the caller to redo
a failed re-find or order; see the session's notes for what the proofreader
sees.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from napari_connectome.candidates.apply import stale_reason
from napari_connectome.errors import InputError
from napari_connectome.rank.strategies import Strategy, candidate_key, candidate_key_text
from napari_connectome.tasks.model import Task
from napari_connectome.tasks.prefetch import Prefetcher

#: Re-find attempts inside one learning job when an edit lands while reading (then the caller redoes it).
FIND_ATTEMPTS = 3
#: Candidates placed ahead, first in an order and not asked: the tasks the next answers can show.
PLACE_AHEAD = 4


@dataclass
class Answered:
    """One answer in effect: what a learning job learns from, and what an undo takes back."""

    task: Task
    answer: str
    edit_id: int | None
    #: The strategy observed it (set when its job is taken); an undo retracts only what was learnt.
    learnt: bool = False


@dataclass(frozen=True)
class Taken:
    """What taking a learning job leaves to the caller, whose thread owns the list and the order.

    Attributes
    ----------
    candidates
        The re-found list, read at the Proofreader's version now; install it with ``order``. None: the
        list stays.
    order
        The new order: of ``candidates`` when given, else of the caller's list as it is. None: keep it.
    redo
        ``"refind"``: find the candidates again and order them, synchronously (the job failed, its read
        was torn or an edit landed since); ``"reorder"``: order the list again (the order failed, or the
        list changed meanwhile); ``""``: nothing to redo.
    note
        A failure in the worker that ``redo`` makes good, for the proofreader's notes; ``""`` when none.
    key_counts
        How many candidates of ``candidates`` propose each edit (:func:`key_counts`), counted in the
        worker; None with no new list.
    """

    candidates: list | None = None
    order: list[int] | None = None
    redo: str = ""
    note: str = ""
    key_counts: Counter | None = None


@dataclass
class _Outcome:
    """What a learning job computed (in the worker), handed over by :meth:`BackgroundLearner.take`."""

    observed: bool = False
    candidates: list | None = None   # the re-found list; None when not re-found (or the read was torn)
    version: int = -1                # Proofreader.version the re-found list was read at
    order: list[int] | None = None
    key_counts: Counter | None = None  # of the re-found list (key_counts)
    ahead: Task | None = None        # the guess of the next task under the new order (prefetched)
    error: BaseException | None = None
    step: str = ""


@dataclass
class _Job:
    """A learning job in flight: the answer it learns from (or None: re-order only) and what it re-finds."""

    future: cf.Future
    answered: Answered | None
    refind: bool
    candidates: list
    outcome: _Outcome = field(default_factory=_Outcome)


class BackgroundLearner:
    """Learns from answers one job at a time in a worker thread; the caller takes each job's new order.

    Every call to the strategy goes through here (:meth:`order`, :meth:`retract` and the jobs), under one
    lock. At most one job is pending: the caller takes it (:meth:`take`) before it submits the next.

    Parameters
    ----------
    proofreader
        The :class:`~napari_connectome.proofread.Proofreader` the candidates are found on (only read here).
    strategy
        The :class:`~napari_connectome.rank.Strategy` that learns and orders.
    find
        Candidate finder ``find(proofreader, **find_options)``.
    find_options
        Its keyword options.
    prefetcher
        Where a job sends its guess of the next task under the new order, to be prepared; None: no guess.
    in_background
        False: a job runs inside :meth:`submit`, before it returns (a synchronous session).
    find_attempts
        Re-finds inside one job while edits land during the read; then the caller finds them again.
    place
        ``place(candidates)`` gives unplaced candidates their location (a finder that leaves them
        unplaced, :class:`~napari_connectome.candidates.CandidateCache` with ``locate=False``); a job
        places the first :data:`PLACE_AHEAD` unasked ones of its new order here, off the caller's
        thread. None: the finder places every candidate.
    """

    def __init__(self, proofreader, strategy: Strategy, find: Callable, find_options: dict, *,
                 prefetcher: Prefetcher | None = None, in_background: bool = True,
                 find_attempts: int = FIND_ATTEMPTS, place: Callable[[list], None] | None = None) -> None:
        self.proofreader = proofreader
        self.strategy = strategy
        self.place = place
        self.in_background = bool(in_background)
        self._find = find
        self._find_options = find_options
        self._prefetcher = prefetcher
        self._find_attempts = int(find_attempts)
        # One lock around every strategy call: observe (worker), order (worker or caller), retract (caller).
        self._lock = threading.RLock()
        self._job: _Job | None = None
        # A failed observe left the list behind its answer's edit: the next take asks for a re-find.
        self._needs_refind = False
        self._pool = (cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="task-learning")
                      if self.in_background else None)

    # ================================================================ strategy calls
    def order(self, candidates: list) -> list[int]:
        """The strategy's order of ``candidates`` (either thread; the lock keeps it apart from observe)."""
        if not candidates:
            return []
        with self._lock:
            return [int(i) for i in self.strategy.order(candidates)]

    def retract(self, candidate) -> None:
        """Make the strategy forget an answer about ``candidate`` it learnt (an undo)."""
        with self._lock:
            self.strategy.retract(candidate)

    # ================================================================ jobs
    @property
    def running(self) -> bool:
        """True while a submitted job is still computing."""
        job = self._job
        return job is not None and not job.future.done()

    @property
    def pending(self) -> bool:
        """True from :meth:`submit` until :meth:`take` (or :meth:`shutdown`), running or finished."""
        return self._job is not None

    @property
    def ready(self) -> bool:
        """True when a finished job can be taken as it is: nothing failed, nothing to redo.

        A re-found list counts only while the Proofreader is still at the version it was read at.
        """
        job = self._job
        if job is None or not job.future.done():
            return False
        out = job.future.result()
        return out.error is None and out.order is not None and (
            not job.refind or (out.candidates is not None and out.version == self.proofreader.version))

    def submit(self, answered: Answered | None, candidates: list, asked: frozenset, *, refind: bool) -> None:
        """Start a job: learn from ``answered`` (None: only re-order), re-finding first when ``refind``.

        Parameters
        ----------
        answered
            A *yes* or *no* to observe, or None.
        candidates
            The caller's list now: ordered when not ``refind``, and the list :meth:`take` compares
            with to tell whether the order still fits.
        asked
            Keys of the candidates not to guess as the next task (asked, or on screen).
        refind
            Find the candidates again first (an edit was applied).
        """
        job = _Job(cf.Future(), answered, refind, candidates)
        if self._pool is None:
            job.future.set_result(self._learn(job, asked))
        else:
            job.future = self._pool.submit(self._learn, job, asked)
        self._job = job

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the running job, if any; False when ``timeout`` (seconds) ran out first."""
        job = self._job
        if job is None:
            return True
        try:
            job.future.result(timeout=timeout)
        except cf.TimeoutError:
            return False
        return True

    def take(self, candidates: list) -> Taken:
        """Take the pending job (waiting for it if it still runs) and say what the caller installs or redoes.

        Call it in the thread that owns the list and edits the Proofreader, so no commit is half done.

        Parameters
        ----------
        candidates
            The caller's list now (a job's order fits it only if it is the list the job ordered).

        Returns
        -------
        Taken
            Nothing to do when no job was pending (unless a re-find is still owed, see Raises).

        Raises
        ------
        InputError
            The strategy could not learn from the job's answer. The answer stays unlearnt
            (:attr:`Answered.learnt` False) and nothing else is handed over; when the job was to re-find,
            the next take asks for it.
        """
        job, self._job = self._job, None
        if job is None:
            refind, self._needs_refind = self._needs_refind, False
            return Taken(redo="refind" if refind else "")
        out = job.future.result()
        if job.answered is not None:
            job.answered.learnt = out.observed
            if not out.observed:
                # Observing again could learn the answer twice (it may have half-updated the ranker);
                # the list must still follow the edit, at the next take.
                self._needs_refind = job.refind
                raise InputError("task session", (
                    f"the ranker could not learn from the answer {job.answered.answer!r} to task "
                    f"{job.answered.task.id} ({type(out.error).__name__}: {out.error}); the answer is "
                    "recorded but not learnt, and the order was not updated"))
        note = ""
        if out.error is not None:  # redone by the caller; said, not lost
            note = (f"{out.step} in the background failed ({type(out.error).__name__}: "
                    f"{' '.join(str(out.error).split())}); done again")
        if job.refind:
            if out.candidates is not None and out.order is not None and out.version == self.proofreader.version:
                return Taken(candidates=out.candidates, order=out.order, note=note, key_counts=out.key_counts)
            return Taken(redo="refind", note=note)  # failed, torn, or an edit landed since
        if out.order is not None and job.candidates is candidates:
            return Taken(order=out.order, note=note)
        return Taken(redo="reorder", note=note)  # the order failed (or the list changed meanwhile)

    def shutdown(self) -> str | None:
        """Wait for a pending job, drop its result and stop the worker.

        Returns
        -------
        str or None
            A note on the failure of that job, or None: nothing is left that it could change, so it
            is said, not raised.
        """
        job, self._job = self._job, None
        note = None
        if job is not None:
            out = job.future.result()
            if out.error is not None:
                note = f"learning while closing failed ({type(out.error).__name__}: {out.error})"
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        return note

    # ================================================================ the job (worker thread)
    def _learn(self, job: _Job, asked: frozenset) -> _Outcome:
        """Observe, re-find, order; computes into the job's outcome, never into the caller's state."""
        out = job.outcome
        pr = self.proofreader
        try:
            if job.answered is not None:
                out.step = "learning from the answer"  # (raised at the take, never redone)
                with self._lock:
                    self.strategy.observe(job.answered.task.candidate, job.answered.answer == "yes")
                out.observed = True
            cands = job.candidates
            if job.refind:
                out.step = "finding the candidates again"
                cands = None
                for _ in range(self._find_attempts):
                    version = pr.version
                    try:
                        found = list(self._find(pr, **self._find_options))
                    except Exception:
                        if pr.version == version:
                            raise
                        continue  # an edit landed while reading (a torn read): read again
                    if pr.version == version:
                        cands, out.version = found, version
                        break
                if cands is None:
                    return out  # edits kept landing: the caller finds them again
                out.candidates = cands
                try:
                    out.key_counts = key_counts(cands)
                except (AttributeError, TypeError):  # not candidates (a caller's own finder): counted when asked
                    out.key_counts = None
            out.step = "ordering the tasks"
            out.order = self.order(cands)
            if self.place is not None:
                out.step = "placing the next tasks"
                self.place(first_unasked(cands, out.order, asked, PLACE_AHEAD))
            if self._prefetcher is not None:
                out.ahead = self._guess(cands, out.order, asked)
                if out.ahead is not None:
                    self._prefetcher.submit(out.ahead)
        except Exception as exc:  # raised or redone at the take, never lost
            out.error = exc
        return out

    def _guess(self, cands: list, order: list[int], asked: frozenset) -> Task | None:
        """The task the next *no* would show under the new order (read racing edits: only a guess)."""
        try:
            for i in order:
                c = cands[i]
                if candidate_key(c) not in asked and stale_reason(self.proofreader, c) is None:
                    if self.place is not None:
                        self.place([c])
                    return Task.from_candidate(c)
        except Exception:  # a torn read: no guess, the view is prepared when asked for
            return None
        return None


def key_counts(candidates: list) -> Counter:
    """How many candidates propose each edit, by the text of their key (``repr(candidate_key(c))`` → count).

    What the session's progress counts the unasked ones from, without a key per candidate per call (at
    10^6 candidates that loop took seconds of the GUI thread after every answer). Counted by the key's
    text, kept on each candidate object (:func:`~napari_connectome.rank.strategies.candidate_key_text`):
    a key tuple is made and hashed again at every count, 4 s of the learning after each accepted edit at
    1.4 M candidates.
    """
    return Counter(map(candidate_key_text, candidates))


def first_unasked(candidates: list, order: list[int], asked, k: int) -> list:
    """The first ``k`` candidates of ``order`` whose key is not in ``asked``."""
    out = []
    for i in order:
        if len(out) >= k:
            break
        c = candidates[i]
        if candidate_key(c) not in asked:
            out.append(c)
    return out
