"""The simulated proofreader: candidates in a strategy's order, answered from ground truth.

Every decision: find the candidates of the current state, let the strategy
order them, take the first one not asked before, answer it from the ground
truth (a merge is right when both pieces' majority body is the same; a split
is right when its cut separates bodies), apply an accepted edit through the
:class:`~napari_connectome.proofread.Proofreader` (so it is in the edit log,
``suggested_by="simulate:<strategy>"``), tell the strategy the answer, and
record VI and the simulated minutes. Candidates are found again only after an
accepted edit (a rejection changes nothing). Decision 0 is the starting state.

The simulation never touches the project's own edit log: it works on a copy
of the project's manifest and graph (the inputs are shared, read-only) in a
scratch folder, kept when ``workdir`` is given.

VI after each decision costs milliseconds at any volume size: the contingency
table of ground truth against *supervoxels* is counted once, then relabelled
through the current supervoxel → segment mapping
(:meth:`~napari_connectome.metrics.Contingency.remap`). Only graph edits are
applied (merges and min-cut splits between supervoxels), which keep the
supervoxels unchanged, so that table stays exact.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from napari_connectome.atomic import atomic_write, write_json_atomic
from napari_connectome.candidates.apply import apply_candidate
from napari_connectome.collector import fewer_collections
from napari_connectome.errors import InputError, from_os_error
from napari_connectome.outputs import guard_output
from napari_connectome.rank.strategies import (
    ActiveStrategy,
    RandomStrategy,
    Strategy,
    build_strategy,
    candidate_key_text,
)
from napari_connectome.rank.timing import TimeModel


def open_groundtruth(project, gt_uri):
    """Open ``gt_uri`` as labels and check it matches the project's supervoxels (shape, voxel size)."""
    from napari_connectome.volume import open_volume

    sv = project.open_input("supervoxels")
    gt = open_volume(gt_uri, kind="labels")
    if gt.voxel_size_assumed:
        # The file stores no voxel size: it is taken to be the project's.
        gt = open_volume(gt_uri, kind="labels", voxel_size=sv.levels[0].voxel_size)
    sv_shape = tuple(int(s) for s in sv.levels[0].shape)
    gt_shape = tuple(int(s) for s in gt.levels[0].shape)
    if gt_shape != sv_shape:
        raise InputError(gt_uri, f"ground truth shape {gt_shape} differs from the project's supervoxels {sv_shape}")
    vs_sv = np.asarray(sv.levels[0].voxel_size, dtype=float)
    vs_gt = np.asarray(gt.levels[0].voxel_size, dtype=float)
    if not np.allclose(vs_sv, vs_gt, rtol=1e-6):
        raise InputError(
            gt_uri, f"ground truth voxel size {tuple(vs_gt.tolist())} nm differs from the project's "
            f"{tuple(vs_sv.tolist())} nm",
        )
    return sv, gt


def _sandbox(project, workdir: Path):
    """A copy of the project (manifest + graph, no edit log) in ``workdir``."""
    from napari_connectome.project import MANIFEST, open_project

    workdir.mkdir(parents=True, exist_ok=True)
    if any(workdir.iterdir()):
        raise InputError(workdir, "is not empty; the simulation needs a new folder")
    # The copy starts a history of its own: the source's logs and their
    # recorded identities stay behind (the sandbox's log would not match them).
    manifest = dict(project.manifest)
    manifest.pop("history", None)
    manifest["components"] = {k: v for k, v in (manifest.get("components") or {}).items()
                              if k not in ("edit_log", "effort_log")}
    try:
        write_json_atomic(workdir / MANIFEST, manifest)
        graph = project.component_path("graph")
        if graph.is_dir():
            shutil.copytree(graph, workdir / graph.relative_to(project.root))
    except OSError as exc:
        raise from_os_error(exc, workdir, action="the simulation did not start") from None
    return open_project(workdir)


def _strategy(strategy, seed: int, model) -> Strategy:
    if isinstance(strategy, Strategy):
        return strategy
    config = {"name": strategy} if isinstance(strategy, str) else dict(strategy)
    name = config.get("name")
    if name in (RandomStrategy.name, ActiveStrategy.name):
        config.setdefault("seed", seed)
    return build_strategy(config, model=model)


