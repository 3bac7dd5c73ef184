"""Segment colours that follow the edits, so a body keeps its colour through merges, splits and undos.

A colour picked from the segment id alone changes on every edit (an edit
retires ids and mints new ones), so the body a proofreader was following
turns another colour after each merge, split or undo. :class:`SegmentColours`
remembers the colour given to each id and hands it on:

- a new id made by joining segments (a merge) takes the colour of the
  largest of them (voxels);
- of the ids made by dividing one segment (a split, also inside a
  supervoxel), the largest keeps the segment's colour and each other part
  gets a colour far from it on the palette;
- a segment with exactly the supervoxels of an earlier one (an undo or redo
  brings those back, under a new id) gets the earlier one's colour: colours
  are also remembered by member set, and never forgotten.

A "Cut here?" view asks :meth:`SegmentColours.split_preview` for the two
sides' colours with the same rule, so the cut looks after a *yes* as it did
in the question. An id seen for the first time gets a palette colour chosen
by its id (the same in every session).
"""

from __future__ import annotations

import hashlib
import threading

import numpy as np

Rgba = tuple[float, float, float, float]

#: Colours readable over grey EM, ordered so that entry i and entry i + 6 are far apart.
PALETTE: tuple[Rgba, ...] = (
    (1.0, 0.55, 0.0, 1.0),   # orange
    (0.0, 0.75, 1.0, 1.0),   # sky blue
    (0.9, 0.2, 0.9, 1.0),    # magenta
    (0.3, 0.9, 0.2, 1.0),    # green
    (1.0, 0.9, 0.1, 1.0),    # yellow
    (0.95, 0.25, 0.25, 1.0),  # red
    (0.3, 0.45, 1.0, 1.0),   # blue
    (1.0, 0.6, 0.8, 1.0),    # pink
    (0.7, 1.0, 0.2, 1.0),    # lime
    (0.6, 0.35, 1.0, 1.0),   # violet
    (0.0, 1.0, 0.85, 1.0),   # cyan
    (1.0, 0.75, 0.3, 1.0),   # amber
)


def id_colour_index(segment_id: int) -> int:
    """Palette index of an id seen for the first time (a multiplicative hash: neighbouring ids differ)."""
    return int((int(segment_id) * 2654435761) % (1 << 32)) % len(PALETTE)


def segment_size(pr, segment_id: int) -> int:
    """Voxels of a segment now (sum of its supervoxels' sizes; unknown sizes count 0)."""
    svs = np.asarray(pr.segment_supervoxels(int(segment_id))).reshape(-1)
    return int(sum(pr.supervoxel_size(int(sv)) or 0 for sv in svs))


def members_key(pr, segment_id: int) -> str:
    """A digest of a segment's supervoxel set (the same set, under any id, gives the same key)."""
    svs = np.sort(np.asarray(pr.segment_supervoxels(int(segment_id)), dtype="<u8").reshape(-1))
    return hashlib.blake2b(svs.tobytes(), digest_size=12).hexdigest()


def _supervoxels_size(pr, supervoxels) -> int:
    return int(sum(pr.supervoxel_size(int(sv)) or 0 for sv in np.asarray(supervoxels).reshape(-1)))


