"""The synapse questions of a project, ordered by a classifier that learns from every answer.

The questions are :func:`~napari_connectome.synapses.review.review_candidates`
of the project's synapse store: detected or imported rows in force that no one
has reviewed. The classifier is the merge/split ranker's
(:class:`~napari_connectome.rank.Ranker`: gradient-boosted trees, Platt
scaling once both classes have a few answers, answers weighted over a prior),
here on :data:`~napari_connectome.synapses.review.FEATURES`, with no prior:
it learns this volume's detector from this proofreader alone. Until it has
seen a *yes* and a *no*, the detections of middle score are asked first
(the detector's own least sure ones: the weakest first gave only *no* for
dozens of answers in ``benchmarks/synapse_review.py``, and nothing to learn
from); from then on the rows whose answer it is least sure of (active
learning: P(yes) nearest one half), and :meth:`SynapseQueue.probabilities` gives its
P(real synapse) for every row in force.

An answer is written to the store at once (*yes* and *no* are verdicts,
:meth:`~napari_connectome.synapses.store.SynapseStore.review`; *skip* and
*flag* write nothing there), then the classifier is refit (milliseconds at
the sizes of a session: hundreds of answers). Undo retracts the verdict and
the classifier forgets the answer.

Neuron ids are read through the Proofreader: the supervoxel under each point
once (points never move), its segment after every edit, so a question always
names the neurons as they are now.
"""

from __future__ import annotations

import numpy as np

from napari_connectome.errors import InputError
from napari_connectome.rank.ranker import Ranker
from napari_connectome.synapses.review import (
    FEATURES,
    SynapseCandidate,
    feature_rows,
    review_candidates,
    side_box,
    side_contrast,
)
from napari_connectome.synapses.store import SynapseStore

#: Origins whose rows are questions (a person's own annotations and reviewed rows are not asked again).
REVIEWABLE = ("detected", "imported")


