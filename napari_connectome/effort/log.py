"""The effort log: an append-only SQLite table of how long each answer and edit took.

One row per answered task or manual edit, written in one transaction in WAL
mode with ``synchronous=FULL`` (like the edit log,
:mod:`napari_connectome.proofread.log`): when :meth:`EffortLog.record`
returns, the row is on disk. Triggers refuse ``UPDATE`` and ``DELETE``.

Tables
------
``meta``
    ``format`` (``napari-connectome-effort-log``) and ``version``.
``sessions``
    ``session``, ``user``, ``host``, ``started_at`` (unix s), ``started_at_utc``,
    ``vi_split_start``/``vi_merge_start`` (bits, the live VI before the
    session's first answer or edit; NULL without a ground truth).
``effort``
    ``id``, ``session``, ``user``, ``task_id``, ``task_type`` (merge, split,
    manual), ``answer``, ``shown_at``/``answered_at`` (unix s) and their ISO
    UTC text, ``active_s``, ``idle_s``, ``edit_id`` (the edit log's
    ``operation_id`` the answer made), ``candidate_id``, ``segments`` (JSON),
    ``note``, ``vi_split``/``vi_merge`` (bits, the live VI against the ground
    truth after the row's edit; NULL without a ground truth), ``waiting_s``
    (seconds of the span spent waiting for the suite, counted neither
    active nor idle: ``active_s + idle_s + waiting_s`` is the span).

Versions
--------
1. The columns above without ``vi_split``/``vi_merge``.
2. Adds them. A version 1 log is migrated when opened for writing (two
   ``ALTER TABLE ... ADD COLUMN`` and the version, in one transaction) and
   read as is when opened read-only (VI None). The version is bumped so that
   a suite from before version 2, which checks the exact columns and would
   take the added ones for corruption and move the log aside, refuses it as
   "newer than this suite" instead.
3. Adds ``effort.waiting_s`` (0 on older rows) and the sessions' start VI
   (NULL on older sessions), migrated the same way from versions 1 and 2.
4. Allows the synapse questions' task types (``synapse``, ``partner``). A
   column's CHECK cannot be altered in SQLite, so the migration copies the
   rows, unchanged and with their ids, into a table with the wider CHECK
   and puts it in the old one's place (with its append-only triggers), in
   the same one transaction: a kill leaves the old log or the new one.

A corrupt log costs only the effort figures, never edits: it is moved aside
(``effort.sqlite.corrupt-<UTC stamp>``) and a new one is started, with a
warning; the edit log is a different file and is never opened here.

Identity: like the edit log, the log has an id (``meta.log_id``) and the
project records it with the number of rows and a running hash of them
(``manifest["history"]["effort_log"]``, after every row). A log that is
missing, emptied, another project's or shorter than recorded is refused —
opening and reporting alike — with how to recover, rather than read as a
history of zero minutes.
"""

from __future__ import annotations

import datetime as _dt
import getpass
import json
import math
import socket
import sqlite3
import threading
import time
import uuid as _uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from napari_connectome import sqlite_log
from napari_connectome.effort.clock import Clock
from napari_connectome.errors import ConnectomeWarning, InputError
from napari_connectome.events import Connection, Signal
from napari_connectome.proofread.log import DEFAULT_LOCK_TIMEOUT, restart_hint

LOG_FORMAT = "napari-connectome-effort-log"
LOG_VERSION = 4
TASK_TYPES = ("merge", "split", "synapse", "partner", "manual")
#: Answers of a task row (``task_type`` merge or split).
TASK_ANSWERS = ("yes", "no", "skip", "flag", "undo", "stale")
#: Answers of a manual row: the type of the edit made outside tasks.
MANUAL_ANSWERS = ("merge", "split", "split_supervoxel", "undo", "redo")

