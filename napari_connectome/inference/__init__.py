"""Running networks on volumes (torch is imported inside the functions)."""

from napari_connectome.inference.predict import predict_affinities

__all__ = ["predict_affinities"]
