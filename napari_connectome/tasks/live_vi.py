"""Live VI: how far the segmentation now is from a ground truth, after every edit, in about a millisecond.

The contingency table of ground truth against the supervoxels is counted
once (a pass over the volume); after that, VI of any mapping of supervoxels
to segments is a remap of that table, not a pass over voxels. Supervoxels
minted by a split inside one are not in the table, so while such a split is
in effect the figure is that of the undivided supervoxels (``exact`` False).
"""

from __future__ import annotations

import threading

import numpy as np

from napari_connectome.errors import InputError


def groundtruth_table(project, gt):
    """The contingency table of ground truth against the supervoxels (level 0), counted once.

    ``gt`` is a labels URI of the supervoxels' shape and voxel size, or
    ``"project"`` for the project's own ``groundtruth`` input.

    Raises
    ------
    InputError
        No groundtruth input; labels of another shape or voxel size, or not integers.
    """
    from napari_connectome.metrics import contingency_table
    from napari_connectome.rank.simulate import open_groundtruth

    uri = gt
    if isinstance(gt, str) and gt == "project":
        record = project.inputs.get("groundtruth")
        if record is None:
            raise InputError(project.root, "the project has no groundtruth input for live VI")
        uri = record["uri"]
    sv_volume, gt_volume = open_groundtruth(project, uri)
    labels = np.asarray(gt_volume.levels[0].array[...])
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError(uri, f"ground truth labels must be integers, not {labels.dtype}")
    return contingency_table(sv_volume.levels[0].array, labels)


def vi_now(proofreader, table) -> dict:
    """VI of the proofreader's segmentation now: ``vi_split``, ``vi_merge``, ``vi`` (bits), ``exact``."""
    from napari_connectome.metrics import vi_from_table

    split, merge = vi_from_table(table.remap(*proofreader.mapping()))
    return {"vi_split": float(split), "vi_merge": float(merge), "vi": float(split + merge),
            "exact": not proofreader.overlay.active}


class LiveVI:
    """VI of a proofreader's segmentation against a ground-truth table, computed once per edit.

    Parameters
    ----------
    proofreader
        The open Proofreader; its ``version`` moves on every edit.
    table
        From :func:`groundtruth_table`.

    Notes
    -----
    Calling it again before the next edit returns the cached figure. A
    figure computed while an edit landed is returned but not cached (it may
    be of neither version).
    """

    def __init__(self, proofreader, table) -> None:
        self.proofreader = proofreader
        self.table = table
        self._lock = threading.Lock()
        self._cache: tuple[int, dict] | None = None

    def __call__(self) -> dict:
        """``vi_split``, ``vi_merge``, ``vi`` (bits) and ``exact`` of the segmentation now."""
        version = self.proofreader.version
        with self._lock:
            cached = self._cache
        if cached is not None and cached[0] == version:
            return dict(cached[1])
        out = vi_now(self.proofreader, self.table)
        if self.proofreader.version == version:
            with self._lock:
                self._cache = (version, out)
        return dict(out)
