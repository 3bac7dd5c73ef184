"""What the project's append-only SQLite logs (edit log, effort log) share: one write transaction, closing.

Each log keeps its own schema and its own wording of errors (``problem``);
the mechanics that make a write all-or-nothing and a close fold the WAL
back live here once.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable

from napari_connectome.errors import InputError


def write(con: sqlite3.Connection, lock: threading.Lock, fn: Callable[[sqlite3.Connection], None], *,
          problem: Callable[[sqlite3.Error], InputError]) -> None:
    """Run ``fn(con)`` in one ``BEGIN IMMEDIATE`` … ``COMMIT``; roll back on any failure.

    ``BEGIN IMMEDIATE`` takes the write lock up front, so two programs on one
    log fail at the start (``problem`` says so) instead of half-way through.
    An SQLite error becomes ``problem(exc)``; any other exception is re-raised
    after the rollback.
    """
    with lock:
        try:
            con.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise problem(exc) from None
        try:
            fn(con)
            con.execute("COMMIT")
        except BaseException as exc:
            if con.in_transaction:
                con.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise problem(exc) from None
            raise


def close(con: sqlite3.Connection | None, *, checkpoint: bool) -> None:
    """Close ``con``; with ``checkpoint``, fold the WAL into the main file first."""
    if con is None:
        return
    try:
        if checkpoint:
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error:
        pass  # another reader holds the WAL: it is folded in later
    finally:
        con.close()
