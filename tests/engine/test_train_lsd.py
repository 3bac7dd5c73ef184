"""Local shape descriptors: the definition (against a slow direct sum), and training with them as a target."""

from __future__ import annotations

import json

import numpy as np
import pytest

# At import time: once tests/plugins is collected, ``conftest`` names that folder's file.
from conftest import need_torch

from napari_connectome.errors import InputError
from napari_connectome.train.lsd import LSD_CHANNELS, TRUNCATE, local_shape_descriptors


def sphere(shape, centre, radius, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    """Voxels within ``radius`` (in the units of ``spacing``) of ``centre`` (voxels)."""
    grid = np.indices(shape).astype(float)
    d2 = sum(((grid[a] - centre[a]) * spacing[a]) ** 2 for a in range(3))
    return d2 <= radius ** 2


def slow_lsd(labels, sigma_nm, voxel_size) -> np.ndarray:
    """lsd's definition summed voxel by voxel, in absolute nm coordinates (as funkelab/lsd computes it).

    The window is scipy's: a product of 1D Gaussians truncated at ``TRUNCATE`` sigmas
    (radius ``int(TRUNCATE * sigma_vox + 0.5)``), each normalised to sum 1.
    """
    labels = np.asarray(labels)
    vs = np.asarray(voxel_size, float)
    sig = np.broadcast_to(np.asarray(sigma_nm, float), (3,))
    sv = sig / vs
    radius = [int(TRUNCATE * s + 0.5) for s in sv]
    g1 = []
    for s, r in zip(sv, radius, strict=True):
        w = np.exp(-0.5 * (np.arange(-r, r + 1) / s) ** 2)
        g1.append(w / w.sum())
    out = np.zeros((10, *labels.shape))
    for j in np.ndindex(labels.shape):
        if labels[j] == 0:
            continue
        # every voxel k of the window around j that lies in the volume and carries j's label
        ks = np.indices([2 * r + 1 for r in radius]).reshape(3, -1).T - np.asarray(radius) + np.asarray(j)
        inside = np.all((ks >= 0) & (ks < labels.shape), axis=1)
        ks = ks[inside]
        ks = ks[labels[tuple(ks.T)] == labels[j]]
        d = ks - np.asarray(j) + np.asarray(radius)
        w = g1[0][d[:, 0]] * g1[1][d[:, 1]] * g1[2][d[:, 2]]
        x = ks * vs  # absolute positions in nm
        count = w.sum()
        mean = (w[:, None] * x).sum(0) / count
        cov = (w[:, None, None] * x[:, :, None] * x[:, None, :]).sum(0) / count - np.outer(mean, mean)
        var = np.maximum(np.diag(cov), 1e-3)
        offset = mean - np.asarray(j) * vs
        out[0:3, j[0], j[1], j[2]] = 0.5 + 0.5 * offset / sig
        out[3:6, j[0], j[1], j[2]] = var / sig ** 2
        for c, (a, b) in enumerate(((0, 1), (0, 2), (1, 2))):
            out[6 + c, j[0], j[1], j[2]] = 0.5 + 0.5 * cov[a, b] / np.sqrt(var[a] * var[b])
        out[9, j[0], j[1], j[2]] = count
    return np.clip(out, 0, 1)


def test_shape_range_and_background():
    rng = np.random.default_rng(0)
    lab = np.kron(rng.integers(0, 4, size=(3, 4, 5)), np.ones((4, 4, 4), dtype=np.int64)) * 1000
    lsd = local_shape_descriptors(lab, sigma_nm=30.0, voxel_size=(10, 10, 10))
    assert lsd.shape == (LSD_CHANNELS, *lab.shape) and lsd.dtype == np.float32
    assert lsd.min() >= 0 and lsd.max() <= 1
    assert not lsd[:, lab == 0].any()  # background is 0 in every channel
    assert (lsd[9][lab != 0] > 0).all()  # every object voxel sees itself


def test_mean_offset_points_towards_the_centre():
    shape, c = (25, 25, 25), (12, 12, 12)
    lab = sphere(shape, c, 9).astype(np.uint8)
    lsd = local_shape_descriptors(lab, sigma_nm=50.0, voxel_size=(10, 10, 10))
    # at the centre, symmetric: no offset (0.5) on every axis
    np.testing.assert_allclose(lsd[0:3, 12, 12, 12], 0.5, atol=1e-5)
    for a in range(3):
        hi, lo = list(c), list(c)
        hi[a] += 7  # near the surface, above the centre along axis a: the centre is below, value < 0.5
        lo[a] -= 7
        assert lsd[a][tuple(hi)] < 0.45 and lsd[a][tuple(lo)] > 0.55
        # the other axes see a symmetric neighbourhood there
        for b in set(range(3)) - {a}:
            assert abs(lsd[b][tuple(hi)] - 0.5) < 1e-4


def test_size_is_larger_for_a_larger_object():
    shape = (30, 30, 60)
    lab = sphere(shape, (15, 15, 14), 3).astype(np.int32) + 2 * sphere(shape, (15, 15, 42), 9)
    lsd = local_shape_descriptors(lab, sigma_nm=60.0, voxel_size=(10, 10, 10))
    assert lsd[9, 15, 15, 42] > 2 * lsd[9, 15, 15, 14]
    # the variances grow with the object too
    assert (lsd[3:6, 15, 15, 42] > lsd[3:6, 15, 15, 14]).all()


def test_anisotropic_voxel_size_is_respected():
    # an ellipsoid that is round in nm at (40, 10, 10) nm voxels: its descriptors are the same on every axis
    shape, c = (9, 31, 31), (4, 15, 15)
    lab = sphere(shape, c, 100.0, spacing=(40, 10, 10)).astype(np.uint8)
    lsd = local_shape_descriptors(lab, sigma_nm=80.0, voxel_size=(40, 10, 10))
    # 60 nm off-centre along z (1.5 voxels is not on the grid: use 80 nm = 2 voxels) and 80 nm along y
    z_side = lsd[:, c[0] + 2, c[1], c[2]]
    y_side = lsd[:, c[0], c[1] + 8, c[2]]
    assert abs(z_side[0] - y_side[1]) < 0.05  # offsets towards the centre alike, in nm
    assert z_side[0] < 0.5 and y_side[1] < 0.5
    # the same labels read as isotropic voxels are a flat disc: the z offset is then much smaller
    iso = local_shape_descriptors(lab, sigma_nm=80.0, voxel_size=(10, 10, 10))
    assert abs(iso[0, c[0] + 2, c[1], c[2]] - 0.5) < abs(z_side[0] - 0.5)
    # transposing the volume and its voxel size permutes the channels (z <-> y)
    t = local_shape_descriptors(np.transpose(lab, (1, 0, 2)), sigma_nm=80.0, voxel_size=(10, 40, 10))
    back = np.transpose(t, (0, 2, 1, 3))
    for mine, theirs in ((0, 1), (1, 0), (2, 2), (3, 4), (4, 3), (5, 5), (6, 6), (7, 8), (8, 7), (9, 9)):
        np.testing.assert_allclose(back[theirs], lsd[mine], atol=1e-5)


@pytest.mark.parametrize("voxel_size", [(10, 10, 10), (20, 10, 5)])
def test_agrees_with_a_slow_direct_sum(voxel_size):
    rng = np.random.default_rng(1)
    lab = np.kron(rng.integers(0, 3, size=(3, 3, 3)), np.ones((3, 4, 4), dtype=np.int64)) + 7
    lab[rng.random(lab.shape) < 0.1] = 0  # scattered background voxels and split pieces
    lab[0, 0, 0] = 0
    fast = local_shape_descriptors(lab, sigma_nm=15.0, voxel_size=voxel_size)
    slow = slow_lsd(lab, 15.0, voxel_size)
    assert (slow[0:3][:, lab != 0] != 0.5).any()  # not a trivial comparison
    np.testing.assert_allclose(fast, slow, atol=2e-4)


def test_roi_is_the_crop_of_the_whole():
    rng = np.random.default_rng(2)
    lab = np.kron(rng.integers(0, 5, size=(4, 4, 4)), np.ones((5, 5, 5), dtype=np.int64))
    whole = local_shape_descriptors(lab, sigma_nm=40.0, voxel_size=(10, 10, 10))
    roi = (slice(3, 12), slice(5, 17), slice(0, 20))
    np.testing.assert_allclose(local_shape_descriptors(lab, sigma_nm=40.0, voxel_size=(10, 10, 10), roi=roi),
                               whole[(slice(None), *roi)], atol=1e-6)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="3D"):
        local_shape_descriptors(np.zeros((4, 4), int), sigma_nm=10.0)
    with pytest.raises(ValueError, match="positive"):
        local_shape_descriptors(np.zeros((4, 4, 4), int), sigma_nm=0.0)


