"""Running networks on volumes (torch is imported inside the functions)."""

from napari_connectome.inference.predict import predict_affinities, predict_affinities_flipped

__all__ = ["predict_affinities", "predict_affinities_flipped"]