def simulate(project, gt_uri, *, strategy, decisions: int, seed: int = 0, time_model=None, model=None,
             workdir: str | os.PathLike | None = None, find: Callable | None = None,
             label: Callable | None = None, find_options: dict | None = None, progress=None) -> dict:
    """Proofread ``project`` for ``decisions`` yes/no decisions, answering from ground truth.

    Parameters
    ----------
    project
        A project (or its folder) with supervoxels, a graph and usually an agglomeration.
    gt_uri
        Ground-truth labels (0 = unlabelled, ignored in VI) of the supervoxels' shape and voxel size.
    strategy
        A name (``random``, ``size``, ``static``, ``active``), a config dict, or a built strategy.
    decisions
        How many decisions to simulate (fewer when the candidates run out).
    seed
        Seed of the ``random`` order and of ``active``'s exploration draws.
    time_model
        :class:`~napari_connectome.rank.timing.TimeModel` or its config; default: the assumed times.
    model
        Prior model for ``static`` / ``active`` (a ``Ranker``, registry name or path).
    workdir
        Where to keep the sandboxed project copy and its edit log (default: a temporary folder, removed).
    find, label
        Candidate finder ``find(proofreader, **find_options) -> list[Candidate]`` and labeller
        ``label(candidates, proofreader, gt) -> bool array``; default: :mod:`napari_connectome.candidates`.
        The labeller is asked about each candidate picked (a one-item list), once per proposal.
    progress
        Told about every decision.

    Returns
    -------
    dict
        ``strategy``, ``config``, ``seed``, ``time_model``, ``curve`` (``decision``, ``vi_split``,
        ``vi_merge``, ``minutes`` for decisions 0..n), ``decisions`` (what was asked, the answer, the
        operation id of an accepted edit), ``stopped`` (``"decisions"`` or ``"exhausted"``),
        ``n_candidates_start``.

    Raises
    ------
    InputError
        Ground truth of another shape or voxel size; no candidates in the starting state; bad options.
    """
    from napari_connectome.metrics import contingency_table, vi_from_table
    from napari_connectome.project import Project, open_project
    from napari_connectome.proofread import Proofreader

    try:
        decisions = int(decisions)
    except (TypeError, ValueError):
        raise InputError("--decisions", f"{decisions!r} is not a whole number") from None
    if decisions < 0:
        raise InputError("--decisions", f"must be ≥ 0, got {decisions}")
    if not isinstance(project, Project):
        project = open_project(project)
    tm = time_model if isinstance(time_model, TimeModel) else TimeModel.from_config(time_model)
    strat = _strategy(strategy, int(seed), model)
    find_options = dict(find_options or {})
    if find is None:
        # Candidates again after each accepted edit, for the segments it made only (CandidateCache):
        # the cost of a decision follows the edit, not the volume. Not placed: nothing is shown here,
        # and finding each candidate's face was most of a search after an edit.
        from napari_connectome.candidates import CandidateCache

        cache = CandidateCache(**{"locate": False, **find_options})
        find_options = {}

        def find(pr):
            return cache(pr)
    if label is None:
        from napari_connectome.candidates.labels import SupervoxelBodies, label_candidates

        counted: list = []

        def label(cands, pr, gt):
            if not counted:  # once, from the table VI is read from: graph edits leave the supervoxels unchanged
                counted.append(SupervoxelBodies.from_table(table))
            return label_candidates(cands, pr, gt, bodies=counted[0])

    sv_volume, gt_volume = open_groundtruth(project, gt_uri)
    gt = np.asarray(gt_volume.levels[0].array[...])
    if not np.issubdtype(gt.dtype, np.integer):
        raise InputError(gt_uri, f"ground truth labels must be integers, not {gt.dtype}")
    table = contingency_table(sv_volume.levels[0].array, gt)

    keep = workdir is not None
    root = Path(workdir) if keep else Path(tempfile.mkdtemp(prefix="napari-connectome-simulate-"))
    try:
        sandbox = _sandbox(project, root / "project" if not keep else root)
        pr = Proofreader.open(sandbox, user="simulator", session=f"simulate-{strat.name}-seed{int(seed)}")
        try:
            # Each accepted edit makes and drops ~2,000 candidate objects: see napari_connectome/collector.py.
            with fewer_collections():
                result = _run(pr, strat, gt, table, tm, decisions, find, label, find_options, vi_from_table,
                              progress)
        finally:
            pr.close()
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    result.update({"seed": int(seed), "time_model": tm.to_config(), "gt": str(gt_uri),
                   "project": str(project.root), "workdir": str(root) if keep else None})
    return result


