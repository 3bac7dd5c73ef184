"""Training affinity networks (torch is imported inside the functions that need it).

* :mod:`~napari_connectome.train.targets` -- affinity targets, masks, class balance;
* :mod:`~napari_connectome.train.augment` -- augmentations that keep labels aligned;
* :mod:`~napari_connectome.train.data` -- padded training volumes, random patches;
* :mod:`~napari_connectome.train.loop` -- the seeded, resumable training loop.
"""

from napari_connectome.train.augment import AugmentConfig
from napari_connectome.train.data import TrainingVolume, normalise_raw, sample_patch
from napari_connectome.train.loop import (
    TrainConfig,
    latest_checkpoint,
    network_from_checkpoint,
    train,
)
from napari_connectome.train.targets import affinities_from_labels, balance_weights

__all__ = [
    "AugmentConfig",
    "TrainConfig",
    "TrainingVolume",
    "affinities_from_labels",
    "balance_weights",
    "latest_checkpoint",
    "network_from_checkpoint",
    "normalise_raw",
    "sample_patch",
    "train",
]
