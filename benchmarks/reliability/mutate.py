"""Mutations of valid volumes: metadata JSON, chunks, whole files, folder structure.

Every mutation is drawn from a :class:`numpy.random.Generator` seeded with
the campaign seed and the case number, so a case can be re-made exactly.
Each says what a careful reader of the damaged volume owes the person:

``benign``
    the volume is still valid (an unknown key, a junk file beside it): it
    must open and read the same voxels; a refusal counts as ``other``.
``detectable``
    if the voxels read differ from the originals, a check could have told
    (a size that does not match, a checksum, a chunk that cannot decode):
    succeeding with other voxels is ``silent wrong``. Changes no reader can
    see (a bit flip in an uncompressed chunk, ``order`` C ↔ F, two valid
    chunks swapped) are not.
``missing``
    chunks were removed: reading them must raise, or say so in a note.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

METADATA_NAMES = {".zarray", ".zattrs", ".zgroup", "zarr.json", "attributes.json", "info", ".zmetadata",
                  "napari-connectome.json"}
#: Keys whose (valid) values change what the voxels mean without any reader being able to tell.
MEANING_KEYS = {
    "order", "fill_value", "axes", "dimension_names", "name", "names", "type", "unit", "units", "filters",
    "scale", "translation", "resolution", "offset", "pixelResolution", "downsamplingFactors", "voxel_offset",
    "coordinateTransformations", "transform", "kind", "created", "modified", "version", "metadata",
    "_ARRAY_DIMENSIONS", "voxel_size_nm", "offset_nm", "voxel_size_assumed", "levels", "format",
    "datasets", "path", "attributes",
}
DTYPE_KEYS = {"dtype", "dataType", "data_type"}
DTYPE_VALUES = ["<u2", "|b1", "<f8", "|O", "<M8[ns]", "<c16", "|S4", ">u4", "|V3", "int8", "uint64",
                "float16", "bool", "complex64", "object", "<i1", "|u1", "uint8", "<U4", "", "u1", "x"]


@dataclass
class Mutation:
    """What was done to a case's copy of a seed volume."""

    op: str
    target: str
    detail: str = ""
    benign: bool = False
    detectable: bool = True
    missing: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def _deep(n: int):
    value: list = []
    for _ in range(n):
        value = [value]
    return value


def _values(rng: np.random.Generator):
    """Wrong values of every type (a fresh list: some are large)."""
    return [
        "abc", None, [], {}, True, False, 0, -1, 1.5, -2.5, 2**63, 2**64 + 1, 10**18, -(10**18), 1e308, -1e308,
        float("nan"), float("inf"), "😀ü\u202eabc\u0000", "", _deep(400), "x" * 200_000, [1, 2], {"a": {"b": []}},
        [None, None, None], ["a", "b", "c"], [-1, -1, -1], [0, 0, 0], [10**18, 10**18, 10**18], [1e-300] * 3,
        list(range(40)), "1", "0.5", "NaN",
    ]


def _paths(obj, prefix=(), depth=0):
    out = [prefix]
    if depth > 7:
        return out
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k), depth + 1)
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:8]):
            out += _paths(v, (*prefix, i), depth + 1)
    return out


def _get(obj, path):
    for k in path:
        obj = obj[k]
    return obj


def _set(obj, path, value):
    if not path:
        return value
    _get(obj, path[:-1])[path[-1]] = value
    return obj


def _last_key(path) -> str:
    for k in reversed(path):
        if isinstance(k, str):
            return k
    return ""


def _dump(value) -> str:
    return json.dumps(value, indent=1, ensure_ascii=False, allow_nan=True)


