"""Synapse questions answered by a simulated proofreader: how fast the synapse classifier learns, and what it costs.

Protocol:

* A synthetic volume with synapses (``--seed``, never a training seed of the
  synapse network; ``--shape``), made a project whose supervoxels are its
  true labels (so every question is about the detector, not the
  segmentation), and ``napari-connectome synapses`` run on it with the
  shipped network (``--threshold``: lower than the model's to review more
  doubtful rows): the detected rows are the questions.
* Truth of a row: a true connection of the same neuron pair whose post point
  lies within 200 nm and pre point within 400 nm (the evaluation's distances).
* A simulated proofreader answers ``--answers`` questions in the queue's
  order (:class:`~napari_connectome.tasks.synapse_queue.SynapseQueue`), each
  by the truth, twice from the same start: the queue's active order, and a
  random order (the baseline; the classifier learns the same way in both).
* After every ``--every`` answers: the classifier's ROC AUC on the rows not
  asked yet, and the table's connection precision and recall when the rows the
  classifier puts under P 0.5 are left out (answered rows count as answered);
  the detector's own score as a ranking (AUC) for comparison.
* Cost: milliseconds per answer (verdict written, classifier refit, store and
  features read again), median and 95th percentile.

Run::

    python benchmarks/synapse_review.py [--shape 128 192 192] [--seed 302] [--threshold T] [--answers 60] \
        [--every 10] [--workdir DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_project(workdir: Path, shape, seed: int, density: float, threshold: float | None):
    from napari_connectome.cli import main as cli
    from napari_connectome.project import create_project, open_project
    from napari_connectome.synapses import read_csv
    from napari_connectome.synapses.project_run import detect_in_project

    vol = workdir / "volume"
    code = cli(["synthetic", str(vol), "--shape", *map(str, shape), "--voxel-size", "10", "10", "10",
                "--seed", str(seed), "--synapses", "--synapse-density", str(density), "--quiet"])
    if code:
        raise SystemExit(f"napari-connectome synthetic failed ({code})")
    truth = read_csv(vol / "synapses.csv")
    root = workdir / "project"
    create_project(root, raw=vol / "raw.ome.zarr", supervoxels=vol / "groundtruth.ome.zarr",
                   groundtruth=vol / "groundtruth.ome.zarr")
    project = open_project(root)
    t0 = time.perf_counter()
    report = detect_in_project(project, project.open_input("groundtruth"), threshold=threshold)
    return project, truth, report, time.perf_counter() - t0


def truth_of(candidates, truth) -> dict[int, bool]:
    out = {}
    for c in candidates:
        same = (truth.pre_id == c.pre_id) & (truth.post_id == c.post_id)
        near = (np.linalg.norm(truth.post - np.asarray(c.post), axis=1) <= 200.0) & \
               (np.linalg.norm(truth.pre - np.asarray(c.pre), axis=1) <= 400.0)
        out[c.row] = bool(np.any(same & near))
    return out


def run_once(project, truth, *, order: str, answers: int, every: int, seed: int) -> dict:
    from sklearn.metrics import roc_auc_score

    from napari_connectome.proofread import Proofreader
    from napari_connectome.synapses.store import SynapseStore
    from napari_connectome.tasks.synapse_queue import SynapseQueue

    store_path = project.component_path("synapses")
    backup = store_path.read_bytes()
    pr = Proofreader.open(project, user="simulated")
    queue = SynapseQueue(pr, user="simulated", seed=seed, order=order)
    labels = truth_of(queue.candidates, truth)
    all_rows = [c.row for c in queue.candidates]
    y_all = np.array([labels[r] for r in all_rows])
    scores = np.array([c.score for c in queue.candidates])
    curve, times = [], []
    asked: dict[int, bool] = {}

    def measure(n: int) -> None:
        cands = queue.candidates
        p = queue.probabilities(cands) if cands else np.zeros(0)
        rows = [c.row for c in cands]
        rest = [i for i, r in enumerate(rows) if r not in asked]
        y_rest = np.array([labels[rows[i]] for i in rest])
        auc = float(roc_auc_score(y_rest, p[rest])) if len(set(y_rest.tolist())) == 2 else float("nan")
        # the table the proofreader ends with: answered rows as answered, the rest kept when P ≥ 0.5
        kept = [labels[r] for r, yes in asked.items() if yes] + [bool(y_rest[j]) for j, i in enumerate(rest)
                                                                 if p[i] >= 0.5 or not queue.learnt]
        true_total = int(y_all.sum())
        tp = int(sum(kept))
        curve.append({"answers": n, "auc_unasked": auc, "kept": len(kept),
                      "precision": tp / len(kept) if kept else float("nan"),
                      "recall": tp / true_total if true_total else float("nan")})

    measure(0)
    for k in range(1, answers + 1):
        c = queue.next()
        if c is None:
            break
        yes = labels[c.row]
        t0 = time.perf_counter()
        queue.answer(c, "yes" if yes else "no", task_id=f"sim-{k}")
        times.append((time.perf_counter() - t0) * 1e3)
        asked[c.row] = yes
        if k % every == 0:
            measure(k)
    queue.close()
    pr.close()
    with SynapseStore(store_path) as store:
        n_verdicts = len(store.verdicts())
    store_path.write_bytes(backup)  # the next run starts from the same store
    for suffix in ("-wal", "-shm"):
        Path(str(store_path) + suffix).unlink(missing_ok=True)
    return {"order": order, "questions": len(all_rows), "true_rows": int(y_all.sum()),
            "score_auc": float(roc_auc_score(y_all, scores)) if len(set(y_all.tolist())) == 2 else float("nan"),
            "curve": curve, "verdicts_written": n_verdicts,
            "ms_per_answer_p50": float(np.median(times)) if times else float("nan"),
            "ms_per_answer_p95": float(np.percentile(times, 95)) if times else float("nan")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", nargs=3, type=int, default=[128, 192, 192], metavar=("Z", "Y", "X"))
    parser.add_argument("--seed", type=int, default=302, help="synthetic volume seed (a test seed, ≥ 300)")
    parser.add_argument("--density", type=float, default=3.0, help="synapses per µm³")
    parser.add_argument("--threshold", type=float,
                        help="detection mask threshold (default: the model's); a lower one asks about more "
                             "doubtful rows, as a review pass would")
    parser.add_argument("--answers", type=int, default=60)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--workdir", type=Path, help="keep the project here (default: a temporary folder)")
    parser.add_argument("--json", type=Path, metavar="FILE")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="synapse-review-"))
    if (workdir / "project").exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    project, truth, report, t_detect = make_project(workdir, args.shape, args.seed, args.density, args.threshold)
    print(f"volume seed {args.seed} {args.shape}: {len(truth)} true connections; detection {t_detect:.0f} s")
    runs = [run_once(project, truth, order=o, answers=args.answers, every=args.every, seed=0)
            for o in ("active", "random")]
    print(f"{runs[0]['questions']} questions, {runs[0]['true_rows']} of them true; the detector's score alone "
          f"ranks them with AUC {runs[0]['score_auc']:.3f}")
    print("answers | active: AUC unasked, P, R of the table | random: AUC, P, R")
    for a, b in zip(runs[0]["curve"], runs[1]["curve"], strict=False):
        print(f"{a['answers']:7d} | {a['auc_unasked']:.3f} {a['precision']:.3f} {a['recall']:.3f} "
              f"| {b['auc_unasked']:.3f} {b['precision']:.3f} {b['recall']:.3f}")
    for r in runs:
        print(f"{r['order']}: {r['ms_per_answer_p50']:.1f} ms per answer (p95 {r['ms_per_answer_p95']:.1f}), "
              f"{r['verdicts_written']} verdicts written")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: (str(v) if isinstance(v, Path) else v)
                                                  for k, v in vars(args).items()}, "runs": runs}, indent=2))
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
