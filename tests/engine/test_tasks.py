"""Micro-task sessions on the bundled gala-fib sample: ids, answers, edits, undo, stale tasks, effort, views.

Every test gets its own project over the sample (agglomerated at 0.5: ~800
candidates), a fake clock, and the ``size`` strategy unless the ranker's
learning is what is tested (``active``, slower: it refits on every answer).
"""

from __future__ import annotations

import re
import threading

import h5py
import numpy as np
import pytest

from napari_connectome.candidates import Candidate, find_candidates
from napari_connectome.errors import InputError
from napari_connectome.graph import agglomerate_project
from napari_connectome.rank import Strategy, candidate_key
from napari_connectome.samples import gala_fib_project
from napari_connectome.tasks import Task, TaskSession, crop_box, prepare_view, task_id
from napari_connectome.tasks.settled import settled_tasks, without_settled

START = 1_700_000_000.0


class FakeClock:
    """Seconds since the epoch that move only when the test says so."""

    def __init__(self, t: float = START) -> None:
        self.t = float(t)

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += float(seconds)


class KindFirst(Strategy):
    """Biggest impact first, one kind of candidate before the other (to reach split tasks at once)."""

    name = "kind-first"

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def scores(self, candidates: list[Candidate]) -> np.ndarray:
        return np.array([float(c.kind == self.kind) * 1e12 + float(c.impact) for c in candidates])

    def to_config(self) -> dict:
        return {"name": self.name, "kind": self.kind}


@pytest.fixture
def project(tmp_path):
    p = gala_fib_project(tmp_path / "gala")
    agglomerate_project(p, threshold=0.5)
    return p


@pytest.fixture
def clock():
    return FakeClock()


def open_session(project, clock, **kw) -> TaskSession:
    kw.setdefault("strategy", "size")
    kw.setdefault("prefetch", False)
    return TaskSession.open(project, user="ana", clock=clock, **kw)


def task_rows(session):
    return [r for r in session.effort.rows() if r["task_type"] != "manual"]


# ------------------------------------------------------------------ ids
def test_task_ids_are_stable_across_refinding(project, clock):
    with open_session(project, clock) as s:
        pr = s.proofreader
        first = s.next_task()
        assert re.fullmatch(r"t-[0-9a-f]{12}", first.id)
        before = {task_id(c): c for c in find_candidates(pr)}
        assert len(before) == len(find_candidates(pr))  # one id per proposed edit
        again = {task_id(c) for c in find_candidates(pr)}
        assert again == set(before)
        s.answer("yes")  # a merge: candidates are found again on the new state
        after = {task_id(c): c for c in find_candidates(pr)}
        untouched = [t for t, c in before.items() if not set(c.segments) & set(first.segments)]
        kept = [t for t in untouched if t in after]
        assert len(kept) > 0.9 * len(untouched)
        assert all(after[t].supervoxels == before[t].supervoxels for t in kept)
        assert first.id not in {t.id for t in [s.current] if t is not None}


# ------------------------------------------------------------------ answers
def test_yes_applies_the_merge_with_the_task_id_and_no_does_not(project, clock):
    with open_session(project, clock) as s:
        pr = s.proofreader
        task = s.next_task()
        assert task.kind == "merge" and task.question == "Same neuron?"
        a, b = task.candidate.supervoxels[:2]
        assert pr.segment_of(a) != pr.segment_of(b)
        clock.advance(4)
        r = s.answer("yes")
        assert r.edit_id is not None and pr.segment_of(a) == pr.segment_of(b)
        (row,) = [h for h in pr.history() if h["operation_id"] == r.edit_id]
        assert (row["type"], row["task_id"], row["suggested_by"]) == ("merge", task.id, "task:size")
        assert r.next is not None and r.next.id != task.id and s.current == r.next
        n_ops = len(pr.history())
        nxt = s.current
        clock.advance(2)
        r2 = s.answer("no")
        assert r2.edit_id is None and len(pr.history()) == n_ops
        assert [x.answer for x in [r, r2]] == ["yes", "no"]
        rows = task_rows(s)
        assert [(x["task_id"], x["answer"], x["edit_id"]) for x in rows] == [
            (task.id, "yes", r.edit_id), (nxt.id, "no", None)]
        assert all(x["user"] == "ana" and x["session"] == pr.session for x in rows)


def test_yes_on_a_cut_task_splits(project, clock):
    with open_session(project, clock, strategy=KindFirst("false_merge")) as s:
        pr = s.proofreader
        task = s.next_task()
        assert task.kind == "split" and task.question == "Cut here?"
        (seg,) = task.segments
        r = s.answer("yes")
        assert r.edit_id is not None
        (row,) = [h for h in pr.history() if h["operation_id"] == r.edit_id]
        assert row["type"] == "split" and row["task_id"] == task.id and row["before_roots"] == [seg]
        src, snk = task.candidate.supervoxels[0], task.candidate.sinks[0]
        assert pr.segment_of(src) != pr.segment_of(snk)


