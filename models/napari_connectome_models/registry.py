"""The model registry: name → weights file, sha256, voxel size, field of view, card."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib.resources import as_file, files
from pathlib import Path


class ModelRegistryError(Exception):
    """A registry entry or its weights are missing or do not match (one line)."""


@dataclass(frozen=True)
class ModelEntry:
    """One registered model.

    Attributes
    ----------
    name
        Registry key, e.g. ``"unet-affinities-fib25"``.
    task
        What it predicts (``"affinities"``, ``"boundaries"``, ``"synapses"``, ...).
    file
        Weights file, relative to this package.
    sha256
        Hex digest the weights file must have.
    voxel_size_nm
        Voxel size (z, y, x) the network was trained at.
    fov_voxels
        Input field of view (z, y, x) in voxels.
    card
        Model card, relative to this package.
    output_shape
        Output (z, y, x) for an input of ``fov_voxels`` (image-to-image models).
    context_voxels
        Input voxels each output voxel needs on each side (z, y, x).
    offsets
        Affinity offsets (z, y, x), one output channel each (affinity models).
    segment
        Affinity models: the block-wise supervoxel options and agglomeration threshold
        chosen on held-out training data (``models/scripts/select_segment.py`` writes it
        for models exported before ``train`` chose them itself), with the held-out figures.
    detect
        Synapse models: the detection threshold chosen on held-out training data
        (``models/scripts/select_synapse_threshold.py``), with the held-out figures.
    """

    name: str
    task: str
    file: str
    sha256: str
    voxel_size_nm: tuple[float, float, float]
    fov_voxels: tuple[int, int, int]
    card: str
    output_shape: tuple[int, int, int] | None = None
    context_voxels: tuple[int, int, int] | None = None
    offsets: tuple[tuple[int, int, int], ...] | None = None
    segment: dict | None = field(default=None, hash=False)
    detect: dict | None = field(default=None, hash=False)

    @classmethod
    def from_dict(cls, record: dict) -> ModelEntry:
        try:
            return cls(
                name=str(record["name"]),
                task=str(record["task"]),
                file=str(record["file"]),
                sha256=str(record["sha256"]).lower(),
                voxel_size_nm=tuple(float(v) for v in record["voxel_size_nm"]),
                fov_voxels=tuple(int(v) for v in record["fov_voxels"]),
                card=str(record["card"]),
                output_shape=_ints(record.get("output_shape")),
                context_voxels=_ints(record.get("context_voxels")),
                offsets=None if record.get("offsets") is None
                else tuple(tuple(int(v) for v in o) for o in record["offsets"]),
                segment=dict(record["segment"]) if record.get("segment") else None,
                detect=dict(record["detect"]) if record.get("detect") else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelRegistryError(f"registry entry {record!r} is malformed: {exc}") from None


def _ints(values) -> tuple[int, ...] | None:
    return None if values is None else tuple(int(v) for v in values)


def load_registry(path: str | Path | None = None) -> dict[str, ModelEntry]:
    """Read a registry file (default: the packaged ``registry.json``)."""
    if path is None:
        text = files(__package__).joinpath("registry.json").read_text(encoding="utf-8")
        where = "napari_connectome_models/registry.json"
    else:
        where = str(path)
        text = Path(path).read_text(encoding="utf-8")
    try:
        records = json.loads(text)["models"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ModelRegistryError(f"{where}: not a model registry ({exc})") from None
    entries = [ModelEntry.from_dict(r) for r in records]
    return {e.name: e for e in entries}


def list_models(task: str | None = None) -> list[ModelEntry]:
    """The packaged models, optionally only those for ``task``."""
    return [e for e in load_registry().values() if task is None or e.task == task]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_path(entry: ModelEntry, *, root: Path | None = None) -> Path:
    """Path of a model's weights after checking their sha256.

    Parameters
    ----------
    entry
        The registry entry.
    root
        Folder the entry's ``file`` is relative to (default: this package).
    """
    if root is None:
        with as_file(files(__package__).joinpath(entry.file)) as p:
            path = Path(p)
    else:
        path = Path(root) / entry.file
    if not path.is_file():
        raise ModelRegistryError(f"{path}: weights of model {entry.name!r} are missing")
    actual = _sha256(path)
    if actual != entry.sha256:
        raise ModelRegistryError(
            f"{path}: sha256 {actual[:12]}… does not match the registry's {entry.sha256[:12]}… for {entry.name!r}"
        )
    return path


def load_network(name: str, *, registry: str | Path | None = None, root: Path | None = None):
    """The registered network ``name``, loaded offline after its sha256 check (needs torch).

    The stored config's ``kind`` picks the network class: ``"synapses"`` gives a
    :class:`~napari_connectome_models.nets.synapse.SynapseUNet`, a config without
    a kind an affinity :class:`~napari_connectome_models.nets.unet.UNet3D`.

    Parameters
    ----------
    name
        Registry key, e.g. ``"affinities-fib-10nm"``.
    registry
        Registry file (default: the packaged one).
    root
        Folder the entry's ``file`` is relative to (default: this package).

    Raises
    ------
    ModelRegistryError
        Unknown name, missing weights or a sha256 mismatch (nothing is loaded then).
    """
    entries = load_registry(registry)
    if name not in entries:
        raise ModelRegistryError(f"no model {name!r} in the registry (have: {', '.join(sorted(entries))})")
    entry = entries[name]
    path = weights_path(entry, root=root)
    from napari_connectome_models.nets import read_network

    _, model, _ = read_network(path)
    if entry.offsets is not None and tuple(model.config.offsets) != entry.offsets:
        raise ModelRegistryError(f"{path}: offsets {model.config.offsets} differ from the registry's {entry.offsets}")
    return model
