"""Augmentations move raw, labels and the known mask together."""

from __future__ import annotations

import numpy as np
import pytest

from napari_connectome.train import AugmentConfig, TrainingVolume, sample_patch
from napari_connectome.train.augment import elastic, flip_transpose, intensity, misalign

OFFSETS = [(-1, 0, 0), (0, -1, 0), (0, 0, -1)]


def blocks(shape=(24, 30, 36), seed=0) -> np.ndarray:
    """Labels of random boxes (pieces of a coarse grid)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(1, 50, size=[-(-n // 6) for n in shape])
    return np.kron(coarse, np.ones((6, 6, 6), dtype=int))[: shape[0], : shape[1], : shape[2]].astype(np.int32)


def raw_of(labels):
    return (labels * 5 % 256).astype(np.float32)


@pytest.mark.parametrize("perm", [(0, 1, 2), (2, 0, 1), (1, 2, 0), (0, 2, 1)])
def test_flip_transpose_keeps_alignment(perm):
    lab = blocks()
    raw = raw_of(lab)
    r, lab2 = flip_transpose([raw, lab], perm, flips=[0, 2])
    assert np.array_equal(r, raw_of(lab2))
    assert lab2.shape == tuple(lab.shape[p] for p in perm)


def test_misalign_keeps_alignment_and_masks_wrapped_voxels():
    lab = blocks()
    raw = raw_of(lab)
    known = np.ones(lab.shape, dtype=bool)
    rng = np.random.default_rng(3)
    r, lab2, kn = misalign(raw, lab, known, rng, AugmentConfig(misalign_max=3))
    assert np.array_equal(r, raw_of(lab2))
    assert not kn.all() or np.array_equal(lab2, lab)


def test_elastic_keeps_alignment():
    cfg = AugmentConfig(elastic_p=1.0, elastic_sigma=1.5)
    m = cfg.margin
    lab = blocks((24 + 2 * m, 30 + 2 * m, 36 + 2 * m))
    raw = raw_of(lab)
    known = np.ones(lab.shape, dtype=bool)
    r, lab2, kn = elastic(raw, lab, known, np.random.default_rng(1), cfg, (24, 30, 36))
    assert r.shape == lab2.shape == kn.shape == (24, 30, 36)
    # away from label edges (where linear interpolation mixes labels), raw equals f(labels)
    from scipy import ndimage as ndi

    flat = ndi.maximum_filter(lab2, 3) == ndi.minimum_filter(lab2, 3)
    flat[[0, -1]] = False  # the filters see no neighbours beyond the patch
    flat[:, [0, -1]] = False
    flat[:, :, [0, -1]] = False
    assert flat.mean() > 0.1
    assert np.allclose(r[flat], raw_of(lab2)[flat], atol=1e-3)
    assert not np.array_equal(lab2, lab[m:-m, m:-m, m:-m])  # it did deform


def test_intensity_stays_in_range():
    raw = np.random.default_rng(0).random((8, 8, 8)).astype(np.float32)
    out = intensity(raw, np.random.default_rng(1), AugmentConfig(missing_p=1.0))
    assert out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1


def test_sampled_patches_are_aligned_and_seeded():
    lab = blocks((30, 40, 40))
    raw = (lab * 5 % 256).astype(np.uint8)
    vol = TrainingVolume.from_arrays(raw, lab, pad=20)
    # geometry only (no intensity change), so raw must still be f(labels) in the patch
    cfg = AugmentConfig(elastic_p=0.0, scale=0.0, shift=0.0, gamma=1.0, missing_p=0.0, misalign_p=1.0)
    for seed in range(4):
        p = sample_patch(vol, np.random.default_rng(seed), input_shape=(12, 16, 16), output_shape=(4, 8, 8),
                         offsets=OFFSETS, augment=cfg)
        inside = p.known
        assert np.allclose(p.raw[inside], (p.labels[inside] * 5 % 256) / 255, atol=1e-6)
        assert p.target.shape == p.mask.shape == (3, 4, 8, 8)
        q = sample_patch(vol, np.random.default_rng(seed), input_shape=(12, 16, 16), output_shape=(4, 8, 8),
                         offsets=OFFSETS, augment=cfg)
        assert np.array_equal(p.raw, q.raw) and np.array_equal(p.target, q.target)


def test_patches_never_use_labels_outside_the_region():
    lab = blocks((30, 40, 40))
    vol = TrainingVolume.from_arrays(lab.astype(np.uint8), lab, pad=20, region=((0, 0, 0), (30, 40, 20)))
    assert not vol.known[20:50, 20:60, 40:60].any()
    for seed in range(5):
        p = sample_patch(vol, np.random.default_rng(seed), input_shape=(12, 16, 16), output_shape=(4, 8, 8),
                         offsets=OFFSETS, augment=AugmentConfig())
        assert p.mask.sum() > 0
