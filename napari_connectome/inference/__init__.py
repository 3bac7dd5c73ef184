"""Running networks locally: the device and its memory (more arrives with blockwise prediction)."""

from napari_connectome.inference.device import (
    Device,
    block_edge_for_memory,
    choose_device,
    with_backoff,
)

__all__ = ["Device", "block_edge_for_memory", "choose_device", "with_backoff"]
