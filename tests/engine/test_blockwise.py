"""The block-wise layer: grids that tile, runs that give the same bytes anywhere, resume and cancel."""

from __future__ import annotations

import functools
import itertools
import threading
from pathlib import Path

import blockwise_helpers as helpers
import numpy as np
import pytest

from napari_connectome.blockwise import BlockError, BlockGrid, Ledger, ledger_path, run_blockwise
from napari_connectome.errors import CancelledError, InputError
from napari_connectome.progress import NullProgress, PartOf
from napari_connectome.volume import Level, NumpyArray, Roi


def make_output(folder: Path) -> str:
    import zarr

    path = str(folder / "out.zarr")
    zarr.create_array(store=path, shape=helpers.SHAPE, chunks=helpers.CHUNKS, dtype="int64", fill_value=0)
    return path


def grid() -> BlockGrid:
    # 3 × 2 × 2 blocks of one chunk each, with one voxel of context.
    return BlockGrid.of_level(helpers.source(), block_voxels=helpers.CHUNKS, context_voxels=1)


def files(path: str) -> dict[str, bytes]:
    root = Path(path)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and ".blocks-done" not in p.name}


def read(path: str) -> np.ndarray:
    import zarr

    return zarr.open_array(path, mode="r")[...]


class Recorder(NullProgress):
    def __init__(self):
        super().__init__()
        self.starts, self.closed = [], 0

    def start(self, total, description):
        super().start(total, description)
        self.starts.append(total)

    def close(self):
        self.closed += 1


# ------------------------------------------------------------------ grids
@pytest.mark.parametrize("voxel_size", [(40.0, 8.0, 8.0), (3.6, 3.6, 7.2)])
def test_grid_tiles_the_total_exactly_with_deterministic_ids(voxel_size):
    shape = (11, 9, 13)
    level = Level(NumpyArray(np.zeros(shape, np.uint8)), voxel_size, (1.8, -3.6, 0.0), ("z", "y", "x"))
    g = BlockGrid.of_level(level, block_voxels=(4, 4, 5), context_voxels=(1, 2, 0))
    blocks = list(g)
    assert len(g) == len(blocks) == 3 * 3 * 3 and g.shape == (3, 3, 3)
    assert [b.block_id for b in blocks] == list(range(len(g)))
    assert all(g.block(b.block_id) == b == g.block_at(b.index) for b in blocks)
    assert [b.index for b in blocks] == list(itertools.product(range(3), range(3), range(3)))
    # The write boxes tile the level voxel for voxel: every voxel written once.
    hits = np.zeros(shape, np.int32)
    for b in blocks:
        hits[level.voxel_slices(b.write_roi)] += 1
        assert b.read_roi == b.write_roi.grow(np.multiply((1, 2, 0), voxel_size))
        assert g.total.contains(b.write_roi)
    assert (hits == 1).all()
    # The far border is clipped to the total, not overhanging.
    last = blocks[-1]
    assert level.voxel_slices(last.write_roi) == (slice(8, 11), slice(8, 9), slice(10, 13))
    # Same grid, same ids: what lets a ledger name blocks across runs.
    again = BlockGrid.of_level(level, block_voxels=(4, 4, 5), context_voxels=(1, 2, 0))
    assert list(again) == blocks and again.describe() == g.describe()


def test_grid_in_nm_and_in_voxels():
    g = BlockGrid(Roi((10, 0), (100, 50)), block_nm=(30, 50), context_nm=5, context_high_nm=(0, 1))
    assert g.shape == (4, 1)
    assert [b.write_roi for b in g] == [Roi.from_bounds((b, 0), (min(b + 30, 110), 50)) for b in (10, 40, 70, 100)]
    assert g.block(1).read_roi == Roi.from_bounds((35, -5), (70, 51))
    v = BlockGrid.of_shape((5, 7), block_voxels=3)
    assert [b.write_roi.index_slices() for b in v][-1] == (slice(3, 5), slice(6, 7))
    assert len(BlockGrid(Roi((0, 0), (0, 5)), block_nm=1)) == 0
    with pytest.raises(InputError):
        BlockGrid(Roi((0,), (10,)), block_nm=0)
    with pytest.raises(InputError):
        g.block(4)
    with pytest.raises(InputError, match="not on the voxel grid"):
        BlockGrid.of_level(helpers.source(), block_voxels=4, roi=Roi((21, 0, 100), (80, 8, 8)))


