"""Learning answers as a boosted correction of the prior's log-odds (``Ranker(learning="correction")``)."""

from __future__ import annotations

import numpy as np
import pytest
from test_rank_refit import make_candidates

from napari_connectome.errors import InputError
from napari_connectome.rank import Ranker
from napari_connectome.rank.boost import BoostedTrees
from napari_connectome.rank.ranker import logit
from napari_connectome.rank.strategies import ActiveStrategy, build_strategy


@pytest.fixture(scope="module")
def prior() -> Ranker:
    cands, y = make_candidates(400, seed=1)
    return Ranker(seed=0).fit_candidates(cands, y)


def correcting(prior: Ranker) -> Ranker:
    r = prior.copy()
    r.set_learning("correction")
    return r


def test_an_offset_equal_to_the_baseline_grows_the_same_trees():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4))
    x[rng.random(x.shape) < 0.05] = np.nan
    y = rng.random(300) < 1 / (1 + np.exp(-2 * np.nan_to_num(x[:, 0])))
    options = {"max_iter": 20, "max_leaf_nodes": 7, "min_samples_leaf": 5, "l2_regularization": 1.0}
    plain = BoostedTrees(**options).fit(x, y)
    baseline = float(plain._baseline[0])
    shifted = BoostedTrees(**options).fit(x, y, offset=np.full(300, baseline))
    # The same gradients at every iteration, so the same splits and leaf values; the offset fit's
    # scores are the correction alone (baseline 0).
    for a, b in zip(plain._trees, shifted._trees, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(shifted.decision_function(x) + baseline, plain.decision_function(x), atol=1e-12)


def test_an_offset_fit_takes_one_class_and_constant_columns():
    x = np.column_stack([np.arange(6.0), np.ones(6), np.full(6, np.nan)])
    y = np.zeros(6, bool)
    model = BoostedTrees(max_iter=10, max_leaf_nodes=3, min_samples_leaf=1).fit(x, y, offset=np.full(6, 2.0))
    # Every answer says no: the correction pulls every row below the prior's +2.
    assert (model.decision_function(x) < 0).all()
    with pytest.raises(ValueError, match="offset"):
        BoostedTrees().fit(x, y, offset=np.zeros(5))
    with pytest.raises(ValueError, match="binary"):
        BoostedTrees().fit(x, y)  # without an offset two classes are needed, as in scikit-learn


def test_answers_move_what_they_say_and_only_through_the_correction(prior):
    r = correcting(prior)
    cands, _ = make_candidates(60, seed=7, start=500)
    before = r.predict_candidates(cands)
    prior_fit = r._model
    # The prior calls low-boundary candidates errors; the proofreader says no to ten of the most likely.
    asked = np.argsort(-before)[:10]
    for i in asked:
        r.partial_update(r.featurize([cands[i]]), [False])
    after = r.predict_candidates(cands)
    assert r._model is prior_fit  # the prior model is kept, not refitted
    assert after[asked].mean() < before[asked].mean() - 0.2
    assert r.training_info["learning"] == "correction" and r.n_answers == 10
    # The kept prior log-odds give the scores a fresh computation gives.
    np.testing.assert_allclose(after, r.predict_proba(r._featurize(cands)), rtol=0, atol=1e-12)
    np.testing.assert_allclose(logit(before), r._prior_logit(r._featurize(cands)), atol=1e-9)


def test_taking_an_answer_back_gives_the_scores_of_before(prior):
    r = correcting(prior)
    cands, _ = make_candidates(40, seed=8, start=700)
    for c in cands[:5]:
        r.partial_update(r.featurize([c]), [True])
    five = r.predict_candidates(cands)
    r.partial_update(r.featurize([cands[5]]), [False])
    assert not np.array_equal(r.predict_candidates(cands), five)
    r.forget_last()
    np.testing.assert_array_equal(r.predict_candidates(cands), five)
    for _ in range(5):
        r.forget_last()
    np.testing.assert_array_equal(r.predict_candidates(cands), prior.predict_candidates(cands))
    with pytest.raises(InputError, match="no answer"):
        r.forget_last()


def test_a_copy_learns_on_its_own(prior):
    r = correcting(prior)
    cands, _ = make_candidates(20, seed=9, start=900)
    for i in range(8):
        r.partial_update(r.featurize([cands[i]]), [i % 2 == 0])
    twin = r.copy()
    assert twin.learning == "correction"
    np.testing.assert_array_equal(twin.predict_candidates(cands), r.predict_candidates(cands))
    twin.partial_update(twin.featurize([cands[8]]), [False])
    assert twin.n_answers == 9 and r.n_answers == 8
    assert not np.array_equal(twin.predict_candidates(cands), r.predict_candidates(cands))


def test_the_correction_waits_for_answers_it_can_split(prior):
    # A tree whose root cannot split adds nothing (scikit-learn's rule: the baseline carries the
    # constant, and here the baseline is the prior): fewer than 2 × min_samples_leaf answers leave
    # the prior's scores as they were; the active strategy's per-kind level shift moves first.
    r = correcting(prior)
    cands, _ = make_candidates(20, seed=11, start=1300)
    need = 2 * r.correction["min_samples_leaf"]
    for c in cands[: need - 1]:
        r.partial_update(r.featurize([c]), [False])
    # (the same up to the log-odds' round trip)
    np.testing.assert_allclose(r.predict_candidates(cands), prior.predict_candidates(cands), rtol=0, atol=1e-12)
    r.partial_update(r.featurize([cands[need - 1]]), [True])
    assert np.abs(r.predict_candidates(cands) - prior.predict_candidates(cands)).max() > 1e-3


def test_switching_the_learning_relearns_the_answers_held(prior):
    cands, _ = make_candidates(30, seed=10, start=1100)
    answers = [bool(i % 3 == 0) for i in range(8)]
    refit = prior.copy()
    corr = correcting(prior)
    for c, a in zip(cands, answers, strict=False):
        refit.partial_update(refit.featurize([c]), [a])
        corr.partial_update(corr.featurize([c]), [a])
    refit.set_learning("correction")
    np.testing.assert_array_equal(refit.predict_candidates(cands), corr.predict_candidates(cands))
    corr.set_learning("refit")
    fresh = prior.copy()
    for c, a in zip(cands, answers, strict=False):
        fresh.partial_update(fresh.featurize([c]), [a])
    np.testing.assert_array_equal(corr.predict_candidates(cands), fresh.predict_candidates(cands))
    with pytest.raises(InputError, match="learning"):
        corr.set_learning("warm")
    with pytest.raises(InputError, match="learning"):
        Ranker(learning="online")
    with pytest.raises(InputError, match="correction options"):
        Ranker(correction={"depth": 3})


def test_the_active_strategy_corrects_by_default_and_says_so(prior):
    strat = build_strategy({"name": "active"}, model=prior)
    assert isinstance(strat, ActiveStrategy) and strat.ranker.learning == "correction"
    assert strat.to_config()["learning"] == "correction"
    again = build_strategy(strat.to_config(), model=prior)
    assert again.ranker.learning == "correction"
    old = build_strategy({"name": "active", "learning": "refit"}, model=prior)
    assert old.ranker.learning == "refit" and old.to_config()["learning"] == "refit"
    with pytest.raises(InputError):
        build_strategy({"name": "active", "learning": "sometimes"}, model=prior)
