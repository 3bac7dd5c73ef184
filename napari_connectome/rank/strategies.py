"""Query strategies: in which order a proofreader sees the candidates.

Each is a named class built from a serialisable config
(``build_strategy({"name": "active", "epsilon": 0.1, ...})``):

* ``random`` — a seeded shuffle (a candidate's place depends only on the seed
  and on what it proposes, not on the list's order);
* ``size`` — biggest impact first: the focused-proofreading habit;
* ``static`` — expected benefit ``P(error) × impact ÷ predicted seconds``
  from the prior model, never retrained;
* ``active`` — the same expected benefit from a model retrained after every
  answer, mixed with uncertainty sampling: with probability ``epsilon`` a
  pick goes to the candidate the model is least sure of
  (highest ``1 − |2p − 1|``, ties by expected benefit), so the model also
  learns where it is unsure. The draw is seeded by ``(seed, answers so far)``,
  so asking for the order twice gives the same answer.
"""

from __future__ import annotations

import abc
import hashlib
import operator

import numpy as np

from napari_connectome.arrays import distinct
from napari_connectome.candidates.model import Candidate, impacts
from napari_connectome.candidates.rows import RowCache, serials
from napari_connectome.errors import InputError
from napari_connectome.rank.ranker import Ranker, logit
from napari_connectome.rank.timing import TimeModel

#: The registry name of the prior model shipped in ``models/``.
DEFAULT_PRIOR = "rank-prior-gala-fib"


def candidate_key(c: Candidate) -> tuple:
    """What a candidate proposes, independent of its id: the same edit has the same key after re-finding."""
    if c.kind == "false_split":
        return (c.kind, tuple(sorted(int(s) for s in c.supervoxels)))
    return (c.kind, tuple(sorted(int(s) for s in c.supervoxels)), tuple(sorted(int(s) for s in c.sinks)))


_KIND = operator.attrgetter("kind")


def candidate_key_text(c: Candidate) -> str:
    """``repr(candidate_key(c))``, made once per candidate object and kept on it (not a field).

    A string hashes once (Python keeps a str's hash), a key tuple at every lookup: counting or sorting
    10^6 candidates by key goes through this.
    """
    key = c.__dict__.get("_tie_key")
    if key is None:
        if c.kind == "false_split" and len(c.supervoxels) == 2:
            # repr(candidate_key(c)) written directly: an edit brings ~2,000 new ones
            a, b = int(c.supervoxels[0]), int(c.supervoxels[1])
            a, b = (a, b) if a <= b else (b, a)
            key = f"('false_split', ({a}, {b}))"
        else:
            key = repr(candidate_key(c))
        c._tie_key = key
    return key


def _sorted_keys(keys: list[str]) -> np.ndarray:
    """Indices of ``keys`` in sorted order, equal keys in list order.

    Python's sort, not numpy's: a false-merge candidate's key lists every supervoxel of a cut's side, so
    keys run to kilobytes, and a fixed-width numpy string array would be as wide as the longest.
    """
    return np.fromiter(sorted(range(len(keys)), key=keys.__getitem__), dtype=np.int64, count=len(keys))


def _key_hashes(candidates: list[Candidate]) -> np.ndarray:
    return np.fromiter((hash(candidate_key_text(c)) for c in candidates), np.int64, len(candidates))


