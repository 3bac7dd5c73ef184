"""``napari-connectome synapses DIR``: network → sites → partners → store and CSV; resumable; bad input."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import need_torch

from napari_connectome.cli import main
from napari_connectome.synapses import read_csv
from napari_connectome.synapses.store import SynapseStore

torch = need_torch()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A small synapse U-Net set by hand: mask everywhere, every vector 100 nm along +x (so the test knows the sites)."""
    from napari_connectome_models.nets.synapse import (
        SynapseNetConfig,
        SynapseUNet,
        save_synapse_network,
    )

    torch.manual_seed(0)
    net = SynapseUNet(SynapseNetConfig(downsample=((2, 2, 2),), base_features=2, feature_factor=2))
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.copy_(torch.tensor([10.0, 0.0, 0.0, 1.0]))
    path = tmp_path_factory.mktemp("net") / "tiny.pt"
    save_synapse_network(net, path, voxel_size_nm=[10.0, 10.0, 10.0])
    return path


@pytest.fixture()
def project(tmp_path):
    assert main(["synthetic", str(tmp_path / "data"), "--shape", "40", "64", "64", "--voxel-size", "10", "10", "10",
                 "--seed", "3", "--synapses", "--synapse-density", "6", "--quiet"]) == 0
    assert main(["project", "create", str(tmp_path / "p"), "--raw", str(tmp_path / "data" / "raw.ome.zarr"),
                 "--groundtruth", str(tmp_path / "data" / "groundtruth.ome.zarr")]) == 0
    return tmp_path


def test_detect_store_and_csv_then_skip(project, tiny, capsys):
    gt = str(project / "data" / "groundtruth.ome.zarr")
    args = ["synapses", str(project / "p"), "--model", str(tiny), "--labels", gt, "--threshold", "0.5", "--quiet"]
    assert main(args) == 0
    line = capsys.readouterr().out
    assert "prediction ran" in line
    table = read_csv(project / "p" / "exports" / "synapses.csv")
    with SynapseStore(project / "p" / "synapses.sqlite", read_only=True) as store:
        batches = store.batches()
        assert [b["origin"] for b in batches] == ["detected"]
        stored = store.current()
    assert len(stored) == len(table)
    np.testing.assert_array_equal(stored.post, table.post)
    # Every connection joins two different, non-background neurons of the labels given, read at its points:
    # the post site is a labelled piece's centre, the pre site 100 nm along +x from it.
    assert len(table) > 0
    assert np.all(table.pre_id > 0) and np.all(table.post_id > 0) and np.all(table.pre_id != table.post_id)
    np.testing.assert_allclose(table.pre - table.post, np.tile([0.0, 0.0, 100.0], (len(table), 1)), atol=1e-6)
    from napari_connectome.synapses import labels_at
    from napari_connectome.volume import open_volume

    labels = open_volume(gt, kind="labels")
    assert labels_at(labels, table.post).tolist() == table.post_id.tolist()
    assert labels_at(labels, table.pre).tolist() == table.pre_id.tolist()
    # A second run: the prediction is up to date, a new detected batch supersedes the first.
    assert main(args) == 0
    assert "prediction skipped" in capsys.readouterr().out
    with SynapseStore(project / "p" / "synapses.sqlite", read_only=True) as store:
        assert [b["superseded_by"] for b in store.batches()] == [2, None]
    # With orientation (the scene's grey levels decide which end is pre): the batch records the radius.
    assert main([*args, "--orient", "80"]) == 0
    with SynapseStore(project / "p" / "synapses.sqlite", read_only=True) as store:
        last = store.batches()[-1]
        assert last["details"]["orient_radius_nm"] == 80.0
        turned = store.current()
    assert len(turned) > 0 and np.all(turned.pre_id != turned.post_id)


def test_bad_input_is_one_line(project, tiny, capsys, tmp_path):
    p = str(project / "p")
    assert main(["synapses", p, "--model", str(tiny)]) == 2  # no graph, no --labels
    assert "has no segmentation yet" in capsys.readouterr().err
    assert main(["synapses", p, "--model", str(tiny), "--labels", str(project / "nope.zarr")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "nope.zarr" in err
    gt = str(project / "data" / "groundtruth.ome.zarr")
    assert main(["synapses", p, "--model", "affinities-fib-10nm", "--labels", gt]) == 2
    assert "predicts affinities, not synapses" in capsys.readouterr().err
    assert main(["synapses", p, "--model", str(tiny), "--labels", gt, "--csv", str(project / "p" / "synapses.sqlite")]) == 2
    assert "synapse store" in capsys.readouterr().err
    for flag, value, said in (("--pre-reach", "abc", "a distance in nm or 'off'"),
                              ("--pre-reach", "-5", "must be a distance ≥ 0 nm"),
                              ("--orient", "abc", "a distance in nm or 'off'"),
                              ("--orient", "0", "must be a distance > 0 nm"),
                              ("--orient", "inf", "must be a distance > 0 nm")):
        assert main(["synapses", p, "--model", str(tiny), "--labels", gt, flag, value]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and said in err and flag in err
