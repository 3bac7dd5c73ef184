"""The Micro-tasks panel in a real viewer (under Xvfb), on the bundled gala-fib project.

The acceptance test answers 20 tasks with real key presses on the canvas
(qtbot.keyClick: Qt delivers them, napari's keymap runs the panel's
callbacks) and moves the mouse between them, with a fake clock the test
advances: idle gaps of more than 60 s included. It then checks, to the
second, that the edit log, the effort log and the effort report say what
the test did.

The rule the effort clock follows (see napari_connectome.effort.clock): a
span (task shown → answer) is cut at every input; each gap between two
inputs counts wholly as idle when it is longer than the idle threshold, else
wholly as active. Every clock advance here is followed by an input (a mouse
move or the answer's key), so spurious events Xvfb may deliver land at the
same fake instant as one of ours and cannot change a gap.
"""

from __future__ import annotations

import numpy as np
import pytest
from napari_connectome_plugins import _microtask_layers as ml
from napari_connectome_plugins import _microtask_widget as mw

from napari_connectome.tasks.view import OTHER_SIDE

pytestmark = pytest.mark.gui

PLUGIN = "napari-connectome"
IDLE_S = 60.0
START = 1_800_000_000.0
ANSWER_OF = {"Y": "yes", "N": "no", "S": "skip", "F": "flag"}


class FakeClock:
    """A clock the test moves: seconds since the epoch."""

    def __init__(self, start: float = START) -> None:
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += float(seconds)


@pytest.fixture
def project(tmp_path):
    from napari_connectome.graph import agglomerate_project
    from napari_connectome.samples import gala_fib_project

    project = gala_fib_project(tmp_path / "p")
    agglomerate_project(project, threshold=0.5)
    return project


def open_panel(make_napari_viewer, qtbot, project, clock, *, wait: bool = True):
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    viewer.open(str(project.root), plugin=PLUGIN)
    widget = mw.MicroTaskWidget(viewer, clock=clock, idle_after_s=IDLE_S)
    viewer.window.add_dock_widget(widget, name="Micro-tasks", area="right")
    if wait:
        qtbot.waitUntil(lambda: widget.session is not None and not widget._busy, timeout=120_000)
    return viewer, widget


@pytest.fixture
def panel(make_napari_viewer, qtbot, project, messages):
    clock = FakeClock()
    viewer, widget = open_panel(make_napari_viewer, qtbot, project, clock)
    yield viewer, widget, clock
    widget.close_panel()


def canvas(viewer):
    return viewer.window._qt_viewer.canvas.native


def key(viewer, qtbot, letter: str) -> None:
    """A real key press on the canvas (lower case, as a person types it)."""
    qtbot.keyClick(canvas(viewer), letter.lower())


def move(viewer, qtbot, step: int) -> None:
    """A mouse move over the canvas, delivered now through Qt's event dispatch.

    ``qtbot.mouseMove`` moves the X cursor and the motion event arrives
    whenever the X server sends it (possibly after the next clock advance);
    a move sent through ``QApplication.sendEvent`` passes the same
    application event filters at once.
    """
    from qtpy.QtCore import QEvent, QPointF, Qt
    from qtpy.QtGui import QMouseEvent
    from qtpy.QtWidgets import QApplication

    native = canvas(viewer)
    x = 40 + (step * 37) % max(1, native.width() - 80)
    y = 40 + (step * 53) % max(1, native.height() - 80)
    event = QMouseEvent(QEvent.MouseMove, QPointF(x, y), Qt.NoButton, Qt.NoButton, Qt.NoModifier)
    QApplication.sendEvent(native, event)


def effort_rows(project) -> list[dict]:
    from napari_connectome.effort import EffortLog

    with EffortLog.open(project, read_only=True) as log:
        return log.rows()


