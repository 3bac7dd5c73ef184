"""Full disks and read-only file systems: small tmpfs mounts and read-only bind mounts.

Mounting needs root (``mount -t tmpfs``, ``mount --bind`` +
``remount,ro,bind``); without it every case of these categories is recorded
as ``missing`` with the reason "not run (needs root)", never skipped
silently. Every mount is undone in a ``finally``, also when a case fails.

Full disk: the project or the output folder lives on a tmpfs of a few MiB
that a filler file has filled up to a few KiB; the command must refuse with
one line (``FILE: the disk is full``), keep everything that was saved, and
leave no partial output behind (the tmpfs holds as much as before).
Read-only: the destination is a tmpfs remounted read-only; writing there
must be refused with one line.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

from benchmarks.reliability import fixtures as fxm
from benchmarks.reliability.core import (
    Case,
    Run,
    cli,
    cli_has,
    crash_case,
    driver,
    judge,
    make_case,
    missing_case,
    run_process,
)

FULL = "full disk"
RO = "read-only mount"


class MountError(RuntimeError):
    """A mount could not be made (not root, no mount command, ...)."""


def _not_run(category: str, name: str, path, mount_ok) -> Case | None:
    """The case as "not run" when mounts need root or the command does not exist yet, else None."""
    if not mount_ok[0]:
        return _no_root_case(category, name, mount_ok[1])
    if path and not cli_has(path):
        return missing_case(category, name, "napari-connectome " + " ".join(path))
    return None


def _fresh_outside(fx, d: Path, outside: Path) -> None:
    """An empty case folder with a fresh copy of the project outside the mount."""
    shutil.rmtree(d, ignore_errors=True)
    outside.mkdir(parents=True)
    fx.fresh(outside / "P")


def _mount(*args: str) -> None:
    try:
        res = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MountError(f"mount {' '.join(args)}: {exc}") from None
    if res.returncode != 0:
        raise MountError(f"mount {' '.join(args)}: {res.stderr.strip() or res.returncode}")


def _umount(path: Path) -> None:
    for args in (["umount", str(path)], ["umount", "-l", str(path)]):
        try:
            if subprocess.run(args, capture_output=True, timeout=30).returncode == 0:
                return
        except (OSError, subprocess.TimeoutExpired):
            continue


def can_mount() -> tuple[bool, str]:
    """Whether this machine lets the campaign mount (root and a working tmpfs)."""
    if os.geteuid() != 0:
        return False, "not root"
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="reliability-probe-"))
    try:
        with tmpfs(d, size="1m"):
            pass
        return True, ""
    except MountError as exc:
        return False, str(exc)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def tmpfs(path: Path, *, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` for the ``with`` block."""
    path.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    try:
        yield path
    finally:
        _umount(path)


def remount_ro(path: Path) -> None:
    _mount("-o", "remount,ro", str(path))


@contextlib.contextmanager
def read_only_bind(path: Path) -> Iterator[Path]:
    """``path`` bind-mounted read-only onto itself for the ``with`` block."""
    _mount("--bind", str(path), str(path))
    try:
        _mount("-o", "remount,ro,bind", str(path))
        yield path
    finally:
        _umount(path)


def used_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def fill(path: Path, *, leave: int) -> None:
    """Write a filler file until ``leave`` bytes are free on ``path``'s file system."""
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    n = max(0, free - leave)
    with open(path / ".filler", "wb") as f:
        chunk = b"\0" * (1 << 16)
        while n > 0:
            k = min(n, len(chunk))
            try:
                f.write(chunk[:k])
                f.flush()
            except OSError:
                break
            n -= k


# ====================================================================== cases
def _no_root_case(category: str, name: str, why: str) -> Case:
    return Case(category=category, name=name, command="", classification="missing",
                reason=f"not run (needs root): {why}")


def _source_big() -> str:
    return f"{fxm.sample_path()}/boundaries"  # float32, 4 MB raw: more than the small tmpfs holds


