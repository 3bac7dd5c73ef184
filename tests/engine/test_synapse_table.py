"""SynapseTable: CSV and CREMI HDF5 round trips, atomic writes, one-line errors naming the file."""

from __future__ import annotations

import errno

import h5py
import numpy as np
import pytest

from napari_connectome.errors import InputError
from napari_connectome.synapses import (
    CSV_COLUMNS,
    SynapseTable,
    concat,
    read_cremi,
    read_csv,
    write_cremi,
    write_csv,
)
from napari_connectome.synapses import table as table_mod

HEADER = "synapse_id,pre_z_nm,pre_y_nm,pre_x_nm,post_z_nm,post_y_nm,post_x_nm,pre_id,post_id,score"


def polyadic_table() -> SynapseTable:
    """Synapse 7 has one pre site and two post partners; synapse 3 one; awkward floats and ids."""
    return SynapseTable(
        synapse_id=[7, 7, 3],
        pre=[[40.0, 0.1, 1e-7], [40.0, 0.1, 1e-7], [123456.789, -8.5, 3.0]],
        post=[[80.0, 20.25, 1.0 / 3.0], [0.0, 30.0, 2.0**0.5], [123400.0, 0.0, 2.0]],
        pre_id=[1, 1, 2**64 - 1],
        post_id=[2, 5, 9],
        score=[0.1, 0.7, 1.0],
    )


