"""Project damage × every command, and output paths that land on project files.

Each damage kind is applied to a fresh copy of the fixture project (see
:mod:`benchmarks.reliability.fixtures`), then one command runs on it. The
intended behaviour, per kind of damage:

* the **edit log** (deleted, emptied, truncated, garbage, another project's,
  a foreign SQLite file, rolled back to fewer operations, ...) and the
  **manifest**: every command that needs them refuses with one line — or,
  if it succeeds, its result equals the intact project's (the damage was
  harmless, e.g. a garbage ``-wal`` that SQLite ignores). A command that
  succeeds with another result (0 edits, fewer rows, another VI) is
  ``silent wrong``;
* the **effort log**: ``effort report`` and ``check`` as above; commands that
  do not read it must still work;
* **caches** (``graph/rag.npz``, ``graph/merge_tree.npz``, ``skeletons.npz``,
  the graph folder): every command works, rebuilding what it needs, with the
  intact project's result (a refusal counts as ``other``);
* a **read-only** project folder: reading commands work, writing ones refuse;
* whatever happens, no protected content is lost: the edit log keeps every
  operation it had, the effort log its rows, a manifest that parsed still
  parses (:func:`~benchmarks.reliability.fixtures.lost`).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
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
from benchmarks.reliability.mounts import MountError, read_only_bind

CATEGORY = "project damage"
GUARD = "output guard"


# ====================================================================== damage kinds
@dataclass(frozen=True)
class Damage:
    """One kind of project damage."""

    name: str
    area: str  # edits | effort | manifest | manifest-soft | cache | ro
    apply: Callable[[Path, fxm.ProjectFixture], None]
    harmless_possible: bool = False
    needs_root: bool = False
    refusal_ok: bool = False  # a cache damage that may be refused (moving the person's file away is not ours to do)


def _rng(name: str) -> random.Random:
    return random.Random(name)


def _rm_sidecars(path: Path) -> None:
    for suffix in ("-wal", "-shm", "-journal"):
        side = path.with_name(path.name + suffix)
        if side.exists() or side.is_symlink():
            side.unlink()


def _deleted(name):
    def apply(p, fx):
        (p / name).unlink()
        _rm_sidecars(p / name)
    return apply


def _emptied(name):
    def apply(p, fx):
        (p / name).write_bytes(b"")
        _rm_sidecars(p / name)
    return apply


def _truncated(name, keep):
    def apply(p, fx):
        data = (p / name).read_bytes()
        n = int(len(data) * keep) if isinstance(keep, float) else keep
        (p / name).write_bytes(data[:n])
        _rm_sidecars(p / name)
    return apply


def _garbage(name):
    def apply(p, fx):
        size = max(1, (p / name).stat().st_size)
        (p / name).write_bytes(_rng(name).randbytes(size))
        _rm_sidecars(p / name)
    return apply


def _flip_header(name):
    def apply(p, fx):
        data = bytearray((p / name).read_bytes())
        rnd = _rng(name + "flip")
        for _ in range(8):
            i = rnd.randrange(16, min(100, len(data)))
            data[i] ^= 1 << rnd.randrange(8)
        (p / name).write_bytes(bytes(data))
        _rm_sidecars(p / name)
    return apply


def _other_project(name):
    def apply(p, fx):
        shutil.copy2(fx.other_project() / name, p / name)
        _rm_sidecars(p / name)
    return apply


def _foreign_sqlite(name):
    def apply(p, fx):
        (p / name).unlink()
        _rm_sidecars(p / name)
        con = sqlite3.connect(str(p / name))
        con.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        con.execute("INSERT INTO notes (text) VALUES ('a shopping list, not an edit log')")
        con.commit()
        con.close()
    return apply


def _rolled_back(name):
    def apply(p, fx):
        shutil.copy2(fx.snap / name, p / name)
        _rm_sidecars(p / name)
    return apply


def _wal_garbage(name):
    def apply(p, fx):
        rnd = _rng(name + "wal")
        (p / (name + "-wal")).write_bytes(rnd.randbytes(8192))
        (p / (name + "-shm")).write_bytes(rnd.randbytes(32768))
    return apply


def _is_directory(name):
    def apply(p, fx):
        (p / name).unlink()
        _rm_sidecars(p / name)
        (p / name).mkdir()
        (p / name / "x").write_text("x")
    return apply


def _symlink_loop(name):
    def apply(p, fx):
        (p / name).unlink()
        _rm_sidecars(p / name)
        os.symlink(name, p / name)
    return apply


def _manifest(edit: Callable[[dict], object]):
    def apply(p, fx):
        path = p / "napari-connectome.json"
        data = json.loads(path.read_text())
        result = edit(data)
        path.write_text(json.dumps(data if result is None else result, indent=2))
    return apply


def _set(path: tuple, value):
    def edit(m):
        node = m
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = value
    return edit


def _del(path: tuple):
    def edit(m):
        node = m
        for k in path[:-1]:
            node = node[k]
        node.pop(path[-1], None)
    return edit


def _write_text(rel: str, text: bytes):
    def apply(p, fx):
        (p / rel).write_bytes(text)
    return apply


def _npz_wrong_keys(rel: str):
    def apply(p, fx):
        import numpy as np

        with open(p / rel, "wb") as f:
            np.savez(f, something=np.arange(5), other=np.zeros((2, 2)))
    return apply


def _rm(rel: str):
    def apply(p, fx):
        target = p / rel
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()
    return apply


def _folder_is_file(rel: str):
    def apply(p, fx):
        shutil.rmtree(p / rel)
        (p / rel).write_text("not a folder\n")
    return apply


def _outside_edit_log(p: Path, fx) -> None:
    _manifest(_set(("components", "edit_log"), "../outside/edits.sqlite"))(p, fx)


def _absolute_edit_log(p: Path, fx) -> None:
    elsewhere = p.parent / f"{p.name}-elsewhere"
    elsewhere.mkdir(exist_ok=True)
    _manifest(_set(("components", "edit_log"), str(elsewhere / "edits.sqlite")))(p, fx)


def _log_kinds(prefix: str, name: str, area: str) -> list[Damage]:
    return [
        Damage(f"{prefix} deleted", area, _deleted(name)),
        Damage(f"{prefix} emptied (0 bytes)", area, _emptied(name)),
        Damage(f"{prefix} truncated to half", area, _truncated(name, 0.5)),
        Damage(f"{prefix} truncated to 100 bytes", area, _truncated(name, 100)),
        Damage(f"{prefix} garbage", area, _garbage(name)),
        Damage(f"{prefix} header bytes flipped", area, _flip_header(name), harmless_possible=True),
        Damage(f"{prefix} replaced by another project's", area, _other_project(name)),
        Damage(f"{prefix} replaced by a foreign SQLite file", area, _foreign_sqlite(name)),
        Damage(f"{prefix} rolled back to fewer rows", area, _rolled_back(name)),
        Damage(f"{prefix} -wal/-shm garbage", area, _wal_garbage(name), harmless_possible=True),
        Damage(f"{prefix} is a folder", area, _is_directory(name)),
        Damage(f"{prefix} symlink loop", area, _symlink_loop(name)),
    ]


DAMAGES: list[Damage] = [
    Damage("none (intact project)", "none", lambda p, fx: None),
    *_log_kinds("edit log", "edits.sqlite", "edits"),
    *_log_kinds("effort log", "effort.sqlite", "effort"),
    Damage("manifest invalid JSON (truncated)", "manifest", _truncated("napari-connectome.json", 0.6)),
    Damage("manifest emptied", "manifest", _emptied("napari-connectome.json")),
    Damage("manifest garbage bytes", "manifest", _garbage("napari-connectome.json")),
    Damage("manifest deleted", "manifest", _deleted("napari-connectome.json")),
    Damage("manifest top level is a list", "manifest", _manifest(lambda m: [m])),
    Damage("manifest raw input without uri", "manifest", _manifest(_del(("inputs", "raw", "uri")))),
    Damage("manifest supervoxels input without uri", "manifest", _manifest(_del(("inputs", "supervoxels", "uri")))),
    Damage("manifest inputs given as a list", "manifest",
           _manifest(lambda m: m.__setitem__("inputs", [dict(v, role=k) for k, v in m["inputs"].items()]))),
    Damage("manifest input record is a string", "manifest", _manifest(_set(("inputs", "supervoxels"), "sv.h5"))),
    Damage("manifest unknown version 99", "manifest", _manifest(_set(("version",), 99))),
    Damage("manifest version is a string", "manifest", _manifest(_set(("version",), "1"))),
    Damage("manifest graph record is a file name", "manifest", _manifest(_set(("graph",), "graph/rag.npz"))),
    Damage("manifest components given as a list", "manifest", _manifest(_set(("components",), ["graph", "edits.sqlite"]))),
    Damage("manifest edit log component points outside the project", "manifest", _outside_edit_log),
    Damage("manifest edit log component is an absolute path elsewhere", "manifest", _absolute_edit_log),
    Damage("manifest threshold \"abc\"", "manifest", _manifest(_set(("agglomeration", "threshold"), "abc"))),
    Damage("manifest threshold 5.0", "manifest", _manifest(_set(("agglomeration", "threshold"), 5.0))),
    Damage("manifest raw input points to a missing file", "manifest",
           _manifest(_set(("inputs", "raw", "uri"), "/nonexistent/raw.h5/raw"))),
    Damage("manifest records a wrong shape", "manifest-soft", _manifest(_set(("inputs", "supervoxels", "shape"), [5, 10, 20]))),
    Damage("graph/rag.npz missing", "cache", _rm("graph/rag.npz")),
    Damage("graph/rag.npz truncated", "cache", _truncated("graph/rag.npz", 0.5)),
    Damage("graph/rag.npz garbage", "cache", _garbage("graph/rag.npz")),
    Damage("graph/rag.npz zero bytes", "cache", _emptied("graph/rag.npz")),
    Damage("graph/rag.npz wrong arrays", "cache", _npz_wrong_keys("graph/rag.npz")),
    Damage("graph/merge_tree.npz missing", "cache", _rm("graph/merge_tree.npz")),
    Damage("graph/merge_tree.npz truncated", "cache", _truncated("graph/merge_tree.npz", 0.5)),
    Damage("graph/merge_tree.npz garbage", "cache", _garbage("graph/merge_tree.npz")),
    Damage("graph/merge_tree.npz zero bytes", "cache", _emptied("graph/merge_tree.npz")),
    Damage("graph/merge_tree.npz wrong arrays", "cache", _npz_wrong_keys("graph/merge_tree.npz")),
    Damage("graph folder missing", "cache", _rm("graph")),
    Damage("graph folder is a file", "cache", _folder_is_file("graph"), refusal_ok=True),
    Damage("skeletons.npz truncated", "cache", _truncated("skeletons/skeletons.npz", 0.5)),
    Damage("skeletons.npz garbage", "cache", _garbage("skeletons/skeletons.npz")),
    Damage("skeletons.npz zero bytes", "cache", _emptied("skeletons/skeletons.npz")),
    Damage("skeletons.npz wrong arrays", "cache", _npz_wrong_keys("skeletons/skeletons.npz")),
    Damage("skeletons.npz missing", "cache", _rm("skeletons/skeletons.npz")),
    Damage("read-only project folder", "ro", lambda p, fx: None, needs_root=True),
]

#: Manifest damages after which ``project info`` (which only prints the manifest) may still succeed.
_INFO_TOLERATES = {
    "manifest graph record is a file name", "manifest edit log component points outside the project",
    "manifest edit log component is an absolute path elsewhere", "manifest threshold \"abc\"",
    "manifest threshold 5.0", "manifest raw input points to a missing file", "manifest records a wrong shape",
    "manifest components given as a list",
}


# ====================================================================== commands
@dataclass(frozen=True)
class Command:
    """One command run on a damaged project."""

    name: str
    needs: frozenset  # areas whose damage it must notice: edits, effort, manifest
    writes: bool
    argv: Callable[[Path, fxm.ProjectFixture, Path], list[str]]
    cli_path: tuple = ()
    timeout: float = 60.0


def _cmd(name, needs, writes, argv, cli_path=(), timeout=60.0) -> Command:
    return Command(name, frozenset(needs), writes, argv, tuple(cli_path), timeout)


COMMANDS: list[Command] = [
    _cmd("project info", {"manifest"}, False, lambda p, fx, w: cli("project", "info", p), ("project", "info")),
    _cmd("agglomerate", {"manifest"}, True, lambda p, fx, w: cli("agglomerate", p, "--threshold", fxm.THRESHOLD, "--quiet"),
         ("agglomerate",)),
    _cmd("evaluate", {"manifest", "edits"}, False, lambda p, fx, w: cli("evaluate", p, fx.gt, "--json"), ("evaluate",)),
    _cmd("simulate", {"manifest", "edits"}, False,
         lambda p, fx, w: cli("simulate", p, "--gt", fx.gt, "--decisions", "3", "--json"), ("simulate",), 120.0),
    _cmd("log export", {"manifest", "edits"}, False, lambda p, fx, w: cli("log", "export", p, w / "out.csv"),
         ("log", "export")),
    _cmd("log merge", {"manifest", "edits"}, True, lambda p, fx, w: cli("log", "merge", p, w / "COPY"),
         ("log", "merge")),
    _cmd("effort report", {"manifest", "edits", "effort"}, False,
         lambda p, fx, w: cli("effort", "report", p, "--json"), ("effort", "report")),
    _cmd("check", {"manifest", "edits", "effort"}, False, lambda p, fx, w: cli("check", p, "--quiet"), ("check",)),
    _cmd("open for editing (driver)", {"manifest", "edits"}, True, lambda p, fx, w: driver("edit", p, "--merges", "1")),
    _cmd("open skeletons (driver)", {"manifest", "edits"}, False, lambda p, fx, w: driver("skeletons", p)),
]


def _same(label: str, got, want) -> list[tuple[str, str]]:
    if want is None:
        return []  # no baseline (the command fails on the intact project): only the exit is judged
    if got is None:
        return [("silent wrong", f"exit 0 but its output could not be read ({label})")]
    if got != want:
        return [("silent wrong", f"exit 0 with another {label} than the intact project: {_diff(got, want)}")]
    return []


def _diff(got, want) -> str:
    if isinstance(got, dict) and isinstance(want, dict):
        keys = [k for k in want if got.get(k) != want.get(k)]
        return ", ".join(f"{k} {json.dumps(got.get(k), default=str)[:80]} (intact: {json.dumps(want.get(k), default=str)[:80]})"
                         for k in keys[:4])
    return f"{str(got)[:120]} (intact: {str(want)[:120]})"


def success_check(command: Command, damage: Damage, p: Path, fx: fxm.ProjectFixture, work: Path):
    """The checks of an exit-0 result of ``command`` on the damaged project."""

    def check(run: Run) -> list[tuple[str, str]]:
        b = fx.baseline
        name = command.name
        if name == "project info":
            if damage.area == "manifest" and damage.name not in _INFO_TOLERATES:
                return [("silent wrong", "project info describes a broken manifest as if it were fine")]
            return []
        if name == "agglomerate":
            return []  # judged by the history check after it
        if name == "evaluate":
            return _same("VI", fxm.evaluate_figures(run), b.get("evaluate"))
        if name == "simulate":
            return _same("starting VI", fxm.simulate_figures(run), b.get("simulate"))
        if name == "log export":
            return _same("change log", fxm.export_figures(work / "out.csv"), b.get("export"))
        if name == "log merge":
            got = fxm.log_uuids(p / "edits.sqlite") or []
            want = list(fx.uuids) + list(fx.copy_extra)
            gone = [u for u in want if u not in got]
            if gone and damage.area != "edits":
                return [("silent wrong", f"exit 0 but {len(gone)} of {len(want)} operations are not in the log after the merge")]
            if gone:
                return [("silent wrong", f"exit 0 on a damaged edit log; {len(gone)} of {len(want)} operations missing after the merge")]
            return []
        if name == "effort report":
            return _same("effort report", fxm.effort_figures(run), b.get("effort"))
        if name == "check":
            if damage.area in ("none", "ro") or damage.harmless_possible or damage.name.endswith("missing"):
                return []  # intact, or a cache not built yet: all is well
            return [("silent wrong", "check says all is well on a damaged project")]
        if name.startswith("open for editing"):
            lines = run.stdout.splitlines()
            opened = next((int(x.split()[1]) for x in lines if x.startswith("opened ")), None)
            if opened != len(fx.uuids):
                return [("silent wrong", f"opened with {opened} operations, the project has {len(fx.uuids)}")]
            return []
        if name.startswith("open skeletons"):
            try:
                got = json.loads(run.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                return [("silent wrong", "exit 0 but no summary printed")]
            want = b.get("skeletons")
            if got.get("uuids") != fx.uuids:
                return [("silent wrong", f"skeletons of a state with {len(got.get('uuids', []))} operations, "
                                         f"the project has {len(fx.uuids)}")]
            if want and (got.get("n") != want.get("n") or not got.get("current")):
                return [("silent wrong", f"{got.get('n')} skeletons (current: {got.get('current')}), intact: {want.get('n')}")]
            return []
        return []

    return check


def expectation(command: Command, damage: Damage) -> str:
    """``ok`` (must work), ``any`` (a clean refusal or the intact result)."""
    if damage.area == "none":
        return "ok"
    if damage.area == "ro":
        return "any" if command.writes else "ok"
    if damage.area == "cache":
        return "any" if command.name == "check" or damage.refusal_ok else "ok"
    if damage.area in ("manifest", "manifest-soft"):
        return "any"
    if damage.area in command.needs:
        return "any"
    if command.name == "agglomerate" and damage.area == "edits":
        return "any"  # it may check the log's identity too
    return "ok"


def run_case(command: Command, damage: Damage, fx: fxm.ProjectFixture, work: Path) -> Case:
    """Apply one damage to a fresh copy, run one command, judge it."""
    name = f"{damage.name} × {command.name}"
    if command.cli_path and not cli_has(command.cli_path):
        return missing_case(CATEGORY, name, "napari-connectome " + " ".join(command.cli_path))
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    p = fx.fresh(work / "P")
    if command.name == "log merge":
        fxm.copy_project(fx.copy0, work / "COPY")
    damage.apply(p, fx)
    saved = fxm.snapshot(p)
    argv = command.argv(p, fx, work)

    def after(run: Run) -> list[tuple[str, str]]:
        problems = fxm.lost(p, saved)
        if damage.area != "ro" and damage.area not in ("edits", "manifest") and run.rc == 0 and command.writes:
            problems += fxm.history_after(p, fx.uuids)
        if (p.parent / "outside").exists() or (p.parent / f"{p.name}-elsewhere" / "edits.sqlite").exists():
            if run.rc == 0:
                problems.append(("silent wrong", "wrote an edit log outside the project folder"))
        return problems

    expect = expectation(command, damage)
    names = [str(p), p.name, "napari-connectome.json", "edits.sqlite", "effort.sqlite", "graph", "skeletons"]
    if damage.area == "ro":
        try:
            with read_only_bind(p):
                run = run_process(argv, timeout=command.timeout)
        except MountError as exc:
            from benchmarks.reliability.core import Case as _Case

            return _Case(category=CATEGORY, name=name, command=" ".join(argv), classification="missing",
                         reason=f"not run (needs root): {exc}")
    else:
        run = run_process(argv, timeout=command.timeout)
    verdict = judge(run, expect=expect, names=names, on_success=success_check(command, damage, p, fx, work),
                    after=after, allow_findings=command.name == "check")
    return make_case(CATEGORY, name, run, verdict, damage=damage.name, area=damage.area, expect=expect)


def cases(fx: fxm.ProjectFixture, work: Path, *, quick: bool = False) -> list[Callable[[], Case]]:
    """Every (damage, command) pair as a callable (the quick sample: a fixed few)."""
    out = []
    pairs = [(d, c) for d in DAMAGES for c in COMMANDS]
    if quick:
        pick = {
            ("edit log deleted", "effort report"), ("edit log emptied (0 bytes)", "log export"),
            ("edit log rolled back to fewer rows", "open for editing (driver)"),
            ("manifest raw input without uri", "project info"), ("graph/rag.npz truncated", "evaluate"),
            ("skeletons.npz truncated", "open skeletons (driver)"),
            ("effort log garbage", "effort report"), ("read-only project folder", "effort report"),
        }
        pairs = [(d, c) for d, c in pairs if (d.name, c.name) in pick]
    for k, (d, c) in enumerate(pairs):
        def one(d=d, c=c, k=k) -> Case:
            try:
                return run_case(c, d, fx, work / f"damage-{k:04d}")
            except Exception as exc:  # noqa: BLE001 - a broken case is reported, not fatal
                return crash_case(CATEGORY, f"{d.name} × {c.name}", exc)
            finally:
                shutil.rmtree(work / f"damage-{k:04d}", ignore_errors=True)
        out.append(one)
    return out


# ====================================================================== output guard
def guard_targets(p: Path, fx: fxm.ProjectFixture, work: Path) -> list[tuple[str, list[str], Path, tuple]]:
    """(name, argv, protected target, cli path) of every output-path case."""
    gt = fx.gt
    sim = ["simulate", p, "--gt", gt, "--decisions", "3"]
    other = work / "COPY"
    return [
        ("log export to the edit log", cli("log", "export", p, p / "edits.sqlite"), p / "edits.sqlite", ("log", "export")),
        ("log export --format json to the edit log", cli("log", "export", p, p / "edits.sqlite", "--format", "json"),
         p / "edits.sqlite", ("log", "export")),
        ("log export --format json to the manifest", cli("log", "export", p, p / "napari-connectome.json", "--format", "json"),
         p / "napari-connectome.json", ("log", "export")),
        ("log export to the effort log", cli("log", "export", p, p / "effort.sqlite"), p / "effort.sqlite", ("log", "export")),
        ("log export to graph/rag.npz", cli("log", "export", p, p / "graph" / "rag.npz"), p / "graph" / "rag.npz",
         ("log", "export")),
        ("log export to graph/merge_tree.npz", cli("log", "export", p, p / "graph" / "merge_tree.npz"),
         p / "graph" / "merge_tree.npz", ("log", "export")),
        ("log export to the project folder itself", cli("log", "export", p, p), p / "napari-connectome.json", ("log", "export")),
        ("log export to another project's edit log", cli("log", "export", p, other / "edits.sqlite"), other / "edits.sqlite",
         ("log", "export")),
        ("effort report --csv to the effort log", cli("effort", "report", p, "--csv", p / "effort.sqlite"),
         p / "effort.sqlite", ("effort", "report")),
        ("effort report --csv to the edit log", cli("effort", "report", p, "--csv", p / "edits.sqlite"),
         p / "edits.sqlite", ("effort", "report")),
        ("effort report --csv to the manifest", cli("effort", "report", p, "--csv", p / "napari-connectome.json"),
         p / "napari-connectome.json", ("effort", "report")),
        ("simulate --csv to the edit log", cli(*sim, "--csv", p / "edits.sqlite"), p / "edits.sqlite", ("simulate",)),
        ("simulate --csv to graph/merge_tree.npz", cli(*sim, "--csv", p / "graph" / "merge_tree.npz"),
         p / "graph" / "merge_tree.npz", ("simulate",)),
        ("simulate --plot to the manifest", cli(*sim, "--plot", p / "napari-connectome.json"), p / "napari-connectome.json",
         ("simulate",)),
        ("simulate --plot to the effort log", cli(*sim, "--plot", p / "effort.sqlite"), p / "effort.sqlite", ("simulate",)),
        ("convert to the edit log", cli("convert", f"{fx.sample}/raw", p / "edits.sqlite", "--quiet"), p / "edits.sqlite",
         ("convert",)),
        ("convert --overwrite onto the project folder", cli("convert", f"{fx.sample}/raw", p, "--overwrite", "--quiet"),
         p / "napari-connectome.json", ("convert",)),
    ]


def guard_cases(fx: fxm.ProjectFixture, work: Path, *, quick: bool = False) -> list[Callable[[], Case]]:
    """Output paths on project files: refused with exit 2, the target unchanged; also with ``--overwrite``."""
    probe = work / "probe"
    names = [t[0] for t in guard_targets(probe / "P", fx, probe)]
    variants = [(n, False) for n in names]
    variants += [(n, True) for n in names if not n.startswith(("convert", "synthetic"))]
    if quick:
        variants = [v for v in variants if v[0] in (
            "log export to the edit log", "effort report --csv to the effort log", "simulate --plot to the manifest",
        ) and not v[1]]
    out = []
    for k, (name, overwrite) in enumerate(variants):
        def one(name=name, overwrite=overwrite, k=k) -> Case:
            label = name + (" (with --overwrite)" if overwrite else "")
            d = work / f"guard-{k:03d}"
            try:
                if d.exists():
                    shutil.rmtree(d)
                d.mkdir(parents=True)
                p = fx.fresh(d / "P")
                fxm.copy_project(fx.copy0, d / "COPY")
                target = next(t for t in guard_targets(p, fx, d) if t[0] == name)
                _, argv, protected, path = target
                if not cli_has(path):
                    return missing_case(GUARD, label, "napari-connectome " + " ".join(path))
                if overwrite:
                    if not cli_has(path, "--overwrite"):
                        return missing_case(GUARD, label, f"napari-connectome {' '.join(path)} --overwrite")
                    argv = [*argv, "--overwrite"]
                before = fxm.sha(protected)
                saved = fxm.snapshot(p)
                saved_other = fxm.snapshot(d / "COPY")

                def after(run: Run) -> list[tuple[str, str]]:
                    problems = []
                    if fxm.sha(protected) != before:
                        problems.append(("data lost", f"{protected.relative_to(d)} was replaced (exit {run.rc})"))
                    problems += fxm.lost(p, saved) + fxm.lost(d / "COPY", saved_other)
                    return problems

                def success(run: Run) -> list[tuple[str, str]]:
                    return [("silent wrong", "exit 0: an output path on a project file was accepted")]

                run = run_process(argv, timeout=120)
                verdict = judge(run, expect="any", names=[protected.name, str(protected)], on_success=success,
                                after=after)
                return make_case(GUARD, label, run, verdict, target=str(protected.relative_to(d)))
            except Exception as exc:  # noqa: BLE001
                return crash_case(GUARD, label, exc)
            finally:
                shutil.rmtree(d, ignore_errors=True)
        out.append(one)
    return out


def damage_names() -> list[str]:
    return [d.name for d in DAMAGES]


__all__ = ["COMMANDS", "DAMAGES", "MountError", "cases", "guard_cases"]