# Keys pressed (20 answers, 3 undos) and, per press, the gaps (s) before it:
# a mouse move after every gap but the last, which ends with the key.
PRESSES = [
    ("Y", [4]), ("N", [12, 20]), ("S", [61]), ("Y", [30, 75, 2]), ("F", [59]),
    ("U", [60]), ("Y", [3, 3]), ("N", [120]), ("Y", [8, 61, 61, 5]), ("S", [1]),
    ("U", [15, 2]), ("U", [7]), ("N", [200, 10]), ("Y", [45, 45]), ("F", [2]),
    ("Y", [6, 90]), ("N", [33]), ("S", [0.5, 61.5]), ("Y", [11]), ("Y", [4, 4, 4]),
    ("N", [65, 1]), ("Y", [9]), ("F", [13]),
]


def split_gaps(gaps) -> tuple[float, float]:
    """(active, idle) of a span cut into ``gaps`` by inputs: the rule, computed independently."""
    active = sum(g for g in gaps if g <= IDLE_S)
    idle = sum(g for g in gaps if g > IDLE_S)
    return float(active), float(idle)


def test_twenty_tasks_by_keys_agree_with_the_edit_log_the_effort_log_and_the_report(panel, qtbot, project, messages):
    from napari_connectome.effort import effort_report

    viewer, widget, clock = panel
    assert sum(k != "U" for k, _ in PRESSES) == 20
    assert {k for k, _ in PRESSES} == {"Y", "N", "S", "U", "F"}
    assert widget.current_task is not None
    assert widget.question_label.text() in ("Same neuron?", "Cut here?")
    assert widget.vi_label.text().startswith("VI ")  # the sample has ground truth
    for name in ml.LAYER_NAMES:
        assert name in viewer.layers
    assert viewer.dims.ndisplay == 2  # the section through the decision point first

    shown_at = clock()
    stack: list[dict] = []  # answers in effect, newest last
    expected_effort: list[dict] = []
    expected_edits: list[dict] = []  # type, task_id, undo_of (index into expected_edits)
    step = 0
    for letter, gaps in PRESSES:
        task = widget.current_task
        assert task is not None
        for gap in gaps[:-1]:
            clock.advance(gap)
            step += 1
            move(viewer, qtbot, step)
        clock.advance(gaps[-1])
        active, idle = split_gaps(gaps)
        if letter == "U":
            undone = stack.pop()
            edit = None
            if undone["edit"] is not None:
                expected_edits.append({"type": "undo", "task_id": undone["task"].id, "undo_of": undone["edit"]})
                edit = len(expected_edits) - 1
            expected_effort.append({
                "task_id": undone["task"].id, "task_type": undone["task"].kind, "answer": "undo",
                "edit": edit, "shown_at": shown_at, "answered_at": clock(), "active_s": active, "idle_s": idle,
            })
        else:
            answer = ANSWER_OF[letter]
            edit = None
            if answer == "yes":
                expected_edits.append({"type": task.kind, "task_id": task.id, "undo_of": None})
                edit = len(expected_edits) - 1
            stack.append({"task": task, "answer": answer, "edit": edit})
            expected_effort.append({
                "task_id": task.id, "task_type": task.kind, "answer": answer,
                "edit": edit, "shown_at": shown_at, "answered_at": clock(), "active_s": active, "idle_s": idle,
            })
        key(viewer, qtbot, letter)
        shown_at = clock()
        if letter == "U":
            # The task whose answer was taken back is shown again.
            assert widget.current_task is not None and widget.current_task.id == undone["task"].id
            assert widget.task_label.text().startswith(undone["task"].id)
        else:
            assert widget.current_task is None or widget.current_task.id != task.id
        assert not [m for m in messages if m[0] == "error"], messages

    # -- the edit log: exactly the merges, splits and undos the keys caused ---------
    history = widget.session.proofreader.history()
    assert [(h["type"], h["task_id"]) for h in history] == [(e["type"], e["task_id"]) for e in expected_edits]
    ops = [int(h["operation_id"]) for h in history]
    for h, e in zip(history, expected_edits, strict=True):
        assert h["undo_of"] == (None if e["undo_of"] is None else ops[e["undo_of"]])

    # -- the effort log: one row per key, timed to the second by the fake clock -------
    progress = widget.session.progress()
    widget.close_panel()
    rows = effort_rows(project)
    assert [r["answer"] for r in rows] == [e["answer"] for e in expected_effort]
    for row, e in zip(rows, expected_effort, strict=True):
        assert row["task_id"] == e["task_id"]
        assert row["task_type"] == e["task_type"]
        assert row["edit_id"] == (None if e["edit"] is None else ops[e["edit"]])
        assert row["shown_at"] == e["shown_at"]
        assert row["answered_at"] == e["answered_at"]
        assert row["active_s"] == e["active_s"]
        assert row["idle_s"] == e["idle_s"]
    assert sum(e["idle_s"] for e in expected_effort) > 0  # the schedule has idle gaps

    # -- the report agrees ------------------------------------------------------------------
    report = effort_report(project)
    assert report["minutes_active"] == pytest.approx(sum(e["active_s"] for e in expected_effort) / 60.0, abs=1e-9)
    counts = {a: sum(e["answer"] == a for e in expected_effort) for a in ("yes", "no", "skip", "flag", "undo")}
    for answer, n in counts.items():
        assert report["tasks"][answer] == n
    assert report["tasks"]["stale"] == 0
    assert report["tasks"]["total"] == len(expected_effort)
    in_effect = [s for s in stack if s["edit"] is not None]
    assert report["edits"]["merge"] == sum(s["task"].kind == "merge" for s in in_effect)
    assert report["edits"]["split"] == sum(s["task"].kind == "split" for s in in_effect)
    assert report["edits"]["undo"] == sum(e["type"] == "undo" for e in expected_edits)
    # -- the panel's progress said the same -------------------------------------------------
    assert progress["done"] == len(stack)
    assert progress["flagged"] == sum(s["answer"] == "flag" for s in stack)