def test_undo_reverts_the_edit_and_the_ranker_and_shows_the_task_again(project, clock):
    with open_session(project, clock, strategy="active") as s:
        pr = s.proofreader
        ranker = s.strategy.ranker
        n0 = ranker.n_answers
        task = s.next_task()
        a, b = task.candidate.supervoxels[:2]
        clock.advance(3)
        r = s.answer("yes")
        assert pr.segment_of(a) == pr.segment_of(b)  # the edit is applied before answer() returns
        assert s.wait()  # the ranker learns in the background (one-step-lagged ranking)
        assert ranker.n_answers == n0 + 1
        clock.advance(7)
        u = s.undo()
        assert u.answer == "undo" and u.task.id == task.id
        assert pr.segment_of(a) != pr.segment_of(b)
        assert ranker.n_answers == n0
        (row,) = [h for h in pr.history() if h["operation_id"] == u.edit_id]
        assert (row["type"], row["undo_of"], row["task_id"]) == ("undo", r.edit_id, task.id)
        # Shown again as the current task (same id, segments as they are now).
        assert s.current.id == task.id and u.next.id == task.id
        assert set(s.current.segments) == {pr.segment_of(a), pr.segment_of(b)}
        assert s.progress()["done"] == 0
        # It can be answered again; an undone "no" is retracted too.
        clock.advance(2)
        s.answer("no")
        assert s.wait() and ranker.n_answers == n0 + 1
        s.undo()
        assert ranker.n_answers == n0 and s.current.id == task.id
        rows = task_rows(s)
        assert [x["answer"] for x in rows] == ["yes", "undo", "no", "undo"]
        assert rows[1]["active_s"] == 7.0 and rows[1]["edit_id"] == u.edit_id
        assert s.undo() is None  # every answer taken back


def test_undo_with_nothing_answered_returns_none(project, clock):
    with open_session(project, clock) as s:
        s.next_task()
        assert s.undo() is None


def test_skipped_and_flagged_tasks_are_not_asked_again_and_count(project, clock):
    with open_session(project, clock) as s:
        skipped = s.next_task()
        s.answer("skip")
        flagged = s.current
        s.answer("flag")
        queued = s.progress()["queued"]
        seen = []
        for _ in range(8):
            seen.append(s.current.id)
            s.answer("no")
        assert skipped.id not in seen and flagged.id not in seen
        p = s.progress()
        assert (p["done"], p["skip"], p["flag"], p["flagged"], p["no"]) == (10, 1, 1, 1, 8)
        assert p["queued"] == queued - 8
        rows = task_rows(s)
        assert [(x["task_id"], x["answer"]) for x in rows[:2]] == [(skipped.id, "skip"), (flagged.id, "flag")]
        # Undo takes back the latest answer first.
        s.undo()
        assert s.current.id == seen[-1] and s.progress()["done"] == 9


def test_unknown_answer_and_answer_without_task_are_input_errors(project, clock):
    with open_session(project, clock) as s:
        assert s.next_task() is not None
        with pytest.raises(InputError, match="answer"):
            s.answer("maybe")
        assert task_rows(s) == [] and s.progress()["done"] == 0


# ------------------------------------------------------------------ stale tasks, outside edits
def test_task_edited_away_outside_is_skipped_with_a_note(project, clock):
    with open_session(project, clock) as s:
        pr = s.proofreader
        first = s.next_task()
        ahead = s._predicted_next()
        assert ahead is not None
        # The Proofread panel merges one of the next task's segments with a third one (no task id).
        seg = ahead.segments[0]
        svs = pr.segment_supervoxels(seg)
        other = next(int(x) for x in pr.rag.node_ids if pr.segment_of(int(x)) not in ahead.segments)
        clock.advance(5)
        pr.merge_supervoxels(int(svs[0]), other)
        clock.advance(5)
        r = s.answer("no")
        assert r.next is not None and r.next.id != ahead.id
        rows = s.effort.rows()
        assert [(x["task_type"], x["answer"]) for x in rows[:2]] == [("manual", "merge"), ("merge", "no")]
        assert rows[0]["task_id"] is None and rows[0]["active_s"] == 5.0
        # The next task and any other of the merged segment's tasks up to the one shown: skipped, one row each.
        stale = rows[2:]
        assert stale and all(x["answer"] == "stale" and seg in x["segments"] for x in stale)
        assert stale[0]["task_id"] == ahead.id and f"segment {seg} no longer exists" in stale[0]["note"]
        assert stale[0]["active_s"] == 0.0 and stale[0]["shown_at"] == stale[0]["answered_at"] == clock.t
        assert len(s.notes) == len(stale) and ahead.id in s.notes[0]
        assert s.progress()["stale"] == len(stale)
        assert seg not in s.current.segments
        # The task on screen goes stale too: its answer is not applied.
        cur = s.current
        pr.merge_supervoxels(int(pr.segment_supervoxels(cur.segments[0])[0]),
                             next(int(x) for x in pr.rag.node_ids if pr.segment_of(int(x)) not in cur.segments))
        n_ops = len(pr.history())
        r2 = s.answer("yes")
        assert r2.answer == "stale" and r2.edit_id is None and "not applied" in r2.note
        assert len(pr.history()) == n_ops
        assert not [h for h in pr.history() if h["task_id"] == cur.id]
        # Exactly one manual row per outside edit, none for the session's own.
        manual = [x for x in s.effort.rows() if x["task_type"] == "manual"]
        assert len(manual) == 2 and all(x["task_id"] is None for x in manual)
        assert first.id in {x["task_id"] for x in s.effort.rows()}


