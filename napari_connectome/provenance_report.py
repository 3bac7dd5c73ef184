"""Reading provenance back: the records of a project (its manifest, its inputs) or of a volume.

``napari-connectome provenance PATH`` prints what :mod:`napari_connectome.provenance`
recorded when each output was computed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from napari_connectome.errors import InputError
from napari_connectome.project import is_project, open_project
from napari_connectome.provenance import ATTRIBUTE, local_path


def _group_attributes(path: Path) -> dict | None:
    for name in (".zattrs", "zarr.json"):
        file = path / name
        if file.is_file():
            try:
                data = json.loads(file.read_text())
            except (OSError, ValueError):
                return None
            return data.get("attributes", {}) if name == "zarr.json" else data
    return None


def read_provenance(path: str | os.PathLike) -> dict[str, dict]:
    """The provenance records at ``path``: ``{what: record}`` for a project, or a volume the suite wrote.

    Raises
    ------
    InputError
        ``path`` does not exist, or is neither a project nor a volume with a record.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(os.fspath(path), "does not exist")
    if is_project(p):
        project = open_project(p)
        out = {f"project component {k}": v for k, v in (project.manifest.get("provenance") or {}).items()}
        for role, entry in sorted(project.inputs.items()):
            local = local_path(str(entry.get("uri", "")))
            attrs = _group_attributes(local) if local is not None and local.is_dir() else None
            record = ((attrs or {}).get(ATTRIBUTE) or {}).get("provenance")
            if record:
                out[f"input {role}"] = record
        if not out:
            raise InputError(os.fspath(path), "the project has no provenance records yet (nothing computed in it)")
        return out
    attrs = _group_attributes(p) if p.is_dir() else None
    record = ((attrs or {}).get(ATTRIBUTE) or {}).get("provenance")
    if not record:
        raise InputError(os.fspath(path), "carries no napari-connectome provenance record "
                                          "(not a project, and not a volume the suite wrote)")
    return {"volume": record}


def format_record(what: str, record: Mapping[str, Any]) -> str:
    """A record as a few readable lines."""
    made = f" · made {record['created']}" if record.get("created") else ""
    lines = [f"{what}: {record.get('kind', '?')}{made}"]
    soft = record.get("software") or {}
    lines.append("  software: " + ", ".join(f"{k} {v}" for k, v in soft.items()))
    for key in ("model", "device", "tiling", "outputs"):
        if record.get(key):
            lines.append(f"  {key}: {json.dumps(record[key], sort_keys=True)}")
    params = record.get("parameters") or {}
    if params:
        lines.append("  parameters: " + json.dumps(params, sort_keys=True))
    for name, identity in (record.get("inputs") or {}).items():
        lines.append(f"  input {name}: {json.dumps(identity, sort_keys=True)}")
    timings = record.get("timings_s") or {}
    if timings:
        lines.append("  timings: " + ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))
    return "\n".join(lines)
