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
from napari_connectome.effort.log import COLUMNS, LOG_VERSION, V1_COLUMNS
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


def test_clock_counts_waiting_for_the_suite_apart_across_spans():
    fake = FakeClock(0.0)
    clock = ActivityClock(clock=fake, idle_after_s=60)
    clock.start()
    fake.advance(5)
    clock.waiting_started()          # the answer key: 5 s of work before it
    fake.advance(2)                  # the edit runs
    assert clock.peek() == (5.0, 0.0)
    active, idle = clock.stop()      # the answered task's span ends while waiting
    assert (active, idle, clock.waiting_s) == (5.0, 0.0, 2.0)
    clock.start()                    # the next task's span begins, still waiting
    fake.advance(90)                 # a slow draw: waiting, not idle (90 > 60)
    clock.touch()                    # a mouse move while waiting is still waiting
    fake.advance(1)
    clock.waiting_ended()            # drawn
    fake.advance(3)
    active, idle = clock.stop()
    assert (active, idle, clock.waiting_s) == (3.0, 0.0, 91.0)
    assert active + idle + clock.waiting_s == pytest.approx(94.0)
    clock.start()
    with clock.waiting():
        fake.advance(4)
    clock.waiting_ended()            # not waiting: nothing changes
    fake.advance(1)
    assert clock.stop() == (1.0, 0.0) and clock.waiting_s == 4.0 and not clock.is_waiting


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
    (dict(vi_split=0.5), "go together"),
    (dict(vi_split=-0.1, vi_merge=0.2), "vi_split"),
    (dict(vi_split=0.1, vi_merge=math.inf), "vi_merge"),
    (dict(waiting_s=-0.5), "waiting_s must be ≥ 0"),
    (dict(waiting_s=math.nan), "waiting_s"),
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


def test_log_keeps_the_live_vi_of_a_row(project):
    with EffortLog.open(project, session="s") as log:
        seen = []
        log.add_listener(seen.append)
        log.record(**_row(vi_split=0.25, vi_merge=1.5))
        log.record(**_row(answer="no", edit_id=None))
        rows = log.rows()
    assert [(r["vi_split"], r["vi_merge"]) for r in rows] == [(0.25, 1.5), (None, None)]
    assert (seen[0]["vi_split"], seen[0]["vi_merge"]) == (0.25, 1.5)
    assert list(seen[0]) == list(COLUMNS)


# A version 1 log as that suite wrote it (frozen here: the code only knows version 2's schema).
_V1_SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE sessions (session TEXT PRIMARY KEY, user TEXT NOT NULL, host TEXT NOT NULL, "
    "started_at REAL NOT NULL, started_at_utc TEXT NOT NULL)",
    "CREATE TABLE effort (id INTEGER PRIMARY KEY, session TEXT NOT NULL REFERENCES sessions (session), "
    "user TEXT NOT NULL, task_id TEXT, task_type TEXT NOT NULL, answer TEXT NOT NULL, shown_at REAL NOT NULL, "
    "shown_at_utc TEXT NOT NULL, answered_at REAL NOT NULL, answered_at_utc TEXT NOT NULL, "
    "active_s REAL NOT NULL, idle_s REAL NOT NULL, edit_id INTEGER, candidate_id TEXT, segments TEXT NOT NULL, "
    "note TEXT NOT NULL)",
    *(f"CREATE TRIGGER {t}_no_{v} BEFORE {v.upper()} ON {t} BEGIN SELECT RAISE(ABORT, 'the effort log is "
      "append-only'); END" for t in ("effort", "sessions", "meta") for v in ("update", "delete")),
)


def _version1_log(project):
    path = project.component_path("effort_log")
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    for sql in _V1_SCHEMA:
        con.execute(sql)
    con.executemany("INSERT INTO meta VALUES (?, ?)", [("format", "napari-connectome-effort-log"), ("version", "1")])
    con.execute("INSERT INTO sessions VALUES ('old', 'ana', 'h', 10.0, 'x')")
    for i, active in enumerate((12.0, 30.0)):
        con.execute(
            "INSERT INTO effort (session, user, task_id, task_type, answer, shown_at, shown_at_utc, answered_at, "
            "answered_at_utc, active_s, idle_s, edit_id, candidate_id, segments, note) "
            "VALUES ('old', 'ana', ?, 'merge', 'no', 10, 'x', 50, 'y', ?, 0, NULL, NULL, '[1, 2]', '')",
            (f"t-{i}", active),
        )
    con.commit()
    con.close()
    return path


