"""Nothing a proofreader saved can be lost (issue 9): guarded outputs, recorded history, repairs, clean errors.

Each test names the failure it guards against; all of them failed on the code
before the change (an exit 0 that replaced the edit log, a silently empty
history, a BadZipFile, an "internal error").
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sqlite3

import numpy as np
import pytest

from napari_connectome.cli import main
from napari_connectome.effort import EffortLog, effort_report
from napari_connectome.errors import ConnectomeWarning, InputError
from napari_connectome.outputs import guard_output
from napari_connectome.project import MANIFEST, open_project
from napari_connectome.proofread import Proofreader
from napari_connectome.proofread.demo import make_demo_project
from napari_connectome.proofread.log import EditLog
from napari_connectome.skeleton.store import SkeletonStore


@pytest.fixture
def project(tmp_path):
    """A small project with an agglomeration, three edits (one undone) and two effort rows."""
    p = make_demo_project(tmp_path / "demo", threshold=None)
    pr = Proofreader.open(p, user="ana")
    pr.merge_supervoxels(1, 2)
    pr.merge_supervoxels(3, 4)
    pr.undo()
    session = pr.session
    pr.close()
    with EffortLog.open(p, session=session) as log:
        for i in range(2):
            log.record(task_id=f"t{i}", task_type="merge", answer="yes", shown_at=100.0 + i,
                       answered_at=105.0 + i, active_s=5.0, idle_s=0.0, edit_id=1 + i)
    return open_project(p.root)


def _digests(root) -> dict[str, str]:
    """sha256 of every file of a project (what a refused command must leave as it was).

    SQLite's shared-memory index and an empty write-ahead file, which any
    reader of a WAL database may create, hold no data and are left out.
    """
    def holds_data(f) -> bool:
        return not (f.name.endswith((".lock", "-shm")) or (f.name.endswith("-wal") and f.stat().st_size == 0))

    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(root.rglob("*")) if f.is_file() and holds_data(f)}


def _cli(capsys, *argv) -> tuple[int, list[str]]:
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err.strip().splitlines()


# ------------------------------------------------------------------ 1. guarded outputs
@pytest.mark.parametrize("target, extra", [
    ("edits.sqlite", ()),
    ("edits.sqlite", ("--format", "json")),
    ("edits.sqlite-wal", ()),
    ("effort.sqlite", ()),
    (MANIFEST, ("--format", "json")),
    ("graph/rag.npz", ()),
    ("graph/new.csv", ()),
])
def test_log_export_refuses_the_projects_own_files(project, capsys, target, extra):
    before = _digests(project.root)
    rc, err = _cli(capsys, "log", "export", project.root, project.root / target, *extra, "--overwrite")
    assert rc == 2 and len(err) == 1 and str(project.root / target) in err[0]
    assert "nothing was written" in err[0]
    assert _digests(project.root) == before


def test_report_and_simulate_outputs_refuse_project_files_and_inputs(project, capsys, tmp_path):
    before = _digests(project.root)
    rc, err = _cli(capsys, "effort", "report", project.root, "--csv", project.root / "edits.sqlite", "--overwrite")
    assert rc == 2 and len(err) == 1 and "edit log" in err[0]
    raw = project.inputs["raw"]["uri"].split(".h5")[0] + ".h5"   # the HDF5 file behind FILE.h5/raw
    raw_before = hashlib.sha256(open(raw, "rb").read()).hexdigest()
    rc, err = _cli(capsys, "effort", "report", project.root, "--csv", raw, "--overwrite")
    assert rc == 2 and len(err) == 1 and "input" in err[0]
    assert hashlib.sha256(open(raw, "rb").read()).hexdigest() == raw_before
    gt = project.inputs["groundtruth"]["uri"]
    for flag in ("--csv", "--plot"):
        rc, err = _cli(capsys, "simulate", project.root, "--gt", gt, "--decisions", "1", flag,
                       project.root / "effort.sqlite", "--overwrite")
        assert rc == 2 and len(err) == 1 and "effort log" in err[0]
    assert _digests(project.root) == before


def test_an_existing_output_is_replaced_only_with_overwrite(project, capsys, tmp_path):
    out = tmp_path / "log.csv"
    out.write_text("keep me")
    rc, err = _cli(capsys, "log", "export", project.root, out)
    assert rc == 2 and "--overwrite" in err[0] and out.read_text() == "keep me"
    rc, _ = _cli(capsys, "log", "export", project.root, out, "--overwrite")
    assert rc == 0 and out.read_text().startswith("operation_id,")
    assert not list(tmp_path.glob(".log.csv*"))   # no temporary file left behind


def test_guard_follows_links_and_refuses_folders(project, tmp_path):
    link = tmp_path / "innocent.csv"
    link.symlink_to(project.component_path("edit_log"))
    with pytest.raises(InputError, match="edit log"):
        guard_output(link, overwrite=True)
    with pytest.raises(InputError, match="is a folder"):
        guard_output(tmp_path, overwrite=True)
    with pytest.raises(InputError, match="does not exist"):
        guard_output(tmp_path / "no" / "x.csv")
    with pytest.raises(InputError, match="project folder"):
        guard_output(project.root, folder=True, overwrite=True)
    # An exports folder inside the project is for the user's outputs.
    (project.root / "exports").mkdir()
    assert guard_output(project.root / "exports" / "x.csv") == project.root / "exports" / "x.csv"


# ------------------------------------------------------------------ 2. history that cannot silently vanish
def _spoil_delete(path):
    path.unlink()


def _spoil_empty(path):
    path.write_bytes(b"")


def _spoil_foreign_log(path):
    other = make_demo_project(path.parent.parent / "other", threshold=None)
    pr = Proofreader.open(other)
    pr.merge_supervoxels(5, 6)
    pr.merge_supervoxels(7, 8)
    pr.merge_supervoxels(9, 10)
    pr.close()
    shutil.copy(other.component_path("edit_log"), path)


def _spoil_foreign_sqlite(path):
    path.unlink()
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()


def _spoil_rolled_back(path):
    # An older copy of the same log: the first operation only.
    con = sqlite3.connect(path)
    con.execute("DROP TRIGGER operations_no_delete")
    con.execute("DELETE FROM operations WHERE operation_id > 1")
    con.commit()
    con.close()


@pytest.mark.parametrize("spoil, needle", [
    (_spoil_delete, "missing"),
    (_spoil_empty, "empty"),
    (_spoil_foreign_log, "another log"),
    (_spoil_foreign_sqlite, "not a napari-connectome edit log"),
    (_spoil_rolled_back, "holds 1 operations but this project recorded 3"),
])
def test_a_lost_edit_log_is_refused_everywhere_not_started_afresh(project, capsys, spoil, needle):
    path = project.component_path("edit_log")
    spoil(path)
    before = _digests(project.root)
    with pytest.raises(InputError, match=needle) as err:
        Proofreader.open(project)
    assert str(path) in str(err.value)
    if needle != "not a napari-connectome edit log":
        assert "restart-log" in str(err.value)
    for argv in (("effort", "report", project.root), ("log", "export", project.root, project.root / "x.csv"),
                 ("evaluate", project.root, project.inputs["groundtruth"]["uri"])):
        rc, err_lines = _cli(capsys, *argv)
        assert rc == 2 and len(err_lines) == 1 and str(path) in err_lines[0], argv
    assert _digests(project.root) == before   # nothing started, nothing recorded


def test_restart_log_keeps_the_old_one_aside_and_starts_a_new_history(project, capsys):
    path = project.component_path("edit_log")
    old = path.read_bytes()
    path.write_bytes(b"")
    rc, out = _cli(capsys, "project", "restart-log", project.root)
    assert rc == 0
    aside = list(project.root.glob("edits.sqlite.aside-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == b""
    project = open_project(project.root)
    pr = Proofreader.open(project)
    assert pr.history() == []
    pr.merge_supervoxels(1, 2)
    pr.close()
    recorded = open_project(project.root).history("edit_log")
    assert recorded["operations"] == 1 and recorded["head"] and old != path.read_bytes()


def test_the_project_records_every_edit_and_a_log_ahead_of_its_record_is_fine(project):
    recorded = project.history("edit_log")
    with EditLog(project.component_path("edit_log"), read_only=True) as log:
        assert recorded["id"] == log.meta()["log_id"] and recorded["operations"] == log.last_id() == 3
        assert recorded["head"] == log.head()
    # A crash between the log's commit and the record: the log is one operation ahead.
    stale = dict(project.manifest)
    pr = Proofreader.open(project)
    pr.merge_supervoxels(5, 6)
    pr.close()
    (project.root / MANIFEST).write_text(json.dumps(stale))
    pr = Proofreader.open(open_project(project.root))
    assert len(pr.history()) == 4
    pr.close()
    assert open_project(project.root).history("edit_log")["operations"] == 4


@pytest.mark.parametrize("spoil", [_spoil_delete, _spoil_empty])
def test_a_lost_effort_log_is_refused_by_the_report(project, capsys, spoil):
    path = project.component_path("effort_log")
    spoil(path)
    rc, err = _cli(capsys, "effort", "report", project.root)
    assert rc == 2 and len(err) == 1 and str(path) in err[0] and "restart-log" in err[0]
    with pytest.raises(InputError, match="effort log"):
        EffortLog.open(project)


def test_a_project_from_before_identities_is_adopted_and_a_deleted_log_still_noticed(project):
    # Old manifests registered the component but recorded no identity.
    manifest = json.loads((project.root / MANIFEST).read_text())
    manifest.pop("history")
    (project.root / MANIFEST).write_text(json.dumps(manifest))
    pr = Proofreader.open(open_project(project.root))
    assert len(pr.history()) == 3
    pr.close()
    assert open_project(project.root).history("edit_log")["operations"] == 3
    manifest.pop("history", None)
    (project.root / MANIFEST).write_text(json.dumps(manifest))
    project.component_path("edit_log").unlink()
    with pytest.raises(InputError, match="missing, but this project had one"):
        Proofreader.open(open_project(project.root))


# ------------------------------------------------------------------ derived files: rebuilt, said so
@pytest.mark.parametrize("damage", ["missing", "truncated", "garbage"])
def test_a_damaged_graph_is_rebuilt_with_a_warning_and_the_edits_replay(project, damage):
    rag = project.component_path("graph") / "rag.npz"
    if damage == "missing":
        rag.unlink()
    elif damage == "truncated":
        rag.write_bytes(rag.read_bytes()[:500])
    else:
        rag.write_bytes(b"\x00junk" * 100)
    with pytest.warns(ConnectomeWarning, match="rag.npz"):
        pr = Proofreader.open(project, read_only=True)
    assert len(pr.history()) == 3 and pr.segment_of(2) == pr.segment_of(1)
    pr.close()
    report = effort_report(open_project(project.root))
    assert report["edits"]["merge"] >= 1


def test_a_rebuilt_graph_that_changes_the_base_is_refused(project):
    # The supervoxels were replaced since: the graph rebuilt from them is another one,
    # and the edits made on the old one must not be replayed on it.
    graph = project.component_path("graph") / "rag.npz"
    graph.unlink()
    manifest = json.loads((project.root / MANIFEST).read_text())
    manifest["inputs"]["supervoxels"]["uri"] = manifest["inputs"]["groundtruth"]["uri"]
    (project.root / MANIFEST).write_text(json.dumps(manifest))
    with pytest.warns(ConnectomeWarning), pytest.raises(InputError, match="another supervoxel graph"):
        Proofreader.open(open_project(project.root))


@pytest.mark.parametrize("damage", ["zero", "truncated", "garbage", "wrong_keys", "bad_counts"])
def test_a_damaged_skeleton_cache_is_rebuilt_with_a_warning(project, damage):
    pr = Proofreader.open(project)
    SkeletonStore.rebuild(pr)
    path = SkeletonStore.path(project)
    data = path.read_bytes()
    if damage == "zero":
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"PK\x03\x04" + b"\xff" * 200)
    else:
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        if damage == "wrong_keys":
            arrays.pop("vertex_counts")
        else:
            arrays["vertex_counts"] = np.append(arrays["vertex_counts"], 5)
        np.savez(path, **arrays)
    with pytest.raises(InputError, match="skeleton store") as err:
        SkeletonStore.load(project)
    assert str(path) in str(err.value)
    with pytest.warns(ConnectomeWarning, match="skeletons.npz"):
        store = SkeletonStore.open(pr)
    assert store.is_current(pr)
    pr.close()


# ------------------------------------------------------------------ 5. clean errors
@pytest.mark.parametrize("change, needle", [
    (lambda m: m["inputs"]["raw"].pop("uri"), "no 'uri'"),
    (lambda m: m.__setitem__("inputs", [m["inputs"]["raw"]]), "'inputs' must be a mapping"),
    (lambda m: m["agglomeration"].__setitem__("threshold", "abc"), "threshold"),
    (lambda m: m["agglomeration"].__setitem__("threshold", 5.0), "threshold"),
    (lambda m: m["components"].__setitem__("graph", "../elsewhere"), "outside the project"),
])
def test_a_damaged_manifest_is_one_line_for_every_command(project, capsys, change, needle):
    manifest = json.loads((project.root / MANIFEST).read_text())
    if "agglomeration" not in manifest:
        manifest["agglomeration"] = {"threshold": 0.5}
    change(manifest)
    (project.root / MANIFEST).write_text(json.dumps(manifest))
    gt = str(project.root.parent / "gt.npy")
    for argv in (("project", "info", project.root), ("agglomerate", project.root), ("effort", "report", project.root),
                 ("log", "export", project.root, project.root / "x.csv"),
                 ("simulate", project.root, "--gt", gt, "--decisions", "1")):
        rc, err = _cli(capsys, *argv)
        assert rc == 2 and len(err) == 1 and needle in err[0] and "internal error" not in err[0], argv


def test_graph_component_that_is_a_file_is_one_line(project, capsys):
    shutil.rmtree(project.component_path("graph"))
    project.component_path("graph").write_text("not a folder")
    rc, err = _cli(capsys, "agglomerate", project.root, "--rebuild", "--quiet")
    assert rc == 2 and len(err) == 1 and "is a file" in err[0]


def test_os_errors_end_as_one_line_exit_2(project, capsys, monkeypatch, tmp_path):
    import errno

    from napari_connectome.proofread import log as log_module

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out.csv"))

    monkeypatch.setattr(log_module, "atomic_write", full)
    rc, err = _cli(capsys, "log", "export", project.root, tmp_path / "out.csv")
    assert rc == 2 and len(err) == 1 and "disk is full" in err[0] and "out.csv" in err[0]


def test_a_read_only_project_can_still_be_reported(project, capsys, tmp_path):
    """Reading needs no write access: WAL logs are opened immutable when their folder is read-only.

    As root (CI), a read-only bind mount; otherwise the folder's write permission is taken away
    (which root would ignore).
    """
    import os
    import stat
    import subprocess

    mnt = tmp_path / "ro"
    if os.geteuid() == 0:
        mnt.mkdir()
        subprocess.run(["mount", "--bind", str(project.root), str(mnt)], check=True)
        subprocess.run(["mount", "-o", "remount,ro,bind", str(mnt)], check=True)
    else:
        mnt = project.root
        mode = mnt.stat().st_mode
        mnt.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        rc, err = _cli(capsys, "effort", "report", mnt, "--json")
        assert rc == 0, err
        rc, err = _cli(capsys, "log", "export", mnt, tmp_path / "ro.csv")
        assert rc == 0, err
        rc, err = _cli(capsys, "agglomerate", mnt, "--threshold", "0.3", "--quiet")
        assert rc == 2 and len(err) == 1 and ("read-only" in err[0] or "permission" in err[0])
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(mnt)], check=False)
        else:
            mnt.chmod(mode)


# ------------------------------------------------------------------ 6. check: the recorded identities
def test_check_reports_a_rolled_back_log_and_a_replaced_graph(project, capsys):
    rc, out = main(["check", str(project.root), "--quiet"]), capsys.readouterr()
    assert rc == 0, out.out
    _spoil_rolled_back(project.component_path("edit_log"))
    rag = project.component_path("graph") / "rag.npz"
    data = bytearray(rag.read_bytes())
    data[-30] ^= 0xFF   # in the zip's central directory: may still load, but is not the saved file
    rag.write_bytes(bytes(data))
    rc = main(["check", str(project.root), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 2
    assert "holds 1 operations but this project recorded 3" in out
    assert "rag.npz" in out and "differ from those recorded" in out


def test_convert_and_the_writer_refuse_a_projects_state(project, capsys, tmp_path):
    raw = project.inputs["raw"]["uri"]
    before = _digests(project.root)
    for dst in (project.root / "graph", project.root / "graph" / "new.ome.zarr", project.root,
                project.root / "edits.sqlite"):
        rc, err = _cli(capsys, "convert", raw, dst, "--overwrite", "--quiet")
        assert rc == 2 and len(err) == 1 and str(dst) in err[0], (dst, err)
    from napari_connectome.pyramid import write_ome_zarr

    with pytest.raises(InputError, match="skeletons"):
        write_ome_zarr(project.root / "skeletons" / "x.ome.zarr", np.zeros((4, 8, 8), np.uint8))
    assert _digests(project.root) == before
    # Beside the state, inside the project folder, is allowed.
    rc, err = _cli(capsys, "convert", raw, project.root / "exports" / "raw.ome.zarr", "--quiet")
    assert rc == 0, err


def test_an_edit_by_another_program_during_opening_keeps_the_record_true(project, monkeypatch):
    """Two editors on one project (found by the campaign): the other program appends between this
    one's identity check and its replay; the record made after this one's next edit must still
    describe the log, or the project could no longer be opened."""
    other = Proofreader.open(project, user="other")
    read_rows = EditLog.rows

    def rows_after_another_edit(self, *args, **kwargs):
        monkeypatch.setattr(EditLog, "rows", read_rows)
        other.merge_supervoxels(5, 6)
        return read_rows(self, *args, **kwargs)

    monkeypatch.setattr(EditLog, "rows", rows_after_another_edit)
    mine = Proofreader.open(open_project(project.root), user="me")
    assert len(mine.history()) == 4
    mine.merge_supervoxels(7, 8)
    mine.close()
    other.close()
    reopened = Proofreader.open(open_project(project.root))
    assert len(reopened.history()) == 5
    reopened.close()
    assert open_project(project.root).history("edit_log")["operations"] == 5


# ------------------------------------------------------------------ found by the campaign: hangs and silent drops
def _zarr_v2(path, shape, chunks, files: dict[str, bytes]):
    path.mkdir(parents=True)
    (path / ".zarray").write_text(json.dumps({
        "zarr_format": 2, "shape": list(shape), "chunks": list(chunks), "dtype": "|u1", "compressor": None,
        "fill_value": 0, "order": "C", "filters": None, "dimension_separator": ".",
    }))
    for name, data in files.items():
        (path / name).write_bytes(data)
    return path


def test_check_of_a_volume_claiming_1e18_voxels_reads_only_what_is_stored(tmp_path, capsys):
    import time

    vol = _zarr_v2(tmp_path / "huge.zarr", (10**6,) * 3, (64,) * 3,
                   {"0.0.0": bytes(64**3), "0.0.1": b"\x01" * 64**3})
    t0 = time.monotonic()
    rc = main(["check", str(vol), "--quiet", "--json"])
    took = time.monotonic() - t0
    report = json.loads(capsys.readouterr().out)
    assert rc == 2 and took < 20, took
    (level,) = report["levels"] if "levels" in report else report["counts"]
    total = math.ceil(10**6 / 64) ** 3
    assert level["chunks"] == total and level["read"] == 2 and level["missing"] == total - 2
    named = [f for f in report["findings"] if "missing" in f["problem"]]
    assert named and "0.0.2" in named[0]["problem"] + named[0]["file"]


def test_a_named_pipe_where_a_chunk_belongs_is_refused_not_read(tmp_path, capsys):
    import os

    from napari_connectome.volume import open_volume

    vol = _zarr_v2(tmp_path / "pipe.zarr", (8, 8, 8), (4, 4, 4), {"0.0.0": bytes(64)})
    os.mkfifo(vol / "0.0.1")
    with pytest.raises(InputError, match="not a file") as err:
        open_volume(vol)
    assert "0.0.1" in str(err.value)
    rc = main(["check", str(vol), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 2 and "0.0.1" in out and "not a file" in out


def test_a_slice_folder_with_a_non_file_slice_is_refused_not_shortened(tmp_path):
    import imageio.v3 as iio

    from napari_connectome.volume import open_volume

    folder = tmp_path / "slices"
    folder.mkdir()
    for i in range(4):
        iio.imwrite(folder / f"z{i:02d}.png", np.full((8, 8), i, np.uint8))
    assert open_volume(folder).shape == (4, 8, 8)
    (folder / "z01.png").unlink()
    (folder / "z01.png").mkdir()
    with pytest.raises(InputError, match="not a file") as err:
        open_volume(folder)
    assert "z01.png" in str(err.value)


def test_metadata_nested_a_hundred_thousand_deep_is_one_line_not_a_crash(tmp_path):
    """Tensorstore's own parser crashed the whole program (SIGSEGV) on such a file."""
    import subprocess
    import sys

    from napari_connectome.pyramid import write_ome_zarr

    vol = write_ome_zarr(tmp_path / "deep.ome.zarr", np.zeros((8, 16, 16), np.uint32), kind="labels", chunks=8)
    meta = json.loads((vol / "0" / ".zarray").read_text())
    text = json.dumps(meta)[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    (vol / "0" / ".zarray").write_text(text)
    script = ("import sys; from napari_connectome.cli import main; "
              f"sys.exit(main(['info', {str(vol)!r}]))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "nested too deeply" in lines[0], proc.stderr[-500:]


def test_sample_project_makes_its_own_cache_folder(tmp_path, monkeypatch):
    # A fresh machine has no ~/.cache yet; the sample's cache is ours to create, while a
    # folder the user names still needs an existing parent.
    from napari_connectome.samples import gala_fib_project

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "no" / "cache" / "yet"))
    project = gala_fib_project()
    assert project.root.parent == tmp_path / "no" / "cache" / "yet" / "napari-connectome"
    with pytest.raises(InputError, match="does not exist"):
        gala_fib_project(tmp_path / "missing" / "gala")
