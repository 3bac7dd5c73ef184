"""Preparing the next task's view in a worker thread while the proofreader decides on this one.

One worker (``ThreadPoolExecutor(max_workers=1)``): the reads go to the same
disks as the GUI's own, and one task ahead is all a person can use. The
session asks for the view of the task that would come next if the answer
does not change the ranking (after *no*, *skip* or *flag*, the next one in
the current order); when the answer does change it, the prepared view is for
another task and is not used.

Whether a prepared view can be shown is decided by the caller
(:func:`~napari_connectome.tasks.view.view_still_valid`): same task id,
segments and point, and the Proofreader state still current for that task's
segments. A miss is prepared synchronously in the caller's thread rather than
queued behind the worker, so a wrong guess costs one preparation, not two.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
from collections.abc import Callable

from napari_connectome.tasks.model import Task
from napari_connectome.tasks.view import TaskView


class Prefetcher:
    """Prepares task views ahead, one at a time, keyed by task id.

    Parameters
    ----------
    prepare
        ``prepare(task) -> TaskView``; called in the worker thread.
    """

    def __init__(self, prepare: Callable[[Task], TaskView]) -> None:
        self._prepare = prepare
        self._pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="task-prefetch")
        self._lock = threading.Lock()
        self._jobs: dict[str, tuple[Task, cf.Future]] = {}
        self.hits = 0
        self.misses = 0
        self.closed = False

    def submit(self, task: Task) -> None:
        """Start preparing ``task``'s view (no-op when it is already being prepared)."""
        with self._lock:
            if self.closed or task.id in self._jobs and _same(self._jobs[task.id][0], task):
                return
            self._jobs[task.id] = (task, self._pool.submit(self._prepare, task))

    def pending(self, task: Task) -> bool:
        """True when a view of ``task`` (this very Task) was submitted."""
        with self._lock:
            job = self._jobs.get(task.id)
            return job is not None and _same(job[0], task)

    def take(self, task: Task, valid: Callable[[TaskView], bool], *, timeout: float | None = None) -> TaskView | None:
        """The prepared view of ``task`` if there is one and ``valid(view)``; waits for it if still running.

        Returns None (a miss) when nothing was prepared for it, when it failed
        or when ``valid`` rejects it; the entry is dropped either way.
        """
        with self._lock:
            job = self._jobs.pop(task.id, None)
        if job is None:
            self.misses += 1
            return None
        try:
            view = job[1].result(timeout=timeout)
        except Exception:  # a failed read in the worker: the caller prepares it again and sees the error
            self.misses += 1
            return None
        if view is None or not valid(view):
            self.misses += 1
            return None
        self.hits += 1
        return view

    def keep_only(self, tasks) -> None:
        """Drop (cancel if not started) every job except those of ``tasks``."""
        keep = {t.id for t in tasks if t is not None}
        with self._lock:
            for tid in [t for t in self._jobs if t not in keep]:
                self._jobs.pop(tid)[1].cancel()

    def wait(self) -> None:
        """Block until every submitted job has finished (tests, benchmarks)."""
        with self._lock:
            futures = [f for _, f in self._jobs.values()]
        cf.wait(futures)

    def close(self) -> None:
        """Cancel what has not started and stop the worker (waits for the running job)."""
        with self._lock:
            self.closed = True
            for _, f in self._jobs.values():
                f.cancel()
            self._jobs.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)


def _same(a: Task, b: Task) -> bool:
    # Not ``a == b``: candidates carry NaN features, and NaN != NaN.
    return (a.id, a.segments, a.location_nm) == (b.id, b.segments, b.location_nm)
