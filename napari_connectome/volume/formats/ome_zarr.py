"""OME-Zarr (OME-NGFF) images and label images, read through tensorstore.

Versions read
-------------
* NGFF 0.4 (and earlier) on zarr v2: ``.zattrs`` holds ``"multiscales"``;
* NGFF 0.5 on zarr v3: ``zarr.json`` holds ``attributes.ome.multiscales``;
* 0.4-style ``attributes.multiscales`` found in a zarr v3 ``zarr.json``;
* a bioformats2raw layout (``"bioformats2raw.layout"``): its first series.

Geometry
--------
Each dataset's ``coordinateTransformations`` (``scale``, then an optional
``translation``) are composed with the multiscale's own transformations, which
NGFF applies after them. The result maps voxel index ``i`` to the world
position of that voxel's *centre*: ``scale * i + translation``. That is the
suite's convention (``offset`` = centre of voxel 0), so the translation is the
offset as it stands. Spatial axes are converted to nm from their ``unit``; a
spatial axis with no unit is read as nm and the volume says so. Channel and
time axes get voxel size 1 and offset 0. Versions without transformations
(0.1-0.3) get an assumed voxel size, flagged ``voxel_size_assumed``.

A group with an ``image-label`` attribute opens as labels; any other image
leaves the kind to :func:`~napari_connectome.volume.checks.infer_kind`.
"""

from __future__ import annotations

import math

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

FORMAT = "ome-zarr"
SPATIAL = ("z", "y", "x")


class _Group:
    """The attributes of a zarr group and where they were found."""

    def __init__(self, store: Store, attrs: dict, zarr_format: int, key: str) -> None:
        self.store = store
        self.attrs = attrs
        self.zarr_format = zarr_format
        self.key = key  # ".zattrs" or "zarr.json": named in error messages

    @property
    def ome(self) -> dict:
        """The NGFF attributes: under ``"ome"`` from 0.5 on, at the top before."""
        ome = self.attrs.get("ome")
        return ome if isinstance(ome, dict) else self.attrs


def _read_group(store: Store) -> _Group | None:
    """The group at ``store`` (zarr v3 first), or None when it is no zarr group."""
    node = store.read_attrs("zarr.json")
    if node:
        if node.get("node_type") != "group":
            return None
        attrs = node.get("attributes") or {}
        if not isinstance(attrs, dict):
            raise InputError(store.uri("zarr.json"), "group attributes are not a JSON object")
        return _Group(store, attrs, 3, "zarr.json")
    attrs = store.read_attrs(".zattrs")
    if attrs or store.exists(".zgroup"):
        return _Group(store, attrs, 2, ".zattrs")
    return None


def _find_image(store: Store) -> tuple[_Group | None, list[str]]:
    """The group holding multiscales at ``store`` (following bioformats2raw), and notes."""
    group = _read_group(store)
    if group is None:
        return None, []
    if isinstance(group.ome.get("multiscales"), list):
        return group, []
    if "bioformats2raw.layout" in group.ome:
        # bioformats2raw writes each series as a numbered image group; open the first.
        series = _read_group(store.child("0"))
        if series is not None and isinstance(series.ome.get("multiscales"), list):
            return series, ["bioformats2raw layout: opened series 0"]
    return None, []


def sniff(location: Location) -> bool:
    """True when ``location`` is an OME-Zarr image group (reads only its metadata)."""
    if location.is_local and not location.local_path.is_dir():
        return False
    group, _ = _find_image(Store(location))
    return group is not None


