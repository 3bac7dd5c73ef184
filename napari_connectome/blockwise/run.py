"""Run a function on every block: threads, processes or a cluster, resumable, cancellable.

:func:`run_blockwise` hands blocks out as workers free up, a bounded number
in flight, and takes the results back **in block order** in the calling
thread: progress, the done-ledger and ``collect`` all happen there, so none
of them needs to be thread-safe, and a reduction over the results is the
same whatever the number of workers.

Schedulers
----------
``"synchronous"``
    One block at a time in the calling thread (debugging, tiny inputs).
``"threads"`` (default)
    A pool of threads in this process: the right choice when the work is
    NumPy, tensorstore or zstd, which release the GIL.
``"processes"``
    A ``dask.distributed.LocalCluster`` of ``workers`` single-threaded
    processes, made for the run and closed after it: for work that holds the
    GIL. ``process`` and the blocks travel by (cloud)pickle.
``"tcp://host:port"`` or a ``dask.distributed.Client``
    An existing Dask cluster (a scheduler address, or a client the caller
    made): the same code on a cluster. Outputs must be on storage the
    workers can reach.

Why not Dask's local schedulers for ``"threads"``: they run a materialised
graph, one task per block made before the first runs and every result kept
until the last ends. A pyramid of 10^6 blocks would hold a graph of 10^6
tasks, and the region graph's ordered fold of block results could not
stream. dask.distributed's futures do stream, so processes and clusters go
through them; threads use the thread pool Dask's threaded scheduler itself
runs on (``concurrent.futures``), with no graph at all.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_connectome.blockwise.grid import Block, BlockGrid
from napari_connectome.blockwise.ledger import Ledger
from napari_connectome.errors import CancelledError, ConnectomeError, InputError
from napari_connectome.progress import NullProgress, Progress

LOCAL_SCHEDULERS = ("synchronous", "threads", "processes")


class BlockError(ConnectomeError):
    """A block's ``process`` raised: one line naming the block, its box and the error.

    Attributes
    ----------
    block
        The block that failed.
    error
        What ``process`` raised (also the ``__cause__``).
    """

    def __init__(self, block: Block, error: BaseException) -> None:
        self.block = block
        self.error = error
        what = str(error) if isinstance(error, ConnectomeError) else f"{type(error).__name__}: {error}"
        super().__init__(f"{block}: {what}")


@dataclass(frozen=True)
class RunSummary:
    """What a run did.

    Attributes
    ----------
    total
        Blocks given (None for an iterable without a length).
    skipped
        Blocks the ledger recorded done before this run.
    ran
        Blocks processed by this run.
    """

    total: int | None
    skipped: int
    ran: int


class _Ran:
    """The outcome of a block run in the calling thread, read like a future's."""

    __slots__ = ("_error", "_value")

    def __init__(self, value=None, error: BaseException | None = None) -> None:
        self._value, self._error = value, error

    def result(self):
        if self._error is not None:
            raise self._error
        return self._value

    def cancel(self) -> bool:
        return False


class _Inline:
    """An executor that runs each block as it is submitted, in the calling thread."""

    def submit(self, fn, *args) -> _Ran:
        # Not a concurrent.futures.Future: its lock and condition cost more than a small block.
        try:
            return _Ran(fn(*args))
        except BaseException as exc:  # handed back like a pool's future
            return _Ran(error=exc)


def _is_cancelled(cancel) -> Callable[[], bool]:
    if cancel is None:
        return lambda: False
    if hasattr(cancel, "is_set"):
        return cancel.is_set
    if callable(cancel):
        return lambda: bool(cancel())
    raise InputError("cancel", f"{cancel!r} is neither a threading.Event nor a callable")


def _apply(fn, block: Block):
    """``fn(block)`` on a worker, ``fn`` being the scattered process (a future resolved there)."""
    return fn(block)


