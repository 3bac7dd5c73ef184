"""The detection threshold, chosen on held-out data (never on test), as ``segment`` chooses its threshold.

A synapse network's mask probabilities are not calibrated: the class-balanced
loss it is trained with pushes them up, so 0.5 keeps too much. The threshold
that gives the best site F on the network's held-out training volume is
stored with the model (its weights' metadata, or its registry entry) and used
by ``napari-connectome synapses`` unless a person sets one. The pre ray's reach
(:func:`~napari_connectome.synapses.detect.cast_pre`) and the smallest mask
piece kept are chosen with it: the combination with the best partner F (the
connections are what a connectome is made of), ties by site F. So is whether,
and within what radius, rows are turned round by their darker end
(:mod:`~napari_connectome.synapses.orient`).
"""

from __future__ import annotations

import numpy as np

from napari_connectome.synapses.detect import detect_synapses
from napari_connectome.synapses.evaluate import evaluate_synapses
from napari_connectome.synapses.table import SynapseTable

#: Mask probabilities tried (a network trained with hard negatives is far less eager than one without:
#: its best threshold can lie well under 0.5).
THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98)
#: Smallest mask pieces kept, nm³, tried.
MIN_VOLUMES = (1e5, 2e5, 3e5, 5e5)
#: Pre ray reaches tried (nm beyond the predicted pre point; None: no ray).
REACHES = (None, 0.0, 30.0, 60.0)
#: Orientation radii tried (nm; None: rows stay as the vectors give them).
ORIENT_RADII = (None, 50.0, 80.0, 150.0, 200.0, 250.0)


def threshold_curve(prediction: np.ndarray, segmentation: np.ndarray, truth: SynapseTable, *, voxel_size,
                    offset=(0.0, 0.0, 0.0), thresholds=THRESHOLDS, site_distance_nm: float = 200.0,
                    partner_distance_nm: float = 400.0, pre_reach_nm: float | None = None,
                    min_volume_nm3: float = 1e5, raw: np.ndarray | None = None,
                    orient_radius_nm: float | None = None) -> list[dict]:
    """Site and partner scores of the detections at each threshold (one dict per threshold)."""
    rows = []
    for t in thresholds:
        found = detect_synapses(prediction, segmentation, voxel_size=voxel_size, offset=offset, threshold=float(t),
                                pre_reach_nm=pre_reach_nm, min_volume_nm3=min_volume_nm3, raw=raw,
                                orient_radius_nm=orient_radius_nm)
        if len(found):
            scores = evaluate_synapses(found.table, truth, site_distance_nm=site_distance_nm,
                                       partner_distance_nm=partner_distance_nm).to_dict()
        else:
            n_sites = int(np.unique(truth.post, axis=0).shape[0])
            empty = {"tp": 0, "fp": 0, "precision": float("nan"), "recall": 0.0, "f_score": 0.0}
            scores = {"sites": {**empty, "fn": n_sites}, "partners": {**empty, "fn": len(truth)}}
        rows.append({"threshold": float(t), "pre_reach_nm": pre_reach_nm, "min_volume_nm3": float(min_volume_nm3),
                     "orient_radius_nm": orient_radius_nm,
                     "sites": scores["sites"],
                     "partners": scores["partners"], "detected": len(found)})
    return rows


def pool_curves(per_volume: list[list[list[dict]]]) -> list[list[dict]]:
    """Curves of several volumes (each a list of curves in the same order) pooled: counts summed, P/R/F again."""
    pooled = []
    for curves in zip(*per_volume, strict=True):
        out = []
        for rows in zip(*curves, strict=True):
            row = {k: v for k, v in rows[0].items() if k not in ("sites", "partners", "detected")}
            row["detected"] = sum(r["detected"] for r in rows)
            for part in ("sites", "partners"):
                tp, fp, fn = (sum(r[part][k] for r in rows) for k in ("tp", "fp", "fn"))
                p = tp / (tp + fp) if tp + fp else float("nan")
                r = tp / (tp + fn) if tp + fn else 0.0
                f = 2 * p * r / (p + r) if tp else 0.0
                row[part] = {"tp": tp, "fp": fp, "fn": fn, "precision": p, "recall": r, "f_score": f}
            out.append(row)
        pooled.append(out)
    return pooled


def choose_detection(curves: list[list[dict]]) -> dict:
    """The row, over every curve, of the best partner F.

    Ties: the site F, then the higher threshold, no ray before a ray and a shorter one before a
    longer, the smaller minimum piece, no orientation before orientation and a smaller radius before a
    larger.
    """
    rows = [r for curve in curves for r in curve]
    if not rows:
        raise ValueError("nothing was tried")
    return max(rows, key=lambda r: (round(r["partners"]["f_score"], 6), round(r["sites"]["f_score"], 6),
                                    r["threshold"], 1.0 if r.get("pre_reach_nm") is None else -r["pre_reach_nm"],
                                    -r.get("min_volume_nm3", 1e5),
                                    1.0 if r.get("orient_radius_nm") is None else -r["orient_radius_nm"]))