# ------------------------------------------------------------------ runs
def test_same_bytes_synchronous_threads_and_roi_context(tmp_path):
    outputs = []
    for i, (scheduler, workers) in enumerate([("synchronous", None), ("threads", 2), ("threads", 1)]):
        path = make_output(tmp_path / str(i))
        sums: list = []
        summary = run_blockwise(functools.partial(helpers.write_box_sums, path=path), grid(),
                                scheduler=scheduler, workers=workers, collect=lambda b, r, sums=sums: sums.append((b.block_id, r)))
        assert summary.ran == len(grid()) and summary.skipped == 0
        assert [i for i, _ in sums] == list(range(len(grid())))  # results come back in block order
        np.testing.assert_array_equal(read(path), helpers.expected())
        outputs.append(files(path))
    assert outputs[0] == outputs[1] == outputs[2] and len(outputs[0]) > 10


def test_same_bytes_on_a_local_cluster_of_processes(tmp_path):
    import cloudpickle
    from distributed import LocalCluster

    # The workers cannot import the tests' helpers: send them by value.
    cloudpickle.register_pickle_by_value(helpers)
    try:
        ref = make_output(tmp_path / "ref")
        run_blockwise(functools.partial(helpers.write_box_sums, path=ref), grid(), scheduler="synchronous")
        own = make_output(tmp_path / "own")
        run_blockwise(functools.partial(helpers.write_box_sums, path=own), grid(), scheduler="processes",
                      workers=2, ledger=ledger_path(own))
        assert files(own) == files(ref)
        # An existing cluster by its address (what a tcp://host:port on a real cluster is).
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            far = make_output(tmp_path / "far")
            run_blockwise(functools.partial(helpers.write_box_sums, path=far), grid(),
                          scheduler=cluster.scheduler_address)
        assert files(far) == files(ref)
    finally:
        cloudpickle.unregister_pickle_by_value(helpers)


class _BreaksOnTheWayBack:
    """Pickles once, but not again after unpickling (a worker may pickle what it received)."""

    def __init__(self) -> None:
        self.sent = False

    def __getstate__(self):
        if self.sent:
            raise TypeError("cannot travel twice")
        return {"sent": True}

    def __call__(self, block):
        return block.block_id


def test_work_that_cannot_travel_to_dask_workers_is_refused_not_hung(tmp_path):
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with pytest.raises(InputError, match="cannot be sent to Dask workers"):
            run_blockwise(_BreaksOnTheWayBack(), grid(), scheduler=cluster.scheduler_address)


@pytest.mark.parametrize("scheduler", ["synchronous", "threads"])
def test_resume_after_a_failed_block_skips_done_blocks_and_gives_the_same_bytes(tmp_path, scheduler):
    ref = make_output(tmp_path / "ref")
    run_blockwise(functools.partial(helpers.write_box_sums, path=ref), grid(), scheduler="synchronous")
    path = make_output(tmp_path / "out")
    ledger = ledger_path(path)
    with pytest.raises(BlockError) as info:
        run_blockwise(functools.partial(helpers.write_box_sums, path=path, fail_on={7}), grid(),
                      scheduler=scheduler, workers=2, ledger=ledger)
    err = info.value
    assert err.block.block_id == 7 and isinstance(err.__cause__, ValueError)
    text = str(err)
    assert "\n" not in text and text.startswith("block 7 (write Roi[") and "simulated failure in block 7" in text
    with Ledger(ledger) as led:
        done = led.done_ids()
    assert 7 not in done and set(range(7)) <= set(done)
    seen = []

    def process(block):
        seen.append(block.block_id)
        return helpers.write_box_sums(block, path=path)

    progress = Recorder()
    summary = run_blockwise(process, grid(), scheduler=scheduler, workers=2, ledger=ledger, progress=progress)
    assert summary.skipped == len(done) and summary.ran == len(grid()) - len(done)
    assert sorted(seen) == sorted(set(range(len(grid()))) - set(done))
    assert progress.starts == [len(grid())] and progress.done == len(grid()) and progress.closed == 1
    assert files(path) == files(ref)
    # Everything is recorded: a third run does nothing.
    assert run_blockwise(process, grid(), ledger=ledger).ran == 0


