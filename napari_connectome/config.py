"""Process-wide settings, read once from the environment.

Environment variables
---------------------
NAPARI_CONNECTOME_CACHE_MB
    Size of the chunk cache shared by every open volume (default 1024 MiB).
NAPARI_CONNECTOME_DEFAULT_VOXEL_SIZE
    Voxel size in nm assumed for formats that store none, as ``Z,Y,X``
    (default ``1,1,1``). The suite always says when it assumed one.
NAPARI_CONNECTOME_IDLE_S
    Seconds without input after which the effort clock counts a gap as idle
    (default 60).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from napari_connectome.errors import InputError


def _parse_voxel_size(text: str, *, source: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.replace(" ", ",").split(",") if v)
    except ValueError:
        raise InputError(source, f"voxel size {text!r} is not a list of numbers") from None
    check_voxel_size(values, source=source)
    return values


def check_voxel_size(values, *, source: str | None = "voxel size", ndim: int | None = None):
    """Validate a voxel size: positive, finite numbers (nm), one per axis.

    Returns the voxel size as a tuple of floats.
    """
    try:
        values = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise InputError(source, f"voxel size {values!r} is not a list of numbers") from None
    if ndim is not None and len(values) != ndim:
        raise InputError(source, f"voxel size {values} has {len(values)} values for {ndim} axes")
    bad = [v for v in values if not (v > 0 and v < float("inf"))]
    if bad or not values:
        raise InputError(source, f"voxel size must be > 0 nm on every axis, got {values}")
    return values


@dataclass(frozen=True)
class Settings:
    """Settings of this process."""

    cache_bytes: int
    default_voxel_size: tuple[float, ...]
    idle_s: float = 60.0


def load_settings() -> Settings:
    """Read the settings from the environment."""
    mb = os.environ.get("NAPARI_CONNECTOME_CACHE_MB", "1024")
    try:
        cache_bytes = int(float(mb) * 2**20)
    except ValueError:
        raise InputError("NAPARI_CONNECTOME_CACHE_MB", f"{mb!r} is not a number") from None
    if cache_bytes < 0:
        raise InputError("NAPARI_CONNECTOME_CACHE_MB", f"{mb!r} must be ≥ 0")
    vs = os.environ.get("NAPARI_CONNECTOME_DEFAULT_VOXEL_SIZE", "1,1,1")
    idle = os.environ.get("NAPARI_CONNECTOME_IDLE_S", "60")
    try:
        idle_s = float(idle)
    except ValueError:
        raise InputError("NAPARI_CONNECTOME_IDLE_S", f"{idle!r} is not a number of seconds") from None
    if not (0 < idle_s < float("inf")):
        raise InputError("NAPARI_CONNECTOME_IDLE_S", f"{idle!r} must be a finite number of seconds > 0")
    return Settings(
        cache_bytes=cache_bytes,
        default_voxel_size=_parse_voxel_size(vs, source="NAPARI_CONNECTOME_DEFAULT_VOXEL_SIZE"),
        idle_s=idle_s,
    )


SETTINGS = load_settings()