def _run(pr, strat: Strategy, gt, table, tm: TimeModel, decisions: int, find, label, find_options,
         vi_from_table, progress) -> dict:
    vi_at: dict = {}

    def point(i: int, seconds: float) -> dict:
        # VI moves only with the state: a "no" leaves it where it was (the table is remapped once per edit).
        version = pr.version
        if vi_at.get("version", -1) != version:
            vi_at.update(version=version, vi=vi_from_table(table.remap(*pr.mapping())))
        split, merge = vi_at["vi"]
        return {"decision": i, "vi_split": float(split), "vi_merge": float(merge), "minutes": seconds / 60.0}

    known: dict = {}

    def answer(c) -> bool:
        # Ground truth is asked about the candidate picked, not about every candidate an edit brings
        # (~2,000, of which a handful are ever picked). Segment ids are never reused, so a merge answer
        # keyed by its two segment ids, and a split answer keyed by its two sides, hold for the run.
        key = _answer_key(c)
        if key not in known:
            known[key] = bool(np.asarray(label([c], pr, gt), dtype=bool).reshape(-1)[0])
        return known[key]

    candidates = find(pr, **find_options)
    if not candidates:
        raise InputError(str(pr.project.root), "no candidates were found to proofread (nothing to simulate)")
    n_start = len(candidates)
    asked: set = set()
    seconds = 0.0
    curve = [point(0, seconds)]
    log: list[dict] = []
    stopped = "decisions"
    if progress is not None:
        progress.start(decisions, "simulated decisions")
    try:
        order = None
        for i in range(1, decisions + 1):
            if order is None or strat.learns:
                # A strategy that does not learn gives the same order to the same candidates: it is made
                # again only when an accepted edit changed them.
                order = strat.order(candidates) if candidates else np.empty(0, int)
            pick = next((int(j) for j in order if candidate_key_text(candidates[j]) not in asked), None)
            if pick is None:
                stopped = "exhausted"
                break
            c = candidates[pick]
            yes = answer(c)
            asked.add(candidate_key_text(c))
            seconds += tm.seconds_for(c.kind)
            entry = {"decision": i, "candidate": c.id, "kind": c.kind, "answer": yes, "operation_id": None,
                     "explored": bool(getattr(strat, "last_pick_explored", False))}
            if yes:
                entry["operation_id"] = apply_candidate(pr, c, suggested_by=f"simulate:{strat.name}")
            strat.observe(c, yes)
            if yes:
                candidates = find(pr, **find_options)
                order = None
            curve.append(point(i, seconds))
            log.append(entry)
            if progress is not None:
                progress.advance(1)
    finally:
        if progress is not None:
            progress.close()
    return {"strategy": strat.name, "config": strat.to_config(), "curve": curve, "decisions": log,
            "stopped": stopped, "n_candidates_start": n_start}


def _answer_key(c) -> tuple | str:
    if c.kind == "false_split":
        a, b = c.segments
        return (c.kind, (a, b) if a <= b else (b, a))
    # A cut's key lists every supervoxel of its sides (thousands in a large segment): its text, made
    # once per candidate object and hashed once, not a tuple built and hashed at every lookup.
    return candidate_key_text(c)


# ------------------------------------------------------------------ outputs
def decisions_to_reach(curve: list[dict], fraction: float = 0.8, *, best_vi: float | None = None) -> int | None:
    """First decision whose total VI recovers ``fraction`` of the gain ``VI(0) − best_vi``.

    ``best_vi`` defaults to the curve's own minimum; None when never reached
    or when there is no gain.
    """
    vi = np.array([p["vi_split"] + p["vi_merge"] for p in curve])
    best = float(vi.min()) if best_vi is None else float(best_vi)
    gain = vi[0] - best
    if gain <= 0:
        return None
    hit = np.flatnonzero(vi[0] - vi >= fraction * gain - 1e-12)
    return int(curve[int(hit[0])]["decision"]) if hit.size else None


