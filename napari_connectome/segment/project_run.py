"""``segment DIR``: a project's raw EM → affinities → supervoxels → graph → agglomeration, resumable.

Every stage writes into the project (``segmentation/``) and is *skipped*
when its output is complete and was made from the same inputs and
parameters (the signature stored in the output), *resumed* when it was
interrupted (the done-ledger beside it), and *redone* when its inputs or
parameters changed — the old output moved aside first, never deleted. A
change upstream changes the signatures downstream, so exactly the stages
that need it run again.

The project then has ``supervoxels`` and ``boundaries`` inputs like one made
from a segmentation brought from elsewhere, so the Proofread and Micro-tasks
panels work on it unchanged. Supervoxels that proofreading has already
edited are never replaced (the edit log refers to their ids).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from napari_connectome.atomic import remove_dead_temporaries
from napari_connectome.errors import InputError
from napari_connectome.inference.models import load_model
from napari_connectome.progress import NullProgress, Progress
from napari_connectome.project import Project
from napari_connectome.pyramid.resumable import OutputMismatch, output_state

STAGES = ("affinities", "supervoxels", "graph")
FOLDER = "segmentation"
AFFINITIES = f"{FOLDER}/affinities.ome.zarr"
SUPERVOXELS = f"{FOLDER}/supervoxels.ome.zarr"
BOUNDARIES = f"{FOLDER}/boundaries.ome.zarr"
WORK = f"{FOLDER}/.work-supervoxels"
DEFAULT_MODEL = "affinities-fib-10nm"


@dataclass
class SegmentReport:
    """What ``segment`` did, stage by stage.

    Attributes
    ----------
    stages
        Per stage: ``"ran"``, ``"resumed"``, ``"skipped"`` (up to date) or ``"not asked"``.
    device
        The device's one-sentence reason (empty if the network did not run).
    figures
        Numbers a person wants to see (blocks, supervoxels, segments, seconds).
    """

    stages: dict[str, str] = field(default_factory=dict)
    device: str = ""
    figures: dict[str, float | int | str] = field(default_factory=dict)


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def _stamp() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _set_aside(path: Path, notify: Callable[[str], None]) -> None:
    if path.exists():
        aside = path.with_name(f"{path.name}.aside-{_stamp()}")
        path.rename(aside)
        notify(f"{path.name} was made from other inputs or parameters: moved aside to {aside.name}")


def _refuse_if_edited(project: Project) -> None:
    """Called just before a stage would rewrite what the supervoxels come from: never under edits."""
    if "supervoxels" in project.inputs and _has_edits(project):
        raise InputError(project.root, "has proofreading edits on its supervoxels; segmenting again with other "
                                       "inputs or parameters would orphan them: create a new project from its raw "
                                       "volume instead (nothing was changed)")


def _has_edits(project: Project) -> bool:
    """True when the edit log records an operation (opening a panel creates an empty log: that is no edit)."""
    import sqlite3

    log = project.component_path("edit_log")
    if not log.exists():
        return False
    try:
        # read-only and immutable-free: a live session's WAL is read too; never written here
        with contextlib.closing(sqlite3.connect(f"file:{log}?mode=ro", uri=True, timeout=5)) as db:
            return db.execute("SELECT EXISTS (SELECT 1 FROM operations)").fetchone()[0] == 1
    except sqlite3.Error:
        return True  # a log we cannot read may hold edits: keep its supervoxels


def _guard_supervoxels(project: Project) -> None:
    """Refuse to replace supervoxels that came from elsewhere (before any work)."""
    record = project.inputs.get("supervoxels")
    ours = str((project.root / SUPERVOXELS).resolve())
    if record is not None and str(Path(record["uri"]).resolve()) != ours:
        raise InputError(project.root, f"already has supervoxels ({record['uri']}); segmenting would replace "
                                       "them: create a new project from its raw volume instead")


def segment_project(project: Project, *, model: str = DEFAULT_MODEL, device: str = "auto", block=None,
                    precision: str = "fp32", affinities_dtype: str = "uint8", supervoxel_block: int = 192,
                    threshold: float | None = None,
                    stages: Sequence[str] | None = None, scheduler="threads", workers: int | None = None,
                    threads: int | None = None, progress: Progress | None = None, cancel=None,
                    region_nm=None, notify: Callable[[str], None] = lambda message: None) -> SegmentReport:
    """Run the segmentation stages on ``project`` (see the module notes).

    Parameters
    ----------
    model
        Registry name of the affinity network (loaded offline, sha256 checked).
    device
        ``auto`` (CUDA > MPS > CPU), ``cpu``, ``cuda[:N]`` or ``mps``.
    block
        Output block of the network in voxels (None: from the device's free memory).
    precision, affinities_dtype
        See :func:`~napari_connectome.inference.blockwise.predict_to_zarr`.
    supervoxel_block
        Block edge of the supervoxel passes (see
        :func:`~napari_connectome.segment.blockwise.supervoxels_to_zarr`); the labels do not depend on it.
    threshold
        Agglomeration threshold; None: the one chosen for these supervoxels with the model on
        held-out training data (in its weights' metadata or its registry entry), else the project's default.
    stages
        Which of :data:`STAGES` to run (default: all; each is still skipped when up to date).
    scheduler, workers, threads
        Block scheduling (see :func:`~napari_connectome.blockwise.run_blockwise`) and torch threads.
    progress, cancel
        One progress bar per stage; cancel between blocks (the outputs stay resumable).
    region_nm
        A :class:`~napari_connectome.volume.roi.Roi` (nm) to segment, grown to whole blocks; None: the
        whole volume. Outside it there are no supervoxels (id 0). Another region is another run: the
        outputs of the previous one are moved aside.
    notify
        Told, in one sentence each, what happens (stage skipped, resumed, output moved aside).

    Raises
    ------
    InputError
        Bad parameters, a volume the model cannot serve, supervoxels that must not be replaced, a
        model whose weights fail their check, or an output that cannot be written.
    CancelledError
        ``cancel`` was set or the progress raised it; rerun to resume.
    """
    from napari_connectome.errors import CancelledError
    from napari_connectome.provenance import Recorder, record_in_project, volume_identity

    stages = tuple(STAGES if stages is None else stages)
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise InputError("--stage", f"{unknown[0]!r} is not one of {', '.join(STAGES)}")
    progress = progress or NullProgress()
    report = SegmentReport(stages={s: "not asked" for s in STAGES})
    if "raw" not in project.inputs:
        raise InputError(project.root, "has no raw volume to segment")
    if "supervoxels" in stages:
        _guard_supervoxels(project)
    folder = project.root / FOLDER
    if folder.exists() and not folder.is_dir():
        raise InputError(folder, "is not a folder, and the segmentation is written there: move it away")
    remove_dead_temporaries(folder)  # a killed run's half-saved files; the targets themselves are whole
    raw = project.open_input("raw")
    aff_path = project.root / AFFINITIES

    needs_model = "affinities" in stages or "supervoxels" in stages or threshold is None
    entry, net, meta = load_model(model, task="affinities") if needs_model else (None, None, {})
    region = _region_voxels(raw.levels[0], region_nm)
    raw_identity = volume_identity(raw)
    aff_signature = {"model": entry.name if entry else model, "sha256": entry.sha256 if entry else None,
                     "raw": {k: v for k, v in raw_identity.items() if k != "source"}}

    if "affinities" in stages:
        from napari_connectome.inference.blockwise import check_input, predict_to_zarr
        from napari_connectome.inference.device import choose_device

        level = raw.levels[0]
        check_input(level, net, model_voxel_size=entry.voxel_size_nm, name=str(raw.source))
        dev = choose_device(device)
        report.device = dev.reason
        notify(f"network on {dev.name}: {dev.reason}")
        signature = {**aff_signature, "device": dev.kind}
        signature_now, complete = output_state(aff_path)
        # How the work was spread (scheduler, workers, threads) does not change the bytes: it goes in "run".
        rec = Recorder("affinities", parameters={"model": model, "block": block, "precision": precision,
                                                 "dtype": affinities_dtype})
        rec.input("raw", raw_identity)
        rec.set("model", {"name": entry.name, "sha256": entry.sha256, "voxel_size_nm": list(entry.voxel_size_nm or ()),
                          "card": entry.card})
        rec.set("device", dev.as_record())
        with rec.timed("predict"):
            try:
                result = predict_to_zarr(level, net, aff_path, device=dev, signature=signature, block=block,
                                         dtype=affinities_dtype, precision=precision, scheduler=scheduler,
                                         workers=workers, threads=threads, progress=progress, cancel=cancel,
                                         region=region, before_writing=lambda: _refuse_if_edited(project))
            except OutputMismatch:
                _set_aside(aff_path, notify)
                result = predict_to_zarr(level, net, aff_path, device=dev, signature=signature, block=block,
                                         dtype=affinities_dtype, precision=precision, scheduler=scheduler,
                                         workers=workers, threads=threads, progress=progress, cancel=cancel,
                                         region=region, before_writing=lambda: _refuse_if_edited(project))
        if result.ran == 0 and complete and _bookkept(project, "affinities"):
            report.stages["affinities"] = "skipped"
            notify("affinities are up to date: skipped")
        else:
            # (also a run killed after its last block and before the project recorded it: recorded now,
            # with the same bytes, since the stored record leaves times and hosts out)
            report.stages["affinities"] = "resumed" if result.skipped else "ran"
            rec.set("tiling", {"block_voxels": list(result.block_voxels), "blocks": result.blocks,
                               "context_voxels": list(map(int, net.config.context))})
            rec.set("run", {"blocks_ran": result.ran, "resumed_from": result.skipped,
                            "backoffs": result.backoffs, "scheduler": str(scheduler), "workers": workers,
                            "threads": threads})
            record = rec.finish()
            result.output.finish(record)
            record_in_project(project, "affinities", record)
            project.save()
        report.figures.update({"affinity_blocks": result.blocks, "affinity_blocks_ran": result.ran})

    if "supervoxels" in stages:
        from napari_connectome.segment.blockwise import remove_work, supervoxels_to_zarr
        from napari_connectome.volume import open_volume

        aff_signature_now, aff_complete = output_state(aff_path)
        if not aff_complete:
            raise InputError(aff_path, "the affinities are missing or incomplete: run the affinities stage first")
        affinities = open_volume(aff_path).levels[0]
        pp = chosen_postprocess(entry, meta)[0]
        offsets = aff_signature_now.get("offsets")
        sv_signature = {"affinities": _digest(aff_signature_now)}
        sv_path, b_path = project.root / SUPERVOXELS, project.root / BOUNDARIES
        _, sv_complete = output_state(sv_path)
        rec = Recorder("supervoxels", parameters={"postprocess": pp.to_dict(), "block": supervoxel_block})
        rec.input("affinities", volume_identity(open_volume(aff_path)))

        def run():
            return supervoxels_to_zarr(affinities, offsets, sv_path, b_path, project.root / WORK,
                                       signature=sv_signature, postprocess=pp, block=supervoxel_block,
                                       scheduler=scheduler, workers=workers,
                                       progress=progress, cancel=cancel, region=region,
                                       before_writing=lambda: _refuse_if_edited(project))

        with rec.timed("ascent"):
            try:
                result = run()
            except OutputMismatch:
                for p in (sv_path, b_path, project.root / WORK):
                    _set_aside(p, notify)
                result = run()
        if sv_complete and result.ran == 0 and _bookkept(project, "supervoxels",
                                                          {"supervoxels": sv_path, "boundaries": b_path}):
            report.stages["supervoxels"] = "skipped"
            notify("supervoxels are up to date: skipped")
        else:
            # (also a run killed between finishing the volumes and pointing the project at them: a resume
            # found nothing to compute and left the project without supervoxels)
            report.stages["supervoxels"] = "ran"
            rec.set("outputs", {"n_supervoxels": result.n_supervoxels,
                                "crossing_block_faces": result.n_crossing, "blocks": result.blocks})
            record = rec.finish()
            result.boundaries.finish(record)
            result.supervoxels.finish(record)
            record_in_project(project, "supervoxels", record)
            remove_work(project.root / WORK)
            project.set_input("boundaries", b_path)
            project.set_input("supervoxels", sv_path)
        report.figures["supervoxels"] = result.n_supervoxels

    if "graph" in stages:
        from napari_connectome.graph import agglomerate_project, build_project_graph
        from napari_connectome.graph.project_graph import has_project_graph

        if "supervoxels" not in project.inputs:
            raise InputError(project.root, "has no supervoxels yet: run the supervoxels stage first")
        current = {r: volume_identity(project.open_input(r)) for r in ("supervoxels", "boundaries")
                   if r in project.inputs}
        built_from = ((project.manifest.get("provenance") or {}).get("graph") or {}).get("inputs") or {}
        up_to_date = has_project_graph(project) and all(
            {k: v for k, v in (built_from.get(r) or {}).items() if k != "source"}
            == {k: v for k, v in ident.items() if k != "source"} for r, ident in current.items())
        if threshold is None and meta is not None:
            threshold = chosen_postprocess(entry, meta)[1]
        if not up_to_date:
            build_project_graph(project, progress=progress)
            report.stages["graph"] = "ran"
        else:
            report.stages["graph"] = "skipped"
            notify("the supervoxel graph is up to date: skipped")
        tree = agglomerate_project(project, threshold=threshold, progress=progress)
        t = project.manifest["agglomeration"]["threshold"]
        _, seg = tree.mapping_at(t)
        report.figures["threshold"] = t
        report.figures["segments"] = len(set(seg.tolist()))
    if cancel is not None and (cancel() if callable(cancel) else cancel.is_set()):
        raise CancelledError("segmentation cancelled; run it again to resume")
    return report


def _bookkept(project, component: str, inputs: dict | None = None) -> bool:
    """Whether a finished stage is recorded in the project: its provenance, and each input it sets there."""
    if component not in (project.manifest.get("provenance") or {}):
        return False
    return all(project.input_is(role, path) for role, path in (inputs or {}).items())


def _region_voxels(level, region_nm):
    """``(begin, end)`` voxel indices of ``region_nm`` on ``level`` (grown to whole voxels, clipped), or None."""
    if region_nm is None:
        return None
    from napari_connectome.volume.roi import Roi

    if not isinstance(region_nm, Roi):
        raise InputError("--region", f"{region_nm!r} is not a box in nm")
    inside = region_nm.intersect(level.roi)
    if inside.empty:
        raise InputError("--region", f"{region_nm} nm does not overlap the volume's box {level.roi} nm")
    key = level.voxel_slices(level.snap(inside, mode="grow"))
    spatial = [key[i] for i in level.spatial]
    return tuple(s.start for s in spatial), tuple(s.stop for s in spatial)


def chosen_postprocess(entry, meta: dict | None):
    """``(supervoxel options, agglomeration threshold or None)`` for block-wise supervoxels of this model.

    Chosen on held-out training data for the steepest-ascent supervoxels
    (:func:`~napari_connectome.train.select.select_for_segment`): from the
    weights' metadata (``train --export`` writes it), else from the registry
    entry (models exported before); else the defaults and no threshold.
    """
    from napari_connectome.segment.pipeline import PostProcess

    record = (meta or {}).get("segment") or (getattr(entry, "segment", None) or {})
    pp = PostProcess(**(record.get("postprocess") or {"method": "ascent"}))
    if pp.method != "ascent":
        pp = PostProcess(method="ascent")
    threshold = record.get("threshold")
    return pp, (float(threshold) if threshold is not None else None)
