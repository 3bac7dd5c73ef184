"""Neuroglancer precomputed volumes, read through tensorstore.

The ``info`` file lists the scales; each opens through tensorstore's
``neuroglancer_precomputed`` driver (raw, jpeg, png and compressed_segmentation
encodings, sharded or not). ``type`` ``"segmentation"`` opens as labels,
``"image"`` as an image.

Axes
----
Precomputed stores ``x, y, z, channel``; the volume presents ``z, y, x``
(the channel axis dropped when ``num_channels`` is 1) or ``c, z, y, x``.

Geometry
--------
Each scale's ``resolution`` (nm, ``x, y, z``) is its voxel size. Its
``voxel_offset`` becomes the offset of scale ``k`` as

    offset_k = voxel_offset_k * resolution_k + (resolution_k - resolution_0) / 2

Level 0's offset is thus ``voxel_offset * resolution``, the number
cloud-volume reports as the volume's bounds and that Neuroglancer shows as the
position of voxel ``voxel_offset``. Lower scales keep voxel centres where
level 0 puts them: a scale-``k`` voxel that covers level-0 voxels starting at
the same corner has its centre ``(resolution_k - resolution_0) / 2`` further
on (the rule of :func:`~napari_connectome.volume.checks.level_offset`).
"""

from __future__ import annotations

from napari_connectome.errors import InputError
from napari_connectome.volume.formats._meta import (
    Store,
    by_size,
    inconsistent,
    numbers,
    resolve,
    start_open,
    wrap_store,
)
from napari_connectome.volume.location import Location
from napari_connectome.volume.model import Level, MultiscaleVolume

FORMAT = "precomputed"
_KINDS = {"segmentation": "labels", "image": "image"}


def sniff(location: Location) -> bool:
    """True when ``location`` holds a precomputed ``info`` file (reads only that)."""
    if location.is_local and not location.local_path.is_dir():
        return False
    info = Store(location).read_json("info")
    return isinstance(info, dict) and isinstance(info.get("scales"), list) and (
        "data_type" in info or "type" in info
    )


def _drop_channel(store):
    # A single channel is no axis to a proofreader: index it away, then z, y, x.
    return store[..., 0].T


def open(location: Location, *, on_error: str = "raise", notify=None) -> MultiscaleVolume:  # noqa: A001
    """Open a precomputed volume lazily, axes ``z, y, x`` (``c, z, y, x`` with channels).

    Parameters
    ----------
    location
        The folder or URI holding ``info``.
    on_error, notify
        What reading a bad chunk does later (see :func:`~napari_connectome.volume.open_volume`).

    Raises
    ------
    InputError
        No scales, a resolution ≤ 0 or of the wrong length, an unknown ``type``.
    """
    store = Store(location)
    src = location.uri
    meta = store.uri("info")
    info = store.read_attrs("info")
    scales = info.get("scales")
    if not isinstance(scales, list) or not scales:
        raise inconsistent(meta, "no scales listed")
    kind = info.get("type")
    if kind is not None and kind not in _KINDS:
        raise InputError(meta, f"type {kind!r} is not a volume (expected 'image' or 'segmentation')")
    channels = int(info.get("num_channels", 1) or 1)

    resolutions, offsets = [], []
    for k, scale in enumerate(scales):
        if not isinstance(scale, dict):
            raise inconsistent(meta, f"scale {k} is not a JSON object")
        res = numbers(scale.get("resolution"), source=meta, what=f"scale {k} resolution", n=3)
        if not all(r > 0 for r in res):
            raise inconsistent(meta, f"scale {k} resolution {list(res)} must be > 0 on every axis")
        vo = numbers(scale.get("voxel_offset", [0, 0, 0]), source=meta, what=f"scale {k} voxel_offset", n=3)
        resolutions.append(res)
        offsets.append(vo)

    kvstore = store.kvstore()
    futures = [
        start_open({"driver": "neuroglancer_precomputed", "kvstore": kvstore, "scale_index": k})
        for k in range(len(scales))
    ]
    # Offsets are relative to the finest scale, whatever the order of "scales".
    res0 = min(resolutions, key=lambda r: r[0] * r[1] * r[2])
    levels = []
    for k, future in enumerate(futures):
        key = scales[k].get("key", str(k))
        ts_store = resolve(future, source=store.uri(str(key)))
        res, vo = resolutions[k], offsets[k]
        off_xyz = [v * r + (r - r0) / 2.0 for v, r, r0 in zip(vo, res, res0, strict=True)]
        vs = tuple(reversed(res))
        off = tuple(reversed(off_xyz))
        if channels == 1:
            view, axes = _drop_channel, ("z", "y", "x")
        else:
            view, axes = (lambda s: s.T), ("c", "z", "y", "x")
            vs, off = (1.0,) + vs, (0.0,) + off
        array = wrap_store(ts_store, source=store.uri(str(key)), on_error=on_error, notify=notify, view=view)
        levels.append(Level(array, vs, off, axes))
    spatial = [i for i, a in enumerate(levels[0].axes) if a in ("z", "y", "x")]
    return MultiscaleVolume(
        levels=by_size(levels, spatial),
        kind=_KINDS.get(kind, ""),
        source=src,
        format=FORMAT,
        name=location.name,
        notes=[],
    )
