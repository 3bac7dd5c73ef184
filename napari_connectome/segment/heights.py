"""Supervoxels by steepest ascent of the distance to the nearest membrane — exact in blocks.

The fragments of the local-shape-descriptor pipeline (funkelab/lsd) are the
basins of a watershed of the distance transform of the cell interiors: seeds
at the distance maxima, flooded downhill. Flooding is not local (a basin
depends on every seed), so a block-wise flood stitched at the faces is only
*like* the whole-volume one. Here the same surface is descended by steepest
ascent instead (:mod:`~napari_connectome.segment.ascent`), which is local,
so blocks give exactly the whole-volume labels:

- ``inside`` = boundary below ``threshold`` (the boundary map quantised to
  ``uint8`` first, as it is stored, so in memory and in blocks agree bit for bit);
- ``d`` = Euclidean distance to the nearest non-inside voxel, in units of the
  finest voxel edge (anisotropy respected), *capped* at ``cap``: a capped
  distance needs only ``cap`` of context to be exact;
- ``h`` = ``d`` smoothed by a Gaussian (``sigma``, finest voxels) plus
  ``boundary_weight · (1 − boundary)`` inside cells, and ``−boundary`` on
  membranes (so a membrane voxel climbs to the cell it is least a membrane
  towards). With ``boundary_weight`` 0 the ascent follows the distance alone
  (lsd's fragments); a large weight lets the boundary map steer it inside
  cells too and leaves the distance to break its ties — which helped on
  anisotropic data (the choice is made on held-out data, like the others);
- the weight of the edge between ``u`` and ``v`` is ``h(u) + h(v)``: a voxel's
  strongest edge leads to its highest neighbour.

Deep inside large cells the capped distance is flat. The ascent's tie order
(towards higher voxel indices first) drains a flat region towards a few
roots rather than one per column, and a flat region at the *top* of the
surface (:attr:`HeightEdges.plateau_weight`) is joined into one supervoxel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_connectome.errors import InputError

#: Gaussian kernels reach ``truncate · sigma`` (scipy's default).
TRUNCATE = 4.0


def quantize_boundary(boundary: np.ndarray) -> np.ndarray:
    """The boundary map as it is stored: ``uint8``, 255 = membrane."""
    boundary = np.asarray(boundary)
    if boundary.dtype == np.uint8:
        return boundary
    return np.clip(np.rint(boundary * 255.0), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class HeightParams:
    """How the boundary map becomes the ascended surface.

    Attributes
    ----------
    threshold
        Boundary level (0..1) below which a voxel is inside a cell.
    sigma
        Smoothing of the distance, in finest voxel edges (0: none).
    cap
        Distances are capped here, in finest voxel edges (the context a block reads grows with it).
    voxel_size
        (z, y, x) voxel size in any unit; only the ratios matter.
    boundary_weight
        How much ``1 − boundary`` adds to the distance inside cells (finest voxel edges per unit).
    """

    threshold: float = 0.5
    sigma: float = 1.0
    cap: float = 16.0
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0)
    boundary_weight: float = 0.0

    def __post_init__(self) -> None:
        vs = tuple(float(v) for v in self.voxel_size)
        if len(vs) != 3 or min(vs) <= 0:
            raise InputError("voxel size", f"need three positive sizes, got {self.voxel_size!r}")
        if not 0.0 < float(self.threshold) <= 1.0:
            raise InputError("--threshold", f"the inside threshold must be in (0, 1], got {self.threshold}")
        if float(self.sigma) < 0 or float(self.cap) < 1 or float(self.boundary_weight) < 0:
            raise InputError("supervoxels", f"need sigma ≥ 0, cap ≥ 1 and boundary weight ≥ 0, got sigma "
                                            f"{self.sigma}, cap {self.cap}, boundary weight {self.boundary_weight}")
        object.__setattr__(self, "voxel_size", vs)

    @property
    def ratio(self) -> tuple[float, float, float]:
        """Each axis's voxel edge in finest edges."""
        finest = min(self.voxel_size)
        return tuple(v / finest for v in self.voxel_size)  # type: ignore[return-value]

    @property
    def sigmas(self) -> tuple[float, ...]:
        """The Gaussian's sigma per axis, in that axis's voxels."""
        return tuple(float(self.sigma) / r for r in self.ratio)

    @property
    def context(self) -> tuple[int, int, int]:
        """Voxels of context per axis that make a block's surface exact.

        The capped distance reaches ``cap``; the Gaussian adds its radius (scipy's
        ``int(truncate · sigma + 0.5)``); one more for the edge below a block and one spare.
        """
        out = []
        for r, s in zip(self.ratio, self.sigmas, strict=True):
            radius = int(TRUNCATE * s + 0.5) if s > 0 else 0
            out.append(int(np.ceil(float(self.cap) / r)) + radius + 2)
        return tuple(out)  # type: ignore[return-value]


