"""A split computed but not committed: what the panel shows before the proofreader confirms.

Both ways of splitting (a min-cut of the supervoxel graph, a division inside
one supervoxel) end in a :class:`SplitPreview`: the two sides, the links cut,
the voxels a division would move, a one-line ``message`` saying what the
split will do, and a ``problem`` when it would separate nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from napari_connectome.proofread.ops import Effect, Patch
from napari_connectome.proofread.split import cut_problem, preview_message
from napari_connectome.proofread.state import Plan

if TYPE_CHECKING:
    from napari_connectome.proofread.session import Proofreader


@dataclass
class SplitPreview:
    """A split computed but not committed (nothing logged).

    Attributes
    ----------
    segment_id
        The segment the seeds are in.
    source_supervoxels, sink_supervoxels
        Supervoxel ids that end on the sources' / the sinks' side. For a
        split inside a supervoxel, the two new supervoxels (ids it would get)
        are listed, and the divided supervoxel is in neither.
    cut_edges
        ``(K, 2)`` supervoxel id pairs whose links the split removes.
    inside_supervoxel
        True when the seeds all fall in one supervoxel, which is divided by a
        seeded watershed of the boundary signal.
    bbox_nm
        World box (nm) of the divided supervoxel, or None.
    supervoxel
        The supervoxel divided (inside split), else None.
    patch_offset, patch
        Level-0 voxel index and uint8 array (1 = sources' part, 2 = sinks'
        part, 0 = elsewhere) of the division (inside split), else None.
    sources_nm, sinks_nm
        The seeds.
    version
        :attr:`Proofreader.version` when it was computed; :meth:`Proofreader.split`
        recomputes it if the state changed since.
    message
        What the split will do, in one line for the panel (it names the
        supervoxel when both seeds fall in one, which a graph cut cannot
        separate and which is therefore divided inside).
    problem
        Why the split would separate nothing (no link cut, a side empty, the
        segment left in one piece), or None. :meth:`Proofreader.split`
        refuses such a preview unless forced.
    """

    segment_id: int
    source_supervoxels: np.ndarray
    sink_supervoxels: np.ndarray
    cut_edges: np.ndarray
    inside_supervoxel: bool
    bbox_nm: tuple | None
    supervoxel: int | None
    patch_offset: tuple[int, int, int] | None
    patch: np.ndarray | None
    sources_nm: list
    sinks_nm: list
    version: int
    message: str = ""
    problem: str | None = None
    _effect: Effect = field(repr=False, default=None)
    _plan: Plan = field(repr=False, default=None)
    _new_patch: Patch | None = field(repr=False, default=None)
    _proofreader: Proofreader = field(repr=False, default=None)
    _seed_svs: list = field(repr=False, default_factory=list)
    _seed_sides: tuple = field(repr=False, default=((), ()))

    def labels(self, key) -> np.ndarray:
        """Side of every voxel of a level-0 region: 1 = sources, 2 = sinks, 0 = elsewhere.

        ``key`` is a tuple of slices / ints over ``(z, y, x)`` (level 0).
        """
        from napari_connectome.volume.lazy import normalize_key

        pr = self._proofreader
        norm = normalize_key(key, pr._level0_shape)
        sv = pr._reader.supervoxels(0, norm)
        out = np.zeros(sv.shape, dtype=np.uint8)
        src = np.asarray(self.source_supervoxels, dtype=np.uint64)
        snk = np.asarray(self.sink_supervoxels, dtype=np.uint64)
        out[np.isin(sv, src)] = 1
        out[np.isin(sv, snk)] = 2
        if self.patch is not None:
            from napari_connectome.proofread.overlay import _keep_dims

            full, squeeze = _keep_dims(norm)
            idx = [np.arange(k.start, k.stop, k.step) for k in full]
            box = np.zeros([i.size for i in idx], dtype=np.uint8)
            sel, src = [], []
            for c, o, n in zip(idx, self.patch_offset, self.patch.shape, strict=True):
                inside = (c >= o) & (c < o + n)
                sel.append(np.flatnonzero(inside))
                src.append(c[inside] - o)
            box[np.ix_(*sel)] = self.patch[np.ix_(*src)]
            box = box[squeeze]
            out[box > 0] = box[box > 0]
        return out

    def volume(self):
        """The preview as a lazy one-level labels volume (1 = sources, 2 = sinks)."""
        from napari_connectome.volume.lazy import _LazyBase
        from napari_connectome.volume.model import Level, MultiscaleVolume

        pr = self._proofreader
        preview = self

        class _PreviewArray(_LazyBase):
            def __init__(self) -> None:
                super().__init__(source="split preview")
                self.shape = pr._level0_shape
                self.dtype = np.dtype(np.uint8)
                self.chunks = pr._sv_volume.levels[0].chunks

            def __getitem__(self, key):
                return preview.labels(key)

        lv0 = pr._sv_volume.levels[0]
        return MultiscaleVolume(
            levels=[Level(_PreviewArray(), lv0.voxel_size, lv0.offset, lv0.axes)],
            kind="labels", source="split preview", format="proofread", name="split preview",
        )


def describe_split(cut_edges, source_ids, sink_ids, plan: Plan, *, inside: bool,
              supervoxel: int | None) -> tuple[str | None, str]:
    """``(problem, message)`` of a computed split (see :class:`SplitPreview`)."""
    problem = cut_problem(cut_edges=cut_edges, source_supervoxels=source_ids, sink_supervoxels=sink_ids,
                          n_pieces=len(plan.components), inside=inside)
    message = preview_message(inside=inside, supervoxel=supervoxel, n_cut=len(cut_edges),
                              n_sources=len(source_ids), n_sinks=len(sink_ids), problem=problem)
    return problem, message
