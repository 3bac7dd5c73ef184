"""Torch networks. Import a submodule explicitly (``nets.unet``): this package
imports nothing heavy, so ``import napari_connectome_models`` stays torch-free."""
