"""Synful-style synapse targets against a voxel-by-voxel definition, and how augmentation moves them."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest

from napari_connectome.train.augment import AugmentConfig, flip_transpose
from napari_connectome.train.synapse_loop import SynapseVolume, sample_synapse_patch
from napari_connectome.train.synapse_targets import synapse_targets, transform_vectors


def slow_targets(rows, labels, voxel_size, offset, radius):
    """The contract, one voxel and one row at a time."""
    mask = np.zeros(labels.shape, dtype=np.uint8)
    vectors = np.zeros((3, *labels.shape), dtype=np.float32)
    vs, off = np.asarray(voxel_size, float), np.asarray(offset, float)
    for idx in np.ndindex(labels.shape):
        centre = off + np.asarray(idx) * vs
        best, owner = np.inf, None
        for k in range(len(rows["post"])):
            d = float(np.sqrt(((centre - rows["post"][k]) ** 2).sum()))
            if d <= radius and labels[idx] == rows["post_id"][k] and d < best:
                best, owner = d, k
        if owner is not None:
            mask[idx] = 1
            vectors[(slice(None), *idx)] = (rows["pre"][owner] - centre) / 100.0
    return mask, vectors


def blocky_labels(shape, rng, cell=4) -> np.ndarray:
    """Labels 1..5 in cubes of ``cell`` voxels, some 0: balls get cut by label borders."""
    coarse = rng.integers(0, 6, size=[-(-n // cell) for n in shape])
    big = np.repeat(np.repeat(np.repeat(coarse, cell, 0), cell, 1), cell, 2)
    return big[: shape[0], : shape[1], : shape[2]].astype(np.uint32)


def random_rows(rng, labels, voxel_size, offset, n):
    """``n`` rows whose post points sit in labelled voxels (some balls overlap), pre points nearby."""
    vs, off = np.asarray(voxel_size, float), np.asarray(offset, float)
    where = np.argwhere(labels > 0)
    pick = where[rng.choice(len(where), size=n, replace=False)]
    post = off + (pick + rng.uniform(-0.5, 0.5, size=(n, 3))) * vs
    pre = post + rng.normal(0, 60, size=(n, 3))
    return {"pre": pre, "post": post, "post_id": labels[tuple(pick.T)].astype(np.uint64)}


@pytest.mark.parametrize("voxel_size", [(10.0, 10.0, 10.0), (40.0, 8.0, 8.0)])
def test_targets_equal_the_voxel_by_voxel_definition(voxel_size):
    rng = np.random.default_rng(1)
    shape = (6, 22, 22) if voxel_size[0] > voxel_size[1] else (14, 16, 16)
    labels = blocky_labels(shape, rng)
    offset = (5.0, -20.0, 30.0)
    rows = random_rows(rng, labels, voxel_size, offset, 12)
    # a row near the corner (its ball sticks out) and one whose post point is outside the volume
    rows["post"][0] = np.asarray(offset) - 0.3 * np.asarray(voxel_size)
    rows["post_id"][0] = labels[0, 0, 0]
    rows["post"][1] = np.asarray(offset) + np.asarray(shape) * np.asarray(voxel_size) + 30.0
    rows["post_id"][1] = labels[-1, -1, -1]
    mask, vectors = synapse_targets(rows, labels, voxel_size=voxel_size, offset=offset, mask_radius_nm=45.0)
    want_mask, want_vectors = slow_targets(rows, labels, voxel_size, offset, 45.0)
    assert mask.dtype == np.uint8 and vectors.dtype == np.float32 and vectors.shape == (3, *shape)
    assert 0 < mask.sum() < mask.size
    np.testing.assert_array_equal(mask, want_mask)
    np.testing.assert_allclose(vectors, want_vectors, atol=1e-6)
    assert not vectors[:, mask == 0].any()
    # anisotropy matters: the same points on an isotropic grid give another mask
    if voxel_size[0] != voxel_size[1]:
        other, _ = synapse_targets(rows, labels, voxel_size=(8.0, 8.0, 8.0), offset=offset, mask_radius_nm=45.0)
        assert not np.array_equal(other, mask)


def test_a_box_gives_the_crop_of_the_whole_volume():
    rng = np.random.default_rng(2)
    labels = blocky_labels((16, 20, 20), rng)
    rows = random_rows(rng, labels, (10.0, 10.0, 10.0), (0, 0, 0), 10)
    whole_mask, whole_vec = synapse_targets(rows, labels, voxel_size=(10, 10, 10))
    box = ((3, 13), (5, 20), (2, 9))
    sl = tuple(slice(a, b) for a, b in box)
    mask, vec = synapse_targets(rows, labels[sl], voxel_size=(10, 10, 10), box=box)
    np.testing.assert_array_equal(mask, whole_mask[sl])
    np.testing.assert_array_equal(vec, whole_vec[(slice(None), *sl)])


def test_synthetic_synapses_have_their_post_points_in_the_mask():
    from napari_connectome.synthetic import SyntheticSpec, generate_block
    from napari_connectome.synthetic.synapses import synthetic_synapses

    spec = SyntheticSpec(shape=(48, 96, 96), voxel_size=(10.0, 10.0, 10.0), seed=7, synapse_density=3.0)
    _, gt = generate_block(spec, tuple((0, n) for n in spec.shape))
    table = synthetic_synapses(spec)
    assert len(table) > 0
    mask, vectors = synapse_targets(table, gt, voxel_size=spec.voxel_size, offset=spec.offset)
    idx = np.round((table.post - np.asarray(spec.offset)) / np.asarray(spec.voxel_size)).astype(int)
    assert mask[tuple(idx.T)].all()
    # every mask voxel carries the post neuron's label
    assert set(np.unique(gt[mask > 0]).tolist()) <= set(table.post_id.tolist())


def _moved_rows(rows, shape, voxel_size, perm, flips):
    """The rows' points after the voxels were moved by flip_transpose (offset 0)."""
    vs = np.asarray(voxel_size, float)
    out = dict(rows)
    for key in ("pre", "post"):
        q = np.asarray(rows[key], float) / vs  # voxel coordinates
        q = q[:, list(perm)]
        new_shape = np.asarray(shape)[list(perm)]
        for a in flips:
            q[:, a] = new_shape[a] - 1 - q[:, a]
        out[key] = q * vs[list(perm)]
    return out