def test_task_edits_are_not_logged_as_manual(project, clock):
    with open_session(project, clock) as s:
        s.next_task()
        s.answer("yes")
        s.undo()
        rows = s.effort.rows()
        assert [x["task_type"] for x in rows] == ["merge", "merge"]


# ------------------------------------------------------------------ effort timing
def test_effort_rows_follow_the_fake_clock_with_idle_gaps(project, clock):
    with open_session(project, clock, idle_after_s=60) as s:
        t0 = clock.t
        task = s.next_task()
        clock.advance(10)
        s.touch()
        clock.advance(100)  # no input for 100 s > 60 s: idle
        s.touch()
        clock.advance(5)
        s.answer("no")
        clock.advance(20)
        s.touch()
        clock.advance(61)  # just over the threshold, then the answer
        s.answer("skip")
        clock.advance(8)
        s.undo()
        rows = task_rows(s)
        assert [(r["answer"], r["shown_at"], r["answered_at"], r["active_s"], r["idle_s"]) for r in rows] == [
            ("no", t0, t0 + 115, 15.0, 100.0),
            ("skip", t0 + 115, t0 + 196, 20.0, 61.0),
            ("undo", t0 + 196, t0 + 204, 8.0, 0.0),
        ]
        assert rows[0]["task_id"] == task.id


# ------------------------------------------------------------------ views
def test_prefetched_view_is_the_synchronous_one(project, clock):
    with open_session(project, clock, prefetch=True) as s:
        s.next_task()
        s.view()
        ahead = s._predicted_next()
        s.prefetcher.wait()
        s.answer("skip")  # does not change the ranking: the prefetched task is next
        assert s.current.id == ahead.id
        hits = s.prefetcher.hits
        view = s.view()
        assert s.prefetcher.hits == hits + 1
        assert view.same_as(prepare_view(s.proofreader, s.current))
        # After a merge the guess may be wrong; whatever is shown equals a fresh preparation.
        s.prefetcher.wait()
        s.answer("yes")
        assert s.view().same_as(prepare_view(s.proofreader, s.current))


def test_prefetched_view_is_dropped_when_its_segments_change(project, clock):
    with open_session(project, clock, prefetch=True) as s:
        pr = s.proofreader
        s.next_task()
        ahead = s._predicted_next()
        s.prefetcher.wait()
        other = next(int(x) for x in pr.rag.node_ids if pr.segment_of(int(x)) not in ahead.segments)
        pr.merge_supervoxels(int(pr.segment_supervoxels(ahead.segments[0])[0]), other)
        s.answer("skip")
        assert s.current.id != ahead.id  # stale: skipped
        view = s.view()
        assert view.task.id == s.current.id and view.same_as(prepare_view(pr, s.current))


def test_crop_is_placed_at_the_decision_point(project, clock):
    raw = project.open_input("raw").levels[0]
    with open_session(project, clock) as s:
        pr = s.proofreader
        task = s.next_task()
        v = s.view()
        vs = np.asarray(v.voxel_size_nm)
        assert v.voxel_size_nm == tuple(raw.voxel_size)
        # The crop's voxel at the decision point maps back to the point (within half a voxel).
        back = np.asarray(v.offset_nm) + np.asarray(v.point_voxel) * vs
        assert np.all(np.abs(back - np.asarray(task.location_nm)) <= vs / 2 + 1e-9)
        # EM is the raw volume's crop at full resolution; labels only the involved segments.
        box, _ = crop_box(task.location_nm, shape=raw.shape, voxel_size=raw.voxel_size, offset=raw.offset)
        assert v.em.shape == v.labels.shape == tuple(b.stop - b.start for b in box)
        assert np.array_equal(v.em, np.asarray(raw.array[box]))
        assert v.em.shape[0] <= 65 and v.em.shape[1] <= 257 and v.em.shape[2] <= 257
        seg = np.asarray(pr.labels_volume().levels[0].array[box])
        keep = np.isin(seg, task.segments)
        if task.kind == "merge":
            assert np.array_equal(v.labels, np.where(keep, seg, 0))
            assert set(np.unique(v.labels)) - {0} == set(task.segments)
        else:  # the cut's two sides: together exactly the segment
            assert np.array_equal(v.labels != 0, keep)
        # The display labels draw the same picture with small values.
        assert np.array_equal(v.display_labels != 0, v.labels != 0)
        assert len(set(v.colors.values())) == len(task.segments) == len(v.colors)
        assert v.skeleton_paths == []  # the project has no skeleton store
        # A given crop size in nm, clamped at the volume's faces.
        small = prepare_view(s, task, crop_nm=(100.0, 200.0, 50.0))
        assert small.em.shape[0] <= 11 and small.em.shape[2] <= 5