def surface(boundary_u8: np.ndarray, params: HeightParams) -> np.ndarray:
    """The ascended surface ``h`` (float32) of a ``uint8`` boundary map (see the module notes)."""
    from scipy import ndimage as ndi

    cut = int(np.rint(float(params.threshold) * 255.0))
    inside = boundary_u8 < cut
    cap = float(params.cap)
    if inside.all():  # no membrane in reach: every distance is at least the cap
        d = np.full(boundary_u8.shape, cap, dtype=np.float64)
    else:
        d = np.minimum(ndi.distance_transform_edt(inside, sampling=params.ratio), cap)
    if params.sigma > 0:
        d = ndi.gaussian_filter(d, params.sigmas, mode="reflect", truncate=TRUNCATE)
    boundary = boundary_u8.astype(np.float64) / 255.0
    if params.boundary_weight > 0:
        d = d + float(params.boundary_weight) * (1.0 - boundary)
    return np.where(inside, d, -boundary).astype(np.float32)


class HeightEdges:
    """``(3, z, y, x)`` edge weights ``h(v) + h(v − e_c)``, computed per request from a boundary map.

    An array-like for :func:`~napari_connectome.segment.ascent.ascent_supervoxels`:
    indexing it with ``(slice(0, 3), z, y, x)`` reads the boundary map over
    that box grown by :attr:`HeightParams.context` and returns the exact
    weights there. Picklable when ``boundary`` is (a zarr array, a
    :class:`~napari_connectome.pyramid.resumable.ResumableOutput`), so Dask
    processes can use it.

    Parameters
    ----------
    boundary
        ``(z, y, x)`` ``uint8`` boundary map (255 = membrane), any array-like
        with NumPy indexing or a ``read(key)`` method.
    params
        How the surface is made.
    begin, end
        The window of ``boundary`` that is the volume here (voxels; default:
        all of it): nothing outside it is read, as if the volume ended there.
    """

    def __init__(self, boundary, params: HeightParams, *, begin=None, end=None) -> None:
        full = tuple(int(s) for s in boundary.shape)
        if len(full) != 3:
            raise InputError("boundary", f"need (z, y, x), got shape {full}")
        self.boundary, self.params = boundary, params
        self.begin = tuple(int(b) for b in (begin or (0, 0, 0)))
        self.end = tuple(int(e) for e in (end or full))
        self.size = tuple(e - b for b, e in zip(self.begin, self.end, strict=True))
        if min(self.size) < 1:
            raise InputError("boundary", f"the volume is empty: window {self.begin}..{self.end}")

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (3, *self.size)

    @property
    def plateau_weight(self) -> float:
        """The largest weight an edge can have: both ends at the capped top of the surface.

        The ascent joins neighbouring voxels whose strongest edge reaches it (a flat
        interior deeper than the cap is one supervoxel, not staircase pieces).
        """
        top = np.float32(float(self.params.cap) + float(self.params.boundary_weight))
        return float(top + top)

    def _read(self, lo, hi) -> np.ndarray:
        key = tuple(slice(b + a, b + z) for b, a, z in zip(self.begin, lo, hi, strict=True))
        reader = getattr(self.boundary, "read", None)
        data = reader(key) if callable(reader) else self.boundary[key]
        return quantize_boundary(np.asarray(data))

    def __getitem__(self, key) -> np.ndarray:
        if not isinstance(key, tuple) or len(key) != 4:
            raise IndexError("HeightEdges takes (channels, z, y, x) slices")
        channels = range(3)[key[0]]
        box = [k.indices(n)[:2] for k, n in zip(key[1:], self.size, strict=True)]
        lo = [a for a, _ in box]
        hi = [b for _, b in box]
        ctx = self.params.context
        r_lo = [max(0, a - 1 - c) for a, c in zip(lo, ctx, strict=True)]
        r_hi = [min(n, b + c) for b, c, n in zip(hi, ctx, self.size, strict=True)]
        h = surface(self._read(r_lo, r_hi), self.params)
        # h over [lo - 1, hi), the voxel below the box's low face where it exists
        h_lo = [max(0, a - 1) for a in lo]
        h = h[tuple(slice(a - r, b - r) for a, b, r in zip(h_lo, hi, r_lo, strict=True))]
        size = [b - a for a, b in zip(lo, hi, strict=True)]
        out = np.full((len(channels), *size), -np.inf, dtype=np.float32)
        for i, c in enumerate(channels):
            below = 1 if lo[c] > 0 else 0  # is there a voxel below the box in axis c?
            here = [slice(a - s, b - s) for a, b, s in zip(lo, hi, h_lo, strict=True)]
            lower = list(here)
            lower[c] = slice(here[c].start - 1, here[c].stop - 1)
            dst = [slice(None)] * 3
            if not below:  # the volume's low face: no edge below the first voxels
                here[c] = slice(here[c].start + 1, here[c].stop)
                lower[c] = slice(lower[c].start + 1, lower[c].stop)
                dst[c] = slice(1, None)
            out[(i, *dst)] = h[tuple(here)] + h[tuple(lower)]
        return out


def height_supervoxels(boundary: np.ndarray, params: HeightParams | None = None, *,
                       block_shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """Supervoxels (uint64, 1..N) of a boundary map held in memory; the same labels for any ``block_shape``.

    Parameters
    ----------
    boundary
        ``(z, y, x)``, float in [0, 1] or ``uint8`` (255 = membrane).
    params
        How the surface is made (default :class:`HeightParams`).
    block_shape
        Work in blocks of this many voxels (None: one block).
    """
    from napari_connectome.segment.ascent import ascent_supervoxels

    boundary = quantize_boundary(boundary)
    return ascent_supervoxels(HeightEdges(boundary, params or HeightParams()), block_shape=block_shape)
