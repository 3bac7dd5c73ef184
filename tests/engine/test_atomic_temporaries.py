"""A writer killed inside :func:`atomic_write` leaves its target whole and a temporary file that the next run removes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from napari_connectome.atomic import atomic_write, remove_dead_temporaries, unique_tmp_name

WRITER = textwrap.dedent("""
    import sys, time
    from napari_connectome.atomic import atomic_write
    target = sys.argv[1]
    with atomic_write(target, tmp_name=".zattrs.partial") as tmp:
        with open(tmp, "w") as f:
            f.write('{"half": ')
            f.flush()
        print("inside", flush=True)
        time.sleep(60)
""")


def _killed_inside_a_write(target: Path) -> int:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "inside"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return proc.pid


def test_a_sigkilled_writers_temporary_is_removed_and_the_target_kept(tmp_path):
    target = tmp_path / ".zattrs"
    target.write_text('{"old": 1}\n')
    dead = _killed_inside_a_write(target)
    temps = [p.name for p in tmp_path.iterdir() if p.name != ".zattrs"]
    assert len(temps) == 1 and temps[0].startswith(f".zattrs.{dead}-") and temps[0].endswith(".partial")
    assert target.read_text() == '{"old": 1}\n'
    assert remove_dead_temporaries(tmp_path) == temps
    assert sorted(p.name for p in tmp_path.iterdir()) == [".zattrs"]
    assert target.read_text() == '{"old": 1}\n'


def test_only_dead_writers_temporaries_go(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = [f".graph.npz.{proc.pid}-0123abcd.tmp", f".zgroup.{proc.pid}-ffffffff.partial",
                f".table.h5.tmp.{proc.pid}-00112233.h5", f".noext.{proc.pid}-89abcdef"]
        kept = [".zattrs", ".zgroup", ".blocks-done", "graph.npz", f"graph.{proc.pid}-0123abcd.tmp",  # not hidden
                f".graph.npz.{sleeper.pid}-0123abcd.tmp",  # its writer lives
                f".graph.npz.{os.getpid()}-0123abcd.tmp",  # ours: perhaps being written now
                f".graph.npz.{proc.pid}-0123abcz.tmp",  # not our pattern
                ]
        for name in dead + kept:
            (tmp_path / name).write_text("x")
        os.mkdir(tmp_path / f".folder.{proc.pid}-0123abcd.tmp")  # folders are not ours to remove
        assert sorted(remove_dead_temporaries(tmp_path)) == sorted(dead)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*kept, f".folder.{proc.pid}-0123abcd.tmp"])
    finally:
        sleeper.kill()
        sleeper.wait()


def test_the_pattern_matches_what_atomic_write_names(tmp_path):
    """Every temporary name atomic_write makes for a hidden name is one the sweep recognises."""
    from napari_connectome.atomic import _TEMPORARY

    for name in (".zattrs.partial", ".x.npz.tmp", ".t.h5.tmp.h5", ".e.parquet.tmp.parquet", ".plain"):
        tmp = unique_tmp_name(name)
        assert _TEMPORARY.match(tmp) and int(_TEMPORARY.match(tmp).group(1)) == os.getpid(), tmp
    with atomic_write(tmp_path / "a.json") as tmp:
        assert _TEMPORARY.match(tmp.name)
        tmp.write_text("{}")


def test_a_missing_folder_is_nothing_to_remove(tmp_path):
    assert remove_dead_temporaries(tmp_path / "absent") == []


def test_where_a_process_cannot_be_probed_nothing_is_removed(tmp_path, monkeypatch):
    """On Windows ``os.kill(pid, 0)`` sends a console event instead of probing: the sweep must not call it."""
    import napari_connectome.atomic as atomic

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not atomic.process_alive(proc.pid)
    (tmp_path / f".zattrs.{proc.pid}-0123abcd.partial").write_text("{")
    calls = []
    monkeypatch.setattr(atomic.os, "name", "nt")
    monkeypatch.setattr(atomic.os, "kill", lambda *a: calls.append(a))
    assert atomic.process_alive(proc.pid)
    assert remove_dead_temporaries(tmp_path) == [] and calls == []
    assert (tmp_path / f".zattrs.{proc.pid}-0123abcd.partial").exists()
