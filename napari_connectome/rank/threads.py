"""One pool of threads for the ranker's compiled work (tree growing, scoring), reset in a forked child.

Both run numba loops that hold no GIL, so threads give real parallelism; neither submits work from
inside a pool thread, so one shared pool cannot deadlock.
"""

from __future__ import annotations

import os

#: Most threads the pool uses (the refit has four fits; scoring slices are many).
MAX_WORKERS = 4
_POOL = None


def _forget() -> None:
    # A forked child inherits the pool object but not its threads: it would wait on them forever.
    global _POOL
    _POOL = None


os.register_at_fork(after_in_child=_forget)


def pool():
    """The shared ``ThreadPoolExecutor``, or None on one core (the caller then runs the work itself)."""
    global _POOL
    workers = min(MAX_WORKERS, os.cpu_count() or 1)
    if workers < 2:
        return None
    if _POOL is None:
        from concurrent.futures import ThreadPoolExecutor

        _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ranker")
    return _POOL