class _KeyOrder:
    """The latest list's candidates sorted by their keys (the tie-break), kept while the list is the same.

    Sorting 1.4 M keys is ~1 s: made once per list of candidates (an accepted edit makes a new one), not
    once per order (every answer, since the model changes). A new list that keeps most of the last one's
    objects (the list after an edit) is not sorted again: the kept candidates stay in the last order and
    each new one is placed among them by a binary search on keys. Equal keys keep list order, as a sort
    from scratch keeps them (found through each key's hash, kept per candidate object).
    """

    def __init__(self) -> None:
        self._list: list | None = None
        self._by_key: np.ndarray | None = None
        self._serials: np.ndarray | None = None
        # Each key's hash, made once per candidate object.
        self._hashes = RowCache(_key_hashes)

    def holds(self, candidates: list[Candidate]) -> bool:
        """Whether the kept order is of this list (the same objects in the same places)."""
        return self._by_key is not None and self._list is not None and candidates == self._list

    def __call__(self, candidates: list[Candidate]) -> np.ndarray:
        if self.holds(candidates):
            return self._by_key
        numbers = serials(candidates)
        by_key = None
        if self._serials is not None and numbers.size and distinct(numbers).size == numbers.size:
            by_key = self._from_last(candidates, numbers)
        if by_key is None:
            by_key = _sorted_keys([candidate_key_text(c) for c in candidates])
            # Hash the keys now, while they are at hand: else the first list after an edit hashes them all
            # (1.9 s at 1.4 M candidates, in the learning the proofreader may wait for).
            self._hashes(candidates)
        self._list, self._by_key, self._serials = list(candidates), by_key, numbers[by_key]
        return by_key

    def _from_last(self, candidates: list[Candidate], numbers: np.ndarray) -> np.ndarray | None:
        """The key order of ``candidates`` from the last list's, or None when it kept less than half of it."""
        import bisect

        at = np.full(max(int(numbers.max()), int(self._serials.max(initial=0))) + 1, -1, np.int64)
        at[numbers] = np.arange(numbers.size)
        kept = at[self._serials]
        kept = kept[kept >= 0]
        if kept.size < numbers.size // 2:
            return None
        fresh = np.ones(numbers.size, bool)
        fresh[kept] = False
        fresh = np.flatnonzero(fresh)

        def key(i) -> tuple[str, int]:
            return candidate_key_text(candidates[i]), int(i)

        # Kept candidates with equal keys (equal hashes) must stand in list order, which may have changed.
        hashes = self._hashes(candidates)[kept]
        same = np.r_[False, hashes[1:] == hashes[:-1], False]
        starts = np.flatnonzero(~same[:-1] & same[1:])
        stops = np.flatnonzero(same[:-1] & ~same[1:]) + 1
        for i0, i1 in zip(starts.tolist(), stops.tolist(), strict=True):
            kept[i0:i1] = sorted(kept[i0:i1].tolist(), key=key)
        new = sorted(fresh.tolist(), key=key)
        where = [bisect.bisect_left(kept, key(i), key=key) for i in new]
        return np.insert(kept, np.asarray(where, np.int64), np.asarray(new, np.int64))


def _order(score: np.ndarray, candidates: list[Candidate], by_key: _KeyOrder) -> np.ndarray:
    """Indices by score, highest first; equal scores by the candidates' keys.

    Ties fall back on the candidate's key, so the order never depends on the
    order the finder happened to list them in. Keys are made only for
    candidates in a tie, once per candidate object (the finder hands back the
    same objects after an edit). Where most of the list is tied (1.4 M
    candidates at 1024³, most of them tied: resolving each tie in Python was
    ~2.3 s of every order), the list sorted by key is kept (``by_key``) and
    sorted again, stably, by score; where few are, only those are sorted.
    """
    s = -np.asarray(score, dtype=np.float64)
    if by_key.holds(candidates):
        # The list's key order is at hand (most of it was tied before): one stable sort of it by score is
        # the order whether or not any score is tied now (one sort of 1.4 M at 1024³, not two).
        keyed = by_key(candidates)
        return keyed[np.argsort(s[keyed], kind="stable")]
    # Not a stable sort (3x faster at 16,000): only tied scores have more than one order, and those are
    # put in key order, equal keys in list order, below.
    order = np.argsort(s)
    ranked = s[order]
    same = (ranked[1:] == ranked[:-1]) | (np.isnan(ranked[1:]) & np.isnan(ranked[:-1]))
    if not same.any():
        return order
    tied = np.r_[same, False] | np.r_[False, same]
    if 2 * int(tied.sum()) > len(candidates):
        keyed = by_key(candidates)
        return keyed[np.argsort(s[keyed], kind="stable")]
    group = np.cumsum(np.r_[True, ~same])[tied]
    idx = order[tied]
    by_place = np.lexsort((idx, group))  # each group's members in list order, so equal keys stay so
    group, idx = group[by_place], idx[by_place]
    sub = _sorted_keys([candidate_key_text(candidates[j]) for j in idx.tolist()])
    order[tied] = idx[sub[np.argsort(group[sub], kind="stable")]]
    return order


