"""Render the Effort panel after a short micro-task session on the bundled gala-fib sample (for the README).

Usage (no display needed)::

    xvfb-run -a -s '-screen 0 1600x1000x24' .venv/bin/python scripts/screenshot_effort.py docs/effort.png

It makes a throw-away project over the bundled sample, agglomerates it at
the train-chosen threshold 0.97 (errors of both kinds left), and answers 40
micro-tasks through :class:`~napari_connectome.tasks.TaskSession` as a
proofreader who knows the ground truth would (``label_candidates``), on a
simulated clock: 6–20 s per decision and one 5-minute break, which the
effort log counts as idle. Then it opens the project in napari with the
Effort panel and saves the window. The times are simulated, the edits,
the effort log, the report and the VI curve are real.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import napari
import numpy as np
from napari_connectome_plugins._effort_widget import EffortWidget
from napari_connectome_plugins.launch import _close_toasts
from qtpy.QtWidgets import QApplication

from napari_connectome.candidates import label_candidates
from napari_connectome.graph import agglomerate_project
from napari_connectome.samples import gala_fib_project
from napari_connectome.tasks import TaskSession


def _settle(seconds: float = 1.0) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def answer_from_ground_truth(root: Path, n: int = 40, seed: int = 0) -> None:
    project = gala_fib_project(root)
    agglomerate_project(project, threshold=0.97)
    gt = np.asarray(project.open_input("groundtruth").levels[0].array[...])
    rng = np.random.default_rng(seed)
    now = [1_800_000_000.0]
    with TaskSession.open(project, gt="project", clock=lambda: now[0], user="proofreader") as session:
        task = session.next_task()
        for i in range(n):
            if task is None:
                break
            now[0] += float(rng.uniform(3, 10))
            session.touch()
            if i == n // 2:
                now[0] += 300.0  # a break: no input for 5 minutes
                session.touch()
            now[0] += float(rng.uniform(3, 10))
            right = bool(label_candidates([task.candidate], session.proofreader, gt)[0])
            task = session.answer("yes" if right else "no").next
            session.wait()


def main(out: str) -> None:
    root = Path(tempfile.mkdtemp()) / "project"
    answer_from_ground_truth(root)
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 1000)
    viewer.open(str(root), plugin="napari-connectome")
    panel = EffortWidget(viewer)
    viewer.window.add_dock_widget(panel, name="Effort", area="right")
    panel.refresh()
    if not panel.wait(120):
        raise SystemExit("the effort report did not finish within 2 minutes")
    _settle()
    _close_toasts()
    viewer.window.screenshot(out, canvas_only=False)
    viewer.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "effort.png")
