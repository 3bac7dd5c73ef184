"""Synapses: a table of pre→post connections (CSV, CREMI HDF5) and its evaluation against ground truth."""

from napari_connectome.synapses.evaluate import (
    MatchCounts,
    SynapseScores,
    evaluate_synapses,
    post_sites,
)
from napari_connectome.synapses.labels import labels_at, points_outside, volume_labeller
from napari_connectome.synapses.table import (
    CSV_COLUMNS,
    SynapseTable,
    concat,
    read_cremi,
    read_csv,
    write_cremi,
    write_csv,
)

__all__ = [
    "CSV_COLUMNS",
    "MatchCounts",
    "SynapseScores",
    "SynapseTable",
    "concat",
    "evaluate_synapses",
    "labels_at",
    "points_outside",
    "post_sites",
    "read_cremi",
    "read_csv",
    "volume_labeller",
    "write_cremi",
    "write_csv",
]
