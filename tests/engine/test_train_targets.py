"""Affinity targets and masks from labels; class balance."""

from __future__ import annotations

import numpy as np
import pytest

from napari_connectome.train import affinities_from_labels, balance_weights

OFFSETS = [(-1, 0, 0), (0, -1, 0), (0, 0, -1), (0, 0, -2)]


def toy():
    # two bodies separated by a one-voxel sheet of 0 at x == 2
    lab = np.zeros((2, 2, 5), dtype=np.int32)
    lab[..., :2] = 1
    lab[..., 3:] = 2
    return lab


def test_zero_as_boundary():
    aff, mask = affinities_from_labels(toy(), OFFSETS, zero="boundary")
    x = aff[2, 0, 0]  # link of x with x - 1
    m = mask[2, 0, 0]
    assert x.tolist() == [0, 1, 0, 0, 1]
    assert m.tolist() == [0, 1, 1, 1, 1]  # x=0 has no partner; 1-0 and 0-2 pairs are boundaries
    # long range x - 2 crosses the sheet: 0 everywhere it is defined
    assert aff[3, 0, 0].tolist() == [0, 0, 0, 0, 0]
    assert mask[3, 0, 0].tolist() == [0, 0, 1, 1, 1]
    # along z, voxels of the sheet pair with each other: masked (two 0s)
    assert mask[0, 1, 0].tolist() == [1, 1, 0, 1, 1]
    assert aff[0, 1, 0].tolist() == [1, 1, 0, 1, 1]
    assert mask[0, 0].sum() == 0  # z = 0 has no partner at z - 1


def test_zero_as_unknown():
    aff, mask = affinities_from_labels(toy(), OFFSETS, zero="unknown")
    assert mask[2, 0, 0].tolist() == [0, 1, 0, 0, 1]
    assert aff[2, 0, 0][mask[2, 0, 0] > 0].tolist() == [1, 1]
    assert mask[3, 0, 0].tolist() == [0, 0, 0, 1, 0]  # x=3 with x=1: 2 vs 1, both labelled
    assert aff[3, 0, 0, 3] == 0


def test_known_mask_and_positive_offsets():
    lab = toy()
    known = np.ones(lab.shape, dtype=bool)
    known[..., 4] = False
    aff, mask = affinities_from_labels(lab, [(0, 0, 1)], known=known)
    assert mask[0, 0, 0].tolist() == [1, 1, 1, 0, 0]
    assert (aff * mask)[0, 0, 0].tolist() == [1, 0, 0, 0, 0]


def test_bad_zero_mode():
    with pytest.raises(ValueError, match="zero"):
        affinities_from_labels(toy(), OFFSETS, zero="nothing")


def test_balance_weights_halves_each_class():
    aff, mask = affinities_from_labels(toy(), OFFSETS)
    w = balance_weights(aff, mask)
    for c in range(len(OFFSETS)):
        pos = (w[c] * (aff[c] > 0)).sum()
        neg = (w[c] * (aff[c] == 0)).sum()
        n = mask[c].sum()
        if 0 < aff[c][mask[c] > 0].mean() < 1:
            assert pos == pytest.approx(n / 2) and neg == pytest.approx(n / 2)
    assert (w[mask == 0] == 0).all()
