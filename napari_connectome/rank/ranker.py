"""The error classifier behind the ranking: P(candidate is a real error) from its features.

A gradient-boosted tree classifier (scikit-learn's
``HistGradientBoostingClassifier``: missing features, NaN, are handled
natively, so a candidate without skeleton features still scores), with
probabilities calibrated by Platt scaling (``CalibratedClassifierCV``,
sigmoid, 3-fold) once there are enough examples of both classes. It is
trained on a *prior* set (our agglomeration's candidates on gala-fib train,
labelled by its ground truth) and, while a proofreader works, retrained from
scratch on prior + answers after every answer — small data, so a full refit
takes a fraction of a second and avoids the drift of a warm start. Answers
weigh more than prior examples (``answer_weight``): they come from this very
volume.

The trees are grown by :class:`~napari_connectome.rank.boost.BoostedTrees`:
the trees scikit-learn grows with these options, the same bits, in compiled
loops (~23 ms a fit on the 2,137 prior rows instead of ~40 ms; scikit-learn's
own where its internals are not found).

What a refit after an answer costs (2,137 prior rows, 60 trees: ~23 ms a
classifier fit): the classifier is refitted on prior + answers every time,
but the Platt scaling, which needs three more fits on cross-validation folds,
is refitted only when the number of answers has grown by a factor
``recalibrate_growth`` since it was last fitted (after answers 1, 2, 3, 5, 8,
12, 18, 27, 41, 62, 93, … with 1.5); in between the newest classifier's
scores go through the latest Platt scaling. The scaling is monotone, so the
order of the candidates *within* the classifier's scores is the same as a
full recalibration's; only how far apart the probabilities are moves. The
default, 1, recalibrates after every answer: on the 250³ cube of
``benchmarks/bench_decisions.py`` 1.5 made refits 3× cheaper but the active
strategy (whose per-kind level shift and expected benefit read the
probabilities, not only their order) asked other candidates, and worse ones:
over exploration seeds 0, 1, 2, VI after 100 decisions 4.62–4.65 against
3.45, 3.43, 4.62 (prequential AUC 0.80–0.84 against 0.94, 0.91, 0.83). Features are kept per candidate (:meth:`Ranker.featurize`), so
ranking a list again after an edit featurises only its new candidates.

**Learning by correction** (``learning="correction"``, what the ``active``
strategy uses): the prior model is fitted and calibrated once and kept; the
answers are learnt by a small boosted correction of its log-odds, trees
(:data:`CORRECTION`: 60 of at most 8 leaves) grown on the answers alone with
the prior's log-odds of each as the starting score
(:meth:`BoostedTrees.fit` with ``offset``). A refit then costs what the answers
cost, not the prior set (~4 ms after 100 answers instead of four fits of
~23 ms), and since the prior's scores never change they are kept per
candidate: ranking after an answer evaluates only the correction's trees. A
root that cannot be split adds nothing (scikit-learn's rule), so the
correction starts once there are 2 × ``min_samples_leaf`` answers; until then
the strategy's per-kind level shift is what moves. On the 250³ cube of
``benchmarks/bench_decisions.py`` it also asked better questions: VI after
100 decisions 2.96–3.66 over exploration seeds 0–4 against 3.43–4.62 refitting.
Weaker corrections did not learn enough: 20 trees of 4 leaves, a learning
rate of 0.05 or ``min_samples_leaf`` 5 with ``l2`` 3 left VI at 4.8–5.45 on
some seeds (the refit's 3.4–4.6). The default is twice the smallest setting
that worked on every seed tried.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from napari_connectome.arrays import distinct
from napari_connectome.atomic import atomic_write
from napari_connectome.candidates.model import Candidate, feature_matrix, impacts, proposes_merges
from napari_connectome.candidates.rows import RowCache
from napari_connectome.errors import InputError
from napari_connectome.rank import threads
from napari_connectome.rank.boost import BoostedTrees
from napari_connectome.rank.boost import available as boost_available

#: Columns the ranker derives from every candidate besides its own features.
DERIVED = ("kind_is_false_split", "log_impact")
#: Fewest examples of each class before probabilities are Platt-calibrated.
MIN_PER_CLASS_TO_CALIBRATE = 6
#: Default growth of the number of answers between two Platt calibrations (see the module's notes).
RECALIBRATE_GROWTH = 1.0
#: How a ranker learns from answers (see the module's notes).
LEARNING = ("refit", "correction")
#: The correction's trees (``learning="correction"``): options of :class:`BoostedTrees`.
CORRECTION = {"max_iter": 60, "learning_rate": 0.1, "max_leaf_nodes": 8, "min_samples_leaf": 3,
              "l2_regularization": 1.0}
FILE_FORMAT = "napari-connectome-ranker"
FILE_VERSION = 1


_CONTROLLER = None


def _one_thread():
    """A context limiting OpenMP and BLAS to one thread each, the libraries looked up once.

    ``threadpool_limits`` looks the loaded libraries up at every call: ~5 ms, three times a decision.
    Called after scikit-learn is imported, so its OpenMP runtime and BLAS are among them. BLAS too:
    the Platt fit's L-BFGS (two parameters) took 30–40 ms instead of 2.5 while OpenBLAS's threads
    competed with the refit's own fitting threads.
    """
    global _CONTROLLER
    if _CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1)


def logit(p: np.ndarray) -> np.ndarray:
    """log(p / (1 − p)), p clipped to [1e-9, 1 − 1e-9]."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-9, 1.0 - 1e-9)
    return np.log(p) - np.log1p(-p)


