"""Proofreading: the editable segmentation, its crash-safe edit log, export and offline merge.

::

    pr = Proofreader.open(project, user="ana")
    pr.merge(point_a_nm, point_b_nm)
    preview = pr.preview_split([source_nm], [sink_nm])
    pr.split(preview)
    pr.undo(); pr.redo()
    layer_data = pr.labels_volume()        # lazy, remapped through the current mapping
"""

from napari_connectome.proofread.log import EditLog, export_change_log
from napari_connectome.proofread.merge import MergeReport, merge_logs
from napari_connectome.proofread.ops import Effect, NodeEdges, Patch
from napari_connectome.proofread.recorded import RecordedOperation
from napari_connectome.proofread.session import EditResult, Proofreader, SplitPreview
from napari_connectome.proofread.state import SegmentationState

__all__ = [
    "EditLog",
    "EditResult",
    "Effect",
    "MergeReport",
    "NodeEdges",
    "Patch",
    "Proofreader",
    "RecordedOperation",
    "SegmentationState",
    "SplitPreview",
    "export_change_log",
    "merge_logs",
]