class _Backend:
    """Where blocks run: ``submit(fn, block) -> future``; ``slots`` blocks at once; ``close()``."""

    def __init__(self, scheduler, workers: int | None) -> None:
        self._close: list[Callable[[], Any]] = []
        self.in_process = True
        if workers is not None and int(workers) < 1:
            raise InputError("workers", f"{workers} must be at least 1")
        default = max(1, min(4, os.cpu_count() or 1))
        if scheduler == "synchronous":
            self._executor: Any = _Inline()
            self.slots = 1
        elif scheduler == "threads":
            self.slots = int(workers) if workers is not None else default
            pool = ThreadPoolExecutor(self.slots, thread_name_prefix="blockwise")
            self._executor = pool
            # Not-started blocks are dropped on the way out; running ones finish.
            self._close.append(lambda: pool.shutdown(wait=True, cancel_futures=True))
        else:
            self.in_process = False
            self._client = self._distributed(scheduler, int(workers) if workers is not None else default)
            self.slots = max(1, sum(self._client.nthreads().values()))

    def _distributed(self, scheduler, workers: int):
        try:
            from distributed import Client, LocalCluster
        except ImportError:  # pragma: no cover - a declared dependency
            raise InputError("scheduler", f"{scheduler!r} needs dask.distributed (pip install distributed)") from None
        if isinstance(scheduler, Client):
            return scheduler
        if scheduler == "processes":
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR)
            client = Client(cluster)
            self._close += [client.close, cluster.close]
            return client
        if isinstance(scheduler, str) and "://" in scheduler:
            try:
                client = Client(scheduler, timeout="10s")
            except (OSError, TimeoutError) as exc:
                raise InputError(scheduler, f"no Dask scheduler answers there ({exc})") from None
            self._close.append(client.close)
            return client
        raise InputError(
            "scheduler",
            f"{scheduler!r} is not one of {LOCAL_SCHEDULERS}, a 'tcp://host:port' address or a dask.distributed Client",
        )

    def submit(self, fn, block: Block):
        if self.in_process:
            return self._executor.submit(fn, block)
        if fn is not getattr(self, "_checked", None):
            _check_travels(fn)
            self._checked = fn
            # Sent to each worker once, not with every block: a process that holds a 10^6-entry mapping
            # (skeletons of a large project) otherwise travels as many times as there are blocks.
            self._fn = self._client.scatter(fn, broadcast=True, hash=False)
        # pure=False: a rerun of the same block must run again, not reuse a result.
        return self._client.submit(_apply, self._fn, block, pure=False)

    def close(self) -> None:
        self._fn = None  # the scattered process: released on a cluster that outlives this run
        for fn in self._close:
            try:
                fn()
            except Exception:  # a cluster that will not close is no reason to lose the result
                pass
        self._close = []


def _check_travels(fn) -> None:
    """Refuse, in one line, work that cannot be sent to Dask workers and back.

    A task whose function fails to serialise never reaches the scheduler, and
    its future never completes: the run would wait forever. A round trip
    (pickle, unpickle, pickle again, as a worker may) finds it at the start.
    """
    import cloudpickle

    try:
        cloudpickle.dumps(cloudpickle.loads(cloudpickle.dumps(fn)))
    except Exception as exc:
        raise InputError("scheduler", f"the block function cannot be sent to Dask workers "
                                      f"({type(exc).__name__}: {exc}); use the threads scheduler") from None


