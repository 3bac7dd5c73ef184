"""Engine events: listeners of the Proofreader and the effort log can be disconnected."""

from __future__ import annotations

import pytest

from napari_connectome.effort import EffortLog, EffortRecorder
from napari_connectome.events import Signal
from napari_connectome.proofread import Proofreader
from napari_connectome.proofread.demo import make_demo_project


@pytest.fixture
def project(tmp_path):
    return make_demo_project(tmp_path / "demo", threshold=None)


def test_signal_connect_emit_disconnect_in_order():
    sig = Signal("test")
    seen = []
    first = sig.connect(lambda x: seen.append(("a", x)))
    sig.connect(lambda x: seen.append(("b", x)))
    sig.emit(1)
    assert first.connected
    first.disconnect()
    first.disconnect()  # idempotent
    sig.emit(2)
    assert seen == [("a", 1), ("b", 1), ("b", 2)]
    assert not first.connected and len(sig) == 1


def test_signal_callback_may_disconnect_another_during_emit():
    sig = Signal("test")
    seen = []
    later = None

    def stopper(x):
        seen.append("stopper")
        later.disconnect()

    sig.connect(stopper)
    later = sig.connect(lambda x: seen.append("later"))
    sig.emit(0)
    assert seen == ["stopper"]


def test_signal_lets_a_listener_error_through_unchanged():
    sig = Signal("test")

    def boom(_):
        raise KeyError("mine")

    sig.connect(boom)
    with pytest.raises(KeyError, match="mine"):
        sig.emit(0)
    with pytest.raises(TypeError):
        sig.connect(42)


def test_removed_proofreader_listener_is_not_called_after_an_edit(project):
    with Proofreader.open(project, user="ana") as pr:
        by_remove, by_connection = [], []
        pr.add_listener(by_remove.append)
        connection = pr.add_listener(by_connection.append)
        pr.merge_supervoxels(1, 2)
        assert pr.remove_listener(by_remove.append)
        connection()  # calling the returned connection disconnects too
        pr.merge_supervoxels(3, 4)
        assert not pr.remove_listener(by_remove.append)
    assert [r.operation_id for r in by_remove] == [1]
    assert [r.operation_id for r in by_connection] == [1]


def test_removed_effort_log_listener_is_not_called_after_a_row(project):
    with EffortLog.open(project, session="s") as log:
        seen = []
        log.add_listener(seen.append)
        row = {"task_id": "t", "task_type": "merge", "answer": "no", "shown_at": 1.0, "answered_at": 2.0,
               "active_s": 1.0, "idle_s": 0.0}
        log.record(**row)
        assert log.remove_listener(seen.append)
        log.record(**row)
    assert len(seen) == 1


def test_closed_recorder_stops_listening(project):
    pr = Proofreader.open(project, user="ana")
    log = EffortLog.open(project, user="ana", session=pr.session)
    rec = EffortRecorder(log, pr)
    assert len(pr.edited) == 1 and len(log.recorded) == 1
    rec.close()
    try:
        assert len(pr.edited) == 0 and len(log.recorded) == 0
        pr.merge_supervoxels(1, 2)
        assert log.rows() == []
    finally:
        log.close()
        pr.close()
