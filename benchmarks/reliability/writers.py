"""Two writers at once on one project or one output.

Both processes start together (the second after a small random offset).
Each must end cleanly: exit 0, or exit 2 with one line (another program
holds the project: "locked", "in use", ...). Afterwards the shared target
is whole: the project opens with every operation it had plus every one a
writer reported as committed, a pyramid or export is complete.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
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
from benchmarks.reliability.kills import References, _printed_ops, pyramid_state

CATEGORY = "two writers"


def _both(argv_a: list[str], argv_b: list[str], offset: float) -> tuple[Run, Run]:
    runs: list[Run | None] = [None, None]

    def go(i, argv, delay):
        time.sleep(delay)
        runs[i] = run_process(argv, timeout=180)

    threads = [threading.Thread(target=go, args=(0, argv_a, 0.0)), threading.Thread(target=go, args=(1, argv_b, offset))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return runs[0], runs[1]


def _busy(run: Run) -> bool:
    text = run.stderr.lower()
    return any(w in text for w in ("lock", "busy", "in use", "another", "exists", "already", "concurrent"))


def scenarios(fx: fxm.ProjectFixture, refs: References) -> list[tuple[str, tuple, Callable[[Path], dict],
                                                                      Callable[[dict], tuple[list[str], list[str]]],
                                                                      Callable[[dict, Run, Run], list]]]:
    """(name, cli path, prepare, the two argvs, the check of the shared target)."""

    def project(d: Path) -> dict:
        p = fx.fresh(d / "P")
        return {"d": d, "p": p, "saved": fxm.snapshot(p)}

    def with_copy(d: Path) -> dict:
        ctx = project(d)
        ctx["copy"] = fxm.copy_project(fx.copy0, d / "COPY")
        return ctx

    def plain(d: Path) -> dict:
        d.mkdir(parents=True, exist_ok=True)
        return {"d": d}

    def project_kept(ctx, a, b, extra=()):
        printed = _printed_ops(a) + _printed_ops(b)
        return fxm.lost(ctx["p"], ctx["saved"]) + fxm.history_after(ctx["p"], list(fx.uuids) + list(extra) + printed)

    def pyramid_whole(ctx, a, b):
        if a.rc != 0 and b.rc != 0:
            return [("silent wrong", "neither convert succeeded")]
        state = pyramid_state(ctx["d"] / "out.ome.zarr", refs.new)
        return [] if state == "new" else [("silent wrong", f"the shared destination holds a {state} pyramid")]

    def export_whole(ctx, a, b):
        got = fxm.export_figures(ctx["d"] / "out.csv")
        want = fx.baseline.get("export")
        if a.rc != 0 and b.rc != 0:
            return [("silent wrong", "neither export succeeded")]
        return [] if want is None or got == want else [("silent wrong", "the shared export is incomplete")]

    def merged_once(ctx, a, b):
        got = fxm.log_uuids(ctx["p"] / "edits.sqlite") or []
        problems = []
        if len(got) != len(set(got)):
            problems.append(("silent wrong", "an operation of the copy was merged twice"))
        if (a.rc == 0 or b.rc == 0) and any(u not in got for u in fx.copy_extra):
            problems.append(("silent wrong", "a merge reported success but the copy's operations are not all in the log"))
        return problems + project_kept(ctx, a, b)

    agg = lambda c: cli("agglomerate", c["p"], "--rebuild", "--threshold", fxm.THRESHOLD, "--quiet")  # noqa: E731
    return [
        ("two agglomerate --rebuild on one project", ("agglomerate",), project, lambda c: (agg(c), agg(c)), project_kept),
        ("two convert to one destination", ("convert",), plain,
         lambda c: (cli("convert", refs.src, c["d"] / "out.ome.zarr", "--chunks", "32", "--quiet"),
                    cli("convert", refs.src, c["d"] / "out.ome.zarr", "--chunks", "32", "--quiet")), pyramid_whole),
        ("two editors (Proofreader drivers) on one project", (), project,
         lambda c: (driver("edit", c["p"], "--merges", "5", "--seed", "11"),
                    driver("edit", c["p"], "--merges", "5", "--seed", "12")), project_kept),
        ("an editor and agglomerate --rebuild on one project", ("agglomerate",), project,
         lambda c: (driver("edit", c["p"], "--merges", "5", "--seed", "13"), agg(c)), project_kept),
        ("two log export to one file", ("log", "export"), project,
         lambda c: (cli("log", "export", c["p"], c["d"] / "out.csv"), cli("log", "export", c["p"], c["d"] / "out.csv")),
         export_whole),
        ("two log merge of one copy into one project", ("log", "merge"), with_copy,
         lambda c: (cli("log", "merge", c["p"], c["copy"]), cli("log", "merge", c["p"], c["copy"])), merged_once),
    ]


def writer_cases(fx: fxm.ProjectFixture, refs: References, work: Path, *, reps: int, seed: int,
                 only: list[str] | None = None) -> list[Callable[[], Case]]:
    out = []
    for s_index, (name, path, prepare, argvs, check) in enumerate(scenarios(fx, refs)):
        if only is not None and name not in only:
            continue
        for k in range(reps):
            def one(name=name, path=path, prepare=prepare, argvs=argvs, check=check, s_index=s_index, k=k) -> Case:
                label = f"{name} (#{k})"
                if path and not cli_has(path):
                    return missing_case(CATEGORY, label, "napari-connectome " + " ".join(path))
                d = work / f"writers-{s_index:02d}-{k:02d}"
                shutil.rmtree(d, ignore_errors=True)
                try:
                    ctx = prepare(d)
                    offset = float(np.random.default_rng([seed, 2000 + s_index, k]).uniform(0.0, 0.4))
                    a_argv, b_argv = argvs(ctx)
                    a, b = _both(a_argv, b_argv, offset)
                    verdict = Verdict()
                    for tag, run in (("first", a), ("second", b)):
                        v = judge(run, expect="ok", refused_ok=_busy)
                        for cls, reason in v.problems:
                            verdict.add(cls, f"{tag}: {reason}")
                    verdict.extend(check(ctx, a, b))
                    case = make_case(CATEGORY, label, a, verdict, second_rc=b.rc, second_stderr=b.stderr[-400:],
                                     offset_s=round(offset, 3))
                    case.command = f"{a.command}  ||  {b.command}"
                    return case
                except Exception as exc:  # noqa: BLE001
                    return crash_case(CATEGORY, label, exc)
                finally:
                    shutil.rmtree(d, ignore_errors=True)
            out.append(one)
    return out
