"""Train the prior ranking model: our agglomeration's candidates on gala-fib *train*, labelled by its ground truth.

Protocol (train on train, report on test):

1. A project over gala-fib train (watershed supervoxels, gala's boundary map
   p1, 10 nm) agglomerated at each of ``thresholds``: every threshold gives
   a segmentation with a different mix of false splits and false merges.
2. :func:`~napari_connectome.candidates.find_candidates` (no skeletons) on
   each, labelled by :func:`~napari_connectome.candidates.label_candidates`
   against train's ground truth; all thresholds pooled.
3. :class:`~napari_connectome.rank.Ranker` fitted on them (seed 0).
4. The same candidates on gala-fib *test* (held out) score it: ROC AUC,
   Brier score, precision of the top 50 by P(error), base rate.

Run (writes the weights and prints the scores and the sha256 for the registry)::

    .venv/bin/python -m napari_connectome.rank.prior --data ../shared/data/gala-fib \\
        --out models/napari_connectome_models/weights/rank-prior-gala-fib.joblib
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from napari_connectome.errors import InputError
from napari_connectome.rank.ranker import Ranker

DEFAULT_THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
VOXEL_NM = (10.0, 10.0, 10.0)


def gala_project(data: Path, split: str, root: Path):
    """A project over one gala-fib crop (``split`` = ``train`` or ``test``)."""
    from napari_connectome.project import create_project

    files = {role: data / f"{split}-{name}" for role, name in (
        ("raw", "image.h5"), ("supervoxels", "ws.lzf.h5"), ("boundaries", "p1.lzf.h5"), ("groundtruth", "gt.lzf.h5"))}
    for path in files.values():
        if not path.is_file():
            raise InputError(path, "is missing (gala-fib crops expected, see ../shared/data/README.md)")
    return create_project(root, **{role: f"{p}/stack" for role, p in files.items()}, voxel_size=VOXEL_NM,
                          name=f"gala-fib {split}")


def labelled_candidates(project, thresholds=DEFAULT_THRESHOLDS, *, find_options: dict | None = None):
    """Candidates and their ground-truth labels of ``project`` agglomerated at every threshold (pooled)."""
    from napari_connectome.candidates import find_candidates, label_candidates
    from napari_connectome.graph import agglomerate_project
    from napari_connectome.proofread import Proofreader

    gt = np.asarray(project.open_input("groundtruth").levels[0].array[...])
    cands, labels, where = [], [], []
    for t in thresholds:
        agglomerate_project(project, threshold=float(t))
        with Proofreader.open(project, read_only=True) as pr:
            c = find_candidates(pr, **(find_options or {}))
            y = label_candidates(c, pr, gt)
        cands.extend(c)
        labels.append(y)
        where.extend([float(t)] * len(c))
    return cands, np.concatenate(labels) if labels else np.empty(0, bool), np.array(where)


def scores(ranker: Ranker, candidates, labels: np.ndarray, *, k: int = 50) -> dict:
    """ROC AUC, Brier score and precision of the top ``k`` (by P(error)) on labelled candidates."""
    from sklearn.metrics import brier_score_loss, roc_auc_score

    p = ranker.predict_candidates(candidates)
    top = np.argsort(-p, kind="stable")[:k]
    kinds = np.array([c.kind for c in candidates])
    out = {"n": int(labels.size), "base_rate": float(labels.mean()),
           "auc": float(roc_auc_score(labels, p)) if 0 < labels.sum() < labels.size else float("nan"),
           "brier": float(brier_score_loss(labels, p)), f"precision_at_{k}": float(labels[top].mean())}
    for kind in ("false_split", "false_merge"):
        m = kinds == kind
        if 0 < labels[m].sum() < m.sum():
            out[f"auc_{kind}"] = float(roc_auc_score(labels[m], p[m]))
    return out


def train_prior(data: Path, *, thresholds=DEFAULT_THRESHOLDS, seed: int = 0, workdir: Path | None = None) -> tuple[Ranker, dict]:
    """Fit the prior on gala-fib train and score it on gala-fib test; returns ``(ranker, report)``."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(workdir or tmp)
        train = gala_project(Path(data), "train", root / "train")
        x_c, x_y, _ = labelled_candidates(train, thresholds)
        ranker = Ranker(seed=seed).fit_candidates(x_c, x_y)
        test = gala_project(Path(data), "test", root / "test")
        t_c, t_y, _ = labelled_candidates(test, thresholds)
        report = {
            "thresholds": list(map(float, thresholds)),
            "train": {"n": len(x_c), "positives": int(x_y.sum()), "base_rate": float(x_y.mean())},
            "test": scores(ranker, t_c, t_y),
            "train_fit": scores(ranker, x_c, x_y),
            "features": ranker.columns,
        }
    return ranker, report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Train the prior candidate-ranking model on gala-fib train.")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[3] / "shared" / "data" / "gala-fib"))
    ap.add_argument("--out", required=True, help="weights file to write (.joblib)")
    ap.add_argument("--thresholds", type=float, nargs="+", default=list(DEFAULT_THRESHOLDS))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    ranker, report = train_prior(Path(args.data), thresholds=args.thresholds, seed=args.seed)
    out = ranker.save(args.out)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    report["file"] = os.fspath(out)
    report["sha256"] = digest
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
