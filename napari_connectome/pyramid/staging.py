"""Build a folder beside its destination and put it in place only when it is complete.

A pyramid (or a folder of pyramids) is written into a *staging folder* in the
destination's own parent, so the final step is one ``rename`` on one file
system, and a crash at any moment leaves the old content or the complete new
one at the destination, or something the next write to it finishes or cleans
up.

Names beside a destination ``PARENT/NAME`` (``T`` is ``<pid>-<random>``, so
two runs, even on two hosts, never share one)::

    .NAME.partial-T/        the build
    .NAME.partial-T.json    its marker: format, destination, state ("writing",
                            then "complete"), the writer (pid, host, process
                            start), start time, source and parameters
    .NAME.old-T/            the replaced folder, until it is deleted
    .NAME.old-T.json        its marker: the writer, and the build replacing it
    .NAME.lock              held while leftovers are recovered, a build is
                            begun or swapped in; removed on release

Markers live *beside* the folders, not inside, so a finished folder holds
exactly what was written, the same bytes on every run. A marker is created
before its folder and deleted after it, and every marker is written while
the lock is held; so a folder without a marker is never ours (and is never
touched), and a half-written marker can only be left by a crashed writer.

Swapping a complete build ``S`` in, under the lock::

    1. S's marker says "complete"
    2. if DST exists: write OLD's marker (naming S), rename DST -> OLD
    3. rename S -> DST, delete S's marker
    4. (lock released) delete OLD, then its marker

Recovery, at the start of every build of ``DST`` and under the same lock,
touches only what has a marker whose writer is gone (its pid is not running
on this host, or, written on another host, the marker has not been touched by
the writer's heartbeat for :data:`STALE_AFTER_S`):

* a complete build whose swap had begun (DST missing, an OLD naming it) is
  renamed to DST: the crash hit between steps 2 and 3;
* an OLD folder is deleted if DST exists, and renamed back to DST otherwise
  (its replacement never arrived);
* any other build is deleted. Resuming a half-written pyramid soundly would
  need a fingerprint of the source and per-block done records; a rerun is
  always correct and costs only time, so we chose cleanup.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

from napari_connectome.atomic import fsync_dir, process_alive
from napari_connectome.errors import InputError

FORMAT = "napari-connectome.staged-build"
FORMAT_VERSION = 1
# A marker written on another host (a shared file system), whose writer
# cannot be asked whether it lives, is stale once its heartbeat is this old.
STALE_AFTER_S = 6 * 3600
# How often a running build touches its marker (its heartbeat).
HEARTBEAT_S = 60.0
# Builds of this process that are still running: a leftover carrying our own
# pid but not listed here belongs to an earlier, failed build of this process.
_ACTIVE: set[str] = set()


def _tag() -> str:
    return f"{os.getpid()}-{uuid.uuid4().hex[:10]}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _names(dst: Path) -> re.Pattern:
    """Our names beside ``dst``: (kind, tag, suffix)."""
    return re.compile(
        rf"^\.{re.escape(dst.name)}\.(partial|old)-(\d+-[0-9a-f]+)(\.json|\.json\.tmp)?$"
    )


def leftovers(dst: Path) -> list[str]:
    """Names of the build / replaced folders and markers beside ``dst`` (for checks and tests)."""
    pattern = _names(dst)
    try:
        return sorted(n for n in os.listdir(dst.parent) if pattern.match(n))
    except OSError:
        return []


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks since boot) of a process, where /proc tells."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces.
    fields = text[text.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def _writer(token: str) -> dict:
    """Who is writing: recorded in every marker, so a later run can tell if we still live."""
    stat = _proc_stat(os.getpid())
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "process_start": stat[1] if stat else None,
        "token": token,
    }


def writer_alive(info: dict, marker: Path) -> bool:
    """Whether the process that wrote ``info`` (a marker's content) may still be running.

    When in doubt the answer is yes: a live build is never touched.
    """
    if info.get("host") != socket.gethostname():
        try:
            age = time.time() - marker.stat().st_mtime
        except OSError:
            return True
        return age < STALE_AFTER_S
    pid = info.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return True
    if pid == os.getpid():
        return info.get("token") in _ACTIVE
    if not process_alive(pid):
        return False
    stat = _proc_stat(pid)
    if stat is None:
        return True
    state, start = stat
    if state in ("Z", "X"):  # killed, not yet reaped by its parent
        return False
    recorded = info.get("process_start")
    # Same pid, another start time: the pid now belongs to another program.
    return not (isinstance(recorded, int) and recorded != start)


def _half_written(path: Path) -> bool:
    """A small file that is not JSON: what a writer killed while writing a marker leaves."""
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > 2**20:
            return False
        json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return False
    except ValueError:
        return True
    return False


def _read_marker(path: Path, dst: Path) -> dict | None:
    """A marker of ours for ``dst``, or None (missing, unreadable, half-written, foreign)."""
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
    except (OSError, ValueError):
        return None
    if (
        not isinstance(info, dict)
        or info.get("format") != FORMAT
        or info.get("destination") != dst.name
    ):
        return None
    return info


def _write_marker(path: Path, info: dict) -> None:
    """Write a marker atomically (a fixed temporary name: the tag already makes it unique)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(info, f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def remove_tree(path: Path) -> None:
    """Delete a folder (or a file, or a link), best effort."""
    if path.is_symlink() or (os.path.lexists(path) and not path.is_dir()):
        with contextlib.suppress(OSError):
            path.unlink()
        return
    shutil.rmtree(path, ignore_errors=True)


def _unlink(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


@contextlib.contextmanager
def destination_lock(dst: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``dst``'s recoveries and swaps (between processes).

    A lock file ``.NAME.lock`` beside ``dst``, locked with ``flock`` and
    removed on release (re-opened when the previous holder removed it
    meanwhile). Where ``flock`` is missing or refused (Windows, some network
    file systems) the work goes on unlocked: a rename still refuses to put a
    folder over a non-empty one.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path = dst.parent / f".{dst.name}.lock"
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL, errno.EBADF):
                raise
            try:
                yield
            finally:
                _unlink(path)
            return
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        _unlink(path)
        os.close(fd)


def recover(dst: Path) -> list[str]:
    """Finish or clean up what interrupted builds of ``dst`` left behind; call under the lock.

    Returns
    -------
    list of str
        What was done, one phrase per folder or marker.
    """
    parent = dst.parent
    pattern = _names(dst)
    try:
        names = os.listdir(parent)
    except OSError:
        return []
    done: list[str] = []
    builds: dict[str, dict] = {}  # folder name -> marker, writers gone
    olds: dict[str, dict] = {}
    for name in sorted(names):
        found = pattern.match(name)
        if not found:
            continue
        kind, _, suffix = found.groups()
        path = parent / name
        if (suffix == ".json.tmp" and path.is_file() and not path.is_symlink()) or (
            suffix == ".json" and _half_written(path)
        ):
            # Markers are written under the lock we hold: a temporary or a
            # half-written one can only be a crashed writer's.
            _unlink(path)
            done.append(f"removed {name}")
            continue
        if suffix != ".json":
            continue
        info = _read_marker(path, dst)
        if info is None or writer_alive(info, path):
            continue
        (builds if kind == "partial" else olds)[name[: -len(".json")]] = info

    # A crash between "DST -> OLD" and "build -> DST": finish the swap.
    for old_name, info in olds.items():
        new = info.get("replaced_by")
        if (
            not os.path.lexists(dst)
            and (parent / old_name).is_dir()
            and new in builds
            and builds[new].get("state") == "complete"
            and (parent / new).is_dir()
        ):
            os.rename(parent / new, dst)
            fsync_dir(parent)
            _unlink(parent / f"{new}.json")
            del builds[new]
            done.append(f"finished swapping in {new}")

    for old_name in olds:
        folder = parent / old_name
        if os.path.lexists(folder):
            if os.path.lexists(dst):
                remove_tree(folder)
                done.append(f"removed replaced folder {old_name}")
            else:  # its replacement never arrived: the old content goes back
                os.rename(folder, dst)
                fsync_dir(parent)
                done.append(f"restored {old_name}")
        _unlink(parent / f"{old_name}.json")

    for build_name in builds:
        if os.path.lexists(parent / build_name):
            remove_tree(parent / build_name)
            done.append(f"removed interrupted build {build_name}")
        _unlink(parent / f"{build_name}.json")
    return done


class StagedFolder:
    """A folder built beside ``dst`` and swapped in by :meth:`commit`.

    Parameters
    ----------
    dst
        The destination folder.
    source
        What is written (recorded in the marker).
    parameters
        How it is written (recorded in the marker; JSON-serialisable).
    overwrite
        Whether an existing ``dst`` may be replaced.
    replaceable
        Called with an existing ``dst`` when ``overwrite`` is set: None if it
        may be replaced, else the problem (``"is not a zarr folder"``).
    exists_problem
        Called with an existing ``dst`` when ``overwrite`` is not set: the
        problem to report.

    Notes
    -----
    OSErrors propagate as they are (callers turn them into one line naming
    ``dst``). Call :meth:`open` first; on any failure, :meth:`discard`.
    """

    def __init__(
        self,
        dst: Path,
        *,
        source: str,
        parameters: dict,
        overwrite: bool,
        replaceable: Callable[[Path], str | None],
        exists_problem: Callable[[Path], str],
    ) -> None:
        self.dst = Path(dst)
        self.source = source
        self.parameters = parameters
        self.overwrite = overwrite
        self.replaceable = replaceable
        self.exists_problem = exists_problem
        self.token = uuid.uuid4().hex
        self.path: Path | None = None
        self.recovered: list[str] = []
        self._info: dict = {}
        self._beat = 0.0

    @property
    def marker(self) -> Path:
        """The marker of the build folder."""
        assert self.path is not None
        return self.path.with_name(self.path.name + ".json")

    def check_destination(self) -> None:
        """Refuse an existing ``dst`` that may not, or cannot, be replaced."""
        dst = self.dst
        if not os.path.lexists(dst):
            return
        if not self.overwrite:
            raise InputError(dst, self.exists_problem(dst))
        problem = self.replaceable(dst)
        if problem:
            raise InputError(dst, problem)

    def open(self) -> Path:
        """Recover leftovers, check ``dst``, create the build folder (marker first)."""
        parent = self.dst.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            # Something that is not a folder is in the way: name what it is
            # (a link loop, a file), not "already exists".
            os.stat(parent)  # raises ELOOP for a link loop
            raise NotADirectoryError(
                errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(parent)
            ) from None
        with destination_lock(self.dst):
            self.recovered = recover(self.dst)
            self.check_destination()
            path = parent / f".{self.dst.name}.partial-{_tag()}"
            self._info = {
                "format": FORMAT,
                "version": FORMAT_VERSION,
                "destination": self.dst.name,
                "state": "writing",
                **_writer(self.token),
                "started": _now(),
                "source": self.source,
                "parameters": self.parameters,
            }
            _ACTIVE.add(self.token)
            self.path = path
            try:
                _write_marker(self.marker, self._info)
                path.mkdir()
            except BaseException:
                _unlink(self.marker)
                self.path = None
                _ACTIVE.discard(self.token)
                raise
        self._beat = time.monotonic()
        return path

    def heartbeat(self) -> None:
        """Touch the marker now and then, so that other hosts see a live build."""
        now = time.monotonic()
        if self.path is None or now - self._beat < HEARTBEAT_S:
            return
        self._beat = now
        with contextlib.suppress(OSError):
            os.utime(self.marker)

    def commit(self) -> None:
        """Mark the build complete and swap it in (the order is in the module's notes)."""
        assert self.path is not None, "open() first"
        dst, parent, build = self.dst, self.dst.parent, self.path
        aside: Path | None = None
        with destination_lock(dst):
            self._info.update(state="complete", finished=_now())
            _write_marker(self.marker, self._info)
            if os.path.lexists(dst):
                # Written by someone else while we built, or kept for overwriting.
                self.check_destination()
                aside = parent / f".{dst.name}.old-{_tag()}"
                aside_marker = aside.with_name(aside.name + ".json")
                _write_marker(
                    aside_marker,
                    {
                        "format": FORMAT,
                        "version": FORMAT_VERSION,
                        "destination": dst.name,
                        **_writer(self.token),
                        "replaced_by": build.name,
                        "time": _now(),
                    },
                )
                try:
                    os.rename(dst, aside)
                except OSError:
                    _unlink(aside_marker)
                    raise
                try:
                    os.rename(build, dst)
                except OSError:
                    os.rename(aside, dst)
                    _unlink(aside_marker)
                    raise
            else:
                try:
                    os.rename(build, dst)
                except OSError as exc:
                    if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                        raise InputError(dst, self.exists_problem(dst)) from None
                    raise
            fsync_dir(parent)
            _unlink(self.marker)
            self.path = None
        _ACTIVE.discard(self.token)
        if aside is not None:
            # Failing here loses nothing: the next run removes what is left.
            remove_tree(aside)
            _unlink(aside.with_name(aside.name + ".json"))

    def discard(self, *, settle_s: float = 0.0) -> None:
        """Delete the build folder, then its marker (after a failure); ``dst`` is untouched.

        After a failed write a storage library may still finish chunk writes
        it had started, recreating folders: with ``settle_s``, deleting goes
        on until nothing has reappeared for two looks in a row.
        """
        if self.path is None:
            _ACTIVE.discard(self.token)
            return
        path, marker = self.path, self.marker
        deadline = time.monotonic() + settle_s
        quiet = 0
        while True:
            existed = os.path.lexists(path)
            remove_tree(path)
            quiet = 0 if existed else quiet + 1
            if quiet >= 2 or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        _unlink(marker)
        self.path = None
        _ACTIVE.discard(self.token)