def _derived(candidates: list[Candidate]) -> np.ndarray:
    kind = proposes_merges(candidates).astype(np.float64)
    impact = impacts(candidates)
    return np.column_stack([kind, np.log1p(np.maximum(impact, 0.0))]) if candidates else np.empty((0, 2))


class _PlattCalibrated:
    """A classifier refit on all data, its scores Platt-scaled on 3-fold out-of-fold scores.

    scikit-learn's ``CalibratedClassifierCV`` does the same but costs several
    times more per refit (its fold machinery), which breaks the < 1 s budget.
    """

    def __init__(self, base, *, seed: int) -> None:
        self.base = base
        self.seed = seed

    def fit(self, x: np.ndarray, y: np.ndarray, *, platt=None) -> _PlattCalibrated:
        """Fit the classifier on all of ``x``; fit the Platt scaling on 3-fold out-of-fold scores, or reuse ``platt``."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold

        if platt is None:
            folds = list(StratifiedKFold(3, shuffle=True, random_state=self.seed).split(x, y))
            parts = [_unfitted(self.base) for _ in folds]
            jobs = [(self.base, x, y)] + [(part, x[train], y[train]) for part, (train, _) in zip(parts, folds,
                                                                                              strict=True)]
            _fit_all(jobs)
            oof = np.empty(y.size)
            for part, (_, held) in zip(parts, folds, strict=True):
                oof[held] = part.decision_function(x[held])
            platt = LogisticRegression(C=1e4).fit(oof[:, None], y)
        else:
            self.base.fit(x, y)
        self.platt = platt
        self.classes_ = self.platt.classes_
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.platt.predict_proba(self.base.decision_function(x)[:, None])


def _fit_all(jobs) -> None:
    """``model.fit(x, y)`` for each ``(model, x, y)``: at once on threads where the trees are compiled.

    :class:`BoostedTrees` grows its trees without the GIL, so the calibration folds and the final
    fit of a refit run side by side (each its own data: the models are the ones a sequential run
    makes). scikit-learn's classifier holds the GIL between its OpenMP regions: run one by one.
    """
    pool = threads.pool() if len(jobs) > 1 else None
    if pool is None or not all(isinstance(m, BoostedTrees) for m, _, _ in jobs):
        for model, x, y in jobs:
            model.fit(x, y)
        return
    for future in [pool.submit(model.fit, x, y) for model, x, y in jobs]:
        future.result()


def _unfitted(model):
    """An unfitted copy of ``model`` with its options (``sklearn.base.clone``)."""
    from sklearn.base import clone

    return model.fresh() if isinstance(model, BoostedTrees) else clone(model)


def _classifier(**options):
    """The boosted classifier a refit fits: :class:`BoostedTrees` (scikit-learn's trees, compiled) where
    scikit-learn's internals it reuses are found, else scikit-learn's own."""
    if boost_available():
        return BoostedTrees(**options)
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(early_stopping=False, **options)


def _compiled(model, usable: np.ndarray):
    """``model``'s trees compiled (:class:`~napari_connectome.rank.forest.CompiledForest`), or None.

    None where the model is not what the compiled loop evaluates (or a scikit-learn release stores its
    trees otherwise): predictions then go through scikit-learn, as before, only slower.
    """
    from napari_connectome.rank.forest import CompiledForest

    if isinstance(model, BoostedTrees):
        return model.compiled(usable)
    try:
        return CompiledForest(model, usable)
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def _proba_from_raw(model, raw: np.ndarray) -> np.ndarray:
    """What ``model.predict_proba`` gives, from the raw scores of its (compiled) classifier."""
    if isinstance(model, _PlattCalibrated):
        return model.platt.predict_proba(raw[:, None])
    return model._loss.predict_proba(raw)


class Ranker:
    """Calibrated P(error) over candidate features, retrainable after every answer.

    Parameters
    ----------
    feature_names
        Candidate feature names, in column order; None: taken from the
        candidates given to :meth:`fit_candidates`.
    answer_weight
        Weight of a proofreader's answer relative to one prior example
        (rounded to a whole number of repetitions).
    max_iter
        Boosting iterations (bounded so that a refit stays well under 1 s).
    seed
        Random state of the classifier and the calibration folds.
    derived
        Append the candidate-derived columns (:data:`DERIVED`); False for
        feature matrices of other things than candidates (synapse rows).
    recalibrate_growth
        Refit the Platt scaling once the number of answers is this many times
        what it was at the last calibration (≥ 1; 1: after every answer).
    learning
        How answers are learnt: ``"refit"`` (the classifier and its calibration fitted again on
        prior + answers) or ``"correction"`` (the prior model kept, a small boosted correction of
        its log-odds fitted on the answers alone; see :mod:`napari_connectome.rank.ranker`).
    correction
        Options of the correction's trees (:data:`CORRECTION`).
    """

    def __init__(self, *, feature_names: list[str] | None = None, answer_weight: float = 5.0,
                 max_iter: int = 60, seed: int = 0, derived: bool = True,
                 recalibrate_growth: float = RECALIBRATE_GROWTH, learning: str = "refit",
                 correction: dict | None = None) -> None:
        if learning not in LEARNING:
            raise InputError("ranker", f"learning is one of {', '.join(LEARNING)}, got {learning!r}")
        unknown = sorted(set(correction or {}) - set(CORRECTION))
        if unknown:
            raise InputError("ranker", f"unknown correction options {unknown} (known: {', '.join(CORRECTION)})")
        self.learning = learning
        self.correction = {**CORRECTION, **(correction or {})}
        # The correction's trees (learning "correction"); None before the first answer.
        self._correction = None
        # The prior model's log-odds of each candidate, kept per candidate object (learning "correction").
        self._prior_logits = RowCache(self._prior_logit_rows)
        self.derived = bool(derived)
        self.feature_names = list(feature_names) if feature_names is not None else None
        self.answer_weight = float(answer_weight)
        self.max_iter = int(max_iter)
        self.seed = int(seed)
        self.recalibrate_growth = float(recalibrate_growth)
        if not self.recalibrate_growth >= 1.0:
            raise InputError("ranker", f"recalibrate_growth must be ≥ 1, got {recalibrate_growth}")
        # (answers it was fitted on, the Platt scaling): the latest calibration, reused until it is due.
        self._platt: tuple[int, object] | None = None
        self._usable_at_platt: np.ndarray | None = None
        # Rows of the latest featurised list, by candidate identity.
        self._rows = RowCache(self._featurize)
        self._x0 = np.empty((0, 0))
        self._y0 = np.empty(0, bool)
        self._xa: list[np.ndarray] = []
        self._ya: list[bool] = []
        self._model = None
        # The fitted classifier's trees, compiled (rank/forest.py); None: scikit-learn predicts.
        self._forest = None
        self._constant = 0.5
        self._usable = np.empty(0, np.int64)
        self.training_info: dict = {}

    # ------------------------------------------------------------ features
    @property
    def columns(self) -> list[str]:
        """Every column of :meth:`featurize`'s matrix."""
        if self.feature_names is None:
            raise InputError("ranker", "has no feature names yet; fit it first")
        return [*self.feature_names, *self._derived_columns]

    @property
    def _derived_columns(self) -> tuple[str, ...]:
        return DERIVED if self.derived else ()

    def featurize(self, candidates: list[Candidate]) -> np.ndarray:
        """The ``(N, F)`` matrix the classifier sees: candidate features, then kind and log impact.

        The rows of the latest list are kept by candidate (object identity, :class:`RowCache`): a list
        made again after an edit (:class:`~napari_connectome.candidates.CandidateCache` keeps the
        unchanged candidates' objects) costs only its new candidates. A candidate's features and impact
        are read when it is first featurised: a candidate is not changed after it is found.
        """
        if self.feature_names is None:
            self.feature_names = sorted({k for c in candidates for k in c.features})
        return self._rows(candidates)

    def _featurize(self, candidates: list[Candidate]) -> np.ndarray:
        x, _ = feature_matrix(candidates, self.feature_names)
        return np.hstack([x.reshape(len(candidates), len(self.feature_names)), _derived(candidates)])

    # ------------------------------------------------------------ training
    def fit(self, x, y) -> Ranker:
        """Train on a prior set ``x`` ``(N, F)`` (columns as :attr:`columns`), ``y`` True = real error.

        Forgets earlier answers.
        """
        x, y = self._check(x, y)
        self._x0, self._y0 = x, y
        self._xa, self._ya = [], []
        self._platt = None
        self._correction = None
        self._prior_logits.clear()
        self._refit()
        return self

    def fit_candidates(self, candidates: list[Candidate], labels) -> Ranker:
        """:meth:`fit` on candidates and their ground-truth answers."""
        if not candidates:
            raise InputError("ranker", "no candidates to train on")
        return self.fit(self.featurize(candidates), labels)

    def partial_update(self, x, y) -> Ranker:
        """Add answers (rows of ``x``, labels ``y``) and retrain on prior + all answers."""
        x, y = self._check(np.atleast_2d(np.asarray(x, dtype=np.float64)), np.atleast_1d(y))
        self._xa.extend(x)
        self._ya.extend(bool(v) for v in y)
        self._learn()
        return self

    update = partial_update

    def forget_last(self) -> Ranker:
        """Take back the latest answer (the proofreader undid it) and retrain without it."""
        if not self._ya:
            raise InputError("ranker", "there is no answer to take back")
        self._xa.pop()
        self._ya.pop()
        if self._platt is not None and self._platt[0] > len(self._ya):
            self._platt = None  # fitted on the answer taken back: calibrate again (on a prefix of the answers)
        self._learn()
        return self

    def set_learning(self, learning: str) -> Ranker:
        """Learn the answers held, and those to come, the ``learning`` way (:data:`LEARNING`)."""
        if learning not in LEARNING:
            raise InputError("ranker", f"learning is one of {', '.join(LEARNING)}, got {learning!r}")
        if learning != self.learning:
            self.learning = learning
            self._correction = None
            self._prior_logits.clear()
            self._platt = None
            self._refit()  # the prior's model (prior + answers when refitting)
            if self._correcting:
                self._fit_correction()
        return self

    @property
    def _correcting(self) -> bool:
        # Where scikit-learn's internals BoostedTrees reuses are missing the answers are refitted instead.
        return self.learning == "correction" and boost_available()

    def _learn(self) -> None:
        """Learn the answers held: a correction of the prior's log-odds, or a refit on prior + answers."""
        if self._correcting:
            self._fit_correction()
        else:
            self._refit()

    @property
    def n_answers(self) -> int:
        return len(self._ya)

    def _check(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y).astype(bool).reshape(-1)
        if x.ndim != 2:
            raise InputError("ranker", f"features must be a 2D (candidates, features) array, got shape {x.shape}")
        if x.shape[0] != y.size:
            raise InputError("ranker", f"{x.shape[0]} feature rows but {y.size} labels")
        n_cols = len(self.columns) if self.feature_names is not None else x.shape[1]
        if self.feature_names is None:
            self.feature_names = [f"f{i}" for i in range(x.shape[1] - len(self._derived_columns))]
        if x.shape[1] != n_cols:
            raise InputError("ranker", f"features have {x.shape[1]} columns, the ranker expects {n_cols}")
        if np.isinf(x).any():
            raise InputError("ranker", "features contain infinite values (use NaN for missing ones)")
        return x, y

    def _answers(self) -> tuple[np.ndarray, np.ndarray]:
        xa = np.asarray(self._xa, dtype=np.float64).reshape(len(self._xa), len(self.columns))
        return xa, np.asarray(self._ya, dtype=bool)

    def _training_set(self) -> tuple[np.ndarray, np.ndarray]:
        n_cols = len(self.columns)
        if self._correcting:  # the prior model is the prior set's alone; answers go to the correction
            return self._x0.reshape(-1, n_cols), self._y0
        xa, ya = self._answers()
        # Answers weigh by repetition, not sample_weight: scikit-learn's
        # weighted binning is a Python loop that alone breaks the 1 s budget.
        k = max(1, int(round(self.answer_weight)))
        x = np.vstack([self._x0.reshape(-1, n_cols), np.repeat(xa, k, axis=0)])
        y = np.concatenate([self._y0, np.repeat(ya, k)])
        return x, y

    def _refit(self) -> None:
        x, y = self._training_set()
        # A column with fewer than two distinct values (e.g. skeleton features
        # of a project without skeletons) carries nothing, and scikit-learn's
        # binner rejects it.
        self._usable = np.flatnonzero([distinct(col[np.isfinite(col)]).size >= 2 for col in x.T])
        x = x[:, self._usable]
        n_pos, n_neg = int(y.sum()), int((~y).sum())
        # Laplace-smoothed base rate: the honest answer while one class is unseen.
        self._constant = (n_pos + 1.0) / (y.size + 2.0)
        self.training_info = {"n_prior": int(self._y0.size), "n_answers": len(self._ya),
                              "n_positive": n_pos, "n_negative": n_neg, "calibrated": False,
                              "learning": "correction" if self._correcting else "refit"}
        self._forest = None
        if n_pos == 0 or n_neg == 0:
            self._model = None
            return
        base = _classifier(
            max_iter=self.max_iter, learning_rate=0.1, max_leaf_nodes=15,
            min_samples_leaf=max(2, min(20, y.size // 20)), l2_regularization=1.0, random_state=self.seed,
        )
        # One thread: on small data OpenMP start-up and contention with other
        # work cost more than they save, and the refit must stay < 1 s.
        with _one_thread():
            if min(n_pos, n_neg) >= MIN_PER_CLASS_TO_CALIBRATE:
                n = len(self._ya)
                due = (self._platt is None or self._usable_at_platt is None
                       or not np.array_equal(self._usable_at_platt, self._usable)
                       or n >= max(self._platt[0] + 1, self.recalibrate_growth * self._platt[0]))
                platt = None if due else self._platt[1]
                self._model = _PlattCalibrated(base, seed=self.seed).fit(x, y, platt=platt)
                if due:
                    self._platt, self._usable_at_platt = (n, self._model.platt), self._usable.copy()
                self.training_info["calibrated"] = True
                self.training_info["calibrated_at_answers"] = self._platt[0]
            else:
                self._model = base.fit(x, y)
        self._forest = _compiled(base, self._usable)

    def _fit_correction(self) -> None:
        """Trees that correct the prior's log-odds toward the answers (the answers alone: ~ms a fit)."""
        self._correction = None
        self.training_info.update(learning="correction", n_answers=len(self._ya))
        if not self._ya:
            return
        xa, ya = self._answers()
        with _one_thread():
            self._correction = BoostedTrees(random_state=self.seed, **self.correction).fit(
                xa, ya, offset=self._prior_logit(xa))

    def _prior_logit(self, x: np.ndarray) -> np.ndarray:
        """The prior model's log-odds of each row of ``x``."""
        return logit(self._prior_proba(x))

    def _prior_logit_rows(self, candidates: list[Candidate]) -> np.ndarray:
        return self._prior_logit(self._rows.rows_of(candidates))

    # ------------------------------------------------------------ prediction
    def predict_proba(self, x) -> np.ndarray:
        """P(real error) for each row of ``x`` (``(N,)`` float)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2:
            raise InputError("ranker", f"features must be a 2D array, got shape {x.shape}")
        if x.shape[0] == 0:
            return np.empty(0)
        if self.feature_names is not None and x.shape[1] != len(self.columns):
            raise InputError("ranker", f"features have {x.shape[1]} columns, the ranker expects {len(self.columns)}")
        if self._correcting and self._correction is not None:
            return self._corrected(x, self._prior_logit(x))
        return self._prior_proba(x)

    def _corrected(self, x: np.ndarray, prior_logit: np.ndarray, *, rows: np.ndarray | None = None) -> np.ndarray:
        """P(error): the prior's log-odds plus the correction's of ``x`` (of ``x[rows]``, read in place)."""
        from scipy.special import expit

        return expit(prior_logit + self._correction.decision_function(x, rows=rows))

    def _prior_proba(self, x: np.ndarray) -> np.ndarray:
        """P(real error) from the classifier fitted on prior (+ answers when refitting)."""
        if x.shape[0] == 0:
            return np.empty(0)
        if self._model is None:
            return np.full(x.shape[0], self._constant)
        # Per-tree OpenMP start-up dominates on the few thousand rows ranked
        # at a time (milliseconds per tree under load); one thread is faster.
        if self._forest is not None:
            proba = _proba_from_raw(self._model, self._forest.decision_function(x))
        else:
            with _one_thread():
                proba = self._model.predict_proba(x[:, self._usable])
        classes = list(self._model.classes_)
        return proba[:, classes.index(True)] if True in classes else np.zeros(x.shape[0])

    def predict_candidates(self, candidates: list[Candidate]) -> np.ndarray:
        """P(real error) of each candidate; the prior's part kept per candidate when correcting."""
        if not (self._correcting and self._correction is not None) or not candidates:
            return self.predict_proba(self.featurize(candidates))
        # The prior model does not change between answers: only the correction's few small trees
        # are evaluated again, not the prior's 60. They read each candidate's kept row where it lies:
        # the list's feature matrix is not gathered (305 MB at 1.4 M candidates, after every edit).
        store, slots = self._rows.indexed(candidates)
        return self._corrected(store, self._prior_logits(candidates), rows=slots)

    def rank(self, candidates: list[Candidate]) -> np.ndarray:
        """Indices of ``candidates``, most probable error first (ties: input order)."""
        p = self.predict_candidates(candidates)
        return np.argsort(-p, kind="stable")

    # ------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> Path:
        """Write the ranker (joblib; prior set included, answers dropped)."""
        import joblib

        path = Path(path)
        state = {
            "format": FILE_FORMAT, "version": FILE_VERSION, "feature_names": self.feature_names,
            "answer_weight": self.answer_weight, "max_iter": self.max_iter, "seed": self.seed,
            "derived": self.derived, "x0": self._x0, "y0": self._y0, "training_info": self.training_info,
        }
        with atomic_write(path) as tmp:
            joblib.dump(state, tmp, compress=3)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Ranker:
        """Read a ranker written by :meth:`save` and refit it on its prior set.

        Only the training arrays are stored (no pickled estimator), so the
        file does not depend on the scikit-learn version; refitting is
        deterministic (fixed seed).
        """
        import joblib

        try:
            state = joblib.load(path)
        except Exception as exc:  # joblib raises many types for a damaged file
            raise InputError(path, f"is not a readable ranker file ({type(exc).__name__}: {exc})") from None
        if not isinstance(state, dict) or state.get("format") != FILE_FORMAT:
            raise InputError(path, "is not a napari-connectome ranker file")
        if int(state.get("version", 0)) > FILE_VERSION:
            raise InputError(path, f"ranker file version {state['version']} is newer than this program's {FILE_VERSION}")
        r = cls(feature_names=state["feature_names"], answer_weight=state["answer_weight"],
                max_iter=state["max_iter"], seed=state["seed"], derived=state.get("derived", True))
        return r.fit(state["x0"], state["y0"])

    def copy(self) -> Ranker:
        """An independent ranker with the same prior set and answers."""
        r = Ranker(feature_names=self.feature_names, answer_weight=self.answer_weight,
                   max_iter=self.max_iter, seed=self.seed, derived=self.derived,
                   recalibrate_growth=self.recalibrate_growth, learning=self.learning,
                   correction=self.correction)
        r._correction = self._correction
        r._x0, r._y0 = self._x0.copy(), self._y0.copy()
        r._xa, r._ya = [a.copy() for a in self._xa], list(self._ya)
        r._model, r._forest, r._constant, r._usable = self._model, self._forest, self._constant, self._usable
        r._platt, r._usable_at_platt = self._platt, self._usable_at_platt
        r.training_info = dict(self.training_info)
        return r