@pytest.mark.parametrize("how", ["event", "callable", "progress"])
def test_cancel_leaves_a_resumable_state(tmp_path, how):
    ref = make_output(tmp_path / "ref")
    run_blockwise(functools.partial(helpers.write_box_sums, path=ref), grid(), scheduler="synchronous")
    path = make_output(tmp_path / "out")
    ledger = ledger_path(path)
    event = threading.Event()
    progress = NullProgress()

    def process(block):
        result = helpers.write_box_sums(block, path=path)
        if block.block_id == 4:
            event.set()
            progress.cancelled = True
        return result

    cancel = {"event": event, "callable": event.is_set, "progress": None}[how]
    with pytest.raises(CancelledError) as info:
        run_blockwise(process, grid(), scheduler="synchronous", ledger=ledger, cancel=cancel,
                      progress=progress if how == "progress" else None)
    # The progress's own error goes out as it is; a cancel flag gets the run's account.
    expect = "cancelled by the user" if how == "progress" else "after 5 of 12 blocks; they are recorded and a rerun resumes"
    assert expect in str(info.value) and "\n" not in str(info.value)
    with Ledger(ledger) as led:
        assert led.done_ids() == [0, 1, 2, 3, 4]  # block 4 finished and is recorded; none after
    summary = run_blockwise(functools.partial(helpers.write_box_sums, path=path), grid(), ledger=ledger)
    assert summary.skipped == 5 and summary.ran == len(grid()) - 5
    assert files(path) == files(ref)


def test_cancel_on_threads_stops_between_blocks_and_resumes(tmp_path):
    ref = make_output(tmp_path / "ref")
    run_blockwise(functools.partial(helpers.write_box_sums, path=ref), grid(), scheduler="synchronous")
    path = make_output(tmp_path / "out")
    stop = threading.Event()

    def process(block):
        if block.block_id == 3:
            stop.set()
        return helpers.write_box_sums(block, path=path)

    with pytest.raises(CancelledError):
        run_blockwise(process, grid(), scheduler="threads", workers=2, ledger=ledger_path(path), cancel=stop)
    with Ledger(ledger_path(path)) as led:
        done = led.done_ids()
    assert 3 in done and len(done) < len(grid())
    run_blockwise(functools.partial(helpers.write_box_sums, path=path), grid(), scheduler="threads",
                  workers=2, ledger=ledger_path(path))
    assert files(path) == files(ref)


def test_ledger_refuses_another_grid_and_a_second_run(tmp_path):
    path = tmp_path / "ledger.sqlite"
    with Ledger(path, signature={"grid": 1}) as led:
        led.mark_done(3)
        led.mark_done(3)
        assert led.count() == 1 and led.is_done(3) and not led.is_done(2)
        with pytest.raises(InputError, match="another run is recording"):
            Ledger(path, signature={"grid": 1})
    with pytest.raises(InputError, match="records the blocks of another run"):
        Ledger(path, signature={"grid": 2})
    with Ledger(path) as led:  # no signature: not checked
        assert led.done_ids() == [3]
    (tmp_path / "junk.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(InputError, match="not a block ledger"):
        Ledger(tmp_path / "junk.sqlite")
    with pytest.raises(InputError, match="does not exist"):
        Ledger(tmp_path / "missing" / "ledger.sqlite")
    # A grid's ledger knows its grid: a run over other blocks is refused.
    run_blockwise(lambda b: None, BlockGrid.of_shape((4, 4), block_voxels=2), ledger=tmp_path / "g.sqlite")
    with pytest.raises(InputError, match="another run"):
        run_blockwise(lambda b: None, BlockGrid.of_shape((4, 4), block_voxels=3), ledger=tmp_path / "g.sqlite")


def test_bad_options_and_progress_part(tmp_path):
    g = BlockGrid.of_shape((4,), block_voxels=1)
    with pytest.raises(InputError, match="collect"):
        run_blockwise(lambda b: None, g, ledger=tmp_path / "l.sqlite", collect=lambda b, r: None)
    with pytest.raises(InputError, match="scheduler"):
        run_blockwise(lambda b: None, g, scheduler="gpu")
    with pytest.raises(InputError, match="workers"):
        run_blockwise(lambda b: None, g, workers=0)
    with pytest.raises(InputError, match="cancel"):
        run_blockwise(lambda b: None, g, cancel=3)
    whole = Recorder()
    whole.start(8, "two runs")
    for _ in range(2):
        run_blockwise(lambda b: None, g, progress=PartOf(whole))
    assert whole.starts == [8] and whole.done == 8 and whole.closed == 0
    # A plain iterable of blocks (no length) runs too.
    ids = []
    run_blockwise(lambda b: b.block_id, iter(list(g)), collect=lambda b, r: ids.append(r))
    assert ids == [0, 1, 2, 3]
