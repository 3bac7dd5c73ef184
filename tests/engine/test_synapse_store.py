"""The synapse store: batches in force, supersession, bad files untouched, and SIGKILL loses nothing committed."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

# tests/engine is on sys.path (pytest prepends a test file's folder)
from synapse_store_worker import batch_rows

from napari_connectome.errors import InputError
from napari_connectome.synapses.store import SynapseStore
from napari_connectome.synapses.table import SynapseTable, concat

WORKER = Path(__file__).with_name("synapse_store_worker.py")


def _same(a: SynapseTable, b: SynapseTable) -> None:
    for name in ("synapse_id", "pre", "post", "pre_id", "post_id", "score"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_detections_supersede_detections_and_annotations_stay(tmp_path):
    path = tmp_path / "synapses.sqlite"
    one, two, mine = batch_rows(1, 0), batch_rows(1, 1), batch_rows(1, 2)
    with SynapseStore(path) as store:
        first = store.append(one, origin="detected", details={"model": "m"})
        store.append(mine, origin="annotated")
        _same(store.current(), concat([one, mine]))
        store.append(two, origin="detected")
        _same(store.current(), concat([mine, two]))
        batches = store.batches()
        assert [b["origin"] for b in batches] == ["detected", "annotated", "detected"]
        assert batches[0]["superseded_by"] == 3 and batches[0]["details"] == {"model": "m"}
        assert [b["rows"] for b in batches] == [len(one), len(mine), len(two)]
        store.retract(2)
        _same(store.current(), two)
        with pytest.raises(InputError, match="no batch 99"):
            store.retract(99)
        assert first == 1
    # Reopened, read-only: the same rows; a missing file reads as empty and is not created.
    with SynapseStore(path, read_only=True) as store:
        _same(store.current(), two)
        with pytest.raises(InputError, match="read-only"):
            store.append(one, origin="imported")
    with SynapseStore(tmp_path / "none.sqlite", read_only=True) as store:
        assert len(store.current()) == 0 and store.batches() == []
    assert not (tmp_path / "none.sqlite").exists()


def test_foreign_and_damaged_files_are_refused_untouched(tmp_path):
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()
    before = other.read_bytes()
    with pytest.raises(InputError, match="not a napari-connectome synapse store"):
        SynapseStore(other)
    assert other.read_bytes() == before
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database at all" * 100)
    before = junk.read_bytes()
    with pytest.raises(InputError, match="junk.sqlite") as info:
        SynapseStore(junk)
    assert "\n" not in str(info.value)
    assert junk.read_bytes() == before
    with pytest.raises(InputError, match="folder"):
        SynapseStore(tmp_path)
    with SynapseStore(tmp_path / "s.sqlite") as store, pytest.raises(InputError, match="origin"):
        store.append(batch_rows(0, 0), origin="guessed")


def _trial(path: Path, seed: int, rng: np.random.Generator) -> tuple[int, int]:
    child = subprocess.Popen([sys.executable, str(WORKER), str(path), str(seed)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=dict(os.environ, PYTHONUNBUFFERED="1"), bufsize=0)
    try:
        first = child.stdout.readline().decode()
        assert first.startswith("ready"), (first, child.stderr.read().decode()[-2000:])
        seen = b"".join(child.stdout.readline() for _ in range(int(rng.integers(0, 8))))
        time.sleep(float(rng.uniform(0.0, 0.01)))
        os.kill(child.pid, signal.SIGKILL)
        out, _ = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    reported = [tuple(int(v) for v in line.split()) for line in (seen + out).decode().split("\n")[:-1]]
    start = int(first.split()[1])
    with SynapseStore(path, read_only=True) as store:
        batches = store.batches()
        assert store._con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = {b["batch"]: b["rows"] for b in batches}
        for number, k in reported:  # every batch the child saw committed is there, whole
            assert rows[number] == len(batch_rows(seed, k))
        # Whatever committed without being reported (at most one) is whole too: no half batch.
        new = [b for b in batches[start:]]
        assert len(reported) <= len(new) <= len(reported) + 1
        for k, b in enumerate(new):
            assert b["rows"] == len(batch_rows(seed, k)) and b["details"] == {"seed": seed, "k": k}
        _same(store.current(), concat([batch_rows(s, k) for s, k in _all_batches(batches)]))
    return len(reported), len(new)


def _all_batches(batches):
    return [(b["details"]["seed"], b["details"]["k"]) for b in batches]


@pytest.mark.slow
def test_sigkill_loses_no_committed_batch_and_leaves_none_half_written(tmp_path):
    rng = np.random.default_rng(7)
    path = tmp_path / "synapses.sqlite"
    counts = [_trial(path, seed=t, rng=rng) for t in range(12)]
    # The kills landed both between and inside batches: some trials committed unreported batches, all reported.
    assert sum(r for r, _ in counts) > 0


def test_verdicts_hide_keep_or_reject_a_row_and_undo_brings_it_back(tmp_path):
    path = tmp_path / "synapses.sqlite"
    det = batch_rows(1, 0)
    assert len(det) >= 3
    with SynapseStore(path) as store:
        store.append(det, origin="detected")
        rows, batches, table = store.current(with_rows=True)
        _same(table, det)
        assert len(set(batches.tolist())) == 1
        yes = store.review(int(rows[0]), "yes", details={"task_id": "s-1"})
        no = store.review(int(rows[1]), "no")
        # The yes copy comes last (its batch is newer); the no row is out of the table but on record.
        _same(store.current(), concat([det.subset(np.arange(2, len(det))), det.subset([0])]))
        _same(store.rejected(), det.subset([1]))
        assert [(v["row"], v["verdict"], v.get("task_id")) for v in store.verdicts()] == [
            (int(rows[0]), "yes", "s-1"), (int(rows[1]), "no", None)]
        with pytest.raises(InputError, match="not in force"):
            store.review(int(rows[1]), "yes")  # already reviewed: hidden
        with pytest.raises(InputError, match="verdict"):
            store.review(int(rows[2]), "maybe")
        with pytest.raises(InputError, match="review"):
            store.append(det, origin="reviewed")
        # A new detection run supersedes the detected rows; the confirmed copy stays, the rejection stays on record.
        store.append(batch_rows(1, 1), origin="detected")
        current = store.current()
        assert len(current) == len(batch_rows(1, 1)) + 1
        _same(store.rejected(), det.subset([1]))
        store.retract(yes)
        store.retract(no)
        assert store.verdicts() == []
        _same(store.rejected(), SynapseTable.empty())
        assert store.origins() == {b["batch"]: b["origin"] for b in store.batches()}
    with SynapseStore(path, read_only=True) as again:
        _same(again.current(), batch_rows(1, 1))
