"""The volume data plane: open any supported format as a lazy multiscale volume."""

from napari_connectome.volume.lazy import ChunkedArray, NumpyArray, TensorStoreArray
from napari_connectome.volume.location import Location, parse_uri
from napari_connectome.volume.model import LazyArray, Level, MultiscaleVolume
from napari_connectome.volume.open import FORMATS, from_array, open_volume
from napari_connectome.volume.roi import Roi

__all__ = [
    "FORMATS",
    "ChunkedArray",
    "LazyArray",
    "Level",
    "Location",
    "MultiscaleVolume",
    "NumpyArray",
    "Roi",
    "TensorStoreArray",
    "from_array",
    "open_volume",
    "parse_uri",
]