def write_curves_csv(results: list[dict], path: str | os.PathLike, *, overwrite: bool = False,
                     inputs=(), projects=()) -> Path:
    """One row per (strategy, decision): VI split, merge, total and minutes.

    ``path`` passes :func:`~napari_connectome.outputs.guard_output` (never a
    project's own file, one of ``inputs`` or of the ``projects``' inputs; an
    existing file only with ``overwrite``).
    """
    path = guard_output(path, inputs=inputs, projects=projects, overwrite=overwrite, what="--csv")
    try:
        with atomic_write(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["strategy", "seed", "decision", "vi_split", "vi_merge", "vi", "minutes"])
            for r in results:
                for p in r["curve"]:
                    w.writerow([r["strategy"], r.get("seed", ""), p["decision"], f"{p['vi_split']:.6f}",
                                f"{p['vi_merge']:.6f}", f"{p['vi_split'] + p['vi_merge']:.6f}",
                                f"{p['minutes']:.4f}"])
    except OSError as exc:
        raise from_os_error(exc, path, action="nothing was written") from None
    return path


def plot_curves(results: list[dict], path: str | os.PathLike, *, title: str | None = None,
                overwrite: bool = False, inputs=(), projects=()) -> Path:
    """PNG: total VI vs decisions and VI vs simulated minutes, one curve per strategy (guarded like the CSV)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    path = guard_output(path, inputs=inputs, projects=projects, overwrite=overwrite, what="--plot")
    fig, (ax_d, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for r in results:
        d = [p["decision"] for p in r["curve"]]
        m = [p["minutes"] for p in r["curve"]]
        vi = [p["vi_split"] + p["vi_merge"] for p in r["curve"]]
        ax_d.plot(d, vi, label=r["strategy"], drawstyle="steps-post")
        ax_m.plot(m, vi, label=r["strategy"], drawstyle="steps-post")
    ax_d.set_xlabel("decisions")
    ax_m.set_xlabel("simulated minutes")
    ax_d.set_ylabel("VI (split + merge, bits)")
    for ax in (ax_d, ax_m):
        ax.grid(alpha=0.3)
    ax_d.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        with atomic_write(path, tmp_name=path.stem + ".tmp.png") as tmp:
            fig.savefig(tmp, dpi=110)
    except OSError as exc:
        raise from_os_error(exc, path, action="nothing was written") from None
    finally:
        plt.close(fig)
    return path


def run_simulation_cli(directory, *, gt: str, strategy: str, decisions: int, seed: int = 0,
                       as_json: bool = False, plot: str | None = None, csv_path: str | None = None,
                       time_model: dict | None = None, model: str | None = None, out=None,
                       overwrite: bool = False) -> dict:
    """What ``napari-connectome simulate DIR --gt URI --strategy S --decisions N [--json] [--plot PNG]`` does.

    ``strategy`` may name several, comma-separated (one curve each).
    Prints the JSON (``{"strategy", "curve"}``; a list for several
    strategies) or a short table to ``out`` (default stdout); writes the CSV
    and the PNG when asked. The output paths are checked before the
    simulation runs, so a refused path costs no minutes of work.
    """
    import json
    import sys

    out = out or sys.stdout
    names = [s.strip() for s in str(strategy).split(",") if s.strip()]
    if not names:
        raise InputError("--strategy", "give at least one strategy")
    inputs = [gt]
    targets = [(csv_path, "--csv"), (plot, "--plot")]
    for target, what in targets:
        if target:
            guard_output(target, inputs=inputs, projects=[directory], overwrite=overwrite, what=what)
    if csv_path and plot and os.path.abspath(csv_path) == os.path.abspath(plot):
        raise InputError(plot, "--csv and --plot name the same file")
    results = [simulate(directory, gt, strategy=name, decisions=decisions, seed=seed, time_model=time_model,
                        model=model) for name in names]
    if csv_path:
        write_curves_csv(results, csv_path, overwrite=overwrite, inputs=inputs, projects=[directory])
    if plot:
        plot_curves(results, plot, overwrite=overwrite, inputs=inputs, projects=[directory])
    if as_json:
        payload = [{"strategy": r["strategy"], "curve": r["curve"]} for r in results]
        print(json.dumps(payload[0] if len(payload) == 1 else payload), file=out)
    else:
        for r in results:
            first, last = r["curve"][0], r["curve"][-1]
            accepted = sum(1 for d in r["decisions"] if d["answer"])
            print(
                f"{r['strategy']}: {len(r['curve']) - 1} decisions ({accepted} accepted, {r['stopped']}), "
                f"VI split {first['vi_split']:.3f} → {last['vi_split']:.3f}, merge {first['vi_merge']:.3f} → "
                f"{last['vi_merge']:.3f}, {last['minutes']:.1f} simulated min", file=out,
            )
    return {"results": results}
