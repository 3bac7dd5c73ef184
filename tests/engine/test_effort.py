"""Effort: the activity clock, the append-only effort log, corruption recovery, the manual-edit recorder."""

from __future__ import annotations

import hashlib
import math
import re
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from napari_connectome.config import load_settings
from napari_connectome.effort import ActivityClock, EffortLog, EffortRecorder
from napari_connectome.effort.log import COLUMNS
from napari_connectome.errors import InputError
from napari_connectome.proofread import EditLog, Proofreader
from napari_connectome.proofread.demo import make_demo_project


class FakeClock:
    """Seconds that move only when the test says so."""

    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


@pytest.fixture
def project(tmp_path):
    # threshold=None: every supervoxel is its own segment, ids equal (1..N).
    return make_demo_project(tmp_path / "demo", threshold=None)


# ------------------------------------------------------------------ clock
def test_clock_counts_long_gaps_wholly_idle_and_short_ones_wholly_active():
    fake = FakeClock(100.0)
    clock = ActivityClock(clock=fake, idle_after_s=60)
    assert clock.start() == 100.0 and clock.running
    for gap in (10, 70, 1, 60.5):   # 70 and 60.5 > 60: idle, wholly
        fake.advance(gap)
        clock.touch()
    fake.advance(60)                # exactly the threshold: active
    active, idle = clock.stop()
    assert active == pytest.approx(10 + 1 + 60)
    assert idle == pytest.approx(70 + 60.5)
    assert active + idle == pytest.approx(fake.t - 100.0)
    assert not clock.running and clock.stopped_at == fake.t


def test_clock_peek_touch_when_stopped_and_restart():
    fake = FakeClock(0.0)
    clock = ActivityClock(clock=fake, idle_after_s=5)
    clock.touch()                   # no span: ignored
    clock.start()
    fake.advance(3)
    assert clock.peek() == (3.0, 0.0)
    fake.advance(4)                 # 7 s since the last input: idle so far
    assert clock.peek() == (0.0, 7.0)
    assert clock.running            # peeking does not stop it
    clock.start(at=2.0)             # restart where something else ended
    assert clock.started_at == 2.0
    assert clock.stop() == (5.0, 0.0)   # a 5 s gap == the threshold: active
    with pytest.raises(InputError, match="no span"):
        clock.stop()


def test_clock_threshold_gap_is_active_and_backward_steps_are_zero_gaps():
    fake = FakeClock(10.0)
    clock = ActivityClock(clock=fake, idle_after_s=5)
    clock.start(at=5.0)
    assert clock.stop() == (5.0, 0.0)
    clock.start()
    fake.t = 4.0                    # the system clock stepped back
    clock.touch()
    fake.t = 12.0
    active, idle = clock.stop()
    assert (active, idle) == (2.0, 0.0)


@pytest.mark.parametrize("bad", [0, -1, math.nan, math.inf, "soon"])
def test_clock_refuses_bad_idle_threshold(bad):
    with pytest.raises(InputError, match="idle_after_s"):
        ActivityClock(idle_after_s=bad)


def test_idle_threshold_from_the_environment(monkeypatch):
    monkeypatch.setenv("NAPARI_CONNECTOME_IDLE_S", "30")
    assert load_settings().idle_s == 30.0
    monkeypatch.delenv("NAPARI_CONNECTOME_IDLE_S")
    assert load_settings().idle_s == 60.0
    for bad in ("0", "nan", "-3", "a minute"):
        monkeypatch.setenv("NAPARI_CONNECTOME_IDLE_S", bad)
        with pytest.raises(InputError, match="NAPARI_CONNECTOME_IDLE_S"):
            load_settings()


# ------------------------------------------------------------------ log
def _row(**kw):
    base = dict(task_id="t-1", task_type="merge", answer="yes", shown_at=100.0, answered_at=112.5,
                active_s=12.5, idle_s=0.0, edit_id=3, candidate_id="c-9", segments=(4, 7), note="")
    base.update(kw)
    return base


