"""Networks, their registry, weights and model cards.

Weights ship inside this package and load through importlib.resources with a
sha256 check — never from a hub at run time (the suite works offline). Each
model has a card (``cards/NAME.md``) with the voxel size, field of view,
training data and measured scores its weights need.
"""

from napari_connectome_models.registry import (
    ModelEntry,
    ModelRegistryError,
    list_models,
    load_network,
    load_registry,
    weights_path,
)

__all__ = ["ModelEntry", "ModelRegistryError", "list_models", "load_network", "load_registry", "weights_path"]
