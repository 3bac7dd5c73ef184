"""Networks by name or file, for the stages that run them (``segment``, ``synapses``): offline, checked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from napari_connectome.errors import InputError


@dataclass(frozen=True)
class ModelChoice:
    """What the stages need of a model: its name, weights digest, voxel size and card.

    Attributes
    ----------
    segment
        Affinity models: the supervoxel options and threshold chosen on held-out data (registry).
    detect
        Synapse models: the detection threshold chosen on held-out data (registry).
    """

    name: str
    sha256: str
    voxel_size_nm: tuple[float, ...] | None
    card: str
    segment: dict | None = None
    detect: dict | None = None


def load_model(name: str, *, task: str = "affinities"):
    """``(choice, network, metadata)`` of a registered model, or of a weights file (``.pt``) a person trained.

    Registered models load offline after their sha256 check; a file's digest
    is computed and recorded (there is nothing to check it against), and its
    voxel size is the one its training recorded in its metadata. A model that
    predicts something other than ``task`` is refused, by name or by file.
    """
    try:
        from napari_connectome_models.nets import read_network
        from napari_connectome_models.nets.unet import network_metadata
        from napari_connectome_models.registry import (
            ModelRegistryError,
            _sha256,
            load_network,
            load_registry,
            weights_path,
        )
    except ImportError:
        raise InputError("--model", "the models package is not installed (pip install 'napari-connectome[models]')"
                         ) from None
    path = Path(name)
    if name.endswith(".pt") or path.is_file():
        if not path.is_file():
            raise InputError(path, "no such weights file")
        try:
            kind, net, meta = read_network(path)
        except Exception as exc:
            raise InputError(path, f"is not a network the suite saved ({type(exc).__name__}: {exc})") from None
        if kind != task:
            raise InputError(path, f"is a network for {kind}, not {task}")
        vs = meta.get("voxel_size_nm")
        return ModelChoice(str(path.resolve()), _sha256(path), tuple(float(v) for v in vs) if vs else None,
                           ""), net, meta
    try:
        entries = load_registry()
        if name not in entries:
            raise ModelRegistryError(f"no model {name!r} in the registry (have: {', '.join(sorted(entries))})")
        entry = entries[name]
        if entry.task != task:
            raise ModelRegistryError(f"model {name!r} predicts {entry.task}, not {task}")
        net = load_network(name)
        meta = network_metadata(weights_path(entry))
    except ModelRegistryError as exc:
        raise InputError("--model", str(exc)) from None
    return ModelChoice(entry.name, entry.sha256, tuple(entry.voxel_size_nm), entry.card, entry.segment,
                       entry.detect), net, meta
