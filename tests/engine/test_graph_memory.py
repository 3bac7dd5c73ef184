"""Memory of the region graph and the merge tree: the guard, and the compiled loop giving the same results.

The region graph is compared with a plain NumPy enumeration of every voxel
face; the compiled merge loop with the reference heap loop over Python dicts
on the same graph, merge for merge. No test is timed.
"""

from __future__ import annotations

import importlib

import h5py
import numpy as np
import pytest

from napari_connectome.errors import InputError
from napari_connectome.graph import (
    RegionGraph,
    agglomerate,
    agglomerate_project,
    build_project_graph,
    build_rag,
)
from napari_connectome.graph.rag import N_BINS, QUANTILES, estimate_rag_memory
from napari_connectome.memory import ENV_MEMORY_GB, check_memory
from napari_connectome.project import create_project
from napari_connectome.volume import from_array

rag_module = importlib.import_module("napari_connectome.graph.rag")
agg_module = importlib.import_module("napari_connectome.graph.agglomerate")


def random_supervoxels(shape=(32, 64, 64), n_ids=100_000, seed=0, zero_fraction=0.02):
    """Every voxel an independent random id (the most edges per voxel), a few background voxels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(1, n_ids + 1, size=shape, dtype=np.uint32)
    labels[rng.random(shape) < zero_fraction] = 0
    boundary = rng.random(shape, dtype=np.float32)  # multiples of 2**-24: sums are exact in float64
    return labels, boundary


def blobs(shape=(24, 40, 40), n_seeds=1500, seed=1):
    """Compact supervoxels: each voxel takes the id of its nearest random seed."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    seeds = np.zeros(shape, np.uint32)
    seeds.flat[rng.choice(seeds.size, n_seeds, replace=False)] = np.arange(1, n_seeds + 1)
    _, nearest = ndi.distance_transform_edt(seeds == 0, return_indices=True)
    return seeds[tuple(nearest)]


