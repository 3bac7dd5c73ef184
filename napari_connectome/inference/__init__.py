"""Running networks locally: the device and its memory, and affinities from raw EM (torch is imported inside the functions)."""

from napari_connectome.inference.device import (
    Device,
    block_edge_for_memory,
    choose_device,
    with_backoff,
)
from napari_connectome.inference.predict import predict_affinities, predict_affinities_flipped

__all__ = [
    "Device",
    "block_edge_for_memory",
    "choose_device",
    "predict_affinities",
    "predict_affinities_flipped",
    "with_backoff",
]
