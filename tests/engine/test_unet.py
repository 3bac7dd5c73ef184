"""The valid-convolution U-Net: shape arithmetic, context, and tiling equal to whole-volume inference."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import need_torch

torch = need_torch()  # noqa: F841

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


class EqualityNet(torch.nn.Module):
    """A stand-in network: affinity = 1 where the raw values of the two voxels are equal."""

    def __init__(self):
        super().__init__()
        self.config = UNetConfig(downsample=((1, 1, 1),),
                                 offsets=((-1, 0, 0), (0, -1, 0), (0, 0, -1), (0, 0, -3), (-3, 0, 0)))

    def forward(self, x):
        c = self.config.context
        z, y, w = (n - 2 * k for n, k in zip(x.shape[-3:], c, strict=True))
        out = []
        for o in self.config.offsets:
            a = x[..., c[0]:c[0] + z, c[1]:c[1] + y, c[2]:c[2] + w]
            b = x[..., c[0] + o[0]:c[0] + o[0] + z, c[1] + o[1]:c[1] + o[1] + y, c[2] + o[2]:c[2] + o[2] + w]
            out.append((a == b).float())
        return torch.cat(out, dim=1)


def test_flip_averaging_puts_links_back_in_place():
    from napari_connectome.inference import predict_affinities_flipped

    rng = np.random.default_rng(0)
    raw = np.kron(rng.integers(0, 4, size=(3, 4, 5)), np.ones((3, 3, 3))).astype(np.uint8)
    model = EqualityNet()
    plain = predict_affinities(raw, model)
    flipped = predict_affinities_flipped(raw, model)
    # away from the edges (where mirrored context differs by flip) the 8 passes agree exactly
    inner = (slice(None), slice(3, -3), slice(3, -3), slice(3, -3))
    assert np.array_equal(plain[inner], flipped[inner])
    assert plain[inner].min() == 0 and plain[inner].max() == 1


# ------------------------------------------------------------------ an LSD head (auxiliary training target)
def tiny_lsd(lsd_channels: int = 10) -> UNet3D:
    torch.manual_seed(0)
    return UNet3D(UNetConfig(base_features=2, offsets=((-1, 0, 0), (0, -1, 0), (0, 0, -1)),
                             lsd_channels=lsd_channels))


def test_config_without_lsd_field_is_unchanged():
    c = UNetConfig(base_features=2)
    assert "lsd_channels" not in c.to_dict()  # the dict stored with weights before LSDs existed
    assert UNetConfig.from_dict(c.to_dict()) == c and c.lsd_channels == 0
    lsd = UNetConfig(base_features=2, lsd_channels=10)
    assert lsd.to_dict()["lsd_channels"] == 10 and UNetConfig.from_dict(lsd.to_dict()) == lsd
    assert lsd.out_channels == 9 and lsd.head_channels == 19
    with pytest.raises(ValueError, match="lsd_channels"):
        UNetConfig(lsd_channels=-1)


def test_shipped_weights_load_without_lsds():
    from pathlib import Path

    import napari_connectome_models

    path = Path(napari_connectome_models.__file__).parent / "weights" / "affinities-fib-10nm.pt"
    model = load_network(path)
    assert model.config.lsd_channels == 0 and model.head.out_channels == model.config.out_channels == 9


def test_lsd_channels_never_reach_inference(tmp_path):
    model = tiny_lsd()
    c = model.config
    x = torch.rand(1, 1, *c.valid_input_shape((4, 4, 4)))
    with torch.no_grad():
        full = model._head(x)
        assert full.shape[1] == c.head_channels == 13
        assert torch.equal(model.forward_logits(x), full[:, :3])
        assert torch.equal(model(x), torch.sigmoid(full[:, :3]))
        aff, lsd = model.forward_train(x)
        assert torch.equal(aff, full[:, :3]) and torch.equal(lsd, torch.sigmoid(full[:, 3:]))
    raw = np.random.default_rng(0).random((12, 14, 16)).astype(np.float32)
    assert predict_affinities(raw, model).shape == (3, 12, 14, 16)
    # a saved LSD network loads back with its head, and still predicts affinities only
    save_network(model, tmp_path / "lsd.pt")
    back = load_network(tmp_path / "lsd.pt")
    assert back.config == c
    np.testing.assert_array_equal(predict_affinities(raw, back), predict_affinities(raw, model))


def test_lsd_network_blockwise_writes_affinities_only(tmp_path):
    from napari_connectome.inference.blockwise import predict_to_zarr
    from napari_connectome.inference.device import choose_device
    from napari_connectome.volume import from_array, open_volume

    model = tiny_lsd()
    raw = (np.random.default_rng(1).random((12, 14, 16)) * 255).astype(np.uint8)
    vol = from_array(raw, voxel_size=(10, 10, 10))
    predict_to_zarr(vol.levels[0], model, tmp_path / "a.zarr", device=choose_device("cpu"), signature={},
                    block=(8, 8, 8), dtype="float32")
    out = open_volume(tmp_path / "a.zarr").levels[0].read()
    assert out.shape == (3, 12, 14, 16)
    assert float(np.abs(out - predict_affinities(raw, model)).max()) <= 1e-3
