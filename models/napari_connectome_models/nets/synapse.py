"""A 3D U-Net that predicts synapses the Synful way (Buhmann et al. 2021).

The network is the affinity U-Net of :mod:`~napari_connectome_models.nets.unet`
(same layers, valid convolutions, same shape arithmetic, so blockwise
inference with :func:`napari_connectome.inference.predict_affinities` equals
whole-volume inference) with a four-channel head:

* channel 0: probability (after a sigmoid) that the voxel lies in a
  **post-synaptic mask**, i.e. near a post-synaptic site, inside the
  post-synaptic neuron;
* channels 1..3: the vector ``(z, y, x)`` from the voxel centre to the
  **pre-synaptic point** of its synapse, in units of :data:`VECTOR_UNIT_NM`
  (100 nm), with no activation.

The targets are defined in :func:`napari_connectome.train.synapse_targets.synapse_targets`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from napari_connectome_models.nets.unet import ISOTROPIC, UNet3D, UNetConfig, save_network

#: Length of one unit of the predicted vectors, in nm.
VECTOR_UNIT_NM = 100.0
#: Output channels: mask probability, then the vector (z, y, x).
SYNAPSE_CHANNELS = 4
#: The ``kind`` a synapse network's stored config carries (affinity configs have none).
KIND = "synapses"


@dataclass(frozen=True)
class SynapseNetConfig:
    """Everything that defines a synapse network's shape (stored with its weights).

    Attributes
    ----------
    downsample
        Per level, the max-pooling factors (z, y, x), as in :class:`UNetConfig`.
    base_features
        Feature maps at the top level.
    feature_factor
        Multiplier of the feature maps per level down.
    in_channels
        Input channels (1 for EM).

    Notes
    -----
    The shape arithmetic (:attr:`context`, :attr:`step`, :meth:`output_shape`,
    :meth:`valid_input_shape`) is the affinity network's: it is delegated to an
    equivalent :class:`UNetConfig` (:attr:`unet`), not copied, so the two can
    never drift apart.
    """

    downsample: tuple[tuple[int, int, int], ...] = ISOTROPIC
    base_features: int = 12
    feature_factor: int = 2
    in_channels: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "downsample", tuple(tuple(int(v) for v in f) for f in self.downsample))
        object.__setattr__(self, "base_features", int(self.base_features))
        object.__setattr__(self, "feature_factor", int(self.feature_factor))
        object.__setattr__(self, "in_channels", int(self.in_channels))
        if self.base_features < 1 or self.feature_factor < 1 or self.in_channels < 1:
            raise ValueError(f"base_features, feature_factor and in_channels must be >= 1, got {self}")
        self.unet  # noqa: B018 -- validates the downsampling factors now, not at first use

    @property
    def unet(self) -> UNetConfig:
        """The affinity-network config with the same trunk (its offsets are irrelevant here)."""
        return UNetConfig(downsample=self.downsample, base_features=self.base_features,
                          feature_factor=self.feature_factor, in_channels=self.in_channels)

    @property
    def levels(self) -> int:
        """Number of downsampling steps."""
        return len(self.downsample)

    @property
    def out_channels(self) -> int:
        """Mask probability plus the three vector components."""
        return SYNAPSE_CHANNELS

    @property
    def head_channels(self) -> int:
        """Channels of the last convolution (:class:`UNet3D` builds its head from this)."""
        return SYNAPSE_CHANNELS

    @property
    def lsd_channels(self) -> int:
        """No auxiliary channels (:class:`UNet3D` reads this)."""
        return 0

    @property
    def step(self) -> tuple[int, int, int]:
        """Product of the downsampling factors: blocks must start on multiples of it."""
        return self.unet.step

    @property
    def context(self) -> tuple[int, int, int]:
        """Input voxels needed on each side of an output voxel (z, y, x)."""
        return self.unet.context

    def output_shape(self, input_shape) -> tuple[int, int, int]:
        """Output shape for an input shape, or ValueError if the input is not valid."""
        return self.unet.output_shape(input_shape)

    def valid_input_shape(self, min_output_shape) -> tuple[int, int, int]:
        """Smallest valid input whose output is at least ``min_output_shape``."""
        return self.unet.valid_input_shape(min_output_shape)

    def to_dict(self) -> dict:
        """Plain lists and ints with ``"kind": "synapses"`` (JSON- and ``weights_only``-safe)."""
        return {"kind": KIND, "downsample": [list(f) for f in self.downsample],
                "base_features": self.base_features, "feature_factor": self.feature_factor,
                "in_channels": self.in_channels}

    @classmethod
    def from_dict(cls, d: dict) -> SynapseNetConfig:
        """Inverse of :meth:`to_dict`; refuses a config of another kind (an affinity network's)."""
        if d.get("kind") != KIND:
            raise ValueError(f"not a synapse network config (kind {d.get('kind')!r}, want {KIND!r})")
        return cls(downsample=tuple(tuple(f) for f in d["downsample"]), base_features=int(d["base_features"]),
                   feature_factor=int(d["feature_factor"]), in_channels=int(d.get("in_channels", 1)))


class SynapseUNet(UNet3D):
    """The U-Net of :class:`UNet3D` with the synapse head (mask probability, vector to the pre point).

    Parameters
    ----------
    config
        Shape of the network; see :class:`SynapseNetConfig`.
    """

    def __init__(self, config: SynapseNetConfig | None = None) -> None:
        # UNet3D builds its layers from levels, downsample, feature counts and head_channels,
        # which SynapseNetConfig provides: the layers (and their initialisation) are UNet3D's
        super().__init__(config or SynapseNetConfig())

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mask logits (B, 1, *out), vectors (B, 3, *out))`` from one pass (the training loop's call)."""
        y = self._head(x)
        return y[:, :1], y[:, 1:]

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """All four channels with the mask as a logit (before its sigmoid)."""
        return self._head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 4, *out)``: mask probability, then the vector to the pre point in units of 100 nm."""
        mask, vectors = self.forward_train(x)
        return torch.cat([torch.sigmoid(mask), vectors], dim=1)


def save_synapse_network(model: SynapseUNet, path: str | Path, **metadata) -> Path:
    """Write config (with ``"kind": "synapses"``), fp32 weights and plain metadata to ``path`` (the affinity format)."""
    return save_network(model, path, **metadata)


def load_synapse_network(path: str | Path) -> SynapseUNet:
    """Load a network written by :func:`save_synapse_network` (``weights_only``: no code runs), in eval mode."""
    from napari_connectome_models.nets import read_network

    kind, model, _ = read_network(path)
    if kind != KIND:
        raise ValueError(f"{path}: holds a network for {kind}, not synapses")
    return model


def is_synapse_config(config: dict) -> bool:
    """Whether a stored network config (a weights file's ``"config"``) is a synapse network's."""
    return isinstance(config, dict) and config.get("kind") == KIND
