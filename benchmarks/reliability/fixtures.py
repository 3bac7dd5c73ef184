"""The campaign's project fixture, and the checks that tell whether saved work survived.

The fixture is a real project made with the suite itself from the bundled
gala-fib crop (raw, watershed supervoxels, boundary map, ground truth; 50 ×
100 × 200 voxels of 10 nm): ``project create``, ``agglomerate --threshold
0.5``, then edits through ``Proofreader`` (merges, a split, an undo), an
effort row per edit plus task rows, and every skeleton
(:mod:`benchmarks.reliability.drivers` ``build``). Beside it:

* ``Q0``: another project (a synthetic volume) with its own edit and effort
  logs, for "replaced by another project's log";
* ``COPY0``: an offline copy of ``P0`` with two more merges, for ``log merge``;
* ``snap/``: P0's edit and effort logs when they held fewer operations, for
  "rolled back";
* the baseline figures of every command on an intact copy, which the damage
  cases compare against.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.reliability.core import Run, cli, driver, run_process

GT_ROLE = "groundtruth"
_OTHER_LOCK = threading.Lock()
THRESHOLD = "0.5"


class FixtureError(RuntimeError):
    """The fixture could not be built (the suite failed on intact input)."""

    def __init__(self, what: str, run: Run | None = None) -> None:
        detail = ""
        if run is not None:
            lines = [line for line in (run.stderr or run.stdout).splitlines() if line.strip()]
            detail = f" (exit {run.rc}: {' | '.join(lines[-3:])[:400]})"
        super().__init__(f"{what}{detail}")
        self.run = run


def sample_path() -> Path:
    """The bundled gala-fib HDF5 file."""
    from napari_connectome.samples import gala_fib_path

    return Path(gala_fib_path())


def _must(run: Run, what: str) -> Run:
    if run.rc != 0:
        raise FixtureError(what, run)
    return run


def copy_project(src: Path, dst: Path) -> Path:
    """A copy of a project folder (symlinks kept as links)."""
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, symlinks=True)
    return dst


@dataclass
class ProjectFixture:
    """Where the fixture lives and what it holds."""

    root: Path
    sample: Path
    p0: Path
    q0: Path
    copy0: Path
    snap: Path
    uuids: list[str]
    copy_extra: list[str]
    skeletons: int
    baseline: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def gt(self) -> str:
        return f"{self.sample}/{GT_ROLE}"

    def fresh(self, dst: Path) -> Path:
        """A fresh copy of the intact project."""
        return copy_project(self.p0, dst)

    def other_project(self) -> Path:
        """Another project with its own edit and effort logs (a synthetic volume), made on first use."""
        with _OTHER_LOCK:
            if not (self.q0 / "edits.sqlite").is_file():
                if self.q0.exists():
                    shutil.rmtree(self.q0)
                syn = self.root / "Qsrc"
                shutil.rmtree(syn, ignore_errors=True)
                _must(run_process(cli("synthetic", syn, "--shape", "16", "48", "48", "--seed", "3", "--quiet")),
                      "synthetic")
                _must(run_process(cli("project", "create", self.q0, "--raw", syn / "raw.ome.zarr",
                                      "--supervoxels", syn / "groundtruth.ome.zarr")), "project create Q0")
                _must(run_process(cli("agglomerate", self.q0, "--quiet")), "agglomerate Q0")
                _must(run_process(driver("build", self.q0, "--merges", "2", "--snapshot-ops", "1"), timeout=300),
                      "edits on Q0")
            return self.q0


def create_project_cmd(dst: Path, sample: Path) -> list[str]:
    """``project create`` of the gala-fib sample with every role."""
    return cli("project", "create", dst, "--raw", f"{sample}/raw", "--supervoxels", f"{sample}/supervoxels",
               "--boundaries", f"{sample}/boundaries", "--groundtruth", f"{sample}/{GT_ROLE}",
               "--voxel-size", "10", "10", "10")


def build_project_fixture(work: Path) -> ProjectFixture:
    """Build (or reuse, when already built in ``work``) the project fixture.

    Raises
    ------
    FixtureError
        A step failed on intact input.
    """
    root = work / "fixture"
    done = root / "fixture.json"
    if done.is_file():
        data = json.loads(done.read_text())
        return ProjectFixture(root=root, sample=Path(data["sample"]), p0=root / "P0", q0=root / "Q0",
                              copy0=root / "COPY0", snap=root / "snap", uuids=data["uuids"],
                              copy_extra=data["copy_extra"], skeletons=data["skeletons"],
                              baseline=data["baseline"], notes=data["notes"])
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    sample = sample_path()
    p0 = root / "P0"
    _must(run_process(create_project_cmd(p0, sample)), "project create of the gala-fib sample")
    _must(run_process(cli("agglomerate", p0, "--threshold", THRESHOLD, "--quiet")), "agglomerate P0")
    build = _must(run_process(driver("build", p0, "--merges", "6", "--snapshot-ops", "3",
                                     "--snapshot-dir", root / "snap"), timeout=300), "edits on P0")
    summary = json.loads(build.stdout.strip().splitlines()[-1])

    copy0 = copy_project(p0, root / "COPY0")
    edit = _must(run_process(driver("edit", copy0, "--merges", "2", "--seed", "7")), "edits on COPY0")
    extra = [line.split()[1] for line in edit.stdout.splitlines() if line.startswith("op ")]

    fx = ProjectFixture(root=root, sample=sample, p0=p0, q0=root / "Q0", copy0=copy0, snap=root / "snap",
                        uuids=summary["uuids"], copy_extra=extra, skeletons=int(summary["skeletons"]))
    save_fixture(fx)
    return fx


def save_fixture(fx: ProjectFixture) -> None:
    (fx.root / "fixture.json").write_text(json.dumps({
        "sample": str(fx.sample), "uuids": fx.uuids, "copy_extra": fx.copy_extra, "skeletons": fx.skeletons,
        "baseline": fx.baseline, "notes": fx.notes,
    }, indent=1))


# ====================================================================== baseline figures
def evaluate_figures(run: Run) -> dict | None:
    try:
        data = json.loads(run.stdout)
        return {k: round(float(data[k]), 6) for k in ("vi_split", "vi_merge", "arand")}
    except (ValueError, KeyError, TypeError):
        return None


def simulate_figures(run: Run) -> dict | None:
    try:
        data = json.loads(run.stdout)
        runs = data if isinstance(data, list) else [data]
        first = runs[0]["curve"][0]
        return {k: round(float(first[k]), 6) for k in ("vi_split", "vi_merge")}
    except (ValueError, KeyError, TypeError, IndexError):
        return None


def effort_figures(run: Run) -> dict | None:
    try:
        data = json.loads(run.stdout)
        return {
            "minutes_active": round(float(data["minutes_active"]), 6),
            "tasks": data["tasks"], "manual": data["manual"], "edits": data["edits"],
            "sessions": data.get("sessions"),
        }
    except (ValueError, KeyError, TypeError):
        return None


def export_figures(path: Path) -> dict | None:
    """Rows and uuids of an exported change log (CSV or JSON), or None if unreadable."""
    import csv

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    try:
        if text.lstrip().startswith("["):
            rows = json.loads(text)
        else:
            rows = list(csv.DictReader(text.splitlines()))
        return {"rows": len(rows), "uuids": [str(r.get("uuid")) for r in rows]}
    except (ValueError, TypeError, csv.Error):
        return None


BASELINES = ("evaluate", "simulate", "effort", "export", "skeletons")


def ensure_baseline(fx: ProjectFixture, keys=BASELINES) -> dict:
    """The figures of the read commands on an intact copy (None where the command fails now), measured once."""
    work = fx.root / "baseline"
    work.mkdir(parents=True, exist_ok=True)
    todo = [k for k in keys if k not in fx.baseline]
    if not todo:
        return fx.baseline
    p = fx.fresh(work / "P")

    def measure(key: str):
        if key == "evaluate":
            run = run_process(cli("evaluate", p, fx.gt, "--json"))
            value = evaluate_figures(run) if run.rc == 0 else None
        elif key == "simulate":
            run = run_process(cli("simulate", p, "--gt", fx.gt, "--decisions", "3", "--json"), timeout=180)
            value = simulate_figures(run) if run.rc == 0 else None
        elif key == "effort":
            run = run_process(cli("effort", "report", p, "--json"))
            value = effort_figures(run) if run.rc == 0 else None
        elif key == "export":
            run = run_process(cli("log", "export", p, work / "export.csv"))
            value = export_figures(work / "export.csv") if run.rc == 0 else None
        else:
            run = run_process(driver("skeletons", p))
            try:
                value = json.loads(run.stdout.strip().splitlines()[-1]) if run.rc == 0 else None
            except (ValueError, IndexError):
                value = None
        return key, value, run

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2) as pool:
        for key, value, run in pool.map(measure, todo):
            fx.baseline[key] = value
            if value is None:
                fx.notes.append(f"baseline {key}: the command fails on the intact project "
                                f"({(run.stderr.strip().splitlines() or ['?'])[-1][:200]}); its cases only check the exit")
    shutil.rmtree(work, ignore_errors=True)
    save_fixture(fx)
    return fx.baseline


# ====================================================================== what was saved
def sha(path: Path) -> str | None:
    try:
        return hashlib.sha1(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _sqlite_copy(path: Path) -> Path | None:
    """A private copy of an SQLite file and its WAL (reading it never touches the original)."""
    if not path.is_file():
        return None
    tmp = Path(tempfile.mkdtemp(prefix="reliability-sqlite-"))
    try:
        shutil.copy2(path, tmp / "db")
        wal = path.with_name(path.name + "-wal")
        if wal.is_file():
            shutil.copy2(wal, tmp / "db-wal")
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        return None
    return tmp / "db"


def _query(path: Path, sql: str) -> list[tuple] | None:
    copy = _sqlite_copy(path)
    if copy is None:
        return None
    try:
        con = sqlite3.connect(str(copy))
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()
    except sqlite3.Error:
        return None
    finally:
        shutil.rmtree(copy.parent, ignore_errors=True)


def log_uuids(path: Path) -> list[str] | None:
    """The operation uuids of an edit log, oldest first; None if it is not a readable edit log."""
    rows = _query(path, "SELECT uuid FROM operations ORDER BY operation_id")
    return None if rows is None else [str(r[0]) for r in rows]


def effort_keys(path: Path) -> list[tuple] | None:
    """``(id, session, shown_at)`` of every effort row; None if it is not a readable effort log."""
    return _query(path, "SELECT id, session, shown_at FROM effort ORDER BY id")


PROTECTED = ("edits.sqlite", "effort.sqlite", "napari-connectome.json")


@dataclass
class Saved:
    """What a project holds before a command runs."""

    files: dict[str, dict]


def snapshot(project: Path) -> Saved:
    """The protected files of a project: bytes, and the rows of its logs."""
    files = {}
    for name in PROTECTED:
        path = project / name
        if not path.is_file():
            continue
        entry = {"sha": sha(path), "size": path.stat().st_size}
        if name == "edits.sqlite":
            entry["uuids"] = log_uuids(path)
        elif name == "effort.sqlite":
            entry["rows"] = effort_keys(path)
        elif name == "napari-connectome.json":
            try:
                entry["manifest"] = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                entry["manifest"] = None
        files[name] = entry
    return Saved(files=files)


def _all_files(root: Path) -> list[Path]:
    out = []
    try:
        for p in root.rglob("*"):
            try:
                if p.is_file() and not p.is_symlink():
                    out.append(p)
            except OSError:
                continue
    except OSError:
        pass
    return out


def lost(project: Path, saved: Saved, *, allow_manifest_change: bool = True) -> list[tuple[str, str]]:
    """``data lost`` problems: protected content of ``saved`` that cannot be found in ``project`` now.

    An edit log counts as kept if some SQLite file in the project still holds
    every operation uuid it held (appending is fine; a log moved aside is
    fine), or if its exact bytes are still somewhere in the project. The
    same for effort rows. A manifest that parsed must still parse and name
    the same inputs (``allow_manifest_change``: other fields may change); one
    that did not parse must keep its bytes.
    """
    problems: list[tuple[str, str]] = []
    files = None
    hashes = None

    def present_bytes(digest: str) -> bool:
        nonlocal files, hashes
        if files is None:
            files = _all_files(project)
            hashes = {sha(f) for f in files}
        return digest in hashes

    for name, entry in saved.files.items():
        path = project / name
        if sha(path) == entry["sha"]:
            continue
        if name == "edits.sqlite" and entry.get("uuids"):
            want = set(entry["uuids"])
            candidates = [path] + [f for f in _all_files(project) if "edits" in f.name and f != path]
            if any(set(log_uuids(c) or ()) >= want for c in candidates):
                continue
            got = log_uuids(path)
            problems.append(("data lost", f"{name}: {len(want - set(got or ()))} of {len(want)} committed "
                                          f"operations are gone" + ("" if got is not None else " (the log is unreadable now)")))
            continue
        if name == "effort.sqlite" and entry.get("rows"):
            want = {tuple(r) for r in entry["rows"]}
            candidates = [path] + [f for f in _all_files(project) if "effort" in f.name and f != path]
            if any(want <= {tuple(r) for r in (effort_keys(c) or ())} for c in candidates):
                continue
            problems.append(("data lost", f"{name}: effort rows are gone"))
            continue
        if name == "napari-connectome.json" and entry.get("manifest") is not None and allow_manifest_change:
            try:
                now = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                problems.append(("data lost", f"{name}: the manifest no longer parses"))
                continue
            if isinstance(entry["manifest"], dict) and isinstance(now, dict) and \
                    now.get("inputs") != entry["manifest"].get("inputs"):
                problems.append(("data lost", f"{name}: the manifest's inputs changed"))
            continue
        if entry["sha"] is not None and present_bytes(entry["sha"]):
            continue  # moved aside, bytes kept
        what = "deleted" if not path.exists() else "overwritten"
        problems.append(("data lost", f"{name} ({entry['size']} bytes) was {what} and its content is not kept anywhere in the project"))
    return problems


def history_after(project: Path, want: list[str]) -> list[tuple[str, str]]:
    """``data lost`` if the project no longer opens with every operation of ``want``."""
    run = run_process(driver("history", project))
    if run.rc != 0:
        line = (run.stderr.strip().splitlines() or ["?"])[-1]
        return [("data lost", f"the project no longer opens with its edits: {line[:240]}")]
    try:
        got = json.loads(run.stdout.strip().splitlines()[-1])["uuids"]
    except (ValueError, IndexError, KeyError):
        return [("data lost", "the project's history could not be read back")]
    gone = [u for u in want if u not in got]
    if gone:
        return [("data lost", f"{len(gone)} of {len(want)} committed operations no longer replay")]
    return []
