"""The valid-convolution U-Net: shape arithmetic, context, and tiling equal to whole-volume inference."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch comes with the [models] extra")  # noqa: F841

from napari_connectome_models.nets.unet import (  # noqa: E402
    ANISOTROPIC,
    ISOTROPIC,
    UNet3D,
    UNetConfig,
    load_network,
    n_parameters,
    save_network,
)

from napari_connectome.inference import predict_affinities  # noqa: E402


def tiny(downsample=ISOTROPIC, offsets=((-1, 0, 0), (0, -1, 0), (0, 0, -1), (0, 0, -3))) -> UNet3D:
    torch.manual_seed(0)
    return UNet3D(UNetConfig(downsample=downsample, base_features=2, feature_factor=2, offsets=offsets))


def test_isotropic_arithmetic():
    c = UNetConfig(downsample=ISOTROPIC)
    assert c.context == (20, 20, 20)
    assert c.step == (4, 4, 4)
    assert c.output_shape((64, 96, 96)) == (24, 56, 56)
    assert c.valid_input_shape((20, 40, 41)) == (60, 80, 84)
    with pytest.raises(ValueError, match="not valid"):
        c.output_shape((63, 96, 96))


def test_anisotropic_arithmetic():
    c = UNetConfig(downsample=ANISOTROPIC)
    assert c.context == (12, 28, 28)
    assert c.step == (2, 6, 6)
    shape = c.valid_input_shape((8, 20, 20))
    out = c.output_shape(shape)
    assert all(o >= w for o, w in zip(out, (8, 20, 20), strict=True))
    assert all((i - o) == 2 * k for i, o, k in zip(shape, out, c.context, strict=True))


@pytest.mark.parametrize("downsample", [ISOTROPIC, ANISOTROPIC])
def test_forward_shape_matches_arithmetic(downsample):
    model = tiny(downsample)
    shape = model.config.valid_input_shape((4, 8, 8))
    with torch.no_grad():
        y = model(torch.zeros(1, 1, *shape))
    assert tuple(y.shape) == (1, 4, *model.config.output_shape(shape))
    assert float(y.min()) >= 0 and float(y.max()) <= 1


@pytest.mark.parametrize("downsample", [ISOTROPIC, ANISOTROPIC])
def test_tiles_equal_whole_volume(downsample):
    model = tiny(downsample)
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 256, size=(22, 37, 41), dtype=np.uint8)
    whole = predict_affinities(raw, model)
    step = model.config.step
    tiled = predict_affinities(raw, model, block_shape=(2 * step[0], 2 * step[1], 2 * step[2]))
    assert whole.shape == tiled.shape == (4, *raw.shape)
    assert float(np.abs(whole - tiled).max()) <= 1e-5


def test_save_load_roundtrip(tmp_path):
    model = tiny()
    save_network(model, tmp_path / "w.pt", note="x")
    back = load_network(tmp_path / "w.pt")
    assert back.config == model.config
    for p, q in zip(model.parameters(), back.parameters(), strict=True):
        assert torch.equal(p, q)
    assert n_parameters(back) == n_parameters(model)


def test_shipped_size_is_small():
    # The shipped architecture: a few MB of fp32 weights at most.
    assert n_parameters(UNet3D(UNetConfig())) * 4 < 4 * 2**20
