"""Torch networks. Import a submodule explicitly (``nets.unet``): this package
imports nothing heavy at import time, so ``import napari_connectome_models`` stays torch-free."""

from __future__ import annotations

from pathlib import Path


def network_kind(path: str | Path) -> str:
    """What a weights file written by the suite predicts: ``"affinities"`` or ``"synapses"``."""
    import torch

    blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    return str(blob["config"].get("kind", "affinities"))


def load_any_network(path: str | Path):
    """The network of a weights file, whatever it predicts (``weights_only``: no code runs)."""
    if network_kind(path) == "synapses":
        from napari_connectome_models.nets.synapse import load_synapse_network

        return load_synapse_network(path)
    from napari_connectome_models.nets.unet import load_network

    return load_network(path)