# ------------------------------------------------------------------ training with LSDs
def _train_setup(lsd_channels: int, **extra):
    need_torch()
    from napari_connectome_models.nets.unet import UNetConfig

    from napari_connectome.train import TrainConfig, TrainingVolume

    rng = np.random.default_rng(0)
    lab = np.kron(rng.integers(1, 9, size=(4, 4, 4)), np.ones((6, 6, 6), dtype=int)).astype(np.int32)
    raw = (lab * 20 + rng.integers(0, 30, size=lab.shape)).astype(np.uint8)
    vol = TrainingVolume.from_arrays(raw, lab, pad=40)
    net = UNetConfig(base_features=2, offsets=((-1, 0, 0), (0, -1, 0), (0, 0, -1)), lsd_channels=lsd_channels)
    cfg = TrainConfig(net=net.to_dict(), input_shape=net.valid_input_shape((4, 4, 4)), iterations=1,
                      seed=3, lr=1e-3, checkpoint_every=1, threads=1, **extra)
    return vol, cfg


def test_one_training_step_with_lsds_has_both_loss_terms(tmp_path):
    from napari_connectome.train import train

    vol, cfg = _train_setup(LSD_CHANNELS, voxel_size=(10.0, 10.0, 10.0), lsd_sigma_nm=30.0, lsd_weight=2.0)
    train(vol, cfg, tmp_path / "a", log=lambda s: None)
    rec = json.loads((tmp_path / "a" / "log.jsonl").read_text().splitlines()[-1])
    assert rec["loss_affinity"] > 0 and rec["loss_lsd"] > 0
    assert rec["loss"] == pytest.approx(rec["loss_affinity"] + 2.0 * rec["loss_lsd"], rel=1e-6)
    # deterministic given the seed, like a run without LSDs
    train(vol, cfg, tmp_path / "b", log=lambda s: None)
    assert json.loads((tmp_path / "b" / "log.jsonl").read_text().splitlines()[-1])["loss"] == rec["loss"]
    # the config (voxel size included) survives config.json
    from napari_connectome.train.loop import read_config

    assert read_config(tmp_path / "a") == cfg


