"""World boxes (Roi) and the one place where nm become voxels (Level)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from napari_connectome.errors import InputError
from napari_connectome.volume import Level, NumpyArray, Roi, from_array

# A small volume with a non-zero offset and anisotropic voxels: voxel (i, j, k)
# has its centre at (100 + 40 i, 10 + 8 j, 2 + 4 k) nm.
VS = (40.0, 8.0, 4.0)
OFF = (100.0, 10.0, 2.0)
DATA = np.arange(5 * 6 * 7, dtype=np.int32).reshape(5, 6, 7)


@pytest.fixture
def level() -> Level:
    return from_array(DATA, voxel_size=VS, offset=OFF).level0


def box(level: Level, *slices) -> Roi:
    return level.roi_of(slices)


# ------------------------------------------------------------------ Roi algebra
def test_roi_basics_and_algebra():
    a = Roi((0, 0, 0), (10, 20, 30))
    assert a.end == (10.0, 20.0, 30.0)
    assert a.dims == 3 and a.size == 6000 and not a.empty
    assert a.center == (5.0, 10.0, 15.0)
    b = Roi.from_bounds((5, -5, 10), (15, 10, 40))
    assert a.intersect(b) == Roi.from_bounds((5, 0, 10), (10, 10, 30))
    assert a.union(b) == Roi.from_bounds((0, -5, 0), (15, 20, 40))
    assert a.grow(1) == Roi.from_bounds((-1, -1, -1), (11, 21, 31))
    assert a.grow((1, 2, 3), (0, 0, 1)) == Roi.from_bounds((-1, -2, -3), (10, 20, 31))
    assert a.grow(-20).empty and a.grow(-20).center == a.center  # shrunk past nothing: empty at the centre
    assert a.shift((1, 2, 3)) == Roi((1, 2, 3), (10, 20, 30))
    far = Roi((100, 100, 100), (1, 1, 1))
    meet = a.intersect(far)
    assert meet.empty and a.union(meet) == a and meet.union(a) == a
    assert a.contains(Roi((1, 1, 1), (2, 2, 2))) and not a.contains(b)
    assert a.contains(meet)  # an empty box holds no point: inside any box
    assert a.contains((0, 0, 0)) and not a.contains((10, 0, 0))  # half-open
    assert Roi((0, 0), (0, 5)).empty


def test_roi_equality_hash_repr_pickle():
    a = Roi((0, 0, 0), (10, 20, 30))
    assert a == Roi([0.0, -0.0, 0], [10, 20, 30]) and hash(a) == hash(Roi((0, 0, 0), (10, 20, 30)))
    assert a != Roi((0, 0, 0), (10, 20, 31)) and a != (0, 0, 0)
    assert len({a, Roi((0, 0, 0), (10, 20, 30)), a.shift(1)}) == 2
    assert repr(Roi((-2.5, 0, 1), (5, 8, 4))) == "Roi[-2.5:2.5, 0:8, 1:5]"
    assert pickle.loads(pickle.dumps(a)) == a
    with pytest.raises(AttributeError):
        a._begin = (1, 2, 3)


def test_roi_refuses_bad_values_in_one_line():
    for bad in [lambda: Roi((0, 0), (1, -1)), lambda: Roi((0, 0), (1, 2, 3)),
                lambda: Roi((0, float("nan")), (1, 1)), lambda: Roi("ab", (1, 1)),
                lambda: Roi((0, 0), (1, 1)).intersect(Roi((0,), (1,)))]:
        with pytest.raises(InputError) as info:
            bad()
        assert "\n" not in str(info.value)


def test_snap_to_grid_modes():
    r = Roi.from_bounds((3, -3, 8), (13, 9, 16))
    assert r.snap_to_grid(4, mode="grow") == Roi.from_bounds((0, -4, 8), (16, 12, 16))
    assert r.snap_to_grid(4, mode="shrink") == Roi.from_bounds((4, 0, 8), (12, 8, 16))
    assert r.snap_to_grid(4, mode="closest") == Roi.from_bounds((4, -4, 8), (12, 8, 16))
    # A grid through a voxel corner that is not 0 (a level's offset is a voxel centre).
    assert r.snap_to_grid(4, mode="grow", origin=1) == Roi.from_bounds((1, -3, 5), (13, 9, 17))
    # Shrinking a box smaller than a step leaves an empty box, not a negative one.
    assert Roi((1, 1), (2, 2)).snap_to_grid(4, mode="shrink").empty
    # nm that are not exact in binary (3 × 3.6) do not grow a box by a voxel.
    assert Roi((0.0,), (3 * 3.6,)).snap_to_grid(3.6, mode="grow").shape[0] == pytest.approx(10.8)
    assert Roi((0.0,), (3 * 3.6,)).snap_to_grid(3.6, mode="shrink").shape[0] == pytest.approx(10.8)
    with pytest.raises(InputError):
        r.snap_to_grid(4, mode="outward")
    with pytest.raises(InputError):
        r.snap_to_grid(0)
    assert Roi((0, 2), (3, 4)).index_slices() == (slice(0, 3), slice(2, 6))
    with pytest.raises(InputError, match="not on the voxel grid"):
        Roi((0.5,), (3,)).index_slices()


# ------------------------------------------------------------------ Level: nm <-> voxels
def test_level_roi_and_slices_round_trip(level):
    assert level.roi == Roi.from_bounds((80, 6, 0), (280, 54, 28))
    r = box(level, slice(1, 3), slice(0, 2), slice(2, 5))
    assert r == Roi.from_bounds((120, 6, 8), (200, 22, 20))
    assert level.voxel_slices(r) == (slice(1, 3), slice(0, 2), slice(2, 5))
    assert level.roi_of((slice(None), slice(None), slice(None))) == level.roi
    # voxel_at and centre_of agree with the offset convention (offset = centre of voxel 0).
    assert level.voxel_at((100, 10, 2)).tolist() == [0, 0, 0]
    assert level.voxel_at([(119.9, 13.9, 3.9), (120, 14, 4)]).tolist() == [[0, 0, 0], [1, 1, 1]]
    assert level.centre_of((2, 3, 4)).tolist() == [180.0, 34.0, 18.0]


def test_voxel_slices_is_strict_unless_snapped(level):
    r = box(level, slice(1, 3), slice(0, 2), slice(2, 5)).shift((10, 0, 0))
    with pytest.raises(InputError, match="not on the voxel grid") as info:
        level.voxel_slices(r)
    assert "Roi[130:210" in str(info.value) and "\n" not in str(info.value)
    assert level.voxel_slices(r, snap="grow")[0] == slice(1, 4)
    assert level.voxel_slices(r, snap="shrink")[0] == slice(2, 3)
    assert level.voxel_slices(r, snap="closest")[0] == slice(1, 3)
    assert level.snap(r, mode="shrink") == box(level, slice(2, 3), slice(0, 2), slice(2, 5))
    with pytest.raises(InputError, match="outside the volume"):
        level.voxel_slices(box(level, slice(-1, 2), slice(0, 2), slice(0, 2)))
    with pytest.raises(InputError, match="2 axes"):
        level.voxel_slices(Roi((0, 0), (8, 8)))


def test_read_inside_and_whole_level(level):
    np.testing.assert_array_equal(level.read(), DATA)
    r = box(level, slice(1, 4), slice(2, 6), slice(0, 3))
    np.testing.assert_array_equal(level.read(r), DATA[1:4, 2:6, 0:3])


@pytest.mark.parametrize("pads", [((2, 0), (1, 2), (0, 3)), ((0, 6), (7, 0), (1, 1)), ((9, 9), (0, 0), (13, 0))])
def test_read_outside_constant_and_reflect_match_numpy(level, pads):
    (a0, a1), (b0, b1), (c0, c1) = pads
    # The box reaches `pads` voxels beyond the level on each side (numpy.pad's layout).
    r = box(level, slice(-a0, 5 + a1), slice(-b0, 6 + b1), slice(-c0, 7 + c1))
    with pytest.raises(InputError, match="reaches outside") as info:
        level.read(r)
    assert "\n" not in str(info.value)
    np.testing.assert_array_equal(level.read(r, outside="constant", fill=-7),
                                  np.pad(DATA, pads, mode="constant", constant_values=-7))
    # Mirrored at the volume's border only, the border voxel not repeated; wide pads reflect again.
    np.testing.assert_array_equal(level.read(r, outside="reflect"), np.pad(DATA, pads, mode="reflect"))


def test_read_box_partly_outside_takes_mirror_from_the_volume_not_the_box(level):
    # Box voxels [-2, 2) on z: the mirrored voxels -2, -1 are 2, 1 of the *volume*,
    # outside the box's own inside part [0, 2).
    r = box(level, slice(-2, 2), slice(0, 6), slice(0, 7))
    np.testing.assert_array_equal(level.read(r, outside="reflect"), DATA[[2, 1, 0, 1]])
    # Entirely outside with constant fill: no read at all, all fill.
    far = box(level, slice(10, 12), slice(0, 1), slice(0, 1))
    assert (level.read(far, outside="constant", fill=3) == 3).all()
    with pytest.raises(InputError):
        level.read(r, outside="wrap")
    with pytest.raises(InputError, match="fill"):
        from_array(DATA.astype(np.uint8), voxel_size=VS, offset=OFF).level0.read(r, outside="constant", fill=-1)


def test_leading_channel_axis_is_read_whole():
    data = np.arange(2 * 4 * 5 * 6, dtype=np.float32).reshape(2, 4, 5, 6)
    lv = Level(NumpyArray(data), (1.0, *VS), (0.0, *OFF), ("c", "z", "y", "x"))
    assert lv.spatial == (1, 2, 3) and lv.roi.dims == 3
    r = lv.roi_of((slice(1, 3), slice(0, 5), slice(-1, 2)))
    assert lv.roi_of((slice(None), slice(1, 3), slice(0, 5), slice(-1, 2))) == r
    with pytest.raises(InputError):
        lv.voxel_slices(r)
    pads = ((0, 0), (0, 0), (0, 0), (1, 0))
    np.testing.assert_array_equal(lv.read(r, outside="reflect"), np.pad(data, pads, mode="reflect")[:, 1:3, 0:5, 0:3])
    assert lv.voxel_slices(lv.roi_of((slice(1, 3), slice(0, 5), slice(0, 2))))[0] == slice(None)
    np.testing.assert_array_equal(lv.read(), data)
