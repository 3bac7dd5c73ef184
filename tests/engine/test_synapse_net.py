"""The synapse U-Net: shapes, storage, blockwise inference, the registry, and the seeded resumable loop."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

# At import time: once tests/plugins is collected, ``conftest`` names that folder's file.
from conftest import need_torch

torch = need_torch()

from napari_connectome_models.nets.synapse import (  # noqa: E402
    SynapseNetConfig,
    SynapseUNet,
    load_synapse_network,
    save_synapse_network,
)
from napari_connectome_models.nets.unet import UNet3D, UNetConfig, save_network  # noqa: E402
from napari_connectome_models.registry import load_network  # noqa: E402

from napari_connectome.inference import predict_affinities  # noqa: E402
from napari_connectome.train.synapse_loop import (  # noqa: E402
    SynapseTrainConfig,
    SynapseVolume,
    is_near,
    synapse_augment,
    synapse_loss,
    synapse_network_from_checkpoint,
    synapse_scores,
    train_synapses,
)

TINY = SynapseNetConfig(downsample=((2, 2, 2), (2, 2, 2)), base_features=2, feature_factor=2)


def tiny_net(seed: int = 0) -> SynapseUNet:
    torch.manual_seed(seed)
    model = SynapseUNet(TINY)
    # random biases too, so the vector channels are not symmetric around 0
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("downsample", [((2, 2, 2), (2, 2, 2)), ((1, 3, 3), (2, 2, 2)), ((2, 2, 2),)])
def test_shape_arithmetic_is_the_affinity_networks(downsample):
    syn = SynapseNetConfig(downsample=downsample, base_features=3)
    aff = UNetConfig(downsample=downsample, base_features=3)
    assert syn.context == aff.context and syn.step == aff.step and syn.levels == aff.levels
    for want in [(1, 1, 1), (10, 17, 23)]:
        shape = syn.valid_input_shape(want)
        assert shape == aff.valid_input_shape(want)
        assert syn.output_shape(shape) == aff.output_shape(shape)
    with pytest.raises(ValueError, match="not valid"):
        syn.output_shape((41, 41, 41))
    assert syn.out_channels == 4


def test_forward_shapes_and_channels():
    model = tiny_net()
    shape = TINY.valid_input_shape((6, 8, 10))
    x = torch.rand(2, 1, *shape)
    out = model(x)
    assert out.shape == (2, 4, *TINY.output_shape(shape))
    mask, vectors = model.forward_train(x)
    assert mask.shape == (2, 1, *TINY.output_shape(shape)) and vectors.shape == (2, 3, *TINY.output_shape(shape))
    torch.testing.assert_close(out[:, :1], torch.sigmoid(mask))
    torch.testing.assert_close(out[:, 1:], vectors)
    assert (vectors < 0).any()  # no activation on the vectors
    # the trunk is UNet3D's: same parameter names and shapes, but four head channels
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    aff = {k: tuple(v.shape) for k, v in UNet3D(UNetConfig(base_features=2)).state_dict().items()}
    assert ours.keys() == aff.keys()
    assert ours["head.weight"][0] == 4


def test_config_round_trip_and_kind():
    d = TINY.to_dict()
    assert d["kind"] == "synapses"
    assert SynapseNetConfig.from_dict(json.loads(json.dumps(d))) == TINY
    with pytest.raises(ValueError, match="not a synapse network"):
        SynapseNetConfig.from_dict(UNetConfig().to_dict())
    assert "kind" not in UNetConfig().to_dict()  # the affinity format is unchanged


def test_save_and_load_round_trip(tmp_path):
    model = tiny_net(1)
    path = save_synapse_network(model, tmp_path / "s.pt", note="x")
    back = load_synapse_network(path)
    assert back.config == model.config and not back.training
    x = torch.rand(1, 1, *TINY.valid_input_shape((4, 4, 4)))
    with torch.no_grad():
        torch.testing.assert_close(back(x), model(x), rtol=0, atol=0)
    assert torch.load(path, weights_only=True)["metadata"] == {"note": "x"}


def test_blockwise_prediction_equals_whole_volume():
    model = tiny_net(2)
    raw = np.random.default_rng(0).integers(0, 256, size=(18, 21, 26), dtype=np.uint8)
    whole = predict_affinities(raw, model)
    tiled = predict_affinities(raw, model, block_shape=(8, 8, 12))
    assert whole.shape == (4, *raw.shape)
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-5)
    assert ((whole[0] >= 0) & (whole[0] <= 1)).all()


def test_registry_dispatches_on_the_stored_kind(tmp_path):
    syn = save_synapse_network(tiny_net(3), tmp_path / "syn.pt")
    torch.manual_seed(0)
    aff = save_network(UNet3D(UNetConfig(base_features=2)), tmp_path / "aff.pt")
    records = []
    for name, path, task in [("syn", syn, "synapses"), ("aff", aff, "affinities")]:
        records.append({"name": name, "task": task, "file": path.name,
                        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "voxel_size_nm": [10, 10, 10],
                        "fov_voxels": [44, 44, 44], "card": "cards/x.md"})
    (tmp_path / "registry.json").write_text(json.dumps({"models": records}))
    got = load_network("syn", registry=tmp_path / "registry.json", root=tmp_path)
    assert type(got) is SynapseUNet and got.config == TINY
    other = load_network("aff", registry=tmp_path / "registry.json", root=tmp_path)
    assert type(other) is UNet3D and other.config.out_channels == 9


def test_loss_ignores_vectors_outside_the_mask():
    rng = np.random.default_rng(0)
    mask = torch.from_numpy((rng.random((1, 1, 4, 5, 6)) < 0.2).astype(np.float32))
    weight = torch.ones_like(mask)
    logits = torch.from_numpy(rng.normal(size=(1, 1, 4, 5, 6)).astype(np.float32))
    pred = torch.from_numpy(rng.normal(size=(1, 3, 4, 5, 6)).astype(np.float32))
    target = torch.from_numpy(rng.normal(size=(1, 3, 4, 5, 6)).astype(np.float32))
    total, mask_part, vec_part = synapse_loss(logits, pred, mask, weight, target, vector_weight=2.0)
    moved = pred + 5.0 * (1 - mask)  # change only voxels outside the mask
    total2, _, vec2 = synapse_loss(logits, moved, mask, weight, target, vector_weight=2.0)
    assert float(vec2) == pytest.approx(float(vec_part)) and float(total2) == pytest.approx(float(total))
    inside = pred + 0.5 * mask
    assert float(synapse_loss(logits, inside, mask, weight, target)[2]) != pytest.approx(float(vec_part))
    assert float(total) == pytest.approx(float(mask_part) + 2.0 * float(vec_part))


def test_near_fraction_is_exact():
    assert [is_near(j, 0.5) for j in range(6)] == [False, True] * 3
    assert sum(is_near(j, 0.25) for j in range(400)) == 100
    assert not any(is_near(j, 0.0) for j in range(10)) and all(is_near(j, 1.0) for j in range(10))


def test_scores_of_a_perfect_and_a_shifted_prediction():
    mask = np.zeros((4, 4, 4), np.uint8)
    mask[1:3, 1:3, 1:3] = 1
    vectors = np.zeros((3, 4, 4, 4), np.float32)
    vectors[0][mask > 0] = 0.5
    pred = np.concatenate([mask[None].astype(np.float32), vectors])
    s = synapse_scores(pred, mask, vectors)
    assert s["f1"] == 1.0 and s["vector_error_nm"] == 0.0 and s["mask_voxels"] == 8
    pred[1] += 0.3  # 30 nm off in z everywhere
    pred[0, 0, 0, 0] = 1.0  # one false positive
    s = synapse_scores(pred, mask, vectors)
    assert s["vector_error_nm"] == pytest.approx(30.0)
    assert s["precision"] == pytest.approx(8 / 9) and s["recall"] == 1.0


def _volumes():
    rng = np.random.default_rng(4)
    shape = (28, 28, 28)
    labels = np.ones(shape, dtype=np.uint32)
    labels[:, :, 14:] = 2
    raw = rng.integers(0, 256, size=shape, dtype=np.uint8)
    rows = {"pre": np.array([[140.0, 140.0, 120.0], [60.0, 80.0, 170.0]]),
            "post": np.array([[140.0, 130.0, 160.0], [70.0, 90.0, 120.0]]),
            "post_id": np.array([2, 1], dtype=np.uint64)}
    return [SynapseVolume.from_arrays(raw, labels, rows, voxel_size=(10, 10, 10), pad=20, mask_radius_nm=50.0)]


def _config(iterations: int) -> SynapseTrainConfig:
    from dataclasses import asdict

    return SynapseTrainConfig(net=TINY.to_dict(), input_shape=(44, 44, 44), iterations=iterations, seed=3,
                              lr=1e-3, augment=asdict(synapse_augment()), checkpoint_every=10, threads=1)


def test_training_resumes_bit_identically(tmp_path):
    volumes = _volumes()
    assert volumes[0].mask.sum() > 0
    calls = []
    straight = train_synapses(volumes, _config(20), tmp_path / "a", log=lambda s: None,
                              validate=lambda m, it: calls.append(it) or {"val_f1": 0.0})
    assert calls == [10, 20]
    first = train_synapses(volumes, _config(20), tmp_path / "b", log=lambda s: None, stop_after=10)
    assert first.name == "checkpoint-0000010.pt"
    resumed = train_synapses(volumes, _config(20), tmp_path / "b", log=lambda s: None)
    a = torch.load(straight, weights_only=True)
    b = torch.load(resumed, weights_only=True)
    assert a["iteration"] == b["iteration"] == 20
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    start = torch.load(first, weights_only=True)
    assert any(not torch.equal(start["model"][k], b["model"][k]) for k in b["model"])  # it did train on
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in log] == [10, 20]
    assert all(np.isfinite(r["loss_mask"]) and np.isfinite(r["loss_vector"]) for r in log)
    model = synapse_network_from_checkpoint(resumed)
    assert isinstance(model, SynapseUNet) and not model.training


def test_a_folder_with_another_run_is_refused(tmp_path):
    from napari_connectome.errors import InputError

    volumes = _volumes()
    train_synapses(volumes, _config(2), tmp_path, log=lambda s: None)
    other = SynapseTrainConfig.from_dict({**_config(2).to_dict(), "lr": 1e-2})
    with pytest.raises(InputError, match="lr"):
        train_synapses(volumes, other, tmp_path, log=lambda s: None)


def test_elastic_augmentation_is_refused():
    from dataclasses import asdict

    from napari_connectome.errors import InputError
    from napari_connectome.train.augment import AugmentConfig

    with pytest.raises(InputError, match="elastic"):
        SynapseTrainConfig(net=TINY.to_dict(), input_shape=(44, 44, 44), augment=asdict(AugmentConfig()))


def test_a_run_can_start_from_weights_and_checks_them(tmp_path):
    from napari_connectome.errors import InputError

    volumes = _volumes()
    config = _config(1)
    start = SynapseUNet(SynapseNetConfig.from_dict(config.net))
    with torch.no_grad():
        for p in start.parameters():
            p.add_(0.5)  # not what the seed would give
    path = save_synapse_network(start, tmp_path / "start.pt")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    # One step at learning rate 0: the checkpoint holds exactly the weights the run started from.
    still = SynapseTrainConfig.from_dict({**config.to_dict(), "lr": 0.0, "init": {"weights": str(path), "sha256": digest}})
    done = train_synapses(volumes, still, tmp_path / "run", log=lambda s: None)
    state = torch.load(done, weights_only=True)["model"]
    for k, v in start.state_dict().items():
        assert torch.equal(state[k], v), k
    bad = SynapseTrainConfig.from_dict({**still.to_dict(), "init": {"weights": str(path), "sha256": "0" * 64}})
    with pytest.raises(InputError, match="sha256"):
        train_synapses(volumes, bad, tmp_path / "run-bad", log=lambda s: None)