def test_crop_box_with_an_offset_and_anisotropic_voxels():
    vs, off, shape = (40.0, 8.0, 8.0), (100.0, -12.0, 3.0), (30, 200, 200)
    point = (100.0 + 7 * 40.0 + 10.0, -12.0 + 150 * 8.0 - 3.0, 3.0 + 1 * 8.0)
    box, pv = crop_box(point, shape=shape, voxel_size=vs, offset=off, crop_nm=(400.0, 256.0, 256.0))
    centre = np.array([b.start for b in box]) + np.array(pv)
    assert tuple(centre) == (7, 150, 1)
    assert (box[0].start, box[0].stop) == (2, 13) and box[2].start == 0  # clamped, not shifted
    world = np.asarray(off) + centre * np.asarray(vs)
    assert np.all(np.abs(world - point) <= np.asarray(vs) / 2)
    with pytest.raises(InputError, match="crop_nm"):
        crop_box(point, shape=shape, voxel_size=vs, offset=off, crop_nm=-5)


# ------------------------------------------------------------------ live VI, bad input, empty queue
def test_live_vi_matches_a_full_recount(project, clock):
    from napari_connectome.metrics import variation_of_information

    with open_session(project, clock, gt="project") as s:
        v0 = s.vi()
        s.next_task()
        s.answer("yes")
        s.answer("yes")
        v = s.vi()
        seg = np.asarray(s.proofreader.labels_volume().levels[0].array[...])
        gt = np.asarray(project.open_input("groundtruth").levels[0].array[...])
        split, merge = variation_of_information(seg, gt)
        assert v["vi_split"] == pytest.approx(split, abs=1e-9) and v["vi_merge"] == pytest.approx(merge, abs=1e-9)
        assert v["vi"] != v0["vi"] and v["exact"]
    with open_session(project, clock) as s:
        assert s.vi() is None


def test_every_effort_row_carries_the_vi_after_its_edit(project, clock):
    from napari_connectome.metrics import vi_from_table

    with open_session(project, clock, gt="project") as s:
        pr = s.proofreader

        def recount():  # not through the session's cache
            split, merge = vi_from_table(s._gt_table.remap(*pr.mapping()))
            return split, merge

        seen = []  # (what the row holds, the VI recounted the moment it was written)
        s.effort.add_listener(lambda row: seen.append(((row["vi_split"], row["vi_merge"]), recount())))
        s.next_task()
        before = recount()
        clock.advance(3)
        assert s.answer("yes").edit_id is not None
        assert seen[-1][0] != pytest.approx(before)  # after the merge, not before it
        clock.advance(3)
        s.answer("no")
        after_no = seen[-1][0]
        clock.advance(3)
        s.answer("yes")
        clock.advance(3)
        assert s.undo().edit_id is not None
        assert seen[-1][0] == pytest.approx(after_no)  # the undo row: the state it leaves
        # An outside edit (a manual row), which makes the next task stale (stale rows).
        s.wait()
        ahead = s._predicted_next()
        svs = pr.segment_supervoxels(ahead.segments[0])
        other = next(int(x) for x in pr.rag.node_ids if pr.segment_of(int(x)) not in ahead.segments)
        clock.advance(5)
        pr.merge_supervoxels(int(svs[0]), other)
        clock.advance(5)
        s.answer("no")
        rows = s.effort.rows()
        assert s.vi()["vi_split"] == pytest.approx(rows[-1]["vi_split"])
    answers = [r["answer"] for r in rows]
    assert {"yes", "no", "undo", "stale", "merge"} <= set(answers), answers
    assert len(seen) == len(rows)
    for row, (recorded, recounted) in zip(rows, seen, strict=True):
        assert (row["vi_split"], row["vi_merge"]) == recorded
        assert recorded == pytest.approx(recounted, abs=1e-12), row["answer"]
    with open_session(project, clock) as s:  # no ground truth: no VI
        s.next_task()
        s.answer("yes")
        s.undo()
        new = s.effort.rows()[len(rows):]
        assert [r["answer"] for r in new] == ["yes", "undo"]
        assert all(r["vi_split"] is None and r["vi_merge"] is None for r in new)


