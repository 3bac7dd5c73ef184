"""Torch networks. Import a submodule explicitly (``nets.unet``): this package
imports nothing heavy at import time, so ``import napari_connectome_models`` stays torch-free."""

from __future__ import annotations

from pathlib import Path


def read_network(path: str | Path):
    """``(kind, network in eval mode, metadata)`` of a weights file the suite wrote, read once.

    The stored config's ``kind`` picks the class: ``"synapses"`` a
    :class:`~napari_connectome_models.nets.synapse.SynapseUNet`, no kind an affinity
    :class:`~napari_connectome_models.nets.unet.UNet3D` (files from before kinds existed).
    ``weights_only``: reading runs no code.
    """
    import torch

    from napari_connectome_models.nets.synapse import (
        SynapseNetConfig,
        SynapseUNet,
        is_synapse_config,
    )
    from napari_connectome_models.nets.unet import UNet3D, UNetConfig

    blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    if is_synapse_config(blob.get("config")):
        kind, model = "synapses", SynapseUNet(SynapseNetConfig.from_dict(blob["config"]))
    else:
        kind, model = "affinities", UNet3D(UNetConfig.from_dict(blob["config"]))
    model.load_state_dict(blob["state_dict"])
    model.eval()
    return kind, model, dict(blob.get("metadata", {}))
