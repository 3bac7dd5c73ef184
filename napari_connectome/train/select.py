"""Choosing a checkpoint, its supervoxels and its threshold on held-out training data only.

The held-out part is a box of the training volume that the training loop
never drew labels from (``x >= holdout_x``). For a network, the whole
training volume is predicted (the held-out box gets real context), the box
is cropped, supervoxels are made and our region graph's merge tree is swept
over thresholds; the score is the lowest VI split + merge over the sweep.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_connectome.inference import predict_affinities, predict_affinities_flipped
from napari_connectome.segment import (
    PostProcess,
    boundary_from_affinities,
    merge_tree,
    sweep_thresholds,
)
from napari_connectome.train.loop import network_from_checkpoint

THRESHOLDS = np.round(np.arange(0.0, 1.0 + 1e-9, 0.01), 6)

#: The steepest-ascent candidates: the supervoxels ``segment`` makes block-wise (exact in blocks).
ASCENT_CANDIDATES: tuple[PostProcess, ...] = tuple(
    PostProcess("ascent", threshold=t, sigma=s, boundary_weight=w)
    for t in (0.3, 0.5, 0.7) for s in (0.0, 1.0) for w in (0.0, 10.0))

#: Post-processing candidates compared on the held-out box.
CANDIDATES: tuple[PostProcess, ...] = (
    *ASCENT_CANDIDATES,
    *(PostProcess("watershed", threshold=t, sigma=s) for t in (0.3, 0.5, 0.7) for s in (0.0, 1.0)),
    # (0, 1): the mutex watershed paper's weights (short links attract with aff, long ones repel with 1 - aff)
    *(PostProcess("mutex", bias_short=s, bias_long=b) for s, b in ((0.5, 0.5), (0.5, 0.7), (0.5, 0.9), (0.0, 1.0))),
)


@dataclass
class HeldOutScore:
    """Best point of a threshold sweep on held-out data."""

    postprocess: PostProcess
    threshold: float
    vi_split: float
    vi_merge: float
    arand: float
    n_supervoxels: int

    @property
    def vi(self) -> float:
        """VI split + merge."""
        return self.vi_split + self.vi_merge

    def to_dict(self) -> dict:
        """Plain dict (JSON- and weights_only-safe)."""
        return {"postprocess": self.postprocess.to_dict(), "threshold": float(self.threshold),
                "vi_split": float(self.vi_split), "vi_merge": float(self.vi_merge), "vi": float(self.vi),
                "arand": float(self.arand), "n_supervoxels": int(self.n_supervoxels)}


def score_affinities(affinities: np.ndarray, offsets, gt: np.ndarray, postprocess: PostProcess,
                     thresholds=THRESHOLDS, *, voxel_size=(1.0, 1.0, 1.0)) -> HeldOutScore:
    """Supervoxels + merge tree of ``affinities``; the threshold with the lowest VI against ``gt``."""
    boundary = boundary_from_affinities(affinities, offsets)
    sv = postprocess.supervoxels(affinities, offsets, boundary, voxel_size=voxel_size)
    curve = sweep_thresholds(merge_tree(sv, boundary), sv, gt, thresholds)
    i = int(np.argmin(curve[:, 0] + curve[:, 1]))
    return HeldOutScore(postprocess, float(thresholds[i]), float(curve[i, 0]), float(curve[i, 1]),
                        float(curve[i, 2]), int(sv.max()))


def heldout_affinities(model, raw: np.ndarray, holdout_x: int, *, flip_average: bool = False) -> np.ndarray:
    """Affinities of the held-out box (whole volume predicted, then cropped)."""
    predict = predict_affinities_flipped if flip_average else predict_affinities
    return predict(raw, model)[..., holdout_x:]


def select_for_segment(model, raw: np.ndarray, gt_heldout: np.ndarray, *, holdout_x: int,
                       voxel_size=(1.0, 1.0, 1.0), tolerance: float = 0.01,
                       log: Callable[[str], None] = print) -> dict:
    """The block-wise supervoxel options and agglomeration threshold for ``segment``, chosen on the held-out box.

    ``segment`` predicts without flip averaging and makes steepest-ascent
    supervoxels, so those are what is scored: every one of
    :data:`ASCENT_CANDIDATES`. Among the candidates within ``tolerance`` of
    the lowest held-out VI, the one with the fewest supervoxels wins: the
    same quality within the noise of one held-out box, and a smaller graph
    (faster stages, fewer pieces on screen).

    Returns
    -------
    dict
        ``postprocess``, ``threshold`` and the held-out figures (JSON-ready), plus every candidate's.
    """
    aff = heldout_affinities(model, raw, holdout_x)
    scores = []
    for pp in ASCENT_CANDIDATES:
        s = score_affinities(aff, model.config.offsets, gt_heldout, pp, voxel_size=voxel_size)
        log(f"  segment {pp}: {s.vi_split:.3f} + {s.vi_merge:.3f} = {s.vi:.3f} at T {s.threshold:.2f} "
            f"({s.n_supervoxels} sv)")
        scores.append(s)
    lowest = min(s.vi for s in scores)
    best = min((s for s in scores if s.vi <= lowest + tolerance), key=lambda s: (s.n_supervoxels, s.vi))
    return {**best.to_dict(), "holdout": f"x >= {holdout_x}", "flip_average": False, "tolerance": tolerance,
            "candidates": [s.to_dict() for s in scores]}


def export_best(run: str | Path, raw: np.ndarray, gt: np.ndarray, *, holdout_x: int, every: int, out: str | Path,
                data_name: str, seed: int, voxel_size=(1.0, 1.0, 1.0),
                log: Callable[[str], None] = print) -> dict:
    """Pick the checkpoint, then the post-processing, on the held-out box; write the network.

    Checkpoints (every ``every`` iterations) are ranked by held-out VI with one
    fixed post-processing (watershed at boundary 0.5, distance smoothed by 1
    voxel); the best one is then scored with every one of :data:`CANDIDATES`,
    with and without flip averaging at inference
    (:func:`~napari_connectome.inference.predict_affinities_flipped`), and the
    best combination and its threshold go into the written file's metadata
    (with all the held-out figures).
    """
    from napari_connectome_models.nets.unet import n_parameters, save_network

    from napari_connectome.train.loop import _checkpoints

    gt_h = gt[..., holdout_x:]
    default = PostProcess("watershed", threshold=0.5, sigma=1.0)
    ranked = []
    for path in _checkpoints(Path(run)):
        it = int(path.stem.split("-")[1])
        if it % every:
            continue
        model = network_from_checkpoint(path)
        s = score_affinities(heldout_affinities(model, raw, holdout_x), model.config.offsets, gt_h, default)
        log(f"{path.name}: held-out VI {s.vi_split:.3f} + {s.vi_merge:.3f} = {s.vi:.3f} at T {s.threshold:.2f}")
        ranked.append((s.vi, it, path))
    if not ranked:
        raise FileNotFoundError(f"{run}: no checkpoint at a multiple of {every} iterations")
    _, it, path = min(ranked)
    model = network_from_checkpoint(path)
    scores = []
    for flip_average in (False, True):
        aff = heldout_affinities(model, raw, holdout_x, flip_average=flip_average)
        for pp in CANDIDATES:
            s = score_affinities(aff, model.config.offsets, gt_h, pp, voxel_size=voxel_size)
            log(f"  flip-average {flip_average!s:5s} {pp}: {s.vi_split:.3f} + {s.vi_merge:.3f} = {s.vi:.3f} "
                f"at T {s.threshold:.2f} ({s.n_supervoxels} sv)")
            scores.append((flip_average, s))
    flip_average, best = min(scores, key=lambda fs: fs[1].vi)
    segment = select_for_segment(model, raw, gt_h, holdout_x=holdout_x, voxel_size=voxel_size, log=log)
    metadata = {
        "data": data_name, "seed": int(seed), "iteration": int(it), "checkpoint": path.name,
        "holdout": f"x >= {holdout_x}", "heldout": best.to_dict(), "flip_average": bool(flip_average),
        "heldout_candidates": [{**s.to_dict(), "flip_average": bool(f)} for f, s in scores],
        "checkpoint_curve": [[int(i), float(v)] for v, i, _ in sorted(ranked, key=lambda r: r[1])],
        "normalisation": "raw / dtype max (uint8: / 255)", "parameters": int(n_parameters(model)),
        "segment": segment,
    }
    save_network(model, out, **metadata)
    log(f"chose {path.name}, flip-average {flip_average}, {best.postprocess} (held-out VI {best.vi:.3f} at T {best.threshold:.2f}) -> {out}")
    return metadata
