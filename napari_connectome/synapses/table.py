"""A table of synaptic connections, and its CSV and CREMI HDF5 forms.

One row per pre→post connection: a polyadic synapse (one presynaptic site,
several postsynaptic partners) is several rows that share ``synapse_id`` and
the pre site. Positions are world points in nm, ``(z, y, x)``; neuron ids are
the segments the sites lie in (0: none, or background).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_connectome.arrays import distinct
from napari_connectome.atomic import atomic_write
from napari_connectome.errors import InputError, from_os_error

CSV_COLUMNS = (
    "synapse_id",
    "pre_z_nm", "pre_y_nm", "pre_x_nm",
    "post_z_nm", "post_y_nm", "post_x_nm",
    "pre_id", "post_id",
    "score",
)
_POSITION_COLUMNS = CSV_COLUMNS[1:7]
_ID_COLUMNS = ("pre_id", "post_id")
_UINT64_MAX = 2**64 - 1
_INT64 = (-(2**63), 2**63 - 1)

PRE_TYPE = "presynaptic_site"
POST_TYPE = "postsynaptic_site"
CREMI_GROUP = "annotations"
CREMI_PARTNERS = "annotations/presynaptic_site/partners"

Labeller = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True, eq=False)
class SynapseTable:
    """Synaptic connections, one row per pre→post pair; columns are NumPy arrays.

    Attributes
    ----------
    synapse_id
        ``(n,)`` int64: rows of one (polyadic) synapse share it.
    pre, post
        ``(n, 3)`` float64: the pre and post site, ``(z, y, x)`` in nm.
    pre_id, post_id
        ``(n,)`` uint64: the neuron at each site; 0 is none (background).
    score
        ``(n,)`` float32: the detector's confidence; 1.0 for ground truth.
    """

    synapse_id: np.ndarray
    pre: np.ndarray
    post: np.ndarray
    pre_id: np.ndarray
    post_id: np.ndarray
    score: np.ndarray

    def __post_init__(self) -> None:
        # Columns are copied into their dtypes once, here, so that every reader
        # and writer can rely on them (and a caller's array is never shared).
        cols = {
            "synapse_id": np.array(self.synapse_id, dtype=np.int64).reshape(-1),
            "pre": np.array(self.pre, dtype=np.float64).reshape(-1, 3),
            "post": np.array(self.post, dtype=np.float64).reshape(-1, 3),
            "pre_id": np.array(self.pre_id, dtype=np.uint64).reshape(-1),
            "post_id": np.array(self.post_id, dtype=np.uint64).reshape(-1),
            "score": np.array(self.score, dtype=np.float32).reshape(-1),
        }
        n = len(cols["synapse_id"])
        for name, col in cols.items():
            if len(col) != n:
                raise ValueError(f"SynapseTable: column {name} has {len(col)} rows, synapse_id has {n}")
            col.setflags(write=False)
            object.__setattr__(self, name, col)

    def __len__(self) -> int:
        return len(self.synapse_id)

    @classmethod
    def empty(cls) -> SynapseTable:
        """A table with no rows."""
        return cls(
            synapse_id=np.zeros(0, np.int64),
            pre=np.zeros((0, 3)),
            post=np.zeros((0, 3)),
            pre_id=np.zeros(0, np.uint64),
            post_id=np.zeros(0, np.uint64),
            score=np.zeros(0, np.float32),
        )

    def connections(self) -> dict[tuple[int, int], int]:
        """How many rows join each neuron pair: ``{(pre_id, post_id): count}``."""
        if not len(self):
            return {}
        pairs, counts = np.unique(np.stack([self.pre_id, self.post_id], axis=1), axis=0, return_counts=True)
        return {(int(a), int(b)): int(c) for (a, b), c in zip(pairs, counts, strict=True)}

    def subset(self, which) -> SynapseTable:
        """The rows selected by ``which`` (a boolean mask or indices), in that order."""
        return SynapseTable(self.synapse_id[which], self.pre[which], self.post[which], self.pre_id[which],
                            self.post_id[which], self.score[which])

    def with_ids(self, pre_id, post_id) -> SynapseTable:
        """The same connections with other neuron ids (e.g. read from a label volume)."""
        return SynapseTable(self.synapse_id, self.pre, self.post, pre_id, post_id, self.score)


def concat(tables: Iterable[SynapseTable]) -> SynapseTable:
    """The rows of ``tables`` one after another (ids are kept as they are)."""
    tables = list(tables)
    if not tables:
        return SynapseTable.empty()
    return SynapseTable(
        synapse_id=np.concatenate([t.synapse_id for t in tables]),
        pre=np.concatenate([t.pre for t in tables]),
        post=np.concatenate([t.post for t in tables]),
        pre_id=np.concatenate([t.pre_id for t in tables]),
        post_id=np.concatenate([t.post_id for t in tables]),
        score=np.concatenate([t.score for t in tables]),
    )


# ---------------------------------------------------------------------- CSV
def write_csv(table: SynapseTable, path: str | os.PathLike) -> Path:
    """Write ``table`` as CSV (header :data:`CSV_COLUMNS`), atomically; returns the path.

    Positions are written as the shortest text that reads back to the same
    float64, scores as the shortest that reads back to the same float32, so
    a read and a second write give the same bytes.
    """
    path = Path(path)
    with atomic_write(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(CSV_COLUMNS)
        for i in range(len(table)):
            out.writerow(
                [str(int(table.synapse_id[i]))]
                + [repr(float(v)) for v in table.pre[i]]
                + [repr(float(v)) for v in table.post[i]]
                + [str(int(table.pre_id[i])), str(int(table.post_id[i])), str(table.score[i])]
            )
    return path


def _parse_int(text: str, *, column: str, line: int, source, lo: int, hi: int) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise InputError(source, f"line {line}: {column} {text!r} is not a whole number") from None
    if value < lo:
        if column in _ID_COLUMNS:
            raise InputError(source, f"line {line}: {column} {value} is negative (neuron ids are ≥ 0; 0 = none)")
        raise InputError(source, f"line {line}: {column} {value} is below {lo}")
    if value > hi:
        raise InputError(source, f"line {line}: {column} {value} is above {hi}")
    return value


def _parse_float(text: str, *, column: str, line: int, source) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise InputError(source, f"line {line}: {column} {text!r} is not a number") from None
    if math.isnan(value):
        raise InputError(source, f"line {line}: {column} is NaN; every position and score must be a number")
    if math.isinf(value):
        raise InputError(source, f"line {line}: {column} is infinite; every position and score must be finite")
    return value


def read_csv(path: str | os.PathLike) -> SynapseTable:
    """Read a table written by :func:`write_csv` (or by hand: columns in any order, ``score`` optional → 1.0).

    Raises
    ------
    InputError
        Naming the file and the problem: missing file, missing column, a
        value that is not a number (with its line), NaN positions, negative
        neuron ids.
    """
    path = Path(path)
    try:
        with open(path, encoding="utf-8", newline="") as f:
            return _read_csv_rows(csv.reader(f), path)
    except OSError as exc:
        raise from_os_error(exc, path) from None
    except UnicodeDecodeError:
        raise InputError(path, "is not a text (UTF-8) CSV file") from None
    except csv.Error as exc:
        raise InputError(path, f"is not a readable CSV file ({exc})") from None


def _read_csv_rows(reader, path: Path) -> SynapseTable:
    header = next(reader, None)
    if header is None:
        raise InputError(path, f"is empty; a synapse CSV starts with the header {','.join(CSV_COLUMNS)}")
    header = [h.strip() for h in header]
    missing = [c for c in CSV_COLUMNS if c != "score" and c not in header]
    if missing:
        raise InputError(path, f"has no column {', '.join(missing)} (the header needs {','.join(CSV_COLUMNS)})")
    where = {c: header.index(c) for c in CSV_COLUMNS if c in header}
    ids, pos, neurons, scores = [], [], [], []
    for row in reader:
        line = reader.line_num
        if not row or all(not v.strip() for v in row):
            continue  # a blank line (often the last) is not a row
        if len(row) != len(header):
            raise InputError(path, f"line {line}: {len(row)} values for {len(header)} columns")
        ids.append(_parse_int(row[where["synapse_id"]], column="synapse_id", line=line, source=path,
                              lo=_INT64[0], hi=_INT64[1]))
        pos.append([_parse_float(row[where[c]], column=c, line=line, source=path) for c in _POSITION_COLUMNS])
        neurons.append([_parse_int(row[where[c]], column=c, line=line, source=path, lo=0, hi=_UINT64_MAX)
                        for c in _ID_COLUMNS])
        scores.append(_parse_float(row[where["score"]], column="score", line=line, source=path)
                      if "score" in where else 1.0)
    if not ids:
        return SynapseTable.empty()
    pos_a = np.asarray(pos, dtype=np.float64)
    neurons_a = np.asarray(neurons, dtype=np.uint64)
    return SynapseTable(
        synapse_id=np.asarray(ids, dtype=np.int64),
        pre=pos_a[:, :3],
        post=pos_a[:, 3:],
        pre_id=neurons_a[:, 0],
        post_id=neurons_a[:, 1],
        score=np.asarray(scores, dtype=np.float32),
    )


# -------------------------------------------------------------------- CREMI
def read_cremi(path: str | os.PathLike, *, labels: Labeller | None = None) -> SynapseTable:
    """Read the synaptic partners of a CREMI HDF5 file (the cremi_python layout).

    Parameters
    ----------
    path
        The ``.h5`` / ``.hdf`` file: ``annotations/{ids, locations, types}``
        and ``annotations/presynaptic_site/partners``. Locations are nm,
        ``(z, y, x)``, relative to the ``annotations`` group's ``offset``
        attribute where it has one.
    labels
        Maps ``(n, 3)`` points in nm to neuron ids; None: every id is 0 (a
        CREMI file stores no neuron ids).

    Returns
    -------
    SynapseTable
        One row per partner pair, in the file's order; ``synapse_id`` is the
        pre site's annotation id; score 1.0.
    """
    import h5py

    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except FileNotFoundError as exc:
        raise from_os_error(exc, path) from None
    except OSError:
        if path.is_dir() or not path.exists():
            raise from_os_error(FileNotFoundError(2, "no such file", str(path)), path) from None
        raise InputError(path, "is not an HDF5 file") from None
    with f:
        if CREMI_GROUP not in f or not isinstance(f[CREMI_GROUP], h5py.Group):
            raise InputError(path, f"has no group '{CREMI_GROUP}' (not a CREMI synapse file)")
        group = f[CREMI_GROUP]
        for name in ("ids", "locations", "types"):
            if name not in group:
                raise InputError(path, f"has no dataset '{CREMI_GROUP}/{name}'")
        if CREMI_PARTNERS not in f:
            raise InputError(path, f"has no dataset '{CREMI_PARTNERS}' (no synaptic partners)")
        ann_ids = np.asarray(group["ids"][()]).reshape(-1)
        try:
            locations = np.asarray(group["locations"][()], dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(path, f"'{CREMI_GROUP}/locations' is not numbers") from None
        types = [t.decode() if isinstance(t, bytes) else str(t) for t in np.asarray(group["types"][()]).reshape(-1)]
        partners = np.asarray(f[CREMI_PARTNERS][()])
        offset = np.asarray(group.attrs.get("offset", (0.0, 0.0, 0.0)), dtype=np.float64).reshape(-1)
    n = len(ann_ids)
    if locations.ndim != 2 or locations.shape != (n, 3) or len(types) != n:
        raise InputError(path, f"'{CREMI_GROUP}' holds {n} ids, locations of shape {locations.shape} and "
                               f"{len(types)} types; they must agree, with 3 coordinates per location")
    if offset.shape != (3,) or not np.isfinite(offset).all():
        raise InputError(path, f"'{CREMI_GROUP}' offset {offset.tolist()} is not 3 finite numbers (z, y, x nm)")
    if not np.isfinite(locations).all():
        raise InputError(path, f"'{CREMI_GROUP}/locations' holds NaN or infinite values")
    if partners.size == 0:
        partners = partners.reshape(0, 2)
    if partners.ndim != 2 or partners.shape[1] != 2:
        raise InputError(path, f"'{CREMI_PARTNERS}' has shape {partners.shape}; it must be (k, 2) pre→post ids")
    if ann_ids.dtype.kind not in "iu" or partners.dtype.kind not in "iu":
        raise InputError(path, f"'{CREMI_GROUP}/ids' and '{CREMI_PARTNERS}' must hold whole numbers")
    if (ann_ids.dtype.kind == "i" and (ann_ids < 0).any()) or (partners.dtype.kind == "i" and (partners < 0).any()):
        raise InputError(path, "annotation ids must be ≥ 0")
    ann_ids = ann_ids.astype(np.uint64)
    partners = partners.astype(np.uint64)
    if len(distinct(ann_ids)) != n:
        raise InputError(path, f"'{CREMI_GROUP}/ids' repeats an annotation id")
    row_of = {int(a): i for i, a in enumerate(ann_ids)}
    pre_rows, post_rows = [], []
    for pre_ann, post_ann in partners.tolist():
        for ann, want in ((pre_ann, PRE_TYPE), (post_ann, POST_TYPE)):
            if ann not in row_of:
                raise InputError(path, f"partner annotation {ann} is not in '{CREMI_GROUP}/ids'")
            if types[row_of[ann]] != want:
                raise InputError(path, f"partner annotation {ann} is a {types[row_of[ann]]!r}, expected {want!r}")
        pre_rows.append(row_of[pre_ann])
        post_rows.append(row_of[post_ann])
    world = locations + offset
    pre = world[pre_rows].reshape(-1, 3)
    post = world[post_rows].reshape(-1, 3)
    k = len(pre_rows)
    if labels is not None and k:
        pre_id, post_id = _label(labels, pre, source=path), _label(labels, post, source=path)
    else:
        pre_id = post_id = np.zeros(k, np.uint64)
    if int(ann_ids.max(initial=0)) > _INT64[1]:
        raise InputError(path, "an annotation id is too large for a synapse id (int64)")
    return SynapseTable(
        synapse_id=ann_ids[pre_rows].astype(np.int64),
        pre=pre, post=post, pre_id=pre_id, post_id=post_id,
        score=np.ones(k, np.float32),
    )


def _label(labels: Labeller, points: np.ndarray, *, source) -> np.ndarray:
    ids = np.asarray(labels(points)).reshape(-1)
    if len(ids) != len(points):
        raise InputError(source, f"the labels gave {len(ids)} ids for {len(points)} points")
    if ids.dtype.kind == "i" and (ids < 0).any():
        raise InputError(source, "the labels gave negative neuron ids")
    return ids.astype(np.uint64)


def write_cremi(table: SynapseTable, path: str | os.PathLike) -> Path:
    """Write ``table``'s sites and partners as a CREMI HDF5 file, atomically; returns the path.

    Each synapse's pre site becomes one ``presynaptic_site`` annotation whose
    id is the ``synapse_id``; each row's post site a ``postsynaptic_site``
    numbered after the largest synapse id. No offset is written (locations
    are absolute). Neuron ids and scores have no place in the layout and
    are not written: :func:`read_cremi` gives them back through ``labels``
    and as 1.0.

    Raises
    ------
    InputError
        A negative ``synapse_id``, or one synapse with two pre sites.
    """
    import h5py

    path = Path(path)
    if len(table) and table.synapse_id.min() < 0:
        raise InputError(path, "CREMI annotation ids are ≥ 0; the table has a negative synapse_id")
    pre_ids, first = np.unique(table.synapse_id, return_index=True)
    pre_sites = table.pre[first]
    row_site = np.searchsorted(pre_ids, table.synapse_id)
    bad = np.flatnonzero((table.pre != pre_sites[row_site]).any(axis=1))
    if bad.size:
        sid = int(table.synapse_id[bad[0]])
        raise InputError(path, f"synapse {sid} has two different pre sites; a CREMI pre annotation has one")
    base = int(pre_ids.max()) + 1 if len(pre_ids) else 0
    post_ids = np.arange(base, base + len(table), dtype=np.uint64)
    ids = np.concatenate([pre_ids.astype(np.uint64), post_ids])
    locations = np.concatenate([pre_sites, table.post]).reshape(-1, 3)
    types = [PRE_TYPE] * len(pre_ids) + [POST_TYPE] * len(table)
    partners = np.stack([table.synapse_id.astype(np.uint64), post_ids], axis=1).reshape(-1, 2)
    with atomic_write(path, tmp_name=f".{path.name}.tmp.h5") as tmp, h5py.File(tmp, "w", track_order=False) as f:
        group = f.create_group(CREMI_GROUP)
        group.create_dataset("ids", data=ids, dtype=np.uint64)
        group.create_dataset("locations", data=locations, dtype=np.float64)
        group.create_dataset("types", data=np.array(types, dtype=object), dtype=h5py.string_dtype())
        f.create_dataset(CREMI_PARTNERS, data=partners, dtype=np.uint64)
    return path
