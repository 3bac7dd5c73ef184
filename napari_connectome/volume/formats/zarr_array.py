"""Plain zarr arrays (v2 ``.zarray``, v3 ``zarr.json``), read through tensorstore.

One array is one level. Its geometry comes from the funlib.persistence
attributes when present (in the array's attributes):

``voxel_size`` (or the older ``resolution``)
    nm per spatial axis, in array order.
``offset``
    nm per spatial axis: funlib's ROI begin. It is taken as the offset as it
    stands, the same reading as Neuroglancer precomputed's ``voxel_offset``
    (see :mod:`.precomputed`), so a volume written by funlib/daisy opens where
    it was written.
``axis_names``, ``units``
    Optional; funlib marks non-spatial axes with a trailing ``^`` (``"c^"``).

Without a voxel size one is assumed (``voxel_size_assumed``, with a note).
zarr v3 ``dimension_names`` name the axes when funlib's do not.

A zarr *group* is not a volume: opening one lists its arrays (OME-Zarr image
groups are opened by :mod:`.ome_zarr`, which is tried first).
"""

from __future__ import annotations

from napari_connectome.errors import InputError
from napari_connectome.volume.checks import assumed_note, assumed_voxel_size
from napari_connectome.volume.formats._meta import Store, numbers, open_array, unit_to_nm
from napari_connectome.volume.location import Location
from napari_connectome.volume.model import Level, MultiscaleVolume

FORMAT = "zarr"
_NON_SPATIAL = ("c", "t", "ch", "channel", "channels", "time", "s")
_MAX_LISTED = 12


def _node(store: Store) -> tuple[str | None, int, dict, dict]:
    """(node type, zarr format, attributes, array metadata) of the node at ``store``."""
    doc = store.read_attrs("zarr.json")
    if doc:
        attrs = doc.get("attributes") or {}
        return doc.get("node_type"), 3, attrs if isinstance(attrs, dict) else {}, doc
    meta = store.read_attrs(".zarray")
    if meta:
        return "array", 2, store.read_attrs(".zattrs"), meta
    if store.exists(".zgroup"):
        return "group", 2, store.read_attrs(".zattrs"), {}
    return None, 0, {}, {}


def sniff(location: Location) -> bool:
    """True for a zarr array or a zarr group (reads only its metadata)."""
    if location.is_local and not location.local_path.is_dir():
        return False
    kind, _, _, _ = _node(Store(location))
    return kind in ("array", "group")


def _is_multiscale(attrs: dict) -> bool:
    ome = attrs.get("ome") if isinstance(attrs.get("ome"), dict) else attrs
    return isinstance(ome.get("multiscales"), list)


def _consolidated(store: Store, zarr_format: int, doc: dict) -> list[str] | None:
    """Arrays and images named in consolidated metadata; None when there is none."""
    entries: dict[str, dict] = {}
    if zarr_format == 3:
        meta = (doc.get("consolidated_metadata") or {}).get("metadata")
        if not isinstance(meta, dict):
            return None
        for path, node in meta.items():
            if isinstance(node, dict):
                entries[path] = node
    else:
        meta = (store.read_attrs(".zmetadata") or {}).get("metadata")
        if not isinstance(meta, dict):
            return None
        for key, value in meta.items():
            head, _, leaf = key.rpartition("/")
            if leaf == ".zarray":
                entries.setdefault(head, {})["node_type"] = "array"
            elif leaf == ".zattrs" and isinstance(value, dict):
                entries.setdefault(head, {})["attributes"] = value
    found = []
    for path in sorted(entries):
        node = entries[path]
        if any(path.startswith(f + "/") for f in found):
            continue  # inside an image already listed
        if node.get("node_type") == "array" or _is_multiscale(node.get("attributes") or {}):
            found.append(path)
    return found


def _walk(store: Store, prefix: str = "", depth: int = 0) -> list[str]:
    """Arrays and OME-Zarr images below a local group (not inside them)."""
    found: list[str] = []
    for name in store.subfolders() or []:
        if name.startswith(".") or len(found) > _MAX_LISTED:
            continue
        sub = store.child(name)
        kind, _, attrs, _ = _node(sub)
        path = f"{prefix}{name}"
        if kind == "array" or (kind == "group" and _is_multiscale(attrs)):
            found.append(path)
        elif kind == "group" and depth < 3:
            found.extend(_walk(sub, path + "/", depth + 1))
    return found


def _group_error(store: Store, zarr_format: int, doc: dict) -> InputError:
    found = _consolidated(store, zarr_format, doc)
    if found is None:
        found = _walk(store) if store.local else None
    head = "is a zarr group without OME-Zarr multiscales"
    if found is None:
        return InputError(store.uri(), f"{head}; open one of its arrays (as {store.uri()}/NAME)")
    if not found:
        return InputError(store.uri(), f"{head}, and it holds no arrays")
    shown = ", ".join(found[:_MAX_LISTED]) + (", …" if len(found) > _MAX_LISTED else "")
    return InputError(store.uri(), f"{head}; open one of its arrays: {shown}")


