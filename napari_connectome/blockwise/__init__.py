"""Block-wise work (daisy's ideas on Dask): a grid of blocks, a runner, a done-ledger.

* :class:`BlockGrid` tiles a total box (a :class:`~napari_connectome.volume.roi.Roi`,
  in nm or in voxels of a level) with blocks; each :class:`Block` has a
  deterministic id, a ``write_roi`` and a ``read_roi`` (the write box grown
  by the context).
* :func:`run_blockwise` runs ``process(block)`` on threads, processes or a
  Dask cluster, with progress, cancellation and ordered results.
* :class:`Ledger` records done blocks beside the output, so an interrupted
  run resumes where it stopped and gives the same bytes.

This layer sits just above :mod:`napari_connectome.volume`: it knows boxes,
progress and errors, nothing of graphs, pyramids or projects.
"""

from napari_connectome.blockwise.grid import Block, BlockGrid
from napari_connectome.blockwise.ledger import Ledger, ledger_path
from napari_connectome.blockwise.run import BlockError, RunSummary, run_blockwise

__all__ = ["Block", "BlockError", "BlockGrid", "Ledger", "RunSummary", "ledger_path", "run_blockwise"]
