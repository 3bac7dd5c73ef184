"""Writing pyramids is all or nothing: staged builds, atomic swaps, recovery, guards, clean errors.

The crash tests kill real ``napari-connectome convert`` processes (``kill -9``
at random moments, or ``os._exit`` at a chosen step of the swap) and check
that the destination always holds the old or the new pyramid, byte for byte,
and that the next run leaves no staging folder. Mount-based tests (read-only
and full file systems) need root, as in CI: chmod does not stop root.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from napari_connectome.cli import main
from napari_connectome.errors import CancelledError, InputError
from napari_connectome.progress import NullProgress
from napari_connectome.pyramid import convert, staging, write_ome_zarr
from napari_connectome.pyramid import write as pyramid_write

CLI = [sys.executable, "-m", "napari_connectome"]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# --- helpers -----------------------------------------------------------------------


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes (empty when ``root`` is missing)."""
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _ours_beside(dst: Path) -> list[str]:
    """Staging / replaced folders, markers and lock files left beside ``dst``."""
    return sorted(n for n in os.listdir(dst.parent) if n.startswith(f".{dst.name}."))


def _one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("napari-connectome: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def _main_error(capsys, args) -> str:
    """Run the CLI in this process; it must fail with exit 2 and one line."""
    capsys.readouterr()
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("napari-connectome: error:"), err
    return lines[0]


def _run(*args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Two small HDF5 volumes A (image) and B (labels) and their reference pyramids.

    The references are written by the same code with the same destination
    name, so a correct pyramid at ``out/p.ome.zarr`` is byte-identical to one
    of them.
    """
    root = tmp_path_factory.mktemp("sources")
    rng = np.random.default_rng(7)
    a = rng.integers(0, 255, (40, 160, 200), dtype=np.uint8)
    b = (np.arange(40 * 160 * 200, dtype=np.uint32).reshape(40, 160, 200) // 5000).astype(np.uint32)
    path = root / "vol.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("a", data=a, chunks=(8, 64, 64))
        f.create_dataset("b", data=b, chunks=(8, 64, 64))
    refs = {}
    for key in ("a", "b"):
        out = convert(f"{path}/{key}", root / f"ref_{key}" / "p.ome.zarr", voxel_size=(8, 8, 8))
        refs[key] = _tree(out)
    assert refs["a"] != refs["b"]
    return {"a": f"{path}/a", "b": f"{path}/b", "ref": refs}


def _convert_args(src: str, dst: Path, *extra: str) -> list[str]:
    return ["convert", src, str(dst), "--voxel-size", "8", "8", "8", "--quiet", *extra]


def _state(dst: Path, sources) -> str:
    """``"a"``, ``"b"`` or ``"missing"``: what ``dst`` holds; fails on anything else."""
    if not os.path.lexists(dst):
        return "missing"
    tree = _tree(dst)
    for key in ("a", "b"):
        if tree == sources["ref"][key]:
            return key
    raise AssertionError(f"{dst} holds neither pyramid: {sorted(tree)[:8]}")


@contextlib.contextmanager
def _tmpfs(where: Path, size: str):
    """A small tmpfs at ``where`` (needs root)."""
    where.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if proc.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({proc.stderr.strip()})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


needs_root = pytest.mark.skipif(
    not IS_ROOT, reason="read-only and full file systems are made with mount, which needs root"
)


# --- overwrite keeps the old pyramid until the new one is complete -----------------


class _FailAfter(NullProgress):
    def __init__(self, steps: int, exc: BaseException) -> None:
        super().__init__()
        self.steps, self.exc = steps, exc

    def advance(self, steps=1):
        super().advance(steps)
        if self.done >= self.steps:
            raise self.exc


@pytest.mark.parametrize(
    "exc", [CancelledError("cancelled"), OSError(errno.ENOSPC, "No space left on device")]
)
def test_failed_overwrite_keeps_the_old_pyramid(tmp_path, exc):
    old = np.random.default_rng(0).integers(0, 255, (16, 64, 64), dtype=np.uint8)
    dst = write_ome_zarr(tmp_path / "p.ome.zarr", old, chunks=16)
    before = _tree(dst)
    new = np.zeros((16, 64, 64), np.uint16)
    with pytest.raises((CancelledError, InputError)) as info:
        write_ome_zarr(dst, new, chunks=16, block=16, overwrite=True, progress=_FailAfter(3, exc))
    assert "\n" not in str(info.value)
    if isinstance(exc, OSError):
        assert str(dst) in str(info.value) and "the disk is full" in str(info.value)
        assert "untouched" in str(info.value)
    assert _tree(dst) == before
    assert _ours_beside(dst) == []


@pytest.mark.parametrize("workers", [1, 2])
def test_cancel_leaves_no_staging_folder(tmp_path, workers):
    data = np.random.default_rng(1).integers(0, 255, (32, 64, 64), dtype=np.uint8)
    dst = tmp_path / "c.zarr"
    with pytest.raises(CancelledError):
        write_ome_zarr(
            dst,
            data,
            chunks=16,
            block=16,
            workers=workers,
            progress=_FailAfter(4, CancelledError("stop")),
        )
    assert os.listdir(tmp_path) == []


def test_a_finished_pyramid_holds_only_what_was_written(tmp_path):
    """No marker inside: the same bytes on every run (markers live beside the folder)."""
    data = np.arange(4 * 8 * 8, dtype=np.uint8).reshape(4, 8, 8)
    a = _tree(write_ome_zarr(tmp_path / "x" / "p.zarr", data))
    time.sleep(1.1)  # another start time, if it were recorded inside
    b = _tree(write_ome_zarr(tmp_path / "y" / "p.zarr", data))
    assert a == b
    assert not any("napari-connectome" in name or "partial" in name for name in a)
    assert _ours_beside(tmp_path / "x" / "p.zarr") == []


# --- what earlier versions left at DST ---------------------------------------------


def test_overwrite_replaces_what_an_interrupted_write_left_at_dst(tmp_path):
    """Earlier versions wrote at DST itself: arrays, then group metadata last."""
    data = np.random.default_rng(2).integers(0, 255, (16, 64, 64), dtype=np.uint8)
    dst = write_ome_zarr(tmp_path / "p.ome.zarr", data, chunks=16)
    for name in (".zgroup", ".zattrs"):
        (dst / name).unlink()
    (dst / ".zattrs.partial").write_text("{")  # the temporary of the last step
    with pytest.raises(InputError) as info:
        write_ome_zarr(dst, data, chunks=16)  # not asked to overwrite: refused, and told why
    assert "interrupted conversion" in str(info.value)
    write_ome_zarr(dst, data, chunks=16, overwrite=True)
    assert (dst / ".zattrs").is_file() and not (dst / ".zattrs.partial").exists()
    assert _ours_beside(dst) == []
    # Foreign content is still never replaced, even beside zarr arrays.
    (dst / ".zattrs").unlink()
    (dst / ".zgroup").unlink()
    (dst / "thesis.txt").write_text("precious")
    with pytest.raises(InputError) as info:
        write_ome_zarr(dst, data, chunks=16, overwrite=True)
    assert "not a zarr folder" in str(info.value)
    assert (dst / "thesis.txt").read_text() == "precious"


# --- recovery: what is ours, what is alive -------------------------------------------


def _marker(dst: Path, tag: str, **fields) -> Path:
    info = {
        "format": staging.FORMAT,
        "version": staging.FORMAT_VERSION,
        "destination": dst.name,
        "state": "writing",
        "pid": 2**22 + 12345,
        "host": socket.gethostname(),
        "process_start": None,
        "token": "t",
        **fields,
    }
    path = dst.parent / f".{dst.name}.partial-{tag}.json"
    path.write_text(json.dumps(info))
    return path


def test_recovery_touches_only_dead_writers_leftovers(tmp_path):
    dst = tmp_path / "p.zarr"
    # A dead writer on this host (no such pid): removed.
    (tmp_path / ".p.zarr.partial-1-aa").mkdir()
    (tmp_path / ".p.zarr.partial-1-aa" / "0").mkdir()
    _marker(dst, "1-aa")
    # A live writer (this test's parent process, its real start time): kept.
    (tmp_path / ".p.zarr.partial-2-bb").mkdir()
    parent = os.getppid()
    _marker(dst, "2-bb", pid=parent, process_start=staging._proc_stat(parent)[1])
    # A live pid with another start time: the pid was reused, the writer is gone.
    (tmp_path / ".p.zarr.partial-3-cc").mkdir()
    _marker(dst, "3-cc", pid=parent, process_start=staging._proc_stat(parent)[1] + 1)
    # Another host: kept while its heartbeat is fresh, removed when stale.
    (tmp_path / ".p.zarr.partial-4-dd").mkdir()
    _marker(dst, "4-dd", host="elsewhere.invalid")
    (tmp_path / ".p.zarr.partial-5-ee").mkdir()
    stale = _marker(dst, "5-ee", host="elsewhere.invalid")
    old = time.time() - staging.STALE_AFTER_S - 60
    os.utime(stale, (old, old))
    # Our name but no marker: not provably ours, never touched.
    (tmp_path / ".p.zarr.partial-6-ff").mkdir()
    (tmp_path / ".p.zarr.partial-6-ff" / "keep.txt").write_text("x")
    # A marker of another destination, and a half-written marker of ours.
    (tmp_path / ".q.zarr.partial-7-ab").mkdir()
    _marker(tmp_path / "q.zarr", "7-ab")
    (tmp_path / ".p.zarr.partial-8-ab.json").write_text('{"format": "napari-conn')

    with staging.destination_lock(dst):
        done = staging.recover(dst)
    left = sorted(os.listdir(tmp_path))
    assert ".p.zarr.partial-1-aa" not in left and ".p.zarr.partial-1-aa.json" not in left
    assert ".p.zarr.partial-3-cc" not in left and ".p.zarr.partial-5-ee" not in left
    assert ".p.zarr.partial-8-ab.json" not in left
    for kept in (".p.zarr.partial-2-bb", ".p.zarr.partial-4-dd"):
        assert kept in left and f"{kept}.json" in left, left
    assert (tmp_path / ".p.zarr.partial-6-ff" / "keep.txt").exists()
    assert ".q.zarr.partial-7-ab" in left
    assert len(done) == 4
    assert ".p.zarr.lock" not in left


def test_blocks_are_counted_and_generated_lazily():
    import itertools

    shape, block = (5, 7, 9), (2, 3, 4)
    want = [
        tuple(slice(s, min(s + b, n)) for s, b, n in zip(start, block, shape, strict=True))
        for start in itertools.product(*(range(0, n, b) for n, b in zip(shape, block, strict=True)))
    ]
    assert list(pyramid_write._blocks(shape, block)) == want
    assert pyramid_write._block_count(shape, block) == len(want)
    huge = (10**6,) * 3
    blocks = pyramid_write._blocks(huge, (64, 64, 64))
    assert next(blocks) == (slice(0, 64),) * 3  # no list of 3.8e12 blocks first
    assert pyramid_write._block_count(huge, (64,) * 3) == 15625**3


# --- guards -------------------------------------------------------------------------


def _huge_zarr(tmp_path: Path) -> Path:
    """Zarr v2 metadata claiming 10^18 voxels, and no chunk at all."""
    src = tmp_path / "huge.zarr"
    src.mkdir()
    (src / ".zarray").write_text(
        json.dumps(
            {
                "zarr_format": 2,
                "shape": [10**6] * 3,
                "chunks": [64, 64, 64],
                "dtype": "|u1",
                "compressor": None,
                "fill_value": 0,
                "order": "C",
                "filters": None,
            }
        )
    )
    return src


def test_absurd_voxel_count_is_refused_at_once(tmp_path):
    src = _huge_zarr(tmp_path)
    start = time.monotonic()
    # Earlier versions grew by 200 MB/s here: the timeout keeps a regression bounded.
    proc = _run(*_convert_args(str(src), tmp_path / "out.zarr"), timeout=20)
    elapsed = time.monotonic() - start
    line = _one_line_error(proc)
    assert str(src) in line and "(1000000, 1000000, 1000000)" in line and "disk" in line
    assert "--assume-compression" in line  # how to raise the limit
    assert elapsed < 10, elapsed  # interpreter start included; the check itself is instant
    assert sorted(os.listdir(tmp_path)) == ["huge.zarr"]
    # In the engine: well under a second, nothing created.
    from napari_connectome.volume import open_volume

    volume = open_volume(src)
    start = time.monotonic()
    with pytest.raises(InputError):
        write_ome_zarr(tmp_path / "out.zarr", volume)
    assert time.monotonic() - start < 0.5
    assert sorted(os.listdir(tmp_path)) == ["huge.zarr"]


def test_memory_guard_refuses_a_block_that_cannot_fit(tmp_path):
    data = np.zeros((64, 64, 64), np.uint8)
    with pytest.raises(InputError) as info:
        write_ome_zarr(tmp_path / "m.zarr", data, block=10**4, memory_gb=0.5)
    text = str(info.value)
    assert "memory" in text and "--memory-gb" in text and "\n" not in text
    assert os.listdir(tmp_path) == []
    with pytest.raises(InputError):
        write_ome_zarr(tmp_path / "m.zarr", data, assume_compression=0.5)


# --- crashes ------------------------------------------------------------------------

# Runs the CLI and dies (os._exit, like kill -9: no cleanup runs) at a chosen step.
_CRASH = r"""
import os, sys
from napari_connectome import cli
from napari_connectome.pyramid import staging, write

point = sys.argv[1]

def die():
    os._exit(9)

if point == "build":  # level 0 written, the rest not
    real_run = write._run_blocks
    def run_blocks(*args):
        real_run(*args)
        die()
    write._run_blocks = run_blocks
elif point in ("complete", "old-marker"):
    real_marker = staging._write_marker
    def write_marker(path, info):
        real_marker(path, info)
        if (point == "complete" and info.get("state") == "complete") or (
            point == "old-marker" and "replaced_by" in info
        ):
            die()
    staging._write_marker = write_marker
elif point in ("aside", "swapped"):
    real_rename, count = os.rename, [0]
    def rename(a, b):
        real_rename(a, b)
        count[0] += 1
        if count[0] == {"aside": 1, "swapped": 2}[point]:
            die()
    os.rename = rename
elif point == "removing-old":
    staging.remove_tree = lambda path: die()
sys.exit(cli.main(sys.argv[2:]))
"""


@pytest.mark.parametrize(
    "point, right_after, recovered",
    [
        ("build", "a", "a"),  # the build was not complete: discarded
        pytest.param("complete", "a", "a", marks=pytest.mark.slow),  # the swap had not begun
        pytest.param("old-marker", "a", "a", marks=pytest.mark.slow),
        ("aside", "missing", "b"),  # old moved aside, new not yet in place: finished
        pytest.param("swapped", "b", "b", marks=pytest.mark.slow),
        pytest.param("removing-old", "b", "b", marks=pytest.mark.slow),
    ],
)
def test_crash_at_each_step_of_an_overwrite(tmp_path, sources, point, right_after, recovered):
    dst = tmp_path / "out" / "p.ome.zarr"
    assert main(_convert_args(sources["a"], dst)) == 0
    proc = subprocess.run(
        [sys.executable, "-c", _CRASH, point, *_convert_args(sources["b"], dst, "--overwrite")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 9, proc.stderr
    assert _state(dst, sources) == right_after
    assert _ours_beside(dst)  # something was left for the next run
    # The next run (not overwriting) recovers first, then refuses to overwrite.
    assert main(_convert_args(sources["a"], dst)) == 2
    assert _state(dst, sources) == recovered
    assert _ours_beside(dst) == []
    assert main(_convert_args(sources["b"], dst, "--overwrite")) == 0
    assert _state(dst, sources) == "b" and _ours_beside(dst) == []


def test_interrupted_convert_is_cleaned_up_by_the_next_run(tmp_path, sources):
    dst = tmp_path / "out" / "p.ome.zarr"
    proc = subprocess.run(
        [sys.executable, "-c", _CRASH, "build", *_convert_args(sources["a"], dst)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 9, proc.stderr
    assert not os.path.lexists(dst) and _ours_beside(dst)
    assert main(_convert_args(sources["a"], dst)) == 0  # no --overwrite needed
    assert _state(dst, sources) == "a" and _ours_beside(dst) == []


def _kill_loop(tmp_path: Path, sources, kills: int, seed: int) -> None:
    dst = tmp_path / "out" / "p.ome.zarr"
    dst.parent.mkdir()
    # Time a whole run, and when it first touches the folder (after the
    # interpreter started): kills land between the two, where writing happens.
    start = time.monotonic()
    proc = subprocess.Popen([*CLI, *_convert_args(sources["a"], dst)])
    while proc.poll() is None and not os.listdir(dst.parent):
        time.sleep(0.005)
    first_touch = time.monotonic() - start
    assert proc.wait(timeout=120) == 0
    whole = time.monotonic() - start
    rng = random.Random(seed)
    interrupted = 0
    for i in range(kills):
        src = sources["b" if i % 2 == 0 else "a"]
        proc = subprocess.Popen(
            [*CLI, *_convert_args(src, dst, "--overwrite")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(0.9 * first_touch, whole))
        interrupted += proc.poll() is None
        proc.kill()
        proc.wait()
        state = _state(dst, sources)  # the old or the new pyramid, never a mixture
        if state == "missing":  # killed between the two renames: the next run finishes it
            with staging.destination_lock(dst):
                staging.recover(dst)
            assert _state(dst, sources) in ("a", "b")
    assert interrupted >= kills // 2, "the kills came too late to interrupt anything"
    final = _run(*_convert_args(sources["b"], dst, "--overwrite"))
    assert final.returncode == 0, final.stderr
    assert _state(dst, sources) == "b"
    assert _ours_beside(dst) == []
    assert os.listdir(dst.parent) == ["p.ome.zarr"]


def test_kill_9_during_convert_overwrite(tmp_path, sources):
    _kill_loop(tmp_path, sources, kills=5, seed=1)


@pytest.mark.slow
def test_kill_9_during_convert_overwrite_many_times(tmp_path, sources):
    _kill_loop(tmp_path, sources, kills=12, seed=2)


@pytest.mark.slow
def test_concurrent_converts_never_mix(tmp_path, sources):
    dst = tmp_path / "out" / "p.ome.zarr"
    # Without --overwrite: one wins, the other says "exists" (or both... never a mix).
    procs = [
        subprocess.Popen(
            [*CLI, *_convert_args(sources[k], dst)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in ("a", "b")
    ]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert len(loser.strip().splitlines()) == 1 and "exists" in loser
    assert _state(dst, sources) in ("a", "b") and _ours_beside(dst) == []
    # With --overwrite: both succeed, the last swap wins whole.
    procs = [
        subprocess.Popen(
            [*CLI, *_convert_args(sources[k], dst, "--overwrite")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in ("a", "b")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0], [p.stderr.read() for p in procs]
    assert _state(dst, sources) in ("a", "b") and _ours_beside(dst) == []


# --- synthetic ------------------------------------------------------------------------


def test_synthetic_failing_on_its_second_volume_leaves_nothing(tmp_path, monkeypatch, capsys):
    real = pyramid_write._write_group_metadata
    calls = []

    def fail_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(pyramid_write, "_write_group_metadata", fail_second)
    dst = tmp_path / "syn"
    code = main(["synthetic", str(dst), "--shape", "16", "32", "32", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert str(dst) in err and "the disk is full" in err and ".partial" not in err
    assert os.listdir(tmp_path) == []
    # Into an existing folder: the first pyramid is taken back too.
    dst.mkdir()
    (dst / "notes.txt").write_text("mine")
    calls.clear()
    assert main(["synthetic", str(dst), "--shape", "16", "32", "32", "--quiet"]) == 2
    assert os.listdir(dst) == ["notes.txt"]
    monkeypatch.undo()
    assert main(["synthetic", str(dst), "--shape", "16", "32", "32", "--quiet"]) == 0
    assert sorted(os.listdir(dst)) == ["groundtruth.ome.zarr", "notes.txt", "raw.ome.zarr"]


# --- the file system says no ---------------------------------------------------------


@pytest.mark.parametrize("case", ["parent-is-a-file", "link-loop"])
def test_bad_destination_paths_are_one_line(tmp_path, sources, case, capsys):
    if case == "parent-is-a-file":
        (tmp_path / "file.txt").write_text("x")
        dst, problem = tmp_path / "file.txt" / "p.ome.zarr", "is a file, not a folder"
    else:
        (tmp_path / "loop").symlink_to(tmp_path / "loop")
        dst, problem = tmp_path / "loop" / "p.ome.zarr", "symbolic links"
    line = _main_error(capsys, _convert_args(sources["a"], dst))
    assert str(dst) in line and problem in line


@needs_root
def test_read_only_destination_is_one_line(tmp_path, sources, capsys):
    with _tmpfs(tmp_path / "ro", "16m") as mnt:
        dst = mnt / "p.ome.zarr"
        assert main(_convert_args(sources["a"], dst)) == 0
        before = _tree(dst)
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        line = _one_line_error(_run(*_convert_args(sources["b"], dst, "--overwrite")))
        assert str(dst) in line and "read-only" in line and "untouched" in line
        assert _tree(dst) == before
        line = _main_error(capsys, _convert_args(sources["b"], mnt / "new.ome.zarr"))
        assert "read-only" in line and "new.ome.zarr" in line
        line = _main_error(capsys, ["synthetic", mnt / "syn", "--shape", "8", "16", "16"])
        assert "read-only" in line
        assert os.listdir(mnt) == ["p.ome.zarr"]


@needs_root
def test_full_disk_is_one_line_and_leaves_nothing(tmp_path, sources, capsys):
    noise = tmp_path / "noise.h5"  # 4 MB that no compressor shrinks
    with h5py.File(noise, "w") as f:
        f["n"] = np.random.default_rng(3).integers(0, 255, (64, 256, 256), dtype=np.uint8)
    with _tmpfs(tmp_path / "full", "2m") as mnt:
        dst = mnt / "p.ome.zarr"
        small = mnt / "small.ome.zarr"
        assert main(_convert_args(sources["b"], small)) == 0  # labels: compress to little
        line = _one_line_error(_run(*_convert_args(f"{noise}/n", dst)))
        assert str(dst) in line and "the disk is full" in line and "nothing was written" in line
        assert sorted(os.listdir(mnt)) == ["small.ome.zarr"]
        before = _tree(small)
        line = _main_error(capsys, _convert_args(f"{noise}/n", small, "--overwrite"))
        assert "the disk is full" in line and "untouched" in line
        assert _tree(small) == before and sorted(os.listdir(mnt)) == ["small.ome.zarr"]
        line = _main_error(
            capsys, ["synthetic", mnt / "syn", "--shape", "64", "128", "256", "--quiet"]
        )
        # Full while writing, or refused by the estimate once the first volume
        # took the space: either way one line, and nothing left.
        assert str(mnt / "syn") in line and ("the disk is full" in line or "on disk" in line)
        assert ".partial" not in line
        assert sorted(os.listdir(mnt)) == ["small.ome.zarr"]
