"""Import into a project's store and export with the neurons as they are now: CSV, Parquet, CREMI, Neuroglancer, connectome."""

from __future__ import annotations

import csv
import struct

import numpy as np
import pytest

# tests/engine is on sys.path (pytest prepends a test file's folder)
from edit_sequences import KW, VS

from napari_connectome.cli import main
from napari_connectome.proofread import Proofreader
from napari_connectome.proofread.demo import demo_volumes, make_demo_project
from napari_connectome.synapses import SynapseTable, read_cremi, read_csv, write_csv
from napari_connectome.synapses.connectome import LiveConnectome
from napari_connectome.synapses.export import read_neuroglancer
from napari_connectome.synapses.store import SynapseStore


@pytest.fixture()
def project(tmp_path):
    return make_demo_project(tmp_path / "p", **KW)


def _table(n=30, seed=0):
    rng = np.random.default_rng(seed)
    shape = np.asarray(KW["shape"])
    pre = rng.integers(0, shape, (n, 3)) * VS
    post = rng.integers(0, shape, (n, 3)) * VS
    return SynapseTable(synapse_id=np.arange(n) + 1, pre=pre, post=post, pre_id=np.zeros(n, np.uint64),
                        post_id=np.zeros(n, np.uint64), score=rng.random(n))


def _one_line(capsys):
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


def test_import_then_export_reads_the_neurons_now(project, tmp_path, capsys):
    table = _table()
    src = write_csv(table, tmp_path / "in.csv")
    assert main(["synapse-import", str(project.root), str(src)]) == 0
    # An edit after the import: the export follows it.
    with Proofreader.open(project) as pr:
        ids, segs = pr.mapping()
        sv = demo_volumes(**KW)["supervoxels"]
        a, b = (np.argwhere(sv == ids[segs == s][0])[0] * VS for s in np.unique(segs)[:2])
        pr.merge(tuple(a), tuple(b))
    with Proofreader.open(project, read_only=True) as pr:
        want_pre = [pr.segment_at(p) for p in table.pre]
        want_post = [pr.segment_at(p) for p in table.post]
        live = LiveConnectome(pr, table.pre, table.post, table.score, listen=False).recompute()
    out = tmp_path / "out.csv"
    assert main(["synapse-export", str(project.root), str(out)]) == 0
    got = read_csv(out)
    assert got.pre_id.tolist() == want_pre and got.post_id.tolist() == want_post
    np.testing.assert_array_equal(got.pre, table.pre)
    # The connectome: the live connectome's pairs and counts.
    conn = tmp_path / "connectome.csv"
    assert main(["synapse-export", str(project.root), str(conn), "--format", "connectome"]) == 0
    with open(conn, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["pre_id"]), int(r["post_id"]), int(r["count"])) for r in rows] == list(
        zip(live.pre.tolist(), live.post.tolist(), live.count.tolist(), strict=True))
    np.testing.assert_allclose([float(r["score_sum"]) for r in rows], live.score, rtol=1e-6)
    # Parquet and CREMI carry the same rows.
    import pyarrow.parquet as pq

    pqt = tmp_path / "out.parquet"
    assert main(["synapse-export", str(project.root), str(pqt)]) == 0
    back = pq.read_table(pqt).to_pydict()
    assert back["pre_id"] == want_pre and back["pre_z_nm"] == table.pre[:, 0].tolist()
    h5 = tmp_path / "out.h5"
    assert main(["synapse-export", str(project.root), str(h5)]) == 0
    cremi = read_cremi(h5)
    np.testing.assert_array_equal(cremi.post, table.post)


def test_neuroglancer_annotations_hold_lines_scores_and_relationships(project, tmp_path):
    table = _table(12, seed=3)
    assert main(["synapse-import", str(project.root), str(write_csv(table, tmp_path / "in.csv"))]) == 0
    out = tmp_path / "ng"
    assert main(["synapse-export", str(project.root), str(out)]) == 0
    pre, post, score, ids = read_neuroglancer(out)
    np.testing.assert_array_equal(pre, table.pre.astype(np.float32))
    np.testing.assert_array_equal(post, table.post.astype(np.float32))
    np.testing.assert_array_equal(score, table.score)
    assert ids.tolist() == list(range(12))
    got = read_csv(write_csv(table, tmp_path / "x.csv"))  # the ids the export used: read them back
    with Proofreader.open(project, read_only=True) as pr:
        pre_ids = [pr.segment_at(p) for p in got.pre]
    for neuron in set(pre_ids):
        blob = (out / "rel_pre_neuron" / str(neuron)).read_bytes()
        (n,) = struct.unpack_from("<Q", blob)
        assert n == pre_ids.count(neuron)
        assert len(blob) == 8 + n * 28 + n * 8
    first = (out / "by_id" / "0").read_bytes()
    assert len(first) == 28 + 2 * 12 and struct.unpack_from("<IQ", first, 28) == (1, pre_ids[0])
    # A second export refuses to replace it without --overwrite, and replaces it whole with it.
    assert main(["synapse-export", str(project.root), str(out)]) == 2
    assert main(["synapse-export", str(project.root), str(out), "--overwrite"]) == 0
    assert len(read_neuroglancer(out)[0]) == 12


def test_bad_imports_and_exports_are_one_line_and_change_nothing(project, tmp_path, capsys):
    store = project.component_path("synapses")
    table = _table(5)
    far = SynapseTable(table.synapse_id, table.pre + [[0, 0, 1e6]] + np.zeros((5, 3)), table.post, table.pre_id,
                       table.post_id, table.score)
    assert main(["synapse-import", str(project.root), str(write_csv(far, tmp_path / "far.csv"))]) == 2
    assert "5 of 5 synapses have a point outside the project's volume" in _one_line(capsys)
    assert not store.exists() or not SynapseStore(store, read_only=True).batches()
    (tmp_path / "x.txt").write_text("hello")
    assert main(["synapse-import", str(project.root), str(tmp_path / "x.txt")]) == 2
    assert "neither a synapse CSV" in _one_line(capsys)
    assert main(["synapse-import", str(project.root), str(write_csv(table, tmp_path / "ok.csv"))]) == 0
    capsys.readouterr()
    log = project.component_path("edit_log")
    before = log.read_bytes() if log.exists() else None
    assert main(["synapse-export", str(project.root), str(log), "--format", "csv", "--overwrite"]) == 2
    assert "edit log" in _one_line(capsys)
    assert (log.read_bytes() if log.exists() else None) == before
    assert main(["synapse-export", str(project.root), str(store), "--format", "csv", "--overwrite"]) == 2
    assert "synapse store" in _one_line(capsys)
    assert len(SynapseStore(store, read_only=True).current()) == 5
    assert main(["synapse-export", str(project.root), str(tmp_path / "out.xyz")]) == 2
    assert "format" in _one_line(capsys)
