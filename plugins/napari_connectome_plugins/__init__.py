"""The napari face of napari-connectome: reader, writer, sample data and the Connectome panel.

Declared to napari in ``napari.yaml`` (npe2). Importing this package is cheap:
napari reads the manifest without it, and the modules import Qt, napari and
the engine only when a contribution is used.
"""
