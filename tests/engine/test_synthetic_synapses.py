"""Synthetic synapses: deterministic, tiling-free, and a table that agrees with the labels."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from napari_connectome.errors import InputError
from napari_connectome.synthetic import SyntheticSpec, generate_block
from napari_connectome.synthetic.synapses import closest_points, synthetic_synapses
from napari_connectome.volume.model import voxel_index

ISO = SyntheticSpec(shape=(96, 128, 128), voxel_size=(10.0, 10.0, 10.0), seed=5, synapse_density=3.0)
ANISO = SyntheticSpec(shape=(32, 160, 160), voxel_size=(40.0, 8.0, 8.0), seed=6, synapse_density=3.0)


def _voxel(spec, points):
    return tuple(voxel_index(points, voxel_size=spec.voxel_size, offset=spec.offset).T)


@pytest.mark.parametrize("spec", [ISO, ANISO], ids=["10nm", "40x8x8nm"])
def test_the_table_agrees_with_the_labels(spec):
    syn = synthetic_synapses(spec)
    raw, gt = generate_block(spec, tuple(slice(0, n) for n in spec.shape))
    assert syn.n_synapses >= 3
    assert np.array_equal(gt[_voxel(spec, syn.pre)], syn.pre_id.astype(gt.dtype))
    assert np.array_equal(gt[_voxel(spec, syn.post)], syn.post_id.astype(gt.dtype))
    assert np.all(syn.pre_id != syn.post_id) and np.all(syn.pre_id > 0) and np.all(syn.post_id > 0)
    # Pre and post face each other across one membrane: close, never the same point.
    gap = np.linalg.norm(syn.post - syn.pre, axis=1)
    assert np.all(gap > 20) and np.all(gap < 400)
    # Rows of one synapse share the pre point, and its partners are distinct neurons.
    for sid in np.unique(syn.synapse_id):
        rows = syn.synapse_id == sid
        assert np.all(syn.pre[rows] == syn.pre[rows][0])
        assert np.unique(syn.post_id[rows]).size == rows.sum()


def test_the_synapses_are_painted_and_nothing_else_changes():
    plain = dataclasses.replace(ISO, synapse_density=0.0)
    raw, gt = generate_block(ISO, tuple(slice(0, n) for n in ISO.shape))
    raw0, gt0 = generate_block(plain, tuple(slice(0, n) for n in ISO.shape))
    assert np.array_equal(gt, gt0)
    changed = raw != raw0
    assert changed.any()
    # Only near the synapses: every changed voxel is within the paint's reach of some pre point.
    syn = synthetic_synapses(ISO)
    where = np.stack(np.nonzero(changed), axis=1) * np.asarray(ISO.voxel_size)
    near = np.min(np.linalg.norm(where[:, None, :] - syn.pre[None], axis=2), axis=1)
    assert near.max() < 400
    # The T-bar makes the pre side darker than the same voxels without a synapse.
    pre = _voxel(ISO, syn.pre)
    assert raw[pre].astype(int).mean() < raw0[pre].astype(int).mean() - 20


def test_deterministic_and_the_same_in_any_tiling():
    a = synthetic_synapses(ISO)
    synthetic_synapses.cache_clear()
    b = synthetic_synapses(ISO)
    for field in dataclasses.fields(a):
        assert np.array_equal(getattr(a, field.name), getattr(b, field.name)), field.name
    whole, _ = generate_block(ISO, tuple(slice(0, n) for n in ISO.shape))
    parts = np.zeros_like(whole)
    for z0 in (0, 40):
        for y0 in (0, 70):
            box = (slice(z0, min(z0 + 40, 96) if z0 == 0 else 96), slice(y0, 70 if y0 == 0 else 128), slice(0, 128))
            parts[box] = generate_block(ISO, box)[0]
    assert np.array_equal(whole, parts)
    other = synthetic_synapses(dataclasses.replace(ISO, seed=7))
    assert not np.array_equal(other.pre[:1], a.pre[:1])


def test_polyadic_synapses_occur():
    spec = SyntheticSpec(shape=(128, 192, 192), voxel_size=(10.0, 10.0, 10.0), seed=2, synapse_density=3.0,
                         fill_fraction=0.7)
    syn = synthetic_synapses(spec)
    partners = np.unique(syn.synapse_id, return_counts=True)[1]
    assert partners.max() >= 2 and partners.min() >= 1 and partners.max() <= 4


def test_closest_points_of_segments():
    p1, q1 = np.array([[0.0, 0, 0]]), np.array([[10.0, 0, 0]])
    p2, q2 = np.array([[5.0, -5, 3]]), np.array([[5.0, 5, 3]])
    s, t = closest_points(p1, q1, p2, q2)
    assert s.tolist() == [0.5] and t.tolist() == [0.5]
    # Parallel, overlapping: any pair at the minimal distance; clamped ends.
    s, t = closest_points(p1, q1, np.array([[20.0, 1, 0]]), np.array([[30.0, 1, 0]]))
    assert s.tolist() == [1.0] and t.tolist() == [0.0]


@pytest.mark.parametrize("field,value", [("synapse_density", -1.0), ("vesicle_radius_nm", 0.0)])
def test_nonsense_parameters_are_one_line(field, value):
    with pytest.raises(InputError, match=field):
        SyntheticSpec(shape=(8, 8, 8), **{field: value})


def test_the_command_writes_the_table_beside_the_volumes(tmp_path, capsys):
    from napari_connectome.cli import main
    from napari_connectome.synapses import read_csv

    out = tmp_path / "syn"
    args = ["synthetic", str(out), "--shape", "48", "96", "96", "--voxel-size", "10", "10", "10", "--seed", "5",
            "--synapses", "--synapse-density", "4", "--quiet"]
    assert main(args) == 0
    table = read_csv(out / "synapses.csv")
    want = synthetic_synapses(SyntheticSpec(shape=(48, 96, 96), voxel_size=(10.0, 10.0, 10.0), seed=5,
                                            synapse_density=4.0))
    assert len(table) == len(want) > 0
    for name, column in want.rows().items():
        np.testing.assert_array_equal(getattr(table, name), column)
    before = (out / "synapses.csv").read_bytes()
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "exists already" in err
    assert (out / "synapses.csv").read_bytes() == before