def mutate_json(path: Path, rng: np.random.Generator, rel: str) -> Mutation:
    """One mutation of a JSON metadata file."""
    raw = path.read_bytes()
    roll = rng.random()
    if roll < 0.12:  # the file as a whole
        kind = rng.choice(["truncate", "empty", "garbage", "latin1", "top-list", "bom", "nul", "deep", "huge",
                           "not-json"])
        if kind == "truncate":
            cut = int(rng.integers(1, max(2, len(raw))))
            path.write_bytes(raw[:cut])
        elif kind == "empty":
            path.write_bytes(b"")
        elif kind == "garbage":
            path.write_bytes(rng.bytes(max(1, len(raw))))
        elif kind == "latin1":
            path.write_bytes(raw.replace(b'"', b'"\xe9', 1))
        elif kind == "top-list":
            path.write_text(_dump([json.loads(raw)]))
        elif kind == "bom":
            path.write_bytes(b"\xef\xbb\xbf" + raw)
            return Mutation("json:file:bom", rel, "UTF-8 byte order mark added", detectable=False)
        elif kind == "nul":
            path.write_bytes(raw[: len(raw) // 2] + b"\x00" + raw[len(raw) // 2:])
        elif kind == "deep":
            path.write_text("[" * 100_000 + "]" * 100_000)
        elif kind == "huge":
            path.write_bytes(raw + b" " * (20 * 2**20))
            return Mutation("json:file:huge", rel, "20 MiB of trailing whitespace", benign=True, detectable=False)
        else:
            path.write_text("this is not JSON {" + "\n")
        return Mutation(f"json:file:{kind}", rel)
    doc = json.loads(raw)
    if roll < 0.22:  # benign: the document still says the same
        kind = rng.choice(["unknown-key", "minify", "sorted", "unicode-extra"])
        # Where a format lets anyone add keys: user attributes (zarr v2 .zattrs, zarr v3
        # "attributes", N5 attributes.json) and the project manifest. Elsewhere an unknown
        # key may rightly be refused (zarr v3: unknown top-level fields must be understood).
        free = None
        if isinstance(doc, dict) and path.name in (".zattrs", "attributes.json", "napari-connectome.json"):
            free = doc
        elif isinstance(doc, dict) and path.name == "zarr.json":
            free = doc.setdefault("attributes", {})
        if kind in ("unknown-key", "unicode-extra") and free is None:
            kind = "minify"
        if kind == "unknown-key":
            free["x-campaign-unknown"] = {"note": "😀 ünïcödé", "n": [1, 2, 3]}
        elif kind == "unicode-extra":
            free["x-ünïcödé-😀"] = "\u202evalue"
        elif kind == "sorted":
            path.write_text(json.dumps(doc, sort_keys=True, indent=4))
            return Mutation("json:benign:sorted", rel, "keys sorted", benign=True)
        path.write_text(json.dumps(doc, separators=(",", ":")) if kind == "minify" else _dump(doc))
        return Mutation(f"json:benign:{kind}", rel, benign=True)
    paths = [p for p in _paths(doc) if p]
    if not paths:
        path.write_text(_dump(_values(rng)[int(rng.integers(10))]))
        return Mutation("json:root", rel)
    weights = np.array([3.0 if _last_key(p) in ("shape", "chunks", "dimensions", "blockSize", "size", "chunk_size",
                                               "dtype", "dataType", "data_type", "compressor", "codecs",
                                               "compression", "zarr_format", "node_type", "multiscales",
                                               "scales", "inputs", "uri", "encoding", "dimension_separator")
                        else 1.0 for p in paths])
    target = paths[int(rng.choice(len(paths), p=weights / weights.sum()))]
    current = _get(doc, target)
    key = _last_key(target)
    kinds = ["replace", "replace", "delete"]
    if isinstance(current, bool):
        kinds += ["flip-bool"]
    elif isinstance(current, (int, float)):
        kinds += ["number", "number", "number"]
    elif isinstance(current, list):
        kinds += ["list", "list"]
    elif isinstance(current, str):
        kinds += ["string"] + (["dtype", "dtype"] if key in DTYPE_KEYS else [])
    kind = str(rng.choice(kinds))
    detectable = key not in MEANING_KEYS
    detail = f"{'/'.join(map(str, target))}"
    if kind == "delete":
        parent = _get(doc, target[:-1])
        if isinstance(parent, dict):
            del parent[target[-1]]
        else:
            parent.pop(target[-1])
        detail += " deleted"
    elif kind == "flip-bool":
        _set(doc, target, not current)
    elif kind == "number":
        choices = [-current, 0, current * 1000, current + 1, current - 1, 2**63 - 1, 10**18, -1, 1e308,
                   float("nan"), float("inf"), current / 1000 if current else 0.5, str(current)]
        value = choices[int(rng.integers(len(choices)))]
        _set(doc, target, value)
        detail += f" = {value!r}"[:80]
    elif kind == "list":
        ops = ["drop", "append", "empty", "reverse", "nest", "double"]
        op = ops[int(rng.integers(len(ops)))]
        value = {"drop": current[:-1], "append": current + current[-1:] if current else [1], "empty": [],
                 "reverse": current[::-1], "nest": [current], "double": current + current}[op]
        _set(doc, target, value)
        detail += f" list {op}"
        if op == "reverse" and key in MEANING_KEYS:
            detectable = False
    elif kind == "string":
        value = ["", "😀", "x" * 5000, current.upper(), current + "\u0000", "../../etc/passwd", "/dev/zero",
                 current[::-1]][int(rng.integers(8))]
        _set(doc, target, value)
        detail += f" = {value[:40]!r}"
    elif kind == "dtype":
        value = DTYPE_VALUES[int(rng.integers(len(DTYPE_VALUES)))]
        _set(doc, target, value)
        detail += f" = {value!r}"
        try:
            detectable = np.dtype(value).itemsize != np.dtype(current).itemsize
        except TypeError:
            detectable = True
    else:
        values = _values(rng)
        value = values[int(rng.integers(len(values)))]
        doc = _set(doc, target, value)
        detail += f" = {_short(value)}"
    path.write_text(_dump(doc))
    return Mutation(f"json:{kind}", rel, detail, detectable=detectable)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) < 60 else text[:57] + "..."


# ====================================================================== files
def mutate_file(path: Path, rng: np.random.Generator, rel: str, *, compressed: bool, checksummed: bool,
                allow_special: bool = True) -> Mutation:
    """One mutation of a data file (a chunk, an HDF5/TIFF file, a slice)."""
    data = path.read_bytes()
    kinds = ["truncate", "truncate", "zero", "garbage", "bitflip", "bitflip", "block", "append", "directory",
             "symlink-loop", "delete"]
    if allow_special:
        kinds += ["fifo"] if rng.random() < 0.08 else []
        kinds += ["devzero"] if rng.random() < 0.08 else []
    kind = str(rng.choice(kinds))
    if kind == "truncate":
        cut = int(rng.integers(0, max(1, len(data))))
        path.write_bytes(data[:cut])
        return Mutation("file:truncate", rel, f"{cut} of {len(data)} bytes kept")
    if kind == "zero":
        path.write_bytes(b"")
        return Mutation("file:zero", rel, "0 bytes")
    if kind == "garbage":
        path.write_bytes(rng.bytes(max(1, len(data))))
        return Mutation("file:garbage", rel, f"{len(data)} random bytes", detectable=compressed or checksummed)
    if kind == "bitflip":
        buf = bytearray(data)
        n = int(rng.integers(1, 4))
        for _ in range(n):
            i = int(rng.integers(len(buf))) if buf else 0
            if buf:
                buf[i] ^= 1 << int(rng.integers(8))
        path.write_bytes(bytes(buf))
        return Mutation("file:bitflip", rel, f"{n} bits flipped", detectable=checksummed)
    if kind == "block":
        buf = bytearray(data)
        n = int(rng.integers(16, 4096))
        at = int(rng.integers(0, max(1, len(buf) - n)))
        buf[at:at + n] = rng.bytes(len(buf[at:at + n]))
        path.write_bytes(bytes(buf))
        return Mutation("file:block", rel, f"{n} bytes at {at} overwritten", detectable=checksummed)
    if kind == "append":
        path.write_bytes(data + rng.bytes(int(rng.integers(1, 5000))))
        return Mutation("file:append", rel, "garbage appended", detectable=not compressed)
    if kind == "directory":
        path.unlink()
        path.mkdir()
        (path / "inner").write_bytes(b"x")
        return Mutation("file:directory", rel, "replaced by a folder")
    if kind == "symlink-loop":
        path.unlink()
        os.symlink(path.name, path)
        return Mutation("file:symlink-loop", rel, "a symbolic link to itself")
    if kind == "fifo":
        path.unlink()
        os.mkfifo(path)
        return Mutation("file:fifo", rel, "replaced by a named pipe (reading blocks forever)")
    if kind == "devzero":
        path.unlink()
        os.symlink("/dev/zero", path)
        return Mutation("file:devzero", rel, "a link to /dev/zero (endless zeros)")
    path.unlink()
    return Mutation("file:delete", rel, "deleted", missing=True)


def swap_chunks(a: Path, b: Path, rel_a: str, rel_b: str) -> Mutation:
    """Two valid chunks of one level exchanged (no reader can tell)."""
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)
    return Mutation("chunk:swap", rel_a, f"swapped with {rel_b}", detectable=False)


def remove_tree(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
