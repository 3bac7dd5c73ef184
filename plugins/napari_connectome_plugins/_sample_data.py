"""Sample data for napari's File ▸ Open Sample menu."""

from __future__ import annotations

from napari_connectome_plugins._layers import layer_data
from napari_connectome_plugins._reader import ROLE_DISPLAY, ROLE_ORDER


def _ordered(volumes: dict) -> list[str]:
    roles = [r for r in ROLE_ORDER if r in volumes]
    return roles + [r for r in volumes if r not in roles]


def gala_fib() -> list:
    """The bundled gala FIB-SEM crop (50 × 100 × 200 voxels at 10 nm).

    Returns
    -------
    list
        Layer data: raw EM, supervoxels, boundaries (hidden) and ground truth
        (hidden), lazily read from the bundled HDF5 file.
    """
    from napari_connectome.samples import gala_fib_volumes

    volumes = gala_fib_volumes()
    out = []
    for role in _ordered(volumes):
        visible, opacity = ROLE_DISPLAY.get(role, (True, None))
        out.append(layer_data(volumes[role], role=role, name=role, visible=visible, opacity=opacity))
    return out


def synthetic() -> list:
    """A synthetic EM volume and its ground truth, generated from seed 0.

    Returns
    -------
    list
        Layer data: ``synthetic raw`` (image) and ``synthetic ground truth``
        (labels, shown at half opacity).
    """
    from napari_connectome.samples import synthetic_sample

    volumes = synthetic_sample(seed=0)
    out = []
    for role in _ordered(volumes):
        volume = volumes[role]
        opacity = 0.5 if volume.kind == "labels" else None
        out.append(layer_data(volume, role=role, opacity=opacity))
    return out
