"""napari-connectome engine: local connectome proofreading, Qt-free.

The engine never imports Qt, napari or torch at import time; heavy imports
happen inside the functions that need them.
"""

from napari_connectome.errors import ConnectomeError, InputError
from napari_connectome.volume import Level, MultiscaleVolume, open_volume

__version__ = "0.1.0"

__all__ = [
    "ConnectomeError",
    "InputError",
    "Level",
    "MultiscaleVolume",
    "open_volume",
    "__version__",
]
