"""What a candidate error is: where, what is involved, what edit would fix it, its features."""

from __future__ import annotations

import itertools
import operator
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

CandidateKind = Literal["false_split", "false_merge"]


@dataclass
class Candidate:
    """A place where the segmentation is probably wrong, with the edit that would fix it.

    Attributes
    ----------
    id
        Stable identifier within one candidate set (e.g. ``"fs-12-87"``).
    kind
        ``"false_split"`` (two segments that should be one: the edit merges)
        or ``"false_merge"`` (one segment that should be two: the edit splits).
    location_nm
        The decision point (z, y, x) in nm: where the proofreader looks.
    segments
        Segment ids involved (two for a false split, one for a false merge).
    supervoxels
        For a false split: the two supervoxels to merge (one on each side).
        For a false merge: the supervoxels on the source side of the cut.
    sinks
        For a false merge: the supervoxels on the sink side of the cut; empty
        for a false split.
    source
        What produced it (``"graph-contact"``, ``"skeleton-endpoint"``,
        ``"merge-tree"``, ``"skeleton-anomaly"``, ...).
    features
        Numeric features for the ranker (name → value); every candidate of
        one set has the same names.
    impact
        What the edit would fix, for expected-benefit ranking (nm of path
        length, or voxels when no skeleton exists); in :attr:`impact_unit`.
    impact_unit
        ``"voxels"`` (level-0 voxels of the smaller part) or ``"nm"``
        (skeleton path length). :func:`format_impact` writes it for a person.
    """

    id: str
    kind: CandidateKind
    location_nm: tuple[float, float, float]
    segments: tuple[int, ...]
    supervoxels: tuple[int, ...]
    sinks: tuple[int, ...] = ()
    source: str = ""
    features: dict[str, float] = field(default_factory=dict)
    impact: float = 0.0
    impact_unit: Literal["voxels", "nm"] = "voxels"

    @property
    def proposes_merge(self) -> bool:
        return self.kind == "false_split"


def format_impact(value: float, unit: str) -> str:
    """An impact for a person, with its unit: ``"19.4k voxels"``, ``"12.3 µm of skeleton"``.

    A bare "impact 19.4k" leaves the reader guessing whether that is voxels
    or nanometres; the two differ by orders of magnitude.
    """
    value = float(value)
    if unit == "nm":
        if abs(value) >= 1e6:
            return f"{value / 1e6:.3g} mm of skeleton"
        if abs(value) >= 1e3:
            return f"{value / 1e3:.3g} µm of skeleton"
        return f"{value:.3g} nm of skeleton"
    if unit != "voxels":
        raise ValueError(f"unknown impact unit {unit!r}")
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix} voxels"
    return f"{value:.0f} voxels"


def feature_matrix(candidates: list[Candidate], names: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Stack the candidates' features as a float array (missing values → NaN).

    Candidates whose features have the same names in the same order (one finder's kind: the usual case)
    are stacked as one block and its columns placed at once, rather than looked up name by name (at
    ~2,000 new candidates an edit that lookup was ~8 ms of every accepted edit).
    """
    if names is None:
        names = sorted({k for c in candidates for k in c.features})
    column = {n: j for j, n in enumerate(names)}
    x = np.full((len(candidates), len(names)), np.nan, dtype=np.float64)
    features = list(map(_FEATURES, candidates))
    schemas = list(map(tuple, features))
    if schemas and schemas.count(schemas[0]) == len(schemas):
        # One schema (an edit's new candidates usually are one kind): no grouping pass in Python.
        groups: dict[tuple, list[int] | range] = {schemas[0]: range(len(candidates))}
    else:
        groups = {}
        for i, schema in enumerate(schemas):
            groups.setdefault(schema, []).append(i)
    for schema, rows in groups.items():
        if not schema:
            continue
        wanted = [(k, column[n]) for k, n in enumerate(schema) if n in column]
        if not wanted:
            continue
        values = itertools.chain.from_iterable(map(_VALUES, map(features.__getitem__, rows)))
        block = np.fromiter(values, np.float64, count=len(rows) * len(schema)).reshape(len(rows), len(schema))
        src, dst = (list(t) for t in zip(*wanted, strict=True))
        x[np.asarray(rows)[:, None], np.asarray(dst)[None, :]] = block[:, src]
    return x, names


def proposes_merges(candidates: list[Candidate]) -> np.ndarray:
    """Whether each candidate proposes a merge (a false split), as a bool array.

    By C-level passes (``map``, ``attrgetter``): an edit brings ~2,700 new candidates, and a Python
    pass over them costs about what the numbers they feed cost.
    """
    return np.fromiter(map(operator.eq, map(_KIND, candidates), itertools.repeat("false_split")), bool,
                       len(candidates))


def impacts(candidates: list[Candidate]) -> np.ndarray:
    """Each candidate's impact as a float array (a C-level pass, as :func:`proposes_merges`)."""
    return np.fromiter(map(_IMPACT, candidates), np.float64, len(candidates))


_FEATURES, _KIND, _IMPACT = (operator.attrgetter(name) for name in ("features", "kind", "impact"))
_VALUES = operator.methodcaller("values")
