"""The bundled samples: a real FIB-SEM crop, and a synthetic volume from a seed."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from napari_connectome.errors import from_os_error
from napari_connectome.project import Project, create_project, is_project, open_project
from napari_connectome.volume import MultiscaleVolume, open_volume

GALA_ROLES = ("raw", "supervoxels", "groundtruth", "boundaries")


def gala_fib_path() -> Path:
    """Path of the bundled gala-fib HDF5 file (test crop, 50 × 100 × 200 at 10 nm)."""
    from napari_connectome_resources import sample_path

    return sample_path("gala-fib")


def gala_fib_volumes() -> dict[str, MultiscaleVolume]:
    """The gala-fib sample's volumes, lazily: raw, supervoxels, groundtruth, boundaries."""
    path = gala_fib_path()
    kinds = {"raw": "image", "supervoxels": "labels", "groundtruth": "labels", "boundaries": "image"}
    volumes = {}
    for role in GALA_ROLES:
        volume = open_volume(f"{path}/{role}", kind=kinds[role])
        volume.name = role
        volumes[role] = volume
    return volumes


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "napari-connectome"


def gala_fib_project(root: str | os.PathLike | None = None) -> Project:
    """A project over the bundled gala-fib sample (created on first use, then reused).

    Parameters
    ----------
    root
        Where to keep the project; default: a folder in the user's cache,
        named after the installed sample's location so that two installs
        never share one.
    """
    path = gala_fib_path()
    if root is None:
        tag = hashlib.sha1(str(path).encode()).hexdigest()[:10]
        cache = _cache_dir()
        # The user's cache folder is ours to make; a folder the caller names is not (a
        # mistyped parent is refused by create_project).
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise from_os_error(exc, cache) from None
        root = cache / f"gala-fib-sample-{tag}"
    root = Path(root)
    if is_project(root):
        return open_project(root)
    return create_project(
        root,
        raw=f"{path}/raw",
        supervoxels=f"{path}/supervoxels",
        boundaries=f"{path}/boundaries",
        groundtruth=f"{path}/groundtruth",
        name="gala-fib sample (FIB-SEM, Drosophila)",
    )


def synthetic_sample(*, shape=(64, 256, 256), voxel_size=(8.0, 8.0, 8.0), seed: int = 0) -> dict[str, MultiscaleVolume]:
    """A synthetic EM volume and its ground truth, generated lazily from ``seed``."""
    from napari_connectome.synthetic import SyntheticSpec, synthetic_volumes

    raw, gt = synthetic_volumes(SyntheticSpec(shape=tuple(shape), voxel_size=tuple(voxel_size), seed=seed))
    raw.name, gt.name = "synthetic raw", "synthetic ground truth"
    return {"raw": raw, "groundtruth": gt}