def test_buttons_and_the_press_hook_answer_like_keys(panel, qtbot, project):
    viewer, widget, clock = panel
    first = widget.current_task
    widget.buttons["no"].click()
    assert widget.current_task.id != first.id
    clock.advance(3)
    widget.press("u")
    assert widget.current_task.id == first.id
    text = widget.progress_label.text()
    assert text.endswith("flagged") and text.startswith("0 done")
    widget.press("F")
    assert widget.progress_label.text().startswith("1 done") and "1 flagged" in widget.progress_label.text()
    rows = widget.session.effort.rows()
    assert [r["answer"] for r in rows] == ["no", "undo", "flag"]
    assert rows[1]["active_s"] == 3.0
    with pytest.raises(ValueError):
        widget.press("q")
    assert "settled earlier" not in widget.progress_label.text()  # no earlier session on this project


def test_progress_text_says_what_earlier_sessions_settled():
    from napari_connectome_plugins._microtask_widget import progress_text

    assert progress_text({"done": 2, "queued": 40, "flagged": 1, "earlier": 0}) == "2 done · 40 queued · 1 flagged"
    assert progress_text({"done": 0, "queued": 38, "flagged": 0, "earlier": 3}) == \
        "0 done · 38 queued · 0 flagged · 3 settled earlier"


def test_layers_show_the_task_crop_around_the_decision_point(panel):
    viewer, widget, _ = panel
    view = widget.task_layers.view
    task = widget.current_task
    assert view.task.id == task.id
    em = viewer.layers[ml.EM]
    assert viewer.dims.ndisplay == 2
    # The section shown is the one through the decision point.
    assert np.isclose(viewer.dims.point[0], task.location_nm[0])
    assert np.array_equal(np.asarray(em.data), view.em)
    np.testing.assert_allclose(em.scale, view.voxel_size_nm)
    np.testing.assert_allclose(em.translate, view.offset_nm)
    segments = viewer.layers[ml.SEGMENTS]
    assert segments.contour > 0  # outlines, not fills: the membranes stay visible
    drawn = {view.display_values[int(v) - 1] for v in np.unique(np.asarray(segments.data)) if v}
    assert drawn <= {*task.segments, *(s + OTHER_SIDE for s in task.segments)}
    point = viewer.layers[ml.POINT]
    world = np.asarray(point.data[0]) * np.asarray(point.scale) + np.asarray(point.translate)
    np.testing.assert_allclose(world, task.location_nm[1:], atol=1e-6)  # (y, x), marked on every section
    # The camera looks at the middle of the crop (cut at the volume's faces), which holds the point.
    cam = ml.camera(viewer)
    middle = np.asarray(view.offset_nm) + (np.asarray(view.em.shape) - 1) / 2 * np.asarray(view.voxel_size_nm)
    np.testing.assert_allclose(cam.center[-2:], middle[1:], atol=1e-6)
    # The project's own layers are hidden while tasks are shown, and come back on close.
    others = [layer for layer in viewer.layers if layer.name not in ml.LAYER_NAMES]
    assert others and not any(layer.visible for layer in others)
    hidden = list(widget._hidden)  # the ones that were visible
    assert hidden
    widget.close_panel()
    assert all(layer.visible for layer in hidden)
    for name in ml.LAYER_NAMES:
        assert name not in viewer.layers
    assert not widget._watcher.installed
    assert not any(getattr(f, "__name__", "").startswith("microtask_") for f in viewer.keymap.values())


