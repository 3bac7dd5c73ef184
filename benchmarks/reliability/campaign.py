"""The reliability campaign: try to lose a day's work, and count how often the suite lets it happen.

Run from the repository root::

    .venv/bin/python -m benchmarks.reliability.campaign                 # the full campaign (about 20 min on 2 cores)
    .venv/bin/python -m benchmarks.reliability.campaign --quick         # the CI sample (under a minute)
    .venv/bin/python -m benchmarks.reliability.campaign --only reader,kill --reader-cases 300 --kills 5
    nice -n 10 .venv/bin/python -m benchmarks.reliability.campaign --out /tmp/reliability-out

Options: ``--quick`` (a small fixed sample of every category), ``--only
CATEGORY[,CATEGORY…]`` (reader, damage, guard, kill, writers, full-disk,
read-only, resource), ``--out DIR`` (where ``cases.json`` and ``table.txt`` go;
default ``/tmp/reliability-out-<pid>``), ``--seed N`` (every
random choice follows from it), ``--kills N`` (kills per writing command,
default 20), ``--reader-cases N`` (mutated volumes, default 1000; each is
read, ``info``-ed and ``check``-ed), ``--writer-reps N`` (default 10),
``--jobs N`` (cases run at once, default 2), ``--work DIR`` (the scratch
folder; default a new ``/tmp/reliability-*``, removed at the end unless
``--keep``).

Categories
----------
reader
    :mod:`~benchmarks.reliability.reader`: mutated volumes of every format.
damage
    :mod:`~benchmarks.reliability.project_damage`: every kind of project
    damage × every command (``project info``, ``agglomerate``, ``evaluate``,
    ``simulate``, ``log export``, ``log merge``, ``effort report``,
    ``check``, opening for editing, opening the skeletons).
guard
    output paths that land on project files (also with ``--overwrite``).
kill
    :mod:`~benchmarks.reliability.kills`: kill -9 during every writing command.
writers
    :mod:`~benchmarks.reliability.writers`: two writers at once.
full-disk, read-only
    :mod:`~benchmarks.reliability.mounts`: a full tmpfs, a read-only mount
    (root only; otherwise every case says "not run (needs root)").
resource
    :mod:`~benchmarks.reliability.resources`: metadata claiming 10^18 voxels.

Output: a table (rows: categories; columns: tried, clean, internal,
traceback, hang, silent wrong, data lost, other, missing — see
:mod:`~benchmarks.reliability.core` for what each means), the failing cases
grouped by cause, and ``cases.json`` with every case (name, command, exit
code, the last lines of stderr, class, reason). The exit status is 1 when
any case is not clean, 0 otherwise.

Measured 2026-12-04 on the 2-CPU development machine (root, so the full-disk
and read-only mounts ran), ``nice -n 10 .venv/bin/python -m
benchmarks.reliability.campaign --out /tmp/rel-final``: 4,051 cases in 12.8
min, every one clean::

    category                                  tried        clean     internal    traceback         hang silent wrong    data lost        other      missing
    reader: open + read every level            1026         1026            0            0            0            0            0            0            0
    reader: info                               1026         1026            0            0            0            0            0            0            0
    reader: check                              1026         1026            0            0            0            0            0            0            0
    project damage × command                    620          620            0            0            0            0            0            0            0
    output path on a project file                32           32            0            0            0            0            0            0            0
    kill -9 during a write                      231          231            0            0            0            0            0            0            0
    two writers at once                          60           60            0            0            0            0            0            0            0
    full disk                                    10           10            0            0            0            0            0            0            0
    read-only mount                              12           12            0            0            0            0            0            0            0
    resource abuse                                8            8            0            0            0            0            0            0            0
    total                                      4051         4051            0            0            0            0            0            0            0
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.reliability import fixtures as fxm
from benchmarks.reliability import kills as kl
from benchmarks.reliability import mounts as mnt
from benchmarks.reliability import project_damage as pd
from benchmarks.reliability import reader as rd
from benchmarks.reliability import resources as rs
from benchmarks.reliability import writers as wr
from benchmarks.reliability.core import CLASSES, Case, PersistentWorker, crash_case

CATEGORIES = ("reader", "damage", "guard", "kill", "writers", "full-disk", "read-only", "resource")
ROWS = (
    ("reader/read", "reader: open + read every level"),
    ("reader/info", "reader: info"),
    ("reader/check", "reader: check"),
    (pd.CATEGORY, "project damage × command"),
    (pd.GUARD, "output path on a project file"),
    (kl.CATEGORY, "kill -9 during a write"),
    (wr.CATEGORY, "two writers at once"),
    (mnt.FULL, "full disk"),
    (mnt.RO, "read-only mount"),
    (rs.CATEGORY, "resource abuse"),
)
QUICK_SEEDS = ("ome-zarr 0.4 image", "ome-zarr 0.5 image", "zarr v2 uncompressed", "zarr v3 zstd", "n5 single dataset",
               "precomputed raw", "hdf5 chunked gzip", "tiff multipage", "png slices", "project folder")
QUICK_KILLS = ("convert --overwrite over an existing pyramid", "edits (Proofreader driver)")
QUICK_WRITERS = ("two editors (Proofreader drivers) on one project", "two convert to one destination")


@dataclass
class Result:
    """What a campaign run found."""

    cases: list[Case] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    work: Path | None = None

    @property
    def counted(self) -> list[Case]:
        return [c for c in self.cases if not c.details.get("skipped")]

    @property
    def clean(self) -> bool:
        return all(c.classification == "clean" for c in self.counted)


# ====================================================================== the table
def table(result: Result) -> str:
    """Rows: categories; columns: tried and one per class."""
    cols = ("tried", *CLASSES)
    head = f"{'category':<34}" + "".join(f"{c:>13}" for c in cols)
    lines = [head, "-" * len(head)]
    totals = Counter()
    for key, label in ROWS:
        cases = [c for c in result.counted if c.category == key]
        if not cases:
            continue
        counts = Counter(c.classification for c in cases)
        counts["tried"] = len(cases)
        totals.update(counts)
        lines.append(f"{label:<34}" + "".join(f"{counts.get(c, 0):>13}" for c in cols))
    lines.append("-" * len(head))
    lines.append(f"{'total':<34}" + "".join(f"{totals.get(c, 0):>13}" for c in cols))
    return "\n".join(lines)


_NORMALISE = [
    (re.compile(r"/tmp/[^\s:;,)'\"]+"), "PATH"),
    (re.compile(r"#\d+"), "#N"),
    (re.compile(r"\b\d+(\.\d+)?\b"), "N"),
]


def _cause(case: Case) -> str:
    text = case.reason
    for pattern, repl in _NORMALISE:
        text = pattern.sub(repl, text)
    return text[:220]


def _subject(case: Case) -> str:
    """What a case is about, without its number and seed details: for grouping."""
    if case.category.startswith("reader"):
        mutation = case.details.get("mutation") or {}
        return f"{case.details.get('seed')}: {mutation.get('op', '?')}"
    if case.category == pd.CATEGORY:
        return str(case.name.split(" × ")[-1])
    return re.sub(r" (killed at [\d.]+ s )?\(#\d+\)$| killed at [\d.]+ s \(#\d+\)", "", case.name)


def failures_by_cause(result: Result, *, examples: int = 3) -> str:
    """Every non-clean case grouped by category, class and normalised reason."""
    groups: dict[tuple, list[Case]] = defaultdict(list)
    for c in result.counted:
        if c.classification != "clean":
            groups[(c.category, c.classification, _cause(c))].append(c)
    lines = []
    order = sorted(groups.items(), key=lambda kv: (kv[0][0], -len(kv[1])))
    for (category, cls, cause), cases in order:
        subjects = Counter(_subject(c) for c in cases)
        lines.append(f"[{category}] {cls} ×{len(cases)}: {cause}")
        for subject, n in subjects.most_common(examples):
            ex = next(c for c in cases if _subject(c) == subject)
            lines.append(f"    {n:>4} × {subject[:110]}   e.g. {ex.command[:160]}")
        if len(subjects) > examples:
            lines.append(f"         … and {len(subjects) - examples} more kinds")
    return "\n".join(lines)


# ====================================================================== running
def _execute(tasks: Sequence[Callable[[], object]], jobs: int, progress: Callable[[int, int], None]) -> list[Case]:
    out: list[Case] = []
    lock = threading.Lock()
    done = [0]

    def run(task):
        try:
            got = task()
        except Exception as exc:  # noqa: BLE001 - never lose the other cases
            got = crash_case("campaign", getattr(task, "__name__", "task"), exc)
        with lock:
            done[0] += 1
            progress(done[0], len(tasks))
        return got if isinstance(got, list) else [got]

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for got in pool.map(run, tasks):
            out.extend(got)
    return out


def run_campaign(*, quick: bool = False, only: Sequence[str] | None = None, work: Path | None = None,
                 seed: int = 0, kills: int | None = None, reader_cases: int | None = None,
                 writer_reps: int | None = None, jobs: int = 2, log=None) -> Result:
    """Run the campaign and return every case (nothing is printed unless ``log`` is given).

    Parameters
    ----------
    quick
        The CI sample: a fixed handful of cases per category.
    only
        Categories to run (default: all of :data:`CATEGORIES`).
    work
        Scratch folder (created; default: a new temporary one, left in place).
    seed
        Every random choice follows from it.
    kills, reader_cases, writer_reps
        Sizes (defaults: 20, 1000, 10; quick: 1, 12, 1).
    jobs
        Cases run at once.
    log
        ``log(text)`` for progress lines.
    """
    t0 = time.monotonic()

    def say(text: str) -> None:
        if log is not None:
            log(f"[{time.monotonic() - t0:5.0f} s] {text}")

    selected = set(only or CATEGORIES)
    unknown = selected - set(CATEGORIES)
    if unknown:
        raise ValueError(f"unknown categories {sorted(unknown)}; choose from {', '.join(CATEGORIES)}")
    kills = (1 if quick else 20) if kills is None else kills
    reader_cases = (12 if quick else 1000) if reader_cases is None else reader_cases
    writer_reps = (1 if quick else 10) if writer_reps is None else writer_reps
    work = Path(work) if work is not None else Path(tempfile.mkdtemp(prefix="reliability-"))
    work.mkdir(parents=True, exist_ok=True)
    result = Result(work=work)

    def progress(label):
        last = [0.0]

        def report(done, total):
            now = time.monotonic()
            if done == total or now - last[0] > 15:
                last[0] = now
                say(f"  {label}: {done}/{total}")
        return report

    # ---------------------------------------------------------------- the reader (beside the fixture)
    def reader_phase() -> None:
        say("reader: writing the seed volumes")
        workers: list[PersistentWorker] = []
        local = threading.local()

        def worker_of() -> PersistentWorker:
            if getattr(local, "worker", None) is None:
                local.worker = PersistentWorker()
                workers.append(local.worker)
            return local.worker

        cases: list[Case] = []
        try:
            seeds, notes = rd.build_seeds(work / "reader-seeds", only=QUICK_SEEDS if quick else None)
            result.notes.extend(notes)
            validated = _execute(rd.seed_cases(seeds, work / "reader", worker_of), jobs, progress("reader seeds"))
            cases += validated
            bad = {c.details["seed"] for c in validated if c.category == "reader/read" and c.classification != "clean"}
            fuzzable = [s for s in seeds if s.name not in bad]
            for name in sorted(bad):
                result.notes.append(f"seed {name!r} does not read back as written: left out of the fuzzing")
            say(f"reader: {reader_cases} mutated volumes over {len(fuzzable)} seeds")
            if fuzzable:
                cases += _execute(rd.fuzz_cases(fuzzable, work / "reader", seed=seed, n=reader_cases,
                                                worker_of=worker_of, cross_check_every=0 if quick else 25),
                                  jobs, progress("reader"))
        except Exception as exc:  # noqa: BLE001
            cases.append(crash_case("reader/read", "building the reader seeds", exc))
        finally:
            for w in workers:
                w.close()
            shutil.rmtree(work / "reader", ignore_errors=True)
        reader_cases_found.extend(cases)

    reader_cases_found: list[Case] = []
    reader_thread = None
    if "reader" in selected:
        reader_thread = threading.Thread(target=reader_phase, name="reader")
        reader_thread.start()

    # ---------------------------------------------------------------- the project fixture
    project_categories = selected & {"damage", "guard", "kill", "writers", "full-disk", "read-only"}
    fx = None
    if project_categories:
        say("building the project fixture (gala-fib sample, edits, effort, skeletons)")
        try:
            fx = fxm.build_project_fixture(work)
            keys = set()
            if "damage" in selected:
                keys |= {"evaluate", "effort", "export", "skeletons"} | (set() if quick else {"simulate"})
            if selected & {"kill", "writers"}:
                keys |= {"export"}
            fxm.ensure_baseline(fx, sorted(keys))
            result.notes += fx.notes
        except Exception as exc:  # noqa: BLE001
            for cat in sorted(project_categories):
                key = {"damage": pd.CATEGORY, "guard": pd.GUARD, "kill": kl.CATEGORY, "writers": wr.CATEGORY,
                       "full-disk": mnt.FULL, "read-only": mnt.RO}[cat]
                result.cases.append(crash_case(key, "building the project fixture", exc))
    mount_ok = mnt.can_mount() if fx is not None and selected & {"full-disk", "read-only", "damage"} else (False, "")
    if fx is not None and not mount_ok[0] and selected & {"full-disk", "read-only", "damage"}:
        result.notes.append(f"mounts not possible here ({mount_ok[1]}): full-disk, read-only and the read-only "
                            "project damage are recorded as 'not run (needs root)'")

    tasks: list[Callable[[], object]] = []
    if fx is not None and "damage" in selected:
        tasks += pd.cases(fx, work / "damage", quick=quick)
    if fx is not None and "guard" in selected:
        tasks += pd.guard_cases(fx, work / "guard", quick=quick)
    refs = None
    if fx is not None and selected & {"kill", "writers"}:
        kill_only = list(QUICK_KILLS) if quick else None
        writer_only = list(QUICK_WRITERS) if quick else None
        need: set[str] = set()
        if "kill" in selected:
            for name, n in kl.NEEDS.items():
                if kill_only is None or name in kill_only:
                    need |= n
        if "writers" in selected:
            for name, n in kl.NEEDS.items():
                if name.startswith("two") and (writer_only is None or name in writer_only):
                    need |= n
        try:
            say("writing the reference outputs for the kill and two-writer cases")
            refs = kl.build_references(fx, work, need=need, src_shape=("32", "128", "128") if quick else kl.SRC_SHAPE)
            result.notes += refs.notes
        except Exception as exc:  # noqa: BLE001
            for key in (kl.CATEGORY, wr.CATEGORY):
                result.cases.append(crash_case(key, "building the reference outputs", exc))
        if refs is not None and "kill" in selected:
            tasks += kl.kill_cases(fx, refs, work / "kill", kills=kills, seed=seed, only=kill_only)
        if refs is not None and "writers" in selected:
            tasks += wr.writer_cases(fx, refs, work / "writers", reps=writer_reps, seed=seed, only=writer_only)
    if fx is not None and "full-disk" in selected:
        tasks += mnt.full_disk_cases(fx, work / "mounts", quick=quick, mount_ok=mount_ok)
    if fx is not None and "read-only" in selected:
        tasks += mnt.read_only_cases(fx, work / "mounts", quick=quick, mount_ok=mount_ok)
    if "resource" in selected:
        tasks += rs.resource_cases(work / "resource", quick=quick)
    if tasks:
        # Long tasks (a kill series) first, so two workers end together.
        tasks.sort(key=lambda t: 0 if t.__qualname__.startswith("kill_cases") else 1)
        say(f"running {len(tasks)} project tasks")
        result.cases += _execute(tasks, jobs, progress("project tasks"))
    if reader_thread is not None:
        reader_thread.join()
        result.cases[:0] = reader_cases_found
    result.seconds = time.monotonic() - t0
    return result


def write_report(result: Result, out: Path, *, argv: Sequence[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    text = table(result)
    (out / "table.txt").write_text(text + "\n\n" + failures_by_cause(result) + "\n")
    (out / "cases.json").write_text(json.dumps({
        "command": " ".join(argv),
        "seconds": round(result.seconds, 1),
        "notes": result.notes,
        "table": text,
        "cases": [c.to_dict() for c in result.cases],
    }, indent=1, default=str, ensure_ascii=False))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reliability.campaign",
                                     description="The napari-connectome reliability campaign.")
    parser.add_argument("--quick", action="store_true", help="the CI sample: a few fixed cases per category")
    parser.add_argument("--only", help=f"comma-separated categories ({', '.join(CATEGORIES)})")
    parser.add_argument("--out", help="folder for cases.json and table.txt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kills", type=int, help="kills per writing command (default 20; quick 1)")
    parser.add_argument("--reader-cases", type=int, help="mutated volumes (default 1000; quick 12)")
    parser.add_argument("--writer-reps", type=int, help="repetitions of each two-writer scenario (default 10; quick 1)")
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once (default 2)")
    parser.add_argument("--work", help="scratch folder (default: a new /tmp/reliability-*)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()] if args.only else None
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="reliability-"))

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    try:
        result = run_campaign(quick=args.quick, only=only, work=work, seed=args.seed, kills=args.kills,
                              reader_cases=args.reader_cases, writer_reps=args.writer_reps, jobs=args.jobs, log=log)
    except ValueError as exc:
        parser.error(str(exc))
        return 2
    out = Path(args.out) if args.out else Path(tempfile.gettempdir()) / f"reliability-out-{os.getpid()}"
    write_report(result, out, argv=[sys.executable, "-m", "benchmarks.reliability.campaign", *(argv or sys.argv[1:])])
    print(table(result))
    print()
    failures = failures_by_cause(result)
    if failures:
        print("Failing cases by cause:")
        print(failures)
        print()
    for note in result.notes:
        print(f"note: {note}")
    print(f"\n{len(result.counted)} cases in {result.seconds / 60:.1f} min; every case in {out / 'cases.json'}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if result.clean else 1


if __name__ == "__main__":
    sys.exit(main())
