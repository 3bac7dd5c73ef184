"""A project's synapses on disk: append-only batches in SQLite, crash-safe as the edit log.

Every change is a *batch* written in one transaction — a detection run, an
import, a proofreader's annotation — so a kill at any moment leaves either
the whole batch or none of it (WAL journal, ``synchronous=FULL``: a committed
batch survives a power cut too). Nothing is ever updated in place: a new
detection run *supersedes* the detected batches before it (they stay on
disk, so the provenance of every row is kept), while annotations and imports
stay in force until a proofreader retracts them, which is again a batch.

A proofreader's verdict on one row (a synapse micro-task's answer) is a
*reviewed* batch holding a copy of the row and ``{"verdict": "yes" | "no",
"reviews": row}``: while it is in force the original row is hidden; a *yes*
keeps the copy in force (it outlives a new detection run, as an annotation
does), a *no* keeps it out of the table but on record
(:meth:`SynapseStore.rejected`). Undoing the answer retracts the batch and the
original row is back.

:meth:`SynapseStore.current` is the table in force: the rows of batches not
superseded, in batch then row order.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid as _uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from napari_connectome import sqlite_log
from napari_connectome.errors import InputError
from napari_connectome.synapses.table import SynapseTable

STORE_FORMAT = "napari-connectome synapse store"
STORE_VERSION = 1
#: Where a batch came from.
ORIGINS = ("detected", "imported", "annotated", "reviewed")
#: A proofreader's verdicts on a row.
VERDICTS = ("yes", "no")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS batches (batch INTEGER PRIMARY KEY, origin TEXT NOT NULL, created TEXT NOT NULL, "
    "details TEXT NOT NULL, superseded_by INTEGER)",
    "CREATE TABLE IF NOT EXISTS synapses (row INTEGER PRIMARY KEY, batch INTEGER NOT NULL REFERENCES batches(batch), "
    "synapse_id INTEGER NOT NULL, pre_z REAL NOT NULL, pre_y REAL NOT NULL, pre_x REAL NOT NULL, "
    "post_z REAL NOT NULL, post_y REAL NOT NULL, post_x REAL NOT NULL, pre_id INTEGER NOT NULL, "
    "post_id INTEGER NOT NULL, score REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS synapses_batch ON synapses(batch)",
)
_COLUMNS = ("synapse_id", "pre_z", "pre_y", "pre_x", "post_z", "post_y", "post_x", "pre_id", "post_id", "score")


def _problem(path: Path, exc: sqlite3.Error, *, action: str) -> InputError:
    text = str(exc)
    if "locked" in text or "busy" in text:
        return InputError(path, f"the synapse store is in use by another program; {action}")
    if "malformed" in text or "not a database" in text:
        return InputError(path, f"the synapse store is damaged ({text}); it was left untouched, {action}")
    return InputError(path, f"the synapse store could not be used ({text}); {action}")


class SynapseStore:
    """An open synapse store.

    Parameters
    ----------
    path
        The SQLite file (``project.component_path("synapses")``); created
        when missing unless ``read_only``.
    read_only
        Never creates or changes the file; a missing file reads as empty.
    lock_timeout
        Seconds to wait for another program's write lock.
    """

    def __init__(self, path: str | os.PathLike, *, read_only: bool = False, lock_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self._lock = threading.Lock()
        self._con: sqlite3.Connection | None = None
        if self.path.is_dir():
            raise InputError(self.path, "the synapse store path is a folder, not a file")
        if read_only and not self.path.exists():
            return
        try:
            if read_only:
                self._con = sqlite_log.connect_read_only(self.path, timeout=lock_timeout)
            else:
                self._con = sqlite3.connect(self.path, timeout=lock_timeout, isolation_level=None,
                                            check_same_thread=False)
            self._setup()
        except sqlite3.Error as exc:
            self.close(checkpoint=False)
            raise _problem(self.path, exc, action="nothing was changed") from None
        except BaseException:
            self.close(checkpoint=False)
            raise

    def _setup(self) -> None:
        con = self._con
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "synapses" not in tables and tables - {"meta"}:
            raise InputError(self.path, "is an SQLite file but not a napari-connectome synapse store; "
                                        "it was left untouched")
        if not self.read_only:
            sqlite_log.make_durable(con)
        sqlite_log.quick_check(con)
        if "synapses" not in tables:
            if self.read_only:
                return

            def create(c: sqlite3.Connection) -> None:
                for statement in _SCHEMA:
                    c.execute(statement)
                c.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)",
                              [("format", STORE_FORMAT), ("version", str(STORE_VERSION)),
                               ("store_id", str(_uuid.uuid4()))])

            self._write(create, action="nothing was changed")
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        if meta.get("format") != STORE_FORMAT:
            raise InputError(self.path, "is an SQLite file but not a napari-connectome synapse store; "
                                        "it was left untouched")
        if int(meta.get("version", "0")) > STORE_VERSION:
            raise InputError(self.path, f"synapse store version {meta['version']} is newer than this suite; "
                                        "update napari-connectome")

    def _write(self, fn, *, action: str) -> None:
        if self.read_only:
            raise InputError(self.path, "the synapse store is open read-only")
        if self._con is None:
            raise InputError(self.path, "the synapse store is closed")
        sqlite_log.write(self._con, self._lock, fn, problem=lambda exc: _problem(self.path, exc, action=action))

    # ---------------------------------------------------------------- writing
    def append(self, table: SynapseTable, *, origin: str, details: dict | None = None,
               supersede_detected: bool | None = None) -> int:
        """Append ``table`` as one batch (all rows or none); returns the batch number.

        Parameters
        ----------
        origin
            One of :data:`ORIGINS`.
        details
            What made the batch (model, thresholds, source file): kept as JSON.
        supersede_detected
            Retire the earlier detected batches (default: True for a detection run).
        """
        if origin not in ORIGINS or origin == "reviewed":
            raise InputError(self.path, f"unknown batch origin {origin!r} (one of {', '.join(ORIGINS[:3])}; "
                                        "verdicts go through review())")
        supersede = origin == "detected" if supersede_detected is None else supersede_detected
        created = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        text = json.dumps(details or {}, sort_keys=True, default=str)
        rows = list(zip(table.synapse_id.tolist(), *(table.pre[:, a].tolist() for a in range(3)),
                        *(table.post[:, a].tolist() for a in range(3)), table.pre_id.tolist(),
                        table.post_id.tolist(), table.score.astype(np.float64).tolist(), strict=True))
        # uint64 ids above 2**63 do not fit SQLite's INTEGER: stored as their two's complement.
        rows = [(*r[:7], _to_sql(r[7]), _to_sql(r[8]), r[9]) for r in rows]
        number: list[int] = []

        def insert(c: sqlite3.Connection) -> None:
            cur = c.execute("INSERT INTO batches (origin, created, details) VALUES (?, ?, ?)", (origin, created, text))
            batch = int(cur.lastrowid)
            if supersede:
                c.execute("UPDATE batches SET superseded_by = ? WHERE origin = 'detected' AND superseded_by IS NULL "
                          "AND batch != ?", (batch, batch))
            c.executemany(f"INSERT INTO synapses (batch, {', '.join(_COLUMNS)}) VALUES ({', '.join('?' * 11)})",
                          [(batch, *r) for r in rows])
            number.append(batch)

        self._write(insert, action="nothing was written, nothing saved was lost")
        return number[0]

    def retract(self, batch: int, *, by: str = "annotated") -> int:
        """Take a batch out of force (a new, empty batch records who did); returns that new batch."""
        if self._con is None or self._con.execute("SELECT 1 FROM batches WHERE batch = ?", (int(batch),)).fetchone() is None:
            raise InputError(self.path, f"there is no batch {batch}")
        created = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        number: list[int] = []

        def mark(c: sqlite3.Connection) -> None:
            cur = c.execute("INSERT INTO batches (origin, created, details) VALUES (?, ?, ?)",
                            (by, created, json.dumps({"retracts": int(batch)})))
            c.execute("UPDATE batches SET superseded_by = ? WHERE batch = ? AND superseded_by IS NULL",
                      (int(cur.lastrowid), int(batch)))
            number.append(int(cur.lastrowid))

        self._write(mark, action="nothing was changed")
        return number[0]

    def review(self, row: int, verdict: str, *, details: dict | None = None) -> int:
        """Record a proofreader's verdict on row ``row`` (see the module notes); returns the new batch.

        Parameters
        ----------
        row
            A row in force (from :meth:`current` with ``with_rows=True``).
        verdict
            ``"yes"`` (the synapse is right) or ``"no"``.
        details
            Kept with the verdict (task id, user, question).
        """
        if verdict not in VERDICTS:
            raise InputError(self.path, f"a verdict is one of {', '.join(VERDICTS)}, got {verdict!r}")
        row = int(row)
        # The one row, not the whole table: this runs on every answer.
        found = None if self._con is None else self._con.execute(
            "SELECT s.batch, s.synapse_id FROM synapses s JOIN batches b ON s.batch = b.batch "
            "WHERE s.row = ? AND b.superseded_by IS NULL", (row,)).fetchone()
        hidden, rejected = self._verdicts() if self._con is not None else (set(), set())
        if found is None or row in hidden or int(found[0]) in rejected:
            raise InputError(self.path, f"row {row} is not in force (retracted, superseded or already reviewed); "
                                        "nothing was recorded")
        created = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        text = json.dumps({**(details or {}), "verdict": verdict, "reviews": row, "batch_of_row": int(found[0]),
                           "synapse_id": int(found[1])}, sort_keys=True, default=str)
        number: list[int] = []

        def insert(c: sqlite3.Connection) -> None:
            cur = c.execute("INSERT INTO batches (origin, created, details) VALUES ('reviewed', ?, ?)", (created, text))
            batch = int(cur.lastrowid)
            c.execute(f"INSERT INTO synapses (batch, {', '.join(_COLUMNS)}) SELECT ?, {', '.join(_COLUMNS)} "
                      "FROM synapses WHERE row = ?", (batch, row))
            number.append(batch)

        self._write(insert, action="nothing was recorded, nothing saved was lost")
        return number[0]

    # ---------------------------------------------------------------- reading
    def _verdicts(self) -> tuple[set[int], set[int]]:
        """``(rows hidden by a verdict in force, batches of "no" verdicts in force)``."""
        hidden, rejected = set(), set()
        for batch, details in self._con.execute(
                "SELECT batch, details FROM batches WHERE origin = 'reviewed' AND superseded_by IS NULL"):
            d = json.loads(details)
            if "reviews" not in d:
                continue  # the record of a retraction
            hidden.add(int(d["reviews"]))
            if d.get("verdict") == "no":
                rejected.add(int(batch))
        return hidden, rejected

    def _select(self, where: str, params=()) -> tuple[np.ndarray, np.ndarray, SynapseTable]:
        rows = self._con.execute(
            f"SELECT s.row, s.batch, {', '.join('s.' + c for c in _COLUMNS)} FROM synapses s "
            f"JOIN batches b ON s.batch = b.batch WHERE {where} ORDER BY s.row", params).fetchall()
        if not rows:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), SynapseTable.empty()
        a = np.asarray(rows, dtype=object)
        table = SynapseTable(synapse_id=a[:, 2].astype(np.int64), pre=a[:, 3:6].astype(np.float64),
                             post=a[:, 6:9].astype(np.float64),
                             pre_id=np.asarray([_from_sql(v) for v in a[:, 9]], dtype=np.uint64),
                             post_id=np.asarray([_from_sql(v) for v in a[:, 10]], dtype=np.uint64),
                             score=a[:, 11].astype(np.float32))
        return a[:, 0].astype(np.int64), a[:, 1].astype(np.int64), table

    def origins(self) -> dict[int, str]:
        """Batch → origin, without counting rows (what :meth:`batches` also does)."""
        if self._con is None:
            return {}
        return {int(b): o for b, o in self._con.execute("SELECT batch, origin FROM batches")}

    def batches(self) -> list[dict]:
        """Every batch, oldest first: ``batch, origin, created, details, superseded_by, rows``."""
        if self._con is None:
            return []
        out = []
        for b, origin, created, details, sup, n in self._con.execute(
                "SELECT b.batch, b.origin, b.created, b.details, b.superseded_by, "
                "(SELECT COUNT(*) FROM synapses s WHERE s.batch = b.batch) FROM batches b ORDER BY b.batch"):
            out.append({"batch": b, "origin": origin, "created": created, "details": json.loads(details),
                        "superseded_by": sup, "rows": n})
        return out

    def current(self, *, with_rows: bool = False):
        """The rows in force, in batch then row order.

        In force: in a batch not superseded, not hidden by a verdict in force,
        and not the copy of a *no* verdict.

        Parameters
        ----------
        with_rows
            Also return each row's number and batch: ``(rows, batches, table)``.
        """
        if self._con is None:
            empty = SynapseTable.empty()
            return (np.zeros(0, np.int64), np.zeros(0, np.int64), empty) if with_rows else empty
        hidden, rejected = self._verdicts()
        rows, batches, table = self._select("b.superseded_by IS NULL")
        keep = np.array([r not in hidden and b not in rejected for r, b in zip(rows.tolist(), batches.tolist(),
                                                                                strict=True)], dtype=bool)
        if not keep.all():
            rows, batches, table = rows[keep], batches[keep], table.subset(keep)
        return (rows, batches, table) if with_rows else table

    def rejected(self) -> SynapseTable:
        """Rows a proofreader answered *no* to (verdicts in force): kept out of the table, on record."""
        if self._con is None:
            return SynapseTable.empty()
        _, rejected = self._verdicts()
        if not rejected:
            return SynapseTable.empty()
        marks = ", ".join("?" * len(rejected))
        return self._select(f"b.batch IN ({marks})", tuple(sorted(rejected)))[2]

    def verdicts(self) -> list[dict]:
        """Verdicts in force, oldest first: ``batch``, ``row`` reviewed, ``verdict`` and the details."""
        if self._con is None:
            return []
        out = []
        for b, text in self._con.execute("SELECT batch, details FROM batches WHERE origin = 'reviewed' "
                                         "AND superseded_by IS NULL ORDER BY batch"):
            d = json.loads(text)
            if "reviews" in d:
                out.append({**d, "batch": int(b), "row": int(d["reviews"])})
        return out

    def close(self, *, checkpoint: bool = True) -> None:
        """Close; folds the WAL into the main file first when writable."""
        con, self._con = self._con, None
        sqlite_log.close(con, checkpoint=checkpoint and not self.read_only)

    def __enter__(self) -> SynapseStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _to_sql(value: int) -> int:
    value = int(value)
    return value - (1 << 64) if value >= 1 << 63 else value


def _from_sql(value: int) -> int:
    value = int(value)
    return value + (1 << 64) if value < 0 else value
