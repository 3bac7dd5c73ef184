"""What the project's append-only SQLite logs (edit log, effort log) share.

One write transaction, closing, a read-only connection that works on a
read-only disk, and the *identity* of a log (an id and a running hash of its
entries) that the project records so that a missing, emptied, foreign or
rolled-back log is noticed. Each log keeps its own schema and its own wording
of errors (``problem``).
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from napari_connectome.errors import InputError


class UnfoldedChanges(sqlite3.OperationalError):
    """A read-only folder holds a log whose write-ahead file still has changes."""


def connect_read_only(path, *, timeout: float) -> sqlite3.Connection:
    """A read-only connection, also on a read-only disk or folder.

    SQLite reads a WAL-mode database through its ``-shm`` file, which it must
    be able to create; where it cannot (read-only mount, no write permission)
    and the ``-wal`` file is empty or absent — every committed row is in the
    main file — the file is opened ``immutable``. With changes still in the
    ``-wal`` file that cannot work, and :class:`UnfoldedChanges` says so.
    """
    path = Path(path)
    uri = path.resolve().as_uri()
    kwargs = {"uri": True, "timeout": timeout, "isolation_level": None, "check_same_thread": False}
    con = sqlite3.connect(f"{uri}?mode=ro", **kwargs)
    try:
        con.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return con
    except sqlite3.Error as exc:
        con.close()
        text = str(exc).lower()
        if "unable to open" not in text and "readonly" not in text and "read-only" not in text:
            raise
    wal = path.with_name(path.name + "-wal")
    try:
        pending = wal.exists() and wal.stat().st_size > 0
    except OSError:
        pending = True
    if pending:
        raise UnfoldedChanges(
            "it has committed changes in its -wal file and the folder is read-only; "
            "open the project once where it can be written to fold them in"
        )
    return sqlite3.connect(f"{uri}?mode=ro&immutable=1", **kwargs)


def make_durable(con: sqlite3.Connection) -> None:
    """WAL journal and ``synchronous=FULL``: a committed transaction survives a kill and a power cut."""
    mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise sqlite3.OperationalError(f"could not switch to WAL journal (got {mode})")
    con.execute("PRAGMA synchronous=FULL")


def quick_check(con: sqlite3.Connection) -> None:
    """SQLite's quick check; a damaged file raises :class:`sqlite3.DatabaseError` (and is not touched)."""
    check = con.execute("PRAGMA quick_check").fetchone()[0]
    if check != "ok":
        raise sqlite3.DatabaseError(f"database disk image is malformed: {check}")


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


def chain(head: str, item: str) -> str:
    """The running hash of a log after one more entry: ``H(head, item)``.

    A log's *head* over all its entries identifies their sequence: a log that
    lost, gained in the middle or reordered entries has another head, and a
    longer log still contains the recorded head after as many entries.
    """
    h = hashlib.blake2b(digest_size=16)
    h.update(head.encode("ascii"))
    h.update(b"\0")
    h.update(item.encode("utf-8"))
    return h.hexdigest()


def heads(items) -> list[str]:
    """``[head after 0 entries, after 1, ...]`` (the first is ``""``)."""
    out = [""]
    for item in items:
        out.append(chain(out[-1], item))
    return out


class Heads:
    """A log's running hashes: read from its entries' keys once, then extended on every append.

    Parameters
    ----------
    read_keys
        Returns the key of every entry, oldest first (an operation's uuid, ...).
    """

    def __init__(self, read_keys: Callable[[], list[str]]) -> None:
        self._read_keys = read_keys
        self._heads: list[str] | None = None

    def _all(self) -> list[str]:
        if self._heads is None:
            self._heads = heads(self._read_keys())
        return self._heads

    @property
    def count(self) -> int:
        """Entries in the log."""
        return len(self._all()) - 1

    def head(self, n: int | None = None) -> str:
        """The running hash after the first ``n`` entries (all when None; ``""`` beyond the log)."""
        all_heads = self._all()
        return all_heads[-1] if n is None else (all_heads[n] if 0 <= n < len(all_heads) else "")

    def appended(self, key: str, *, position: int) -> None:
        """Entry number ``position`` (1, 2, …) was committed with ``key``.

        When the hashes held were read before another program appended (the
        new entry does not follow them), they are read again on next use
        instead: a hash chain that skipped an entry would record a history
        the log does not have.
        """
        if self._heads is None:
            return
        if len(self._heads) == position:
            self._heads.append(chain(self._heads[-1], key))
        else:
            self._heads = None


def move_aside(path, tag: str) -> Path:
    """Rename a log and its SQLite sidecars to ``NAME.<tag>`` (``-2``, ``-3`` … if taken); returns it.

    Raises :class:`OSError` as the rename does: the caller words the error.
    """
    path = Path(path)
    target = path.with_name(f"{path.name}.{tag}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.{tag}-{n}")
    os.replace(path, target)
    for suffix in ("-wal", "-shm", "-journal"):
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.replace(side, target.with_name(target.name + suffix))
    return target


def identity_problem(recorded: dict | None, actual: dict, heads_of, *, count_key: str, what: str) -> str | None:
    """Why a log does not match what its project recorded, or None.

    Parameters
    ----------
    recorded
        ``{"id", count_key, "head"}`` from the project manifest (None: nothing recorded).
    actual
        The same fields of the log as it is.
    heads_of
        ``heads_of(n) -> str``: the log's head after its first ``n`` entries.
    count_key, what
        ``"operations"`` / ``"rows"``; the log's name in the message.
    """
    if not recorded or not (recorded.get("id") or recorded.get(count_key)):
        return None  # nothing recorded, or a restart that recorded no log yet
    want_id = recorded.get("id")
    want_n = int(recorded.get(count_key) or 0)
    if actual.get(count_key, 0) == 0 and actual.get("id") is None:
        return f"the {what} is empty, but this project recorded {want_n} {count_key} in it"
    if want_id and actual.get("id") != want_id:
        return (f"the {what} is another log (id {str(actual.get('id'))[:8]}…) than this project's "
                f"(id {str(want_id)[:8]}…, {want_n} {count_key})")
    have_n = int(actual.get(count_key) or 0)
    if have_n < want_n:
        return (f"the {what} holds {have_n} {count_key} but this project recorded {want_n}: "
                f"the last {want_n - have_n} are missing (an older copy?)")
    if recorded.get("head") is not None and heads_of(want_n) != recorded["head"]:
        return f"the first {want_n} {count_key} of the {what} are not the ones this project recorded (rewritten?)"
    return None
