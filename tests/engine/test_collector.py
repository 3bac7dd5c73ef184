"""fewer_collections: the youngest generation's threshold raised inside, the interpreter's put back after."""

from __future__ import annotations

import gc
import threading

import pytest

from napari_connectome.collector import YOUNG_THRESHOLD, fewer_collections


@pytest.fixture(autouse=True)
def default_thresholds():
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*before)


def test_raised_inside_and_restored_after():
    with fewer_collections():
        assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)


def test_restored_after_an_exception():
    with pytest.raises(RuntimeError), fewer_collections(5_000):
        assert gc.get_threshold()[0] == 5_000
        raise RuntimeError("boom")
    assert gc.get_threshold() == (700, 10, 10)


def test_a_higher_threshold_is_kept_and_restored():
    gc.set_threshold(100_000, 5, 5)
    with fewer_collections(50_000):
        assert gc.get_threshold() == (100_000, 5, 5)
    assert gc.get_threshold() == (100_000, 5, 5)


def test_nested_blocks_restore_once_the_last_ends():
    with fewer_collections(10_000):
        with fewer_collections(20_000):
            assert gc.get_threshold()[0] == 20_000
        # the inner block ended: the outer one still runs, and still collects rarely
        assert gc.get_threshold()[0] >= 10_000
    assert gc.get_threshold() == (700, 10, 10)


def test_overlapping_blocks_on_threads_restore_when_the_last_ends():
    inside, release = threading.Event(), threading.Event()

    def worker():
        with fewer_collections():
            inside.set()
            release.wait(5)

    t = threading.Thread(target=worker)
    with fewer_collections():
        t.start()
        assert inside.wait(5)
    # this thread's block ended first; the worker's still runs
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD
    release.set()
    t.join(5)
    assert gc.get_threshold() == (700, 10, 10)


@pytest.mark.parametrize("young", [0, -5])
def test_nonsense_threshold_is_refused(young):
    with pytest.raises(ValueError, match="young must be"), fewer_collections(young):
        pass
    assert gc.get_threshold() == (700, 10, 10)
