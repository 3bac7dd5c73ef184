"""Synapse questions in the micro-task queue: turns, verdicts in the store, the classifier, undo, stale rows."""

from __future__ import annotations

import numpy as np
import pytest
from test_tasks import FakeClock, open_session, task_rows

from napari_connectome.errors import InputError
from napari_connectome.graph import agglomerate_project
from napari_connectome.proofread import Proofreader
from napari_connectome.samples import gala_fib_project
from napari_connectome.synapses.review import FEATURES, synapse_features
from napari_connectome.synapses.store import SynapseStore
from napari_connectome.synapses.table import SynapseTable
from napari_connectome.tasks import prepare_view
from napari_connectome.tasks.synapse_queue import SynapseQueue


def _rows(project, n: int = 24, seed: int = 3) -> SynapseTable:
    """``n`` rows between points of different segments, two rows per synapse id (polyadic pairs)."""
    pr = Proofreader.open(project, read_only=True)
    try:
        level = pr.supervoxel_volume().levels[0]
        sv = np.asarray(level.array[:])
        vs, off = np.asarray(level.voxel_size, float), np.asarray(level.offset, float)
        rng = np.random.default_rng(seed)
        fg = np.argwhere(sv > 0)
        pre, post = [], []
        while len(pre) < n:
            a, b = fg[rng.integers(len(fg))], fg[rng.integers(len(fg))]
            pa, pb = a * vs + off, b * vs + off
            if pr.segment_of(int(sv[tuple(a)])) != pr.segment_of(int(sv[tuple(b)])):
                pre.append(pa)
                post.append(pb)
    finally:
        pr.close()
    return SynapseTable(synapse_id=np.arange(n) // 2 + 1, pre=np.array(pre), post=np.array(post),
                        pre_id=np.zeros(n, np.uint64), post_id=np.zeros(n, np.uint64),
                        score=np.linspace(0.001, 0.01, n).astype(np.float32))


@pytest.fixture
def project(tmp_path):
    p = gala_fib_project(tmp_path / "gala")
    agglomerate_project(p, threshold=0.5)
    with SynapseStore(p.component_path("synapses")) as store:
        store.append(_rows(p), origin="detected", details={"model": "test"})
    return p


def test_synapse_questions_take_their_turn_and_answers_are_verdicts(project):
    clock = FakeClock()
    with open_session(project, clock, synapse_every=2) as s:
        assert s.synapses is not None and s.synapses.remaining == 24
        kinds = []
        for _ in range(6):
            task = s.next_task()
            kinds.append(task.kind)
            clock.advance(2.0)
            s.answer("no" if task.is_synapse else "skip")
        assert [k == "synapse" for k in kinds] == [False, False, True, False, False, True]
        # Middle scores first until the classifier has both answers (24 rows, scores rising with the row).
        rows = [r for r in task_rows(s) if r["task_type"] in ("synapse", "partner")]
        assert [r["answer"] for r in rows] == ["no", "no"]
        assert [r["candidate_id"] for r in rows] == ["syn-12", "syn-13"]
        assert all("verdict no" in r["note"] and r["active_s"] == pytest.approx(2.0) for r in rows)
        store = s.synapses.store
        verdicts = store.verdicts()
        assert [v["verdict"] for v in verdicts] == ["no", "no"]
        assert len(store.current()) == 22 and len(store.rejected()) == 2
        assert s.progress()["queued"] >= 22


def test_a_yes_turns_the_other_partner_into_a_partner_question_and_the_classifier_learns(project):
    clock = FakeClock()
    with open_session(project, clock, synapse_every=1) as s:
        queue = s.synapses
        assert not queue.learnt
        s.next_task()
        s.answer("skip")  # a segmentation task first: then it is the synapses' turn
        task = s.next_task()
        assert task.is_synapse and task.question == "Synapse here?"
        first = task.candidate
        clock.advance(1.0)
        s.answer("yes")
        # its synapse's other row (same id, same batch) is now about the partner only
        other = [c for c in queue.candidates if c.row != first.row and c.kind == "partner"]
        assert len(other) == 1 and other[0].features["confirmed_partner"] == 1.0
        assert len(queue.store.current()) == 24  # the confirmed copy replaces the original
        s.next_task()
        s.answer("skip")
        task = s.next_task()
        assert task.is_synapse
        s.answer("no")
        assert queue.learnt and queue.classifier.n_answers == 2
        p = queue.probabilities()
        assert p.shape == (len(queue.candidates),) and np.isfinite(p).all()
        # Undo takes back the last answer of either kind: the verdict is retracted and unlearnt.
        result = s.undo()
        assert result.task.is_synapse and result.answer == "undo" and s.current.key == task.key
        assert queue.classifier.n_answers == 1 and not queue.learnt
        assert [v["verdict"] for v in queue.store.verdicts()] == ["yes"]
        assert task_rows(s)[-1]["answer"] == "undo"


def test_the_view_draws_both_points_and_names_the_roles(project):
    clock = FakeClock()
    with open_session(project, clock, synapse_every=1) as s:
        s.next_task()
        s.answer("skip")
        task = s.next_task()
        view = prepare_view(s, task)
        assert view.synapse_nm == (task.candidate.pre, task.candidate.post)
        names = set(view.label_names.values())
        assert any(n.startswith("post-synaptic neuron") for n in names)
        assert any(n.startswith("pre-synaptic neuron") for n in names)


