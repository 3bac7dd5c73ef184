"""The model registry checks weights by sha256 before anything loads them."""

from __future__ import annotations

import hashlib
import json

import pytest
from conftest import need_torch
from napari_connectome_models.registry import ModelRegistryError, load_registry, weights_path


def _registry(tmp_path, digest):
    (tmp_path / "w.pt").write_bytes(b"weights")
    record = {
        "name": "tiny",
        "task": "affinities",
        "file": "w.pt",
        "sha256": digest,
        "voxel_size_nm": [8, 8, 8],
        "fov_voxels": [16, 64, 64],
        "card": "cards/tiny.md",
    }
    (tmp_path / "registry.json").write_text(json.dumps({"models": [record]}))
    return load_registry(tmp_path / "registry.json")["tiny"]


def test_weights_with_the_right_digest_load(tmp_path):
    entry = _registry(tmp_path, hashlib.sha256(b"weights").hexdigest())
    assert weights_path(entry, root=tmp_path) == tmp_path / "w.pt"
    assert entry.voxel_size_nm == (8.0, 8.0, 8.0)


def test_tampered_or_missing_weights_are_refused(tmp_path):
    entry = _registry(tmp_path, "0" * 64)
    with pytest.raises(ModelRegistryError, match="does not match"):
        weights_path(entry, root=tmp_path)
    (tmp_path / "w.pt").unlink()
    with pytest.raises(ModelRegistryError, match="missing"):
        weights_path(entry, root=tmp_path)


def test_packaged_registry_parses():
    assert isinstance(load_registry(), dict)


def _network_registry(tmp_path, *, tamper: bool):
    torch = need_torch()
    from napari_connectome_models.nets.unet import UNet3D, UNetConfig, save_network

    torch.manual_seed(0)
    config = UNetConfig(base_features=2)
    save_network(UNet3D(config), tmp_path / "net.pt")
    digest = hashlib.sha256((tmp_path / "net.pt").read_bytes()).hexdigest()
    if tamper:
        digest = digest[::-1]
    record = {
        "name": "tiny-affinities",
        "task": "affinities",
        "file": "net.pt",
        "sha256": digest,
        "voxel_size_nm": [10, 10, 10],
        "fov_voxels": list(config.valid_input_shape((4, 4, 4))),
        "output_shape": list(config.output_shape(config.valid_input_shape((4, 4, 4)))),
        "context_voxels": list(config.context),
        "offsets": [list(o) for o in config.offsets],
        "card": "cards/tiny.md",
    }
    (tmp_path / "registry.json").write_text(json.dumps({"models": [record]}))
    return tmp_path / "registry.json"


def test_registered_network_loads_offline(tmp_path):
    from napari_connectome_models.registry import load_network

    path = _network_registry(tmp_path, tamper=False)
    entry = load_registry(path)["tiny-affinities"]
    assert entry.context_voxels == (20, 20, 20) and len(entry.offsets) == 9
    model = load_network("tiny-affinities", registry=path, root=tmp_path)
    assert model.config.offsets == entry.offsets
    assert model.config.output_shape(entry.fov_voxels) == entry.output_shape


def test_registered_network_with_a_wrong_sha256_is_refused(tmp_path):
    from napari_connectome_models.registry import load_network

    path = _network_registry(tmp_path, tamper=True)
    with pytest.raises(ModelRegistryError, match=r"sha256 .* does not match the registry's .* 'tiny-affinities'"):
        load_network("tiny-affinities", registry=path, root=tmp_path)
    with pytest.raises(ModelRegistryError, match="no model 'nothing'"):
        load_network("nothing", registry=path, root=tmp_path)


def test_packaged_affinity_models_match_their_registry_entries():
    # every shipped affinity network loads offline, and its shapes are the ones its entry promises
    from napari_connectome_models.registry import list_models, load_network

    entries = list_models(task="affinities")
    if entries:
        need_torch()
    for entry in entries:
        model = load_network(entry.name)
        assert model.config.output_shape(entry.fov_voxels) == entry.output_shape
        assert model.config.context == entry.context_voxels
        assert model.config.offsets == entry.offsets