COLUMNS = (
    "id", "session", "user", "task_id", "task_type", "answer", "shown_at", "shown_at_utc",
    "answered_at", "answered_at_utc", "active_s", "idle_s", "edit_id", "candidate_id", "segments", "note",
    "vi_split", "vi_merge", "waiting_s",
)
#: Columns added by version 2 (nullable, so a version 1 log gains them without rewriting its rows).
VI_COLUMNS = ("vi_split", "vi_merge")
#: ``effort`` column added by version 3 (0 on the rows before).
WAITING_COLUMNS = ("waiting_s",)
#: The ``effort`` columns of a version 2 log.
V2_COLUMNS = tuple(c for c in COLUMNS if c not in WAITING_COLUMNS)
#: The ``effort`` columns of a version 1 log.
V1_COLUMNS = tuple(c for c in V2_COLUMNS if c not in VI_COLUMNS)
#: ``sessions`` columns added by version 3 (NULL on the sessions before).
SESSION_VI_COLUMNS = ("vi_split_start", "vi_merge_start")
SESSION_COLUMNS = ("session", "user", "host", "started_at", "started_at_utc", *SESSION_VI_COLUMNS)
#: The ``sessions`` columns of a version 1 or 2 log.
V2_SESSION_COLUMNS = tuple(c for c in SESSION_COLUMNS if c not in SESSION_VI_COLUMNS)
#: Every column a migration adds, with its SQL type: ``(table, column, declaration)``.
_ADDED = {
    2: (("effort", "vi_split", "REAL CHECK (vi_split IS NULL OR vi_split >= 0)"),
        ("effort", "vi_merge", "REAL CHECK (vi_merge IS NULL OR vi_merge >= 0)")),
    3: (("effort", "waiting_s", "REAL NOT NULL DEFAULT 0 CHECK (waiting_s >= 0)"),
        ("sessions", "vi_split_start", "REAL CHECK (vi_split_start IS NULL OR vi_split_start >= 0)"),
        ("sessions", "vi_merge_start", "REAL CHECK (vi_merge_start IS NULL OR vi_merge_start >= 0)")),
}


def _quoted(values) -> str:
    return ", ".join(f"'{v}'" for v in values)


_TRIGGER = """CREATE TRIGGER IF NOT EXISTS {table}_no_{verb} BEFORE {upper} ON {table}
    BEGIN SELECT RAISE(ABORT, 'the effort log is append-only'); END"""