def _axes(ms: dict, ndim: int, source: str) -> tuple[list[str], list[bool], list[float | None]]:
    """Axis names, which are spatial, and nm per unit of each axis (None: no unit)."""
    raw = ms.get("axes")
    if raw is None:
        # NGFF 0.1/0.2 had no axes: the data was always (t, c, z, y, x).
        raw = ["t", "c", "z", "y", "x"][-ndim:] if ndim <= 5 else None
        if raw is None:
            raise inconsistent(source, f"no axes given for {ndim}-dimensional data")
    if not isinstance(raw, list):
        raise inconsistent(source, f"axes {raw!r} is not a list")
    names, spatial, units = [], [], []
    for ax in raw:
        if isinstance(ax, str):
            ax = {"name": ax}
        if not isinstance(ax, dict) or not isinstance(ax.get("name"), str):
            raise inconsistent(source, f"axis {ax!r} has no name")
        name = ax["name"].strip().lower()
        kind = ax.get("type")
        is_space = kind == "space" or (kind is None and name in SPATIAL)
        if kind == "channel" and name not in ("c",):
            name = "c"
        elif kind == "time" and name not in ("t",):
            name = "t"
        unit = ax.get("unit")
        factor = None
        if is_space and unit is not None:
            factor = unit_to_nm(unit)
            if factor is None:
                raise InputError(source, f"axis {ax['name']!r} has unit {unit!r}, which is not a length")
        names.append(name)
        spatial.append(is_space)
        units.append(factor)
    if len(set(names)) != len(names):
        raise inconsistent(source, f"axis names {names} repeat")
    return names, spatial, units


def _compose(transforms, ndim: int, *, source: str, what: str, scale=None, translation=None):
    """Apply NGFF ``coordinateTransformations`` in order after (scale, translation)."""
    scale = list(scale) if scale is not None else [1.0] * ndim
    translation = list(translation) if translation is not None else [0.0] * ndim
    if transforms is None:
        return scale, translation
    if not isinstance(transforms, list):
        raise inconsistent(source, f"{what} coordinateTransformations is not a list")
    for t in transforms:
        kind = t.get("type") if isinstance(t, dict) else None
        if kind == "identity":
            continue
        if kind not in ("scale", "translation"):
            raise InputError(source, f"{what}: coordinate transformation {kind!r} is not supported")
        if "path" in t and kind not in t:
            raise InputError(source, f"{what}: {kind} stored in a separate array is not supported")
        values = numbers(t.get(kind), source=source, what=f"{what} {kind}", n=ndim)
        if kind == "scale":
            if not all(v > 0 for v in values):
                raise inconsistent(source, f"{what} scale {list(values)} must be > 0 on every axis")
            scale = [s * v for s, v in zip(scale, values, strict=True)]
            translation = [o * v for o, v in zip(translation, values, strict=True)]
        else:
            translation = [o + v for o, v in zip(translation, values, strict=True)]
    return scale, translation


def _labels_note(group: _Group) -> str | None:
    labels = _read_group(group.store.child("labels"))
    names = labels.ome.get("labels") if labels is not None else None
    if not isinstance(names, list) or not names:
        return None
    names = [str(n) for n in names]
    return f"also holds label images: {', '.join(names)} (open {group.store.uri('labels/' + names[0])})"


