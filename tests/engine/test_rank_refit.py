"""What keeps the learner up with the proofreader: per-candidate feature rows, Platt scaling refitted on a schedule."""

from __future__ import annotations

import numpy as np
import pytest

from napari_connectome.candidates.model import Candidate
from napari_connectome.errors import InputError
from napari_connectome.rank import Ranker


def make_candidates(n: int, seed: int = 0, start: int = 0) -> tuple[list[Candidate], np.ndarray]:
    rng = np.random.default_rng(seed)
    out, truth = [], []
    for i in range(start, start + n):
        kind = ("false_split", "false_merge")[i % 2]
        mean = float(rng.uniform(0, 1))
        feats = {"mean": mean, "area": float(rng.lognormal(3, 1)), "noise": float(rng.normal())}
        out.append(Candidate(id=f"c{i}", kind=kind, location_nm=(0.0, 0.0, float(i)), segments=(i, i + 1),
                             supervoxels=(2 * i + 1, 2 * i + 2), features=feats, impact=float(rng.lognormal(8, 1))))
        truth.append(rng.random() < 1 / (1 + np.exp(12 * (mean - 0.45))))
    return out, np.array(truth)


@pytest.fixture(scope="module")
def prior() -> Ranker:
    cands, y = make_candidates(400, seed=1)
    return Ranker(seed=0).fit_candidates(cands, y)


def test_features_of_a_refound_list_equal_a_fresh_featurisation(prior):
    r = prior.copy()
    first, _ = make_candidates(30, seed=2)
    x1 = r.featurize(first)
    np.testing.assert_array_equal(x1, r._featurize(first))
    # The caller gets the kept rows themselves, read-only: they cannot be changed under the cache.
    with pytest.raises(ValueError):
        x1[:] = -7.0
    # A re-found list: some candidates kept (same objects, another order), some new, some gone.
    new, _ = make_candidates(10, seed=3, start=100)
    again = [*first[20:], *new[:5], *first[:8], *new[5:]]
    x2 = r.featurize(again)
    np.testing.assert_array_equal(x2, r._featurize(again))
    # One candidate (an answer) reads the kept rows and keeps them.
    np.testing.assert_array_equal(r.featurize([again[3]]), r._featurize([again[3]]))
    np.testing.assert_array_equal(r.featurize(again), x2)
    assert r.featurize([]).shape == (0, len(r.columns))


def answer_sequence(n: int, seed: int = 5):
    cands, y = make_candidates(n, seed=seed, start=1000)
    return cands, ~y  # contradict the prior, so the answers move the model


def test_platt_scaling_is_refitted_when_the_answers_have_grown_by_the_factor(prior):
    r = prior.copy()
    r.recalibrate_growth = 1.5
    cands, y = answer_sequence(30)
    at = []
    for c, a in zip(cands, y, strict=True):
        r.partial_update(r.featurize([c]), [a])
        at.append(r.training_info["calibrated_at_answers"])
    assert sorted(set(at)) == [1, 2, 3, 5, 8, 12, 18, 27]
    every = prior.copy()
    every.recalibrate_growth = 1.0
    for c, a in zip(cands, y, strict=True):
        every.partial_update(every.featurize([c]), [a])
        assert every.training_info["calibrated_at_answers"] == every.n_answers


def test_a_reused_scaling_keeps_the_classifiers_order(prior):
    """The classifier is refitted on every answer either way; only the monotone scaling is older."""
    lazy, every = prior.copy(), prior.copy()
    lazy.recalibrate_growth, every.recalibrate_growth = 1.5, 1.0
    cands, y = answer_sequence(11)
    for c, a in zip(cands, y, strict=True):
        lazy.partial_update(lazy.featurize([c]), [a])
        every.partial_update(every.featurize([c]), [a])
    assert lazy.training_info["calibrated_at_answers"] == 8 and every.training_info["calibrated_at_answers"] == 11
    test, truth = make_candidates(300, seed=9, start=5000)
    p_lazy, p_every = lazy.predict_candidates(test), every.predict_candidates(test)
    np.testing.assert_array_equal(np.argsort(p_lazy, kind="stable"), np.argsort(p_every, kind="stable"))
    assert np.abs(p_lazy - p_every).max() < 0.2
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(truth, p_lazy) == pytest.approx(roc_auc_score(truth, p_every))


def test_taking_an_answer_back_never_keeps_a_scaling_fitted_on_it(prior):
    r = prior.copy()
    r.recalibrate_growth = 1.5
    cands, y = answer_sequence(5)
    for c, a in zip(cands, y, strict=True):
        r.partial_update(r.featurize([c]), [a])
    assert r.training_info["calibrated_at_answers"] == 5
    r.forget_last()
    # Calibrated again, on the four answers left.
    assert r.n_answers == 4 and r.training_info["calibrated_at_answers"] == 4
    # The same as a ranker that was told the four answers from the start and calibrated on all four.
    fresh = prior.copy()
    fresh.recalibrate_growth = 1.0
    for c, a in zip(cands[:4], y[:4], strict=True):
        fresh.partial_update(fresh.featurize([c]), [a])
    test, _ = make_candidates(50, seed=11, start=7000)
    np.testing.assert_allclose(r.predict_candidates(test), fresh.predict_candidates(test))


def test_by_default_the_scaling_is_refitted_after_every_answer(prior):
    r = prior.copy()
    assert r.recalibrate_growth == 1.0
    cands, y = answer_sequence(4)
    for c, a in zip(cands, y, strict=True):
        r.partial_update(r.featurize([c]), [a])
        assert r.training_info["calibrated_at_answers"] == r.n_answers


def test_a_growth_below_one_is_refused():
    with pytest.raises(InputError, match="recalibrate_growth"):
        Ranker(recalibrate_growth=0.5)