#: The effort table (``{name}``: a migration builds it under another name first).
_EFFORT_TABLE = f"""CREATE TABLE IF NOT EXISTS {{name}} (
    id INTEGER PRIMARY KEY,
    session TEXT NOT NULL REFERENCES sessions (session),
    user TEXT NOT NULL,
    task_id TEXT,
    task_type TEXT NOT NULL CHECK (task_type IN ({_quoted(TASK_TYPES)})),
    answer TEXT NOT NULL CHECK (answer IN ({_quoted(sorted(set(TASK_ANSWERS) | set(MANUAL_ANSWERS)))})),
    shown_at REAL NOT NULL,
    shown_at_utc TEXT NOT NULL,
    answered_at REAL NOT NULL,
    answered_at_utc TEXT NOT NULL,
    active_s REAL NOT NULL CHECK (active_s >= 0),
    idle_s REAL NOT NULL CHECK (idle_s >= 0),
    edit_id INTEGER,
    candidate_id TEXT,
    segments TEXT NOT NULL,
    note TEXT NOT NULL,
    vi_split REAL CHECK (vi_split IS NULL OR vi_split >= 0),
    vi_merge REAL CHECK (vi_merge IS NULL OR vi_merge >= 0),
    waiting_s REAL NOT NULL DEFAULT 0 CHECK (waiting_s >= 0))"""

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS sessions (
    session TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    host TEXT NOT NULL,
    started_at REAL NOT NULL,
    started_at_utc TEXT NOT NULL,
    vi_split_start REAL CHECK (vi_split_start IS NULL OR vi_split_start >= 0),
    vi_merge_start REAL CHECK (vi_merge_start IS NULL OR vi_merge_start >= 0))""",
    _EFFORT_TABLE.format(name="effort"),
    *(
        _TRIGGER.format(table=table, verb=verb, upper=verb.upper())
        for table in ("effort", "sessions", "meta")
        for verb in ("update", "delete")
    ),
)


class _Corrupt(Exception):
    """The file is not a sound effort log (moved aside when writable)."""


def _login() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"


def utc_text(unix: float) -> str:
    """ISO 8601 UTC text of a unix time (millisecond precision)."""
    return _dt.datetime.fromtimestamp(float(unix), _dt.timezone.utc).isoformat(timespec="milliseconds")


def _is_corruption(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(w in text for w in ("not a database", "malformed", "corrupt", "disk image", "encrypted"))


def _problem(path, exc: BaseException, *, action: str) -> InputError:
    """One line a person understands for an SQLite failure that is not corruption."""
    text = str(exc).lower()
    if isinstance(exc, sqlite_log.UnfoldedChanges):
        return InputError(path, f"the effort log cannot be read here: {exc}")
    if "disk is full" in text:
        return InputError(path, f"the disk is full; {action}")
    if "locked" in text or "busy" in text:
        return InputError(path, f"the effort log is locked by another program; {action} — close the other one and try again")
    if "readonly" in text or "read-only" in text or "permission" in text or "unable to open" in text:
        return InputError(path, f"the effort log cannot be opened for writing (read-only file or folder); {action}")
    return InputError(path, f"the effort log failed ({exc}); {action}")


class EffortLog:
    """Append-only SQLite (WAL, synchronous=FULL) at ``project.component_path("effort_log")``.

    Open it with :meth:`open`. Attributes: ``path``, ``user``, ``session``,
    ``read_only``, ``recovered_from`` (where a corrupt log was moved, or
    None) and ``warning`` (one line saying so, or None), ``migrated``
    (True when a version 1 log was brought to this version on opening).
    """

    def __init__(self, path: Path, con: sqlite3.Connection | None, *, user: str, session: str,
                 read_only: bool, project=None) -> None:
        self.path = Path(path)
        self.project = project
        self._heads = sqlite_log.Heads(self._row_keys)
        self.user = user
        self.session = session
        self.read_only = read_only
        self.recovered_from: Path | None = None
        self.warning: str | None = None
        self.migrated = False
        self._con = con
        self._lock = threading.Lock()
        #: Emitted with each row (a dict of its columns and ``id``) this object records.
        self.recorded = Signal("recorded")
        # An older log opened read-only lacks the later columns (rows() and sessions() fill them in).
        self._have = set(_columns(con, "effort")) if con is not None else set(COLUMNS)
        self._have_sessions = set(_columns(con, "sessions")) if con is not None else set(SESSION_COLUMNS)

    # ================================================================ opening
    @classmethod
    def open(cls, project, *, user: str | None = None, session: str | None = None,
             clock: Clock = time.time, read_only: bool = False,
             lock_timeout: float = DEFAULT_LOCK_TIMEOUT, vi_start: dict | None = None) -> EffortLog:
        """Open (or start) the project's effort log.

        Parameters
        ----------
        project
            A :class:`~napari_connectome.project.Project` or its folder.
        user
            Recorded on every row (default: the login name).
        session
            Session id recorded on every row (default: a new one); pass the
            Proofreader's ``session`` to tie effort rows to its edits.
        clock
            Seconds since the epoch: stamps the session and names a moved
            corrupt file.
        read_only
            Read only: never creates, changes or moves the file.
        lock_timeout
            Seconds to wait for another program's write lock.
        vi_start
            The live VI before the session's first answer or edit
            (``vi_split`` and ``vi_merge``, bits), where the report's VI curve
            starts; None without a ground truth. Kept for a new session only
            (reopening a session keeps its first start).

        Returns
        -------
        EffortLog

        Raises
        ------
        InputError
            ``read_only`` and the file is missing or corrupt; the file is
            locked, from a newer suite, or cannot be written. (A corrupt file
            opened for writing is moved aside instead; see ``warning``.)
        """
        from napari_connectome.project import Project, open_project

        if not isinstance(project, Project):
            project = open_project(project)
        path = project.component_path("effort_log")
        user = user or _login()
        now = float(clock())
        if session is None:
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
            session = f"{stamp}-{_uuid.uuid4().hex[:8]}"
        if path.is_dir():
            raise InputError(path, "the effort log path is a folder, not a file")
        start_vi = _check_vi_start(vi_start)
        recorded = project.history("effort_log")
        if recorded and not (recorded.get("id") or recorded.get("rows")):
            recorded = None  # a restart: no log recorded yet
        how = (f"restore it from a backup, or run `{restart_hint(project)} --effort-log` to start a new one "
               "(the old file is kept aside)")
        if recorded and not (path.exists() or path.is_symlink()):
            raise InputError(path, f"the effort log is missing, but this project recorded {int(recorded.get('rows') or 0)} "
                                   f"row(s) in it; nothing was changed — {how}")
        if recorded and path.stat().st_size == 0:
            raise InputError(path, f"the effort log is empty (0 bytes), but this project recorded "
                                   f"{int(recorded.get('rows') or 0)} row(s) in it; nothing was changed — {how}")
        if read_only:
            if not path.exists():
                raise InputError(path, "no effort log yet: answer some tasks first")
            try:
                con, _ = _connect(path, read_only=True, lock_timeout=lock_timeout)
            except _Corrupt as exc:
                raise InputError(path, f"the effort log is corrupt ({exc}); it was left untouched") from None
            log = cls(path, con, user=user, session=session, read_only=True, project=project)
            log._verify(recorded, how)
            return log
        recovered = warning = None
        try:
            con, migrated = _connect(path, read_only=False, lock_timeout=lock_timeout)
        except _Corrupt as exc:
            recovered = _move_aside(path, now)
            warning = (
                f"{path}: the effort log was unreadable ({exc}); it was moved aside to {recovered.name} "
                "and a new one started (the edit log is untouched)"
            )
            con, migrated = _connect(path, read_only=False, lock_timeout=lock_timeout)
            recorded = None  # the old log is set aside, said so: the new one is recorded from here on
        log = cls(path, con, user=user, session=session, read_only=False, project=project)
        log.recovered_from, log.warning = recovered, warning
        log.migrated = migrated
        try:
            log._verify(recorded, how)
            log._write(lambda c: c.execute(
                f"INSERT OR IGNORE INTO sessions ({', '.join(SESSION_COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (session, user, socket.gethostname() or "unknown", now, utc_text(now), *start_vi),
            ), action="no session was started")
            log._record()
        except BaseException:
            log.close(checkpoint=False)
            raise
        if "effort_log" not in project.manifest.get("components", {}):
            project.register_component("effort_log")
        return log

    # ================================================================ identity
    def _row_keys(self) -> list[str]:
        return [f"{i}:{s}:{a!r}" for i, s, a in self._read("SELECT id, session, answered_at FROM effort ORDER BY id")]

    def head(self, n: int | None = None) -> str:
        """The running hash of the first ``n`` rows (all when None)."""
        return self._heads.head(n)

    def identity(self) -> dict:
        """``{"id", "rows", "head"}``: what the project records about this log."""
        return {"id": self.meta().get("log_id"), "rows": self._heads.count, "head": self._heads.head()}

    def _verify(self, recorded: dict | None, how: str) -> None:
        problem = sqlite_log.identity_problem(recorded, self.identity(), self.head, count_key="rows",
                                              what="effort log")
        if problem:
            raise InputError(self.path, f"{problem}; nothing was changed — {how}")

    def _record(self) -> None:
        """Record the log's identity in the project; a failure is a warning (the rows are saved)."""
        if self.project is None or self.read_only:
            return
        ident = self.identity()
        recorded = self.project.history("effort_log") or {}
        if all(recorded.get(k) == v for k, v in ident.items()):
            return
        try:
            self.project.record_history("effort_log", ident)
        except (InputError, OSError) as exc:
            import warnings

            warnings.warn(ConnectomeWarning(f"{self.project.root}: the effort log's identity could not be "
                                            f"recorded ({exc}); the rows themselves are saved"), stacklevel=2)

    # ================================================================ reading
    def meta(self) -> dict[str, str]:
        """The ``meta`` table (format, version)."""
        return dict(self._read("SELECT key, value FROM meta"))

    def sessions(self) -> list[dict]:
        """Every session, in the order they started (start VI None where not recorded)."""
        select = ", ".join(c if c in self._have_sessions else f"NULL AS {c}" for c in SESSION_COLUMNS)
        raw = self._read(f"SELECT {select} FROM sessions ORDER BY started_at, session")
        return [dict(zip(SESSION_COLUMNS, r, strict=True)) for r in raw]

    def rows(self) -> list[dict]:
        """Every row, oldest first, all columns (``segments`` decoded to a list of ints).

        ``vi_split``/``vi_merge`` are None where no VI was recorded (and on
        every row of a version 1 log opened read-only); ``waiting_s`` is 0 on
        rows of logs from before version 3.
        """
        out = []
        missing = {c: "0.0" if c in WAITING_COLUMNS else "NULL" for c in COLUMNS}
        select = ", ".join(c if c in self._have else f"{missing[c]} AS {c}" for c in COLUMNS)
        for values in self._read(f"SELECT {select} FROM effort ORDER BY id"):
            row = dict(zip(COLUMNS, values, strict=True))
            try:
                row["segments"] = [int(s) for s in json.loads(row["segments"])]
            except (TypeError, ValueError):
                raise InputError(self.path, f"effort row {row['id']} is damaged (unreadable segments)") from None
            out.append(row)
        return out

    def _read(self, sql: str) -> list[tuple]:
        if self._con is None:
            raise InputError(self.path, "the effort log is closed")
        with self._lock:
            try:
                return self._con.execute(sql).fetchall()
            except sqlite3.Error as exc:
                if _is_corruption(exc):
                    raise InputError(self.path, f"the effort log is corrupt ({exc}); reopen the project to start a new one") from None
                raise _problem(self.path, exc, action="nothing was read") from None

    # ================================================================ writing
    def add_listener(self, callback: Callable[[dict], None]) -> Connection:
        """Call ``callback(row)`` after every row this object records; returns the connection to disconnect."""
        return self.recorded.connect(callback)

    def remove_listener(self, callback: Callable[[dict], None]) -> bool:
        """Stop calling ``callback`` after rows; True when it was listening."""
        return self.recorded.disconnect(callback)

    def record(self, *, task_id: str | None, task_type: str, answer: str, shown_at: float,
               answered_at: float, active_s: float, idle_s: float, edit_id: int | None = None,
               candidate_id: str | None = None, segments: Sequence[int] = (), note: str = "",
               vi_split: float | None = None, vi_merge: float | None = None, waiting_s: float = 0.0) -> int:
        """Append one row in one transaction (on disk when this returns); returns its id.

        Parameters
        ----------
        task_id
            The task answered, or None for a manual edit.
        task_type
            ``merge`` (the task proposes a merge), ``split`` (it proposes a
            cut) or ``manual`` (an edit made outside tasks).
        answer
            yes, no, skip, flag, undo or stale for tasks; the edit's type
            (merge, split, split_supervoxel, undo, redo) for manual rows.
        shown_at, answered_at
            Unix seconds the task was shown / answered (span of a manual row).
        active_s, idle_s
            From :class:`~napari_connectome.effort.clock.ActivityClock`.
        waiting_s
            Seconds of the span spent waiting for the suite (the clock's
            ``waiting_s``): neither active nor idle.
        edit_id
            The edit log's ``operation_id`` the answer made, if any.
        candidate_id, segments, note
            What was asked about; free text (why a task was stale, ...).
        vi_split, vi_merge
            The live VI (bits) against the ground truth after this row's
            edit, both or neither; None without a ground truth.

        Raises
        ------
        InputError
            A bad value (nothing written), or the log cannot be written.
        """
        if task_type not in TASK_TYPES:
            raise InputError("effort row", f"task_type must be one of {', '.join(TASK_TYPES)}, got {task_type!r}")
        allowed = MANUAL_ANSWERS if task_type == "manual" else TASK_ANSWERS
        if answer not in allowed:
            raise InputError("effort row", f"answer of a {task_type} row must be one of {', '.join(allowed)}, got {answer!r}")
        times = {"shown_at": shown_at, "answered_at": answered_at, "active_s": active_s, "idle_s": idle_s,
                 "waiting_s": waiting_s}
        for name, value in times.items():
            try:
                ok = math.isfinite(float(value))
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise InputError("effort row", f"{name} must be a finite number of seconds, got {value!r}")
        if float(active_s) < 0 or float(idle_s) < 0 or float(waiting_s) < 0:
            raise InputError("effort row", f"active_s, idle_s and waiting_s must be ≥ 0, got {active_s!r}, "
                                           f"{idle_s!r}, {waiting_s!r}")
        if float(answered_at) < float(shown_at):
            raise InputError("effort row", f"answered_at {answered_at} is before shown_at {shown_at}")
        if (vi_split is None) != (vi_merge is None):
            raise InputError("effort row", f"vi_split and vi_merge go together, got {vi_split!r}, {vi_merge!r}")
        for name, value in (("vi_split", vi_split), ("vi_merge", vi_merge)):
            if value is None:
                continue
            try:
                ok = math.isfinite(float(value)) and float(value) >= 0
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise InputError("effort row", f"{name} must be a finite number of bits ≥ 0 or None, got {value!r}")
        row = {
            "session": self.session, "user": self.user,
            "task_id": None if task_id is None else str(task_id),
            "task_type": task_type, "answer": answer,
            "shown_at": float(shown_at), "shown_at_utc": utc_text(shown_at),
            "answered_at": float(answered_at), "answered_at_utc": utc_text(answered_at),
            "active_s": float(active_s), "idle_s": float(idle_s),
            "edit_id": None if edit_id is None else int(edit_id),
            "candidate_id": None if candidate_id is None else str(candidate_id),
            "segments": [int(s) for s in segments], "note": str(note),
            "vi_split": None if vi_split is None else float(vi_split),
            "vi_merge": None if vi_merge is None else float(vi_merge),
            "waiting_s": float(waiting_s),
        }
        cols = COLUMNS[1:]
        values = tuple(json.dumps(row[c]) if c == "segments" else row[c] for c in cols)
        ids: list[int] = []
        position: list[int] = []

        def insert(con: sqlite3.Connection) -> None:
            ids.append(int(con.execute(
                f"INSERT INTO effort ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", values
            ).lastrowid))
            # Rows are only appended: the new one is the last, and its place is the count.
            position.append(int(con.execute("SELECT COUNT(*) FROM effort").fetchone()[0]))

        self._write(insert, action="the effort row was not recorded")
        row = {"id": ids[0], **row}
        self._heads.appended(f"{ids[0]}:{row['session']}:{row['answered_at']!r}", position=position[0])
        self._record()
        self.recorded.emit(row)
        return ids[0]

    def _write(self, fn, *, action: str) -> None:
        if self.read_only:
            raise InputError(self.path, "the effort log is open read-only")
        if self._con is None:
            raise InputError(self.path, "the effort log is closed")
        sqlite_log.write(self._con, self._lock, fn, problem=lambda exc: _problem(self.path, exc, action=action))

    def close(self, *, checkpoint: bool = True) -> None:
        """Close; folds the WAL into the main file first when writable."""
        con, self._con = self._con, None
        sqlite_log.close(con, checkpoint=checkpoint and not self.read_only)

    def __enter__(self) -> EffortLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _connect(path: Path, *, read_only: bool, lock_timeout: float) -> tuple[sqlite3.Connection, bool]:
    """``(checked connection, migrated)``; raises :class:`_Corrupt` for a file that is not a sound effort log.

    ``migrated``: a version 1 log was brought to this version (writable only).
    """
    try:
        if read_only:
            con = sqlite_log.connect_read_only(path, timeout=lock_timeout)
        else:
            con = sqlite3.connect(path, timeout=lock_timeout, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        if _is_corruption(exc):
            raise _Corrupt(" ".join(str(exc).split())) from None
        raise _problem(path, exc, action="nothing was changed") from None
    try:
        migrated = _check(con, path, read_only=read_only)
    except sqlite3.Error as exc:
        con.close()
        if _is_corruption(exc):
            raise _Corrupt(" ".join(str(exc).split())) from None
        raise _problem(path, exc, action="nothing was changed") from None
    except BaseException:
        con.close()
        raise
    return con, migrated


def _columns(con: sqlite3.Connection, table: str) -> tuple[str, ...]:
    return tuple(r[1] for r in con.execute(f"PRAGMA table_info({table})"))


def _check(con: sqlite3.Connection, path: Path, *, read_only: bool) -> bool:
    """Check (and start, or migrate from version 1) the log; True when it was migrated."""
    # The schema first: a file that is not SQLite fails here, before any
    # PRAGMA could write to it.
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    check = con.execute("PRAGMA integrity_check").fetchall()
    if [r[0] for r in check] != ["ok"]:
        raise _Corrupt(f"integrity check failed: {check[0][0]}")
    if not tables:
        if read_only:
            raise _Corrupt("the file holds no effort log tables")
        sqlite_log.make_durable(con)
        con.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA:
                con.execute(statement)
            con.execute("INSERT INTO meta VALUES ('format', ?)", (LOG_FORMAT,))
            con.execute("INSERT INTO meta VALUES ('version', ?)", (str(LOG_VERSION),))
            con.execute("INSERT INTO meta VALUES ('log_id', ?)", (str(_uuid.uuid4()),))
            con.execute("COMMIT")
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise
        return False
    if not {"meta", "sessions", "effort"} <= tables:
        raise _Corrupt(f"an SQLite file with tables {', '.join(sorted(tables))}, not an effort log")
    meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
    if meta.get("format") != LOG_FORMAT:
        raise _Corrupt(f"wrong format tag {meta.get('format')!r}")
    try:
        version = int(meta.get("version", ""))
    except ValueError:
        raise _Corrupt(f"unreadable version {meta.get('version')!r}") from None
    if version > LOG_VERSION:
        # Not corrupt: a newer suite's log is never moved aside.
        raise InputError(path, f"effort log version {version} is newer than this suite; update napari-connectome")
    expected = {1: (V1_COLUMNS, V2_SESSION_COLUMNS), 2: (V2_COLUMNS, V2_SESSION_COLUMNS)}.get(
        version, (COLUMNS, SESSION_COLUMNS))
    if (_columns(con, "effort"), _columns(con, "sessions")) != expected:
        raise _Corrupt("its tables do not have the effort log's columns")
    if read_only:
        return False  # an older log is read as it is (rows() and sessions() fill in the later columns)
    sqlite_log.make_durable(con)
    if "log_id" not in meta:
        # A log from before ids gets one, so that its project can record it (meta only takes inserts).
        con.execute("INSERT OR IGNORE INTO meta VALUES ('log_id', ?)", (str(_uuid.uuid4()),))
    return version < LOG_VERSION and _migrate(con)


def _migrate(con: sqlite3.Connection) -> bool:
    """Bring an older log to this version in one transaction; False when another program just did."""
    con.execute("BEGIN IMMEDIATE")
    try:
        # Checked again under the write lock: two programs may open the old log at once.
        version = int(dict(con.execute("SELECT key, value FROM meta").fetchall()).get("version", LOG_VERSION))
        if version >= LOG_VERSION:
            con.execute("ROLLBACK")
            return False
        for step in range(version + 1, LOG_VERSION + 1):
            for table, name, declaration in _ADDED.get(step, ()):
                con.execute(f"ALTER TABLE {table} ADD COLUMN {name} {declaration}")
        if version < 4:
            _widen_task_types(con)
        # meta is append-only by trigger; the version is its one value that may change, here only.
        con.execute("DROP TRIGGER meta_no_update")
        con.execute("UPDATE meta SET value = ? WHERE key = 'version'", (str(LOG_VERSION),))
        con.execute(_TRIGGER.format(table="meta", verb="update", upper="UPDATE"))
        con.execute("COMMIT")
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise
    return True


def _widen_task_types(con: sqlite3.Connection) -> None:
    """Version 4: the effort table rebuilt with this version's task types (inside the caller's transaction)."""
    columns = ", ".join(COLUMNS)
    con.execute(_EFFORT_TABLE.format(name="effort_v4"))
    con.execute(f"INSERT INTO effort_v4 ({columns}) SELECT {columns} FROM effort ORDER BY id")
    con.execute("DROP TABLE effort")  # its triggers go with it (a DROP fires no delete trigger)
    con.execute("ALTER TABLE effort_v4 RENAME TO effort")
    for verb in ("update", "delete"):
        con.execute(_TRIGGER.format(table="effort", verb=verb, upper=verb.upper()))


def _check_vi_start(vi_start: dict | None) -> tuple[float | None, float | None]:
    """``(vi_split, vi_merge)`` of a session's start VI, checked (both finite bits ≥ 0), or Nones."""
    if vi_start is None:
        return None, None
    values = []
    for name in ("vi_split", "vi_merge"):
        value = vi_start.get(name) if isinstance(vi_start, dict) else None
        try:
            ok = math.isfinite(float(value)) and float(value) >= 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise InputError("vi_start", f"{name} must be a finite number of bits ≥ 0, got {value!r}")
        values.append(float(value))
    return values[0], values[1]


def _move_aside(path: Path, now: float) -> Path:
    """Rename a corrupt log (and its -wal/-shm/-journal) to ``NAME.corrupt-<UTC stamp>``."""
    try:
        return sqlite_log.move_aside(path, "corrupt-" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now)))
    except OSError as exc:
        raise InputError(path, f"the effort log is corrupt and could not be moved aside: {exc.strerror or exc}") from None
