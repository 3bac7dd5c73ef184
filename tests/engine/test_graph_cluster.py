"""The region graph on Dask: whole blocks on a LocalCluster of 2 workers give the threads' graph, byte for byte."""

from __future__ import annotations

import numpy as np
import pytest

from napari_connectome.cli import main
from napari_connectome.graph import RegionGraph, build_rag
from napari_connectome.graph.agglomerate import MergeTree
from napari_connectome.project import create_project
from napari_connectome.pyramid.write import write_ome_zarr
from napari_connectome.volume import from_array


def _volumes(seed: int = 0):
    """Compact supervoxels (a watershed of a smooth random map) and that map as the boundary signal."""
    import scipy.ndimage as ndi
    from skimage.segmentation import watershed

    rng = np.random.default_rng(seed)
    p = ndi.gaussian_filter(rng.random((24, 48, 48)).astype(np.float32), 2.0)
    p = (p - p.min()) / (p.max() - p.min())
    markers, _ = ndi.label(p == ndi.minimum_filter(p, size=5))
    return watershed(p, markers).astype(np.uint32), p.astype(np.float32)


def _same_graph(a: RegionGraph, b: RegionGraph) -> None:
    for name in ("node_ids", "node_sizes", "edges", "contact_area"):
        assert getattr(a, name).tobytes() == getattr(b, name).tobytes(), name
    assert sorted(a.features) == sorted(b.features)
    for name in a.features:
        assert a.features[name].tobytes() == b.features[name].tobytes(), name
    for x, y in zip(a.histogram, b.histogram, strict=True):
        assert x.tobytes() == y.tobytes()


def test_one_and_two_threads_and_a_cluster_of_processes_give_the_same_bytes():
    from distributed import Client, LocalCluster

    sv, p = _volumes()
    kw = {"block_shape": (12, 24, 24)}
    one = build_rag(from_array(sv, kind="labels"), from_array(p), workers=1, **kw)
    two = build_rag(from_array(sv, kind="labels"), from_array(p), workers=2, **kw)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        far = build_rag(from_array(sv, kind="labels"), from_array(p), scheduler=client, **kw)
    assert one.n_edges > 100
    _same_graph(one, two)
    _same_graph(one, far)
    # and the blocks do not matter either
    _same_graph(one, build_rag(from_array(sv, kind="labels"), from_array(p), block_shape=(24, 48, 48)))


@pytest.fixture
def zarr_project(tmp_path):
    sv, p = _volumes(1)
    write_ome_zarr(tmp_path / "sv.ome.zarr", sv, voxel_size=(10, 10, 10), kind="labels", chunks=16)
    write_ome_zarr(tmp_path / "p.ome.zarr", p, voxel_size=(10, 10, 10), kind="image", chunks=16)
    raw = (255 * (1 - p)).astype(np.uint8)
    write_ome_zarr(tmp_path / "raw.ome.zarr", raw, voxel_size=(10, 10, 10), kind="image", chunks=16)

    def make(name: str):
        return create_project(tmp_path / name, raw=str(tmp_path / "raw.ome.zarr"),
                              supervoxels=str(tmp_path / "sv.ome.zarr"), boundaries=str(tmp_path / "p.ome.zarr"))

    return make


def test_agglomerate_on_a_scheduler_address_gives_the_threaded_graph_and_tree(zarr_project, capsys):
    from distributed import LocalCluster

    here, there = zarr_project("here"), zarr_project("there")
    assert main(["agglomerate", str(here.root), "--quiet"]) == 0
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        assert main(["agglomerate", str(there.root), "--quiet", "--scheduler", cluster.scheduler_address]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0].split(":", 1)[1] == out[1].split(":", 1)[1]  # the same counts and segments
    _same_graph(RegionGraph.load(here.root / "graph" / "rag.npz"), RegionGraph.load(there.root / "graph" / "rag.npz"))
    a, b = MergeTree.load(here.root / "graph" / "merge_tree.npz"), MergeTree.load(there.root / "graph" / "merge_tree.npz")
    assert a.merges.tobytes() == b.merges.tobytes() and a.scores.tobytes() == b.scores.tobytes()


def test_a_scheduler_nobody_answers_is_one_line(zarr_project, capsys):
    project = zarr_project("p")
    assert main(["agglomerate", str(project.root), "--scheduler", "tcp://127.0.0.1:9", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no Dask scheduler answers there" in err
    assert main(["agglomerate", str(project.root), "--scheduler", "nonsense", "--quiet"]) == 2
    assert "is not one of" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["boundaries", "affinities"])
def test_ids_past_2_to_the_32_give_the_graph_of_the_same_ids_shifted_down(kind):
    """The compiled face pass keys a pair by two 32-bit ids; larger ids are numbered per box first."""
    sv, p = _volumes(2)
    big = sv.astype(np.uint64) + np.uint64(2**40)
    if kind == "affinities":
        signal = from_array(np.stack([p, p[::-1], p.T.T]), axes=("c", "z", "y", "x"), voxel_size=(1, 1, 1, 1))
    else:
        signal = from_array(p)
    kw = {"signal_kind": kind, "block_shape": (12, 24, 24)}
    small_graph = build_rag(from_array(sv, kind="labels"), signal, **kw)
    big_graph = build_rag(from_array(big, kind="labels"), signal, **kw)
    np.testing.assert_array_equal(big_graph.node_ids - np.uint64(2**40), small_graph.node_ids)
    np.testing.assert_array_equal(big_graph.edges - np.uint64(2**40), small_graph.edges)
    np.testing.assert_array_equal(big_graph.contact_area, small_graph.contact_area)
    for name in small_graph.features:
        assert big_graph.features[name].tobytes() == small_graph.features[name].tobytes(), name
