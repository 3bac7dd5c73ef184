"""The background learner on its own: what a job hands back, failures kept, torn reads, shutdown.

No project here: a fake Proofreader (only ``version``), a strategy that
orders by value and can be held or made to fail, and a finder that can fail,
or see an edit land while it reads.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from napari_connectome.errors import InputError
from napari_connectome.tasks.learning import Answered, BackgroundLearner, Taken


class Reverse:
    """Orders candidates by descending value; ``observe`` can be held (``release``) or fail once."""

    name = "reverse"

    def __init__(self, *, fail_observe: bool = False) -> None:
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()
        self.fail_observe = fail_observe
        self.observed: list[tuple[object, bool]] = []
        self.retracted: list[object] = []

    def observe(self, candidate, answer: bool) -> None:
        self.entered.set()
        assert self.release.wait(30), "the test never released observe"
        if self.fail_observe:
            raise RuntimeError("ranker exploded")
        self.observed.append((candidate, answer))

    def order(self, candidates: list) -> list[int]:
        return sorted(range(len(candidates)), key=lambda i: -candidates[i])

    def retract(self, candidate) -> None:
        self.retracted.append(candidate)


class Find:
    """Returns ``found``; can fail once, or move the Proofreader's version on each read (an edit landing)."""

    def __init__(self, found: list) -> None:
        self.found = found
        self.calls = 0
        self.fail_next = False
        self.edit_while_reading = False

    def __call__(self, pr, **options) -> list:
        self.calls += 1
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("disk went away")
        if self.edit_while_reading:
            pr.version += 1
        return list(self.found)


def answered(answer: str = "yes", candidate=7) -> Answered:
    return Answered(SimpleNamespace(id="t-1", candidate=candidate), answer, edit_id=None)


@pytest.fixture(params=[True, False], ids=["background", "synchronous"])
def make(request):
    """A learner factory (both modes); every learner made is shut down after the test."""
    made = []

    def build(strategy=None, find=None, **kw):
        pr = SimpleNamespace(version=0)
        learner = BackgroundLearner(pr, strategy or Reverse(), find or Find([1, 3, 2]), {},
                                    in_background=request.param, **kw)
        made.append(learner)
        return learner

    yield build
    for learner in made:
        learner.shutdown()


def test_a_job_observes_refinds_and_hands_back_the_new_list_and_its_order(make):
    strat, find = Reverse(), Find([1, 3, 2])
    learner = make(strat, find)
    done = answered("yes")
    learner.submit(done, [5], frozenset(), refind=True)
    assert learner.wait() and learner.pending and learner.ready
    taken = learner.take([5])
    assert (taken.candidates, taken.order, taken.redo, taken.note) == ([1, 3, 2], [1, 2, 0], "", "")
    assert done.learnt and strat.observed == [(7, True)] and find.calls == 1
    assert not learner.pending and learner.take([5]) == Taken()  # nothing pending: nothing to do


def test_an_order_fits_only_the_list_it_was_computed_for(make):
    learner = make()
    cands = [2, 9, 4]
    learner.submit(answered("no"), cands, frozenset(), refind=False)
    assert learner.wait() and learner.take(cands).order == [1, 2, 0]
    learner.submit(None, cands, frozenset(), refind=False)
    assert learner.wait()
    taken = learner.take(list(cands))  # an equal list, but another one: the caller orders it again
    assert (taken.order, taken.redo) == (None, "reorder")


def test_a_failed_observe_is_raised_and_the_refind_it_owed_is_asked_at_the_next_take(make):
    strat = Reverse(fail_observe=True)
    learner = make(strat)
    done = answered("no")
    learner.submit(done, [5], frozenset(), refind=True)
    assert learner.wait() and not learner.ready
    with pytest.raises(InputError, match="could not learn from the answer 'no' to task t-1.*ranker exploded"):
        learner.take([5])
    assert not done.learnt and not learner.pending
    assert learner.take([5]).redo == "refind"
    assert learner.take([5]).redo == ""  # asked once


def test_a_failed_refind_is_kept_as_a_note_and_redone_by_the_caller(make):
    find = Find([1, 2])
    learner = make(find=find)
    find.fail_next = True
    learner.submit(None, [5], frozenset(), refind=True)
    assert learner.wait() and not learner.ready
    taken = learner.take([5])
    assert taken.redo == "refind" and taken.candidates is None
    assert taken.note == "finding the candidates again in the background failed (RuntimeError: disk went away); done again"


def test_a_read_torn_by_edits_is_retried_then_left_to_the_caller(make):
    find = Find([1, 2])
    learner = make(find=find, find_attempts=2)
    find.edit_while_reading = True
    learner.submit(None, [5], frozenset(), refind=True)
    assert learner.wait() and not learner.ready
    assert find.calls == 2 and learner.take([5]) == Taken(redo="refind")


def test_a_list_found_before_an_edit_is_not_taken(make):
    learner = make()
    learner.submit(None, [5], frozenset(), refind=True)
    assert learner.wait() and learner.ready
    learner.proofreader.version += 1  # an edit committed after the read
    assert not learner.ready and learner.take([5]).redo == "refind"


def test_retract_goes_to_the_strategy(make):
    strat = Reverse()
    learner = make(strat)
    learner.retract(7)
    assert strat.retracted == [7] and learner.order([]) == []


def test_a_running_job_is_waited_for_with_a_timeout_and_shutdown_waits_and_notes_its_failure():
    strat = Reverse(fail_observe=True)
    learner = BackgroundLearner(SimpleNamespace(version=0), strat, Find([1]), {})
    strat.release.clear()
    learner.submit(answered(), [5], frozenset(), refind=False)
    assert strat.entered.wait(10) and learner.running and not learner.ready
    assert learner.wait(timeout=0.05) is False and learner.running
    threading.Timer(0.1, strat.release.set).start()
    note = learner.shutdown()
    assert not learner.running and not learner.pending
    assert note == "learning while closing failed (RuntimeError: ranker exploded)"


def test_a_synchronous_learner_has_finished_when_submit_returns():
    learner = BackgroundLearner(SimpleNamespace(version=0), Reverse(), Find([1]), {}, in_background=False)
    learner.submit(None, [4, 8], frozenset(), refind=False)
    assert not learner.running and learner.ready and learner.shutdown() is None and not learner.pending
