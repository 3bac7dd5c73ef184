"""Render the Micro-tasks panel on the bundled gala-fib sample to a PNG (for the README).

Usage (no display needed)::

    xvfb-run -a -s '-screen 0 1600x1000x24' .venv/bin/python scripts/screenshot_microtask.py docs/microtask.png

It makes a throw-away project over the bundled sample, agglomerates it at
threshold 0.5, skeletonizes its segments, opens it in napari with the Micro-tasks panel, answers three
tasks with the panel's keys (Y, N: one edit applied, so the progress, the
live VI and the effort log show real work), skips (S) to the next "Same
neuron?" task and saves the window with it on screen.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import napari
from napari_connectome_plugins._microtask_widget import WIDGET_NAME, MicroTaskWidget
from napari_connectome_plugins.launch import _close_toasts
from qtpy.QtWidgets import QApplication

from napari_connectome.graph import agglomerate_project
from napari_connectome.proofread import Proofreader
from napari_connectome.samples import gala_fib_project
from napari_connectome.skeleton import SkeletonStore


def _settle(seconds: float = 1.0) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def main(out: str) -> None:
    root = Path(tempfile.mkdtemp()) / "project"
    project = gala_fib_project(root)
    agglomerate_project(project, threshold=0.5)
    with Proofreader.open(project) as pr:
        SkeletonStore.open(pr)  # skeletonize once, so the tasks show their segments' skeletons
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    viewer.open(str(root), plugin="napari-connectome")
    panel = MicroTaskWidget(viewer)
    viewer.window.add_dock_widget(panel, name=WIDGET_NAME, area="right")
    panel.bind_to_viewer_project()
    if not panel.wait(300):
        raise SystemExit("the task session did not open within 5 minutes")
    if panel.session is None:
        raise SystemExit("the task session could not be opened (see the message above)")
    for key in "YN":
        panel.press(key)
        _settle(0.3)
    # Skip to a "Same neuron?" task: two segments, two colours, two skeletons.
    for _ in range(20):
        if panel.current_task is None or panel.current_task.kind == "merge":
            break
        panel.press("S")
        _settle(0.3)
    _settle()
    _close_toasts()
    viewer.window.screenshot(out, canvas_only=False)
    panel.close_panel()
    viewer.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "microtask.png")
