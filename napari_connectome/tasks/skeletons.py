"""Skeletons for the task view that follow the session's edits.

The project's :class:`~napari_connectome.skeleton.SkeletonStore` holds the
skeleton of every segment that existed when it was built. A merge, split or
undo retires segment ids and makes new ones, and without an update the new
ones have no skeleton in the task view. :class:`FollowingSkeletons` calls
:meth:`SkeletonStore.update_after_edit` for every committed edit, in order,
in one worker thread (TEASAR of a merged segment takes ~0.1–1 s: not on the
GUI thread), and :meth:`FollowingSkeletons.get` of a segment whose skeleton
is still being made waits for it, except on the main (GUI) thread, which
never waits: the view prepared there shows the segment without its skeleton,
and the next one has it.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading

#: Longest a view preparation waits for a new segment's skeleton (s).
WAIT_S = 30.0


class FollowingSkeletons:
    """``segment id → Skeleton`` over a store, kept current with the edits (see the module notes).

    Parameters
    ----------
    store
        The project's :class:`~napari_connectome.skeleton.SkeletonStore`.
    proofreader
        The :class:`~napari_connectome.proofread.Proofreader` the edits go through.
    save
        Save the store after each update (so the next session finds it current).
    """

    def __init__(self, store, proofreader, *, save: bool = True) -> None:
        self.store = store
        self.proofreader = proofreader
        self.save = bool(save)
        self.errors: list[str] = []
        self._pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="task-skeletons")
        self._lock = threading.Lock()
        self._pending: dict[int, cf.Future] = {}
        self._closed = False

    def follow(self, result) -> None:
        """Proofreader listener: update the store for the edit ``result`` in the worker."""
        with self._lock:
            if self._closed:
                return
            future = self._pool.submit(self._update, result)
            for seg in result.after_segments:
                self._pending[int(seg)] = future

    def _update(self, result) -> None:
        try:
            self.store.update_after_edit(self.proofreader, result, save=self.save)
        except Exception as exc:  # a later edit retired a segment meanwhile, or the save failed: say so
            self.errors.append(f"skeletons after edit {result.operation_id} not updated "
                               f"({type(exc).__name__}: {' '.join(str(exc).split())})")

    def get(self, segment_id: int):
        """The skeleton of ``segment_id`` or None; waits for one being made (not on the main thread)."""
        seg = int(segment_id)
        with self._lock:
            future = self._pending.get(seg)
        if future is not None and threading.current_thread() is not threading.main_thread():
            try:
                future.result(timeout=WAIT_S)
            except (cf.TimeoutError, cf.CancelledError):
                pass
        return self.store.get(seg)

    def pending(self) -> bool:
        """True while an update is queued or running."""
        with self._lock:
            return any(not f.done() for f in self._pending.values())

    def wait(self) -> None:
        """Block until every queued update is done (tests, scripts)."""
        with self._lock:
            futures = list(self._pending.values())
        cf.wait(futures)

    def close(self) -> None:
        """Finish the queued updates and stop the worker."""
        with self._lock:
            self._closed = True
        self._pool.shutdown(wait=True)
