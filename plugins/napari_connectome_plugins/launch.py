"""Start napari with the suite: the Connectome panel docked and the data read by our reader.

The engine's command line (``napari-connectome view`` / ``demo``) calls
:func:`view` and :func:`demo` through the ``napari_connectome.viewer`` entry
points. Both return an exit code: 0 when done, 2 for bad input (one line on
stderr, ``napari-connectome: error: …``, never a traceback).

With ``screenshot`` the window is drawn once, saved as a PNG (window frame,
canvas and dock, like the README's pictures) and closed; that needs a display
(a desktop, or Xvfb on a server: ``xvfb-run -a napari-connectome demo
--screenshot demo.png``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from napari_connectome_plugins._reader import can_read, read_layers

PLUGIN = "napari-connectome"
WIDGET = "Connectome"
# Panels docked besides the Connectome panel (``--panel``): name -> (display name, module, class).
PANELS = {
    "proofread": ("Proofread", "napari_connectome_plugins._proofread_widget", "ProofreadWidget"),
    "tasks": ("Micro-tasks", "napari_connectome_plugins._microtask_widget", "MicroTaskWidget"),
    "effort": ("Effort", "napari_connectome_plugins._effort_widget", "EffortWidget"),
    "segment": ("Segment", "napari_connectome_plugins._segment_widget", "SegmentWidget"),
    "synapses": ("Synapses", "napari_connectome_plugins._synapse_widget", "SynapsesWidget"),
}
# Longest wait for a panel's background work (opening a task session) before a screenshot.
PANEL_WAIT_S = 300.0
SAMPLES = ("gala-fib", "synthetic")
# Camera angles (degrees) of the 3-D view: a little from the side, so depth shows.
OBLIQUE = (-20.0, 30.0, 60.0)


def _fail(exc: BaseException) -> int:
    from napari_connectome_plugins._notify import one_line

    print(f"napari-connectome: error: {one_line(exc)}", file=sys.stderr)
    return 2


def _why_not(uri: str) -> Exception:
    """The engine's one-line reason why ``uri`` cannot be opened."""
    from napari_connectome.errors import ConnectomeError, InputError
    from napari_connectome.project import MANIFEST
    from napari_connectome.volume import parse_uri
    from napari_connectome.volume.open import detect_format

    try:
        detect_format(parse_uri(uri))
    except ConnectomeError as exc:
        if os.path.isdir(uri) and os.listdir(uri):
            return InputError(
                uri, f"neither a project (no {MANIFEST} in it) nor a volume in a known format"
            )
        return exc
    return InputError(uri, "cannot be opened")


def _check_display() -> None:
    """Refuse early, in one line, where Qt would abort for want of a display."""
    from napari_connectome.errors import ConnectomeError

    if not sys.platform.startswith("linux"):
        return
    if any(os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")):
        return
    raise ConnectomeError(
        "no display to open napari on (DISPLAY is not set); on a server run it under Xvfb, "
        "e.g. xvfb-run -a napari-connectome demo --screenshot demo.png"
    )


def _process_events(rounds: int = 5) -> None:
    from qtpy.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        return
    for _ in range(rounds):
        app.processEvents()


def _close_toasts() -> None:
    """Close notification pop-ups so they do not cover the picture."""
    from qtpy.QtWidgets import QApplication

    for widget in QApplication.allWidgets():
        if type(widget).__name__ == "NapariQtNotification":
            widget.close()


def _echo_messages(start: int) -> None:
    """Print what the plugin told the viewer since ``start`` (nobody sees a screenshot's toasts)."""
    from napari_connectome_plugins._notify import SENT

    for severity, text in list(SENT)[start:]:
        if severity in ("warning", "error"):
            print(f"napari-connectome: {severity}: {text}", file=sys.stderr)


def _dock_widget(viewer, name: str = WIDGET, *, tabify: bool = False) -> Any:
    """Dock the panel ``name`` (through the plugin manager, else directly); ``tabify`` stacks it as a tab."""
    try:
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name, tabify=tabify)
        return widget
    except Exception:  # plugin not registered (e.g. run from a source tree)
        import importlib

        if name == WIDGET:
            from napari_connectome_plugins._widget import ConnectomeWidget as cls
        else:
            module, attr = next((m, a) for d, m, a in PANELS.values() if d == name)
            cls = getattr(importlib.import_module(module), attr)
        widget = cls(viewer)
        viewer.window.add_dock_widget(widget, name=name, area="right", tabify=tabify)
        return widget


