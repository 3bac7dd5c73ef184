"""Region adjacency graph: exact faces, blockwise = whole, signals, files, project glue."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_connectome.errors import InputError
from napari_connectome.graph import (
    RegionGraph,
    agglomerate_project,
    build_project_graph,
    build_rag,
    load_project_graph,
)
from napari_connectome.graph.rag import N_BINS, histogram_quantiles
from napari_connectome.project import create_project, open_project
from napari_connectome.volume import from_array


def brute_force(labels: np.ndarray, face_value) -> dict:
    """(u, v) -> list of face values, by a plain loop over every voxel face."""
    faces: dict[tuple[int, int], list[float]] = {}
    for axis in range(3):
        for idx in np.ndindex(*labels.shape):
            nxt = list(idx)
            nxt[axis] += 1
            if nxt[axis] >= labels.shape[axis]:
                continue
            a, b = int(labels[idx]), int(labels[tuple(nxt)])
            if a == b or a == 0 or b == 0:
                continue
            key = (min(a, b), max(a, b))
            faces.setdefault(key, []).append(face_value(idx, tuple(nxt), axis))
    return faces


def random_labels(rng, shape=(6, 7, 8), n=6, zero_fraction=0.1):
    labels = rng.integers(1, n + 1, shape).astype(np.uint32)
    labels[rng.random(shape) < zero_fraction] = 0
    return labels


def check_against(rag: RegionGraph, faces: dict, labels: np.ndarray) -> None:
    keys = sorted(faces)
    np.testing.assert_array_equal(rag.edges, np.array(keys, dtype=np.uint64).reshape(-1, 2))
    np.testing.assert_array_equal(rag.contact_area, [len(faces[k]) for k in keys])
    np.testing.assert_allclose(rag.features["mean"], [np.mean(faces[k]) for k in keys], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(rag.features["min"], [np.min(faces[k]) for k in keys], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(rag.features["max"], [np.max(faces[k]) for k in keys], rtol=1e-6, atol=1e-6)
    ids, counts = np.unique(labels[labels != 0], return_counts=True)
    np.testing.assert_array_equal(rag.node_ids, ids.astype(np.uint64))
    np.testing.assert_array_equal(rag.node_sizes, counts)
    # Histogram-interpolated quantiles lie in the bin of the exact inverted-CDF
    # quantile (the smallest face value with at least q of the faces at or below it).
    for name, q in (("q10", 0.1), ("q25", 0.25), ("q50", 0.5), ("q75", 0.75), ("q90", 0.9)):
        exact = [np.quantile(faces[k], q, method="inverted_cdf") for k in keys]
        np.testing.assert_allclose(rag.features[name], exact, atol=1.0 / N_BINS + 1e-6)
    for name, values in rag.features.items():
        assert values.dtype == np.float32, name
        assert ((values >= 0) & (values <= 1)).all(), name


@pytest.mark.parametrize("block_shape", [(64, 64, 64), (1, 1, 1), (2, 3, 5), (3, 7, 2)])
def test_boundary_faces_exact_at_any_blocking(block_shape):
    rng = np.random.default_rng(1)
    labels = random_labels(rng)
    p = rng.random(labels.shape).astype(np.float32)
    faces = brute_force(labels, lambda i, j, ax: max(p[i], p[j]))
    rag = build_rag(from_array(labels, kind="labels"), from_array(p), block_shape=block_shape)
    assert rag.signal == "boundaries"
    check_against(rag, faces, labels)


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    block=st.tuples(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6)),
    n=st.integers(1, 9),
)
def test_blockwise_equals_whole(seed, block, n):
    rng = np.random.default_rng(seed)
    labels = random_labels(rng, shape=(5, 6, 7), n=n)
    p = rng.random(labels.shape).astype(np.float32)
    whole = build_rag(from_array(labels, kind="labels"), from_array(p), block_shape=(8, 8, 8))
    parts = build_rag(from_array(labels, kind="labels"), from_array(p), block_shape=block)
    np.testing.assert_array_equal(whole.edges, parts.edges)
    np.testing.assert_array_equal(whole.contact_area, parts.contact_area)
    np.testing.assert_array_equal(whole.node_sizes, parts.node_sizes)
    for name in whole.features:
        np.testing.assert_allclose(whole.features[name], parts.features[name], rtol=1e-6, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("face", ["mean", "min"])
def test_face_value_variants(face):
    rng = np.random.default_rng(6)
    labels = random_labels(rng)
    p = rng.random(labels.shape).astype(np.float32)
    op = {"mean": lambda a, b: (a + b) / 2, "min": min}[face]
    faces = brute_force(labels, lambda i, j, ax: op(p[i], p[j]))
    rag = build_rag(from_array(labels, kind="labels"), from_array(p), block_shape=(3, 4, 5), face=face)
    check_against(rag, faces, labels)
    assert any(face in n for n in rag.notes)
    with pytest.raises(InputError, match="face"):
        build_rag(from_array(labels, kind="labels"), from_array(p), face="median")


def test_same_graph_for_any_number_of_workers():
    rng = np.random.default_rng(8)
    labels = random_labels(rng, shape=(9, 10, 11), n=12)
    p = rng.random(labels.shape).astype(np.float32)
    one = build_rag(from_array(labels, kind="labels"), from_array(p), block_shape=(2, 3, 4), workers=1)
    three = build_rag(from_array(labels, kind="labels"), from_array(p), block_shape=(2, 3, 4), workers=3)
    np.testing.assert_array_equal(one.edges, three.edges)
    for name in one.features:
        np.testing.assert_array_equal(one.features[name], three.features[name])


def test_affinities_use_the_high_voxels_channel():
    rng = np.random.default_rng(2)
    labels = random_labels(rng, n=5)
    aff = rng.random((3, *labels.shape)).astype(np.float32)
    faces = brute_force(labels, lambda i, j, ax: 1.0 - aff[(ax, *j)])
    rag = build_rag(from_array(labels, kind="labels"), from_array(aff, axes=("c", "z", "y", "x"), voxel_size=(1, 1, 1, 1)),
                    signal_kind="affinities", block_shape=(2, 3, 4))
    assert rag.signal == "affinities"
    check_against(rag, faces, labels)


def test_uint8_boundaries_are_scaled_by_255():
    rng = np.random.default_rng(3)
    labels = random_labels(rng, n=4, zero_fraction=0)
    p8 = rng.integers(0, 256, labels.shape).astype(np.uint8)
    faces = brute_force(labels, lambda i, j, ax: max(p8[i], p8[j]) / 255.0)
    rag = build_rag(from_array(labels, kind="labels"), from_array(p8))
    check_against(rag, faces, labels)


def test_raw_intensity_proxy_is_said_so():
    rng = np.random.default_rng(4)
    labels = random_labels(rng, n=4, zero_fraction=0)
    raw = rng.integers(0, 256, labels.shape).astype(np.uint8)
    rag = build_rag(from_array(labels, kind="labels"), None, raw=from_array(raw))
    assert rag.signal == "raw-intensity-proxy"
    assert any("proxy" in n for n in rag.notes)
    lo, hi = np.percentile(raw, [0.5, 99.5])
    proxy = 1.0 - np.clip((raw.astype(np.float32) - lo) / (hi - lo), 0, 1)
    faces = brute_force(labels, lambda i, j, ax: max(proxy[i], proxy[j]))
    check_against(rag, faces, labels)
    # Dark voxels (membranes in EM) give a strong boundary.
    assert proxy[raw == raw.min()].min() == pytest.approx(1.0)


def test_shape_mismatch_names_both_volumes():
    labels = from_array(np.ones((4, 5, 6), np.uint32), kind="labels", name="sv.h5")
    p = from_array(np.zeros((4, 5, 7), np.float32), name="boundaries.h5")
    with pytest.raises(InputError) as err:
        build_rag(labels, p)
    message = str(err.value)
    assert "sv.h5" in message and "boundaries.h5" in message and "\n" not in message
    assert "(4, 5, 7)" in message and "(4, 5, 6)" in message


def test_no_signal_at_all_is_refused():
    with pytest.raises(InputError, match="boundary map"):
        build_rag(from_array(np.ones((2, 2, 2), np.uint32), kind="labels"))


def test_background_only_gives_an_empty_graph():
    rag = build_rag(from_array(np.zeros((3, 4, 5), np.uint32), kind="labels"), from_array(np.zeros((3, 4, 5), np.float32)))
    assert rag.n_nodes == 0 and rag.n_edges == 0
    assert rag.edge_index(1, 2) is None
    assert rag.neighbors(1).size == 0


def test_queries_and_save_load(tmp_path):
    labels = np.zeros((1, 3, 6), np.uint64)
    labels[0, :, 0:2] = 10
    labels[0, :, 2:4] = 20
    labels[0, :, 4:6] = 2**40  # ids beyond 32 bits are kept exactly
    p = np.zeros(labels.shape, np.float32)
    p[0, :, 1] = 0.25
    p[0, :, 3] = 0.75
    rag = build_rag(from_array(labels, kind="labels"), from_array(p))
    np.testing.assert_array_equal(rag.edges, [[10, 20], [20, 2**40]])
    np.testing.assert_array_equal(rag.contact_area, [3, 3])
    np.testing.assert_allclose(rag.features["mean"], [0.25, 0.75])
    assert rag.edge_index(20, 10) == 0 and rag.edge_index(2**40, 20) == 1
    assert rag.edge_index(10, 2**40) is None and rag.edge_index(10, 99) is None
    np.testing.assert_array_equal(rag.edge_indices([[20, 10], [10, 2**40], [2**40, 20]]), [0, -1, 1])
    np.testing.assert_array_equal(rag.neighbors(20), [10, 2**40])
    np.testing.assert_array_equal(rag.edge_weight("max"), rag.features["max"])
    with pytest.raises(InputError, match="unknown edge feature"):
        rag.edge_weight("nope")
    path = rag.save(tmp_path / "g" / "rag.npz")
    back = RegionGraph.load(path)
    for name in ("node_ids", "node_sizes", "edges", "contact_area"):
        np.testing.assert_array_equal(getattr(back, name), getattr(rag, name))
    assert back.edges.dtype == np.uint64
    assert back.signal == rag.signal and back.voxel_size == rag.voxel_size
    for name in rag.features:
        np.testing.assert_array_equal(back.features[name], rag.features[name])
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="bad.npz"):
        RegionGraph.load(tmp_path / "bad.npz")


def test_histogram_quantiles_interpolate_inside_the_bin():
    # One edge, 4 faces at 0.1 and 4 at 0.9: the median sits at the end of the 0.1 bin,
    # clipped into [min, max].
    edge = np.array([0, 0])
    bins = np.array([int(0.1 * N_BINS), int(0.9 * N_BINS)])
    counts = np.array([4, 4])
    q50 = histogram_quantiles(edge, bins, counts, 1, N_BINS, 0.5, np.float32([0.1]), np.float32([0.9]))
    assert q50[0] == pytest.approx((bins[0] + 1) / N_BINS, abs=1e-6)
    q10 = histogram_quantiles(edge, bins, counts, 1, N_BINS, 0.1, np.float32([0.1]), np.float32([0.9]))
    assert 0.1 - 1e-6 <= q10[0] <= (bins[0] + 1) / N_BINS


def test_gala_fib_graph_blockwise(shared_data):
    d = shared_data / "gala-fib"
    ws = h5py.File(d / "test-ws.lzf.h5")["stack"][...]
    p = h5py.File(d / "test-p1.lzf.h5")["stack"][...]
    whole = build_rag(from_array(ws, kind="labels"), from_array(p))
    parts = build_rag(from_array(ws, kind="labels"), from_array(p), block_shape=(16, 32, 48))
    assert whole.n_nodes == 214
    np.testing.assert_array_equal(whole.edges, parts.edges)
    np.testing.assert_array_equal(whole.contact_area, parts.contact_area)
    for name in whole.features:
        np.testing.assert_allclose(whole.features[name], parts.features[name], rtol=1e-5, atol=1e-6)
    # Every face of the volume between different supervoxels is counted once.
    faces = sum(int((np.diff(ws, axis=a) != 0).sum()) for a in range(3))
    assert int(whole.contact_area.sum()) == faces


@pytest.fixture
def project_files(tmp_path):
    rng = np.random.default_rng(5)
    labels = np.repeat(np.repeat(np.arange(1, 9, dtype=np.uint32).reshape(2, 2, 2), 4, axis=1), 4, axis=2)
    labels = np.repeat(labels, 3, axis=0)
    p = rng.random(labels.shape).astype(np.float32)
    path = tmp_path / "vol.h5"
    with h5py.File(path, "w") as f:
        for name, data in (("raw", rng.integers(0, 255, labels.shape, dtype=np.uint8)), ("sv", labels), ("p", p), ("p_bad", p[:, :-1])):
            f.create_dataset(name, data=data).attrs["resolution"] = [10.0, 10.0, 10.0]
    return path


def test_project_graph_glue(tmp_path, project_files):
    project = create_project(tmp_path / "proj", raw=f"{project_files}/raw", supervoxels=f"{project_files}/sv",
                             boundaries=f"{project_files}/p")
    rag = build_project_graph(project)
    assert rag.signal == "boundaries" and rag.n_nodes == 8 and rag.n_edges == 12
    assert (project.component_path("graph") / "rag.npz").is_file()
    again = open_project(project.root)
    assert again.manifest["components"]["graph"] == "graph"
    loaded, tree = load_project_graph(again)
    assert tree is None
    np.testing.assert_array_equal(loaded.edges, rag.edges)
    tree = agglomerate_project(again)
    reopened = open_project(project.root)
    agg = reopened.manifest["agglomeration"]
    assert agg["threshold"] == pytest.approx(0.5) and agg["feature"] == "mean" and agg["chosen_by"] == "default"
    assert agg["n_segments"] == tree.n_segments_at(0.5)
    _, tree2 = load_project_graph(reopened)
    np.testing.assert_array_equal(tree2.scores, tree.scores)
    agglomerate_project(reopened, threshold=0.2)
    assert open_project(project.root).manifest["agglomeration"]["threshold"] == pytest.approx(0.2)
    with pytest.raises(InputError, match="outside"):
        agglomerate_project(reopened, threshold=3)


def test_project_without_boundaries_uses_the_raw_proxy(tmp_path, project_files):
    project = create_project(tmp_path / "proj", raw=f"{project_files}/raw", supervoxels=f"{project_files}/sv")
    rag = build_project_graph(project)
    assert rag.signal == "raw-intensity-proxy"
    assert open_project(project.root).manifest["graph"]["signal"] == "raw-intensity-proxy"


def test_project_without_graph_or_supervoxels(tmp_path, project_files):
    project = create_project(tmp_path / "proj", raw=f"{project_files}/raw")
    with pytest.raises(InputError, match="no supervoxel graph"):
        load_project_graph(project)
    with pytest.raises(InputError, match="only its EM volume; proofreading needs supervoxels"):
        build_project_graph(project)
