"""``napari-connectome check``: every chunk read, missing and undecodable ones named; project files checked.

Fixture volumes are 8 × 32 × 32 voxels in chunks of 4 × 16 × 16 (8 chunks),
written by each format's own library.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import tensorstore as ts
import tifffile
import zarr

from napari_connectome import check as check_mod
from napari_connectome.check import check, check_project, check_volume
from napari_connectome.errors import InputError
from napari_connectome.volume import open_volume
from napari_connectome.volume.chunks import MISSING_NOTE_MARK, missing_chunks_note

SHAPE = (8, 32, 32)
CHUNKS = (4, 16, 16)
N_CHUNKS = 8


def _labels() -> np.ndarray:
    # Ids from 1: no chunk equals the fill value, so every writer stores all 8.
    return (np.arange(np.prod(SHAPE), dtype=np.uint32).reshape(SHAPE) % 97 + 1).astype(np.uint32)


def write_zarr(root: Path, zarr_format: int, fill_value: int = 0) -> Path:
    arr = zarr.create_array(str(root), shape=SHAPE, chunks=CHUNKS, dtype="uint32",
                            zarr_format=zarr_format, fill_value=fill_value)
    arr[...] = _labels()
    return root


def write_n5(root: Path) -> Path:
    store = ts.open({
        "driver": "n5",
        "kvstore": {"driver": "file", "path": str(root)},
        "metadata": {"dimensions": list(reversed(SHAPE)), "blockSize": list(reversed(CHUNKS)),
                     "dataType": "uint32", "compression": {"type": "gzip"}},
        "create": True,
    }).result()
    store.write(_labels().T).result()  # N5 is x, y, z
    return root


def write_precomputed(root: Path) -> Path:
    store = ts.open({
        "driver": "neuroglancer_precomputed",
        "kvstore": {"driver": "file", "path": str(root)},
        "multiscale_metadata": {"type": "segmentation", "data_type": "uint32", "num_channels": 1},
        "scale_metadata": {"size": list(reversed(SHAPE)), "resolution": [8, 8, 30],
                           "voxel_offset": [3, 0, 1], "chunk_size": list(reversed(CHUNKS)), "encoding": "raw"},
        "create": True,
    }).result()
    store[ts.d["channel"][0]].translate_to[0, 0, 0].write(_labels().T).result()
    return root


def write_hdf5(root: Path, *, only_first_half: bool = False) -> Path:
    path = root.with_suffix(".h5")
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("seg", shape=SHAPE, chunks=CHUNKS, dtype="uint32", compression="gzip", fillvalue=0)
        if only_first_half:
            ds[:4] = _labels()[:4]  # chunks of z 4..7 are never allocated
        else:
            ds[...] = _labels()
    return path


def write_tiff(root: Path) -> Path:
    path = root.with_suffix(".tif")
    tifffile.imwrite(path, _labels(), compression="zlib")
    return path


WRITERS = {
    "zarr2": lambda root: write_zarr(root, 2),
    "zarr3": lambda root: write_zarr(root, 3),
    "n5": write_n5,
    "precomputed": write_precomputed,
    "hdf5": write_hdf5,
    "tiff": write_tiff,
}


def _run(path, *extra: str) -> tuple[int, str]:
    """Run the command as the CLI will: its own parser, then ``run``; (exit status, stdout)."""
    import contextlib
    import io

    parser = argparse.ArgumentParser()
    check_mod.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["check", os.fspath(path), "--quiet", *extra])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = check_mod.run(args)
    return status, out.getvalue()


# ---------------------------------------------------------------- clean volumes


@pytest.mark.parametrize("fmt", sorted(WRITERS))
def test_clean_volume_is_ok_and_exits_0(tmp_path, fmt):
    path = WRITERS[fmt](tmp_path / "vol")
    report = check_volume(path)
    assert report.ok, report.text()
    (level,) = report.counts
    pages = SHAPE[0] if fmt == "tiff" else N_CHUNKS  # a TIFF's chunk is one page
    assert (level.chunks, level.read, level.missing, level.undecodable) == (pages, pages, 0, 0)
    status, out = _run(path)
    assert status == 0
    assert out.strip().splitlines()[-1].endswith(f"all is well ({pages} chunks in 1 level(s): {pages} read, "
                                                 "0 missing, 0 undecodable)")


# ---------------------------------------------------------------- missing chunks


MISSING = {  # format -> (chunk file below the volume, its key, what it reads as)
    "zarr2": ("1.0.1", "1.0.1", "0 (background)"),
    "zarr3": ("c/1/0/1", "c/1/0/1", "0 (background)"),
    "n5": ("1/0/1", "1/0/1", "0 (background)"),  # x, y, z: N5 order
    "precomputed": ("8_8_30/19-35_0-16_5-9", "8_8_30/19-35_0-16_5-9", "0 (background)"),
}


@pytest.mark.parametrize("fmt", sorted(MISSING))
def test_deleted_chunk_is_reported_missing_with_key_and_fill_value(tmp_path, fmt):
    root = WRITERS[fmt](tmp_path / "vol")
    rel, key, reads_as = MISSING[fmt]
    chunk = root.joinpath(*rel.split("/"))
    chunk.unlink()
    report = check_volume(root)
    assert not report.ok and not report.errors
    (finding,) = report.findings
    assert finding.severity == "warning"
    assert finding.file == str(chunk)
    assert f"chunk {key} is missing; it reads as {reads_as}" in finding.problem
    (level,) = report.counts
    assert (level.chunks, level.read, level.missing) == (N_CHUNKS, N_CHUNKS - 1, 1)
    status, out = _run(root)
    assert status == 2
    assert out.splitlines()[0] == finding.line()
    assert "0 errors, 1 warning" in out.splitlines()[-1]


def test_missing_chunk_reads_as_the_arrays_fill_value(tmp_path):
    root = write_zarr(tmp_path / "img.zarr", 2, fill_value=7)
    (root / "0.1.1").unlink()
    report = check_volume(root, kind="image")
    (finding,) = report.findings
    assert finding.problem.endswith("chunk 0.1.1 is missing; it reads as 7")
    assert report.counts[0].fill_value == 7


def test_unallocated_hdf5_chunks_are_missing(tmp_path):
    path = write_hdf5(tmp_path / "half", only_first_half=True)
    report = check_volume(path)
    assert [f.severity for f in report.findings] == ["warning"] * 4
    assert all(f.file == f"{path}/seg" for f in report.findings)
    assert [f.problem for f in report.findings] == [
        f"chunk at {offset} is missing; it reads as 0 (background)"
        for offset in ((4, 0, 0), (4, 0, 16), (4, 16, 0), (4, 16, 16))
    ]
    assert (report.counts[0].read, report.counts[0].missing) == (4, 4)


def test_listing_of_many_missing_chunks_is_capped_but_counted(tmp_path, monkeypatch):
    import napari_connectome.volume.chunks as chunks

    root = write_zarr(tmp_path / "sparse.zarr", 2)
    for name in ("0.0.0", "0.0.1", "0.1.0", "1.1.1"):
        (root / name).unlink()
    monkeypatch.setattr(chunks, "KEEP_ISSUES", 1)
    report = check_volume(root)
    assert len(report.findings) == 2
    assert report.findings[0].problem.startswith("chunk 0.0.0 is missing")
    assert report.findings[1].problem == "3 more missing chunks (not listed), reading as 0 (background)"
    assert report.counts[0].missing == 4


# ---------------------------------------------------------------- undecodable chunks


@pytest.mark.parametrize("fmt", ["zarr2", "zarr3", "n5", "precomputed"])
@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_damaged_chunk_is_undecodable_and_named(tmp_path, fmt, damage):
    root = WRITERS[fmt](tmp_path / "vol")
    chunk = root.joinpath(*MISSING[fmt][0].split("/"))
    raw = chunk.read_bytes()
    chunk.write_bytes(b"\x07garbage" * 9 if damage == "garbage" else raw[: len(raw) // 2])
    report = check_volume(root)
    (finding,) = report.findings
    assert finding.severity == "error"
    assert finding.file == str(chunk)
    assert f"chunk {MISSING[fmt][1]} cannot be decoded (" in finding.problem
    assert "\n" not in finding.problem
    assert (report.counts[0].read, report.counts[0].undecodable) == (N_CHUNKS - 1, 1)
    assert _run(root)[0] == 2


def test_damaged_hdf5_chunk_is_undecodable(tmp_path):
    path = write_hdf5(tmp_path / "bad")
    with h5py.File(path, "r") as f:
        info = f["seg"].id.get_chunk_info_by_coord((4, 16, 0))
    with open(path, "r+b") as fh:  # garbage over the chunk's gzip stream
        fh.seek(info.byte_offset)
        fh.write(b"\xff" * info.size)
    report = check_volume(f"{path}/seg")
    (finding,) = report.findings
    assert finding.severity == "error" and finding.file == f"{path}/seg"
    assert finding.problem.startswith("chunk at (4, 16, 0) cannot be decoded (")


def test_damaged_tiff_page_is_undecodable(tmp_path):
    path = write_tiff(tmp_path / "bad")
    with tifffile.TiffFile(path) as tf:
        page = tf.pages[5]
        offset, size = page.dataoffsets[0], page.databytecounts[0]
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\x00" * size)  # not a zlib stream any more
    report = check_volume(path)
    (finding,) = report.findings
    assert finding.severity == "error" and finding.file == str(path)
    assert finding.problem.startswith("chunk (5, 0, 0) cannot be decoded (")
    assert report.counts[0].read == SHAPE[0] - 1


def test_unopenable_volume_is_one_error(tmp_path):
    report = check_volume(tmp_path / "nothing.zarr")
    assert [f.line() for f in report.findings] == [f"error: {tmp_path / 'nothing.zarr'}: no such file or directory"]
    assert _run(tmp_path / "nothing.zarr")[0] == 2


def test_json_report(tmp_path):
    root = write_zarr(tmp_path / "v.zarr", 3)
    (root / "c" / "0" / "0" / "0").unlink()
    status, out = _run(root, "--json")
    doc = json.loads(out)
    assert status == 2 and doc["ok"] is False and doc["warnings"] == 1 and doc["errors"] == 0
    assert doc["findings"][0]["file"] == str(root / "c" / "0" / "0" / "0")
    assert doc["chunks"] == {"chunks": 8, "read": 7, "missing": 1, "undecodable": 0}
    assert doc["levels"][0]["fill_value"] == 0


# ---------------------------------------------------------------- the note at open


def test_missing_chunks_are_noted_when_the_volume_opens(tmp_path):
    root = write_zarr(tmp_path / "seg.zarr", 2)
    assert not any(MISSING_NOTE_MARK in n for n in open_volume(root).notes)
    (root / "1.1.0").unlink()
    (root / ".DS_Store").write_bytes(b"")  # stray files and keys outside the grid do not count
    (root / "5.0.0").write_bytes(b"")
    (root / "01.0.0").write_bytes(b"")
    volume = open_volume(root, kind="labels")
    notes = [n for n in volume.notes if MISSING_NOTE_MARK in n]
    assert notes == [f"1 of 8 chunks are missing and read as 0 (background) — "
                     f"`napari-connectome check {root}` lists them"]
    image = open_volume(root, kind="image")
    assert any("1 of 8 chunks are missing and read as 0 —" in n for n in image.notes)
    # Levels with more chunks than the limit are not listed at open.
    assert missing_chunks_note(volume, limit=N_CHUNKS - 1) is None
    assert missing_chunks_note(volume, limit=N_CHUNKS) is not None


@pytest.mark.parametrize("fmt", ["zarr3", "n5", "precomputed"])
def test_open_note_for_nested_and_precomputed_keys(tmp_path, fmt):
    root = WRITERS[fmt](tmp_path / "vol")
    assert missing_chunks_note(open_volume(root)) is None
    root.joinpath(*MISSING[fmt][0].split("/")).unlink()
    note = missing_chunks_note(open_volume(root))
    assert note is not None and note.startswith("1 of 8 chunks are missing and read as 0 (background)")


# ---------------------------------------------------------------- projects


@pytest.fixture
def project(tmp_path):
    """A project with a graph, merge tree, edit log, effort log and skeleton store, all sound."""
    from napari_connectome.effort.log import EffortLog
    from napari_connectome.graph import agglomerate_project
    from napari_connectome.project import create_project
    from napari_connectome.proofread.log import EditLog
    from napari_connectome.skeleton.model import Skeleton
    from napari_connectome.skeleton.store import FORMAT_VERSION, SkeletonStore

    raw = zarr.create_array(str(tmp_path / "raw.zarr"), shape=SHAPE, chunks=CHUNKS, dtype="uint8")
    raw[...] = (_labels() * 37 % 251).astype(np.uint8)
    sv = write_zarr(tmp_path / "sv.zarr", 2)
    proj = create_project(tmp_path / "proj", raw=tmp_path / "raw.zarr", supervoxels=sv, voxel_size=(30, 4, 4))
    agglomerate_project(proj)
    EditLog(proj.component_path("edit_log")).close()
    EffortLog.open(proj, user="t", session="s").close()
    SkeletonStore(
        proj, skeletons={1: Skeleton(1, [[0, 0, 0], [30, 4, 4]], [[0, 1]], [2.0, 2.0])},
        signature={"format_version": FORMAT_VERSION}, sv_ids=np.array([1], np.uint64),
        sv_boxes=np.zeros((1, 6), np.int64),
    ).save()
    return proj


def test_sound_project_is_ok(project):
    report = check_project(project.root)
    assert report.ok, report.text()
    assert [c.volume for c in report.counts] == ["raw", "supervoxels"]
    assert all(c.read == c.chunks == N_CHUNKS for c in report.counts)
    names = " | ".join(report.checked)
    for what in ("manifest", "raw", "supervoxels", "edit log (0 operations)", "effort log (0 answers)",
                 "merge tree", "skeletons (1 segments)"):
        assert what in names
    assert _run(project.root) == (0, report.text() + "\n")


def test_project_with_a_corrupt_edit_log(project):
    path = project.component_path("edit_log")
    for side in ("-wal", "-shm"):
        Path(f"{path}{side}").unlink(missing_ok=True)
    path.write_bytes(os.urandom(4096))
    report = check_project(project.root)
    (finding,) = report.findings
    assert finding.severity == "error" and finding.file == str(path)
    assert "edit log is corrupt" in finding.problem
    assert any("effort log" in c for c in report.checked)  # the other checks still ran
    assert _run(project.root)[0] == 2


def test_project_with_a_damaged_rag(project):
    path = project.component_path("graph") / "rag.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 3 : len(data) // 3 + 64] = b"\x00" * 64
    path.write_bytes(bytes(data))
    report = check_project(project.root)
    # Unreadable, and (a second finding) not the bytes recorded when it was saved.
    assert {f.file for f in report.findings} == {str(path)}
    assert all(f.severity == "error" for f in report.findings)
    assert any("differ from those recorded" in f.problem for f in report.findings)


def test_project_with_a_merge_tree_of_another_graph(project, tmp_path):
    from napari_connectome.graph.agglomerate import MergeTree

    path = project.component_path("graph") / "merge_tree.npz"
    tree = MergeTree.load(path)
    other = MergeTree(node_ids=tree.node_ids[:-1], merges=tree.merges[:0], scores=tree.scores[:0],
                      edges=tree.edges[:0], feature=tree.feature)
    other.save(path)
    report = check_project(project.root)
    assert {f.file for f in report.findings} == {str(path)}
    assert any("does not belong to rag.npz" in f.problem for f in report.findings)
    assert any("differ from those recorded" in f.problem for f in report.findings)


def test_project_with_a_truncated_skeleton_store(project):
    from napari_connectome.skeleton.store import SkeletonStore

    path = SkeletonStore.path(project)
    path.write_bytes(path.read_bytes()[:200])
    report = check_project(project.root)
    (finding,) = report.findings
    assert finding.severity == "error" and finding.file == str(path)


def test_project_input_with_a_missing_chunk_and_a_changed_shape(project, tmp_path):
    (tmp_path / "sv.zarr" / "0.0.0").unlink()
    report = check_project(project.root)
    (finding,) = report.findings
    assert finding.file == str(tmp_path / "sv.zarr" / "0.0.0")
    assert finding.problem == "supervoxels: chunk 0.0.0 is missing; it reads as 0 (background)"
    raw = zarr.create_array(str(tmp_path / "raw.zarr"), shape=(8, 32, 16), chunks=CHUNKS, dtype="uint8",
                            overwrite=True)
    raw[...] = 1
    report = check_project(project.root)
    assert any(f.problem.startswith("raw: shape is now [8, 32, 16] but the project recorded [8, 32, 32]")
               for f in report.findings)


def test_project_check_refuses_volume_options(project):
    with pytest.raises(InputError, match="--voxel-size"):
        check(project.root, voxel_size=(1, 1, 1))
    assert check(project.root).target == "project"


# ---------------------------------------------------------------- slices and remote stores


def test_truncated_slice_of_a_png_stack_is_named(tmp_path):
    import imageio.v3 as iio

    folder = tmp_path / "stack"
    folder.mkdir()
    for z in range(3):
        iio.imwrite(folder / f"s{z}.png", _labels()[z].astype(np.uint8))
    assert check_volume(folder).ok
    bad = folder / "s1.png"
    bad.write_bytes(bad.read_bytes()[:60])  # the header survives: opening still works
    report = check_volume(folder)
    (finding,) = report.findings
    assert finding.severity == "error" and finding.file == str(bad)
    assert finding.problem.startswith("chunk (1, 0, 0) cannot be decoded (the slice could not be read")


def test_remote_store_is_read_through_its_kvstore(tmp_path):
    """A missing key of a store reached only through tensorstore's kvstore (as gs://, s3://)."""
    import uuid

    from napari_connectome.volume.cache import tensorstore_context
    from napari_connectome.volume.chunks import scan_volume
    from napari_connectome.volume.formats import zarr_array
    from napari_connectome.volume.location import Location
    from napari_connectome.volume.open import finish_volume

    root = write_zarr(tmp_path / "v.zarr", 2)
    prefix = f"bucket-{uuid.uuid4().hex}/v.zarr"
    kv = ts.KvStore.open(f"memory://{prefix}/", context=tensorstore_context()).result()
    for path in root.iterdir():
        if path.name != "1.1.0":  # this chunk never reaches the store
            kv.write(path.name, path.read_bytes()).result()
    location = Location(uri=f"memory://{prefix}", scheme="memory", path=prefix)
    volume = finish_volume(zarr_array.open(location, on_error="raise", notify=None))
    assert missing_chunks_note(volume) is None  # remote stores are not listed at open
    (scan,) = scan_volume(volume)
    assert (scan.read, scan.missing, scan.undecodable) == (N_CHUNKS - 1, 1, 0)
    (issue,) = scan.issues
    assert (issue.status, issue.key, issue.file) == ("missing", "1.1.0", f"memory://{prefix}/1.1.0")


def test_cancelling_stops_the_check(tmp_path):
    from napari_connectome.errors import CancelledError
    from napari_connectome.progress import NullProgress

    progress = NullProgress()
    progress.cancelled = True
    with pytest.raises(CancelledError):
        check_volume(write_zarr(tmp_path / "v.zarr", 2), progress=progress)
