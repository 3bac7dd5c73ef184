"""The done-ledger: which blocks of a block-wise run are finished, so a rerun resumes.

One SQLite file beside the output (say ``OUTPUT/.blocks-done.sqlite``), in
write-ahead-log mode like the project's logs, holding a signature (what
defines the block ids: the grid, and whatever the caller adds) and one row
per done block, appended and never changed. Why SQLite and not one marker
file per block (daisy's way):

* a block is marked by one small committed row, not one file: a pyramid of
  10^5 blocks does not leave 10^5 files to create, list and delete on a
  shared file system;
* only the process that runs :func:`~napari_connectome.blockwise.run_blockwise`
  writes it (marks are made when a block's result comes back), so a
  dask.distributed cluster needs no shared lock, and its workers never see it;
* the exclusive locking mode takes the file for the run: a second run on the
  same output is refused at the start instead of racing the first, and
  SQLite then keeps its WAL index in memory (no ``-shm`` file, the part of
  WAL that does not work on network file systems);
* crash safety is SQLite's: a mark is committed or absent. A mark is written
  only after its block's ``process`` returned; losing the last marks in a
  power cut (``synchronous=NORMAL``) means those blocks run again, which
  gives the same bytes, never a block recorded but not written.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path

from napari_connectome.errors import InputError, from_os_error

LEDGER_FORMAT = "napari-connectome-blocks-done"
LEDGER_VERSION = 1
LEDGER_NAME = ".blocks-done.sqlite"


def ledger_path(output: str | os.PathLike, task: str = "") -> Path:
    """Where a run writing ``output`` (a folder) keeps its ledger: inside it, one per ``task``."""
    name = LEDGER_NAME if not task else f".blocks-done-{task}.sqlite"
    return Path(output) / name


class Ledger:
    """An append-only record of the blocks a run has finished.

    Parameters
    ----------
    path
        The ledger file (created with its tables if missing; its folder must exist).
    signature
        What the block ids mean (JSON-ready, e.g. ``BlockGrid.describe()``
        plus the task's parameters). Stored by the first run; a later run
        with another signature is refused, since its block ids would name
        other blocks. None: not checked.

    Raises
    ------
    InputError
        The file is another run's (locked), another grid's (signature), not
        a ledger, or cannot be created.
    """

    def __init__(self, path: str | os.PathLike, *, signature: dict | None = None) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        if not self.path.parent.is_dir():
            raise InputError(self.path, "the folder for the block ledger does not exist")
        try:
            self._con = sqlite3.connect(str(self.path), timeout=0.2, isolation_level=None,
                                        check_same_thread=False)
        except OSError as exc:
            raise from_os_error(exc, self.path) from None
        except sqlite3.Error as exc:
            raise self._problem(exc) from None
        try:
            self._open(signature)
        except BaseException:
            self._con.close()
            raise

    def _problem(self, exc: sqlite3.Error) -> InputError:
        text = " ".join(str(exc).split())
        if "locked" in text or "busy" in text:
            return InputError(self.path, "another run is recording into this block ledger; wait for it "
                              "to end or stop it (one run per output at a time)")
        if "not a database" in text or "malformed" in text:
            return InputError(self.path, f"is not a block ledger ({text}); remove it to start the run over")
        return InputError(self.path, f"the block ledger cannot be used: {text}")

    def _open(self, signature: dict | None) -> None:
        con = self._con
        want = None if signature is None else json.dumps(signature, sort_keys=True)
        try:
            # Exclusive before WAL: the WAL index then lives in this process's
            # memory (no -shm), and the file stays ours until close().
            con.execute("PRAGMA locking_mode=EXCLUSIVE")
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute("BEGIN IMMEDIATE")
            try:
                con.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                con.execute("CREATE TABLE IF NOT EXISTS done (block_id INTEGER PRIMARY KEY, at REAL NOT NULL)")
                meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
                if not meta:
                    con.executemany("INSERT INTO meta VALUES (?, ?)", [
                        ("format", LEDGER_FORMAT), ("version", str(LEDGER_VERSION)),
                        ("signature", want if want is not None else "null"),
                    ])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._problem(exc) from None
        if meta:
            if meta.get("format") != LEDGER_FORMAT:
                raise InputError(self.path, "is an SQLite file but not a block ledger; remove it or write elsewhere")
            stored = meta.get("signature", "null")
            if want is not None and stored not in ("null", want):
                raise InputError(
                    self.path,
                    f"records the blocks of another run (signature {_short(stored)}, this run "
                    f"{_short(want)}); remove it to start over, or write to another output",
                )

    def is_done(self, block_id: int) -> bool:
        """Whether block ``block_id`` was recorded done."""
        with self._lock:
            row = self._con.execute("SELECT 1 FROM done WHERE block_id = ?", (int(block_id),)).fetchone()
        return row is not None

    def mark_done(self, block_id: int) -> None:
        """Record block ``block_id`` as done (committed when this returns; again is a no-op)."""
        with self._lock:
            try:
                self._con.execute("INSERT OR IGNORE INTO done (block_id, at) VALUES (?, ?)",
                                  (int(block_id), time.time()))
            except sqlite3.Error as exc:
                raise self._problem(exc) from None

    def count(self) -> int:
        """Number of blocks recorded done."""
        with self._lock:
            return int(self._con.execute("SELECT count(*) FROM done").fetchone()[0])

    def done_ids(self) -> list[int]:
        """The ids recorded done, ascending."""
        with self._lock:
            return [int(r[0]) for r in self._con.execute("SELECT block_id FROM done ORDER BY block_id")]

    def close(self) -> None:
        """Fold the write-ahead log into the file and release it for the next run."""
        with self._lock:
            con, self._con = self._con, None
        if con is None:
            return
        try:
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass  # the -wal file keeps the rows; the next open folds them in
        finally:
            con.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _short(text: str, n: int = 120) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