class Strategy(abc.ABC):
    """Base class: :meth:`order` the candidates, :meth:`observe` each answer."""

    name = ""
    #: Whether answers change the order (:meth:`observe` learns); when not, the order of an unchanged
    #: list of candidates stays valid after an answer.
    learns = False

    @abc.abstractmethod
    def scores(self, candidates: list[Candidate]) -> np.ndarray:
        """One score per candidate; higher is asked first."""

    def order(self, candidates: list[Candidate]) -> np.ndarray:
        """Indices of ``candidates``, the one to ask first first."""
        if not candidates:
            raise InputError(f"{self.name} strategy", "no candidates to rank")
        return _order(self.scores(candidates), candidates, self._by_key())

    rank = order

    def _by_key(self) -> _KeyOrder:
        """This strategy's :class:`_KeyOrder` (made on first use: subclasses need not call an ``__init__``)."""
        by_key = self.__dict__.get("_key_order")
        if by_key is None:
            by_key = self._key_order = _KeyOrder()
        return by_key

    def observe(self, candidate: Candidate, answer: bool) -> None:  # noqa: B027
        """Learn from a proofreader's answer (True: it was a real error).

        Strategies that do not learn (random, size, static) keep this no-op.
        """

    def retract(self, candidate: Candidate) -> None:  # noqa: B027
        """Forget the latest answer, about ``candidate`` (the proofreader undid it).

        Strategies that do not learn keep this no-op.
        """

    @abc.abstractmethod
    def to_config(self) -> dict:
        """The serialisable config that :func:`build_strategy` rebuilds this from."""


class RandomStrategy(Strategy):
    """A seeded random order (the baseline)."""

    name = "random"

    def __init__(self, *, seed: int = 0) -> None:
        self.seed = int(seed)
        self._draws = RowCache(self._draw)

    def _draw(self, candidates: list[Candidate]) -> np.ndarray:
        out = np.empty(len(candidates))
        for i, c in enumerate(candidates):
            h = hashlib.blake2b(repr((self.seed, candidate_key(c))).encode(), digest_size=8).digest()
            out[i] = int.from_bytes(h, "little") / 2.0**64
        return out

    def scores(self, candidates: list[Candidate]) -> np.ndarray:
        return self._draws(candidates)

    def to_config(self) -> dict:
        return {"name": self.name, "seed": self.seed}


class SizeStrategy(Strategy):
    """Largest impact first."""

    name = "size"

    def __init__(self) -> None:
        self._impact = RowCache(impacts)

    def scores(self, candidates: list[Candidate]) -> np.ndarray:
        return self._impact(candidates)

    def to_config(self) -> dict:
        return {"name": self.name}


def _load_model(model) -> tuple[Ranker, str]:
    """A ranker from a :class:`Ranker`, a registry name or a file path."""
    if isinstance(model, Ranker):
        return model.copy(), "<in memory>"
    from pathlib import Path

    text = str(model)
    if Path(text).suffix in (".joblib", ".pkl") or Path(text).is_file():
        return Ranker.load(text), text
    from napari_connectome_models.registry import ModelRegistryError, load_registry, weights_path

    try:
        entries = load_registry()
        if text not in entries:
            known = ", ".join(sorted(e for e, v in entries.items() if v.task == "candidate-ranking")) or "none"
            raise InputError("model", f"{text!r} is not a registered ranking model (known: {known})")
        return Ranker.load(weights_path(entries[text])), text
    except ModelRegistryError as exc:
        raise InputError("model", str(exc)) from None


class StaticStrategy(Strategy):
    """Expected benefit from the prior model, never retrained.

    Parameters
    ----------
    model
        A :class:`Ranker`, a registry name or a ``.joblib`` path.
    time_model
        Predicted seconds per decision (config dict or :class:`TimeModel`).
    """

    name = "static"

    def __init__(self, *, model=DEFAULT_PRIOR, time_model=None) -> None:
        self.ranker, self.model_name = _load_model(model)
        self.time_model = time_model if isinstance(time_model, TimeModel) else TimeModel.from_config(time_model)
        # (impact, predicted seconds, kind's index in _kinds) per candidate, kept by identity
        self._kinds: list[str] = []
        self._columns = RowCache(self._candidate_columns)

    def _candidate_columns(self, candidates: list[Candidate]) -> np.ndarray:
        # map/attrgetter: C-level passes (an edit brings ~2,000 new candidates).
        kinds = list(map(_KIND, candidates))
        seconds, code = {}, {}
        for kind in dict.fromkeys(kinds):
            if kind not in self._kinds:
                self._kinds.append(kind)
            seconds[kind], code[kind] = self.time_model.seconds_for(kind), self._kinds.index(kind)
        n = len(candidates)
        out = np.empty((n, 3))
        out[:, 0] = np.maximum(impacts(candidates), 0.0)
        out[:, 1] = np.fromiter(map(seconds.__getitem__, kinds), np.float64, n)
        out[:, 2] = np.fromiter(map(code.__getitem__, kinds), np.float64, n)
        return out

    def probabilities(self, candidates: list[Candidate]) -> np.ndarray:
        return self.ranker.predict_candidates(candidates)

    def benefit(self, candidates: list[Candidate], p: np.ndarray) -> np.ndarray:
        columns = self._columns(candidates)
        return p * columns[:, 0] / columns[:, 1]

    def scores(self, candidates: list[Candidate]) -> np.ndarray:
        return self.benefit(candidates, self.probabilities(candidates))

    def to_config(self) -> dict:
        return {"name": self.name, "model": self.model_name, "time_model": self.time_model.to_config()}