def test_input_in_the_viewer_window_keeps_the_clock_active(panel, qtbot):
    viewer, widget, clock = panel
    first = widget.current_task
    # Two 40 s gaps cut by a mouse move on the canvas: active. Without it: one 80 s gap, idle.
    clock.advance(40)
    move(viewer, qtbot, 1)
    clock.advance(40)
    key(viewer, qtbot, "n")
    second = widget.current_task
    clock.advance(80)
    key(viewer, qtbot, "s")
    rows = widget.session.effort.rows()
    assert [(r["task_id"], r["active_s"], r["idle_s"]) for r in rows] == [
        (first.id, 80.0, 0.0), (second.id, 0.0, 80.0),
    ]


def test_a_task_edited_away_meanwhile_is_skipped_with_a_note(panel, qtbot, project, messages):
    viewer, widget, clock = panel
    pr = widget.session.proofreader
    task = widget.current_task
    # An edit outside tasks (what the Proofread panel does) retires one of the task's segments.
    segment = int(task.segments[0])
    inside = int(pr.segment_supervoxels(segment)[0])
    sv_ids, seg_ids = pr.mapping()
    outside = int(sv_ids[np.flatnonzero((seg_ids != segment) & (sv_ids != 0))[0]])
    pr.merge_supervoxels(inside, outside)
    qtbot.waitUntil(lambda: widget.current_task is None or widget.current_task.id != task.id, timeout=10_000)
    assert "skipped" in widget.notes_label.text() and task.id in widget.notes_label.text()
    assert widget.task_layers.view.task.id == widget.current_task.id
    rows = widget.session.effort.rows()
    assert [r["answer"] for r in rows if r["task_id"] == task.id] == ["stale"]
    assert any(r["task_type"] == "manual" for r in rows)  # the outside edit was timed too
    assert not [m for m in messages if m[0] == "error"]
    # The panel keeps working.
    key(viewer, qtbot, "n")
    assert widget.session.effort.rows()[-1]["answer"] == "no", (widget.session.effort.rows(), widget.session.notes, messages)


def test_a_corrupt_effort_log_is_reported_and_a_new_one_started(make_napari_viewer, qtbot, project, messages):
    path = project.component_path("effort_log")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not an effort log " * 64)
    clock = FakeClock()
    viewer, widget = open_panel(make_napari_viewer, qtbot, project, clock)
    try:
        warnings = [t for s, t in messages if s == "warning"]
        assert len(warnings) == 1 and str(path) in warnings[0] and "\n" not in warnings[0]
        assert warnings[0] == widget.session.effort.warning
        moved = widget.session.effort.recovered_from
        assert moved is not None and moved.read_bytes() == b"not an effort log " * 64
        clock.advance(5)
        key(viewer, qtbot, "y")
        rows = widget.session.effort.rows()
        assert len(rows) == 1 and rows[0]["answer"] == "yes" and rows[0]["active_s"] == 5.0
        assert len(widget.session.proofreader.history()) == 1  # the edit log works and keeps the edit
    finally:
        widget.close_panel()