class SegmentColours:
    """Segment id → palette index, handed on through edits (see the module notes).

    Call :meth:`follow` for every committed edit, in order
    (``proofreader.add_listener(lambda r: colours.follow(proofreader, r))``).
    Safe to read from other threads (a prefetch worker) while it follows.
    """

    def __init__(self) -> None:
        self._index: dict[int, int] = {}
        self._size: dict[int, int] = {}
        self._by_members: dict[str, int] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------ reading
    def index(self, segment_id: int) -> int:
        """The palette index of ``segment_id`` (given from its id, and remembered, if new)."""
        seg = int(segment_id)
        with self._lock:
            return self._index.setdefault(seg, id_colour_index(seg))

    def indices(self, segment_ids) -> np.ndarray:
        """Palette indices of many distinct ids at once (a whole segmentation's colormap); remembers nothing new."""
        ids = np.asarray(segment_ids, dtype=np.uint64).reshape(-1)
        # id_colour_index vectorised: uint64 products wrap modulo 2**64, a multiple of 2**32.
        out = ((ids * np.uint64(2654435761)) % np.uint64(1 << 32) % np.uint64(len(PALETTE))).astype(np.int64)
        with self._lock:
            keys = np.fromiter(self._index.keys(), dtype=np.uint64, count=len(self._index))
            values = np.fromiter(self._index.values(), dtype=np.int64, count=len(self._index))
        if keys.size and ids.size:
            order = np.argsort(ids, kind="stable")
            ranked = ids[order]
            pos = np.minimum(np.searchsorted(ranked, keys), ids.size - 1)
            hit = ranked[pos] == keys
            out[order[pos[hit]]] = values[hit]
        return out

    def colour(self, segment_id: int) -> Rgba:
        """RGBA (0..1) of ``segment_id``."""
        return PALETTE[self.index(segment_id)]

    def for_segments(self, segments, pr=None) -> dict[int, Rgba]:
        """RGBA per segment, distinct within ``segments``; with ``pr``, their sizes are noted too.

        Two segments of one task that share a palette colour by chance are
        told apart on screen: the later one is drawn in the contrasting
        colour (for this picture only; its remembered colour is unchanged).
        """
        if pr is not None:
            self.note(pr, segments)
        out: dict[int, Rgba] = {}
        used: set[int] = set()
        for seg in segments:
            i = self.index(seg)
            k = 0
            while i in used and k < len(PALETTE):
                i = _contrast(self.index(seg), k)
                k += 1
            used.add(i)
            out[int(seg)] = PALETTE[i]
        return out

    def note(self, pr, segments) -> None:
        """Note the size and supervoxel set of ``segments`` before an edit may retire them.

        An edit's listener sees the segments it made, not the ones it retired;
        noted here, a merge gives the larger one's colour to the result and an
        undo brings each part back in its own colour.
        """
        for seg in segments:
            with self._lock:
                noted = int(seg) in self._size
            if noted:
                continue
            try:
                size, key = segment_size(pr, seg), members_key(pr, seg)
            except Exception:  # edited away meanwhile: nothing to note
                continue
            index = self.index(seg)
            with self._lock:
                self._size[int(seg)] = size
                self._by_members.setdefault(key, index)

    def remember_size(self, segment_id: int, voxels: int) -> None:
        """Note a segment's size (a merge later gives the larger one's colour to the result)."""
        with self._lock:
            self._size[int(segment_id)] = int(voxels)

    def split_preview(self, pr, segment_id: int, source_svs, sink_svs) -> tuple[Rgba, Rgba]:
        """Colours of the two sides of a proposed cut of ``segment_id``, as :meth:`follow` would give them."""
        seg = int(segment_id)
        parent = self.index(seg)
        a, b = _supervoxels_size(pr, source_svs), _supervoxels_size(pr, sink_svs)
        self.remember_size(seg, a + b)
        other = PALETTE[_contrast(parent, 0)]
        return (PALETTE[parent], other) if a >= b else (other, PALETTE[parent])

    # ------------------------------------------------------------ following edits
    def follow(self, pr, result) -> None:
        """Hand colours on after the edit ``result`` (an :class:`~napari_connectome.proofread.EditResult`)."""
        before = [int(s) for s in result.before_segments]
        after = [int(s) for s in result.after_segments]
        with self._lock:
            new = [s for s in after if s not in self._index]
        if not new or not before:
            return  # every id made has a colour already, or nothing was joined or cut
        sizes, keys = {}, {}
        for seg in after:
            try:
                sizes[seg], keys[seg] = segment_size(pr, seg), members_key(pr, seg)
            except Exception:  # retired again by a later edit already: it no longer matters
                sizes[seg] = 0
        with self._lock:
            for seg, n in sizes.items():
                self._size[seg] = n
            # A member set seen before (an undo or redo) gets its colour back.
            for seg in list(new):
                if seg in keys and keys[seg] in self._by_members:
                    self._index[seg] = self._by_members[keys[seg]]
                    new.remove(seg)
            self._follow_rule(before, after, new, sizes)
            for seg, key in keys.items():
                if seg in self._index:
                    self._by_members.setdefault(key, self._index[seg])

    def _follow_rule(self, before: list[int], after: list[int], new: list[int], sizes: dict[int, int]) -> None:
        """The merge / split rule of the module notes, for the ``new`` ids (lock held)."""
        if not new:
            return
        if len(before) >= len(after):
            # Joined: the largest part brings its colour. The parts are gone now, so their sizes
            # are the ones noted earlier; one part not noted is the result less the others.
            known = {s: self._size.get(s, -1) for s in before}
            missing = [s for s, v in known.items() if v < 0]
            if len(after) == 1 and len(missing) == 1:
                known[missing[0]] = max(0, sizes[after[0]] - sum(v for v in known.values() if v >= 0))
            donor = max(before, key=lambda s: known[s])  # none noted: the first part (ties keep order)
            colour = self._index.setdefault(donor, id_colour_index(donor))
            for seg in new:
                self._index[seg] = colour
            return
        # Divided: the largest new part keeps the colour, the others contrast with it.
        parent = before[0]
        colour = self._index.setdefault(parent, id_colour_index(parent))
        ranked = sorted(after, key=lambda s: -sizes[s])
        k = 0
        for seg in ranked:
            if seg not in new:
                continue
            if seg == ranked[0]:
                self._index[seg] = colour
            else:
                self._index[seg] = _contrast(colour, k)
                k += 1


def _contrast(index: int, k: int) -> int:
    """The ``k``-th palette index far from ``index`` (half the palette away, then its neighbours)."""
    n = len(PALETTE)
    return (index + n // 2 + k) % n
