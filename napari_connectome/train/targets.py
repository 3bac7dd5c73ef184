"""Affinity targets and their masks from a label volume (numpy only)."""

from __future__ import annotations

import numpy as np

ZERO_MODES = ("boundary", "unknown")


def _pair_slices(shape, offset) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Slices of ``j`` and of ``j + offset`` over the voxels where both lie inside ``shape``."""
    here, there = [], []
    for n, o in zip(shape, offset, strict=True):
        if o >= 0:
            here.append(slice(0, max(n - o, 0)))
            there.append(slice(o, n))
        else:
            here.append(slice(-o, n))
            there.append(slice(0, max(n + o, 0)))
    return tuple(here), tuple(there)


def affinities_from_labels(
    labels: np.ndarray,
    offsets,
    *,
    known: np.ndarray | None = None,
    zero: str = "boundary",
) -> tuple[np.ndarray, np.ndarray]:
    """Affinity targets and a mask saying which of them are defined.

    Channel ``c`` at voxel ``j`` is 1 when ``j`` and ``j + offsets[c]`` carry
    the same label, 0 otherwise.

    Parameters
    ----------
    labels
        Integer labels ``(z, y, x)``.
    offsets
        ``(C, 3)`` offsets (z, y, x), e.g. ``[(-1, 0, 0), (0, -1, 0), ...]``.
    known
        Voxels whose label may be used (default: all). A pair is masked when
        either voxel is not known, and when ``j + offset`` lies outside the volume.
    zero
        What label 0 means. ``"boundary"`` (gala's and SNEMI's ground truth: thin
        membrane sheets, different bodies never touch directly): 0 is not a body,
        its affinity with anything is 0; only pairs of two 0 voxels are masked.
        ``"unknown"`` (unlabelled regions): every pair touching a 0 is masked.

    Returns
    -------
    affinities, mask
        Both ``(C, z, y, x)`` float32; mask is 1 where the target is defined.
    """
    if zero not in ZERO_MODES:
        raise ValueError(f"zero must be one of {ZERO_MODES}, got {zero!r}")
    labels = np.asarray(labels)
    offsets = np.asarray(offsets, dtype=int).reshape(-1, 3)
    if known is None:
        known = np.ones(labels.shape, dtype=bool)
    aff = np.zeros((len(offsets), *labels.shape), dtype=np.float32)
    mask = np.zeros_like(aff)
    for c, off in enumerate(offsets):
        here, there = _pair_slices(labels.shape, off)
        a, b = labels[here], labels[there]
        ok = known[here] & known[there]
        same = a == b
        if zero == "boundary":
            aff[(c, *here)] = same & (a != 0)
            mask[(c, *here)] = ok & ((a != 0) | (b != 0))
        else:
            aff[(c, *here)] = same
            mask[(c, *here)] = ok & (a != 0) & (b != 0)
    return aff, mask


def balance_weights(target: np.ndarray, mask: np.ndarray, *, clip: float = 20.0) -> np.ndarray:
    """Per-channel class-balancing weights: positives and negatives weigh half each.

    ``w = mask * (0.5 / frac_pos if target else 0.5 / frac_neg)`` per channel,
    with the fractions taken over the masked voxels and the factors clipped to
    ``clip`` so that a patch with a handful of boundary voxels does not blow up.
    """
    w = np.zeros_like(mask, dtype=np.float32)
    for c in range(target.shape[0]):
        m = mask[c] > 0
        n = int(m.sum())
        if n == 0:
            continue
        pos = float(target[c][m].sum()) / n
        wp = min(0.5 / pos, clip) if pos > 0 else 0.0
        wn = min(0.5 / (1 - pos), clip) if pos < 1 else 0.0
        w[c] = np.where(target[c] > 0, wp, wn) * m
    return w