def open(location: Location, *, on_error: str = "raise", notify=None) -> MultiscaleVolume:  # noqa: A001
    """Open an OME-Zarr image or label image lazily.

    Parameters
    ----------
    location
        The image group (local folder or remote URI).
    on_error, notify
        What reading a bad chunk does later (see :func:`~napari_connectome.volume.open_volume`).

    Returns
    -------
    MultiscaleVolume
        One level per dataset, largest first, voxel size and offset in nm.

    Raises
    ------
    InputError
        No multiscales, a dataset that does not exist, a scale whose length
        differs from the axes, a scale ≤ 0, a unit that is not a length.
    """
    store = Store(location)
    group, notes = _find_image(store)
    src = location.uri
    if group is None:
        raise InputError(src, "is not an OME-Zarr image: no multiscales metadata")
    meta = f"{group.store.uri(group.key)}"
    multiscales = group.ome["multiscales"]
    if not multiscales or not isinstance(multiscales[0], dict):
        raise inconsistent(meta, "multiscales is empty")
    if len(multiscales) > 1:
        notes.append(f"holds {len(multiscales)} multiscale images; opened the first")
    ms = multiscales[0]
    datasets = ms.get("datasets")
    if not isinstance(datasets, list) or not datasets:
        raise inconsistent(meta, "the multiscale lists no datasets")

    driver = "zarr3" if group.zarr_format == 3 else "zarr"
    array_key = "zarr.json" if group.zarr_format == 3 else ".zarray"
    paths = []
    for ds in datasets:
        path = ds.get("path") if isinstance(ds, dict) else None
        if not isinstance(path, str) or not path.strip("/"):
            raise inconsistent(meta, f"dataset {ds!r} has no path")
        path = path.strip("/")
        if not group.store.exists(f"{path}/{array_key}"):
            raise inconsistent(meta, f"dataset '{path}' does not exist (no {path}/{array_key})")
        paths.append(path)
    # Open every level at once: remote metadata reads then overlap.
    futures = [
        start_open({"driver": driver, "kvstore": group.store.kvstore(p)}) for p in paths
    ]
    stores = [resolve(f, source=group.store.uri(p)) for f, p in zip(futures, paths, strict=True)]

    ndim = stores[0].rank
    names, spatial, units = _axes(ms, ndim, meta)
    if len(names) != ndim:
        raise inconsistent(meta, f"{len(names)} axes {names} for {ndim}-dimensional dataset '{paths[0]}'")
    for path, ts_store in zip(paths, stores, strict=True):
        if ts_store.rank != ndim:
            raise inconsistent(meta, f"dataset '{path}' has {ts_store.rank} dimensions, not {ndim}")

    has_transforms = any(isinstance(ds, dict) and ds.get("coordinateTransformations") for ds in datasets)
    geometry = []
    if has_transforms:
        for ds, path in zip(datasets, paths, strict=True):
            what = f"dataset '{path}'"
            sc, tr = _compose(ds.get("coordinateTransformations"), ndim, source=meta, what=what)
            sc, tr = _compose(
                ms.get("coordinateTransformations"), ndim, source=meta, what="multiscale", scale=sc, translation=tr
            )
            geometry.append((sc, tr))
        unitless = [n for n, s, u in zip(names, spatial, units, strict=True) if s and u is None]
        if unitless:
            notes.append(f"axes {', '.join(unitless)} have no unit; read as nanometres")
        assumed = False
    else:
        # NGFF before 0.4 stored no physical size: assume level 0, derive the rest from shapes.
        base = assumed_voxel_size(ndim, names)
        shape0 = tuple(stores[0].shape)
        for ts_store in stores:
            f = downsampling_factors(shape0, tuple(ts_store.shape))
            sc = [b * (fi if s else 1.0) for b, fi, s in zip(base, f, spatial, strict=True)]
            geometry.append((sc, None))
        notes.append(assumed_note([v for v, s in zip(base, spatial, strict=True) if s]))
        assumed = True

    levels = []
    vs0 = None
    for (sc, tr), path, ts_store in zip(geometry, paths, stores, strict=True):
        vs = tuple(
            (v * (u if u is not None else 1.0)) if s else 1.0
            for v, s, u in zip(sc, spatial, units, strict=True)
        )
        if tr is None:
            vs0 = vs0 or vs
            off = level_offset((0.0,) * ndim, vs0, vs)
        else:
            off = tuple(
                (o * (u if u is not None else 1.0)) if s else 0.0
                for o, s, u in zip(tr, spatial, units, strict=True)
            )
        if not all(math.isfinite(v) for v in vs + off):
            raise inconsistent(meta, f"dataset '{path}' voxel size or offset is not finite")
        array = wrap_store(ts_store, source=group.store.uri(path), on_error=on_error, notify=notify)
        levels.append(Level(array, vs, off, tuple(names)))
    levels = by_size(levels, [i for i, s in enumerate(spatial) if s])

    is_label = "image-label" in group.ome
    if not is_label:
        note = _labels_note(group)
        if note:
            notes.append(note)
    return MultiscaleVolume(
        levels=levels,
        kind="labels" if is_label else "",
        source=src,
        format=FORMAT,
        # The path, not the multiscale's "name": writers fill that with
        # placeholders ("/", "image") that would name every layer alike.
        name=location.name,
        voxel_size_assumed=assumed,
        notes=notes,
    )