@pytest.mark.parametrize(("voxel_size", "perm", "flips"), [
    ((10.0, 10.0, 10.0), (0, 1, 2), [0]),
    ((10.0, 10.0, 10.0), (2, 0, 1), [1, 2]),
    ((10.0, 10.0, 10.0), (1, 0, 2), [0, 1, 2]),
    ((40.0, 8.0, 8.0), (0, 2, 1), [0, 2]),
])
def test_moved_targets_are_the_targets_of_the_moved_volume(voxel_size, perm, flips):
    rng = np.random.default_rng(3)
    shape = (8, 18, 18) if voxel_size[0] > voxel_size[1] else (12, 14, 16)
    labels = blocky_labels(shape, rng)
    rows = random_rows(rng, labels, voxel_size, (0, 0, 0), 10)
    mask, vectors = synapse_targets(rows, labels, voxel_size=voxel_size, mask_radius_nm=50.0)
    moved_mask, moved_vec = flip_transpose([mask, vectors], perm, flips)
    moved_vec = transform_vectors(moved_vec, perm, flips)
    (moved_labels,) = flip_transpose([labels], perm, flips)
    new_vs = tuple(voxel_size[p] for p in perm)
    want_mask, want_vec = synapse_targets(_moved_rows(rows, shape, voxel_size, perm, flips), moved_labels,
                                          voxel_size=new_vs, mask_radius_nm=50.0)
    np.testing.assert_array_equal(moved_mask, want_mask)
    np.testing.assert_allclose(moved_vec, want_vec, atol=1e-5)
    if flips:
        # without the component fix the vectors would be wrong (the test can fail)
        assert not np.allclose(flip_transpose([vectors], perm, flips)[0], want_vec, atol=1e-5)