def test_groundtruth_of_another_shape_is_an_input_error(project, clock, tmp_path):
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f.create_dataset("gt", data=np.ones((10, 20, 30), np.uint32))
    with pytest.raises(InputError, match="shape"):
        open_session(project, clock, gt=f"{bad}/gt")
    assert not project.component_path("effort_log").exists()  # nothing opened, nothing written


def test_no_candidates_gives_no_task(project, clock):
    with open_session(project, clock, find_options={"min_size_nm3": 1e30}) as s:
        assert s.next_task() is None and s.current is None
        p = s.progress()
        assert (p["done"], p["queued"]) == (0, 0)
        with pytest.raises(InputError, match="no task"):
            s.answer("yes")
        assert s.undo() is None


def test_task_from_candidate():
    c = Candidate(id="fm-3-0", kind="false_merge", location_nm=(1, 2, 3), segments=(3,), supervoxels=(4, 5),
                  sinks=(6,))
    t = Task.from_candidate(c)
    assert (t.kind, t.question, t.segments, t.location_nm) == ("split", "Cut here?", (3,), (1.0, 2.0, 3.0))
    moved = Candidate(id="fm-9-1", kind="false_merge", location_nm=(5, 5, 5), segments=(9,), supervoxels=(5, 4),
                      sinks=(6,))
    assert task_id(moved) == t.id  # same proposed cut, found again under other ids


# ------------------------------------------------------------------ background learning (one-step-lagged ranking)
class SwitchOnNo(Strategy):
    """Merge tasks first until a *no* is observed, then cut tasks first; ``observe`` can be held or made to fail."""

    name = "switch-on-no"

    def __init__(self, *, fail_first: bool = False) -> None:
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()
        self.fail_first = fail_first
        self.observed: list[bool] = []
        self.retracted = 0

    def scores(self, candidates: list[Candidate]) -> np.ndarray:
        first = "false_merge" if False in self.observed else "false_split"
        return np.array([float(c.kind == first) * 1e12 + float(c.impact) for c in candidates])

    def observe(self, candidate: Candidate, answer: bool) -> None:
        self.entered.set()
        assert self.release.wait(30), "the test never released observe"
        if self.fail_first:
            self.fail_first = False
            raise RuntimeError("ranker exploded\nsecond line")
        self.observed.append(bool(answer))

    def retract(self, candidate: Candidate) -> None:
        self.observed.pop()
        self.retracted += 1

    def to_config(self) -> dict:
        return {"name": self.name}


class CountingFind:
    """``find_candidates`` that counts its calls; a background call can be held after reading, or fail once."""

    def __init__(self) -> None:
        self.calls = 0
        self.hold = False
        self.fail_next = False
        self.read = threading.Event()
        self.go = threading.Event()

    def __call__(self, pr, **kw):
        self.calls += 1
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("disk went away")
        found = find_candidates(pr, **kw)
        if self.hold and threading.current_thread() is not threading.main_thread():
            self.hold = False
            self.read.set()  # read on the state before the test's manual edit ...
            assert self.go.wait(30), "the test never let the re-find finish"
        return found  # ... and returned after it


def test_answer_returns_before_the_learning_and_the_order_lags_one_answer(project, clock):
    strat = SwitchOnNo()
    with open_session(project, clock, strategy=strat) as s:
        first = s.next_task()
        assert first.kind == "merge"
        predicted = s._predicted_next()
        strat.release.clear()
        r = s.answer("no")  # observe blocks in the worker until released
        assert strat.entered.wait(10) and s.learning and strat.observed == []
        assert r.next.id == predicted.id and s.current.kind == "merge"  # picked from the order before the answer
        assert [x["answer"] for x in task_rows(s)] == ["no"]  # the effort row is written already
        assert s.wait(timeout=0.05) is False and s.learning
        strat.release.set()
        assert s.wait() and not s.learning and strat.observed == [False]
        assert s.learning_joins == 0 and s.learning_waits == []  # wait() is not counted: answer() never waited
        s.answer("skip")  # now picked from the order that learnt the "no": cut tasks first
        assert s.current.kind == "split" and s.current.question == "Cut here?"


def test_a_join_that_blocks_is_counted(project, clock):
    strat = SwitchOnNo()
    with open_session(project, clock, strategy=strat) as s:
        s.next_task()
        strat.release.clear()
        s.answer("no")
        assert strat.entered.wait(10)
        threading.Timer(0.2, strat.release.set).start()
        s.answer("skip")  # joins: waits for the held observe
        assert len(s.learning_waits) == 1 and s.learning_waits[0] >= 0.1
        assert s.current.kind == "split"  # the skip picked from the new order