def _axis_names(attrs: dict, meta: dict, ndim: int, n_spatial: int | None, src: str):
    """Axis names and which are spatial."""
    names = attrs.get("axis_names")
    funlib = isinstance(names, list) and len(names) == ndim and all(isinstance(n, str) for n in names)
    if funlib:
        spatial = [not n.endswith("^") and n.lower() not in _NON_SPATIAL for n in names]
        names = [n.rstrip("^").lower() for n in names]
    else:
        dims = meta.get("dimension_names")
        if (
            isinstance(dims, list)
            and len(dims) == ndim
            and all(isinstance(n, str) and n.lower() in ("z", "y", "x", "c", "t") for n in dims)
        ):
            names = [n.lower() for n in dims]
            spatial = [n in ("z", "y", "x") for n in names]
        else:
            n_sp = min(ndim, 3) if n_spatial is None else n_spatial
            if n_sp > 3 or n_sp > ndim:
                raise InputError(src, f"voxel size has {n_sp} values for a {ndim}-dimensional array")
            n_ch = ndim - n_sp
            lead = ["c"] if n_ch == 1 else [f"c{i}" for i in range(n_ch)]
            names = lead + list(("z", "y", "x")[3 - n_sp :])
            spatial = [False] * n_ch + [True] * n_sp
    if len(set(names)) != len(names):
        raise InputError(src, f"axis names {names} repeat")
    return tuple(names), spatial


def _per_axis(values, spatial, *, fill: float, src: str, what: str) -> tuple[float, ...]:
    """Spread values given for the spatial axes (or for all axes) over all axes."""
    n_sp = sum(spatial)
    vals = numbers(values, source=src, what=what)
    if len(vals) == len(spatial):
        return tuple(v if s else fill for v, s in zip(vals, spatial, strict=True))
    if len(vals) != n_sp:
        raise InputError(src, f"{what} {list(vals)} has {len(vals)} values for {n_sp} spatial axes")
    it = iter(vals)
    return tuple(next(it) if s else fill for s in spatial)


def open(location: Location, *, on_error: str = "raise", notify=None) -> MultiscaleVolume:  # noqa: A001
    """Open a zarr array lazily as a one-level volume.

    Parameters
    ----------
    location
        The array (local folder or remote URI).
    on_error, notify
        What reading a bad chunk does later (see :func:`~napari_connectome.volume.open_volume`).

    Raises
    ------
    InputError
        A zarr group (the message lists its arrays), or attributes that do
        not fit the array.
    """
    store = Store(location)
    kind, zarr_format, attrs, meta = _node(store)
    src = location.uri
    if kind == "group":
        raise _group_error(store, zarr_format, meta)
    if kind != "array":
        raise InputError(src, "is not a zarr array")
    meta_uri = store.uri("zarr.json" if zarr_format == 3 else ".zattrs")
    driver = "zarr3" if zarr_format == 3 else "zarr"
    array = open_array(
        {"driver": driver, "kvstore": store.kvstore()}, source=src, on_error=on_error, notify=notify
    )
    ndim = array.ndim
    vs_raw = attrs.get("voxel_size", attrs.get("resolution"))
    off_raw = attrs.get("offset")
    n_spatial = None
    if vs_raw is not None:
        n_spatial = len(vs_raw) if isinstance(vs_raw, list) else None
    elif isinstance(off_raw, list):
        n_spatial = len(off_raw)
    if n_spatial is not None and n_spatial > ndim:
        raise InputError(meta_uri, f"attributes give {n_spatial} spatial axes for a {ndim}-dimensional array")
    names, spatial = _axis_names(attrs, meta, ndim, n_spatial if n_spatial != ndim else None, meta_uri)

    scale = [1.0] * ndim
    units = attrs.get("units")
    if units is not None:
        unit_list = [units] * sum(spatial) if isinstance(units, str) else list(units)
        if len(unit_list) == ndim:
            unit_list = [u for u, s in zip(unit_list, spatial, strict=True) if s]
        if len(unit_list) != sum(spatial):
            raise InputError(meta_uri, f"units {units!r} do not match {sum(spatial)} spatial axes")
        it = iter(unit_list)
        for i, s in enumerate(spatial):
            if s:
                u = next(it)
                factor = unit_to_nm(u) if u not in (None, "") else 1.0
                if factor is None:
                    raise InputError(meta_uri, f"unit {u!r} is not a length")
                scale[i] = factor

    notes: list[str] = []
    if vs_raw is not None:
        vs = _per_axis(vs_raw, spatial, fill=1.0, src=meta_uri, what="voxel_size")
        vs = tuple(v * f if s else 1.0 for v, f, s in zip(vs, scale, spatial, strict=True))
        assumed = False
    else:
        vs = assumed_voxel_size(ndim, names)
        notes.append(assumed_note([v for v, s in zip(vs, spatial, strict=True) if s]))
        assumed = True
    if off_raw is not None:
        off = _per_axis(off_raw, spatial, fill=0.0, src=meta_uri, what="offset")
        off = tuple(o * f if s else 0.0 for o, f, s in zip(off, scale, spatial, strict=True))
    else:
        off = (0.0,) * ndim
    return MultiscaleVolume(
        levels=[Level(array, tuple(vs), off, names)],
        kind="",
        source=src,
        format=FORMAT,
        name=location.name,
        voxel_size_assumed=assumed,
        notes=notes,
    )
