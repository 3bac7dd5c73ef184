"""A reliability campaign for napari-connectome: run it with ``python -m benchmarks.reliability.campaign``.

See :mod:`benchmarks.reliability.campaign` for the command line and what each
category tries; :mod:`benchmarks.reliability.core` for how every case is
classified.
"""