def reference_graph(labels: np.ndarray, p: np.ndarray) -> dict:
    """Every face between two supervoxels, enumerated with NumPy, reduced per edge."""
    us, vs, vals = [], [], []
    for axis in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(0, -1), slice(1, None)
        a, b = labels[tuple(lo)], labels[tuple(hi)]
        m = (a != b) & (a != 0) & (b != 0)
        us.append(np.minimum(a[m], b[m]))
        vs.append(np.maximum(a[m], b[m]))
        vals.append(np.maximum(p[tuple(lo)][m], p[tuple(hi)][m]))
    u, v, val = (np.concatenate(x) for x in (us, vs, vals))
    edges, inv = np.unique(np.stack([u, v], axis=1).astype(np.uint64), axis=0, return_inverse=True)
    inv = inv.ravel()
    count = np.bincount(inv)
    vmin = np.full(edges.shape[0], np.inf, np.float32)
    vmax = np.full(edges.shape[0], -np.inf, np.float32)
    np.minimum.at(vmin, inv, val)
    np.maximum.at(vmax, inv, val)
    bins = np.minimum((val * N_BINS).astype(np.int64), N_BINS - 1)
    hkey, hcount = np.unique(inv * N_BINS + bins, return_counts=True)
    ids, sizes = np.unique(labels[labels != 0], return_counts=True)
    return {
        "node_ids": ids.astype(np.uint64), "node_sizes": sizes, "edges": edges, "contact_area": count,
        "mean": (np.bincount(inv, weights=val.astype(np.float64)) / count).astype(np.float32),
        "min": vmin, "max": vmax, "hist": (hkey // N_BINS, hkey % N_BINS, hcount),
    }


def quantiles_in_one_pass(hist_edge, hist_bin, hist_count, n_edges, q, vmin, vmax):
    """The histogram quantile over all edges at once (the graph computes it in slices)."""
    cum = np.cumsum(hist_count, dtype=np.int64)
    starts = np.searchsorted(hist_edge, np.arange(n_edges))
    ends = np.searchsorted(hist_edge, np.arange(n_edges), side="right")
    before = np.where(starts > 0, cum[np.maximum(starts - 1, 0)], 0)
    n = cum[ends - 1] - before
    target = before + q * n
    idx = np.clip(np.searchsorted(cum, target, side="left"), starts, ends - 1)
    c = hist_count[idx].astype(np.float64)
    frac = (target - (cum[idx] - c)) / c
    return np.clip((hist_bin[idx] + np.clip(frac, 0.0, 1.0)) / N_BINS, vmin, vmax).astype(np.float32)


def assert_same_graph(a: RegionGraph, b: RegionGraph) -> None:
    for name in ("node_ids", "node_sizes", "edges", "contact_area"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype, name
        np.testing.assert_array_equal(x, y, err_msg=name)
    assert list(a.features) == list(b.features)
    for name in a.features:
        np.testing.assert_array_equal(a.features[name], b.features[name], err_msg=name)
    for x, y in zip(a.histogram, b.histogram, strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


@pytest.fixture(params=["default", "small pieces"])
def pieces(request, monkeypatch):
    """Default work units, or tiny ones: many units, folds of the runs and slices of the finish."""
    if request.param == "small pieces":
        monkeypatch.setattr(rag_module, "_UNIT_VOXELS", 3000)
        monkeypatch.setattr(rag_module, "_CONSOLIDATE_ROWS", 20_000)
        monkeypatch.setattr(rag_module, "_CHUNK", 5000)
    return request.param


@pytest.mark.parametrize("workers", [1, 2])
def test_random_supervoxels_give_the_reference_graph(pieces, workers):
    labels, p = random_supervoxels()
    rag = build_rag(from_array(labels, kind="labels"), from_array(p), block_shape=(16, 64, 48), workers=workers)
    ref = reference_graph(labels, p)
    assert rag.n_edges > 250_000  # about three edges per voxel: the case that used to run out of memory
    for name in ("node_ids", "node_sizes", "edges", "contact_area"):
        np.testing.assert_array_equal(getattr(rag, name), ref[name], err_msg=name)
    assert rag.edges.dtype == np.uint64 and rag.contact_area.dtype == np.int64
    for name in ("mean", "min", "max"):
        np.testing.assert_array_equal(rag.features[name], ref[name], err_msg=name)
    hist_edge, hist_bin, hist_count = rag.histogram
    for ours, theirs in zip(rag.histogram, ref["hist"], strict=True):
        np.testing.assert_array_equal(ours, theirs)
    assert (hist_edge.dtype, hist_bin.dtype, hist_count.dtype) == (np.int64, np.uint16, np.int64)
    for name, q in QUANTILES.items():
        expected = quantiles_in_one_pass(hist_edge, hist_bin, hist_count, rag.n_edges, q, ref["min"], ref["max"])
        np.testing.assert_array_equal(rag.features[name], expected, err_msg=name)


def test_compact_supervoxels_give_the_reference_graph(pieces):
    labels = blobs()
    p = np.random.default_rng(2).random(labels.shape, dtype=np.float32)
    rag = build_rag(from_array(labels, kind="labels"), from_array(p), block_shape=(8, 16, 16))
    ref = reference_graph(labels, p)
    np.testing.assert_array_equal(rag.edges, ref["edges"])
    np.testing.assert_array_equal(rag.contact_area, ref["contact_area"])
    np.testing.assert_array_equal(rag.features["mean"], ref["mean"])
    for ours, theirs in zip(rag.histogram, ref["hist"], strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_the_guard_refuses_the_graph_in_one_line(monkeypatch):
    monkeypatch.delenv(ENV_MEMORY_GB, raising=False)
    labels, p = random_supervoxels(shape=(8, 16, 16), n_ids=500)
    sv = from_array(labels, kind="labels", name="sv-random.zarr")
    with pytest.raises(InputError) as err:
        build_rag(sv, from_array(p), memory_gb=1e-6)
    message = str(err.value)
    assert "sv-random.zarr" in message and "region graph" in message
    assert "needs about" in message and "--memory-gb" in message and "\n" not in message


def test_the_guard_reads_the_environment(monkeypatch):
    labels, p = random_supervoxels(shape=(8, 16, 16), n_ids=500)
    sv, sig = from_array(labels, kind="labels", name="sv-env.zarr"), from_array(p)
    monkeypatch.setenv(ENV_MEMORY_GB, "0.000001")
    with pytest.raises(InputError, match="sv-env.zarr"):
        build_rag(sv, sig)
    monkeypatch.setenv(ENV_MEMORY_GB, "1000")
    rag = build_rag(sv, sig)
    monkeypatch.setenv(ENV_MEMORY_GB, "0.000001")
    with pytest.raises(InputError, match="merge tree"):
        agglomerate(rag)
    # An explicit limit wins over the environment.
    assert agglomerate(rag, memory_gb=1000).n_merges > 0


def test_results_are_the_same_with_and_without_the_guard(monkeypatch):
    monkeypatch.delenv(ENV_MEMORY_GB, raising=False)
    labels, p = random_supervoxels(shape=(16, 32, 32), n_ids=5000)
    sv, sig = from_array(labels, kind="labels"), from_array(p)
    free = build_rag(sv, sig)
    guarded = build_rag(sv, sig, memory_gb=1000)
    assert_same_graph(free, guarded)
    a, b = agglomerate(free), agglomerate(guarded, memory_gb=1000)
    np.testing.assert_array_equal(a.merges, b.merges)
    np.testing.assert_array_equal(a.scores, b.scores)


def test_the_graph_is_refused_once_its_edges_are_known(monkeypatch):
    """A limit above what the blocks need but below what the edges need stops the build."""
    monkeypatch.delenv(ENV_MEMORY_GB, raising=False)
    labels, p = random_supervoxels(shape=(16, 32, 32), n_ids=5000)
    sv, sig = from_array(labels, kind="labels", name="sv-edges.zarr"), from_array(p)
    rag = build_rag(sv, sig, workers=1)
    common = {"n_voxels": labels.size, "n_nodes": rag.n_nodes, "block_voxels": labels.size,
              "voxel_bytes": labels.itemsize + 4, "workers": 1}
    before_scan = estimate_rag_memory(n_edges=0, n_hist=0, **common)
    whole = estimate_rag_memory(n_edges=rag.n_edges, n_hist=rag.histogram[0].size, **common)
    assert whole > 2 * before_scan
    limit_gb = (before_scan + whole) / 2 / 2**30
    with pytest.raises(InputError) as err:
        build_rag(sv, sig, workers=1, memory_gb=limit_gb)
    assert "sv-edges.zarr" in str(err.value) and "edges" in str(err.value)


def test_the_guard_refuses_the_tree_naming_the_graph_file(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_MEMORY_GB, raising=False)
    labels, p = random_supervoxels(shape=(8, 16, 16), n_ids=500)
    path = build_rag(from_array(labels, kind="labels"), from_array(p)).save(tmp_path / "rag.npz")
    loaded = RegionGraph.load(path)
    with pytest.raises(InputError) as err:
        agglomerate(loaded, memory_gb=1e-6)
    message = str(err.value)
    assert str(path) in message and "merge tree" in message and "needs about" in message and "\n" not in message


def test_check_memory_counts_what_the_work_holds(monkeypatch):
    monkeypatch.delenv(ENV_MEMORY_GB, raising=False)
    monkeypatch.setattr("napari_connectome.memory.available_memory", lambda: 100)
    check_memory(150, what="work", source="x", held=60)  # 100 available + 60 held
    with pytest.raises(InputError, match="needs about"):
        check_memory(150, what="work", source="x", held=40)
    # An explicit limit bounds the whole need, whatever is held.
    with pytest.raises(InputError):
        check_memory(2 * 2**30, what="work", source="x", limit_gb=1, held=2**31)


# ------------------------------------------------------------------ merge tree
def graph_of(case: str) -> RegionGraph:
    if case == "random float32":
        labels, p = random_supervoxels(shape=(12, 32, 32), n_ids=1500, seed=3)
    elif case == "random uint8 (ties)":
        labels, p = random_supervoxels(shape=(12, 32, 32), n_ids=1500, seed=4)
        p = (p * 4).astype(np.uint8) * np.uint8(60)
    else:
        labels = blobs()
        p = np.random.default_rng(5).random(labels.shape, dtype=np.float32)
    return build_rag(from_array(labels, kind="labels"), from_array(p))


def reference_tree(rag: RegionGraph):
    """The merges of the reference heap loop over Python dicts, as ``(merges, scores)``."""
    from napari_connectome.progress import NullProgress

    n = rag.n_nodes
    ends = rag.edge_endpoints()
    area = rag.contact_area.astype(np.float64)
    area = np.where(area > 0, area, 1.0)
    wsum = rag.edge_weight("mean").astype(np.float64) * area
    a, b, scores = agg_module._heap_merge(ends[:, 0].tolist(), ends[:, 1].tolist(), wsum.tolist(), area.tolist(),
                                          (wsum / area).tolist(), agg_module._tie_keys(rag.n_edges).tolist(),
                                          list(range(n)), n, 0, NullProgress(), 1000)
    return np.stack([np.asarray(a, np.int64), np.asarray(b, np.int64)], axis=1).reshape(-1, 2), np.asarray(scores)


def leaf_sets(merges: np.ndarray, n: int) -> list[frozenset]:
    members = {i: frozenset([i]) for i in range(n)}
    out = []
    for k, (a, b) in enumerate(merges.tolist()):
        members[n + k] = members[a] | members[b]
        out.append(members[n + k])
    return out


@pytest.mark.parametrize("case", ["random float32", "random uint8 (ties)", "compact"])
def test_the_compiled_loop_makes_the_reference_loops_merges(case, tmp_path):
    rag = graph_of(case)
    ref_merges, ref_scores = reference_tree(rag)
    tree = agglomerate(rag)
    assert tree.n_merges == len(ref_merges) == rag.n_nodes - 1
    # merge for merge: the same regions (as sets of supervoxels) at the same scores, in the same order
    assert leaf_sets(tree.merges, rag.n_nodes) == leaf_sets(ref_merges, rag.n_nodes)
    np.testing.assert_array_equal(tree.scores, np.maximum.accumulate(ref_scores))
    # A valid tree: every merge refers to regions made before it (checked on load).
    tree.save(tmp_path / "tree.npz")


def test_a_graph_in_several_pieces_stops_when_nothing_touches():
    labels, p = random_supervoxels(shape=(6, 24, 24), n_ids=600, seed=9)
    labels[:, :, 11:13] = 0  # a wall of background: two halves that never touch ...
    labels[:, :, 13:][labels[:, :, 13:] > 0] += 600  # ... and share no supervoxel
    rag = build_rag(from_array(labels, kind="labels"), from_array(p))
    tree = agglomerate(rag)
    ref_merges, _ = reference_tree(rag)
    assert tree.n_segments_at(1.0) == 2
    assert leaf_sets(tree.merges, rag.n_nodes) == leaf_sets(ref_merges, rag.n_nodes)


@pytest.mark.parametrize("seed", range(6))
def test_the_loop_matches_the_reference_on_random_graphs_in_bursts(seed):
    """Random graphs (high degree, ties when quantised), merged a few at a time: the hash table is rehashed
    and the bursts resume where they stopped."""
    from napari_connectome.graph.merge_loop import merge_all
    from napari_connectome.progress import NullProgress

    rng = np.random.default_rng(seed)
    n = 80 + 40 * seed
    a, b = rng.integers(0, n, 6 * n), rng.integers(0, n, 6 * n)
    keep = a != b
    pairs = np.unique(np.stack([np.minimum(a, b)[keep], np.maximum(a, b)[keep]], axis=1), axis=0)
    area = rng.integers(1, 30, len(pairs)).astype(np.float64)
    value = rng.random(len(pairs))
    if seed % 2:
        value = np.round(value * 4) / 4  # many equal scores: the tie keys decide
    wsum = value * area
    tie = agg_module._tie_keys(len(pairs))
    ra, rb, rs = agg_module._heap_merge(pairs[:, 0].tolist(), pairs[:, 1].tolist(), wsum.tolist(), area.tolist(),
                                        (wsum / area).tolist(), tie.tolist(), list(range(n)), n, 0,
                                        NullProgress(), 1000)
    bursts = []
    merges, scores = merge_all(pairs[:, 0], pairs[:, 1], wsum, area, tie, n, burst=7, on_burst=bursts.append)
    assert leaf_sets(merges, n) == leaf_sets(np.stack([ra, rb], axis=1), n)
    np.testing.assert_array_equal(scores, rs)
    assert bursts == sorted(bursts) and bursts[-1] == len(merges) and len(bursts) >= len(merges) // 7


# ------------------------------------------------------------------- project
@pytest.fixture
def project(tmp_path):
    labels, p = random_supervoxels(shape=(6, 12, 12), n_ids=200, seed=12, zero_fraction=0)
    path = tmp_path / "vol.h5"
    with h5py.File(path, "w") as f:
        for name, data in (("raw", (p * 255).astype(np.uint8)), ("sv", labels), ("p", p)):
            f.create_dataset(name, data=data).attrs["resolution"] = [10.0, 10.0, 10.0]
    return create_project(tmp_path / "proj", raw=f"{path}/raw", supervoxels=f"{path}/sv", boundaries=f"{path}/p")


def test_project_commands_pass_the_limit_on(project, monkeypatch):
    monkeypatch.delenv(ENV_MEMORY_GB, raising=False)
    with pytest.raises(InputError, match="region graph"):
        build_project_graph(project, memory_gb=1e-6)
    with pytest.raises(InputError, match="needs about"):
        agglomerate_project(project, memory_gb=1e-6)
    build_project_graph(project, memory_gb=1000)
    with pytest.raises(InputError, match="merge tree"):  # the graph is there: the tree is refused
        agglomerate_project(project, memory_gb=1e-6)
    tree = agglomerate_project(project, memory_gb=1000)
    assert tree.n_merges > 0


def test_histogram_fold_is_the_same_when_its_keys_need_two_columns():
    """Past ~1.9e8 supervoxels an (edge, bin) key overflows int64 and the fold sorts on two columns."""
    rng = np.random.default_rng(13)
    runs = []
    for _ in range(4):
        keys = np.sort(rng.integers(0, 500, 300)).astype(np.int64)
        runs.append([keys, rng.integers(0, N_BINS, 300).astype(np.uint8), rng.integers(1, 5, 300).astype(np.int32)])
    small = rag_module._fold_hist_runs([list(r) for r in runs], 1000, N_BINS)
    huge = rag_module._fold_hist_runs([list(r) for r in runs], 2**30, N_BINS)
    for x, y in zip(small, huge, strict=True):
        np.testing.assert_array_equal(x, y)
    # Sorted by (edge, bin), one row each, counts added.
    order = np.lexsort((small[1], small[0]))
    np.testing.assert_array_equal(order, np.arange(order.size))
    assert int(small[2].sum()) == sum(int(r[2].sum()) for r in runs)


def _claim(path, dtype: str):
    """Zarr v2 metadata claiming 10^18 voxels, and no chunk at all."""
    import json

    path.mkdir()
    (path / ".zarray").write_text(json.dumps({
        "zarr_format": 2, "shape": [10**6] * 3, "chunks": [64] * 3, "dtype": dtype, "compressor": None,
        "fill_value": 0, "order": "C", "filters": None,
    }))
    (path / ".zattrs").write_text(json.dumps({"resolution": [8, 8, 8]}))
    return path


def test_agglomerate_of_a_volume_claiming_1e18_voxels_is_refused_at_once(tmp_path, capsys, monkeypatch):
    # The campaign's hang: the raw-intensity proxy sampled every chunk of the claimed volume,
    # then the block list alone outgrew memory. Now: one line, exit 2, in about a second.
    import time

    from napari_connectome.cli import main

    monkeypatch.delenv(ENV_MEMORY_GB, raising=False)
    raw, sv = _claim(tmp_path / "raw.zarr", "|u1"), _claim(tmp_path / "sv.zarr", "<u4")
    create_project(tmp_path / "P", raw=str(raw), supervoxels=str(sv))
    capsys.readouterr()
    start = time.monotonic()
    assert main(["agglomerate", str(tmp_path / "P"), "--quiet"]) == 2
    assert time.monotonic() - start < 30
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sv.zarr" in err[0] and "blocks" in err[0] and "memory" in err[0]
    assert not (tmp_path / "P" / "graph" / "rag.npz").exists()


def test_intensity_sample_reads_a_bounded_number_of_chunks():
    class Counting:
        def __init__(self, shape):
            self.shape, self.chunks, self.reads = shape, (64, 64, 64), 0
            self.dtype = np.dtype(np.uint8)

        def __getitem__(self, key):
            self.reads += 1
            return np.zeros(tuple(k.stop - k.start for k in key), np.uint8)

    big = Counting((10**6,) * 3)
    sample = rag_module._intensity_sample(big)
    assert big.reads <= rag_module._SAMPLE_CHUNKS and sample.size <= rag_module._SAMPLE_CHUNKS * 64**3
    small = from_array(np.arange(8 * 16 * 16, dtype=np.uint8).reshape(8, 16, 16)).levels[0].array
    assert rag_module._intensity_sample(small).size == 8 * 16 * 16  # small: every voxel


def test_agglomerate_cli_takes_a_memory_limit(project, capsys, monkeypatch):
    from napari_connectome.cli import main

    monkeypatch.delenv(ENV_MEMORY_GB, raising=False)
    assert main(["agglomerate", str(project.root), "--quiet", "--memory-gb", "0.000001"]) == 2
    assert "needs about" in capsys.readouterr().err
    assert main(["agglomerate", str(project.root), "--quiet", "--memory-gb", "-1"]) == 2
    assert main(["agglomerate", str(project.root), "--quiet", "--memory-gb", "100"]) == 0
