"""Render the Proofread panel on the bundled gala-fib sample to a PNG (for the README).

Usage (no display needed): xvfb-run -a python scripts/screenshot_proofread.py docs/proofread.png

It makes a throw-away project over the bundled sample, agglomerates it at
threshold 0.5, opens the panel, makes three merges through the engine and
undoes the last one, so the history list shows real operations.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import napari
from napari_connectome_plugins._proofread_widget import ProofreadWidget
from napari_connectome_plugins.launch import _close_toasts
from qtpy.QtWidgets import QApplication

from napari_connectome.graph import agglomerate_project, load_project_graph
from napari_connectome.samples import gala_fib_project


def main(out: str) -> None:
    root = Path(tempfile.mkdtemp()) / "project"
    project = gala_fib_project(root)
    agglomerate_project(project, threshold=0.5)
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    viewer.open(str(root), plugin="napari-connectome")
    panel = ProofreadWidget(viewer)
    viewer.window.add_dock_widget(panel, name="Proofread", area="right")
    panel.bind_to_viewer_project()
    panel.wait(120)
    viewer.dims.set_current_step(0, 24)
    rag, _ = load_project_graph(project)
    merged = 0
    for u, v in rag.edges[::37]:
        if merged == 3:
            break
        if panel.proofreader.segment_of(int(u)) != panel.proofreader.segment_of(int(v)):
            panel.proofreader.merge_supervoxels(int(u), int(v))
            merged += 1
    panel.undo()
    for _ in range(20):
        QApplication.processEvents()
        time.sleep(0.05)
    _close_toasts()
    viewer.window.screenshot(out, canvas_only=False)
    viewer.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "proofread.png")
