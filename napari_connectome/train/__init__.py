"""Training affinity networks (torch is imported inside the functions that need it).

* :mod:`~napari_connectome.train.targets` -- affinity targets, masks, class balance;
* :mod:`~napari_connectome.train.augment` -- augmentations that keep labels aligned;
* :mod:`~napari_connectome.train.data` -- padded training volumes, random patches;
* :mod:`~napari_connectome.train.sources` -- training data from dense or sparse labels, or a
  project's proofread segmentation inside a box;
* :mod:`~napari_connectome.train.loop` -- the seeded, resumable training loop;
* :mod:`~napari_connectome.train.run` -- a run as the CLI and the Train panel start it: plan,
  train or resume with progress and cancel, evaluate, export weights.
* :mod:`~napari_connectome.train.synapse_targets` -- Synful-style synapse targets (post-synaptic
  mask, vectors to the pre points) from a synapse table and labels;
* :mod:`~napari_connectome.train.synapse_loop` -- the seeded, resumable loop of the synapse network.
"""

from napari_connectome.train.augment import AugmentConfig
from napari_connectome.train.data import TrainingVolume, normalise_raw, sample_patch
from napari_connectome.train.loop import (
    TrainConfig,
    latest_checkpoint,
    network_from_checkpoint,
    train,
)
from napari_connectome.train.run import (
    Plan,
    evaluate,
    export_weights,
    make_config,
    plan,
    run_training,
)
from napari_connectome.train.sources import TrainingData, from_arrays, from_project, from_volumes
from napari_connectome.train.targets import affinities_from_labels, balance_weights

__all__ = [
    "AugmentConfig",
    "Plan",
    "TrainConfig",
    "TrainingData",
    "TrainingVolume",
    "affinities_from_labels",
    "balance_weights",
    "evaluate",
    "export_weights",
    "from_arrays",
    "from_project",
    "from_volumes",
    "latest_checkpoint",
    "make_config",
    "network_from_checkpoint",
    "normalise_raw",
    "plan",
    "run_training",
    "sample_patch",
    "train",
]
