"""A small 3D U-Net with valid convolutions that predicts affinities.

Valid convolutions (no padding) make the network a function of a fixed
neighbourhood: every output voxel sees exactly :attr:`UNetConfig.context`
voxels of input on each side. Blockwise inference with that much real context
around each block therefore gives the same values as whole-volume inference,
provided the blocks start on multiples of :attr:`UNetConfig.step` (the
product of the downsampling factors: max-pooling grids must line up).

Shape arithmetic (per axis, factors ``f_1 .. f_L``, two 3-voxel convolutions
per level): going down, ``n -> (n - 4) / f``; at the bottom ``n -> n - 4``;
going up, ``n -> n * f - 4``. :meth:`UNetConfig.output_shape` applies it and
checks divisibility; :meth:`UNetConfig.valid_input_shape` finds the smallest
valid input for a wanted output.

Outputs are affinities, one channel per offset (z, y, x), after a sigmoid.
A network trained with local shape descriptors as an auxiliary target
(:attr:`UNetConfig.lsd_channels` > 0) has that many more head channels after
the affinities; :meth:`UNet3D.forward` and :meth:`UNet3D.forward_logits` drop
them, so every predictor sees affinities only, and only the training loop
reads them (:meth:`UNet3D.forward_train`).
Channel ``c`` at voxel ``j`` is the probability that ``j`` and ``j + offset_c``
belong to the same object (gunpowder's and waterz' convention with negative
offsets: ``(-1, 0, 0)`` links ``j`` with the voxel below it in z).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

#: Nearest neighbours plus long-range offsets at 3 and 9 voxels on every axis.
DEFAULT_OFFSETS: tuple[tuple[int, int, int], ...] = (
    (-1, 0, 0), (0, -1, 0), (0, 0, -1),
    (-3, 0, 0), (0, -3, 0), (0, 0, -3),
    (-9, 0, 0), (0, -9, 0), (0, 0, -9),
)
ISOTROPIC: tuple[tuple[int, int, int], ...] = ((2, 2, 2), (2, 2, 2))
ANISOTROPIC: tuple[tuple[int, int, int], ...] = ((1, 3, 3), (2, 2, 2))


@dataclass(frozen=True)
class UNetConfig:
    """Everything that defines a network's shape (stored with its weights).

    Attributes
    ----------
    downsample
        Per level, the max-pooling factors (z, y, x), e.g. ``((2, 2, 2), (2, 2, 2))``
        (isotropic) or ``((1, 3, 3), (2, 2, 2))`` (anisotropic).
    base_features
        Feature maps at the top level.
    feature_factor
        Multiplier of the feature maps per level down.
    offsets
        Affinity offsets (z, y, x), one output channel each.
    in_channels
        Input channels (1 for EM).
    lsd_channels
        Extra output channels after the affinities, trained on local shape
        descriptors (0: none). Inference never returns them.
    """

    downsample: tuple[tuple[int, int, int], ...] = ISOTROPIC
    base_features: int = 12
    feature_factor: int = 2
    offsets: tuple[tuple[int, int, int], ...] = DEFAULT_OFFSETS
    in_channels: int = 1
    lsd_channels: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "downsample", tuple(tuple(int(v) for v in f) for f in self.downsample))
        object.__setattr__(self, "offsets", tuple(tuple(int(v) for v in o) for o in self.offsets))
        if any(len(f) != 3 or min(f) < 1 for f in self.downsample):
            raise ValueError(f"downsample factors must be 3 positive ints per level, got {self.downsample}")
        if not self.offsets or any(len(o) != 3 for o in self.offsets):
            raise ValueError(f"offsets must be a non-empty list of (z, y, x), got {self.offsets}")
        object.__setattr__(self, "lsd_channels", int(self.lsd_channels))
        if self.lsd_channels < 0:
            raise ValueError(f"lsd_channels must be >= 0, got {self.lsd_channels}")

    @property
    def levels(self) -> int:
        """Number of downsampling steps."""
        return len(self.downsample)

    @property
    def out_channels(self) -> int:
        """Channels that inference returns: one affinity channel per offset (never the LSDs)."""
        return len(self.offsets)

    @property
    def head_channels(self) -> int:
        """Channels of the last convolution: the affinities, then :attr:`lsd_channels`."""
        return self.out_channels + self.lsd_channels

    @property
    def step(self) -> tuple[int, int, int]:
        """Product of the downsampling factors: blocks must start on multiples of it."""
        return tuple(math.prod(f[a] for f in self.downsample) for a in range(3))

    @property
    def context(self) -> tuple[int, int, int]:
        """Input voxels needed on each side of an output voxel (z, y, x)."""
        shrink = [0, 0, 0]
        scale = [1, 1, 1]
        for f in self.downsample:
            for a in range(3):
                shrink[a] += 2 * 4 * scale[a]  # 4 voxels lost down and 4 up, at this scale
                scale[a] *= f[a]
        for a in range(3):
            shrink[a] += 4 * scale[a]
        return tuple(s // 2 for s in shrink)

    def _axis_output(self, a: int, n: int) -> int | None:
        """Output length along axis ``a`` for input length ``n`` (None: not valid)."""
        m = int(n)
        for f in self.downsample:
            m -= 4
            if m <= 0 or m % f[a]:
                return None
            m //= f[a]
        m -= 4
        if m <= 0:
            return None
        for f in reversed(self.downsample):
            m = m * f[a] - 4
        return m

    def output_shape(self, input_shape) -> tuple[int, int, int]:
        """Output shape for an input shape, or ValueError if the input is not valid."""
        out = [self._axis_output(a, n) for a, n in enumerate(input_shape)]
        if len(out) != 3 or None in out:
            raise ValueError(
                f"input shape {tuple(input_shape)} is not valid for downsampling {self.downsample}: "
                f"use valid_input_shape()"
            )
        return tuple(out)

    def valid_input_shape(self, min_output_shape) -> tuple[int, int, int]:
        """Smallest valid input whose output is at least ``min_output_shape``."""
        shape = []
        for a, want in enumerate(min_output_shape):
            n = 2 * self.context[a] + 1
            while (self._axis_output(a, n) or -1) < max(int(want), 1):
                n += 1
            shape.append(n)
        return tuple(shape)

    def to_dict(self) -> dict:
        """Plain lists and ints (JSON- and ``torch.load(weights_only=True)``-safe)."""
        d = asdict(self)
        d["downsample"] = [list(f) for f in self.downsample]
        d["offsets"] = [list(o) for o in self.offsets]
        if not self.lsd_channels:
            # a network without LSDs keeps the dict it always had: configs stored in weights
            # files and run folders before the field existed still compare equal
            del d["lsd_channels"]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> UNetConfig:
        """Inverse of :meth:`to_dict`."""
        return cls(
            downsample=tuple(tuple(f) for f in d["downsample"]),
            base_features=int(d["base_features"]),
            feature_factor=int(d["feature_factor"]),
            offsets=tuple(tuple(o) for o in d["offsets"]),
            in_channels=int(d.get("in_channels", 1)),
            lsd_channels=int(d.get("lsd_channels", 0)),
        )


def _conv_pass(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(cin, cout, 3), nn.LeakyReLU(0.01, inplace=True),
        nn.Conv3d(cout, cout, 3), nn.LeakyReLU(0.01, inplace=True),
    )


def _center_crop(x: torch.Tensor, shape) -> torch.Tensor:
    begin = [(s - t) // 2 for s, t in zip(x.shape[-3:], shape, strict=True)]
    return x[..., begin[0]:begin[0] + shape[0], begin[1]:begin[1] + shape[1], begin[2]:begin[2] + shape[2]]


class UNet3D(nn.Module):
    """3D U-Net, valid convolutions, affinity output (sigmoid).

    Parameters
    ----------
    config
        Shape of the network; see :class:`UNetConfig`.

    Notes
    -----
    No normalisation layers: batch or group statistics would make a voxel's
    output depend on the rest of the block, and tiling would no longer equal
    whole-volume inference.
    """

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or UNetConfig()
        c = self.config
        feats = [c.base_features * c.feature_factor ** i for i in range(c.levels + 1)]
        self.down = nn.ModuleList()
        self.pool = nn.ModuleList()
        cin = c.in_channels
        for i, f in enumerate(c.downsample):
            self.down.append(_conv_pass(cin, feats[i]))
            self.pool.append(nn.MaxPool3d(f, stride=f))
            cin = feats[i]
        self.bottom = _conv_pass(cin, feats[-1])
        self.up = nn.ModuleList()
        self.up_conv = nn.ModuleList()
        for i in reversed(range(c.levels)):
            f = c.downsample[i]
            self.up.append(nn.ConvTranspose3d(feats[i + 1], feats[i], f, stride=f))
            self.up_conv.append(_conv_pass(2 * feats[i], feats[i]))
        self.head = nn.Conv3d(feats[0], c.head_channels, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv3d | nn.ConvTranspose3d):
                nn.init.kaiming_normal_(m.weight, a=0.01, nonlinearity="leaky_relu")
                nn.init.zeros_(m.bias)

    def _head(self, x: torch.Tensor) -> torch.Tensor:
        """Every head channel (affinity logits, then LSD logits), shape ``(B, head_channels, *out)``."""
        skips = []
        for conv, pool in zip(self.down, self.pool, strict=True):
            x = conv(x)
            skips.append(x)
            x = pool(x)
        x = self.bottom(x)
        for up, conv, skip in zip(self.up, self.up_conv, reversed(skips), strict=True):
            x = up(x)
            x = conv(torch.cat([_center_crop(skip, x.shape[-3:]), x], dim=1))
        return self.head(x)

    def forward_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Affinity logits (before the sigmoid), shape ``(B, len(offsets), *output_shape)``.

        The LSD channels, if any, are cut off here, so neither this nor
        :meth:`forward` can hand them to a predictor.
        """
        y = self._head(x)
        return y if not self.config.lsd_channels else y[:, :self.config.out_channels]

    def forward_train(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(affinity logits, LSDs in [0, 1] or None)`` from one pass (the training loop's call)."""
        y = self._head(x)
        c = self.config.out_channels
        if not self.config.lsd_channels:
            return y, None
        # LSD targets lie in [0, 1] (lsd's convention): a sigmoid, then MSE
        return y[:, :c], torch.sigmoid(y[:, c:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Affinities in ``[0, 1]``, shape ``(B, len(offsets), *output_shape)``."""
        return torch.sigmoid(self.forward_logits(x))


def n_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def save_network(model: UNet3D, path: str | Path, **metadata) -> Path:
    """Write config, weights (fp32) and plain metadata to ``path`` (torch format)."""
    path = Path(path)
    state = {k: v.detach().cpu().float().contiguous() for k, v in model.state_dict().items()}
    torch.save({"config": model.config.to_dict(), "state_dict": state, "metadata": dict(metadata)}, path)
    return path


def load_network(path: str | Path) -> UNet3D:
    """Load a network written by :func:`save_network` (``weights_only``: no code runs)."""
    blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    model = UNet3D(UNetConfig.from_dict(blob["config"]))
    model.load_state_dict(blob["state_dict"])
    model.eval()
    return model


def network_metadata(path: str | Path) -> dict:
    """The metadata stored by :func:`save_network` (training data, chosen post-processing, scores)."""
    blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    return dict(blob.get("metadata", {}))
