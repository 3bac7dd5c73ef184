"""Choosing ``segment``'s supervoxel options and threshold on held-out data."""

from __future__ import annotations

import numpy as np
from conftest import need_torch

torch = need_torch()

from napari_connectome_models.nets.unet import ISOTROPIC, UNet3D, UNetConfig  # noqa: E402

from napari_connectome.synthetic import SyntheticSpec, synthetic_volumes  # noqa: E402
from napari_connectome.train.select import ASCENT_CANDIDATES, select_for_segment  # noqa: E402


def test_segment_choice_is_an_ascent_scored_on_the_held_out_box():
    torch.manual_seed(0)
    model = UNet3D(UNetConfig(downsample=ISOTROPIC, base_features=2, feature_factor=2,
                              offsets=((-1, 0, 0), (0, -1, 0), (0, 0, -1))))
    raw, gt = synthetic_volumes(SyntheticSpec(shape=(24, 48, 64), voxel_size=(10.0, 10.0, 10.0), seed=2))
    raw = np.asarray(raw.levels[0].read()) if hasattr(raw, "levels") else np.asarray(raw)
    gt = np.asarray(gt.levels[0].read()) if hasattr(gt, "levels") else np.asarray(gt)
    said = []
    choice = select_for_segment(model, raw.astype(np.float32) / 255, gt[..., 40:], holdout_x=40,
                                log=said.append)
    assert choice["postprocess"]["method"] == "ascent"
    assert len(choice["candidates"]) == len(ASCENT_CANDIDATES) == len(said)
    near = [c for c in choice["candidates"] if c["vi"] <= min(c["vi"] for c in choice["candidates"]) + 0.01]
    assert choice["n_supervoxels"] == min(c["n_supervoxels"] for c in near)  # the smallest graph among the best
    assert choice["vi"] in [c["vi"] for c in near] and 0.0 <= choice["threshold"] <= 1.0
    assert choice["flip_average"] is False and choice["holdout"] == "x >= 40"