def test_a_failed_observe_is_raised_at_the_next_answer_and_not_retracted(project, clock):
    strat = SwitchOnNo(fail_first=True)
    with open_session(project, clock, strategy=strat) as s:
        first = s.next_task()
        s.answer("no")  # its observe fails in the worker
        shown = s.current
        n_rows = len(task_rows(s))
        with pytest.raises(InputError, match="could not learn from the answer 'no'.*ranker exploded") as err:
            s.answer("no")
        assert "\n" not in str(err.value) and first.id in str(err.value)
        assert len(task_rows(s)) == n_rows and s.current.id == shown.id  # that press did nothing
        r = s.answer("no")  # the next one goes on
        assert r.task.id == shown.id and s.wait() and strat.observed == [False]
        assert s.undo().task.id == shown.id and strat.retracted == 1
        assert s.undo().task.id == first.id and strat.retracted == 1  # never learnt: nothing to retract
        assert [x["answer"] for x in task_rows(s)] == ["no", "no", "undo", "undo"]


def test_a_failed_background_refind_is_redone_at_the_next_join(project, clock):
    find = CountingFind()
    with open_session(project, clock, find=find) as s:
        pr = s.proofreader
        s.next_task()
        find.fail_next = True
        s.answer("yes")  # the re-find after the merge fails in the worker
        assert s.wait()  # ... and is redone here, synchronously, and said
        assert find.calls == 3 and s.notes == ["finding the candidates again in the background failed "
                                               "(RuntimeError: disk went away); done again"]
        assert {candidate_key(c) for c in s._candidates} == {candidate_key(c) for c in find_candidates(pr)}
        s.answer("no")
        assert not [x for x in task_rows(s) if x["answer"] == "stale"]


@pytest.mark.parametrize("attempts", [1, 3])
def test_a_manual_edit_during_the_background_refind_does_not_corrupt_the_list(project, clock, monkeypatch, attempts):
    from napari_connectome.tasks import session as session_module

    monkeypatch.setattr(session_module, "_FIND_ATTEMPTS", attempts)
    find = CountingFind()
    with open_session(project, clock, find=find) as s:
        pr = s.proofreader
        s.next_task()
        find.hold = True
        s.answer("yes")
        assert find.read.wait(30)  # the worker has read the state after the yes, and is held
        # Meanwhile the Proofread panel merges two segments the task on screen does not involve.
        busy = set(s.current.segments)
        c = next(c for c in find_candidates(pr) if c.kind == "false_split" and busy.isdisjoint(c.segments))
        pr.merge_supervoxels(*map(int, c.supervoxels[:2]))
        find.go.set()
        assert s.wait()
        # The list read before that edit was not taken: found again (by the worker's retry, or at the join).
        assert find.calls == 3
        now = {candidate_key(x) for x in find_candidates(pr)}
        assert {candidate_key(x) for x in s._candidates} == now and candidate_key(c) not in now
        s.answer("no")
        assert not [x for x in task_rows(s) if x["answer"] == "stale"] and s.notes == []


def play(s, clock, script):
    """Answer as scripted (``undo`` too), the fake clock moving 3, 4, 5 ... s; what the test saw, row by row."""
    seen = []
    for i, a in enumerate(script):
        shown_at = clock.t
        clock.advance(3 + i)
        r = s.undo() if a == "undo" else s.answer(a)
        seen.append((r.task.id, r.answer, shown_at, clock.t, float(3 + i), r.edit_id))
    return seen


def mine(s):
    """The task rows of this session (sessions on one project share its effort log)."""
    return [x for x in task_rows(s) if x["session"] == s.proofreader.session]


def rows_of(s):
    return [(x["task_id"], x["answer"], x["shown_at"], x["answered_at"], x["active_s"], x["edit_id"]) for x in mine(s)]


def test_effort_and_edit_logs_are_what_was_answered_in_either_mode(project, clock, tmp_path):
    script = ["no", "skip", "flag", "no", "undo", "no"]
    with open_session(project, clock, learn_in_background=False) as s:
        s.next_task()
        sync = play(s, clock, script)
        assert rows_of(s) == sync
    clock.t = START
    # A project of its own: on the same one, the first session's no and flag would not be asked again.
    twin = gala_fib_project(tmp_path / "twin")
    agglomerate_project(twin, threshold=0.5)
    with open_session(twin, clock) as s:
        s.next_task()
        background = play(s, clock, script)
        assert rows_of(s) == background
    # No edit, a strategy that does not learn: both modes ask the same tasks, so the rows are identical.
    assert background == sync
    # With yes answers the tasks asked after a merge may differ; every row is still what was answered,
    # and every edit is in the edit log under its task's id.
    clock.t = START
    with open_session(project, clock) as s:
        s.next_task()
        seen = play(s, clock, ["yes", "no", "yes", "undo", "skip", "yes"])
        assert rows_of(s) == seen
        edits = {h["operation_id"]: h for h in s.proofreader.history()}
        for (task_id_, answer, *_, edit_id), row in zip(seen, mine(s), strict=True):
            if answer == "yes":  # a merge task's yes merges, a cut task's splits
                assert (edits[edit_id]["task_id"], edits[edit_id]["type"]) == (task_id_, row["task_type"])
        undo = seen[3]
        assert undo[1] == "undo" and undo[0] == seen[2][0]
        assert (edits[undo[-1]]["undo_of"], edits[undo[-1]]["task_id"]) == (seen[2][-1], seen[2][0])
        assert not [x for x in task_rows(s) if x["answer"] == "stale"]  # own edits never make stale rows


