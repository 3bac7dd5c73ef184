"""Render the task view on the bundled gala-fib sample: a "Same neuron?" and a "Cut here?" question (README).

Usage (a 1600×1000 screen; no display needed with xvfb-run)::

    xvfb-run -a -s '-screen 0 1600x1000x24' .venv/bin/python scripts/screenshot_taskview.py docs/task-merge.png docs/task-cut.png

It makes a throw-away project over the sample, agglomerates it at 0.5,
skeletonizes it, opens the Micro-tasks panel with the merge questions first
(for the first picture) and again with the cut questions first (for the
second), and skips to the first task whose crop shows every side it asks
about with a skeleton.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import napari
import numpy as np
from napari_connectome_plugins._microtask_widget import WIDGET_NAME, MicroTaskWidget
from napari_connectome_plugins.launch import _close_toasts
from qtpy.QtWidgets import QApplication

from napari_connectome.graph import agglomerate_project
from napari_connectome.proofread import Proofreader
from napari_connectome.rank import Strategy
from napari_connectome.samples import gala_fib_project
from napari_connectome.skeleton import SkeletonStore


class KindFirst(Strategy):
    """One kind of task first, biggest impact first."""

    name = "kind-first"

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def scores(self, candidates) -> np.ndarray:
        return np.array([float(c.kind == self.kind) * 1e12 + float(c.impact) for c in candidates])

    def to_config(self) -> dict:
        return {"name": self.name, "kind": self.kind}


def _settle(seconds: float = 1.0) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.02)


def _good(panel, kind: str) -> bool:
    task, view = panel.current_task, panel.task_layers.view
    if task is None or view is None or task.kind != kind:
        return False
    shown = set(np.unique(view.display_labels).tolist()) - {0}
    return len(shown) == 2 and len(view.skeleton_paths) > 0


def shoot(root: Path, kind: str, out: str) -> None:
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1600, 1000)
    viewer.open(str(root), plugin="napari-connectome")
    panel = MicroTaskWidget(viewer, strategy=KindFirst("false_split" if kind == "merge" else "false_merge"))
    viewer.window.add_dock_widget(panel, name=WIDGET_NAME, area="right")
    panel.bind_to_viewer_project()
    if not panel.wait(300) or panel.session is None:
        raise SystemExit("the task session did not open")
    for _ in range(40):
        if _good(panel, kind):
            break
        panel.press("S")
        _settle(0.2)
    _settle(1.5)
    _close_toasts()
    viewer.window.screenshot(out, canvas_only=False)
    panel.close_panel()
    viewer.close()


def main(merge_out: str, cut_out: str) -> None:
    root = Path(tempfile.mkdtemp()) / "project"
    project = gala_fib_project(root)
    agglomerate_project(project, threshold=0.5)
    with Proofreader.open(project) as pr:
        SkeletonStore.open(pr)
    shoot(root, "merge", merge_out)
    shoot(root, "split", cut_out)


if __name__ == "__main__":
    main(*(sys.argv[1:3] if len(sys.argv) > 2 else ("task-merge.png", "task-cut.png")))
