"""Per-candidate rows kept by identity, so that ranking a list again costs only its new candidates.

A candidate is not changed after it is found, and
:class:`~napari_connectome.candidates.CandidateCache` hands back the *same
objects* for the candidates an edit did not touch. Whatever is derived from a
candidate alone (its feature row, its impact, the answer ground truth gives)
can therefore be kept per object and looked up instead of derived again: at
10^6 candidates the Python loop over every candidate, each decision, was the
cost of a decision, not the model.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np

#: Serial numbers of candidate objects, in the order they are first looked up (never reused).
_SERIALS = itertools.count()
#: (a private copy of the latest list looked up, its serials): every cache asked about one list shares them.
_LATEST: tuple[list, np.ndarray] = ([], np.empty(0, np.int64))


def _serial(c) -> int:
    d = c.__dict__
    s = d.get("_row_serial")
    if s is None:
        s = d["_row_serial"] = next(_SERIALS)
    return s


def take_serials(n: int) -> list[int]:
    """``n`` serial numbers not given before, for a maker that keeps them on new candidates itself.

    Drawn one by one from the same counter (each draw is atomic), so numbers taken by another thread
    meanwhile are never given twice; in C, ~20 ns each.
    """
    return list(itertools.islice(_SERIALS, n))


def serials(candidates: list) -> np.ndarray:
    """Each candidate object's serial number (read-only), given once per object, kept on it (not a field).

    A list equal to the latest one looked up (the same objects, one C-level comparison) reuses its
    serials: the ranker's features, the strategy's columns and the simulator's answers all look up the
    same list after an edit, and one Python pass over 1.4 M candidates is ~0.5 s.
    """
    global _LATEST
    latest, numbers = _LATEST
    if len(candidates) == len(latest) and candidates == latest:
        return numbers
    numbers = np.fromiter((_serial(c) for c in candidates), np.int64, len(candidates))
    numbers.flags.writeable = False
    _LATEST = (list(candidates), numbers)
    return numbers


def assign_serials(candidates: Sequence) -> np.ndarray:
    """Each candidate's serial number (given now where it has none), without a lookup of the list.

    For a maker of lists that keeps its candidates' serials itself (:class:`CandidateCache`) and
    tells them with the list it hands out (:func:`remember`).
    """
    numbers = [c.__dict__.get("_row_serial") for c in candidates]
    if None in numbers:  # some not made with their serial (take_serials): give the missing ones now
        numbers = [_serial(c) if n is None else n for c, n in zip(candidates, numbers, strict=True)]
    return np.array(numbers, np.int64).reshape(len(candidates))


def remember(candidates: Sequence, numbers: np.ndarray) -> None:
    """Make ``candidates`` the latest list looked up, with its serials ``numbers`` (from :func:`assign_serials`).

    After an edit :class:`CandidateCache` knows the serials of the list it hands out (its kept
    candidates' and its new ones'): the first cache asked about that list then needs no pass over
    its objects (~7 ms an edit at 16,000 candidates, ~0.5 s at 1.4 M).
    """
    global _LATEST
    numbers = np.asarray(numbers, np.int64)
    if numbers.shape != (len(candidates),):
        raise ValueError(f"{numbers.shape[0] if numbers.ndim else 0} serials for {len(candidates)} candidates")
    numbers = numbers.copy()
    numbers.flags.writeable = False
    _LATEST = (list(candidates), numbers)


class RowCache:
    """The rows ``compute(candidates)`` gives, kept per candidate object and looked up by its serial.

    Parameters
    ----------
    compute
        ``compute(candidates, *aligned) -> (len(candidates), width)`` array (or ``(len,)``): rows of
        candidates this cache has not seen; ``aligned`` are the arrays given with the list (see
        :meth:`__call__`), cut to those candidates.

    Notes
    -----
    Rows are kept in a store indexed through each candidate object's serial number (:func:`serials`),
    so a list made again after an edit costs its new candidates' rows and one gather, not a dictionary
    of the previous list (at 1.4 M candidates that dictionary and the lookup through it were ~1.7 s a
    cache, four caches an edit). The store is compacted to the latest list's rows once it holds twice
    as many. The same list asked again (each decision) is recognised by one C-level comparison; a list
    equal by value but of other objects is equal row by row too, since a row depends on the candidate
    alone. :meth:`indexed` hands out the store and each candidate's slot in it instead of the gathered
    rows, for a reader that goes through every row once.
    """

    def __init__(self, compute: Callable[[list], np.ndarray]) -> None:
        self.compute = compute
        self.clear()

    def __call__(self, candidates: Sequence, *aligned: np.ndarray) -> np.ndarray:
        """The rows of ``candidates``, in order (read-only: the kept array itself, not a copy).

        ``aligned``: arrays with one row per candidate that ``compute`` derives new rows from (another
        cache's rows of the same list), so that it need not compute them again.

        At 1.4 M candidates copying the kept features (1.4 M × 26) was 0.2 s of each call, three calls
        an order; nobody changes them in place.
        """
        candidates = list(candidates)
        same = self._list is not None and candidates == self._list
        if same and self._rows is not None:
            return self._rows
        if not candidates:
            return self._no_rows(aligned)
        slots = self._placed(candidates, aligned)  # (makes the store on a first call)
        rows = self._store[slots]
        rows.flags.writeable = False
        if self._keeps(candidates, same):
            self._rows = rows
        return rows

    def indexed(self, candidates: Sequence) -> tuple[np.ndarray, np.ndarray]:
        """``(store, slots)``: the kept rows and where each candidate's row is (``store[slots]`` is
        :meth:`__call__`'s answer), without gathering them.

        For a reader that goes through the rows once (the ranker's trees): at 1.4 M candidates the
        gathered feature matrix (1.4 M × 28, 305 MB, made in new memory) was ~0.5 s of each decision
        that followed an edit. Both arrays are read-only; a later call that adds rows may move the
        store, not these.
        """
        candidates = list(candidates)
        same = self._list is not None and candidates == self._list
        if same and self._list_slots is not None:
            return self._list_slots
        if not candidates:
            return self._no_rows(()), np.empty(0, np.int64)
        slots = self._placed(candidates, ())
        store = self._store[: self._used]
        store.flags.writeable = False
        slots.flags.writeable = False
        if self._keeps(candidates, same):
            self._list_slots = (store, slots)
        return store, slots

    def rows_of(self, candidates: Sequence) -> np.ndarray:
        """The rows of a few ``candidates`` (computed where new), without taking them for the latest list.

        Their serials are read off the objects: :func:`serials` would make them the latest list looked
        up, and the next cache asked about the whole list would read every object's serial again.
        """
        candidates = list(candidates)
        if not candidates:
            return self._no_rows(())
        slots = self._slots(candidates, assign_serials(candidates), ())  # (makes the store on a first call)
        return self._store[slots]

    def _no_rows(self, aligned) -> np.ndarray:
        """The rows of an empty list, read-only (``compute`` says how many columns)."""
        rows = np.asarray(self.compute([], *aligned))
        rows.flags.writeable = False
        return rows

    def _placed(self, candidates: list, aligned) -> np.ndarray:
        """The slots of a whole list (rows computed where new); the store compacted to it once it holds
        twice as many rows."""
        numbers = serials(candidates)
        slots = self._slots(candidates, numbers, aligned)
        if len(candidates) > 1 and self._used > 2 * len(candidates) + 1024:
            self._compact(numbers, slots)
            slots = self._slot[numbers]
        return slots

    def _keeps(self, candidates: list, same: bool) -> bool:
        """Whether what is made for this list is kept for it, the list becoming the latest if new.

        A list of one is not kept: the ranker asks about each answer's candidate alone, between two
        orders of the whole list.
        """
        if len(candidates) < 2:
            return False
        if not same:
            self._list, self._rows, self._list_slots = candidates, None, None
        return True

    def _slots(self, candidates: list, numbers: np.ndarray, aligned) -> np.ndarray:
        """Each candidate's slot in the store, computing and storing the rows of those it has not seen."""
        if numbers.max() >= self._slot.size:
            grown = np.full(max(2 * self._slot.size, int(numbers.max()) + 1), -1, np.int64)
            grown[: self._slot.size] = self._slot
            self._slot = grown
        slot = self._slot[numbers]
        new = np.flatnonzero(slot < 0)
        if new.size:
            # A list may hold one object twice: compute and store each new object once.
            fresh = new[np.unique(numbers[new], return_index=True)[1]]
            computed = np.asarray(self.compute([candidates[i] for i in fresh.tolist()],
                                               *(np.asarray(a)[fresh] for a in aligned)))
            start = self._used
            self._append(computed)
            self._slot[numbers[fresh]] = np.arange(start, start + fresh.size)
            slot = self._slot[numbers]
        return slot

    def _append(self, computed: np.ndarray) -> None:
        if self._store is not None and np.result_type(self._store.dtype, computed.dtype) != self._store.dtype:
            self._store = self._store.astype(np.result_type(self._store.dtype, computed.dtype))
        if self._store is None:
            self._store = np.empty((max(2 * len(computed), 1024), *computed.shape[1:]), dtype=computed.dtype)
        elif self._used + len(computed) > len(self._store):
            grown = np.empty((max(2 * len(self._store), self._used + len(computed)), *self._store.shape[1:]),
                             dtype=self._store.dtype)
            grown[: self._used] = self._store[: self._used]
            self._store = grown
        self._store[self._used: self._used + len(computed)] = computed
        self._used += len(computed)

    def _compact(self, numbers: np.ndarray, slots: np.ndarray) -> None:
        """Keep only the latest list's rows (the candidates an edit removed are not asked about again).

        ``numbers``, ``slots``: the list's serials and their slots now. Arrays handed out before keep
        the old store (the list's rows, the ``indexed`` view): they stay valid.
        """
        unique, first = np.unique(numbers, return_index=True)
        store = self._store[slots[first]]
        self._slot[:] = -1
        self._slot[unique] = np.arange(unique.size)
        self._store = store
        self._used = unique.size
        self._list_slots = None

    def clear(self) -> None:
        """Forget the kept rows (the next call computes every row)."""
        self._list: list | None = None
        self._rows: np.ndarray | None = None
        # (store, slots) of the latest list, when :meth:`indexed` was asked about it
        self._list_slots: tuple[np.ndarray, np.ndarray] | None = None
        self._store: np.ndarray | None = None
        self._used = 0
        self._slot = np.full(1024, -1, np.int64)