def test_version1_log_is_read_as_is_read_only(project):
    path = _version1_log(project)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with EffortLog.open(project, read_only=True) as log:
        rows = log.rows()
        assert log.meta()["version"] == "1"
    assert [(r["task_id"], r["active_s"], r["vi_split"], r["vi_merge"]) for r in rows] == [
        ("t-0", 12.0, None, None), ("t-1", 30.0, None, None)]
    assert list(rows[0]) == list(COLUMNS)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before   # nothing written
    con = sqlite3.connect(path)
    assert tuple(r[1] for r in con.execute("PRAGMA table_info(effort)")) == V1_COLUMNS
    con.close()


def test_version1_log_is_migrated_not_moved_aside(project):
    path = _version1_log(project)
    with EffortLog.open(project, session="new") as log:
        assert log.migrated and log.warning is None and log.recovered_from is None
        assert log.meta()["version"] == str(LOG_VERSION) == "4"
        log.record(**_row(vi_split=0.5, vi_merge=0.75, waiting_s=1.5))
        rows = log.rows()
    assert not list(path.parent.glob("*.corrupt-*"))
    assert [(r["task_id"], r["vi_split"], r["vi_merge"], r["waiting_s"]) for r in rows] == [
        ("t-0", None, None, 0.0), ("t-1", None, None, 0.0), ("t-1", 0.5, 0.75, 1.5)]
    with EffortLog.open(project, read_only=True) as ro:
        assert [s["session"] for s in ro.sessions()] == ["old", "new"]
        assert ro.sessions()[0]["vi_split_start"] is None
    with EffortLog.open(project, session="again") as log:
        assert not log.migrated   # once
        assert len(log.rows()) == 3
    # Still append-only after the migration (the meta trigger was put back).
    con = sqlite3.connect(path)
    for sql in ("UPDATE meta SET value = '3'", "UPDATE effort SET vi_split = 0", "DELETE FROM meta"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            con.execute(sql)
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        con.execute("INSERT INTO effort (session, user, task_type, answer, shown_at, shown_at_utc, answered_at, "
                    "answered_at_utc, active_s, idle_s, segments, note, vi_split) "
                    "VALUES ('new', 'a', 'merge', 'no', 1, 'x', 1, 'x', 0, 0, '[]', '', -1)")
    con.close()


def _version2_log(project):
    path = _version1_log(project)
    con = sqlite3.connect(path)
    con.execute("ALTER TABLE effort ADD COLUMN vi_split REAL CHECK (vi_split IS NULL OR vi_split >= 0)")
    con.execute("ALTER TABLE effort ADD COLUMN vi_merge REAL CHECK (vi_merge IS NULL OR vi_merge >= 0)")
    con.execute("DROP TRIGGER meta_no_update")
    con.execute("UPDATE meta SET value = '2' WHERE key = 'version'")
    con.execute("CREATE TRIGGER meta_no_update BEFORE UPDATE ON meta BEGIN SELECT RAISE(ABORT, "
                "'the effort log is append-only'); END")
    con.commit()
    con.close()
    return path


def test_version2_log_is_read_as_is_then_migrated_to_record_waiting(project):
    path = _version2_log(project)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with EffortLog.open(project, read_only=True) as ro:
        assert [(r["active_s"], r["waiting_s"]) for r in ro.rows()] == [(12.0, 0.0), (30.0, 0.0)]
        assert (ro.sessions()[0]["vi_split_start"], ro.sessions()[0]["vi_merge_start"]) == (None, None)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    with EffortLog.open(project, session="new", vi_start={"vi_split": 0.5, "vi_merge": 2.0}) as log:
        assert log.migrated and log.meta()["version"] == "4"
        log.record(**_row(waiting_s=4.0))
        assert [r["waiting_s"] for r in log.rows()] == [0.0, 0.0, 4.0]
        starts = {s["session"]: (s["vi_split_start"], s["vi_merge_start"]) for s in log.sessions()}
    assert starts == {"old": (None, None), "new": (0.5, 2.0)}
    con = sqlite3.connect(path)
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        con.execute("INSERT INTO effort (session, user, task_type, answer, shown_at, shown_at_utc, answered_at, "
                    "answered_at_utc, active_s, idle_s, segments, note, waiting_s) "
                    "VALUES ('new', 'a', 'merge', 'no', 1, 'x', 1, 'x', 0, 0, '[]', '', -1)")
    con.close()


def test_session_start_vi_is_checked_and_kept_from_the_first_opening(project):
    with pytest.raises(InputError, match="vi_merge must be a finite number"):
        EffortLog.open(project, session="s", vi_start={"vi_split": 0.1})
    with EffortLog.open(project, session="s", vi_start={"vi_split": 0.1, "vi_merge": 0.2}):
        pass
    with EffortLog.open(project, session="s", vi_start={"vi_split": 9.0, "vi_merge": 9.0}) as log:
        (session,) = log.sessions()
    assert (session["vi_split_start"], session["vi_merge_start"]) == (0.1, 0.2)


def test_version1_log_with_version2_columns_is_corrupt(project):
    path = _version1_log(project)
    con = sqlite3.connect(path)
    con.execute("ALTER TABLE effort ADD COLUMN vi_split REAL")
    con.commit()
    con.close()
    with EffortLog.open(project, session="s") as log:
        assert log.recovered_from is not None and "columns" in log.warning
        assert log.rows() == []


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


def test_recorder_records_the_vi_it_is_given_and_survives_a_failing_one(project):
    fake = FakeClock(5_000.0)
    pr = Proofreader.open(project, user="ana")
    log = EffortLog.open(project, user="ana", session=pr.session, clock=fake)
    calls = []

    def vi():
        calls.append(pr.version)   # asked after the edit is in the state
        if len(calls) == 2:
            raise RuntimeError("table gone")
        return {"vi_split": 0.1 * len(calls), "vi_merge": 1.0, "vi": 0.1 * len(calls) + 1.0}

    rec = EffortRecorder(log, pr, clock=fake, vi=vi)
    try:
        fake.advance(5)
        first = pr.merge_supervoxels(1, 2)
        fake.advance(5)
        pr.merge_supervoxels(3, 4)
        rec.vi = None
        fake.advance(5)
        pr.undo(first.operation_id)
        rows = log.rows()
    finally:
        rec.close()
        log.close()
        pr.close()
    assert calls == [1, 2]
    assert [(r["vi_split"], r["vi_merge"]) for r in rows] == [(0.1, 1.0), (None, None), (None, None)]
    assert len(rec.notes) == 1 and "table gone" in rec.notes[0]


def _version3_log(project, *, rows: int = 2):
    """A log as version 3 wrote it: the effort table's CHECK without the synapse task types."""
    with EffortLog.open(project, user="ana", session="old") as log:
        for k in range(rows):
            log.record(**_row(answer="no", edit_id=None, note=f"row {k}"))
    path = project.component_path("effort_log")
    con = sqlite3.connect(path, isolation_level=None)
    old = con.execute("SELECT sql FROM sqlite_master WHERE name = 'effort'").fetchone()[0]
    old = old.replace("'merge', 'split', 'synapse', 'partner', 'manual'", "'merge', 'split', 'manual'")
    con.execute("BEGIN")
    con.execute(old.replace("CREATE TABLE effort", "CREATE TABLE effort_old", 1)
                .replace("CREATE TABLE IF NOT EXISTS effort", "CREATE TABLE effort_old", 1))
    con.execute(f"INSERT INTO effort_old SELECT {', '.join(COLUMNS)} FROM effort")
    con.execute("DROP TABLE effort")
    con.execute("ALTER TABLE effort_old RENAME TO effort")
    for verb in ("update", "delete"):
        con.execute(f"CREATE TRIGGER effort_no_{verb} BEFORE {verb.upper()} ON effort BEGIN SELECT RAISE(ABORT, "
                    "'the effort log is append-only'); END")
    con.execute("DROP TRIGGER meta_no_update")
    con.execute("UPDATE meta SET value = '3' WHERE key = 'version'")
    con.execute("CREATE TRIGGER meta_no_update BEFORE UPDATE ON meta BEGIN SELECT RAISE(ABORT, "
                "'the effort log is append-only'); END")
    con.execute("COMMIT")
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        con.execute("INSERT INTO effort (session, user, task_type, answer, shown_at, shown_at_utc, answered_at, "
                    "answered_at_utc, active_s, idle_s, segments, note) "
                    "VALUES ('old', 'a', 'synapse', 'no', 1, 'x', 1, 'x', 0, 0, '[]', '')")
    con.close()
    return path


def test_version3_log_is_rebuilt_to_take_synapse_questions_rows_unchanged(project):
    path = _version3_log(project)
    with EffortLog.open(project, read_only=True) as ro:
        before = ro.rows()
    with EffortLog.open(project, session="new") as log:
        assert log.migrated and log.meta()["version"] == "4"
        assert log.rows() == before  # same ids, same values: the project's running hash still matches
        log.record(**_row(task_type="synapse", answer="yes", edit_id=None, candidate_id="syn-3"))
        log.record(**_row(task_type="partner", answer="no", edit_id=None, candidate_id="syn-4"))
        assert [r["task_type"] for r in log.rows()] == ["merge", "merge", "synapse", "partner"]
    con = sqlite3.connect(path)
    for sql in ("UPDATE effort SET note = 'x'", "DELETE FROM effort"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            con.execute(sql)
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        con.execute("INSERT INTO effort (session, user, task_type, answer, shown_at, shown_at_utc, answered_at, "
                    "answered_at_utc, active_s, idle_s, segments, note) "
                    "VALUES ('new', 'a', 'cleft', 'no', 1, 'x', 1, 'x', 0, 0, '[]', '')")
    con.close()
    with EffortLog.open(project, session="again") as log:
        assert not log.migrated and len(log.rows()) == 4
