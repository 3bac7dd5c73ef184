"""The workspace: one Proofreader and one effort recorder per project in a viewer, whatever the panels do."""

from __future__ import annotations

import threading

import pytest
from napari_connectome_plugins._workspace import Workspace, rows_written

pytestmark = pytest.mark.gui


class Viewer:
    """Stands for a napari viewer: the workspace only needs its identity."""


class Member:
    TITLE = "member"


@pytest.fixture
def project(tmp_path):
    from napari_connectome.samples import gala_fib_project

    return gala_fib_project(tmp_path / "p")


def test_members_share_one_proofreader_opened_once_and_the_last_one_out_closes_it(project):
    viewer, a, b = Viewer(), Member(), Member()
    ws = Workspace.join(viewer, project, a)
    assert Workspace.join(viewer, project, b) is ws and ws.members == [a, b]
    assert Workspace.find(viewer, project.root) is ws
    assert Workspace.find(Viewer(), project.root) is None  # another viewer has its own
    got, barrier = [], threading.Barrier(2)

    def open_it() -> None:
        barrier.wait()  # both ask at the same moment, as two docked panels do
        got.append(ws.proofreader(user="t"))

    threads = [threading.Thread(target=open_it) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(got) == 2 and got[0] is got[1]
    pr = got[0]
    recorder = ws.recorder()
    assert ws.recorder() is recorder  # one recorder: an edit is timed once
    ws.leave(a)
    assert pr.log._con is not None and not recorder.closed and ws.members == [b]
    ws.leave(b)
    assert pr.log._con is None and recorder.closed
    assert Workspace.find(viewer, project.root) is None
    with pytest.raises(RuntimeError, match="closed"):
        ws.proofreader()  # a panel's opening worker that arrives after everyone left


def test_colours_follow_every_edit_and_rows_are_announced(project):
    viewer, a = Viewer(), Member()
    ws = Workspace.join(viewer, project, a)
    pr = ws.proofreader(user="t")
    recorder = ws.recorder()
    seen = []
    connection = rows_written.connect(seen.append)
    try:
        svs, segs = pr.mapping()
        first = int(svs[0])
        second = int(svs[segs != segs[0]][0])  # a supervoxel of another segment (a merge needs no contact)
        big = max((int(segs[0]), pr.segment_of(second)), key=lambda s: sum(
            pr.supervoxel_size(int(v)) or 0 for v in pr.segment_supervoxels(s)))
        ws.colours.note(pr, [int(segs[0]), pr.segment_of(second)])
        before = ws.colours.index(big)
        result = pr.merge_supervoxels(first, second)
        assert ws.colours.index(result.after_segments[0]) == before
        assert seen == [ws.root]  # the manual merge's effort row
        assert recorder.log.rows()[-1]["answer"] == "merge"
    finally:
        connection.disconnect()
        ws.leave(a)


def test_a_proofreader_is_not_replaced_under_another_member(project):
    viewer, a, b = Viewer(), Member(), Member()
    ws = Workspace.join(viewer, project, a)
    Workspace.join(viewer, project, b)
    ws.proofreader(user="t")
    with pytest.raises(RuntimeError, match="other panels"):
        ws.replace_proofreader(object())
    ws.leave(a)
    ws.leave(b)


def test_workers_leave_room_in_qts_thread_pool(qapp):
    # Two panels' workers filled the 2-thread global pool (one waiting for the other, which waited
    # for the GIL) while the GUI thread, holding the GIL, waited for Qt's image-conversion tasks
    # queued on that pool: the window froze (seen in CI on 2 cores).
    from napari_connectome_plugins._project_panel import (
        POOL_THREADS,
        process_events_while,
        start_worker,
    )
    from qtpy.QtCore import QThreadPool

    done = []
    worker = start_worker(lambda: 1, returned=done.append, errored=done.append)
    process_events_while(lambda: not done, 10)
    assert done == [1] and worker is not None
    assert QThreadPool.globalInstance().maxThreadCount() >= POOL_THREADS > 2
