"""The domain-shift benchmark's helpers: annotations chosen synapse-wise or box-wise, their targets, fine-tuning."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

# At import time: once tests/plugins is collected, ``conftest`` names that folder's file.
from conftest import need_torch

torch = need_torch()

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # benchmarks/ is not installed: import it from the checkout
    sys.path.insert(0, str(REPO))

from napari_connectome_models.nets.synapse import (  # noqa: E402
    SynapseNetConfig,
    SynapseUNet,
    save_synapse_network,
)

from benchmarks.synapse_domain_shift import (  # noqa: E402
    SHIFT,
    annotated_volume,
    box_volume,
    choose_annotations,
    choose_boxes,
    fine_tune,
)
from napari_connectome.synapses import SynapseTable  # noqa: E402
from napari_connectome.synthetic import SyntheticSpec, generate_block  # noqa: E402
from napari_connectome.synthetic.synapses import synthetic_synapses  # noqa: E402
from napari_connectome.train.synapse_targets import synapse_targets  # noqa: E402

TINY = SynapseNetConfig(downsample=((2, 2, 2),), base_features=2, feature_factor=2)  # input 20³ -> output 4³
VS = (10.0, 10.0, 10.0)


def table(post, pre=None, synapse_id=None, post_id=1) -> SynapseTable:
    post = np.asarray(post, dtype=float).reshape(-1, 3)
    n = len(post)
    return SynapseTable(synapse_id=np.arange(n) if synapse_id is None else synapse_id,
                        pre=post + 40.0 if pre is None else pre, post=post, pre_id=np.full(n, 2),
                        post_id=np.full(n, post_id), score=np.ones(n))


def test_annotations_are_whole_synapses_until_enough_rows_and_grow_with_n():
    rng = np.random.default_rng(3)
    ids = [rng.integers(0, 9, size=k) for k in (14, 0, 7, 20)]  # polyadic: repeated ids
    total = sum(len(s) for s in ids)
    largest = max(np.bincount(s).max() for s in ids if len(s))
    before = None
    for n in range(1, total + 1):
        picks = choose_annotations(ids, n, seed=5)
        count = sum(len(p) for p in picks)
        assert n <= count < n + largest  # stops at the first synapse that reaches n
        for s, p in zip(ids, picks, strict=True):
            assert np.array_equal(p, np.unique(p))
            for sid in np.unique(s[p]):  # every row of a chosen synapse is chosen
                assert set(np.flatnonzero(s == sid)) <= set(p.tolist())
        if before is not None:  # one shuffle: more annotations add synapses, never swap them
            assert all(set(a.tolist()) <= set(b.tolist()) for a, b in zip(before, picks, strict=True))
        before = picks
        again = choose_annotations(ids, n, seed=5)
        assert all(np.array_equal(a, b) for a, b in zip(picks, again, strict=True))
    others = [choose_annotations(ids, 10, seed=s) for s in range(6)]
    assert len({tuple(np.concatenate(o).tolist()) for o in others}) > 1
    with pytest.raises(ValueError, match="only 41 connections"):
        choose_annotations(ids, total + 1, seed=0)


def test_boxes_are_whole_volumes_in_order_until_enough_connections():
    counts = [7, 0, 5, 9, 3, 8]
    for n in range(1, sum(counts) + 1):
        taken = choose_boxes(counts, n)
        assert taken == list(range(len(taken)))  # seed order: a prefix
        got = sum(counts[i] for i in taken)
        assert got >= n and got - counts[taken[-1]] < n  # stops at the first volume that reaches n
        assert choose_boxes(counts, n) == taken
    assert choose_boxes(counts, 7) == [0] and choose_boxes(counts, 8) == [0, 1, 2]  # an empty box is annotated too
    shuffled = [choose_boxes(counts, n, seed=4) for n in range(1, sum(counts) + 1)]
    assert shuffled == [choose_boxes(counts, n, seed=4) for n in range(1, sum(counts) + 1)]  # deterministic
    for small, large in zip(shuffled[:-1], shuffled[1:], strict=True):  # one order: more connections add volumes
        assert large[:len(small)] == small
    for taken in shuffled:  # each volume at most once
        assert len(set(taken)) == len(taken) and set(taken) <= set(range(len(counts)))
    assert {i for i, c in enumerate(counts) if c} <= set(shuffled[-1])  # every connection: every non-empty volume
    assert len({tuple(choose_boxes(counts, 32, seed=s)) for s in range(8)}) > 1
    with pytest.raises(ValueError, match="only 32 connections"):
        choose_boxes(counts, 33)


def test_a_box_knows_every_synapse_everywhere():
    labels = np.ones((16, 48, 48), dtype=np.uint32)
    labels[:, :, 24:] = 2
    raw = np.random.default_rng(0).integers(0, 255, size=labels.shape, dtype=np.uint8)
    posts = [(80.0, 80.0, 80.0), (80.0, 400.0, 400.0)]
    whole = table(posts, synapse_id=np.array([0, 1]), post_id=np.array([1, 2]))
    vol = box_volume(raw, labels, whole, voxel_size=VS, pad=8, mask_radius_nm=80.0)
    assert vol.known is None  # known everywhere: the sampler takes every voxel as known
    mask, _ = synapse_targets({"pre": np.asarray(posts) + 40.0, "post": np.asarray(posts),
                               "post_id": np.array([1, 2])}, labels, voxel_size=VS, mask_radius_nm=80.0)
    assert np.array_equal(vol.mask, mask) and mask[:, :, :24].any() and mask[:, :, 24:].any()
    assert len(vol.posts) == 2 and vol.hard.any()
    sparse, _ = annotated_volume(raw, labels, whole, np.array([0]), voxel_size=VS, pad=8, known_radius_nm=250.0)
    assert sparse.known.sum() < sparse.known.size  # the points protocol knows a region only
    empty = box_volume(raw, labels, table(np.zeros((0, 3))), voxel_size=VS, pad=8)  # a box with no synapse
    assert empty.known is None and not empty.mask.any() and len(empty.posts) == 0


def test_annotated_volume_knows_the_chosen_synapses_only_and_counts_unannotated_mask_inside():
    labels = np.ones((16, 48, 48), dtype=np.uint32)
    raw = np.random.default_rng(0).integers(0, 255, size=labels.shape, dtype=np.uint8)
    a, far, close = (80.0, 80.0, 80.0), (80.0, 400.0, 400.0), (80.0, 80.0, 250.0)
    kw = {"voxel_size": VS, "pad": 8, "mask_radius_nm": 80.0, "known_radius_nm": 250.0}
    vol, leak = annotated_volume(raw, labels, table([a, far]), np.array([0]), **kw)
    mask, _ = synapse_targets({"pre": np.array([a]) + 40.0, "post": np.array([a]), "post_id": np.array([1])},
                              labels, voxel_size=VS, mask_radius_nm=80.0)
    assert np.array_equal(vol.mask, mask) and leak == 0
    grid = np.stack(np.meshgrid(*[np.arange(n) * 10.0 for n in labels.shape], indexing="ij"))
    dist = np.sqrt(((grid - np.asarray(a)[:, None, None, None]) ** 2).sum(0))
    assert np.array_equal(vol.known > 0, dist <= 250.0)
    assert vol.raw.shape == tuple(n + 16 for n in labels.shape)
    # an unannotated synapse 170 nm away: its mask reaches into the known region
    _, leak = annotated_volume(raw, labels, table([a, close]), np.array([0]), **kw)
    d_close = np.sqrt(((grid - np.asarray(close)[:, None, None, None]) ** 2).sum(0))
    assert leak == np.count_nonzero((d_close <= 80.0) & (dist <= 250.0) & (mask == 0))
    assert leak > 0


def test_the_shift_changes_grey_values_not_the_ground_truth():
    base = {"shape": (32, 48, 48), "voxel_size": VS, "seed": 0, "synapse_density": 20.0}
    box = tuple(slice(0, n) for n in base["shape"])
    (raw0, gt0), (raw1, gt1) = (generate_block(SyntheticSpec(**base, **r), box) for r in ({}, SHIFT))
    t0, t1 = (synthetic_synapses(SyntheticSpec(**base, **r)).rows() for r in ({}, SHIFT))
    assert len(t0["pre"]) > 0
    assert np.array_equal(gt0, gt1)
    assert all(np.array_equal(t0[k], t1[k]) for k in t0)
    assert not np.array_equal(raw0, raw1)


def test_fine_tuning_starts_from_the_base_weights_moves_them_and_is_reproducible(tmp_path):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    base = SynapseUNet(TINY).eval()
    path = save_synapse_network(base, tmp_path / "base.pt")
    init = {"weights": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    labels = np.ones((12, 16, 16), dtype=np.uint32)
    labels[:, :, 8:] = 2
    raw = np.random.default_rng(1).integers(0, 255, size=labels.shape, dtype=np.uint8)
    rows = table([(60.0, 70.0, 90.0), (60.0, 70.0, 40.0)], pre=np.array([(60.0, 70.0, 60.0)] * 2),
                 synapse_id=np.array([0, 0]), post_id=np.array([2, 1]))
    vol, _ = annotated_volume(raw, labels, rows, np.array([0, 1]), voxel_size=VS, pad=8)
    kw = {"init": init, "net": TINY.to_dict(), "input_shape": (20, 20, 20), "iterations": 3, "lr": 1e-2,
          "log": lambda s: None}
    tuned, seconds = fine_tune([vol], tmp_path / "run", **kw)
    assert seconds > 0 and isinstance(tuned, SynapseUNet) and not tuned.training
    assert tuned.config == TINY
    moved = [not torch.equal(p, q) for p, q in zip(base.state_dict().values(), tuned.state_dict().values(),
                                                   strict=True)]
    assert any(moved)
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["near_fraction"] == 1.0 and config["init"] == init and config["checkpoint_every"] == 3
    boxes, _ = fine_tune([box_volume(raw, labels, rows, voxel_size=VS, pad=8)], tmp_path / "boxes",
                         near_fraction=0.5, **kw)
    assert json.loads((tmp_path / "boxes" / "config.json").read_text())["near_fraction"] == 0.5
    again, _ = fine_tune([vol], tmp_path / "again", **kw)
    assert all(torch.equal(p, q) for p, q in zip(tuned.state_dict().values(), again.state_dict().values(),
                                                 strict=True))
    # the init is checked: other weights under the same digest are refused
    save_synapse_network(SynapseUNet(TINY), path)
    with pytest.raises(Exception, match="sha256"):
        fine_tune([vol], tmp_path / "changed", **kw)
