"""Synapses and the connectome out of the suite: Neuroglancer precomputed annotations, Parquet, connectome CSV.

(The synapse CSV and CREMI HDF5 are :mod:`napari_connectome.synapses.table`'s.)

Neuroglancer: one ``LINE`` annotation per pre→post connection, from the pre
point to the post point, in a coordinate space of 1 nm per unit (z, y, x), with
the ``score`` as a float32 property and two relationships, ``pre_neuron`` and
``post_neuron``, so Neuroglancer lists a neuron's synapses when it is selected.
The spatial index is a single cell (Neuroglancer's own writer does the same
for collections of this size). The folder is built beside its destination and
renamed into place: a reader never sees half of it.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import struct
import uuid
from pathlib import Path

import numpy as np

from napari_connectome.arrays import distinct
from napari_connectome.atomic import atomic_write
from napari_connectome.errors import InputError
from napari_connectome.synapses.table import SynapseTable

#: One annotation: the line's two points (z, y, x nm, float32), then the score.
_RECORD = np.dtype([("geometry", "<f4", 6), ("score", "<f4")])
RELATIONSHIPS = ("pre_neuron", "post_neuron")


def _encode(table: SynapseTable) -> np.ndarray:
    rec = np.zeros(len(table), dtype=_RECORD)
    rec["geometry"] = np.concatenate([table.pre, table.post], axis=1).astype(np.float32)
    rec["score"] = table.score
    return rec


def _many(rec: np.ndarray, ids: np.ndarray) -> bytes:
    """Neuroglancer's multiple-annotation encoding: count, the records, then their ids."""
    return struct.pack("<Q", len(rec)) + rec.tobytes() + np.asarray(ids, dtype="<u8").tobytes()


def _replace_folder(build: Path, target: Path, overwrite: bool) -> None:
    if target.exists():
        if not overwrite:
            raise InputError(target, "exists already; give --overwrite to replace it (nothing was written)")
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
        os.replace(build, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(build, target)


def write_neuroglancer(table: SynapseTable, folder: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``table`` as a Neuroglancer precomputed annotation collection (see the module notes)."""
    target = Path(folder)
    if target.exists() and not overwrite:
        raise InputError(target, "exists already; give --overwrite to replace it (nothing was written)")
    build = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    ids = np.arange(len(table), dtype=np.uint64)  # annotation id = row number
    rec = _encode(table)
    points = np.concatenate([table.pre, table.post]) if len(table) else np.zeros((1, 3))
    lower = np.floor(points.min(axis=0))
    upper = np.ceil(points.max(axis=0)) + 1.0
    info = {
        "@type": "neuroglancer_annotations_v1",
        "dimensions": {axis: [1e-9, "m"] for axis in ("z", "y", "x")},
        "lower_bound": lower.tolist(), "upper_bound": upper.tolist(),
        "annotation_type": "LINE",
        "properties": [{"id": "score", "type": "float32", "description": "detector score (1 = ground truth)"}],
        "relationships": [{"id": r, "key": f"rel_{r}"} for r in RELATIONSHIPS],
        "by_id": {"key": "by_id"},
        "spatial": [{"key": "spatial0", "grid_shape": [1, 1, 1], "chunk_size": (upper - lower).tolist(),
                     "limit": max(len(table), 1)}],
    }
    try:
        for sub in ("by_id", "spatial0", *(f"rel_{r}" for r in RELATIONSHIPS)):
            (build / sub).mkdir(parents=True)
        (build / "info").write_text(json.dumps(info, indent=1), encoding="utf-8")
        (build / "spatial0" / "0_0_0").write_bytes(_many(rec, ids))
        for k in range(len(table)):
            # One annotation: its record, then per relationship a count and the ids.
            blob = rec[k:k + 1].tobytes() + b"".join(struct.pack("<IQ", 1, int(n)) for n in
                                                     (table.pre_id[k], table.post_id[k]))
            (build / "by_id" / str(int(ids[k]))).write_bytes(blob)
        for name, column in zip(RELATIONSHIPS, (table.pre_id, table.post_id), strict=True):
            for neuron in distinct(column):
                rows = np.flatnonzero(column == neuron)
                (build / f"rel_{name}" / str(int(neuron))).write_bytes(_many(rec[rows], ids[rows]))
        _replace_folder(build, target, overwrite)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    return target


def read_neuroglancer(folder: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(pre, post, score, ids)`` of a collection :func:`write_neuroglancer` wrote (from its spatial index)."""
    folder = Path(folder)
    blob = (folder / "spatial0" / "0_0_0").read_bytes()
    (n,) = struct.unpack_from("<Q", blob)
    rec = np.frombuffer(blob, dtype=_RECORD, count=n, offset=8)
    ids = np.frombuffer(blob, dtype="<u8", count=n, offset=8 + n * _RECORD.itemsize)
    return rec["geometry"][:, :3].astype(np.float64), rec["geometry"][:, 3:].astype(np.float64), rec["score"], ids


def write_parquet(table: SynapseTable, path: str | os.PathLike) -> Path:
    """Write ``table`` as Parquet (the CSV's columns), atomically; needs pyarrow."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise InputError(path, "Parquet needs pyarrow: pip install 'napari-connectome[parquet]'") from None
    columns = {"synapse_id": table.synapse_id}
    for name, points in (("pre", table.pre), ("post", table.post)):
        for a, axis in enumerate("zyx"):
            columns[f"{name}_{axis}_nm"] = points[:, a]
    columns.update({"pre_id": table.pre_id, "post_id": table.post_id, "score": table.score})
    path = Path(path)
    with atomic_write(path, tmp_name=f".{path.name}.tmp.parquet") as tmp:
        pq.write_table(pa.table({k: np.asarray(v) for k, v in columns.items()}), tmp)
    return path


def write_connectome_csv(pre, post, count, score, path: str | os.PathLike) -> Path:
    """The connectome as CSV: ``pre_id, post_id, count, score_sum``, one row per ordered neuron pair."""
    path = Path(path)
    with atomic_write(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["pre_id", "post_id", "count", "score_sum"])
        for a, b, c, s in zip(pre, post, count, score, strict=True):
            out.writerow([int(a), int(b), int(c), repr(float(s))])
    return path
