"""Training data from dense labels, sparse (painted) labels and a project's proofread segmentation."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from conftest import need_torch

from napari_connectome.errors import InputError
from napari_connectome.proofread import Proofreader
from napari_connectome.proofread.demo import make_demo_project
from napari_connectome.train import (
    AugmentConfig,
    TrainingVolume,
    affinities_from_labels,
    from_arrays,
)
from napari_connectome.train.sources import box_slices, from_project, from_volumes, parse_box
from napari_connectome.volume import open_volume

VS = (20.0, 10.0, 10.0)


def blocks(shape=(8, 24, 24), seed=0) -> np.ndarray:
    """Labels of 4-voxel cubes with random ids (no 0)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(1, 40, size=[-(-n // 4) for n in shape])
    return np.kron(coarse, np.ones((4, 4, 4), dtype=np.int64))[: shape[0], : shape[1], : shape[2]]


def write_h5(path, **arrays) -> str:
    with h5py.File(path, "w") as f:
        for name, a in arrays.items():
            ds = f.create_dataset(name, data=a)
            ds.attrs["resolution"] = list(VS)
    return str(path)


@pytest.fixture
def h5(tmp_path):
    lab = blocks().astype(np.uint32)
    raw = ((lab * 37) % 256).astype(np.uint8)
    path = write_h5(tmp_path / "d.h5", raw=raw, labels=lab, small=lab[:, :20], floats=lab.astype(np.float32))
    return path, raw, lab


def vol(path, name, kind):
    return open_volume(f"{path}/{name}", kind=kind)


# ----------------------------------------------------------------- dense labels
def test_dense_whole_volume(h5):
    path, raw, lab = h5
    data = from_volumes(vol(path, "raw", "image"), vol(path, "labels", "labels"))
    assert data.region == ((0, 0, 0), lab.shape)
    assert data.known.all() and data.zero == "boundary" and not data.identity["sparse"]
    np.testing.assert_array_equal(data.raw, raw)
    np.testing.assert_array_equal(data.labels, lab)
    assert data.identity["voxel_size_nm"] == list(VS)


def test_dense_box_reads_real_context_and_masks_outside(h5):
    path, raw, lab = h5
    # voxel centres z 2..5, y 4..11, x 8..19 (box faces between centres)
    box = parse_box([30, 35, 75, 110, 115, 195])
    data = from_volumes(vol(path, "raw", "image"), vol(path, "labels", "labels"), box=box, context=3)
    assert data.identity["box_voxels"] == [[2, 4, 8], [6, 12, 20]]
    (z0, y0, x0), (z1, y1, x1) = data.region
    assert (z0, y0, x0) == (3, 3, 3) and (z1 - z0, y1 - y0, x1 - x0) == (4, 8, 12)
    np.testing.assert_array_equal(data.labels[z0:z1, y0:y1, x0:x1], lab[2:6, 4:12, 8:20])
    assert data.known.sum() == 4 * 8 * 12 and (data.labels[~data.known] == 0).all()
    # the context is real EM where the volume has it, mirrored where it ends (z -1 and z 8)
    np.testing.assert_array_equal(data.raw[1:9], raw[0:8, 1:15, 5:23])
    np.testing.assert_array_equal(data.raw[0], raw[1, 1:15, 5:23])
    np.testing.assert_array_equal(data.raw[9], raw[6, 1:15, 5:23])


def test_box_slices_count_voxel_centres(h5):
    path, _, _ = h5
    level = vol(path, "labels", "labels").levels[0]
    assert box_slices(level, parse_box([0, 0, 0, 160, 240, 240])) == (slice(0, 8), slice(0, 24), slice(0, 24))
    with pytest.raises(InputError, match="reaches outside the volume"):
        box_slices(level, parse_box([0, 0, 0, 161, 240, 240]))
    with pytest.raises(InputError, match="holds no voxel"):
        box_slices(level, parse_box([1, 1, 1, 2, 2, 2]))


# ----------------------------------------------------------------- sparse labels
def painted(lab: np.ndarray) -> np.ndarray:
    """Strokes: three labels painted 3 voxels wide in a few places, everything else unpainted (0)."""
    s = np.zeros_like(lab)
    s[2:6, 4:7, 3:15] = lab[2:6, 4:7, 3:15]
    s[2:6, 14:17, 6:18] = lab[2:6, 14:17, 6:18]
    return s


def test_sparse_arrays_use_painted_voxels_only():
    lab = blocks()
    raw = ((lab * 37) % 256).astype(np.uint8)
    sparse = painted(lab)
    data = from_arrays(raw, sparse, sparse=True, voxel_size=VS, context=2)
    assert data.zero == "unknown" and data.identity["sparse"]
    # cropped to the painted box (z 2..6, y 4..17, x 3..18) plus 2 voxels of context
    assert data.raw.shape == (8, 17, 19)
    assert data.region == ((2, 2, 2), (6, 15, 17))
    np.testing.assert_array_equal(data.known, data.labels != 0)
    assert data.labelled_voxels == np.count_nonzero(sparse)


def test_an_unpainted_voxel_has_no_effect_on_the_loss_or_its_gradient():
    """Every loss term touching an unpainted voxel has weight 0: changing the network's output
    there changes neither the loss nor any gradient, whatever augmentation did to the patch."""
    torch = need_torch()
    from napari_connectome.train.loop import affinity_loss
    from napari_connectome.train.targets import balance_weights

    lab = blocks((12, 32, 32))
    raw = ((lab * 37) % 256).astype(np.uint8)
    sparse = painted(lab)
    data = from_arrays(raw, sparse, sparse=True, voxel_size=(10.0, 10.0, 10.0), context=8)
    offsets = [(-1, 0, 0), (0, -1, 0), (0, 0, -1), (0, 0, -3)]
    vol = TrainingVolume.from_arrays(data.raw, data.labels, pad=20, region=data.region, known=data.known)
    cfg = AugmentConfig(elastic_p=1.0, misalign_p=1.0)
    from napari_connectome.train.data import sample_patch

    touched_unpainted = 0
    for it in range(6):
        p = sample_patch(vol, np.random.default_rng([1, it]), input_shape=(8, 12, 12), output_shape=(4, 8, 8),
                         offsets=offsets, augment=cfg, zero=data.zero)
        weight = balance_weights(p.target, p.mask)
        # which pairs of the output window have two painted voxels (after augmentation)
        both, _ = affinities_from_labels(p.known.astype(np.int32), offsets, zero="unknown")
        both = both[:, 2:6, 2:10, 2:10] > 0
        assert (weight[~both] == 0).all()
        touched_unpainted += int((~both).sum())
        logits = torch.zeros((1, *p.target.shape), requires_grad=True)
        loss = affinity_loss(logits, torch.from_numpy(p.target[None]), torch.from_numpy(weight[None]))
        loss.backward()
        grad = logits.grad[0].numpy()
        assert (grad[~both] == 0).all()
        if weight.sum() > 0:
            assert np.abs(grad[both]).max() > 0
        changed = logits.detach().clone()
        changed[0][torch.from_numpy(~both)] = 7.0  # anything at all where a voxel is unpainted
        again = affinity_loss(changed, torch.from_numpy(p.target[None]), torch.from_numpy(weight[None]))
        assert again.item() == loss.item()
    assert touched_unpainted > 0
    # read as dense labels (0 = boundary), the same strokes would teach boundaries at their edges
    dense = from_arrays(raw, sparse, sparse=False)
    _, mask = affinities_from_labels(dense.labels, offsets, known=dense.known, zero=dense.zero)
    _, sparse_mask = affinities_from_labels(dense.labels, offsets, known=dense.labels != 0, zero="unknown")
    assert mask.sum() > sparse_mask.sum()


def test_sparse_volume_with_nothing_painted_is_refused(tmp_path):
    lab = np.zeros((4, 8, 8), np.uint16)
    path = write_h5(tmp_path / "e.h5", raw=np.zeros((4, 8, 8), np.uint8), labels=lab)
    with pytest.raises(InputError, match="no painted voxels"):
        from_volumes(vol(path, "raw", "image"), vol(path, "labels", "labels"), sparse=True)
    with pytest.raises(InputError, match="no painted voxels"):
        from_arrays(np.zeros((4, 8, 8), np.uint8), lab, sparse=True)


# ----------------------------------------------------------------- bad inputs
def test_bad_labels_are_one_line_errors(h5):
    path, raw, lab = h5
    raw_v = vol(path, "raw", "image")
    with pytest.raises(InputError, match=r"labels have shape \(8, 20, 24\) but the raw"):
        from_volumes(raw_v, vol(path, "small", "labels"))
    with pytest.raises(InputError, match="labels must be integers, not float32"):
        from_arrays(raw, lab.astype(np.float32))
    with pytest.raises(InputError, match="reaches outside the volume"):
        from_volumes(raw_v, vol(path, "labels", "labels"), box=parse_box([0, 0, 0, 200, 100, 100]))
    with pytest.raises(InputError, match="float raw must lie in"):
        from_arrays(raw.astype(np.float32), lab)
    with pytest.raises(InputError, match="six finite numbers"):
        parse_box([0, 0, 0, 1, 1])
    with pytest.raises(InputError, match="beyond its begin"):
        parse_box([0, 0, 10, 1, 1, 5])
    with pytest.raises(InputError) as info:
        from_volumes(raw_v, vol(path, "floats", "image"))
    assert str(info.value).endswith("labels must be integers, not float32 (a probability map or an image?)")


def test_dense_box_of_zeros_is_refused(tmp_path):
    lab = blocks().astype(np.uint32)
    lab[:, :8, :8] = 0
    path = write_h5(tmp_path / "z.h5", raw=np.zeros(lab.shape, np.uint8), labels=lab)
    with pytest.raises(InputError, match="has no labelled voxels inside the box"):
        from_volumes(vol(path, "raw", "image"), vol(path, "labels", "labels"), box=parse_box([0, 0, 0, 160, 75, 75]))


# ----------------------------------------------------------------- a project's proofread segmentation
def test_project_box_gives_the_segments_as_the_proofreader_left_them(tmp_path):
    project = make_demo_project(tmp_path / "demo", seed=3, threshold=None)  # every supervoxel its own segment
    box = parse_box([0, 0, 0, 120, 240, 240])
    before = from_project(project, box=box, context=4)
    assert before.identity["labels"]["last_operation"] == 0
    with Proofreader.open(project) as pr:
        sv = pr.supervoxel_volume().levels[0].read()
        a, b = (int(v) for v in np.unique(sv[sv > 0])[:2])
        pr.merge_supervoxels(a, b)
        merged = pr.segment_of(a)
    after = from_project(project, box=box, context=4)
    assert after.identity["labels"] == {**before.identity["labels"], "last_operation": 1, "edits_in_effect": 1}
    inner = tuple(slice(lo, hi) for lo, hi in zip(*after.region, strict=True))
    seg = after.labels[inner]
    # the two supervoxels are one segment now, and were two before
    assert set(np.unique(seg[sv == a])) == set(np.unique(seg[sv == b])) == {merged}
    assert set(np.unique(before.labels[inner][sv == a])).isdisjoint(np.unique(before.labels[inner][sv == b]))
    np.testing.assert_array_equal(after.raw[inner], project.open_input("raw").levels[0].read())
    with Proofreader.open(project, read_only=True) as pr:
        np.testing.assert_array_equal(seg, pr.labels_volume().levels[0].read())


def test_project_box_errors(tmp_path):
    project = make_demo_project(tmp_path / "demo", seed=3)
    with pytest.raises(InputError, match="needs a box"):
        from_project(project, box=None)
    with pytest.raises(InputError, match="reaches outside the volume"):
        from_project(project, box=parse_box([0, 0, 0, 120, 250, 240]))
    # the demo's supervoxels leave a 2 x 2 column of background (0) in the corner
    with pytest.raises(InputError, match="has no labelled voxels inside the box"):
        from_project(project, box=parse_box([0, 0, 0, 120, 15, 15]))