def test_close_waits_for_the_learning(project, clock):
    strat = SwitchOnNo()
    s = open_session(project, clock, strategy=strat)
    s.next_task()
    strat.release.clear()
    s.answer("no")
    assert strat.entered.wait(10)
    threading.Timer(0.1, strat.release.set).start()
    s.close()
    assert strat.observed == [False] and not s.learning
    with pytest.raises(InputError, match="closed"):
        s.answer("no")


# ------------------------------------------------------------------ waiting, start VI, a shared recorder
def test_waiting_for_the_next_task_is_not_active_time(project, clock):
    with open_session(project, clock) as s:
        s.next_task()
        clock.advance(4)                # looking at the task
        s.waiting_started()             # the Y key
        clock.advance(2)                # the edit and the next view
        s.answer("yes")
        clock.advance(1.5)              # drawing the next task
        s.waiting_ended()
        clock.advance(3)
        s.answer("no")
        rows = task_rows(s)
    first, second = rows
    assert (first["active_s"], first["waiting_s"]) == (4.0, 2.0)
    assert (second["active_s"], second["waiting_s"]) == (3.0, 1.5)
    for r in rows:
        assert r["active_s"] + r["idle_s"] + r["waiting_s"] == pytest.approx(r["answered_at"] - r["shown_at"])


def test_session_records_the_vi_before_its_first_answer(project, clock):
    with open_session(project, clock, gt="project") as s:
        before = s.vi()
        s.next_task()
        clock.advance(3)
        s.answer("yes")
        (session,) = s.effort.sessions()
    assert (session["vi_split_start"], session["vi_merge_start"]) == pytest.approx(
        (before["vi_split"], before["vi_merge"]))


def test_manual_edits_are_timed_without_a_task_session_and_not_twice_with_one(project, clock):
    from napari_connectome.effort import EffortRecorder
    from napari_connectome.proofread import Proofreader

    pr = Proofreader.open(project, user="ana")
    rec = EffortRecorder.open(project, pr, clock=clock, idle_after_s=60)
    try:
        ids = [int(x) for x in pr.rag.node_ids]
        pair = next((a, b) for a in ids for b in ids if pr.segment_of(a) != pr.segment_of(b))
        clock.advance(6)
        rec.touch()
        clock.advance(2)
        pr.merge_supervoxels(*pair)                          # no task session open: timed all the same
        assert [(r["answer"], r["active_s"]) for r in rec.log.rows()] == [("merge", 8.0)]
        with TaskSession.open(project, user="ana", clock=clock, strategy="size", prefetch=False,
                              proofreader=pr, recorder=rec) as s:
            assert s.effort is rec.log
            clock.advance(5)
            pr.undo()                                        # one manual row, not two
        assert not rec.closed and len(pr.edited) == 1          # the session let go; the recorder listens on
        clock.advance(1)
        pr.redo()
        rows = rec.log.rows()
    finally:
        rec.close()
        pr.close()
    assert [(r["task_type"], r["answer"]) for r in rows] == [("manual", "merge"), ("manual", "undo"),
                                                            ("manual", "redo")]
    assert rec.log._con is None                               # opened by the recorder, closed by it
    with pytest.raises(InputError, match="must time the proofreader"):
        TaskSession.open(project, clock=clock, recorder=rec)


# ------------------------------------------------------------------ placement
@pytest.mark.parametrize("background", [False, True])
def test_tasks_are_placed_as_an_eager_search_places_them_and_only_those(project, clock, background):
    """The session's finder leaves candidates unplaced; each task shown is placed where a full search puts it."""
    with open_session(project, clock, learn_in_background=background, prefetch=background) as s:
        pr = s.proofreader
        shown = 0
        for answer in ["no", "yes", "no", "no", "yes", "no", "yes", "no"]:
            task = s.next_task() if s.current is None else s.current
            if task is None:
                break
            eager = {task_id(c): c.location_nm for c in find_candidates(pr)}
            assert np.all(np.isfinite(task.location_nm))
            assert task.location_nm == eager[task.id]
            assert s.view(task).em.size > 0
            shown += 1
            s.answer(answer)
        assert shown >= 6
        placed = sum(np.isfinite(c.location_nm[0]) for c in s._candidates)
        # the ones shown and a few ahead of each order, not the list (~800)
        assert 0 < placed <= 8 * (shown + 1) < len(s._candidates)