def test_no_store_no_questions_and_false_turns_them_off(tmp_path, project):
    plain = gala_fib_project(tmp_path / "plain")
    agglomerate_project(plain, threshold=0.5)
    clock = FakeClock()
    with open_session(plain, clock) as s:
        assert s.synapses is None
    assert not plain.component_path("synapses").exists()
    with open_session(project, clock, synapses=False, synapse_every=1) as s:
        assert s.synapses is None
        for _ in range(3):
            assert not s.next_task().is_synapse
            s.answer("skip")
    with pytest.raises(InputError, match="synapse_every"):
        open_session(project, clock, synapse_every=0)


def test_a_row_gone_from_the_store_is_a_stale_question(project):
    clock = FakeClock()
    with open_session(project, clock, synapse_every=1) as s:
        s.next_task()
        s.answer("skip")
        task = s.next_task()
        assert task.is_synapse
        # Another program runs a new detection meanwhile: the row is superseded.
        with SynapseStore(project.component_path("synapses")) as other:
            other.append(_rows(project, n=4, seed=9), origin="detected")
        result = s.answer("yes")
        assert result.answer == "stale" and "not in force" in result.note
        assert s.synapses.store.verdicts() == []


def test_features_see_reversed_pairs_partners_and_ranks():
    t = SynapseTable(synapse_id=[1, 1, 2], pre=[[0, 0, 0], [0, 0, 0], [0, 0, 60]],
                     post=[[0, 0, 60], [0, 60, 0], [0, 0, 0]], pre_id=[5, 5, 7], post_id=[7, 8, 5],
                     score=[0.02, 0.01, 0.005])
    x = synapse_features(t, np.array([1, 1, 1]), confirmed={(1, 1)})
    f = {name: x[:, i].tolist() for i, name in enumerate(FEATURES)}
    assert f["partners"] == [2, 2, 1] and f["score_rank"] == [0, 1, 0]
    assert f["length_nm"] == pytest.approx([60, 60, 60])
    assert f["reversed_nm"][0] == pytest.approx(60.0) and np.isnan(f["reversed_nm"][1])
    assert f["confirmed_partner"] == [1, 1, 0] and f["neighbours"] == [2, 2, 2]


def test_the_queue_alone_reads_neurons_through_the_proofreader(project):
    pr = Proofreader.open(project)
    try:
        queue = SynapseQueue(pr, user="ana")
        c = queue.next()
        assert c.pre_id == pr.segment_of(pr.supervoxel_at(np.asarray(c.pre)))
        assert c.post_id == pr.segment_of(pr.supervoxel_at(np.asarray(c.post)))
        queue.close()
    finally:
        pr.close()


def test_side_contrast_is_the_pre_neurons_darkness_behind_its_point():
    from napari_connectome.synapses.review import SIDE_BEHIND_NM, side_box, side_contrast

    vs = (10.0, 10.0, 10.0)
    labels = np.ones((30, 30, 60), np.uint32)
    labels[:, :, 30:] = 2  # neuron 2 (pre) at x ≥ 300 nm
    raw = np.full(labels.shape, 170.0)
    raw[:, :, 36:50] = 120.0  # a vesicle cloud behind the pre point
    raw[:, :, 29:31] = 30.0  # the membrane
    pre, post = np.array([150.0, 150.0, 320.0]), np.array([150.0, 150.0, 270.0])
    value = side_contrast(raw, labels, origin_nm=(0, 0, 0), voxel_size=vs, pre=pre, post=post, pre_id=2, post_id=1)
    assert value < -20
    # reversed: the darker side is now behind the *post* point
    assert side_contrast(raw, labels, origin_nm=(0, 0, 0), voxel_size=vs, pre=post, post=pre, pre_id=1,
                         post_id=2) == pytest.approx(-value)
    assert np.isnan(side_contrast(raw, labels, origin_nm=(0, 0, 0), voxel_size=vs, pre=pre, post=post, pre_id=7,
                                  post_id=1))
    box = side_box(pre, post, voxel_size=vs, offset=(0, 0, 0))
    assert box[2].start <= (270 - SIDE_BEHIND_NM - 80) / 10 and box[2].stop >= (320 + SIDE_BEHIND_NM + 80) / 10


def test_an_edit_renames_the_neurons_of_the_questions(project):
    pr = Proofreader.open(project)
    try:
        queue = SynapseQueue(pr, user="ana")
        c = queue.next()
        # merge the question's two neurons: the row joins no two neurons now, so it is not asked
        pr.merge_supervoxels(pr.supervoxel_at(np.asarray(c.pre)), pr.supervoxel_at(np.asarray(c.post)))
        assert c.row not in [x.row for x in queue.order()]
        # undone: two neurons again (under new ids: an edit never reuses one), and the question is back
        pr.undo()
        again = next(x for x in queue.order() if x.row == c.row)
        assert again.pre_id == pr.segment_of(pr.supervoxel_at(np.asarray(c.pre)))
        assert again.post_id == pr.segment_of(pr.supervoxel_at(np.asarray(c.post)))
        assert again.pre_id != again.post_id
        queue.close()
    finally:
        pr.close()