def test_lsd_patches_are_the_patches_without_lsds():
    from napari_connectome_models.nets.unet import UNetConfig

    from napari_connectome.train.loop import batch, batch_with_lsds

    vol, cfg = _train_setup(LSD_CHANNELS, voxel_size=(10.0, 10.0, 10.0), lsd_sigma_nm=30.0)
    net = UNetConfig.from_dict(cfg.net)
    out = net.output_shape(cfg.input_shape)
    plain = batch(vol, cfg, 5, out, net.offsets)
    raw, target, weight, lsd, mask = batch_with_lsds(vol, cfg, 5, out, net.offsets)
    for a, b in zip(plain, (raw, target, weight), strict=True):
        np.testing.assert_array_equal(a, b)
    assert lsd.shape == (1, LSD_CHANNELS, *out) and mask.shape == (1, 1, *out)
    assert lsd.min() >= 0 and lsd.max() <= 1 and mask.any()


def test_lsd_loss_counts_only_masked_voxels():
    torch = need_torch()
    from napari_connectome.train.loop import lsd_loss

    pred = torch.zeros(1, 2, 1, 1, 2)
    target = torch.tensor([[[[[1.0, 9.0]]], [[[1.0, 9.0]]]]])
    mask = torch.tensor([[[[[1.0, 0.0]]]]])
    assert float(lsd_loss(pred, target, mask)) == pytest.approx(1.0)  # the voxel of error 81 is masked


def test_lsd_network_without_voxel_size_is_refused(tmp_path):
    from napari_connectome.train import train

    vol, cfg = _train_setup(LSD_CHANNELS)
    with pytest.raises(InputError, match="voxel size"):
        train(vol, cfg, tmp_path / "a", log=lambda s: None)
