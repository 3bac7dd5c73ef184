"""``napari-connectome synapses DIR``: synapse network → sites → partners through a segmentation → the store.

Two stages, each resumable or skipped when up to date:

1. ``prediction``: the synapse network on the raw volume, block by block with
   context from the real neighbours (the segmentation's machinery:
   :func:`~napari_connectome.inference.blockwise.predict_to_zarr`), into
   ``segmentation/synapses.ome.zarr`` (4 float32 channels: mask, vector z y x).
2. ``detection``: sites block by block (:func:`~napari_connectome.synapses.detect.find_sites_blockwise`),
   neurons read from the segmentation given (the project's current one, so
   edits made so far count; or any label volume), de-duplicated, and appended
   to the project's synapse store as one *detected* batch, which supersedes
   the previous detection. The table is also written as CSV.

The segmentation is passed in, not opened here: the engine's synapse layer
sits below proofreading, and the command line hands it the proofreader's
live labels or the volume a person named.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from napari_connectome.arrays import distinct
from napari_connectome.errors import InputError
from napari_connectome.inference.models import load_model
from napari_connectome.progress import NullProgress, Progress
from napari_connectome.pyramid.resumable import OutputMismatch, output_state
from napari_connectome.synapses.detect import VECTOR_UNIT_NM, connect_sites, find_sites_blockwise
from napari_connectome.synapses.labels import labels_at, points_outside
from napari_connectome.synapses.orient import reversed_rows
from napari_connectome.synapses.store import SynapseStore
from napari_connectome.synapses.table import SynapseTable, write_csv

DEFAULT_MODEL = "synapses-synthetic-10nm"
PREDICTION = "segmentation/synapses.ome.zarr"


@dataclass
class SynapseReport:
    """What ``synapses`` did.

    Attributes
    ----------
    prediction
        ``"ran"``, ``"resumed"`` or ``"skipped"``.
    batch
        The store batch the detections went into.
    figures
        Counts a person wants to see (sites, connections, synapses, left out and why).
    """

    prediction: str = ""
    batch: int = 0
    figures: dict[str, int | float | str] = field(default_factory=dict)
    table: SynapseTable | None = None


def detect_in_project(project, segmentation, *, model: str = DEFAULT_MODEL, device: str = "auto", block=None,
                      threshold: float | None = None, min_volume_nm3: float | str = "model", dedup_nm: float = 250.0,
                      pre_reach_nm: float | str | None = "model", orient_radius_nm: float | str | None = "model",
                      halo_nm: float = 400.0, csv_path: str | Path | None = None, overwrite: bool = False,
                      scheduler="threads",
                      workers: int | None = None, threads: int | None = None, progress: Progress | None = None,
                      cancel=None, notify: Callable[[str], None] = lambda message: None) -> SynapseReport:
    """Detect the synapses of ``project`` and append them to its store (see the module notes).

    Parameters
    ----------
    segmentation
        A :class:`~napari_connectome.volume.MultiscaleVolume` of neuron ids on the raw volume's grid
        (the project's current segmentation, or ground truth).
    model
        Registry name or weights file of a synapse network.
    threshold
        Mask probability of a site; None: the model's, chosen on held-out training data (its registry
        entry's ``detect``), else 0.5.
    pre_reach_nm
        Read the pre neuron along the post → pre ray this far beyond the predicted pre point
        (:func:`~napari_connectome.synapses.detect.cast_pre`); ``"model"``: the model's, chosen with
        its threshold on held-out data (none when it has no such choice); None: at the predicted point.
    min_volume_nm3
        Smallest mask piece kept; ``"model"``: the model's choice (else 10⁵ nm³).
    orient_radius_nm
        Turn a row round when its pre end is brighter than its post end, comparing the darkest voxel of
        each end's neuron within this radius (:mod:`~napari_connectome.synapses.orient`); ``"model"``:
        the model's choice (none when it has none); None: never.
    dedup_nm, halo_nm
        See :func:`~napari_connectome.synapses.detect.find_sites_blockwise` and
        :func:`~napari_connectome.synapses.detect.connect_sites`.
    csv_path
        Also write the detected table here (default: the project's ``exports/synapses.csv``, replaced
        by each run); checked before any work, so a path on the project's own files is refused at once.
    overwrite
        Replace an existing ``csv_path``.
    Other parameters as :func:`~napari_connectome.segment.project_run.segment_project`.
    """
    from napari_connectome.inference.blockwise import check_input, predict_to_zarr
    from napari_connectome.inference.device import choose_device
    from napari_connectome.outputs import guard_output
    from napari_connectome.provenance import Recorder, record_in_project, volume_identity
    from napari_connectome.volume import open_volume

    progress = progress or NullProgress()
    report = SynapseReport()
    default_csv = csv_path is None
    csv = project.component_path("exports") / "synapses.csv" if default_csv else Path(csv_path)
    csv = guard_output(csv, projects=[project.root], overwrite=overwrite or default_csv, make_parents=default_csv,
                       what="synapse table")
    if "raw" not in project.inputs:
        raise InputError(project.root, "has no raw volume to find synapses in")
    raw = project.open_input("raw")
    level = raw.levels[0]
    seg_level = segmentation.levels[0]
    if tuple(seg_level.shape) != tuple(level.shape):
        raise InputError(segmentation.source, f"the segmentation has shape {tuple(seg_level.shape)}, "
                                              f"the raw volume {tuple(level.shape)}: they must share one grid")
    for what, a, b in (("voxel size", seg_level.spatial_voxel_size, level.spatial_voxel_size),
                       ("offset", seg_level.spatial_offset, level.spatial_offset)):
        if not np.allclose(a, b):
            raise InputError(segmentation.source, f"the segmentation's {what} {tuple(a)} nm differs from the raw "
                                                  f"volume's {tuple(b)} nm: they must share one grid")
    entry, net, _meta = load_model(model, task="synapses")
    if threshold is None:
        threshold = float((entry.detect or {}).get("threshold", 0.5))
        notify(f"mask threshold {threshold:g} ({'chosen on held-out data' if entry.detect else 'the default'})")
    if min_volume_nm3 == "model":
        min_volume_nm3 = float((entry.detect or {}).get("min_volume_nm3", 1e5))
    if pre_reach_nm == "model":
        pre_reach_nm = (entry.detect or {}).get("pre_reach_nm")
    if pre_reach_nm is not None:
        pre_reach_nm = float(pre_reach_nm)
        if not np.isfinite(pre_reach_nm) or pre_reach_nm < 0:
            raise InputError("pre reach", f"must be a distance ≥ 0 nm, got {pre_reach_nm}")
    if orient_radius_nm == "model":
        orient_radius_nm = (entry.detect or {}).get("orient_radius_nm")
    if orient_radius_nm is not None:
        orient_radius_nm = float(orient_radius_nm)
        if not np.isfinite(orient_radius_nm) or orient_radius_nm <= 0:
            raise InputError("orientation radius", f"must be a distance > 0 nm, got {orient_radius_nm}")
    check_input(level, net, model_voxel_size=entry.voxel_size_nm, name=str(raw.source))
    out = project.root / PREDICTION
    dev = choose_device(device)
    notify(f"network on {dev.name}: {dev.reason}")
    raw_identity = volume_identity(raw)
    signature = {"model": entry.name, "sha256": entry.sha256, "device": dev.kind,
                 "raw": {k: v for k, v in raw_identity.items() if k != "source"}}
    _, complete = output_state(out)
    rec = Recorder("synapse prediction", parameters={"model": model, "block": block})
    rec.input("raw", raw_identity)
    rec.set("model", {"name": entry.name, "sha256": entry.sha256, "card": entry.card})
    rec.set("device", dev.as_record())

    def predict():
        return predict_to_zarr(level, net, out, device=dev, signature=signature, block=block, dtype="float32",
                               scheduler=scheduler, workers=workers, threads=threads, progress=progress,
                               cancel=cancel)

    with rec.timed("predict"):
        try:
            result = predict()
        except OutputMismatch:
            # Another model or raw volume made it: kept aside (never deleted), then predicted anew.
            import datetime as _dt

            aside = out.with_name(f"{out.name}.old-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}")
            out.rename(aside)
            notify(f"{out} was made by another model or raw volume: moved aside to {aside.name}")
            result = predict()
    if result.ran == 0 and complete:
        report.prediction = "skipped"
        notify("the synapse prediction is up to date: skipped")
    else:
        report.prediction = "resumed" if result.skipped else "ran"
        rec.set("run", {"blocks_ran": result.ran, "resumed_from": result.skipped, "blocks": result.blocks})
        record = rec.finish()
        result.output.finish(record)
        record_in_project(project, "synapse_prediction", record)
        project.save()

    prediction = open_volume(out).levels[0]
    # Sites in one thread: the segmentation may be a proofreader's live view, read by one thread at a time.
    vs, off = tuple(level.spatial_voxel_size), tuple(level.spatial_offset)
    post, pre, score = find_sites_blockwise(prediction.array, voxel_size=vs, offset=off, segmentation=seg_level.array,
                                            block_voxels=result.block_voxels, halo_nm=halo_nm, threshold=threshold,
                                            min_volume_nm3=min_volume_nm3, scheduler="synchronous",
                                            progress=progress, cancel=cancel, source=str(out))
    orient = None
    if orient_radius_nm is not None:
        def read(box):
            return level.read(level.roi_of(box)), seg_level.read(seg_level.roi_of(box))

        def orient(pre_pts, post_pts, pre_ids, post_ids):
            return reversed_rows(pre_pts, post_pts, pre_ids, post_ids, read=read, shape=level.shape, voxel_size=vs,
                                 offset=off, radius_nm=orient_radius_nm)

    found = connect_sites(post, pre, score, neurons=lambda p: labels_at(segmentation, p),
                          inside=lambda p: ~points_outside(segmentation, p), dedup_nm=dedup_nm,
                          pre_reach_nm=pre_reach_nm, orient=orient, source=str(out))
    table = found.table
    details = {"model": entry.name, "sha256": entry.sha256, "threshold": threshold, "min_volume_nm3": min_volume_nm3,
               "dedup_nm": dedup_nm, "halo_nm": halo_nm, "vector_unit_nm": VECTOR_UNIT_NM,
               "pre_reach_nm": pre_reach_nm, "orient_radius_nm": orient_radius_nm,
               "segmentation": volume_identity(segmentation)}
    with SynapseStore(project.component_path("synapses")) as store:
        report.batch = store.append(table, origin="detected", details=details)
    csv.parent.mkdir(parents=True, exist_ok=True)
    write_csv(table, csv)
    report.table = table
    report.figures.update({"sites": int(len(score)), "connections": len(table),
                           "synapses": int(distinct(table.synapse_id).size) if len(table) else 0,
                           "on_background": found.on_background, "outside": found.outside,
                           "self_connections": found.self_connections, "duplicates": found.duplicates,
                           "reversed": found.reversed,
                           "csv": str(csv)})
    return report


def import_into_project(project, path: str | Path, *, labels=None) -> tuple[int, int]:
    """Append the synapses of a CSV or CREMI file to the project's store as one *imported* batch.

    Points outside the raw volume are refused (how many, nothing written);
    neuron ids are not trusted from the file: they are read from the project
    whenever the synapses are used. Returns ``(batch, rows)``.
    """
    from napari_connectome.synapses.labels import points_outside
    from napari_connectome.synapses.table import read_cremi, read_csv

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf", ".hdf5"):
        table = read_cremi(path, labels=labels)
    elif suffix == ".csv":
        table = read_csv(path)
    else:
        raise InputError(path, "is neither a synapse CSV (.csv) nor a CREMI file (.h5, .hdf, .hdf5)")
    if not len(table):
        raise InputError(path, "holds no synapses: nothing to import")
    raw = project.open_input("raw")
    outside = points_outside(raw, table.pre) | points_outside(raw, table.post)
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        raise InputError(path, f"{int(outside.sum())} of {len(table)} synapses have a point outside the project's "
                               f"volume (the first: row {first + 1}, pre {tuple(np.round(table.pre[first], 1))} nm, "
                               f"post {tuple(np.round(table.post[first], 1))} nm); nothing was imported")
    with SynapseStore(project.component_path("synapses")) as store:
        batch = store.append(table, origin="imported", details={"file": str(path.resolve())})
    return batch, len(table)


def current_table(project, neurons: Callable[[np.ndarray], np.ndarray]) -> SynapseTable:
    """The store's synapses in force, with neuron ids read now through ``neurons`` (points → ids)."""
    with SynapseStore(project.component_path("synapses"), read_only=True) as store:
        table = store.current()
    if not len(table):
        return table
    return table.with_ids(neurons(table.pre), neurons(table.post))
