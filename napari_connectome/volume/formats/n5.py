"""N5 datasets and multiscale groups, read through tensorstore's ``n5`` driver.

N5 lists dimensions fastest first (``x, y, z``); tensorstore keeps that order,
and this backend presents the transposed view (``z, y, x``), with every piece
of metadata reversed to match.

Layouts read
------------
* a single dataset (``attributes.json`` with ``dimensions`` and ``dataType``);
* a multiscale group: datasets ``s0``, ``s1``, ... as written by
  BigDataViewer, n5-viewer, paintera and the COSEM/OpenOrganelle tools.

Geometry, first match wins
--------------------------
* per dataset, COSEM's ``transform`` (``axes``, ``scale``, ``translate``,
  ``units``): voxel size and centre of voxel 0 of that level as they stand;
* otherwise a base resolution, from the group or else from ``s0``:
  ``pixelResolution`` ``{"dimensions": [x, y, z], "unit": "nm"}`` (n5-viewer)
  or ``resolution`` ``[x, y, z]`` with optional ``units`` (paintera, BDV),
  times each level's ``downsamplingFactors`` (or the group's ``scales``, or
  the ratio of the shapes when neither is stored). The ``offset`` attribute
  (physical units, ``x, y, z``) places level 0; downsampled levels start at
  level 0's corner, as n5-viewer's mipmap transform says
  (:func:`~napari_connectome.volume.checks.level_offset`).

With no resolution at all a voxel size is assumed and the volume says so.
"""

from __future__ import annotations

from napari_connectome.errors import InputError
from napari_connectome.volume.checks import assumed_note, assumed_voxel_size, level_offset
from napari_connectome.volume.formats._meta import (
    Store,
    by_size,
    downsampling_factors,
    inconsistent,
    numbers,
    resolve,
    start_open,
    unit_to_nm,
    wrap_store,
)
from napari_connectome.volume.location import Location
from napari_connectome.volume.model import Level, MultiscaleVolume

FORMAT = "n5"
_N5_AXES = ("x", "y", "z", "c", "t")
_MAX_LEVELS = 64
_MAX_LISTED = 12


def _is_dataset(attrs: dict) -> bool:
    return "dimensions" in attrs and "dataType" in attrs


def sniff(location: Location) -> bool:
    """True for an N5 dataset, multiscale group or container (reads only metadata)."""
    if location.is_local and not location.local_path.is_dir():
        return False
    store = Store(location)
    attrs = store.read_attrs("attributes.json")
    if _is_dataset(attrs) or "n5" in attrs:
        return True
    if _is_dataset(store.read_attrs("s0/attributes.json")):
        return True
    return location.path.rstrip("/").lower().endswith(".n5") and store.exists("attributes.json")


def _unit_factors(units, n: int, src: str) -> list[float]:
    """nm per stored unit for ``n`` axes (N5 order); nm when no unit is given."""
    if units is None or units == "":
        return [1.0] * n
    values = [units] * n if isinstance(units, str) else list(units)
    values = values[:n] + [None] * (n - len(values))
    out = []
    for u in values:
        factor = 1.0 if u in (None, "") else unit_to_nm(u)
        if factor is None:
            raise InputError(src, f"unit {u!r} is not a length")
        out.append(factor)
    return out


def _resolution(attrs: dict, src: str) -> list[float] | None:
    """Resolution in nm, N5 order, from ``pixelResolution`` or ``resolution``; None if absent."""
    pr = attrs.get("pixelResolution")
    if isinstance(pr, dict) and "dimensions" in pr:
        dims, units = pr["dimensions"], pr.get("unit")
    elif isinstance(pr, list):
        dims, units = pr, attrs.get("units", attrs.get("unit"))
    elif "resolution" in attrs:
        dims, units = attrs["resolution"], attrs.get("units", attrs.get("unit"))
    else:
        return None
    values = numbers(dims, source=src, what="resolution")
    factors = _unit_factors(units, len(values), src)
    return [v * f for v, f in zip(values, factors, strict=True)]