def test_log_round_trip_append_only_and_reopen(project):
    fake = FakeClock(1_700_000_000.0)
    with EffortLog.open(project, user="ana", session="s1", clock=fake) as log:
        assert log.path == project.component_path("effort_log") and log.warning is None
        first = log.record(**_row())
        second = log.record(**_row(task_id=None, task_type="manual", answer="split", edit_id=None,
                                   candidate_id=None, segments=(), note="by hand"))
        assert (first, second) == (1, 2)
    assert project.manifest["components"]["effort_log"] == "effort.sqlite"
    with EffortLog.open(project, user="bo", session="s2", clock=fake) as log:
        log.record(**_row(answer="no", edit_id=None))
        rows = log.rows()
        sessions = log.sessions()
    assert [r["id"] for r in rows] == [1, 2, 3]
    assert list(rows[0]) == list(COLUMNS)
    assert rows[0]["segments"] == [4, 7] and rows[0]["edit_id"] == 3 and rows[0]["user"] == "ana"
    assert rows[0]["shown_at_utc"] == "1970-01-01T00:01:40.000+00:00"
    assert rows[1]["task_id"] is None and rows[1]["note"] == "by hand"
    assert rows[2]["session"] == "s2" and rows[2]["user"] == "bo"
    assert [(s["session"], s["user"]) for s in sessions] == [("s1", "ana"), ("s2", "bo")]
    assert sessions[0]["started_at"] == fake.t and sessions[0]["host"]
    # Append-only, even for someone going behind the API's back.
    con = sqlite3.connect(project.component_path("effort_log"))
    for sql in ("UPDATE effort SET active_s = 0", "DELETE FROM effort", "DELETE FROM sessions",
                "UPDATE meta SET value = 'x'"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            con.execute(sql)
    con.close()
    with EffortLog.open(project, read_only=True) as ro:
        assert len(ro.rows()) == 3
        with pytest.raises(InputError, match="read-only"):
            ro.record(**_row())


@pytest.mark.parametrize("change, needle", [
    (dict(task_type="review"), "task_type"),
    (dict(answer="maybe"), "answer"),
    (dict(task_type="manual", answer="yes"), "answer"),
    (dict(active_s=-1.0), "≥ 0"),
    (dict(idle_s=math.nan), "idle_s"),
    (dict(answered_at=50.0), "before"),
])
def test_log_refuses_bad_rows_and_writes_nothing(project, change, needle):
    with EffortLog.open(project, session="s") as log:
        with pytest.raises(InputError, match=needle):
            log.record(**_row(**change))
        assert log.rows() == []


def test_rows_survive_a_crash_without_close(project):
    code = textwrap.dedent(f"""
        import os
        from napari_connectome.effort import EffortLog
        log = EffortLog.open({str(project.root)!r}, user="crash", session="c")
        for i in range(5):
            log.record(task_id=f"t-{{i}}", task_type="split", answer="no", shown_at=1.0, answered_at=2.0,
                       active_s=1.0, idle_s=0.0)
        os._exit(0)   # no close, no checkpoint: the rows live in the WAL only
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    with EffortLog.open(project, read_only=True) as log:
        rows = log.rows()
    assert [r["task_id"] for r in rows] == [f"t-{i}" for i in range(5)]


# ------------------------------------------------------------------ corruption
def _edit_log_fingerprint(project):
    path = project.component_path("edit_log")
    with EditLog(path, read_only=True) as log:
        rows = log.rows(with_patch=False)
    return hashlib.sha256(path.read_bytes()).hexdigest(), rows


def _with_an_edit(project):
    pr = Proofreader.open(project, user="ana")
    pr.merge_supervoxels(1, 2)
    pr.close()
    return _edit_log_fingerprint(project)


def _garbage(path):
    path.write_bytes(b"this is not an SQLite database, just bytes " * 200)


def _truncated(path):
    with EffortLog.open(path.parent, session="old") as log:
        for i in range(400):
            log.record(**_row(task_id=f"t-{i}", note="x" * 200))
    data = path.read_bytes()
    assert len(data) > 8 * 4096
    path.write_bytes(data[: len(data) // 2])


def _foreign(path):
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    con.execute("INSERT INTO meta VALUES ('format', 'somebody-else')")
    con.commit()
    con.close()


@pytest.mark.parametrize("spoil, needle", [
    (_garbage, "not a database"),
    (_truncated, "malformed|integrity"),
    (_foreign, "not an effort log|format"),
])
def test_corrupt_log_is_moved_aside_and_a_new_one_started(project, spoil, needle):
    before = _with_an_edit(project)
    path = project.component_path("effort_log")
    spoil(path)
    spoiled = path.read_bytes()
    with pytest.raises(InputError, match=needle) as err:
        EffortLog.open(project, read_only=True)
    assert str(path) in str(err.value) and path.read_bytes() == spoiled   # read-only: untouched
    fake = FakeClock(1_700_000_000.0)   # 2023-11-14T22:13:20Z
    log = EffortLog.open(project, session="new", clock=fake)
    try:
        assert log.recovered_from == path.with_name("effort.sqlite.corrupt-20231114T221320Z")
        assert log.recovered_from.read_bytes() == spoiled
        assert log.warning is not None and "\n" not in log.warning
        assert str(path) in log.warning and log.recovered_from.name in log.warning
        assert re.search(needle, log.warning)
        assert log.rows() == []
        log.record(**_row())
        assert len(log.rows()) == 1
    finally:
        log.close()
    assert sorted(p.name for p in path.parent.glob("effort.sqlite.corrupt-*")) == [log.recovered_from.name]
    assert _edit_log_fingerprint(project) == before   # the edit log: same bytes, same rows


def test_newer_log_is_refused_not_moved(project):
    path = project.component_path("effort_log")
    with EffortLog.open(project, session="s"):
        pass
    con = sqlite3.connect(path)
    con.execute("DROP TRIGGER meta_no_update")
    con.execute("UPDATE meta SET value = '99' WHERE key = 'version'")
    con.commit()
    con.close()
    with pytest.raises(InputError, match="newer"):
        EffortLog.open(project)
    assert path.exists() and not list(path.parent.glob("*.corrupt-*"))


def test_missing_log_read_only_says_so(project):
    with pytest.raises(InputError, match="no effort log yet"):
        EffortLog.open(project, read_only=True)
    assert not project.component_path("effort_log").exists()


# ------------------------------------------------------------------ recorder
def test_recorder_times_manual_edits_and_ignores_task_edits(project):
    fake = FakeClock(5_000.0)
    pr = Proofreader.open(project, user="ana")
    log = EffortLog.open(project, user="ana", session=pr.session, clock=fake)
    rec = EffortRecorder(log, pr, clock=fake, idle_after_s=60)
    try:
        fake.advance(10)
        rec.touch()
        fake.advance(100)           # coffee: idle
        rec.touch()
        fake.advance(5)
        merge = pr.merge_supervoxels(1, 2)
        fake.advance(7)
        pr.merge_supervoxels(3, 4, task_id="t-abc")    # a task's edit: the task session logs it
        assert len(log.rows()) == 1
        # The task session writes its row; the manual stretch restarts at its answer.
        log.record(task_id="t-abc", task_type="merge", answer="yes", shown_at=fake.t - 7,
                   answered_at=fake.t, active_s=7.0, idle_s=0.0, edit_id=2)
        fake.advance(3)
        rec.touch()
        fake.advance(61)            # idle
        undo = pr.undo(merge.operation_id)
        rows = log.rows()
    finally:
        rec.close()
        log.close()
        pr.close()
    assert len(rows) == 3
    first, task, last = rows
    assert (first["task_type"], first["answer"], first["task_id"]) == ("manual", "merge", None)
    assert first["edit_id"] == merge.operation_id and first["segments"] == merge.after_segments
    assert (first["shown_at"], first["answered_at"]) == (5_000.0, 5_115.0)
    assert (first["active_s"], first["idle_s"]) == (15.0, 100.0)
    assert task["task_id"] == "t-abc"
    assert (last["answer"], last["edit_id"]) == ("undo", undo.operation_id)
    assert last["shown_at"] == task["answered_at"]
    assert (last["active_s"], last["idle_s"]) == (3.0, 61.0)
    fake.advance(5)
    assert not rec.clock.running    # closed: later edits are not timed