def full_disk_cases(fx: fxm.ProjectFixture, work: Path, *, quick: bool = False,
                    mount_ok: tuple[bool, str] = (True, "")) -> list[Callable[[], Case]]:
    """Writing commands on a full tmpfs."""
    specs: list[tuple[str, Callable[[Path, Path], list[str]], str, tuple]] = [
        # (name, argv(mnt, outside), what must not be left behind / kept, cli path)
        ("convert to a full disk", lambda m, o: cli("convert", _source_big(), m / "out.ome.zarr", "--quiet"), "new", ("convert",)),
        ("convert --overwrite over a pyramid on a full disk",
         lambda m, o: cli("convert", _source_big(), m / "old.ome.zarr", "--overwrite", "--quiet"), "old-pyramid", ("convert",)),
        ("synthetic to a full disk", lambda m, o: cli("synthetic", m / "syn", "--shape", "64", "128", "128", "--quiet"),
         "new", ("synthetic",)),
        ("project create on a full disk", lambda m, o: fxm.create_project_cmd(m / "newP", fx.sample), "new", ("project", "create")),
        ("agglomerate --rebuild on a full disk", lambda m, o: cli("agglomerate", m / "P", "--rebuild", "--threshold",
                                                                  fxm.THRESHOLD, "--quiet"), "project", ("agglomerate",)),
        ("edit (driver) on a full disk", lambda m, o: driver("edit", m / "P", "--merges", "3"), "project", ()),
        ("log export to a full disk", lambda m, o: cli("log", "export", o / "P", m / "out.csv"), "new", ("log", "export")),
        ("effort report --csv to a full disk", lambda m, o: cli("effort", "report", o / "P", "--csv", m / "effort.csv"),
         "new", ("effort", "report")),
        ("simulate --csv to a full disk", lambda m, o: cli("simulate", o / "P", "--gt", fx.gt, "--decisions", "3",
                                                           "--csv", m / "sim.csv"), "new", ("simulate",)),
        ("log merge into a project on a full disk", lambda m, o: cli("log", "merge", m / "P", o / "COPY"), "project",
         ("log", "merge")),
    ]
    if quick:
        specs = [s for s in specs if s[0] in ("convert to a full disk", "edit (driver) on a full disk")]
    out = []
    for k, (name, argv_of, keep, path) in enumerate(specs):
        def one(name=name, argv_of=argv_of, keep=keep, path=path, k=k) -> Case:
            skipped = _not_run(FULL, name, path, mount_ok)
            if skipped is not None:
                return skipped
            d = work / f"full-{k:02d}"
            mnt, outside = d / "mnt", d / "outside"
            try:
                _fresh_outside(fx, d, outside)
                fxm.copy_project(fx.copy0, outside / "COPY")
                with tmpfs(mnt, size="4m"):
                    old_sha = None
                    if keep == "project":
                        fxm.copy_project(fx.p0, mnt / "P")
                    if keep == "old-pyramid":
                        r = run_process(cli("convert", f"{fx.sample}/raw", mnt / "old.ome.zarr", "--quiet"))
                        if r.rc != 0:
                            raise RuntimeError(f"could not write the old pyramid: {r.stderr.strip()[-200:]}")
                        old_sha = _tree_digest(mnt / "old.ome.zarr")
                    saved = fxm.snapshot(mnt / "P") if keep == "project" else None
                    verdict_notes: list[str] = []
                    fill(mnt, leave=0)
                    before_used = used_bytes(mnt)
                    before_names = set(os.listdir(mnt))
                    run = run_process(argv_of(mnt, outside), timeout=120)

                    def after(run: Run) -> list[tuple[str, str]]:
                        problems: list[tuple[str, str]] = []
                        if saved is not None:
                            problems += fxm.lost(mnt / "P", saved)
                            if run.rc != 0:
                                problems += fxm.history_after(mnt / "P", fx.uuids)
                        if old_sha is not None and _tree_digest(mnt / "old.ome.zarr") != old_sha and run.rc != 0:
                            problems.append(("data lost", "the old pyramid was changed by a convert that failed"))
                        if run.rc != 0:
                            grown = used_bytes(mnt) - before_used
                            new = sorted(set(os.listdir(mnt)) - before_names)
                            files = [f for n in new for f in ([mnt / n] if (mnt / n).is_file() else (mnt / n).rglob("*"))
                                     if f.is_file()]
                            if grown > 16 * 1024 or files:
                                problems.append(("silent wrong", f"failed but left {len(files)} file(s), "
                                                                 f"{max(grown, 0) // 1024} KiB of partial output "
                                                                 f"on the full disk ({', '.join(new[:3])})"))
                            elif new:
                                verdict_notes.append(f"left empty folder(s) {new[:3]}")
                        return problems

                    def success(run: Run) -> list[tuple[str, str]]:
                        # It fitted after all (free pages inside a file): what it reported must be there.
                        if keep == "project":
                            printed = [line.split()[1] for line in run.stdout.splitlines() if line.startswith("op ")]
                            return fxm.history_after(mnt / "P", list(fx.uuids) + printed)
                        return []

                    verdict = judge(run, expect="any", names=[str(mnt), "disk", "full"], on_success=success,
                                    after=after)
                    verdict.notes += verdict_notes
                    return make_case(FULL, name, run, verdict)
            except MountError as exc:
                return _no_root_case(FULL, name, str(exc))
            except Exception as exc:  # noqa: BLE001
                return crash_case(FULL, name, exc)
            finally:
                shutil.rmtree(d, ignore_errors=True)
        out.append(one)
    return out


