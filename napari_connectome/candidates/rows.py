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

from collections.abc import Callable, Sequence

import numpy as np


class RowCache:
    """The rows ``compute(candidates)`` gives, for the latest list, reused by candidate identity.

    Parameters
    ----------
    compute
        ``compute(candidates) -> (len(candidates), width)`` array (or ``(len,)``): rows of candidates not
        seen in the previous call's list.

    Notes
    -----
    Only the latest list is kept (a list made again after an edit shares most of its objects with the
    one before). The same list asked again (an unchanged list, each decision) is recognised by one
    C-level comparison; a list equal by value but of other objects is equal row by row too, since a
    row depends on the candidate alone.
    """

    def __init__(self, compute: Callable[[list], np.ndarray]) -> None:
        self.compute = compute
        self._list: list | None = None
        self._where: dict[int, int] | None = None
        self._rows: np.ndarray | None = None

    def __call__(self, candidates: Sequence) -> np.ndarray:
        """The rows of ``candidates``, in order (read-only: the kept array itself, not a copy).

        At 1.4 M candidates copying the kept features (1.4 M × 26) was 0.2 s of each call, three calls
        an order; nobody changes them in place.
        """
        candidates = list(candidates)
        if self._rows is not None and self._list is not None and candidates == self._list:
            return self._rows
        if self._rows is None or not candidates:
            rows = np.asarray(self.compute(candidates))
        else:
            where = self._where
            if where is None:  # built lazily: an unchanged list never needs it
                where = self._where = {id(c): i for i, c in enumerate(self._list)}
            at = np.fromiter((where.get(id(c), -1) for c in candidates), np.int64, len(candidates))
            rows = np.empty((len(candidates), *self._rows.shape[1:]), dtype=self._rows.dtype)
            hit = at >= 0
            rows[hit] = self._rows[at[hit]]
            new = np.flatnonzero(~hit)
            if new.size:
                rows[new] = self.compute([candidates[i] for i in new.tolist()])
        rows.flags.writeable = False
        if len(candidates) > 1:
            self._list, self._where, self._rows = candidates, None, rows
        return rows

    def clear(self) -> None:
        """Forget the kept rows (the next call computes every row)."""
        self._list = self._where = self._rows = None
