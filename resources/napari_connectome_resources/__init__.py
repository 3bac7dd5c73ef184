"""Icons and small sample volumes, with their licences and provenance.

Only data lives here; code that opens it is in the engine
(:mod:`napari_connectome.samples`).
"""

from __future__ import annotations

from importlib.resources import as_file, files
from pathlib import Path

SAMPLES = {
    "gala-fib": "samples/gala-fib-test.h5",
}
ICONS = {"connectome": "icons/connectome.svg"}


def resource_path(relative: str) -> Path:
    """Filesystem path of a packaged resource (inside a normal install it is a real file)."""
    resource = files(__name__).joinpath(relative)
    with as_file(resource) as path:
        return Path(path)


def sample_path(name: str) -> Path:
    """Path of a bundled sample file by its name (``"gala-fib"``)."""
    try:
        return resource_path(SAMPLES[name])
    except KeyError:
        raise KeyError(f"no bundled sample {name!r}; there are {sorted(SAMPLES)}") from None


def icon_path(name: str = "connectome") -> Path:
    """Path of a bundled SVG icon."""
    return resource_path(ICONS[name])
