"""The connectome of a project while it is proofread: synapses follow every merge, split, undo and redo.

Each synapse row is anchored to the *supervoxel* under its pre point and the
one under its post point; a row's neurons are the segments those supervoxels
belong to now. An edit reports the segments it retired (and, for a split
inside a supervoxel, the box whose supervoxels changed), so only the rows
indexed under those segments — or lying in that box — are read again: the
work follows the edit, not the volume, and the result always equals reading
every row afresh (:meth:`LiveConnectome.recompute`, the property the tests
check).

A row on background (no supervoxel at one end) or inside one neuron at both
ends is kept, so that a later edit can give it a connection, but counts in no
connection.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from napari_connectome.errors import InputError


@dataclass(frozen=True)
class Connections:
    """Connections between neurons: one row per ordered (pre, post) pair, sorted.

    Attributes
    ----------
    pre, post
        Neuron (segment) ids.
    count
        Synapse rows (pre→post connections) between them.
    score
        Summed score of those rows.
    """

    pre: np.ndarray
    post: np.ndarray
    count: np.ndarray
    score: np.ndarray

    def __len__(self) -> int:
        return int(self.pre.size)

    def as_dict(self) -> dict[tuple[int, int], tuple[int, float]]:
        return {(int(a), int(b)): (int(c), float(s))
                for a, b, c, s in zip(self.pre, self.post, self.count, self.score, strict=True)}


class LiveConnectome:
    """Synapse rows of a project and the connections between its current neurons.

    Parameters
    ----------
    proofreader
        A :class:`~napari_connectome.proofread.Proofreader` (anything with
        ``supervoxel_at(point_nm)``, ``segment_of(sv)`` and
        ``add_listener(callback)``).
    pre, post
        ``(n, 3)`` world points in nm.
    score
        ``(n,)`` per row (default 1).
    listen
        Follow the proofreader's edits from now on (disconnect with :meth:`close`).
    source
        Named in errors (the synapse table).
    """

    def __init__(self, proofreader, pre, post, score=None, *, listen: bool = True,
                 source: str = "synapses") -> None:
        self.pr = proofreader
        self.pre = np.asarray(pre, dtype=np.float64).reshape(-1, 3)
        self.post = np.asarray(post, dtype=np.float64).reshape(-1, 3)
        n = len(self.pre)
        if len(self.post) != n:
            raise InputError(source, f"{n} pre points but {len(self.post)} post points")
        self.score = np.ones(n, dtype=np.float64) if score is None else np.asarray(score, dtype=np.float64)
        if self.score.shape != (n,):
            raise InputError(source, f"{n} rows but {self.score.size} scores")
        self.source = source
        # Per row, per end: the supervoxel under the point and its segment now.
        self.sv = np.zeros((n, 2), dtype=np.uint64)
        self.neuron = np.zeros((n, 2), dtype=np.uint64)
        self._rows_of: dict[int, set[int]] = defaultdict(set)
        self._pairs: dict[tuple[int, int], set[int]] = {}
        self._connection = None
        # Called with the (pre, post) pairs an edit changed; set before listening, as an edit may come at once.
        self.changed: list[Callable[[set[tuple[int, int]]], None]] = []
        for k in range(n):
            self._read_supervoxels(k)
            self._attach(k)
        if listen:
            self._connection = proofreader.add_listener(self.on_edit)

    # -------------------------------------------------------------- reading
    def _read_supervoxels(self, k: int) -> None:
        try:
            self.sv[k, 0] = self.pr.supervoxel_at(self.pre[k])
            self.sv[k, 1] = self.pr.supervoxel_at(self.post[k])
        except InputError as exc:
            raise InputError(self.source, f"row {k}: {exc}") from None

    def _segment(self, sv: int) -> int:
        return int(self.pr.segment_of(sv)) if sv else 0

    def _attach(self, k: int) -> None:
        a, b = self._segment(int(self.sv[k, 0])), self._segment(int(self.sv[k, 1]))
        self.neuron[k] = (a, b)
        for s in (a, b):
            if s:
                self._rows_of[s].add(k)
        if a and b and a != b:
            self._pairs.setdefault((a, b), set()).add(k)

    def _detach(self, k: int) -> None:
        a, b = (int(v) for v in self.neuron[k])
        for s in (a, b):
            rows = self._rows_of.get(s)
            if rows is not None:
                rows.discard(k)
                if not rows:
                    del self._rows_of[s]
        if a and b and a != b:
            rows = self._pairs[(a, b)]
            rows.discard(k)
            if not rows:
                del self._pairs[(a, b)]

    # ---------------------------------------------------------------- edits
    def on_edit(self, result) -> set[tuple[int, int]]:
        """Bring the rows an edit touched up to date; returns the (pre, post) pairs whose counts changed."""
        rows: set[int] = set()
        for s in result.before_segments:
            rows |= self._rows_of.get(int(s), set())
        box = getattr(result, "bbox_nm", None)
        reread = np.zeros(len(self.pre), dtype=bool)
        if box is not None:
            lo, hi = np.asarray(box[0]), np.asarray(box[1])
            for points in (self.pre, self.post):
                reread |= np.all((points >= lo) & (points <= hi), axis=1)
            rows |= set(np.flatnonzero(reread).tolist())
        pairs: set[tuple[int, int]] = set()
        for k in sorted(rows):
            pairs.add((int(self.neuron[k, 0]), int(self.neuron[k, 1])))
            self._detach(k)
            if reread[k]:
                self._read_supervoxels(k)
            self._attach(k)
            pairs.add((int(self.neuron[k, 0]), int(self.neuron[k, 1])))
        for callback in list(self.changed):
            callback(pairs)
        return pairs

    def close(self) -> None:
        """Stop following the proofreader's edits."""
        if self._connection is not None:
            self._connection.disconnect()
            self._connection = None

    # -------------------------------------------------------------- answers
    def connections(self) -> Connections:
        """Every connection now, sorted by (pre, post)."""
        return _connections(self._pairs, self.score)

    def recompute(self) -> Connections:
        """The connections read afresh from every row (what :meth:`connections` must always equal)."""
        pairs: dict[tuple[int, int], set[int]] = {}
        for k in range(len(self.pre)):
            a = self._segment(int(self.pr.supervoxel_at(self.pre[k])))
            b = self._segment(int(self.pr.supervoxel_at(self.post[k])))
            if a and b and a != b:
                pairs.setdefault((a, b), set()).add(k)
        return _connections(pairs, self.score)

    def rows_of(self, neuron: int) -> np.ndarray:
        """Rows with ``neuron`` at either end (sorted)."""
        return np.asarray(sorted(self._rows_of.get(int(neuron), ())), dtype=np.int64)


def _connections(pairs: dict[tuple[int, int], set[int]], score: np.ndarray) -> Connections:
    keys = sorted(pairs)
    # Scores summed over the rows in row order: the same bits however the rows came and went.
    return Connections(pre=np.asarray([k[0] for k in keys], dtype=np.uint64),
                       post=np.asarray([k[1] for k in keys], dtype=np.uint64),
                       count=np.asarray([len(pairs[k]) for k in keys], dtype=np.int64),
                       score=np.asarray([float(np.sum(score[sorted(pairs[k])])) for k in keys], dtype=np.float64))
