"""Provenance: every computed output says what made it, and `napari-connectome provenance` prints it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_connectome.cli import main
from napari_connectome.errors import InputError
from napari_connectome.provenance import Recorder, volume_identity
from napari_connectome.provenance_report import read_provenance
from napari_connectome.samples import gala_fib_project


def test_a_record_has_software_parameters_inputs_and_timings():
    rec = Recorder("test", parameters={"block": (64, np.int64(128)), "threshold": np.float32(0.5)},
                   extra_software=("numpy",))
    with rec.timed("stage"):
        sum(range(1000))
    rec.set("device", {"kind": "cpu"})
    record = rec.finish()
    json.dumps(record)  # plain JSON all through
    assert record["parameters"] == {"block": [64, 128], "threshold": 0.5}
    assert record["software"]["napari-connectome"] and record["software"]["numpy"] == np.__version__
    assert record["timings_s"]["stage"] >= 0 and record["timings_s"]["total"] >= record["timings_s"]["stage"]
    assert record["device"] == {"kind": "cpu"}


def test_a_written_volume_carries_its_record(tmp_path, capsys):
    from napari_connectome.pyramid import convert

    project = gala_fib_project(tmp_path / "p")
    src = project.inputs["raw"]["uri"]
    dst = convert(src, tmp_path / "raw.ome.zarr", chunks=32)
    records = read_provenance(dst)
    record = records["volume"]
    assert record["kind"] == "pyramid" and record["parameters"]["chunks"] == [32, 32, 32]
    assert record["inputs"]["source"]["shape"] == [50, 100, 200]
    assert record["inputs"]["source"]["metadata_sha256"]  # identity without reading voxels
    assert "timings_s" not in record and "created" not in record  # the same work, the same bytes
    again = convert(src, tmp_path / "again" / "raw.ome.zarr", chunks=32)
    assert (again / ".zattrs").read_bytes() == (dst / ".zattrs").read_bytes()
    assert main(["provenance", str(dst)]) == 0
    out = capsys.readouterr().out
    assert "pyramid" in out and "input source" in out


def test_a_projects_graph_and_merge_tree_carry_their_records(tmp_path, capsys):
    from napari_connectome.graph import agglomerate_project

    project = gala_fib_project(tmp_path / "p")
    agglomerate_project(project, threshold=0.5)
    records = read_provenance(project.root)
    graph, tree = records["project component graph"], records["project component merge tree"]
    assert graph["outputs"]["sha256"] == project.manifest["graph"]["sha256"]
    assert graph["inputs"]["supervoxels"] == volume_identity(project.open_input("supervoxels"))
    assert "boundaries" in graph["inputs"] and "raw" not in graph["inputs"]
    assert tree["inputs"]["graph"]["sha256"] == graph["outputs"]["sha256"]
    assert tree["outputs"]["sha256"] == project.manifest["agglomeration"]["tree_sha256"]
    assert main(["provenance", str(project.root), "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == set(records)


def test_no_record_is_one_line_and_exit_2(tmp_path, capsys):
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(InputError, match="no napari-connectome provenance record"):
        read_provenance(plain)
    assert main(["provenance", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]


def test_a_skeleton_rebuild_is_recorded(tmp_path):
    from napari_connectome.graph import agglomerate_project
    from napari_connectome.proofread import Proofreader
    from napari_connectome.skeleton.store import SkeletonStore

    project = gala_fib_project(tmp_path / "p")
    agglomerate_project(project, threshold=0.5)
    with Proofreader.open(project) as pr:
        store = SkeletonStore.rebuild(pr)
    record = read_provenance(project.root)["project component skeletons"]
    assert record["outputs"]["segments"] == len(store.skeletons) > 0
    assert record["inputs"]["supervoxels"]["shape"] == [50, 100, 200]
    assert "kimimaro" in record["software"]
