"""A candidate list kept in the project, so that the next session on an unchanged state reads it instead of searching.

A full candidate search reads every contact and every segment's merge
history: ~1.5 s at 250³ (15 k candidates), ~190 s at 1024³ (1.36 M) on this
machine, and every task session and simulation paid it again on opening.
:class:`~napari_connectome.candidates.CandidateCache` now writes the list it
found (and, when a session closes, the list it has kept up to date through
the session's edits) to ``graph/candidates.npz``, column by column, and reads
it back when the stamp matches.

The stamp is a digest of everything a search reads: the graph file's sha256
and its supervoxels, the segmentation state (live supervoxels, their
segments, the active graph edges, links and contacts outside the graph), the
finder's options and the finder's own code. A kept list is used only when the
stamp the open session computes now equals the stored one, so it is the list
a search would make (tested); anything else (stale, damaged, another format)
is searched again and written back. Not kept: searches with skeletons (always
full; the skeleton files are not in the stamp), states with supervoxels minted
by a split inside one (their voxels live in patches), and anything from a
read-only session.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np

from napari_connectome.candidates.model import Candidate

#: The kept list's file, in the project's graph folder (beside the contact scan).
CANDIDATES_FILE = "candidates.npz"
FORMAT = 1
_KINDS = ("false_split", "false_merge")
_UNITS = ("voxels", "nm")
_FINDER_CODE = ("find.py", "model.py", "trees.py")


def kept_path(proofreader) -> Path:
    return proofreader.project.component_path("graph") / CANDIDATES_FILE


def _finder_digest() -> str:
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for name in _FINDER_CODE:
        h.update((here / name).read_bytes())
    return h.hexdigest()


def state_stamp(proofreader, options: dict) -> str | None:
    """The digest a kept list must carry to be the list a search of ``proofreader`` would make now.

    None where nothing is kept (see the module notes).
    """
    project = getattr(proofreader, "project", None)
    graph = project.manifest.get("graph") if project is not None else None
    if not isinstance(graph, dict) or not graph.get("sha256") or options.get("skeletons"):
        return None
    st = proofreader.state
    n = int(st.ids.size)
    if n != st.n_base:
        return None
    head = {"format": FORMAT, "graph_sha256": graph["sha256"], "supervoxels": graph.get("supervoxels"),
            "options": {k: options[k] for k in sorted(options)}, "finder": _finder_digest()}
    h = hashlib.sha256(json.dumps(head, sort_keys=True, default=repr).encode())
    for arr in (st.ids[:n], st.seg[:n], st.alive[:n], np.packbits(st.active)):
        h.update(np.ascontiguousarray(arr).tobytes())
    h.update(repr(sorted((int(k), sorted((int(a), float(b)) for a, b in v.items()))
                         for k, v in st.extra_rag.items())).encode())
    h.update(repr(sorted((int(k), sorted(int(a) for a in v)) for k, v in st.extra_active.items())).encode())
    return h.hexdigest()


def _ragged(rows) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.fromiter((len(r) for r in rows), np.int64, len(rows))
    flat = np.fromiter((int(x) for r in rows for x in r), np.uint64, int(lengths.sum()))
    return lengths, flat


def _unragged(lengths: np.ndarray, flat: np.ndarray) -> list[tuple]:
    values = flat.tolist()
    ends = np.cumsum(lengths).tolist()
    out, start = [], 0
    for end in ends:
        out.append(tuple(values[start:end]))
        start = end
    return out


def save_candidates(path: str | Path, candidates: list[Candidate], stamp: str) -> None:
    """Write ``candidates`` column by column with ``stamp`` (atomically; a failed write leaves the old file)."""
    from napari_connectome.atomic import save_npz_atomic

    n = len(candidates)
    schemas: dict[tuple[str, ...], int] = {}
    schema_of = np.empty(n, np.int32)
    sources: dict[str, int] = {}
    source_of = np.empty(n, np.int32)
    values: list[float] = []
    for i, c in enumerate(candidates):
        schema_of[i] = schemas.setdefault(tuple(c.features), len(schemas))
        source_of[i] = sources.setdefault(c.source, len(sources))
        values.extend(c.features.values())
    arrays = {"stamp": np.array(stamp), "format": np.array(FORMAT),
              "ids": np.frombuffer("\n".join(c.id for c in candidates).encode(), np.uint8),
              "kind": np.fromiter((_KINDS.index(c.kind) for c in candidates), np.uint8, n),
              "location": np.array([c.location_nm for c in candidates], np.float64).reshape(n, 3),
              "impact": np.fromiter((c.impact for c in candidates), np.float64, n),
              "unit": np.fromiter((_UNITS.index(c.impact_unit) for c in candidates), np.uint8, n),
              "schemas": np.array(json.dumps([list(s) for s in schemas])), "schema_of": schema_of,
              "sources": np.array(json.dumps(list(sources))), "source_of": source_of,
              "values": np.asarray(values, np.float64)}
    for name in ("segments", "supervoxels", "sinks"):
        arrays[f"{name}_len"], arrays[f"{name}_flat"] = _ragged([getattr(c, name) for c in candidates])
    # The region-graph rows an unplaced candidate is placed by (not a field; None once placed): length -1.
    rows = [getattr(c, "_rows", None) for c in candidates]
    lengths, flat = _ragged([() if r is None else r for r in rows])
    arrays["rows_len"] = np.where([r is None for r in rows], -1, lengths).astype(np.int64)
    arrays["rows_flat"] = flat.astype(np.int64)
    save_npz_atomic(path, arrays)


def load_candidates(path: str | Path, stamp: str | None) -> list[Candidate] | None:
    """The kept list when it was written for ``stamp``; None otherwise (missing, stale, damaged, other format)."""
    if stamp is None:
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            if int(f["format"]) != FORMAT or str(f["stamp"]) != stamp:
                return None
            cols = {k: np.array(f[k]) for k in f.files}
        return _rebuild(cols)
    except (OSError, KeyError, ValueError, IndexError, EOFError, zipfile.BadZipFile, json.JSONDecodeError):
        return None  # a cache: searching again is always right


def _rebuild(cols: dict) -> list[Candidate]:
    n = int(cols["kind"].size)
    ids = bytes(cols["ids"]).decode().split("\n") if n else []
    schemas = [tuple(s) for s in json.loads(str(cols["schemas"]))]
    sources = json.loads(str(cols["sources"]))
    ragged = {name: _unragged(cols[f"{name}_len"], cols[f"{name}_flat"]) for name in ("segments", "supervoxels",
                                                                                      "sinks")}
    if len(ids) != n or any(len(r) != n for r in ragged.values()) or cols["location"].shape != (n, 3):
        raise ValueError("kept candidate columns disagree in length")
    widths = np.array([len(s) for s in schemas], np.int64)
    schema_of = cols["schema_of"]
    starts = np.concatenate([[0], np.cumsum(widths[schema_of])]).tolist()
    if starts[-1] != cols["values"].size:
        raise ValueError("kept candidate features disagree in length")
    values = cols["values"].tolist()
    kinds, units = cols["kind"].tolist(), cols["unit"].tolist()
    locations = [tuple(row) for row in cols["location"].tolist()]
    impacts, source_of, schema_list = cols["impact"].tolist(), cols["source_of"].tolist(), schema_of.tolist()
    segments, supervoxels, sinks = ragged["segments"], ragged["supervoxels"], ragged["sinks"]
    out = [Candidate(id=ids[i], kind=_KINDS[kinds[i]], location_nm=locations[i], segments=segments[i],
                     supervoxels=supervoxels[i], sinks=sinks[i], source=sources[source_of[i]],
                     features=dict(zip(schemas[schema_list[i]], values[starts[i]:starts[i + 1]], strict=True)),
                     impact=impacts[i], impact_unit=_UNITS[units[i]])
           for i in range(n)]
    rows_len = cols["rows_len"]
    if rows_len.size != n or int(rows_len[rows_len > 0].sum()) != cols["rows_flat"].size:
        raise ValueError("kept candidate rows disagree in length")
    bounds = np.concatenate([[0], np.cumsum(np.maximum(rows_len, 0))])
    for i in np.flatnonzero(rows_len >= 0).tolist():
        out[i]._rows = cols["rows_flat"][bounds[i]:bounds[i + 1]]
    return out