@pytest.mark.parametrize("background", [False, True])
def test_a_closed_session_keeps_its_list_and_the_next_one_reads_it(project, clock, monkeypatch, background):
    """Closing writes the candidate list its edits left; the next session opens on it without a full search."""
    from napari_connectome.candidates import find, kept

    real, full = find.find_candidates, []

    def counted(pr, **kw):
        full.append(kw.get("only_segments") is None)
        return real(pr, **kw)

    monkeypatch.setattr(find, "find_candidates", counted)
    with open_session(project, clock, learn_in_background=background) as s:
        for answer in ["yes", "no", "yes", "no"]:
            if (s.next_task() if s.current is None else s.current) is None:
                break
            s.answer(answer)
        assert len(s.proofreader.log.rows()) >= 2
    assert sum(full) == 1
    with open_session(project, clock, learn_in_background=background) as s:
        assert s.next_task() is not None
        assert sum(full) == 1  # read from the project, not searched
        searched = without_settled(real(s.proofreader, locate=False), settled_tasks(s.effort.rows()))
        assert [c.id for c in s._candidates] == [c.id for c in searched]
        assert kept.kept_path(s.proofreader).is_file()


@pytest.mark.parametrize("background", [False, True])
def test_queued_counts_the_unasked_candidates_of_the_list(project, clock, background):
    def brute(s):
        current = s.current.key if s.current is not None else None
        return sum(1 for c in s._candidates if (k := candidate_key(c)) not in s._asked and k != current)

    with open_session(project, clock, learn_in_background=background) as s:
        s.next_task()
        assert s.progress()["queued"] == brute(s)
        for answer in ["no", "yes", "skip", "flag", "yes", "undo", "no", "yes", "undo", "undo", "no"]:
            if answer == "undo":
                s.undo()
            else:
                s.answer(answer)
            p = s.progress()
            assert p["queued"] == brute(s) > 0


# ------------------------------------------------------------------ earlier sessions
def _shown_until_exhausted(s, limit=2000) -> list[str]:
    """Every task the session shows, answering skip (so nothing is edited), until the list runs out."""
    shown = []
    task = s.next_task()
    while task is not None and len(shown) < limit:
        shown.append(task.id)
        task = s.answer("skip").next
    return shown


def test_no_and_flag_of_an_earlier_session_are_not_asked_again(project, clock):
    """A no / flag still in effect settles its question; an undone no and a skip come back."""
    with open_session(project, clock) as s:
        asked = {}
        for answer in ["no", "flag", "skip", "no", "no"]:
            asked.setdefault(answer, []).append(s.current.id if s.current is not None else s.next_task().id)
            s.answer(answer)
        s.undo()  # takes back the last no
    settled = {asked["no"][0], asked["no"][1], asked["flag"][0]}
    with open_session(project, clock) as s:
        assert s.progress()["earlier"] == 3
        queued = s.progress()["queued"]
        shown = _shown_until_exhausted(s)
        assert len(shown) == queued  # counted before the first task was shown
        assert not settled & set(shown)
        assert {asked["no"][2], asked["skip"][0]} <= set(shown)
        # What the list leaves out is exactly the settled questions.
        every = {task_id(c) for c in find_candidates(s.proofreader, locate=False)}
        assert settled <= every
        assert set(shown) == every - settled
    # The third session reads the second's answers (all skips) too: the same settled ones out.
    with open_session(project, clock) as s:
        assert not settled & set(_shown_until_exhausted(s))


def test_a_settled_question_is_asked_again_once_its_segments_change(project, clock):
    """An edit gives the segment a new id: its questions are new questions, asked again."""
    with open_session(project, clock) as s:
        first = s.next_task()
        s.answer("no")
        while set(s.current.segments) & set(first.segments):
            s.answer("skip")  # a skip settles nothing
        other = s.current
        s.answer("no")
    with open_session(project, clock) as s:
        ids = {task_id(c) for c in s._candidates}
        assert first.id not in ids and other.id not in ids
        # Merge one of the first question's segments with a third segment, outside tasks.
        third = next(c for c in s._candidates if c.kind == "false_split"
                     and len(set(c.segments) & set(first.segments)) == 1 and not set(c.segments) & set(other.segments))
        s.proofreader.merge_supervoxels(*third.supervoxels[:2])
    with open_session(project, clock) as s:
        searched = find_candidates(s.proofreader, locate=False)
        assert first.candidate.id not in {c.id for c in searched}
        assert other.candidate.id in {c.id for c in searched}
        # Only the untouched question is left out; the first one's segments are new.
        assert [c.id for c in s._candidates] == [c.id for c in searched if c.id != other.candidate.id]