def test_without_a_project_the_panel_says_so_and_is_disabled(make_napari_viewer, qtbot, messages):
    viewer = make_napari_viewer(show=True)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Micro-tasks")
    assert isinstance(widget, mw.MicroTaskWidget)
    warnings = [t for s, t in messages if s == "warning"]
    assert len(warnings) == 1 and "no project" in warnings[0] and "\n" not in warnings[0]
    assert not any(b.isEnabled() for b in widget.buttons.values())
    assert widget.run_action("yes") is None
    assert widget.session is None
    widget.close_panel()


def test_every_key_is_on_its_button_and_in_the_help(make_napari_viewer, qtbot, messages):
    viewer = make_napari_viewer(show=True)
    widget = mw.MicroTaskWidget(viewer)
    try:
        for letter, action, _ in mw.KEYS:
            assert f"({letter})" in widget.buttons[action].text()
            assert f"({letter})" in widget.buttons[action].toolTip()
            assert f"{letter} " in widget.help_label.text()
    finally:
        widget.close_panel()


def test_next_task_is_shown_quickly_from_the_prefetched_view(panel, qtbot):
    _, widget, _ = panel
    times = []
    for letter in "NSNSNS":
        if widget.session.prefetcher is not None:
            widget.session.prefetcher.wait()  # a person takes longer than the prefetch to answer
        widget.press(letter)
        times.append(widget.last_show_ms)
    assert all(t is not None for t in times)
    # Generous bound (shared CI machines): drawing is a data swap, not a read.
    assert sorted(times)[len(times) // 2] < 500, times


def test_the_command_line_docks_the_panel_and_screenshots_a_task(tmp_path, project):
    import subprocess

    import imageio.v3 as iio
    from plugin_volumes import PYTHON, gui_env

    shot = tmp_path / "tasks.png"
    cmd = [PYTHON, "-m", "napari_connectome", "view", str(project.root), "--panel", "tasks", "--screenshot", str(shot)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=gui_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    image = iio.imread(shot)
    assert image.shape[0] > 500 and image.shape[1] > 1000
    assert image[:, -300:, :3].std() > 10  # the docks on the right are drawn
    rows = effort_rows(project)
    assert rows == []  # shown, not answered: nothing logged
    bad = subprocess.run([*cmd[:5], "--panel", "nope"], capture_output=True, text=True, timeout=60,
                         env=gui_env(tmp_path), cwd=tmp_path)
    assert bad.returncode == 2 and "invalid choice: 'nope'" in bad.stderr.strip().splitlines()[-1]


def test_the_proofread_panel_shares_the_task_sessions_proofreader(panel, qtbot, project, messages):
    """One Proofreader per project: a second one on the same edit log would miss the first one's edits."""
    from napari_connectome_plugins._proofread_widget import ProofreadWidget

    viewer, widget, clock = panel
    pr = widget.session.proofreader
    proof = ProofreadWidget(viewer)
    viewer.window.add_dock_widget(proof, name="Proofread", area="right")
    qtbot.waitUntil(lambda: proof.proofreader is not None, timeout=60_000)
    assert proof.proofreader is pr and proof.workspace is widget.workspace
    assert proof.recorder is widget.session.recorder  # one recorder: no edit timed twice
    assert not proof.threshold_slider.isEnabled()  # a re-base would swap the Proofreader under the session
    assert "Micro-tasks" in proof.threshold_slider.toolTip()
    # An answer's edit reaches the Proofread panel through the Proofreader's events, not a call between panels.
    before = len(proof.history_rows())
    key(viewer, qtbot, "y")
    widget.session.wait()
    expected = before + (1 if widget.session.effort.rows()[-1]["edit_id"] else 0)
    qtbot.waitUntil(lambda: len(proof.history_rows()) == expected, timeout=10_000)
    # Micro-tasks closes first: the Proofread panel goes on with the same, still open Proofreader.
    widget.close_panel()
    assert proof.proofreader is pr and pr.log._con is not None
    assert proof.workspace.members == [proof]
    assert proof.threshold_slider.isEnabled() == (not proof._has_edits())  # no longer shared
    proof.unbind()
    assert pr.log._con is None  # the last one out closed it
    assert not [m for m in messages if m[0] == "error"]


def test_the_task_session_borrows_an_open_proofread_panels_proofreader(make_napari_viewer, qtbot, project, messages):
    from napari_connectome_plugins._proofread_widget import ProofreadWidget

    viewer = make_napari_viewer(show=True)
    viewer.open(str(project.root), plugin=PLUGIN)
    proof = ProofreadWidget(viewer)
    viewer.window.add_dock_widget(proof, name="Proofread", area="right")
    qtbot.waitUntil(lambda: proof.proofreader is not None, timeout=60_000)
    pr = proof.proofreader
    widget = mw.MicroTaskWidget(viewer, clock=FakeClock(), idle_after_s=IDLE_S)
    viewer.window.add_dock_widget(widget, name="Micro-tasks", area="right")
    qtbot.waitUntil(lambda: widget.session is not None and not widget._busy, timeout=120_000)
    assert widget.session.proofreader is pr
    assert widget.session.recorder is proof.recorder
    qtbot.waitUntil(lambda: not proof.threshold_slider.isEnabled(), timeout=5_000)
    # The Proofread panel closes first: the session keeps the Proofreader open.
    proof.unbind()
    assert pr.log._con is not None and widget.workspace.members == [widget]
    key(viewer, qtbot, "n")
    assert widget.session.effort.rows()[-1]["answer"] == "no"
    widget.close_panel()
    assert pr.log._con is None
    assert not [m for m in messages if m[0] == "error"]


def test_panels_opening_one_project_at_once_open_one_proofreader(make_napari_viewer, qtbot, project, messages,
                                                                 monkeypatch):
    # Before the workspace, both docked panels opened a Proofreader when the project was opened:
    # two replays of the edit log, the second waiting for the first's lock.
    from napari_connectome_plugins._proofread_widget import ProofreadWidget

    from napari_connectome.proofread import Proofreader

    opened = []
    original = Proofreader.open.__func__

    def counting_open(cls, *args, **kwargs):
        pr = original(cls, *args, **kwargs)
        opened.append(pr)
        return pr

    monkeypatch.setattr(Proofreader, "open", classmethod(counting_open))
    viewer = make_napari_viewer(show=True)
    proof = ProofreadWidget(viewer)
    viewer.window.add_dock_widget(proof, name="Proofread", area="right")
    widget = mw.MicroTaskWidget(viewer, clock=FakeClock(), idle_after_s=IDLE_S)
    viewer.window.add_dock_widget(widget, name="Micro-tasks", area="right")
    viewer.open(str(project.root), plugin=PLUGIN)  # both panels bind to the layers the reader adds
    qtbot.waitUntil(lambda: widget.session is not None and proof.proofreader is not None
                    and not widget._busy and not proof._busy, timeout=120_000)
    assert len(opened) == 1
    assert widget.session.proofreader is proof.proofreader is opened[0]
    assert widget.session.recorder is proof.recorder
    widget.close_panel()
    proof.unbind()
    assert opened[0].log._con is None
    assert not [m for m in messages if m[0] == "error"]


def test_waiting_for_the_next_task_to_be_drawn_is_not_active_time(panel, qtbot):
    # The issue saw t_merge 20 s: the seconds the GUI took to draw counted as work.
    viewer, widget, clock = panel
    first = widget.current_task
    session = widget.session
    view = session.view

    def slow_view(task):
        clock.advance(5)  # drawing the next task takes 5 s of the proofreader's time
        return view(task)

    session.view = slow_view
    clock.advance(10)  # looking at the task: work
    key(viewer, qtbot, "n")
    assert not widget._waiting
    second = widget.current_task
    clock.advance(3)
    key(viewer, qtbot, "s")
    rows = {r["task_id"]: r for r in widget.session.effort.rows()}
    assert rows[first.id]["active_s"] == pytest.approx(10.0)
    # The 5 s spent drawing the second task are its waiting, not its work (3 s).
    assert rows[second.id]["waiting_s"] == pytest.approx(5.0)
    assert rows[second.id]["active_s"] == pytest.approx(3.0)


def test_task_line_gives_the_impact_with_its_unit(panel):
    _viewer, widget, _clock = panel
    text = widget.task_label.text()
    assert "impact" in text and ("voxels" in text or "skeleton" in text), text


def _synapse_rows(project, n: int = 6):
    """Rows between points of different segments (the Proofreader says which)."""
    from napari_connectome.proofread import Proofreader
    from napari_connectome.synapses.table import SynapseTable

    pr = Proofreader.open(project, read_only=True)
    try:
        level = pr.supervoxel_volume().levels[0]
        sv = np.asarray(level.array[:])
        vs, off = np.asarray(level.voxel_size, float), np.asarray(level.offset, float)
        rng = np.random.default_rng(5)
        fg = np.argwhere(sv > 0)
        pre, post = [], []
        while len(pre) < n:
            a = fg[rng.integers(len(fg))]
            b = np.clip(a + rng.integers(-12, 13, 3) * [0, 1, 1], 0, np.asarray(sv.shape) - 1)
            if sv[tuple(b)] and pr.segment_of(int(sv[tuple(a)])) != pr.segment_of(int(sv[tuple(b)])):
                pre.append(a * vs + off)
                post.append(b * vs + off)
    finally:
        pr.close()
    return SynapseTable(synapse_id=np.arange(1, n + 1), pre=np.array(pre), post=np.array(post),
                        pre_id=np.zeros(n, np.uint64), post_id=np.zeros(n, np.uint64),
                        score=np.linspace(0.001, 0.01, n).astype(np.float32))


def test_synapse_questions_by_keys_draw_the_arrow_and_record_verdicts(make_napari_viewer, qtbot, project, messages):
    from napari_connectome.synapses.store import SynapseStore

    with SynapseStore(project.component_path("synapses")) as store:
        store.append(_synapse_rows(project), origin="detected")
    clock = FakeClock()
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    viewer.open(str(project.root), plugin=PLUGIN)
    widget = mw.MicroTaskWidget(viewer, clock=clock, idle_after_s=IDLE_S, synapse_every=1)
    viewer.window.add_dock_widget(widget, name="Micro-tasks", area="right")
    qtbot.waitUntil(lambda: widget.session is not None and not widget._busy, timeout=120_000)
    try:
        arrow = widget.task_layers.layer(ml.SYNAPSE)
        assert widget.current_task.kind == "merge" and len(arrow.data) == 0
        key(viewer, qtbot, "s")
        qtbot.waitUntil(lambda: widget.current_task is not None and widget.current_task.is_synapse, timeout=30_000)
        task = widget.current_task
        assert widget.question_label.text() == "Synapse here?"
        assert f"neuron {task.candidate.pre_id} → {task.candidate.post_id}" in widget.task_label.text()
        assert len(arrow.data) == 1 and arrow.visible
        # the arrow ends at the decision point (post), in the crop's (y, x) voxels
        view = widget.task_layers.view
        tip = arrow.data[0, 0] + arrow.data[0, 1]
        np.testing.assert_allclose(tip * view.voxel_size_nm[1:] + view.offset_nm[1:], task.candidate.post[1:])
        clock.advance(3.0)
        key(viewer, qtbot, "y")
        qtbot.waitUntil(lambda: widget.current_task is not None and not widget.current_task.is_synapse,
                        timeout=30_000)
        assert len(arrow.data) == 0
        verdicts = widget.session.synapses.store.verdicts()
        assert [(v["row"], v["verdict"]) for v in verdicts] == [(task.candidate.row, "yes")]
        key(viewer, qtbot, "u")
        qtbot.waitUntil(lambda: widget.current_task is not None and widget.current_task.key == task.key,
                        timeout=30_000)
        assert widget.session.synapses.store.verdicts() == []
        rows = [r for r in effort_rows(project) if r["task_type"] == "synapse"]
        assert [r["answer"] for r in rows] == ["yes", "undo"]
    finally:
        widget.close_panel()
