"""The project folder: manifest, inputs by reference, refusal to overwrite."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from napari_connectome.errors import InputError
from napari_connectome.project import MANIFEST, create_project, is_project, open_project


@pytest.fixture
def volumes(tmp_path):
    path = tmp_path / "data.h5"
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        raw = f.create_dataset("raw", data=rng.integers(0, 255, (8, 16, 16), dtype=np.uint8))
        raw.attrs["resolution"] = [30.0, 4.0, 4.0]
        sv = f.create_dataset("sv", data=rng.integers(1, 9, (8, 16, 16)).astype(np.uint32))
        sv.attrs["resolution"] = [30.0, 4.0, 4.0]
        f.create_dataset("small", data=np.ones((4, 16, 16), dtype=np.uint32))
    return path


def test_create_and_open_project(tmp_path, volumes):
    root = tmp_path / "proj"
    project = create_project(root, raw=f"{volumes}/raw", supervoxels=f"{volumes}/sv", name="p1")
    assert is_project(root)
    manifest = json.loads((root / MANIFEST).read_text())
    assert manifest["format"] == "napari-connectome-project"
    assert manifest["inputs"]["raw"]["voxel_size_nm"] == [30.0, 4.0, 4.0]
    assert manifest["inputs"]["supervoxels"]["kind"] == "labels"
    again = open_project(root)
    assert again.name == "p1"
    vols = again.volumes()
    assert list(vols) == ["raw", "supervoxels"]
    np.testing.assert_array_equal(vols["supervoxels"].levels[0].read(), h5py.File(volumes)["sv"][...])
    assert vols["raw"].voxel_size == (30.0, 4.0, 4.0)
    assert project.component_path("edit_log") == root / "edits.sqlite"


def test_voxel_size_given_at_creation_wins(tmp_path, volumes):
    project = create_project(tmp_path / "p", raw=f"{volumes}/raw", voxel_size=(40, 8, 8))
    assert open_project(project.root).volumes()["raw"].voxel_size == (40.0, 8.0, 8.0)


def test_existing_project_is_never_overwritten(tmp_path, volumes):
    root = tmp_path / "p"
    create_project(root, raw=f"{volumes}/raw", name="first")
    before = (root / MANIFEST).read_bytes()
    with pytest.raises(InputError, match="already exists"):
        create_project(root, raw=f"{volumes}/raw", name="second")
    assert (root / MANIFEST).read_bytes() == before


def test_mismatched_supervoxels_are_refused(tmp_path, volumes):
    with pytest.raises(InputError, match=r"shape \(4, 16, 16\).*\(8, 16, 16\)") as err:
        create_project(tmp_path / "p", raw=f"{volumes}/raw", supervoxels=f"{volumes}/small")
    assert "\n" not in str(err.value)
    assert not is_project(tmp_path / "p")


def test_bad_voxel_size_and_bad_manifest(tmp_path, volumes):
    with pytest.raises(InputError, match="> 0"):
        create_project(tmp_path / "p", raw=f"{volumes}/raw", voxel_size=(0, 4, 4))
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / MANIFEST).write_text("{not json")
    with pytest.raises(InputError, match="unreadable"):
        open_project(tmp_path / "q")
    with pytest.raises(InputError, match="not a napari-connectome project"):
        open_project(tmp_path)


def test_components_do_not_collide(tmp_path, volumes):
    project = create_project(tmp_path / "p", raw=f"{volumes}/raw")
    assert project.register_component("graph") == project.root / "graph"
    assert open_project(project.root).manifest["components"] == {"graph": "graph"}
    with pytest.raises(InputError, match="already belongs"):
        project.register_component("other", "graph")
