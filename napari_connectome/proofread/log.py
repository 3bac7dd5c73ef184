"""The edit log: an append-only SQLite table of operations, written before the state changes.

One row per operation, written in one transaction (``BEGIN IMMEDIATE`` …
``COMMIT``) in WAL mode with ``synchronous=FULL``: when :meth:`EditLog.append`
returns, the row is on disk, and a crash at any moment leaves either the
whole row or none of it. Triggers refuse ``UPDATE`` and ``DELETE``; nothing
in the suite rewrites a row.

Columns: ``operation_id`` (1, 2, …), ``uuid`` (identifies an operation
across copies of a project), ``type`` (merge, split, split_supervoxel, undo,
redo), ``supervoxel_ids`` and ``seeds_nm`` (JSON), ``user``, ``timestamp``
(UTC ISO 8601) and ``unix_time``, ``session``, ``task_id``, ``before_roots``
and ``after_roots`` (JSON lists of segment ids), ``suggested_by``,
``undo_of`` (the operation an undo or redo reverses), ``payload`` (JSON: the
effect on the graph, so replay needs no recomputation) and ``patch`` (the
zlib-compressed overlay patch of a split inside a supervoxel).

A second table, ``meta``, records the log's own id (``log_id``, made when
the log is started) and what it was made on (the supervoxel graph's and the
base segmentation's fingerprints); a log is only replayed on the base it was
recorded on.

**Identity.** The project records the log's id, its number of operations and
a running hash of their uuids (``manifest["history"]["edit_log"]``, after
every edit). :func:`open_edit_log` compares the log with that record and
refuses, saying how to recover, a log that is missing, empty, another
project's, or shorter than recorded — instead of quietly starting a new
history on which new edits would pile up.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import sqlite3
import threading
import uuid as _uuid
from pathlib import Path

from napari_connectome import sqlite_log
from napari_connectome.atomic import atomic_write
from napari_connectome.errors import ConnectomeWarning, InputError, from_os_error

LOG_FORMAT = "napari-connectome-edit-log"
LOG_VERSION = 1
TYPES = ("merge", "split", "split_supervoxel", "undo", "redo")
#: Seconds to wait for another program's write lock before giving up.
DEFAULT_LOCK_TIMEOUT = 2.0

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS operations (
    operation_id INTEGER PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL CHECK (type IN ('merge', 'split', 'split_supervoxel', 'undo', 'redo')),
    supervoxel_ids TEXT NOT NULL,
    seeds_nm TEXT NOT NULL,
    user TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    unix_time REAL NOT NULL,
    session TEXT,
    task_id,
    before_roots TEXT NOT NULL,
    after_roots TEXT NOT NULL,
    suggested_by TEXT,
    undo_of INTEGER REFERENCES operations (operation_id),
    payload TEXT NOT NULL,
    patch BLOB)""",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TRIGGER IF NOT EXISTS operations_no_update BEFORE UPDATE ON operations
    BEGIN SELECT RAISE(ABORT, 'the edit log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS operations_no_delete BEFORE DELETE ON operations
    BEGIN SELECT RAISE(ABORT, 'the edit log is append-only'); END""",
)

COLUMNS = (
    "operation_id", "uuid", "type", "supervoxel_ids", "seeds_nm", "user", "timestamp", "unix_time",
    "session", "task_id", "before_roots", "after_roots", "suggested_by", "undo_of", "payload", "patch",
)
_JSON_COLUMNS = ("supervoxel_ids", "seeds_nm", "before_roots", "after_roots", "payload")


def _problem(path, exc: BaseException, *, action: str) -> InputError:
    """One line a person understands for an SQLite failure."""
    text = str(exc).lower()
    if isinstance(exc, sqlite_log.UnfoldedChanges):
        return InputError(path, f"the edit log cannot be read here: {exc}")
    if "disk is full" in text or "database or disk is full" in text:
        return InputError(path, f"the disk is full; {action}")
    if "disk i/o error" in text:
        return InputError(path, f"the edit log could not be written (disk input/output error); {action}")
    if "locked" in text or "busy" in text:
        return InputError(
            path,
            f"the edit log is locked by another program (another napari-connectome on this project?); "
            f"{action} — close the other one and try again",
        )
    if "not a database" in text or "malformed" in text or "corrupt" in text or "disk image" in text:
        return InputError(
            path,
            "the edit log is corrupt (not a readable SQLite database); it was left untouched — "
            "restore a backup, or move it aside to start a new log",
        )
    if "readonly" in text or "read-only" in text or "permission" in text:
        return InputError(path, f"the edit log cannot be written (read-only file or folder); {action}")
    return InputError(path, f"the edit log failed ({exc}); {action}")


class EditLog:
    """An open edit log.

    Parameters
    ----------
    path
        The SQLite file (``project.component_path("edit_log")``). Created
        when missing, unless ``read_only``.
    read_only
        Open for reading only (never creates or changes the file; a missing
        file reads as an empty log).
    lock_timeout
        Seconds to wait when another program holds the write lock.
    create
        Start a new log in a missing or empty file (writable only). Without
        it such a file is refused: :func:`open_edit_log` passes False when
        the project recorded a log, so an emptied file is never taken for
        a fresh start.

    Raises
    ------
    InputError
        The file is corrupt (it is never overwritten), locked, or from a
        newer suite.
    """

    def __init__(self, path: str | os.PathLike, *, read_only: bool = False,
                 lock_timeout: float = DEFAULT_LOCK_TIMEOUT, create: bool = True) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self.create = create and not read_only
        self._lock = threading.Lock()
        self._con: sqlite3.Connection | None = None
        self._heads = sqlite_log.Heads(self._uuids)
        if self.path.exists() and self.path.is_dir():
            raise InputError(self.path, "the edit log path is a folder, not a file")
        if read_only and not self.path.exists():
            return
        if not self.create and not self.path.exists():
            raise InputError(self.path, "the edit log is missing; nothing was changed")
        try:
            if read_only:
                con = sqlite_log.connect_read_only(self.path, timeout=lock_timeout)
            else:
                con = sqlite3.connect(
                    self.path, timeout=lock_timeout, isolation_level=None, check_same_thread=False
                )
        except sqlite3.Error as exc:
            raise _problem(self.path, exc, action="nothing was changed") from None
        self._con = con
        try:
            self._setup()
        except sqlite3.Error as exc:
            self.close(checkpoint=False)
            raise _problem(self.path, exc, action="nothing was changed") from None
        except BaseException:
            self.close(checkpoint=False)
            raise

    def _setup(self) -> None:
        con = self._con
        # Reading the schema first: a file that is not SQLite fails here,
        # before any PRAGMA could write to it.
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        # Another program's database, or an emptied log that must not be taken
        # for a new one: refused before the journal PRAGMA below writes to the file.
        if "operations" not in tables and tables - {"meta"}:
            raise InputError(self.path, "is an SQLite file but not a napari-connectome edit log; it was left untouched")
        if "operations" not in tables and not self.read_only and not self.create:
            raise InputError(self.path, "the edit log is empty (it holds no operations table); nothing was changed")
        if not self.read_only:
            sqlite_log.make_durable(con)
        sqlite_log.quick_check(con)
        if "operations" not in tables:
            if self.read_only:
                return
            con.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA:
                    con.execute(statement)
                con.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)", (LOG_FORMAT,))
                con.execute("INSERT OR IGNORE INTO meta VALUES ('version', ?)", (str(LOG_VERSION),))
                con.execute("INSERT OR IGNORE INTO meta VALUES ('log_id', ?)", (str(_uuid.uuid4()),))
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
        meta = self.meta()
        if meta.get("format") != LOG_FORMAT:
            raise InputError(self.path, "is an SQLite file but not a napari-connectome edit log; it was left untouched")
        try:
            version = int(meta.get("version", "0"))
        except ValueError:
            raise InputError(self.path, f"the edit log has an unreadable version {meta.get('version')!r}; it was left untouched") from None
        if version > LOG_VERSION:
            raise InputError(self.path, f"edit log version {meta['version']} is newer than this suite; update napari-connectome")
        if "log_id" not in meta and not self.read_only:
            # A log from before ids: it gets one now, so that its project can record it.
            self._write(lambda c: c.execute("INSERT OR IGNORE INTO meta VALUES ('log_id', ?)", (str(_uuid.uuid4()),)),
                        action="nothing was changed")

    # ---------------------------------------------------------------- reading
    def meta(self) -> dict[str, str]:
        if self._con is None:
            return {}
        try:
            return dict(self._con.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return {}
            raise _problem(self.path, exc, action="nothing was changed") from None

    def set_meta(self, values: dict[str, str]) -> None:
        """Record what the log is made on (only while it holds no operation)."""
        self._write(lambda con: con.executemany(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in values.items()]
        ), action="nothing was changed")

    def last_id(self) -> int:
        if self._con is None:
            return 0
        try:
            row = self._con.execute("SELECT MAX(operation_id) FROM operations").fetchone()
        except sqlite3.Error as exc:
            if "no such table" in str(exc):
                return 0
            raise _problem(self.path, exc, action="nothing was changed") from None
        return int(row[0] or 0)

    def rows(self, *, as_of: int | None = None, with_patch: bool = True) -> list[dict]:
        """Every operation in order (JSON columns decoded); up to ``as_of`` if given."""
        if self._con is None:
            return []
        cols = COLUMNS if with_patch else COLUMNS[:-1]
        sql = f"SELECT {', '.join(cols)} FROM operations"
        args: tuple = ()
        if as_of is not None:
            sql += " WHERE operation_id <= ?"
            args = (int(as_of),)
        sql += " ORDER BY operation_id"
        try:
            with self._lock:
                raw = self._con.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            if "no such table" in str(exc):
                return []
            raise _problem(self.path, exc, action="nothing was changed") from None
        out = []
        for values in raw:
            row = dict(zip(cols, values, strict=True))
            try:
                for c in _JSON_COLUMNS:
                    row[c] = json.loads(row[c])
            except (TypeError, json.JSONDecodeError):
                raise InputError(
                    self.path, f"operation {row['operation_id']} is damaged (unreadable JSON); the log was left untouched"
                ) from None
            out.append(row)
        return out

    def integrity_check(self) -> str:
        """SQLite's full ``PRAGMA integrity_check`` ("ok" when sound)."""
        if self._con is None:
            return "ok"
        return str(self._con.execute("PRAGMA integrity_check").fetchone()[0])

    def _uuids(self) -> list[str]:
        if self._con is None:
            return []
        try:
            with self._lock:
                return [r[0] for r in self._con.execute("SELECT uuid FROM operations ORDER BY operation_id")]
        except sqlite3.Error as exc:
            if "no such table" in str(exc):
                return []
            raise _problem(self.path, exc, action="nothing was changed") from None

    def head(self, n: int | None = None) -> str:
        """The running hash of the first ``n`` operations' uuids (all when None)."""
        return self._heads.head(n)

    def identity(self) -> dict:
        """``{"id", "operations", "head"}``: what the project records about this log."""
        return {"id": self.meta().get("log_id"), "operations": self._heads.count, "head": self._heads.head()}

    # ---------------------------------------------------------------- writing
    def append(self, row: dict, *, expect_last: int) -> int:
        """Append one operation in one transaction; returns its ``operation_id``.

        ``expect_last`` is the last operation id the caller has applied: if
        another program appended since, nothing is written (the caller's
        state would no longer match the log).

        Raises
        ------
        InputError
            The log is locked, changed by another program, or cannot be
            written; nothing was written then.
        """
        if row.get("type") not in TYPES:
            raise InputError("edit", f"unknown operation type {row.get('type')!r}")
        op_id = expect_last + 1
        values = dict(row)
        values["operation_id"] = op_id
        for c in _JSON_COLUMNS:
            values[c] = json.dumps(values.get(c), separators=(",", ":"))
        values.setdefault("patch", None)

        def insert(con: sqlite3.Connection) -> None:
            last = con.execute("SELECT MAX(operation_id) FROM operations").fetchone()[0] or 0
            if last != expect_last:
                raise InputError(
                    self.path,
                    f"the edit log was changed by another program (it now ends at operation {last}, "
                    f"this window knows {expect_last}); the edit was not applied — reopen the project",
                )
            con.execute(
                f"INSERT INTO operations ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                tuple(values[c] for c in COLUMNS),
            )

        self._write(insert, action="the edit was not applied, nothing was lost")
        self._heads.appended(values["uuid"], position=op_id)
        return op_id

    def _write(self, fn, *, action: str) -> None:
        if self.read_only:
            raise InputError(self.path, "the edit log is open read-only")
        if self._con is None:
            raise InputError(self.path, "the edit log is closed; reopen the project to edit")
        sqlite_log.write(self._con, self._lock, fn, problem=lambda exc: _problem(self.path, exc, action=action))

    def close(self, *, checkpoint: bool = True) -> None:
        """Close; folds the WAL into the main file first when writable."""
        con, self._con = self._con, None
        sqlite_log.close(con, checkpoint=checkpoint and not self.read_only)

    def __enter__(self) -> EditLog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------------ export
EXPORT_COLUMNS = (
    # CAVE's get_tabular_change_log columns first …
    "operation_id", "timestamp", "user_id", "is_merge", "before_root_ids", "after_root_ids",
    # … then ours.
    "type", "supervoxel_ids", "seeds_nm", "session", "task_id", "suggested_by", "undo_of", "uuid",
    "unix_time",
)


def is_merge_of(rows: list[dict]) -> dict[int, bool]:
    """Whether each operation joined segments (CAVE's ``is_merge``).

    A merge joins; a split divides; an undo does the opposite of its target
    and a redo the same as the operation its undo reversed.
    """
    out: dict[int, bool] = {}
    for row in rows:
        op = int(row["operation_id"])
        kind = row["type"]
        if kind == "merge":
            out[op] = True
        elif kind in ("split", "split_supervoxel"):
            out[op] = False
        else:
            out[op] = not out.get(int(row["undo_of"]), False)
    return out


def export_change_log(project, path: str | os.PathLike, *, fmt: str = "csv", overwrite: bool = False) -> Path:
    """Write the project's edit log as CSV or JSON.

    The columns are CAVE's ``get_tabular_change_log`` (``operation_id``,
    ``timestamp``, ``user_id``, ``is_merge``, ``before_root_ids``,
    ``after_root_ids``) followed by ours (``type``, ``supervoxel_ids``,
    ``seeds_nm``, ``session``, ``task_id``, ``suggested_by``, ``undo_of``,
    ``uuid``, ``unix_time``). In CSV, list columns are JSON text.

    Parameters
    ----------
    project
        A :class:`~napari_connectome.project.Project` or its folder.
    path
        The file to write: never one of a project's own files
        (:func:`~napari_connectome.outputs.guard_output`); written to a
        temporary file and renamed, so a crash leaves no half file.
    fmt
        ``"csv"`` or ``"json"`` (a list of objects).
    overwrite
        Replace an existing file at ``path`` (refused without it).

    Returns
    -------
    Path
        The file written.
    """
    from napari_connectome.project import Project, open_project

    if fmt not in ("csv", "json"):
        raise InputError("--format", f"must be 'csv' or 'json', got {fmt!r}")
    from napari_connectome.outputs import guard_output

    project = project if isinstance(project, Project) else open_project(project)
    path = guard_output(path, projects=[project.root], overwrite=overwrite, what="export")
    log = open_edit_log(project, read_only=True)
    try:
        rows = log.rows(with_patch=False)
    finally:
        log.close()
    merges = is_merge_of(rows)
    records = []
    for row in rows:
        records.append({
            "operation_id": row["operation_id"],
            "timestamp": row["timestamp"],
            "user_id": row["user"],
            "is_merge": merges[int(row["operation_id"])],
            "before_root_ids": row["before_roots"],
            "after_root_ids": row["after_roots"],
            "type": row["type"],
            "supervoxel_ids": row["supervoxel_ids"],
            "seeds_nm": row["seeds_nm"],
            "session": row["session"],
            "task_id": row["task_id"],
            "suggested_by": row["suggested_by"],
            "undo_of": row["undo_of"],
            "uuid": row["uuid"],
            "unix_time": row["unix_time"],
        })
    try:
        with atomic_write(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
            if fmt == "json":
                json.dump(records, f, indent=1)
                f.write("\n")
            else:
                writer = csv.writer(f)
                writer.writerow(EXPORT_COLUMNS)
                for rec in records:
                    writer.writerow([
                        json.dumps(v) if isinstance(v, (list, dict)) else ("" if v is None else v)
                        for v in (rec[c] for c in EXPORT_COLUMNS)
                    ])
    except OSError as exc:
        raise from_os_error(exc, path, action="nothing was written") from None
    return path


# ------------------------------------------------------------------ identity
def restart_hint(project) -> str:
    """How to start over while keeping the old log: the command a person types."""
    return f"napari-connectome project restart-log {project.root}"


def open_edit_log(project, *, read_only: bool = False, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> EditLog:
    """Open the project's edit log after checking it is the one the project recorded.

    A project that recorded a log (``manifest["history"]["edit_log"]``, or,
    for a project from before identities, an ``edit_log`` component) refuses
    a log that is missing, empty, another log, or shorter than recorded — one
    line saying what is wrong and how to recover (restore the file, or
    ``napari-connectome project restart-log DIR``, which keeps the old one
    aside). Opened writable, the project then records the log as it is.

    Raises
    ------
    InputError
        The log does not match the record, or cannot be opened.
    """
    path = project.component_path("edit_log")
    recorded = project.history("edit_log")
    registered = "edit_log" in (project.manifest.get("components") or {})
    expected = bool(recorded) and (int(recorded.get("operations") or 0) > 0 or bool(recorded.get("id")))
    how = f"restore it from a backup, or run `{restart_hint(project)}` to start a new log (the old file is kept aside)"
    if not (path.exists() or path.is_symlink()):
        if expected:
            n = int(recorded.get("operations") or 0)
            raise InputError(path, f"the edit log is missing, but this project recorded {n} operation(s) in it; "
                                   f"nothing was changed — {how}")
        if registered and not recorded:
            raise InputError(path, f"the edit log is missing, but this project had one; nothing was changed — {how}")
    try:
        log = EditLog(path, read_only=read_only, lock_timeout=lock_timeout,
                      create=not (expected or (registered and not recorded)))
    except InputError as exc:
        # A file that is not (or no longer) a log: say how to get out, as for a missing one.
        if any(w in exc.problem for w in ("empty", "not a napari-connectome edit log", "corrupt")):
            raise InputError(path, f"{exc.problem} — {how}") from None
        raise
    try:
        actual = log.identity()
        problem = sqlite_log.identity_problem(recorded if expected else None, actual, log.head,
                                              count_key="operations", what="edit log")
        if problem:
            raise InputError(path, f"{problem}; nothing was changed — {how}")
        if not read_only:
            record_edit_log(project, log)
    except BaseException:
        log.close(checkpoint=False)
        raise
    return log


def record_edit_log(project, log: EditLog) -> None:
    """Record the log's identity in the project (after opening, and after every edit).

    A failure to record costs nothing saved — the log holds every edit, and a
    record that lags behind still matches the log's first operations — so it
    is a warning, not an error.
    """
    ident = log.identity()
    recorded = project.history("edit_log") or {}
    if all(recorded.get(k) == v for k, v in ident.items()):
        return
    ident["recorded"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    try:
        project.record_history("edit_log", ident)
    except (InputError, OSError) as exc:
        import warnings

        warnings.warn(ConnectomeWarning(f"{project.root}: the edit log's identity could not be recorded ({exc}); "
                                        "the edits themselves are saved"), stacklevel=2)
