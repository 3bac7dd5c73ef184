"""A box in world units: the region type that block-wise work, reads and crops share.

A :class:`Roi` is a half-open box ``[begin, end)`` per axis, in nm (the
funlib.persistence habit: regions are world boxes, arrays know their voxel
size). It knows nothing of voxels: turning a box into voxel indices is the
job of :class:`~napari_connectome.volume.model.Level` (``roi``,
``voxel_slices``, ``roi_of``, ``read``), the one place where nm become
voxels. A grid over an array that has no world coordinates uses the same
type in voxel units (begin 0, one unit per voxel) and
:meth:`Roi.index_slices`.

A level's boxes span its spatial axes only; its channel and time axes are
always read whole.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Literal

from napari_connectome.errors import InputError

SnapMode = Literal["grow", "shrink", "closest"]
SNAP_MODES = ("grow", "shrink", "closest")
# A corner within this fraction of a grid step of a grid line is on it: nm
# values such as 3 × 3.6 are not exact in binary, and must not grow a box by
# a whole voxel.
GRID_TOLERANCE = 1e-6


def coords(values, dims: int | None, what: str) -> tuple[float, ...]:
    """``values`` as a tuple of finite floats; a scalar is repeated ``dims`` times.

    An :class:`~napari_connectome.errors.InputError` naming ``what`` for
    anything else (a wrong count, a non-number, inf or nan).
    """
    if isinstance(values, numbers.Real) and not isinstance(values, bool):
        if dims is None:
            raise InputError("roi", f"{what} {values!r} needs one value per axis")
        values = (values,) * dims
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise InputError("roi", f"{what} {values!r} is not a list of numbers") from None
    if dims is not None and len(out) != dims:
        raise InputError("roi", f"{what} {out} has {len(out)} values for a box of {dims} axes")
    if not all(math.isfinite(v) for v in out):
        raise InputError("roi", f"{what} {out} is not finite")
    return out


def _fmt(x: float) -> str:
    return f"{x:.10g}"


class Roi:
    """A half-open box ``[begin, end)`` in world units (nm), one interval per spatial axis.

    Immutable, hashable and compared by value. Every operation returns a new
    box; an operation that leaves no volume returns an *empty* box
    (:attr:`empty`), never raises.

    Parameters
    ----------
    begin
        Lower corner, one value per axis.
    shape
        Extent per axis, each ≥ 0 (or a single number for every axis). Use
        :meth:`from_bounds` to give the upper corner instead.
    """

    # The corners are stored, not begin and shape: two boxes that share a
    # face then share it to the bit, which is what makes a grid tile exactly.
    __slots__ = ("_begin", "_end")

    def __init__(self, begin: Sequence[float], shape: Sequence[float] | float) -> None:
        b = coords(begin, None, "begin")
        s = coords(shape, len(b), "shape")
        if any(v < 0 for v in s):
            raise InputError("roi", f"shape {s} has a negative extent")
        self._set(b, tuple(x + n for x, n in zip(b, s, strict=True)))

    def _set(self, begin: tuple[float, ...], end: tuple[float, ...]) -> None:
        # -0.0 and 0.0 are equal but print differently: keep one of them.
        object.__setattr__(self, "_begin", tuple(v + 0.0 for v in begin))
        object.__setattr__(self, "_end", tuple(v + 0.0 for v in end))

    def __setattr__(self, name, value):  # immutable, so it can be a dict key
        raise AttributeError("Roi is immutable")

    def __reduce__(self):
        return (Roi.from_bounds, (self._begin, self._end))

    @classmethod
    def from_bounds(cls, begin: Sequence[float], end: Sequence[float]) -> Roi:
        """The box from ``begin`` to ``end`` (an ``end`` below ``begin`` gives an empty box there)."""
        b = coords(begin, None, "begin")
        e = coords(end, len(b), "end")
        roi = cls.__new__(cls)
        roi._set(b, tuple(max(lo, hi) for lo, hi in zip(b, e, strict=True)))
        return roi

    @classmethod
    def _trusted(cls, begin: tuple[float, ...], end: tuple[float, ...]) -> Roi:
        """A box from corners known to be finite floats with ``end >= begin`` (no checks: grids make many)."""
        roi = cls.__new__(cls)
        object.__setattr__(roi, "_begin", begin)
        object.__setattr__(roi, "_end", end)
        return roi

    # ------------------------------------------------------------ geometry
    @property
    def begin(self) -> tuple[float, ...]:
        return self._begin

    @property
    def end(self) -> tuple[float, ...]:
        return self._end

    @property
    def shape(self) -> tuple[float, ...]:
        return tuple(e - b for b, e in zip(self._begin, self._end, strict=True))

    @property
    def dims(self) -> int:
        return len(self._begin)

    @property
    def center(self) -> tuple[float, ...]:
        return tuple((b + e) / 2.0 for b, e in zip(self._begin, self._end, strict=True))

    @property
    def size(self) -> float:
        """Volume of the box (nm³ for a 3D box in nm)."""
        return math.prod(self.shape)

    @property
    def empty(self) -> bool:
        """True when the box holds no volume (an extent is 0)."""
        return any(e == b for b, e in zip(self._begin, self._end, strict=True))

    # ------------------------------------------------------------ algebra
    def _same_dims(self, other: Roi) -> None:
        if not isinstance(other, Roi):
            raise InputError("roi", f"{other!r} is not a Roi")
        if other.dims != self.dims:
            raise InputError("roi", f"{other} has {other.dims} axes, {self} has {self.dims}")

    def intersect(self, other: Roi) -> Roi:
        """The part of this box inside ``other`` (empty, at the nearer corner, when they do not meet)."""
        self._same_dims(other)
        b = tuple(max(a, c) for a, c in zip(self._begin, other._begin, strict=True))
        e = tuple(max(lo, min(a, c)) for lo, a, c in zip(b, self._end, other._end, strict=True))
        return Roi._trusted(b, e)

    def union(self, other: Roi) -> Roi:
        """The smallest box holding both (an empty box adds nothing)."""
        self._same_dims(other)
        if other.empty:
            return self
        if self.empty:
            return other
        b = tuple(min(a, c) for a, c in zip(self._begin, other._begin, strict=True))
        e = tuple(max(a, c) for a, c in zip(self._end, other._end, strict=True))
        return Roi._trusted(b, e)

    def grow(self, before: Sequence[float] | float, after: Sequence[float] | float | None = None) -> Roi:
        """The box grown by ``before`` below and ``after`` above (default: ``before``); negative shrinks.

        A box shrunk past nothing becomes empty at its centre.
        """
        lo = coords(before, self.dims, "grow")
        hi = lo if after is None else coords(after, self.dims, "grow")
        b = [a - g for a, g in zip(self._begin, lo, strict=True)]
        e = [a + g for a, g in zip(self.end, hi, strict=True)]
        for i, (x, y) in enumerate(zip(b, e, strict=True)):
            if y < x:
                b[i] = e[i] = (x + y) / 2.0
        return Roi.from_bounds(b, e)

    def shift(self, by: Sequence[float] | float) -> Roi:
        """The box moved by ``by``."""
        d = coords(by, self.dims, "shift")
        return Roi.from_bounds(tuple(a + x for a, x in zip(self._begin, d, strict=True)),
                               tuple(a + x for a, x in zip(self._end, d, strict=True)))

    def contains(self, other: Roi | Sequence[float]) -> bool:
        """Whether ``other`` (a box or a point) lies inside this box.

        An empty box is inside any box (it holds no point); a point is inside
        when ``begin <= point < end`` on every axis.
        """
        if isinstance(other, Roi):
            self._same_dims(other)
            if other.empty:
                return True
            return all(
                a <= c and f <= e
                for a, c, f, e in zip(self._begin, other._begin, other.end, self.end, strict=True)
            )
        p = coords(other, self.dims, "point")
        return all(a <= x < e for a, x, e in zip(self._begin, p, self.end, strict=True))

    def snap_to_grid(self, step: Sequence[float] | float, *, mode: SnapMode = "grow",
                     origin: Sequence[float] | float = 0.0) -> Roi:
        """The box with its corners moved onto the grid ``origin + k · step``.

        Parameters
        ----------
        step
            Grid spacing per axis (a voxel size in nm), > 0.
        mode
            ``"grow"``: the smallest grid box holding this one; ``"shrink"``:
            the largest grid box inside it (empty if none); ``"closest"``: each
            corner to its nearest grid line (halves round up).
        origin
            A point on the grid (for a level: its :attr:`Level.roi` begin,
            a voxel corner; not 0, since a level's offset is a voxel centre).

        Corners within :data:`GRID_TOLERANCE` of a step from a grid line are
        taken as on it.
        """
        step_ = coords(step, self.dims, "step")
        if any(s <= 0 for s in step_):
            raise InputError("roi", f"grid step {step_} must be positive")
        org = coords(origin, self.dims, "origin")
        lo, hi = snap_indices(
            [(b - o) / s for b, o, s in zip(self._begin, org, step_, strict=True)],
            [(e - o) / s for e, o, s in zip(self.end, org, step_, strict=True)],
            mode=mode, what=self,
        )
        return Roi.from_bounds(
            tuple(o + k * s for o, k, s in zip(org, lo, step_, strict=True)),
            tuple(o + k * s for o, k, s in zip(org, hi, step_, strict=True)),
        )

    def index_slices(self) -> tuple[slice, ...]:
        """Slices of a box in voxel units (integer corners): for grids over plain arrays.

        A box in nm goes through :meth:`Level.voxel_slices` instead, which
        knows the voxel size and offset.
        """
        if all(v.is_integer() for v in self._begin + self._end):  # the usual case, and a hot one
            return tuple(slice(int(a), int(b)) for a, b in zip(self._begin, self._end, strict=True))
        lo, hi = snap_indices(self._begin, self._end, mode=None, what=self)
        return tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))

    # ------------------------------------------------------------ protocol
    def __eq__(self, other) -> bool:
        return isinstance(other, Roi) and self._begin == other._begin and self._end == other._end

    def __hash__(self) -> int:
        return hash((self._begin, self._end))

    def __repr__(self) -> str:
        axes = ", ".join(f"{_fmt(b)}:{_fmt(e)}" for b, e in zip(self._begin, self.end, strict=True))
        return f"Roi[{axes}]"


def snap_indices(lo: Iterable[float], hi: Iterable[float], *, mode: SnapMode | None,
                 what: object = "box") -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Grid indices of a box's corners given in grid steps (``(corner - origin) / step``).

    ``mode=None`` is strict: a corner off the grid is an
    :class:`~napari_connectome.errors.InputError` naming ``what``. Otherwise
    as :meth:`Roi.snap_to_grid`. ``hi`` never ends below ``lo``.
    """
    lo, hi = list(lo), list(hi)
    if mode is not None and mode not in SNAP_MODES:
        raise InputError("snap", f"{mode!r} is not one of {SNAP_MODES} (or None: strict)")
    out_lo, out_hi = [], []
    for a, b in zip(lo, hi, strict=True):
        ra, rb = math.floor(a + 0.5), math.floor(b + 0.5)
        on_a, on_b = abs(a - ra) <= GRID_TOLERANCE, abs(b - rb) <= GRID_TOLERANCE
        if mode is None:
            if not (on_a and on_b):
                raise InputError(
                    "roi", f"box {what} is not on the voxel grid; snap it first (mode 'grow', 'shrink' or 'closest')"
                )
            i, j = ra, rb
        elif mode == "grow":
            i = ra if on_a else math.floor(a)
            j = rb if on_b else math.ceil(b)
        elif mode == "shrink":
            i = ra if on_a else math.ceil(a)
            j = rb if on_b else math.floor(b)
        else:
            i, j = ra, rb
        out_lo.append(int(i))
        out_hi.append(int(max(i, j)))
    return tuple(out_lo), tuple(out_hi)


def parse_box(values, *, name: str = "--box") -> Roi:
    """Six numbers ``Z0 Y0 X0 Z1 Y1 X1`` (nm) as a :class:`Roi`; a one-line error naming ``name`` otherwise."""
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError):
        raise InputError(name, f"needs six numbers Z0 Y0 X0 Z1 Y1 X1 in nm, got {values!r}") from None
    if len(values) != 6 or not all(math.isfinite(v) for v in values):
        raise InputError(name, f"needs six finite numbers Z0 Y0 X0 Z1 Y1 X1 in nm, got {values}")
    begin, end = values[:3], values[3:]
    if any(e <= b for b, e in zip(begin, end, strict=True)):
        raise InputError(name, f"each end must lie beyond its begin, got begin {begin} end {end}")
    return Roi.from_bounds(begin, end)
