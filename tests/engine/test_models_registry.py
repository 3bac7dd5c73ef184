"""The model registry checks weights by sha256 before anything loads them."""

from __future__ import annotations

import hashlib
import json

import pytest
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
