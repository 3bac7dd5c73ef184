"""What a synthetic EM volume looks like: one frozen, hashable dataclass."""

from __future__ import annotations

import math
from dataclasses import dataclass

from napari_connectome.config import check_voxel_size
from napari_connectome.errors import InputError

_SOURCE = "synthetic spec"


@dataclass(frozen=True)
class SyntheticSpec:
    """Parameters of a synthetic EM volume and its ground truth.

    Everything the generator draws follows from these fields and ``seed``:
    two equal specs give bit-identical volumes. Lengths are in nm, grey levels
    on the 0–255 scale of the uint8 raw volume.

    Parameters
    ----------
    shape
        Size of the volume in voxels, ``(z, y, x)``.
    voxel_size
        Voxel size in nm, ``(z, y, x)``; anisotropic sizes such as
        ``(40, 8, 8)`` are fine.
    offset
        World position in nm of the centre of voxel ``(0, 0, 0)``.
    seed
        Seed of everything random.
    n_neurons
        Number of neurons. None draws neurons until their summed tube volume
        reaches ``fill_fraction`` of the volume.
    fill_fraction
        Target fraction of the volume inside neurites when ``n_neurons`` is
        None (counted before overlaps, so the labelled fraction is a little
        lower).
    radius_nm
        ``(min, max)`` radius of the neurites in nm. Trunks draw a radius in
        this range; the radius then drifts smoothly along the neurite and
        branches are thinner than their parent, never below ``min``.
    segment_length_nm
        Length of the straight capsule segments that make up a centre line.
    tortuosity
        Standard deviation of the random change of direction per segment
        (radians, roughly); 0 gives straight neurites.
    branch_probability
        Probability that a neurite starts a branch at each segment.
    branch_length_nm
        ``(min, max)`` length of a branch in nm.
    membrane_thickness_nm
        Thickness of the dark band drawn where a neurite meets another one or
        the extracellular space (centred on the boundary of the labels).
    cytoplasm_level, cytoplasm_spread
        Mean grey level of cytoplasm, and the range of the per-neuron tone
        around it.
    membrane_level, extracellular_level
        Grey level of membranes and of the extracellular space.
    texture_amplitude
        Amplitude in grey levels of the smooth texture of the cytoplasm.
    organelle_darkness
        How much (0–1) the dark organelle-like blobs darken the cytoplasm.
    noise_sd
        Standard deviation of the per-voxel noise, in grey levels.
    synapse_density
        Presynaptic sites per µm³ drawn at contacts between neurites (see
        :mod:`napari_connectome.synthetic.synapses`); 0 draws none and leaves
        the volume exactly as without synapses.
    vesicle_radius_nm
        Radius of the synaptic vesicles painted behind each presynaptic site.
    """

    shape: tuple[int, int, int]
    voxel_size: tuple[float, float, float] = (8.0, 8.0, 8.0)
    offset: tuple[float, float, float] = (0.0, 0.0, 0.0)
    seed: int = 0
    n_neurons: int | None = None
    fill_fraction: float = 0.5
    radius_nm: tuple[float, float] = (60.0, 240.0)
    segment_length_nm: float = 160.0
    tortuosity: float = 0.25
    branch_probability: float = 0.04
    branch_length_nm: tuple[float, float] = (600.0, 3000.0)
    membrane_thickness_nm: float = 16.0
    cytoplasm_level: float = 175.0
    cytoplasm_spread: float = 50.0
    membrane_level: float = 35.0
    extracellular_level: float = 105.0
    texture_amplitude: float = 8.0
    organelle_darkness: float = 0.35
    noise_sd: float = 10.0
    synapse_density: float = 0.0
    vesicle_radius_nm: float = 20.0

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape)
        if len(shape) != 3 or any(s <= 0 for s in shape):
            raise InputError(
                _SOURCE, f"shape must be three positive voxel counts (z, y, x), got {self.shape}"
            )
        object.__setattr__(self, "shape", shape)
        vs = check_voxel_size(self.voxel_size, source=_SOURCE, ndim=3)
        object.__setattr__(self, "voxel_size", vs)
        off = tuple(float(o) for o in self.offset)
        if len(off) != 3 or not all(math.isfinite(o) for o in off):
            raise InputError(
                _SOURCE, f"offset must be three finite numbers (nm), got {self.offset}"
            )
        object.__setattr__(self, "offset", off)
        object.__setattr__(self, "seed", int(self.seed))
        if self.n_neurons is not None:
            if int(self.n_neurons) < 0:
                raise InputError(_SOURCE, f"n_neurons must be ≥ 0, got {self.n_neurons}")
            object.__setattr__(self, "n_neurons", int(self.n_neurons))
        if not 0.0 <= self.fill_fraction <= 1.0:
            raise InputError(_SOURCE, f"fill_fraction must be in [0, 1], got {self.fill_fraction}")
        for name in ("radius_nm", "branch_length_nm"):
            lo, hi = (float(v) for v in getattr(self, name))
            if not 0 < lo <= hi < math.inf:
                raise InputError(
                    _SOURCE,
                    f"{name} must be (min, max) with 0 < min ≤ max, got {getattr(self, name)}",
                )
            object.__setattr__(self, name, (lo, hi))
        for name in ("segment_length_nm", "membrane_thickness_nm", "vesicle_radius_nm"):
            value = float(getattr(self, name))
            if not 0 < value < math.inf:
                raise InputError(_SOURCE, f"{name} must be > 0 nm, got {getattr(self, name)}")
            object.__setattr__(self, name, value)
        if not 0.0 <= self.branch_probability <= 1.0:
            raise InputError(
                _SOURCE, f"branch_probability must be in [0, 1], got {self.branch_probability}"
            )
        if not 0.0 <= self.organelle_darkness <= 1.0:
            raise InputError(
                _SOURCE, f"organelle_darkness must be in [0, 1], got {self.organelle_darkness}"
            )
        for name in ("tortuosity", "noise_sd", "texture_amplitude", "cytoplasm_spread", "synapse_density"):
            value = float(getattr(self, name))
            if not 0 <= value < math.inf:
                raise InputError(_SOURCE, f"{name} must be ≥ 0, got {getattr(self, name)}")
            object.__setattr__(self, name, value)
        for name in ("cytoplasm_level", "membrane_level", "extracellular_level"):
            value = float(getattr(self, name))
            if not 0 <= value <= 255:
                raise InputError(_SOURCE, f"{name} must be a grey level in [0, 255], got {value}")
            object.__setattr__(self, name, value)

    @property
    def extent_nm(self) -> tuple[float, float, float]:
        """Size of the volume in nm along (z, y, x)."""
        return tuple(s * v for s, v in zip(self.shape, self.voxel_size, strict=True))

    @property
    def n_voxels(self) -> int:
        return self.shape[0] * self.shape[1] * self.shape[2]