def read_only_cases(fx: fxm.ProjectFixture, work: Path, *, quick: bool = False,
                    mount_ok: tuple[bool, str] = (True, "")) -> list[Callable[[], Case]]:
    """Writing to a read-only destination, and reading a project that lives on a read-only file system."""
    specs: list[tuple[str, Callable[[Path, Path], list[str]], str, tuple]] = [
        ("convert to a read-only folder", lambda m, o: cli("convert", f"{fx.sample}/raw", m / "out.ome.zarr", "--quiet"),
         "refuse", ("convert",)),
        ("synthetic to a read-only folder", lambda m, o: cli("synthetic", m / "syn", "--shape", "8", "16", "16", "--quiet"),
         "refuse", ("synthetic",)),
        ("project create in a read-only folder", lambda m, o: fxm.create_project_cmd(m / "newP", fx.sample), "refuse",
         ("project", "create")),
        ("log export to a read-only folder", lambda m, o: cli("log", "export", o / "P", m / "out.csv"), "refuse",
         ("log", "export")),
        ("effort report --csv to a read-only folder", lambda m, o: cli("effort", "report", o / "P", "--csv", m / "e.csv"),
         "refuse", ("effort", "report")),
        ("simulate --plot to a read-only folder", lambda m, o: cli("simulate", o / "P", "--gt", fx.gt, "--decisions", "3",
                                                                  "--plot", m / "s.png"), "refuse", ("simulate",)),
        ("agglomerate a project on a read-only file system", lambda m, o: cli("agglomerate", m / "P", "--quiet"),
         "refuse-project", ("agglomerate",)),
        ("edit (driver) a project on a read-only file system", lambda m, o: driver("edit", m / "P"), "refuse-project", ()),
        ("effort report of a project on a read-only file system", lambda m, o: cli("effort", "report", m / "P"),
         "ok-project", ("effort", "report")),
        ("evaluate a project on a read-only file system", lambda m, o: cli("evaluate", m / "P", fx.gt), "ok-project",
         ("evaluate",)),
        ("log export of a project on a read-only file system", lambda m, o: cli("log", "export", m / "P", o / "x.csv"),
         "ok-project", ("log", "export")),
        ("check a project on a read-only file system", lambda m, o: cli("check", m / "P", "--quiet"), "ok-project",
         ("check",)),
    ]
    if quick:
        specs = [s for s in specs if s[0] in ("convert to a read-only folder",
                                              "effort report of a project on a read-only file system")]
    out = []
    for k, (name, argv_of, expect, path) in enumerate(specs):
        def one(name=name, argv_of=argv_of, expect=expect, path=path, k=k) -> Case:
            skipped = _not_run(RO, name, path, mount_ok)
            if skipped is not None:
                return skipped
            d = work / f"ro-{k:02d}"
            mnt, outside = d / "mnt", d / "outside"
            try:
                _fresh_outside(fx, d, outside)
                with tmpfs(mnt, size="8m"):
                    if expect.endswith("project"):
                        fxm.copy_project(fx.p0, mnt / "P")
                    remount_ro(mnt)
                    saved = fxm.snapshot(mnt / "P") if expect.endswith("project") else None
                    run = run_process(argv_of(mnt, outside), timeout=120)

                    def after(run: Run) -> list[tuple[str, str]]:
                        return fxm.lost(mnt / "P", saved) if saved is not None else []

                    def success(run: Run) -> list[tuple[str, str]]:
                        if expect.startswith("refuse"):
                            return [("silent wrong", "exit 0 although the destination is read-only")]
                        return []

                    verdict = judge(run, expect="ok" if expect.startswith("ok") else "any",
                                    names=[str(mnt), "read-only"], on_success=success, after=after,
                                    allow_findings="check" in name)
                    return make_case(RO, name, run, verdict)
            except MountError as exc:
                return _no_root_case(RO, name, str(exc))
            except Exception as exc:  # noqa: BLE001
                return crash_case(RO, name, exc)
            finally:
                shutil.rmtree(d, ignore_errors=True)
        out.append(one)
    return out


def _tree_digest(root: Path) -> str | None:
    """A digest of every file under ``root`` (names and bytes); None if it does not exist."""
    import hashlib

    if not root.exists():
        return None
    h = hashlib.sha1()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
    return h.hexdigest()
