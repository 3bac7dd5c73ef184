"""Fewer garbage collections while a loop makes and drops many small objects.

CPython (3.11) collects its youngest generation each time 700 more container
objects have been made than freed, walking every young container, among them
any fresh list of all the candidates. An accepted edit in the simulated proofreader makes about
2,000 candidates (an object and a dict of features each) and drops as many:
about 15 collections a decision. On the 250³ bench (``bench_decisions.py``)
they were 1.5 s of 100 decisions' ~9 s; with the threshold at 50,000, 0.13 s.

Only reference *cycles* wait longer for collection (everything else is freed
when its last reference goes), so memory grows by at most the cyclic garbage of
50,000 allocations. The setting is the interpreter's, shared by every thread:
it is raised while at least one :func:`fewer_collections` block runs and put
back when the last one ends.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: New container objects between two collections of the youngest generation inside :func:`fewer_collections`.
YOUNG_THRESHOLD = 50_000

_lock = threading.Lock()
_depth = 0
_saved: tuple[int, ...] | None = None


@contextmanager
def fewer_collections(young: int = YOUNG_THRESHOLD) -> Iterator[None]:
    """Collect the youngest generation after ``young`` (at least) new containers, not 700.

    Nested and concurrent blocks are counted: the interpreter's thresholds are raised by the first
    and restored by the last to end, whichever thread runs it. A threshold already higher is kept.
    """
    global _depth, _saved
    young = int(young)
    if young < 1:
        raise ValueError(f"young must be ≥ 1, got {young}")
    with _lock:
        if _depth == 0:
            _saved = gc.get_threshold()
        _depth += 1
        current = gc.get_threshold()
        if current[0] < young:
            gc.set_threshold(young, *current[1:])
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                gc.set_threshold(*_saved)
                _saved = None