class SynapseQueue:
    """Unreviewed synapse rows of a project as yes/no questions.

    Parameters
    ----------
    proofreader
        The open :class:`~napari_connectome.proofread.Proofreader` (its
        project's synapse store is opened here, for writing).
    user
        Recorded with every verdict.
    seed
        Of the classifier (and of the random order).
    order
        ``"active"`` (see the module notes) or ``"random"`` (a fixed shuffle:
        the baseline active learning is measured against).
    """

    def __init__(self, proofreader, *, user: str = "", seed: int = 0, order: str = "active") -> None:
        if order not in ("active", "random"):
            raise InputError("synapse order", f"is 'active' or 'random', got {order!r}")
        self.order_by = order
        self.seed = int(seed)
        self.proofreader = proofreader
        self.user = user
        self.store = SynapseStore(proofreader.project.component_path("synapses"))
        self.classifier = Ranker(feature_names=list(FEATURES), derived=False, seed=seed)
        self._sv: dict[int, tuple[int, int]] = {}
        self._contrast: dict[tuple[int, int, int], float] = {}
        project = proofreader.project
        self._raw = project.open_input("raw").levels[0] if "raw" in project.inputs else None
        self._asked: dict[int, str] = {}
        self._answers: list[tuple[SynapseCandidate, str, int | None, bool]] = []
        self.candidates: list[SynapseCandidate] = []
        self._version = -1
        self.refresh()

    # ---------------------------------------------------------------- reading
    def _supervoxels(self, row: int, pre, post) -> tuple[int, int]:
        sv = self._sv.get(row)
        if sv is None:
            sv = (int(self.proofreader.supervoxel_at(np.asarray(pre))),
                  int(self.proofreader.supervoxel_at(np.asarray(post))))
            self._sv[row] = sv
        return sv

    def _neuron(self, row: int, end: int, point) -> int:
        sv = self._supervoxels(row, *point)[end]
        if not sv:
            return 0
        try:
            return int(self.proofreader.segment_of(sv))
        except InputError:
            # a split inside the supervoxel divided it: read the point again
            self._sv.pop(row, None)
            sv = self._supervoxels(row, *point)[end]
            return int(self.proofreader.segment_of(sv)) if sv else 0

    def _side_contrast(self, row: int, pre, post, pre_id: int, post_id: int) -> float:
        """:func:`~napari_connectome.synapses.review.side_contrast` of a row, read once per row and neurons."""
        key = (int(row), int(pre_id), int(post_id))
        if key in self._contrast:
            return self._contrast[key]
        value = float("nan")
        # (an EM volume with a channel axis has no single grey value per voxel: not measured)
        if self._raw is not None and len(self._raw.shape) == 3 and pre_id and post_id and pre_id != post_id:
            level = self.proofreader.labels_volume().levels[0]
            vs, off = level.spatial_voxel_size, level.spatial_offset
            box = side_box(np.asarray(pre), np.asarray(post), voxel_size=vs, offset=off)
            box = tuple(slice(max(b.start, 0), min(b.stop, n)) for b, n in zip(box, level.shape[-3:], strict=True))
            if all(b.stop > b.start for b in box):
                labels = np.asarray(level.array[box])
                raw = np.asarray(self._raw.array[box], dtype=np.float64)
                origin = np.asarray(off, float) + np.asarray([b.start for b in box]) * np.asarray(vs, float)
                value = side_contrast(raw, labels, origin_nm=origin, voxel_size=vs, pre=pre, post=post,
                                      pre_id=pre_id, post_id=post_id)
        self._contrast[key] = value
        return value

    def refresh(self) -> None:
        """Read the store and the neurons again (after an answer, an undo, an edit or a new detection run)."""
        self._version = int(getattr(self.proofreader, "version", -1))
        rows, batches, table = self.store.current(with_rows=True)
        origin = self.store.origins()
        verdicts = self.store.verdicts()
        source = {v["batch"]: int(v.get("batch_of_row", v["batch"])) for v in verdicts}
        confirmed = {(int(v["batch_of_row"]), int(v["synapse_id"])) for v in verdicts
                     if v["verdict"] == "yes" and "batch_of_row" in v}
        if len(table):
            pre_id = np.array([self._neuron(int(r), 0, (table.pre[k], table.post[k])) for k, r in enumerate(rows)],
                              dtype=np.uint64)
            post_id = np.array([self._neuron(int(r), 1, (table.pre[k], table.post[k])) for k, r in enumerate(rows)],
                               dtype=np.uint64)
            table = table.with_ids(pre_id, post_id)
        group_batches = np.array([source.get(int(b), int(b)) for b in batches], dtype=np.int64)
        reviewable = np.array([origin.get(int(b)) in REVIEWABLE for b in batches], dtype=bool)
        contrast = np.array([self._side_contrast(int(r), table.pre[k], table.post[k], int(table.pre_id[k]),
                                                 int(table.post_id[k])) if reviewable[k] else np.nan
                             for k, r in enumerate(rows)])
        self.candidates = review_candidates(rows, group_batches, table, reviewable=reviewable, confirmed=confirmed,
                                            contrast=contrast)

    def probabilities(self, candidates: list[SynapseCandidate] | None = None) -> np.ndarray:
        """The classifier's P(real synapse) for ``candidates`` (default: every question)."""
        cands = self.candidates if candidates is None else candidates
        return self.classifier.predict_proba(feature_rows(cands))

    @property
    def learnt(self) -> bool:
        """Whether the classifier has seen both answers (before that, questions go weakest first)."""
        info = self.classifier.training_info
        return bool(info.get("n_positive")) and bool(info.get("n_negative"))

    def order(self) -> list[SynapseCandidate]:
        """Questions not asked yet, the next first (see the module notes).

        An edit since the last read (a merge or split, in a task or a panel) renames neurons: the
        questions are read again first, so each names its neurons as they are now.
        """
        if int(getattr(self.proofreader, "version", -1)) != self._version:
            self.refresh()
        unasked = [c for c in self.candidates if c.row not in self._asked]
        if not unasked:
            return []
        score = np.array([c.score for c in unasked])
        rows = np.array([c.row for c in unasked])
        if self.order_by == "random":
            # a shuffle of the row numbers fixed by the seed: the same row keeps its place between calls
            draw = np.random.default_rng([self.seed, 7]).random(int(rows.max()) + 1)
            return [unasked[i] for i in np.lexsort((rows, draw[rows]))]
        if self.learnt:
            p = self.probabilities(unasked)
        else:
            # Before the classifier has both answers, the detector's score is the only opinion: its
            # middle (by rank) is where an answer is least predictable, so both answers come soon.
            p = np.argsort(np.argsort(score, kind="stable"), kind="stable") / max(len(unasked) - 1, 1)
        key = np.lexsort((rows, score, np.abs(p - 0.5)))
        return [unasked[i] for i in key]

    def next(self) -> SynapseCandidate | None:
        """The question to ask next, or None when none is left."""
        unasked = self.order()
        return unasked[0] if unasked else None

    @property
    def remaining(self) -> int:
        return sum(1 for c in self.candidates if c.row not in self._asked)

    # ---------------------------------------------------------------- answers
    def answer(self, candidate: SynapseCandidate, answer: str, *, task_id: str = "") -> int | None:
        """Record ``answer`` (yes/no/skip/flag) to ``candidate``; returns the verdict's batch (yes/no) or None."""
        batch = None
        if answer in ("yes", "no"):
            batch = self.store.review(candidate.row, answer, details={
                "task_id": task_id, "user": self.user, "question": candidate.question,
                "pre_id": candidate.pre_id, "post_id": candidate.post_id})
        learnt = False
        if answer in ("yes", "no"):
            self.classifier.partial_update(feature_rows([candidate]), [answer == "yes"])
            learnt = True
        self._asked[candidate.row] = answer
        self._answers.append((candidate, answer, batch, learnt))
        if batch is not None:
            self.refresh()
        return batch

    def undo(self) -> tuple[SynapseCandidate, str, int | None] | None:
        """Take back the latest answer: retract its verdict, forget it in the classifier; None when none."""
        if not self._answers:
            return None
        candidate, answer, batch, learnt = self._answers.pop()
        retraction = None
        if batch is not None:
            retraction = self.store.retract(batch, by="reviewed")
        if learnt:
            self.classifier.forget_last()
        self._asked.pop(candidate.row, None)
        self.refresh()
        again = next((c for c in self.candidates if c.row == candidate.row), candidate)
        return again, answer, retraction

    @property
    def answers(self) -> list[tuple[SynapseCandidate, str]]:
        return [(c, a) for c, a, _, _ in self._answers]

    def close(self) -> None:
        self.store.close()
