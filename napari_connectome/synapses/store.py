"""A project's synapses on disk: append-only batches in SQLite, crash-safe as the edit log.

Every change is a *batch* written in one transaction — a detection run, an
import, a proofreader's annotation — so a kill at any moment leaves either
the whole batch or none of it (WAL journal, ``synchronous=FULL``: a committed
batch survives a power cut too). Nothing is ever updated in place: a new
detection run *supersedes* the detected batches before it (they stay on
disk, so the provenance of every row is kept), while annotations and imports
stay in force until a proofreader retracts them, which is again a batch.

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
ORIGINS = ("detected", "imported", "annotated")

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
        if origin not in ORIGINS:
            raise InputError(self.path, f"unknown batch origin {origin!r} (one of {', '.join(ORIGINS)})")
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

    # ---------------------------------------------------------------- reading
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

    def current(self) -> SynapseTable:
        """The rows in force (batches not superseded), in batch then row order."""
        if self._con is None:
            return SynapseTable.empty()
        rows = self._con.execute(
            f"SELECT {', '.join('s.' + c for c in _COLUMNS)} FROM synapses s JOIN batches b ON s.batch = b.batch "
            "WHERE b.superseded_by IS NULL ORDER BY s.row").fetchall()
        if not rows:
            return SynapseTable.empty()
        a = np.asarray(rows, dtype=object)
        return SynapseTable(synapse_id=a[:, 0].astype(np.int64), pre=a[:, 1:4].astype(np.float64),
                            post=a[:, 4:7].astype(np.float64),
                            pre_id=np.asarray([_from_sql(v) for v in a[:, 7]], dtype=np.uint64),
                            post_id=np.asarray([_from_sql(v) for v in a[:, 8]], dtype=np.uint64),
                            score=a[:, 9].astype(np.float32))

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