def test_augmented_patches_point_at_the_pre_site_in_the_raw():
    """In every augmented patch, voxel + vector lands on the bright pre voxel of the raw input."""
    shape, pre_vox, post_vox = (30, 30, 30), np.array([14, 15, 13]), np.array([16, 13, 15])
    labels = np.zeros(shape, dtype=np.uint32)
    labels[10:22, 10:22, 10:22] = 3
    vs = (10.0, 10.0, 10.0)
    rows = {"pre": (pre_vox * 10.0)[None], "post": (post_vox * 10.0)[None], "post_id": np.array([3], np.uint64)}
    raw = np.zeros(shape, dtype=np.uint8)
    raw[tuple(pre_vox)] = 255
    volume = SynapseVolume.from_arrays(raw, labels, rows, voxel_size=vs, pad=10, mask_radius_nm=40.0)
    aug = AugmentConfig(elastic_p=0.0, misalign_p=0.0, missing_p=0.0)
    input_shape, output_shape, ctx = (26, 26, 26), (12, 12, 12), 7
    seen = set()
    for i in range(12):
        rng = np.random.default_rng([5, i])
        raw_p, mask_p, vec_p, _hard, _known = sample_synapse_patch([volume], rng, input_shape=input_shape,
                                                    output_shape=output_shape, augment=aug, near=True)
        assert mask_p.sum() > 0
        bright = np.array(np.unravel_index(np.argmax(raw_p), raw_p.shape)) - ctx  # in output coordinates
        idx = np.argwhere(mask_p > 0)
        target = idx + vec_p[:, mask_p > 0].T * 100.0 / 10.0
        np.testing.assert_allclose(target, np.broadcast_to(bright, target.shape), atol=1e-4)
        seen.add(tuple(np.sign(vec_p[:, mask_p > 0].mean(axis=1)).tolist()))
    assert len(seen) > 1  # the augmentation did move the vectors


def test_hard_negatives_and_known_region_shape_the_mask_weights():
    """Negatives near a post point weigh a set fraction of a positive; outside the known region nothing weighs."""
    from napari_connectome.train.synapse_loop import SynapseTrainConfig, near_points, synapse_batch

    shape, vs = (24, 24, 24), (10.0, 10.0, 10.0)
    labels = np.ones(shape, dtype=np.uint32)
    labels[:, :, 12:] = 2
    rows = {"pre": np.array([[120.0, 120.0, 140.0]]), "post": np.array([[120.0, 120.0, 100.0]]),
            "post_id": np.array([1], np.uint64)}
    raw = np.random.default_rng(0).integers(0, 255, shape).astype(np.uint8)
    full = SynapseVolume.from_arrays(raw, labels, rows, voxel_size=vs, pad=4, mask_radius_nm=40.0,
                                     hard_radius_nm=80.0)
    assert full.known is None
    assert not (full.hard.astype(bool) & full.mask.astype(bool)).any()
    assert full.hard[12, 12, 14] == 1 and full.hard[0, 0, 0] == 0  # the pre side is hard, far away is not
    np.testing.assert_array_equal(near_points(rows["post"], shape, voxel_size=vs, radius_nm=80.0)
                                  & (full.mask == 0), full.hard.astype(bool))
    net = {"kind": "synapses"}
    plain = SynapseTrainConfig(net=net, input_shape=(24, 24, 24), near_fraction=1.0,
                               augment=asdict(AugmentConfig(elastic_p=0.0, misalign_p=0.0, flip=False,
                                                            isotropic_axes=())))
    hard = SynapseTrainConfig(**{**plain.__dict__, "hard_negative_weight": 0.5})
    _, mask, w0, _ = synapse_batch([full], plain, 0, (16, 16, 16))
    _, mask1, w1, _ = synapse_batch([full], hard, 0, (16, 16, 16))
    np.testing.assert_array_equal(mask, mask1)
    positive = w1[mask > 0].max()
    hard_w = w1[(mask == 0) & (w1 > w0)]
    assert hard_w.size > 0 and np.allclose(hard_w, 0.5 * positive)
    np.testing.assert_array_equal(w1[mask > 0], w0[mask > 0])
    sparse = SynapseVolume.from_arrays(raw, labels, rows, voxel_size=vs, pad=4, mask_radius_nm=40.0,
                                       known_radius_nm=60.0)
    _, _, ws, _ = synapse_batch([sparse], plain, 0, (16, 16, 16))
    assert (ws > 0).sum() < (w0 > 0).sum() and ws[mask > 0].min() > 0
