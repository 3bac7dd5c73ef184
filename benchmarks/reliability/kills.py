"""kill -9 during every writing command, then a re-run.

For each writing command the campaign first runs it once uncontended (a case
of its own, which also measures how long it takes), then N times on a fresh
setup with SIGKILL sent to its whole process group after a delay drawn
uniformly from [0, measured duration]. After each kill:

* nothing saved before is lost: an old pyramid under ``convert
  --overwrite`` is still there with identical voxels, or the new one is
  complete; the edit log holds every operation it held and every one the
  killed editor reported as committed (compared by uuid), and the project
  still opens with them; the manifest parses;
* nothing half-written passes for a result: an output is absent or complete
  (a partial pyramid, export or CSV at the destination is ``silent wrong``);
* the command, run again (with ``--overwrite`` when its output exists),
  succeeds with the complete result.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.reliability import fixtures as fxm
from benchmarks.reliability.core import (
    Case,
    Run,
    Verdict,
    cli,
    cli_has,
    crash_case,
    driver,
    judge,
    make_case,
    missing_case,
    run_process,
)

CATEGORY = "kill -9"
SRC_SHAPE = ("64", "256", "256")
SYN_SHAPE = ("48", "128", "128")


# ====================================================================== outputs
def read_pyramid(path: Path) -> list[np.ndarray] | str:
    """Every level of an OME-Zarr, read with the zarr library (missing chunks read as fill); or why not."""
    import zarr

    if not path.exists():
        return "absent"
    try:
        group = zarr.open_group(str(path), mode="r")
        attrs = group.attrs.asdict()
        ms = attrs.get("multiscales") or (attrs.get("ome") or {}).get("multiscales")
        paths = [d["path"] for d in ms[0]["datasets"]]
        return [np.asarray(group[p][...]) for p in paths]
    except Exception as exc:  # noqa: BLE001 - any failure means "not a complete pyramid"
        return f"unreadable ({type(exc).__name__}: {str(exc)[:120]})"


def pyramid_state(path: Path, new: list[np.ndarray], old: list[np.ndarray] | None = None) -> str:
    """``absent``, ``new``, ``old`` or ``partial: why``."""
    got = read_pyramid(path)
    if got == "absent":
        return "absent"
    if isinstance(got, str):
        return f"partial: {got}"
    for name, ref in (("new", new), ("old", old)):
        if ref is not None and len(ref) == len(got) and all(
                a.shape == b.shape and np.array_equal(a, b) for a, b in zip(got, ref, strict=True)):
            return name
    return f"partial: {len(got)} levels whose voxels match neither the old nor the new pyramid"


@dataclass
class References:
    """Inputs and complete outputs the kill and two-writer cases compare with (None: not needed by this run)."""

    src: Path | None = None
    new: list[np.ndarray] | None = None
    old_template: Path | None = None
    old: list[np.ndarray] | None = None
    synthetic: dict[str, list[np.ndarray]] | None = None
    effort_csv: bytes | None = None
    simulate_csv_lines: int | None = None
    notes: list[str] = field(default_factory=list)


#: What each kill spec needs from :func:`build_references`.
NEEDS = {
    "convert": {"convert"}, "convert --overwrite over an existing pyramid": {"convert", "old"},
    "synthetic": {"synthetic"}, "effort report --csv": {"effort"}, "simulate --csv": {"simulate"},
    "two convert to one destination": {"convert"},
}


def build_references(fx: fxm.ProjectFixture, work: Path, *, need: set[str], src_shape=SRC_SHAPE) -> References:
    """The convert source, its reference pyramid, an "old" pyramid, synthetic outputs, report CSVs (what ``need`` names)."""
    ref = work / "references"
    if ref.exists():
        shutil.rmtree(ref)
    ref.mkdir(parents=True)
    refs = References()
    if need & {"convert", "old"}:
        run = run_process(cli("synthetic", ref / "src", "--shape", *src_shape, "--seed", "5", "--quiet"), timeout=300)
        if run.rc != 0:
            raise fxm.FixtureError("synthetic (the convert source)", run)
        refs.src = ref / "src" / "raw.ome.zarr"
        run = run_process(cli("convert", refs.src, ref / "new.ome.zarr", "--chunks", "32", "--quiet"), timeout=300)
        if run.rc != 0:
            raise fxm.FixtureError("convert (reference pyramid)", run)
        refs.new = read_pyramid(ref / "new.ome.zarr")
        if isinstance(refs.new, str):
            raise fxm.FixtureError(f"reference pyramid unreadable: {refs.new}")
    if "old" in need:
        run = run_process(cli("convert", f"{fx.sample}/raw", ref / "old.ome.zarr", "--chunks", "32", "--quiet"),
                          timeout=300)
        if run.rc != 0:
            raise fxm.FixtureError("convert (old pyramid)", run)
        refs.old_template = ref / "old.ome.zarr"
        refs.old = read_pyramid(refs.old_template)
        if isinstance(refs.old, str):
            raise fxm.FixtureError(f"old pyramid unreadable: {refs.old}")
    if "synthetic" in need:
        run = run_process(cli("synthetic", ref / "syn", "--shape", *SYN_SHAPE, "--seed", "1", "--quiet"), timeout=300)
        if run.rc != 0:
            raise fxm.FixtureError("synthetic (reference)", run)
        refs.synthetic = {name: read_pyramid(ref / "syn" / name) for name in ("raw.ome.zarr", "groundtruth.ome.zarr")}
    if need & {"effort", "simulate"}:
        p = fx.fresh(ref / "P")
        if "effort" in need:
            run = run_process(cli("effort", "report", p, "--csv", ref / "effort.csv"))
            refs.effort_csv = (ref / "effort.csv").read_bytes() if run.rc == 0 else None
            if refs.effort_csv is None:
                refs.notes.append("effort report --csv fails on the intact project: its kill cases only check the exit")
        if "simulate" in need:
            run = run_process(cli("simulate", p, "--gt", fx.gt, "--decisions", "3", "--csv", ref / "sim.csv"),
                              timeout=180)
            refs.simulate_csv_lines = len((ref / "sim.csv").read_text().splitlines()) if run.rc == 0 else None
            if refs.simulate_csv_lines is None:
                refs.notes.append("simulate --csv fails on the intact project: its kill cases only check the exit")
    return refs


# ====================================================================== specs
@dataclass
class KillSpec:
    """A writing command, how to set it up, and what must hold after a kill and after a re-run."""

    name: str
    cli_path: tuple
    prepare: Callable[[Path], dict]
    argv: Callable[[dict], list[str]]
    after_kill: Callable[[dict, Run], list[tuple[str, str]]]
    rerun: Callable[[dict, Run], tuple[list[str], str]]  # argv, expectation
    after_rerun: Callable[[dict, Run], list[tuple[str, str]]]
    measure_argv: Callable[[dict], list[str]] | None = None


def _printed_ops(run: Run) -> list[str]:
    return [line.split()[1] for line in run.stdout.splitlines() if line.startswith("op ") and len(line.split()) > 1]


def specs(fx: fxm.ProjectFixture, refs: References) -> list[KillSpec]:
    """Every writing command of the suite."""

    def project(d: Path) -> dict:
        p = fx.fresh(d / "P")
        return {"d": d, "p": p, "saved": fxm.snapshot(p)}

    def project_and_copy(d: Path) -> dict:
        ctx = project(d)
        ctx["copy"] = fxm.copy_project(fx.copy0, d / "COPY")
        return ctx

    def kept(ctx, run) -> list[tuple[str, str]]:
        return fxm.lost(ctx["p"], ctx["saved"]) + fxm.history_after(ctx["p"], fx.uuids)

    # ---------------------------------------------------------------- convert
    def convert_after(ctx, run):
        state = pyramid_state(ctx["d"] / "out.ome.zarr", refs.new, refs.old if ctx.get("old") else None)
        ctx["state"] = state
        if ctx.get("old"):
            if state not in ("old", "new"):
                return [("data lost", f"the old pyramid is gone and the new one is incomplete ({state})")]
            return []
        if state.startswith("partial"):
            return [("silent wrong", f"a partial pyramid was left at the destination ({state})")]
        return []

    def convert_rerun(ctx, run):
        argv = cli("convert", refs.src, ctx["d"] / "out.ome.zarr", "--chunks", "32", "--quiet")
        if ctx.get("state") != "absent":
            argv.append("--overwrite")
        return argv, "ok"

    def convert_done(ctx, run):
        state = pyramid_state(ctx["d"] / "out.ome.zarr", refs.new)
        return [] if state == "new" else [("silent wrong", f"exit 0 but the pyramid is {state}")]

    def old_pyramid(d: Path) -> dict:
        d.mkdir(parents=True, exist_ok=True)
        shutil.copytree(refs.old_template, d / "out.ome.zarr")
        return {"d": d, "old": True}

    # ---------------------------------------------------------------- synthetic
    def syn_after(ctx, run):
        problems = []
        ctx["complete"] = True
        for name, ref in refs.synthetic.items():
            state = pyramid_state(ctx["d"] / "syn" / name, ref)
            if state != "new":
                ctx["complete"] = False
            if state.startswith("partial"):
                problems.append(("silent wrong", f"a partial {name} was left behind ({state})"))
        return problems

    def syn_rerun(ctx, run):
        return cli("synthetic", ctx["d"] / "syn", "--shape", *SYN_SHAPE, "--seed", "1", "--quiet"), \
            "any" if ctx.get("complete") else "ok"

    def syn_done(ctx, run):
        problems = []
        for name, ref in refs.synthetic.items():
            state = pyramid_state(ctx["d"] / "syn" / name, ref)
            if state != "new":
                problems.append(("silent wrong", f"exit 0 but {name} is {state}"))
        return problems

    # ---------------------------------------------------------------- project create
    def create_after(ctx, run):
        p = ctx["d"] / "newP"
        manifest = p / "napari-connectome.json"
        ctx["complete"] = False
        if manifest.exists():
            import json

            try:
                data = json.loads(manifest.read_text())
                ctx["complete"] = isinstance(data, dict) and "raw" in data.get("inputs", {})
            except (OSError, ValueError):
                return [("silent wrong", "a torn project manifest was left behind")]
        return []

    def create_rerun(ctx, run):
        return fxm.create_project_cmd(ctx["d"] / "newP", fx.sample), "any" if ctx.get("complete") else "ok"

    def create_done(ctx, run):
        return [] if (ctx["d"] / "newP" / "napari-connectome.json").is_file() else \
            [("silent wrong", "exit 0 but no manifest")]

    # ---------------------------------------------------------------- outputs of reports
    def export_after(ctx, run):
        out = ctx["d"] / "out.csv"
        problems = kept(ctx, run)
        ctx["complete"] = False
        if out.exists():
            got = fxm.export_figures(out)
            if fx.baseline.get("export") is not None and got != fx.baseline["export"]:
                problems.append(("silent wrong", "a partial change log was left at the output path"))
            else:
                ctx["complete"] = True
        return problems

    def export_done(ctx, run):
        got = fxm.export_figures(ctx["d"] / "out.csv")
        want = fx.baseline.get("export")
        return [] if want is None or got == want else [("silent wrong", "exit 0 but the export is incomplete")]

    def csv_after(kind):
        def after(ctx, run):
            out = ctx["d"] / f"{kind}.csv"
            problems = fxm.lost(ctx["p"], ctx["saved"])
            ctx["complete"] = False
            if out.exists():
                if _csv_complete(kind, out):
                    ctx["complete"] = True
                else:
                    problems.append(("silent wrong", f"a partial {kind} CSV was left at the output path"))
            return problems
        return after

    def _csv_complete(kind, out: Path) -> bool:
        if kind == "effort":
            return refs.effort_csv is None or out.read_bytes() == refs.effort_csv
        return refs.simulate_csv_lines is None or len(out.read_text(errors="replace").splitlines()) == refs.simulate_csv_lines

    def csv_done(kind):
        def done(ctx, run):
            out = ctx["d"] / f"{kind}.csv"
            if not out.exists() or not _csv_complete(kind, out):
                return [("silent wrong", f"exit 0 but the {kind} CSV is incomplete")]
            return fxm.lost(ctx["p"], ctx["saved"])
        return done

    def rerun_same(argv_of):
        def rerun(ctx, run):
            return argv_of(ctx), "any" if ctx.get("complete") else "ok"
        return rerun

    # ---------------------------------------------------------------- log merge, edits
    def merge_done(ctx, run):
        got = fxm.log_uuids(ctx["p"] / "edits.sqlite") or []
        want = list(fx.uuids) + list(fx.copy_extra)
        problems = []
        gone = [u for u in want if u not in got]
        if gone:
            problems.append(("silent wrong", f"exit 0 but {len(gone)} of {len(want)} operations are not in the log"))
        if len(got) != len(set(got)):
            problems.append(("silent wrong", "an operation was merged twice"))
        return problems + fxm.history_after(ctx["p"], want)

    def edit_after(ctx, run):
        printed = _printed_ops(run)
        ctx["printed"] = printed
        got = fxm.log_uuids(ctx["p"] / "edits.sqlite")
        problems = []
        if got is None:
            problems.append(("data lost", "the edit log is unreadable after the kill"))
        else:
            gone = [u for u in list(fx.uuids) + printed if u not in got]
            if gone:
                problems.append(("data lost", f"{len(gone)} committed operations are missing from the log "
                                              f"({len(printed)} reported committed by the killed editor)"))
        return problems + fxm.history_after(ctx["p"], list(fx.uuids) + printed)

    def edit_done(ctx, run):
        return fxm.history_after(ctx["p"], list(fx.uuids) + ctx.get("printed", []) + _printed_ops(run))

    ok_history = lambda ctx, run: kept(ctx, run)  # noqa: E731

    return [
        KillSpec("convert", ("convert",), lambda d: (d.mkdir(parents=True, exist_ok=True), {"d": d})[1],
                 lambda c: cli("convert", refs.src, c["d"] / "out.ome.zarr", "--chunks", "32", "--quiet"),
                 convert_after, convert_rerun, convert_done),
        KillSpec("convert --overwrite over an existing pyramid", ("convert",), old_pyramid,
                 lambda c: cli("convert", refs.src, c["d"] / "out.ome.zarr", "--chunks", "32", "--overwrite", "--quiet"),
                 convert_after, convert_rerun, convert_done),
        KillSpec("synthetic", ("synthetic",), lambda d: (d.mkdir(parents=True, exist_ok=True), {"d": d})[1],
                 lambda c: cli("synthetic", c["d"] / "syn", "--shape", *SYN_SHAPE, "--seed", "1", "--quiet"),
                 syn_after, syn_rerun, syn_done),
        KillSpec("project create", ("project", "create"), lambda d: (d.mkdir(parents=True, exist_ok=True), {"d": d})[1],
                 lambda c: fxm.create_project_cmd(c["d"] / "newP", fx.sample), create_after, create_rerun, create_done),
        KillSpec("agglomerate (new threshold)", ("agglomerate",), project,
                 lambda c: cli("agglomerate", c["p"], "--threshold", "0.6", "--quiet"), kept,
                 lambda c, r: (cli("agglomerate", c["p"], "--threshold", "0.6", "--quiet"), "ok"), ok_history),
        KillSpec("agglomerate --rebuild", ("agglomerate",), project,
                 lambda c: cli("agglomerate", c["p"], "--rebuild", "--threshold", fxm.THRESHOLD, "--quiet"), kept,
                 lambda c, r: (cli("agglomerate", c["p"], "--rebuild", "--threshold", fxm.THRESHOLD, "--quiet"), "ok"),
                 ok_history),
        KillSpec("log export", ("log", "export"), project, lambda c: cli("log", "export", c["p"], c["d"] / "out.csv"),
                 export_after, rerun_same(lambda c: cli("log", "export", c["p"], c["d"] / "out.csv")), export_done),
        KillSpec("effort report --csv", ("effort", "report"), project,
                 lambda c: cli("effort", "report", c["p"], "--csv", c["d"] / "effort.csv"), csv_after("effort"),
                 rerun_same(lambda c: cli("effort", "report", c["p"], "--csv", c["d"] / "effort.csv")), csv_done("effort")),
        KillSpec("simulate --csv", ("simulate",), project,
                 lambda c: cli("simulate", c["p"], "--gt", fx.gt, "--decisions", "3", "--csv", c["d"] / "simulate.csv"),
                 csv_after("simulate"),
                 rerun_same(lambda c: cli("simulate", c["p"], "--gt", fx.gt, "--decisions", "3", "--csv",
                                          c["d"] / "simulate.csv")), csv_done("simulate")),
        KillSpec("log merge", ("log", "merge"), project_and_copy, lambda c: cli("log", "merge", c["p"], c["copy"]), kept,
                 lambda c, r: (cli("log", "merge", c["p"], c["copy"]), "ok"), merge_done),
        KillSpec("edits (Proofreader driver)", (), project,
                 lambda c: driver("edit", c["p"], "--forever", "--seed", str(c.get("seed", 0))), edit_after,
                 lambda c, r: (driver("edit", c["p"], "--merges", "1", "--seed", "99"), "ok"), edit_done,
                 measure_argv=lambda c: driver("edit", c["p"], "--merges", "15")),
    ]


def _rerun_ok(run: Run) -> bool:
    text = run.stderr.lower()
    return "exists" in text or "already" in text


def kill_cases(fx: fxm.ProjectFixture, refs: References, work: Path, *, kills: int, seed: int,
               only: list[str] | None = None) -> list[Callable[[], list[Case]]]:
    """Per writing command: one uncontended run (measures it), then ``kills`` killed runs, each re-run."""
    out = []
    for s_index, spec in enumerate(specs(fx, refs)):
        if only is not None and spec.name not in only:
            continue

        def one(spec=spec, s_index=s_index) -> list[Case]:
            if spec.cli_path and not cli_has(spec.cli_path):
                return [missing_case(CATEGORY, spec.name, "napari-connectome " + " ".join(spec.cli_path))]
            results: list[Case] = []
            base = work / f"kill-{s_index:02d}"
            shutil.rmtree(base, ignore_errors=True)
            # ---- the uncontended run: it must work, and it says how long it takes
            d = base / "measure"
            try:
                ctx = spec.prepare(d)
                argv = (spec.measure_argv or spec.argv)(ctx)
                run = run_process(argv, timeout=300)
                verdict = judge(run, expect="ok", on_success=lambda r: spec.after_rerun(ctx, r))
                duration = max(0.2, run.seconds)
                results.append(make_case(CATEGORY, f"{spec.name} (uncontended, {duration:.1f} s)", run, verdict))
            except Exception as exc:  # noqa: BLE001
                results.append(crash_case(CATEGORY, f"{spec.name} (uncontended)", exc))
                duration = 2.0
            finally:
                shutil.rmtree(d, ignore_errors=True)
            rng = np.random.default_rng([seed, 1000 + s_index])
            for k in range(kills):
                delay = float(rng.uniform(0.0, duration))
                d = base / f"k{k:03d}"
                name = f"{spec.name} killed at {delay:.2f} s (#{k})"
                try:
                    ctx = spec.prepare(d)
                    ctx["seed"] = k
                    run = run_process(spec.argv(ctx), kill_after=delay, timeout=300)
                    verdict = Verdict()
                    if not run.killed:
                        verdict.notes.append(f"finished (exit {run.rc}) before the kill")
                        if run.rc != 0 and "edit" not in spec.name:
                            verdict.add("other", f"exit {run.rc} before the kill: {(run.stderr.strip().splitlines() or ['?'])[-1][:200]}")
                    verdict.extend(spec.after_kill(ctx, run))
                    argv2, expect = spec.rerun(ctx, run)
                    run2 = run_process(argv2, timeout=300)
                    v2 = judge(run2, expect=expect, on_success=lambda r, ctx=ctx: spec.after_rerun(ctx, r),
                               refused_ok=_rerun_ok)
                    for cls, reason in v2.problems:
                        verdict.add(cls, f"re-run: {reason}")
                    case = make_case(CATEGORY, name, run2, verdict, killed=run.killed, killed_at=round(delay, 3),
                                     rerun=run2.command, rerun_rc=run2.rc)
                    case.command = run.command
                    results.append(case)
                except Exception as exc:  # noqa: BLE001
                    results.append(crash_case(CATEGORY, name, exc))
                finally:
                    shutil.rmtree(d, ignore_errors=True)
            shutil.rmtree(base, ignore_errors=True)
            return results
        out.append(one)
    return out
