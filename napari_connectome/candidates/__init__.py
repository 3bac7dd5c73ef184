"""Candidate errors: false splits (should merge) and false merges (should split).

::

    cands = find_candidates(proofreader)                 # graph contacts + merge-history cuts
    answers = label_candidates(cands, proofreader, gt)   # ground truth's answer to each
    errors = true_errors(seg, gt, supervoxels=sv)        # what is really wrong
    candidate_recall(cands, errors)                      # how much of it the candidates cover
    op_id = apply_candidate(proofreader, cands[0], suggested_by="me")  # the proposed edit
"""

from napari_connectome.candidates.apply import apply_candidate, stale_reason
from napari_connectome.candidates.find import (
    MERGE_FEATURES,
    SPLIT_FEATURES,
    CandidateCache,
    find_candidates,
    locate_candidates,
    simple_score,
)
from napari_connectome.candidates.labels import (
    TrueError,
    candidate_recall,
    graph_fixable,
    label_candidates,
    precision_at,
    true_errors,
)
from napari_connectome.candidates.model import (
    Candidate,
    CandidateKind,
    feature_matrix,
    format_impact,
)

__all__ = [
    "MERGE_FEATURES",
    "SPLIT_FEATURES",
    "Candidate",
    "CandidateCache",
    "locate_candidates",
    "CandidateKind",
    "TrueError",
    "apply_candidate",
    "candidate_recall",
    "feature_matrix",
    "find_candidates",
    "format_impact",
    "graph_fixable",
    "label_candidates",
    "precision_at",
    "simple_score",
    "stale_reason",
    "true_errors",
]