def _check_panels(panels: Sequence[str]) -> list[str]:
    from napari_connectome.errors import InputError

    panels = list(dict.fromkeys(panels or ()))
    for panel in panels:
        if panel not in PANELS:
            raise InputError("--panel", f"unknown panel {panel!r}; choose from {', '.join(PANELS)}")
    return panels


def _start_panels(widgets: list, *, wait: bool) -> None:
    """Let the extra panels bind to the project just read; for a screenshot, wait for their work."""
    for widget in widgets:
        bind = getattr(widget, "bind_to_viewer_project", None)
        if bind is not None:
            bind()
        elif hasattr(widget, "refresh"):
            widget.refresh()
    if wait:
        for widget in widgets:
            if hasattr(widget, "wait"):
                widget.wait(PANEL_WAIT_S)


def _show(
    load: Callable[[], list],
    *,
    title: str,
    screenshot: str | None,
    ndisplay: int,
    size: tuple[int, int],
    panels: Sequence[str] = (),
) -> int:
    """Open a viewer with the dock, then the layers ``load()`` gives; screenshot or run.

    The layers are read once the window exists, so that what the reader says
    (an assumed voxel size, an unreadable chunk) shows in it.
    """
    import napari
    from napari.layers import Layer

    from napari_connectome.errors import ConnectomeError, InputError
    from napari_connectome_plugins._notify import SENT

    if ndisplay not in (2, 3):
        return _fail(InputError("--ndisplay", f"must be 2 or 3, got {ndisplay}"))
    try:
        panels = _check_panels(panels)
        _check_display()
    except ConnectomeError as exc:
        return _fail(exc)
    start = len(SENT)
    _binding_notice_to_terminal()
    viewer = napari.Viewer(title=title, ndisplay=ndisplay, show=True)
    closed = False
    extra: list = []
    try:
        width, height = (int(v) for v in size)
        viewer.window.resize(width, height)
        widget = _dock_widget(viewer)
        try:
            layer_data = load()
        except ConnectomeError as exc:
            viewer.close()
            closed = True
            return _fail(exc)
        layers = [viewer.add_layer(Layer.create(*datum)) for datum in layer_data]
        if layers:
            viewer.layers.selection.active = layers[0]
            viewer.reset_view()
            if ndisplay == 3:
                viewer.camera.angles = OBLIQUE  # show depth, not a plane seen from above
                viewer.camera.zoom *= 0.75  # the turned box is wider than the fitted one
        if hasattr(widget, "refresh"):
            widget.refresh()
        # Docked once the layers are in: the panels bind to the project they show.
        # As tabs over the Connectome panel: each gets the dock's full height.
        extra = [_dock_widget(viewer, PANELS[p][0], tabify=True) for p in panels]
        _start_panels(extra, wait=screenshot is not None)
        if screenshot is None:
            napari.run()
            return 0
        code = _screenshot(viewer, screenshot)
        _echo_messages(start)
        return code
    finally:
        if screenshot is not None and not closed:
            for panel in extra:  # close task sessions (their logs, their worker) before the window
                close_panel = getattr(panel, "close_panel", None)
                if close_panel is not None:
                    close_panel()
            viewer.close()


def _screenshot(viewer, path: str) -> int:
    """Draw the whole window once and save it as a PNG."""
    from napari_connectome.errors import InputError

    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return _fail(InputError(path, "the folder for the screenshot does not exist"))
    _process_events()
    viewer.window.activate()
    _close_toasts()
    _process_events()
    try:
        viewer.window.screenshot(path, canvas_only=False, flash=False)
    except OSError as exc:
        return _fail(InputError(path, f"the screenshot could not be written: {exc}"))
    return 0


def _binding_notice_to_terminal() -> None:
    """Say napari's PyQt5 deprecation notice once in the terminal, not as a toast over the canvas.

    napari 0.9 shows it at every start, over the task view; PyQt5 is the binding
    our users asked for (PyQt6 works too: ``make test`` runs the GUI tests on
    both), so the notice is kept, where it does not cover the work.
    """
    try:
        import qtpy
        from napari._qt import qt_main_window
    except ImportError:  # another napari layout: leave its notice alone
        return
    if getattr(qt_main_window, "SHOW_QT_WARNING", False) and qtpy.API_NAME == "PyQt5":
        qt_main_window.SHOW_QT_WARNING = False
        print("napari-connectome: note: napari says its PyQt5 support is deprecated; "
              "PyQt6 works too (pip install PyQt6)", file=sys.stderr)