def run_blockwise(
    process: Callable[[Block], Any],
    blocks: BlockGrid | Iterable[Block],
    *,
    scheduler="threads",
    workers: int | None = None,
    ledger: Ledger | str | os.PathLike | None = None,
    progress: Progress | None = None,
    cancel=None,
    collect: Callable[[Block, Any], None] | None = None,
    description: str = "blocks",
) -> RunSummary:
    """Run ``process(block)`` on every block; resume, report progress and stop on request.

    Parameters
    ----------
    process
        Called once per block (not done before) in a worker. It must write
        only inside ``block.write_roi`` and only from what it reads in
        ``block.read_roi``: then the output does not depend on the order of
        blocks or the number of workers. With a chunked output, blocks must
        be whole chunks (two workers writing one chunk would race).
    blocks
        A :class:`~napari_connectome.blockwise.grid.BlockGrid` or any
        iterable of blocks (read lazily, in its order).
    scheduler
        ``"threads"`` (default), ``"synchronous"``, ``"processes"``, a
        ``"tcp://host:port"`` Dask scheduler, or a ``dask.distributed.Client``
        (see the module notes).
    workers
        Threads or processes (default: up to 4, one per CPU); for a cluster,
        its own threads are used.
    ledger
        A :class:`~napari_connectome.blockwise.ledger.Ledger`, or the path of
        one (its signature is the grid's :meth:`BlockGrid.describe` when
        ``blocks`` is a grid). Blocks it records are skipped; each block is
        recorded when its result is back. A ledger given as a path is closed
        at the end; a :class:`Ledger` stays open, the caller's.
    progress
        Started with the number of blocks, advanced once per block (skipped
        ones too), closed at the end. A
        :class:`~napari_connectome.errors.CancelledError` it raises stops the
        run like ``cancel``. To report into a larger piece of work, pass
        :class:`~napari_connectome.progress.PartOf`.
    cancel
        A :class:`threading.Event` or a callable returning True to stop;
        checked between blocks.
    collect
        Called as ``collect(block, result)`` in the calling thread, in block
        order, with what ``process`` returned: for reductions (counts,
        tables). Not with a ledger, since skipped blocks have no result.
    description
        What the progress shows.

    Returns
    -------
    RunSummary

    Raises
    ------
    BlockError
        A block's ``process`` raised: one line with the block's id, box and
        the error (its ``__cause__``). No further block is started; the
        blocks in flight finish, and those done are recorded.
    CancelledError
        ``cancel`` was set or ``progress`` raised it. Blocks in flight finish
        and are recorded; a rerun with the same ledger resumes.
    InputError
        Bad options, or a ledger that cannot be used.
    """
    if collect is not None and ledger is not None:
        raise InputError("collect", "a run with a ledger skips done blocks, which then have no result to collect")
    cancelled = _is_cancelled(cancel)
    progress = progress or NullProgress()
    total = len(blocks) if hasattr(blocks, "__len__") else None
    own_ledger = None
    if ledger is not None and not isinstance(ledger, Ledger):
        signature = blocks.describe() if isinstance(blocks, BlockGrid) else None
        ledger = own_ledger = Ledger(Path(ledger), signature=signature)
    backend = None
    pending: deque[tuple[Block, Any]] = deque()
    counts = {"ran": 0, "skipped": 0}

    def finish(block: Block, future) -> None:
        try:
            result = future.result()
        except Exception as exc:
            raise BlockError(block, exc) from exc
        if ledger is not None:
            ledger.mark_done(block.block_id)
        if collect is not None:
            collect(block, result)
        counts["ran"] += 1
        advance()

    def cancelled_error() -> CancelledError:
        done = counts["ran"] + counts["skipped"]
        kept = "; they are recorded and a rerun resumes" if ledger is not None else ""
        of = f" of {total}" if total is not None else ""
        return CancelledError(f"cancelled by the user after {done}{of} blocks{kept}")

    def advance() -> None:
        # A CancelledError from the progress (its cancel button) goes out as
        # it is: whoever raised it may look for it.
        progress.advance(1)

    def stop_if_cancelled() -> None:
        if cancelled():
            raise cancelled_error()

    try:
        progress.start(total or 0, description)
        backend = _Backend(scheduler, workers)
        window = 1 if scheduler == "synchronous" else 2 * backend.slots
        for block in blocks:
            stop_if_cancelled()
            if ledger is not None and ledger.is_done(block.block_id):
                counts["skipped"] += 1
                advance()
                continue
            pending.append((block, backend.submit(process, block)))
            while len(pending) >= window:
                finish(*pending.popleft())
                stop_if_cancelled()
        while pending:
            finish(*pending.popleft())
            if pending:
                stop_if_cancelled()
    except BaseException:
        _settle(pending, ledger, in_process=backend is not None and backend.in_process)
        raise
    finally:
        try:
            if backend is not None:
                backend.close()
        finally:
            if own_ledger is not None:
                own_ledger.close()
            progress.close()
    return RunSummary(total=total, skipped=counts["skipped"], ran=counts["ran"])


def _settle(pending: deque, ledger: Ledger | None, *, in_process: bool) -> None:
    """After a stop: drop blocks not started, let running ones end, record those that succeeded."""
    while pending:
        block, future = pending.popleft()
        # A thread pool's future that has not started can be dropped; a
        # cluster's is left to finish (it may be running already).
        if in_process and future.cancel():
            continue
        try:
            future.result()
        except BaseException:  # the run already stops for an earlier reason
            continue
        if ledger is not None:
            try:
                ledger.mark_done(block.block_id)
            except InputError:
                return