def _offset(attrs: dict, src: str) -> list[float] | None:
    """``offset`` in nm, N5 order; None if absent."""
    if "offset" not in attrs:
        return None
    values = numbers(attrs["offset"], source=src, what="offset")
    pr = attrs.get("pixelResolution")
    units = pr.get("unit") if isinstance(pr, dict) else attrs.get("units", attrs.get("unit"))
    factors = _unit_factors(units, len(values), src)
    return [v * f for v, f in zip(values, factors, strict=True)]


def _cosem(attrs: dict, axes_zyx: tuple[str, ...], src: str):
    """COSEM ``transform``: (voxel size, offset) in our axis order; None if absent."""
    t = attrs.get("transform")
    if not isinstance(t, dict) or "scale" not in t:
        return None
    axes = [str(a).lower() for a in t.get("axes") or axes_zyx[-len(t["scale"]) :]]
    scale = numbers(t["scale"], source=src, what="transform scale", n=len(axes))
    translate = numbers(t.get("translate") or [0.0] * len(axes), source=src, what="transform translate", n=len(axes))
    factors = _unit_factors(t.get("units"), len(axes), src)
    vs, off = [], []
    for name in axes_zyx:
        if name in axes:
            i = axes.index(name)
            vs.append(scale[i] * factors[i])
            off.append(translate[i] * factors[i])
        else:
            vs.append(1.0)
            off.append(0.0)
    return tuple(vs), tuple(off)


def _pad(values: list[float] | None, n: int, fill: float) -> list[float] | None:
    if values is None:
        return None
    return list(values[:n]) + [fill] * (n - len(values))


def _group_error(store: Store) -> InputError:
    found: list[str] = []
    for name in store.subfolders() or []:
        sub = store.child(name)
        attrs = sub.read_attrs("attributes.json")
        if _is_dataset(attrs) or _is_dataset(sub.read_attrs("s0/attributes.json")):
            found.append(name)
        elif attrs:
            for inner in sub.subfolders() or []:
                deeper = sub.child(inner)
                if _is_dataset(deeper.read_attrs("attributes.json")) or _is_dataset(
                    deeper.read_attrs("s0/attributes.json")
                ):
                    found.append(f"{name}/{inner}")
    head = "is an N5 group without a multiscale pyramid (s0, s1, …)"
    if not store.local:
        return InputError(store.uri(), f"{head}; open one of its datasets (as {store.uri()}/NAME)")
    if not found:
        return InputError(store.uri(), f"{head}, and it holds no datasets")
    shown = ", ".join(found[:_MAX_LISTED]) + (", …" if len(found) > _MAX_LISTED else "")
    return InputError(store.uri(), f"{head}; open one of its datasets: {shown}")