def view(
    uris: Sequence[str],
    *,
    voxel_size=None,
    kind: str | None = None,
    screenshot: str | None = None,
    ndisplay: int = 2,
    size: tuple[int, int] = (1400, 900),
    panels: Sequence[str] = (),
) -> int:
    """Open volumes and project folders in napari with the Connectome panel.

    Parameters
    ----------
    uris
        Volumes (any supported format; ``FILE.h5/dataset`` for HDF5) and
        project folders, each read by the napari-connectome reader.
    voxel_size
        Voxel size of level 0 in nm ``(z, y, x)`` for the volumes (not for
        projects, which keep their own).
    kind
        ``"image"`` or ``"labels"`` for the volumes; None infers it.
    screenshot
        Save the window to this PNG and exit instead of running the viewer.
    ndisplay
        2 (slices) or 3 (volume rendering).
    size
        Window size in pixels (width, height).
    panels
        More panels to dock: ``"proofread"``, ``"tasks"`` (Micro-tasks: the
        view turns 3D on the first task), ``"effort"``. With ``screenshot``
        their background work (finding the tasks) is waited for.

    Returns
    -------
    int
        0 on success; 2 on bad input, after one line on stderr.
    """
    from napari_connectome.config import check_voxel_size
    from napari_connectome.errors import ConnectomeError, InputError

    uris = [os.fspath(u) for u in uris]
    if not uris:
        return _fail(ConnectomeError("nothing to view: give at least one volume or project folder"))
    try:
        if voxel_size is not None:
            voxel_size = check_voxel_size(voxel_size, source="--voxel-size")
        if kind not in (None, "image", "labels"):
            raise InputError("--kind", f"must be 'image' or 'labels', got {kind!r}")
        for uri in uris:  # cheap checks before any window opens
            if not can_read(uri):
                raise _why_not(uri)
    except ConnectomeError as exc:
        return _fail(exc)

    def load() -> list:
        data = []
        for uri in uris:
            data.extend(read_layers(uri, voxel_size=voxel_size, kind=kind, report=False))
        return data

    title = "napari-connectome: " + ", ".join(os.path.basename(u.rstrip("/")) or u for u in uris)
    return _show(load, title=title, screenshot=screenshot, ndisplay=ndisplay, size=size, panels=panels)


def demo(
    *,
    sample: str = "gala-fib",
    screenshot: str | None = None,
    ndisplay: int = 2,
    size: tuple[int, int] = (1400, 900),
    panels: Sequence[str] = (),
) -> int:
    """Open a bundled sample in napari with the Connectome panel.

    Parameters
    ----------
    sample
        ``"gala-fib"``: a project over the bundled FIB-SEM crop (created in
        the user's cache on first use); ``"synthetic"``: a synthetic EM volume
        with ground truth from seed 0.
    screenshot, ndisplay, size, panels
        As for :func:`view`.

    Returns
    -------
    int
        0 on success; 2 on bad input, after one line on stderr.
    """
    from napari_connectome.errors import ConnectomeError, InputError

    try:
        if sample == "gala-fib":
            from napari_connectome.samples import gala_fib_project

            project = gala_fib_project()
            title = f"napari-connectome: {project.name}"
            if "tasks" in panels:
                _ready_for_tasks(project)

            def load() -> list:
                return read_layers(project.root, report=False)

        elif sample == "synthetic":
            from napari_connectome_plugins._sample_data import synthetic as load

            title = "napari-connectome: synthetic sample (seed 0)"
        else:
            raise InputError("--sample", f"unknown sample {sample!r}; choose one of {', '.join(SAMPLES)}")
    except ConnectomeError as exc:
        return _fail(exc)
    return _show(load, title=title, screenshot=screenshot, ndisplay=ndisplay, size=size, panels=panels)


def _ready_for_tasks(project) -> None:
    """Agglomerate and skeletonize a fresh sample project, so its micro-tasks ask about real segments.

    Agglomerates only a project with neither an agglomeration nor an edit
    log: a logged edit is defined on the base it was made on, which must not
    change. Skeletons are made when missing or out of date (seconds on the sample).
    """
    from napari_connectome.proofread import Proofreader
    from napari_connectome.skeleton import SkeletonStore

    if not (project.manifest.get("agglomeration") or project.component_path("edit_log").exists()):
        from napari_connectome.graph import agglomerate_project

        agglomerate_project(project)
    with Proofreader.open(project) as proofreader:
        SkeletonStore.open(proofreader)