def assert_same(a: SynapseTable, b: SynapseTable) -> None:
    for name in ("synapse_id", "pre", "post", "pre_id", "post_id", "score"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert np.array_equal(x, y), name


def one_line_naming(exc: pytest.ExceptionInfo, path) -> str:
    text = str(exc.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: "), text
    return text


# ------------------------------------------------------------------ the table
def test_columns_take_their_dtypes_and_are_read_only():
    t = polyadic_table()
    assert t.synapse_id.dtype == np.int64 and t.pre.dtype == np.float64 and t.pre.shape == (3, 3)
    assert t.pre_id.dtype == np.uint64 and t.pre_id[2] == np.uint64(2**64 - 1)
    assert t.score.dtype == np.float32 and len(t) == 3
    with pytest.raises(ValueError):
        t.pre[0, 0] = 1.0
    with pytest.raises(ValueError, match="post_id"):
        SynapseTable([1, 2], np.zeros((2, 3)), np.zeros((2, 3)), [1, 2], [1], [1, 1])


def test_connections_empty_and_concat():
    t = polyadic_table()
    assert t.connections() == {(1, 2): 1, (1, 5): 1, (2**64 - 1, 9): 1}
    doubled = concat([t, t])
    assert len(doubled) == 6 and doubled.connections()[(1, 2)] == 2
    assert len(SynapseTable.empty()) == 0 and SynapseTable.empty().connections() == {}
    assert_same(concat([SynapseTable.empty(), t]), t)
    assert_same(concat([]), SynapseTable.empty())


# ------------------------------------------------------------------------ CSV
def test_csv_round_trip_is_value_and_byte_identical(tmp_path):
    t = polyadic_table()
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    write_csv(t, a)
    assert a.read_text().splitlines()[0] == HEADER == ",".join(CSV_COLUMNS)
    back = read_csv(a)
    assert_same(back, t)
    write_csv(back, b)
    assert a.read_bytes() == b.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.csv"]  # no temporary left


def test_csv_empty_table_and_optional_score(tmp_path):
    write_csv(SynapseTable.empty(), tmp_path / "e.csv")
    assert (tmp_path / "e.csv").read_text() == HEADER + "\n"
    assert len(read_csv(tmp_path / "e.csv")) == 0
    # Columns in another order, no score column, a trailing blank line.
    path = tmp_path / "hand.csv"
    path.write_text("pre_id,post_id,synapse_id,pre_z_nm,pre_y_nm,pre_x_nm,post_z_nm,post_y_nm,post_x_nm\n"
                    "4,5,1,10,20,30,40,50,60\n\n")
    t = read_csv(path)
    assert t.score.tolist() == [1.0] and t.pre.tolist() == [[10, 20, 30]] and t.post_id.tolist() == [5]


def test_a_failed_csv_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "syn.csv"
    write_csv(polyadic_table(), path)
    before = path.read_bytes()
    real = table_mod.csv.writer

    class DiskFullAfterTwoRows:
        def __init__(self, f, **kwargs):
            self.inner, self.rows = real(f, **kwargs), 0

        def writerow(self, row):
            self.rows += 1
            if self.rows > 2:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.inner.writerow(row)

    monkeypatch.setattr(table_mod.csv, "writer", DiskFullAfterTwoRows)
    with pytest.raises(OSError) as exc:
        write_csv(concat([polyadic_table()] * 3), path)
    assert exc.value.filename == str(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["syn.csv"]


GOOD_ROW = "1,10,20,30,40,50,60,4,5,0.5"


@pytest.mark.parametrize(
    "text, needle",
    [
        (None, "no such file"),
        ("", "is empty"),
        ("synapse_id,pre_z_nm,pre_y_nm,pre_x_nm,post_z_nm,post_y_nm,post_x_nm,pre_id,score\n", "no column post_id"),
        (f"{HEADER}\n{GOOD_ROW}\n1,abc,20,30,40,50,60,4,5,1\n", "line 3: pre_z_nm 'abc' is not a number"),
        (f"{HEADER}\n1,10,20,30,40,nan,60,4,5,1\n", "line 2: post_y_nm is NaN"),
        (f"{HEADER}\n1,10,20,30,40,50,inf,4,5,1\n", "line 2: post_x_nm is infinite"),
        (f"{HEADER}\n{GOOD_ROW}\n{GOOD_ROW}\n1,10,20,30,40,50,60,-3,5,1\n", "line 4: pre_id -3 is negative"),
        (f"{HEADER}\n1,10,20,30,40,50,60,4,2.5,1\n", "line 2: post_id '2.5' is not a whole number"),
        (f"{HEADER}\n1,10,20,30,40,50,60,4,{2**64},1\n", f"line 2: post_id {2**64} is above"),
        (f"{HEADER}\n1,10,20,30\n", "line 2: 4 values for 10 columns"),
        (f"{HEADER}\n1,10,20,30,40,50,60,4,5,x\n", "line 2: score 'x' is not a number"),
    ],
)
def test_bad_csv_is_one_line_naming_the_file(tmp_path, text, needle):
    path = tmp_path / "bad.csv"
    if text is not None:
        path.write_text(text)
    with pytest.raises(InputError) as exc:
        read_csv(path)
    assert needle in one_line_naming(exc, path)


def test_binary_csv_is_one_line(tmp_path):
    path = tmp_path / "bin.csv"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InputError) as exc:
        read_csv(path)
    assert "not a text" in one_line_naming(exc, path)


# ---------------------------------------------------------------------- CREMI
def test_cremi_round_trip_is_value_and_byte_identical(tmp_path):
    t = polyadic_table()
    # CREMI stores neither neuron ids nor scores: those come back as 0 and 1.0.
    t = SynapseTable(t.synapse_id, t.pre, t.post, np.zeros(3), np.zeros(3), np.ones(3))
    a, b = tmp_path / "a.h5", tmp_path / "b.hdf"
    write_cremi(t, a)
    back = read_cremi(a)
    assert_same(back, t)
    write_cremi(back, b)
    assert a.read_bytes() == b.read_bytes()
    with h5py.File(a, "r") as f:
        assert f["annotations/ids"].dtype == np.uint64
        types = [x.decode() for x in f["annotations/types"][()]]
        assert types == ["presynaptic_site"] * 2 + ["postsynaptic_site"] * 3
        # One pre annotation per synapse, one post annotation per row.
        assert f["annotations/presynaptic_site/partners"][()].tolist() == [[7, 8], [7, 9], [3, 10]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.h5", "b.hdf"]


def write_cremi_by_hand(path, *, offset=None, partners=((0, 2), (0, 3), (1, 4))):
    with h5py.File(path, "w") as f:
        g = f.create_group("annotations")
        if offset is not None:
            g.attrs["offset"] = offset
        g["ids"] = np.array([10, 11, 20, 21, 22], np.uint64)[[0, 1, 2, 3, 4]]
        g["locations"] = np.array([[0, 0, 0], [40, 400, 400], [0, 0, 80], [0, 80, 0], [40, 400, 480]], float)
        g["types"] = np.array([b"presynaptic_site"] * 2 + [b"postsynaptic_site"] * 3)
        ids = np.array([10, 11, 20, 21, 22], np.uint64)
        f["annotations/presynaptic_site/partners"] = ids[np.asarray(partners)]


def test_cremi_offset_and_labels(tmp_path):
    path = tmp_path / "cremi.hdf"
    write_cremi_by_hand(path, offset=[1000.0, 2000.0, 3000.0])
    seen = []

    def labels(points):
        seen.append(points.copy())
        return (points[:, 1] // 100).astype(np.uint64)  # a neuron per 100 nm of y

    t = read_cremi(path, labels=labels)
    assert t.synapse_id.tolist() == [10, 10, 11]
    assert t.pre.tolist() == [[1000, 2000, 3000], [1000, 2000, 3000], [1040, 2400, 3400]]
    assert t.post.tolist() == [[1000, 2000, 3080], [1000, 2080, 3000], [1040, 2400, 3480]]
    assert t.pre_id.tolist() == [20, 20, 24] and t.post_id.tolist() == [20, 20, 24]
    assert t.score.tolist() == [1.0] * 3 and len(seen) == 2
    assert read_cremi(path).pre_id.tolist() == [0, 0, 0]


def test_a_failed_cremi_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "syn.h5"
    write_cremi(SynapseTable.empty(), path)
    before = path.read_bytes()
    real = h5py.Group.create_dataset

    def fail_on_partners(self, name, *args, **kwargs):
        if "partners" in name:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", fail_on_partners)
    with pytest.raises(OSError):
        write_cremi(polyadic_table(), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["syn.h5"]


def test_write_cremi_refuses_what_the_layout_cannot_hold(tmp_path):
    t = polyadic_table()
    for bad, needle in (
        (SynapseTable([-1], [[0, 0, 0]], [[0, 0, 1]], [1], [2], [1]), "negative synapse_id"),
        (SynapseTable([5, 5], [[0, 0, 0], [0, 0, 9]], t.post[:2], [1, 1], [2, 3], [1, 1]), "synapse 5 has two"),
    ):
        with pytest.raises(InputError) as exc:
            write_cremi(bad, tmp_path / "x.h5")
        assert needle in one_line_naming(exc, tmp_path / "x.h5")
    assert not list(tmp_path.iterdir())


def _no_group(f):
    f.create_group("volumes")


def _no_partners(f):
    g = f.create_group("annotations")
    g["ids"], g["locations"], g["types"] = np.zeros(0, np.uint64), np.zeros((0, 3)), np.array([], dtype="S1")


def _unknown_partner(f):
    _no_partners(f)
    f["annotations/presynaptic_site/partners"] = np.array([[1, 2]], np.uint64)


@pytest.mark.parametrize(
    "make, needle",
    [
        (None, "no such file"),
        ("text", "is not an HDF5 file"),
        (_no_group, "has no group 'annotations'"),
        (_no_partners, "has no dataset 'annotations/presynaptic_site/partners'"),
        (_unknown_partner, "partner annotation 1 is not in 'annotations/ids'"),
    ],
)
def test_bad_cremi_is_one_line_naming_the_file(tmp_path, make, needle):
    path = tmp_path / "bad.h5"
    if make == "text":
        path.write_text("not hdf5\n")
    elif make is not None:
        with h5py.File(path, "w") as f:
            make(f)
    with pytest.raises(InputError) as exc:
        read_cremi(path)
    assert needle in one_line_naming(exc, path)


def test_cremi_partner_of_the_wrong_type(tmp_path):
    path = tmp_path / "swapped.h5"
    write_cremi_by_hand(path, partners=((2, 0),))
    with pytest.raises(InputError) as exc:
        read_cremi(path)
    assert "expected 'presynaptic_site'" in one_line_naming(exc, path)