def open(location: Location, *, on_error: str = "raise", notify=None) -> MultiscaleVolume:  # noqa: A001
    """Open an N5 dataset or multiscale group lazily, axes ``z, y, x``.

    Parameters
    ----------
    location
        The dataset or group (local folder or remote URI).
    on_error, notify
        What reading a bad chunk does later (see :func:`~napari_connectome.volume.open_volume`).

    Raises
    ------
    InputError
        A group with no ``s0`` (the message lists its datasets), resolution
        or offset that does not fit the data, a unit that is not a length.
    """
    store = Store(location)
    src = location.uri
    group = store.read_attrs("attributes.json")
    if _is_dataset(group):
        keys, group = [""], {}
    else:
        keys = []
        for k in range(_MAX_LEVELS):
            if not store.exists(f"s{k}/attributes.json"):
                break
            keys.append(f"s{k}")
        if not keys:
            raise _group_error(store)
    level_attrs = [store.read_attrs(f"{k}/attributes.json" if k else "attributes.json") for k in keys]
    futures = [start_open({"driver": "n5", "kvstore": store.kvstore(k)}) for k in keys]
    stores = [resolve(f, source=store.uri(k)) for f, k in zip(futures, keys, strict=True)]

    ndim = stores[0].rank
    for k, s in zip(keys, stores, strict=True):
        if s.rank != ndim:
            raise inconsistent(src, f"dataset '{k}' has {s.rank} dimensions, level 0 has {ndim}")
    n5_axes = list(_N5_AXES[:ndim]) if ndim <= len(_N5_AXES) else [f"d{i}" for i in range(ndim)]
    named = group.get("axes", level_attrs[0].get("axes"))
    if isinstance(named, list) and len(named) == ndim and all(isinstance(a, str) for a in named):
        n5_axes = [a.lower() for a in named]
    axes = tuple(reversed(n5_axes))
    spatial_n5 = [a in ("x", "y", "z") for a in n5_axes]

    meta = [store.uri(f"{k}/attributes.json".lstrip("/")) for k in keys]
    group_meta = store.uri("attributes.json")
    res0 = _resolution(group, group_meta)
    if res0 is None:
        res0 = _resolution(level_attrs[0], meta[0])
    off0 = _offset(group, group_meta)
    if off0 is None:
        off0 = _offset(level_attrs[0], meta[0])
    notes: list[str] = []
    cosem = [_cosem(a, axes, m) for a, m in zip(level_attrs, meta, strict=True)]
    assumed = res0 is None and not all(cosem)
    if assumed:
        base_zyx = assumed_voxel_size(ndim, axes)
        res0 = list(reversed(base_zyx))
        notes.append(assumed_note([v for v, a in zip(base_zyx, axes, strict=True) if a in ("z", "y", "x")]))
    elif res0 is None:
        res0 = [1.0] * ndim  # every level has its own COSEM transform
    for what, values in (("resolution", res0), ("offset", off0 or [])):
        if len(values) > ndim:
            raise inconsistent(group_meta, f"{what} has {len(values)} values for {ndim} axes")
    res0 = _pad(res0, ndim, 1.0)
    off0 = _pad(off0, ndim, 0.0) or [0.0] * ndim

    group_scales = group.get("scales", group.get("downsamplingFactors"))
    shape0 = tuple(stores[0].shape)  # N5 order, like the factors
    vs0_zyx = tuple(reversed([r if s else 1.0 for r, s in zip(res0, spatial_n5, strict=True)]))
    off0_zyx = tuple(reversed([o if s else 0.0 for o, s in zip(off0, spatial_n5, strict=True)]))
    derived = False
    levels = []
    for i, (k, attrs, ts_store, where) in enumerate(zip(keys, level_attrs, stores, meta, strict=True)):
        if cosem[i] is not None:
            vs, off = cosem[i]
        else:
            factors = attrs.get("downsamplingFactors")
            if factors is None and isinstance(group_scales, list) and i < len(group_scales):
                factors = group_scales[i]
            if factors is None and i > 0:
                factors = downsampling_factors(shape0, tuple(ts_store.shape))
                derived = True
            factors = [1.0] * ndim if factors is None else _pad(
                list(numbers(factors, source=where, what="downsamplingFactors")), ndim, 1.0
            )
            if not all(f > 0 for f in factors):
                raise inconsistent(where, f"downsamplingFactors {factors} must be > 0")
            vs = tuple(reversed([r * f if s else 1.0 for r, f, s in zip(res0, factors, spatial_n5, strict=True)]))
            off = level_offset(off0_zyx, vs0_zyx, vs)
        array = wrap_store(ts_store, source=store.uri(k), on_error=on_error, notify=notify, view=lambda s: s.T)
        levels.append(Level(array, tuple(vs), tuple(off), axes))
    if derived:
        notes.append("downsampling factors not stored; derived from the level shapes")
    levels = by_size(levels, [i for i, a in enumerate(axes) if a in ("z", "y", "x")])
    return MultiscaleVolume(
        levels=levels,
        kind="",
        source=src,
        format=FORMAT,
        name=location.name,
        voxel_size_assumed=assumed,
        notes=notes,
    )
