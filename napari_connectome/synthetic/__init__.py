"""Synthetic EM volumes with ground truth, deterministic from a seed, any size.

Neurons are branching tubes drawn once as a list of capsule segments (the only
global state); any block of the raw image and of the labels is then rendered
on its own, bit-identical whatever the tiling::

    spec = SyntheticSpec(shape=(64, 256, 256), voxel_size=(40, 8, 8), seed=1)
    raw, gt = generate_block(spec, (slice(0, 64), slice(0, 128), slice(0, 128)))
    raw_volume, gt_volume = synthetic_volumes(spec)   # lazy, nothing generated yet
"""

from napari_connectome.synthetic.neurons import Segments, neuron_segments
from napari_connectome.synthetic.render import generate_block
from napari_connectome.synthetic.spec import SyntheticSpec
from napari_connectome.synthetic.volume import synthetic_volumes

__all__ = [
    "Segments",
    "SyntheticSpec",
    "generate_block",
    "neuron_segments",
    "synthetic_volumes",
]
