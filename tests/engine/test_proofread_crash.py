"""Crash test: a process making edits is killed with SIGKILL at random moments (≥ 50 times).

On reopening, every operation the child saw committed is in the log, the log
passes SQLite's integrity check, it replays (every operation's recorded
effect applies and yields its recorded segments: none is half-applied), and
the state as of the child's last reported operation is exactly the child's.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from napari_connectome.proofread import EditLog, Proofreader
from napari_connectome.proofread.demo import make_demo_project

WORKER = Path(__file__).with_name("crash_worker.py")
GROUPS = 5  # project copies; trials within a group continue on the same log
TRIALS_PER_GROUP = 11
sys.path.insert(0, str(WORKER.parent))
from crash_worker import mapping_digest  # noqa: E402


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    return make_demo_project(root / "base", shape=(6, 24, 24), n_supervoxels=24, seed=2)


def _trial(project_dir: Path, seed: int, rng: np.random.Generator) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    child = subprocess.Popen(
        [sys.executable, str(WORKER), str(project_dir), str(seed)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        bufsize=0,  # no read-ahead: communicate() reads the fd itself and would skip buffered lines
    )
    try:
        first = child.stdout.readline().decode()
        assert first.startswith("ready"), (first, child.stderr.read().decode()[-2000:])
        # Let the child commit a random number of edits, then kill it a random
        # fraction of an edit later: the kill lands anywhere inside an edit, and
        # how many edits a trial covers does not depend on how loaded the machine is.
        seen = b"".join(child.stdout.readline() for _ in range(int(rng.integers(0, 12))))
        time.sleep(float(rng.uniform(0.0, 0.02)))
        os.kill(child.pid, signal.SIGKILL)
        out, _ = child.communicate(timeout=30)
        out = seen + out
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    reported = []
    for line in out.decode().split("\n")[:-1]:  # a line cut by the kill has no "\n"
        op_id, digest = line.split()
        reported.append((int(op_id), digest))
    log = EditLog(project_dir / "edits.sqlite")
    try:
        assert log.integrity_check() == "ok"
        ids = [r["operation_id"] for r in log.rows(with_patch=False)]
    finally:
        log.close()
    assert ids == list(range(1, len(ids) + 1))
    assert {i for i, _ in reported} <= set(ids)
    last = reported[-1][0] if reported else int(first.split()[1])
    # At most one operation committed whose id the child had no time to print.
    assert last <= len(ids) <= last + 1
    pr = Proofreader.open(project_dir)  # replays and checks every operation
    if ids:
        final = pr.history()[-1]
        assert all(pr.state.has_segment(r) for r in final["after_roots"])
    pr.close()
    if reported:
        past = Proofreader.open(project_dir, as_of=last)
        assert mapping_digest(past.mapping()) == reported[-1][1]
        past.close()
    return {"reported": len(reported), "unreported": len(ids) - last, "log": len(ids)}


def _group(base_root: Path, dst: Path, group: int) -> list[dict]:
    shutil.copytree(base_root, dst)
    rng = np.random.default_rng(1000 + group)
    return [_trial(dst, seed=group * 100 + t, rng=rng) for t in range(TRIALS_PER_GROUP)]


@pytest.mark.slow
def test_sigkill_loses_no_committed_edit_and_leaves_none_half_applied(base, tmp_path):
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(_group, base.root, tmp_path / f"g{g}", g) for g in range(GROUPS)]
        trials = [t for f in futures for t in f.result()]
    assert len(trials) >= 50
    total = sum(t["reported"] for t in trials)
    assert total > 200, "the children made too few edits before being killed"
    print(f"{len(trials)} kills, {total} committed edits reported, "
          f"{sum(t['unreported'] for t in trials)} committed but unreported at the kill")