class ActiveStrategy(StaticStrategy):
    """Expected benefit from a model that learns after every answer, plus uncertainty sampling.

    Two things are learnt from the answers. The model itself learns them (by
    default a boosted correction of the prior's log-odds fitted on the
    answers, ``learning``; it learns *which* candidates of a kind are real). And
    each kind's *level* is re-estimated on this volume, because how often a
    kind is real depends on the volume and the agglomeration threshold far
    more than on anything the prior saw (on gala-fib train, 20 % of
    false-split candidates are real at threshold 0.5 and none at 0.97; not
    one false-merge candidate is real at any threshold, so the prior can only
    say "never"). See :meth:`probabilities`.

    Exploration (a fraction ``epsilon`` of the picks) first makes sure every
    kind has been asked ``min_per_kind`` times — the best candidate of the
    least-asked kind — and after that goes to the candidate the model is
    least sure of (highest ``1 − |2p − 1|``, ties by expected benefit).

    Parameters
    ----------
    epsilon
        Fraction of picks that explore.
    seed
        Seed of the exploration draws.
    min_per_kind
        Answers of each kind that exploration collects before it turns to uncertainty.
    level_sd
        Prior standard deviation (in log-odds) of a kind's shift from the model's level.
    learning
        How the model learns the answers (:data:`~napari_connectome.rank.ranker.LEARNING`):
        ``"correction"`` (default: the prior model kept, a boosted correction of its log-odds fitted
        on the answers, a few ms) or ``"refit"`` (classifier and calibration fitted again on prior +
        answers, ~100 ms; what this strategy did before).
    """

    name = "active"
    learns = True

    def __init__(self, *, model=DEFAULT_PRIOR, time_model=None, epsilon: float = 0.1, seed: int = 0,
                 min_per_kind: int = 5, level_sd: float = 3.0, learning: str = "correction") -> None:
        super().__init__(model=model, time_model=time_model)
        self.ranker.set_learning(learning)
        epsilon, level_sd, min_per_kind = float(epsilon), float(level_sd), int(min_per_kind)
        if not 0.0 <= epsilon <= 1.0:
            raise InputError("active strategy", f"epsilon must be in [0, 1], got {epsilon}")
        if not level_sd > 0.0:
            raise InputError("active strategy", f"level_sd must be > 0, got {level_sd}")
        if min_per_kind < 0:
            raise InputError("active strategy", f"min_per_kind must be ≥ 0, got {min_per_kind}")
        self.epsilon, self.level_sd, self.min_per_kind = epsilon, level_sd, min_per_kind
        self.seed = int(seed)
        self.last_pick_explored = False
        # kind → [(log-odds the model gave the candidate when it was asked, answer), ...]
        self._asked: dict[str, list[tuple[float, bool]]] = {}

    def level_shift(self, kind: str) -> float:
        """The log-odds shift of ``kind`` on this volume (0 before any answer of that kind).

        The maximum a-posteriori intercept ``δ`` of a logistic model
        ``P(yes) = σ(logit p + δ)`` over the answers of that kind, ``p``
        being what the model said when each was asked (before it learnt
        the answer), with a Normal(0, ``level_sd``) prior on ``δ``: a few
        answers move it a little, a consistent run of them a lot.
        """
        rows = self._asked.get(kind)
        if not rows:
            return 0.0
        from scipy.optimize import brentq
        from scipy.special import expit

        z = np.array([r[0] for r in rows])
        y = np.array([r[1] for r in rows], dtype=np.float64)
        inv_var = 1.0 / self.level_sd**2

        def slope(delta: float) -> float:
            return float(np.sum(y - expit(z + delta))) - delta * inv_var

        # The slope of the log-posterior falls strictly with δ and |Σ(y − q)| ≤ n,
        # so its root lies within ±n·sd²; bisection there cannot overshoot the
        # way plain Newton does on confident, contradicted predictions.
        bound = (len(rows) + 1.0) * self.level_sd**2
        return float(brentq(slope, -bound, bound, xtol=1e-9))

    def probabilities(self, candidates: list[Candidate]) -> np.ndarray:
        """P(error) from the retrained model, shifted per kind by :meth:`level_shift`."""
        from scipy.special import expit

        p = super().probabilities(candidates)
        if not self._asked:
            return p
        kind_of = self._columns(candidates)[:, 2]
        z = logit(p)
        for kind in self._asked:
            if kind in self._kinds:
                z[kind_of == self._kinds.index(kind)] += self.level_shift(kind)
        return expit(z)

    def order(self, candidates: list[Candidate]) -> np.ndarray:
        if not candidates:
            raise InputError(f"{self.name} strategy", "no candidates to rank")
        p = self.probabilities(candidates)
        benefit = self.benefit(candidates, p)
        order = _order(benefit, candidates, self._by_key())
        rng = np.random.default_rng([self.seed, self.ranker.n_answers])
        self.last_pick_explored = bool(rng.random() < self.epsilon)
        if self.last_pick_explored:
            kind_of = self._columns(candidates)[:, 2].astype(np.int64)
            present = [self._kinds[k] for k in distinct(kind_of).tolist()]
            counts = {k: len(self._asked.get(k, ())) for k in sorted(present)}
            least = min(counts, key=lambda k: (counts[k], k))
            if counts[least] < self.min_per_kind:
                code = self._kinds.index(least)
                first = next(int(j) for j in order if kind_of[j] == code)
            else:
                uncertainty = 1.0 - np.abs(2.0 * p - 1.0)
                first = int(np.lexsort((-benefit, -uncertainty))[0])
            order = np.r_[first, order[order != first]]
        return order

    rank = order

    def observe(self, candidate: Candidate, answer: bool) -> None:
        x = self.ranker.featurize([candidate])
        # The model's belief *before* it learns this answer: after the refit
        # it would partly echo the answer back.
        z = float(logit(self.ranker.predict_proba(x))[0])
        self._asked.setdefault(candidate.kind, []).append((z, bool(answer)))
        self.ranker.partial_update(x, [bool(answer)])

    def retract(self, candidate: Candidate) -> None:
        asked = self._asked.get(candidate.kind)
        if not asked:
            raise InputError(f"{self.name} strategy", f"no answer about a {candidate.kind} candidate to take back")
        asked.pop()
        if not asked:
            del self._asked[candidate.kind]
        self.ranker.forget_last()

    def to_config(self) -> dict:
        return {**super().to_config(), "epsilon": self.epsilon, "seed": self.seed,
                "min_per_kind": self.min_per_kind, "level_sd": self.level_sd, "learning": self.ranker.learning}



STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls for cls in (RandomStrategy, SizeStrategy, StaticStrategy, ActiveStrategy)
}


def build_strategy(config: dict | str, *, model=None) -> Strategy:
    """A strategy from its config (``{"name": ..., options}``) or its bare name.

    ``model`` (a :class:`Ranker`, registry name or path) overrides the
    config's ``model`` for ``static`` and ``active``.
    """
    if isinstance(config, str):
        config = {"name": config}
    if not isinstance(config, dict) or "name" not in config:
        raise InputError("strategy", f"expected a name or a mapping with 'name', got {config!r}")
    options = {k: v for k, v in config.items() if k != "name"}
    name = str(config["name"])
    cls = STRATEGIES.get(name)
    if cls is None:
        raise InputError("--strategy", f"unknown strategy {name!r} (choose from {', '.join(STRATEGIES)})")
    if model is not None and cls in (StaticStrategy, ActiveStrategy):
        options["model"] = model
    try:
        return cls(**options)
    except TypeError as exc:
        raise InputError(f"{name} strategy", f"bad options {sorted(options)}: {exc}") from None
