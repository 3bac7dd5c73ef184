"""Acceptance: a supervoxel spanning two ground-truth bodies is split inside by two seeds.

The bundled gala-fib test crop (its watershed supervoxels and gala's boundary
map p1): two touching supervoxels of different ground-truth bodies are fused
into one (in a copy of the supervoxel volume, one relabelled as the other);
one seed deep inside each original part (the voxel farthest from the part's
surface) drives the split inside the fused supervoxel. Its two parts must
agree with the ground truth on ≥ 90 % of the fused supervoxel's voxels.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from scipy import ndimage

from napari_connectome.graph import build_rag
from napari_connectome.project import create_project
from napari_connectome.proofread import Proofreader
from napari_connectome.samples import gala_fib_path
from napari_connectome.volume import from_array

VOXEL = 10.0


@pytest.fixture(scope="module")
def gala():
    with h5py.File(gala_fib_path(), "r") as f:
        return {k: f[k][...] for k in ("raw", "supervoxels", "groundtruth", "boundaries")}


def _majority_gt(sv, gt):
    m = gt > 0
    key = sv[m].astype(np.int64) * (int(gt.max()) + 1) + gt[m]
    u, c = np.unique(key, return_counts=True)
    out: dict[int, tuple[int, int]] = {}
    for k, n in zip(u.tolist(), c.tolist(), strict=True):
        s, g = divmod(k, int(gt.max()) + 1)
        if s not in out or n > out[s][1]:
            out[s] = (g, n)
    return {s: g for s, (g, _) in out.items()}


def _pairs(gala, n):
    """The ``n`` touching supervoxel pairs of different bodies with the largest contact (both ≥ 2000 voxels)."""
    sv, gt = gala["supervoxels"], gala["groundtruth"]
    rag = build_rag(from_array(sv, kind="labels"), from_array(gala["boundaries"], kind="image"))
    major = _majority_gt(sv, gt)
    size = dict(zip(rag.node_ids.tolist(), rag.node_sizes.tolist(), strict=True))
    cands = [
        (int(area), int(u), int(v)) for (u, v), area in zip(rag.edges.tolist(), rag.contact_area, strict=True)
        if major.get(u) != major.get(v) and u in major and v in major and size[u] >= 2000 and size[v] >= 2000
    ]
    return [(u, v) for _, u, v in sorted(cands, reverse=True)[:n]]


def _deepest(mask):
    dist = ndimage.distance_transform_edt(mask)
    return np.unravel_index(np.argmax(dist), mask.shape)


@pytest.mark.slow
def test_split_inside_a_fused_supervoxel_matches_the_ground_truth(gala, tmp_path):
    sv, gt = gala["supervoxels"], gala["groundtruth"]
    figures = []
    for k, (keep, fused) in enumerate(_pairs(gala, 3)):
        merged = sv.copy()
        merged[merged == fused] = keep  # one supervoxel now spans two bodies
        data = tmp_path / f"fused{k}.h5"
        with h5py.File(data, "w") as f:
            for name, arr in (("raw", gala["raw"]), ("supervoxels", merged), ("boundaries", gala["boundaries"])):
                f.create_dataset(name, data=arr, chunks=(25, 50, 100))
        project = create_project(tmp_path / f"p{k}", raw=f"{data}/raw", supervoxels=f"{data}/supervoxels",
                                 boundaries=f"{data}/boundaries", voxel_size=(VOXEL,) * 3)
        pr = Proofreader.open(project)  # builds the graph; no agglomeration: every supervoxel alone
        part_a, part_b = sv == keep, sv == fused
        seed_a, seed_b = _deepest(part_a), _deepest(part_b)
        preview = pr.preview_split([np.multiply(seed_a, VOXEL)], [np.multiply(seed_b, VOXEL)])
        assert preview.inside_supervoxel and preview.supervoxel == keep
        result = pr.split(preview)
        n1, n2 = result.supervoxels[1:]
        edited = pr.supervoxel_volume().levels[0].array[:, :, :]
        region = merged == keep
        assert not (edited == keep).any()
        # Agreement with the original supervoxels (each part of a different body) …
        agree_sv = ((edited == n1) & part_a).sum() + ((edited == n2) & part_b).sum()
        frac_sv = agree_sv / region.sum()
        # … and with the ground truth: each part labelled by its majority body.
        labelled = region & (gt > 0)
        agree_gt = 0
        for n in (n1, n2):
            inside = labelled & (edited == n)
            if inside.any():
                agree_gt += np.bincount(gt[inside]).max()
        frac_gt = agree_gt / labelled.sum()
        figures.append((keep, fused, int(region.sum()), frac_sv, frac_gt))
        print(f"supervoxels {keep}+{fused} ({region.sum()} voxels): parts match the original supervoxels on "
              f"{100 * frac_sv:.1f} % and the ground truth on {100 * frac_gt:.1f} % of the voxels")
        assert pr.segment_at(np.multiply(seed_a, VOXEL)) != pr.segment_at(np.multiply(seed_b, VOXEL))
        pr.close()
    for _, _, _, frac_sv, frac_gt in figures:
        assert frac_sv >= 0.90 and frac_gt >= 0.90
