"""Where a project folder keeps its files: names only, so that every layer can know them.

The project module (:mod:`napari_connectome.project`) reads and writes the
manifest; this module only says which paths inside a project are its *state*
(what a proofreader would lose if it were overwritten), so that the output
guard (:mod:`napari_connectome.outputs`), which sits below the project layer,
can refuse to write over them.
"""

from __future__ import annotations

import json
from pathlib import Path

MANIFEST = "napari-connectome.json"
#: Held (``flock``) while the manifest is read, changed and written back.
MANIFEST_LOCK = MANIFEST + ".lock"

# Where each later stage keeps its state inside the project (relative paths).
# Registering them up front keeps two stages from claiming the same file.
COMPONENT_PATHS = {
    "graph": "graph",  # region adjacency graph and merge tree
    "edit_log": "edits.sqlite",  # append-only edit log
    "tasks": "tasks",  # ranked candidates and micro-tasks
    "effort_log": "effort.sqlite",  # active time per task
    "skeletons": "skeletons",
    "segmentation": "segmentation",  # affinities, supervoxels and boundaries the suite computed
    "synapses": "synapses.sqlite",  # detected, imported and annotated synapses (append-only batches)
    "exports": "exports",
}
#: Components meant to receive the user's own outputs (everything else is state).
OUTPUT_COMPONENTS = frozenset({"exports"})
#: Files SQLite keeps beside a database; losing them loses committed rows.
SQLITE_SIDECARS = ("-wal", "-shm", "-journal")


def read_manifest_quietly(root: Path) -> dict:
    """The manifest as a dict, or ``{}`` when it is missing or unreadable (never raises)."""
    try:
        data = json.loads((Path(root) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


#: How a person calls each component.
COMPONENT_LABELS = {
    "graph": "supervoxel graph",
    "edit_log": "edit log",
    "tasks": "tasks",
    "effort_log": "effort log",
    "skeletons": "skeletons",
    "segmentation": "segmentation (affinities, supervoxels, boundaries)",
    "synapses": "synapse store",
}


def state_paths(root: str | Path, manifest: dict | None = None) -> dict[Path, str]:
    """Every path inside project ``root`` that holds its state, with what a person calls it.

    The manifest and its lock, every component the manifest names and every
    default component (except :data:`OUTPUT_COMPONENTS`), and the SQLite
    sidecars of the logs. A damaged manifest still protects the defaults.
    """
    root = Path(root)
    manifest = read_manifest_quietly(root) if manifest is None else manifest
    rel: dict[str, str] = {k: v for k, v in COMPONENT_PATHS.items() if k not in OUTPUT_COMPONENTS}
    named = manifest.get("components") if isinstance(manifest, dict) else None
    if isinstance(named, dict):
        for key, value in named.items():
            if key not in OUTPUT_COMPONENTS and isinstance(value, str) and value.strip():
                rel[str(key)] = value
    paths = {root / MANIFEST: "manifest", root / MANIFEST_LOCK: "manifest lock"}
    for key, value in rel.items():
        p = root / value
        label = COMPONENT_LABELS.get(key, key.replace("_", " "))
        paths[p] = label
        if p.suffix in (".sqlite", ".db", ".sqlite3"):
            paths.update({p.with_name(p.name + s): f"{label} ({s[1:]} file)" for s in SQLITE_SIDECARS})
    return paths
