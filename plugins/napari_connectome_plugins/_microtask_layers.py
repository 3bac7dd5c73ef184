"""The layers of the Micro-tasks panel: one task's EM, segments, skeletons and decision point.

A :class:`~napari_connectome.tasks.TaskView` is prepared off the GUI thread
(the session's prefetcher); showing it here only swaps layer data, so the next
task appears at once. Every layer uses the crop's geometry (``scale`` = voxel
size in nm, ``translate`` = world position of crop voxel 0), so world
coordinates are nm, as everywhere else in the suite.

The EM crop is drawn as three orthogonal planes through the decision point
(napari Image layers with ``depiction="plane"``, normals along z, y and x):
three layers sharing one array, because a napari layer draws one plane.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any

import numpy as np

from napari_connectome_plugins._skeleton_layer import segment_colour

TASK_KEY = "napari_connectome_task"
EM_PREFIX = "task EM"
EM_AXES = ("z", "y", "x")
SEGMENTS = "task segments"
SKELETONS = "task skeletons"
POINT = "decision point"
POINT_COLOUR = "yellow"
# Skeleton line width and point size in nm: thin enough to see the EM around them.
SKELETON_WIDTH_NM = 5.0
POINT_SIZE_NM = 20.0
# Zoom on a new task: the crop's edge spans this share of the canvas's shorter side (seen
# obliquely, the planes look smaller than their edge).
FILL = 0.8
# Camera angles (degrees) of the first task: a little from the side, so the three planes show.
OBLIQUE = (-45.0, 35.0, -45.0)


def em_layer_name(axis: str) -> str:
    """The name of the EM plane layer whose normal is ``axis`` (``z``, ``y`` or ``x``)."""
    return f"{EM_PREFIX} {axis}"


LAYER_NAMES = (*(em_layer_name(a) for a in EM_AXES), SEGMENTS, SKELETONS, POINT)


def camera(viewer):
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def em_contrast(em: np.ndarray) -> tuple[float, float]:
    """Contrast limits of an EM crop: its 0.5 and 99.5 percentiles (``uint8``: 0–255)."""
    em = np.asarray(em)
    if em.dtype == np.uint8:
        return (0.0, 255.0)
    finite = em[np.isfinite(em)] if np.issubdtype(em.dtype, np.floating) else em.ravel()
    if finite.size == 0:
        return (0.0, 1.0)
    lo, hi = (float(v) for v in np.percentile(finite, (0.5, 99.5)))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def segment_colours(view) -> dict[int, np.ndarray]:
    """RGBA per involved segment: the view's own colours, else the suite's id colour."""
    given = dict(getattr(view, "colors", None) or {})
    out = {}
    for seg in getattr(view.task, "segments", ()):
        colour = given.get(int(seg))
        out[int(seg)] = np.asarray(colour if colour is not None else segment_colour(int(seg)), dtype=float)
    for seg, colour in given.items():
        out.setdefault(int(seg), np.asarray(colour, dtype=float))
    return out


def skeleton_paths_and_colours(view, colours: dict[int, np.ndarray]) -> tuple[list[np.ndarray], np.ndarray]:
    """The view's skeleton polylines in crop voxel units and an RGBA colour per path.

    A path's colour is that of the segment whose labels it runs through (the
    crop's labels at its vertices); a path outside every labelled voxel gets
    the first segment's colour.
    """
    size = np.asarray(view.voxel_size_nm, dtype=float)
    offset = np.asarray(view.offset_nm, dtype=float)
    labels = np.asarray(view.labels)
    fallback = next(iter(colours.values()), np.array([1.0, 1.0, 1.0, 1.0]))
    paths, rgba = [], []
    segments_of = getattr(view, "skeleton_segments", None)
    for i, path in enumerate(view.skeleton_paths or []):
        path = np.asarray(path, dtype=float).reshape(-1, 3)
        if len(path) < 2:
            continue
        data = (path - offset) / size
        seg = None
        if segments_of is not None and i < len(segments_of):
            seg = int(segments_of[i])
        else:
            idx = np.round(data).astype(int)
            inside = np.all((idx >= 0) & (idx < np.asarray(labels.shape)), axis=1)
            idx = idx[inside]
            values = labels[idx[:, 0], idx[:, 1], idx[:, 2]] if len(idx) else np.zeros(0, labels.dtype)
            values = values[values != 0]
            if values.size:
                ids, counts = np.unique(values, return_counts=True)
                seg = int(ids[np.argmax(counts)])
        paths.append(data)
        rgba.append(colours.get(seg, fallback) if seg is not None else fallback)
    return paths, np.asarray(rgba, dtype=float).reshape(-1, 4)


class TaskLayers:
    """The Micro-tasks panel's layers in one viewer: made on the first task, then only updated.

    Parameters
    ----------
    viewer
        The napari viewer.
    project_root
        Recorded in the layers' metadata (which project they show).
    """

    def __init__(self, viewer, *, project_root: str | os.PathLike | None = None) -> None:
        self.viewer = viewer
        self.meta = {TASK_KEY: {"project": os.path.abspath(os.fspath(project_root)) if project_root else None}}
        self._layers: dict[str, Any] = {}
        self._shown_once = False
        self.view = None

    # -- access --------------------------------------------------------------
    def layer(self, name: str):
        """The layer ``name`` if it is still in the viewer, else None."""
        layer = self._layers.get(name)
        return layer if layer is not None and layer in self.viewer.layers else None

    def layers(self) -> list:
        """The panel's layers still in the viewer."""
        return [layer for name in LAYER_NAMES if (layer := self.layer(name)) is not None]

    def owns(self, layer) -> bool:
        """True if ``layer`` is one of these layers."""
        inner = getattr(layer, "__wrapped__", layer)
        return any(inner is getattr(mine, "__wrapped__", mine) for mine in self._layers.values())

    # -- showing ----------------------------------------------------------------
    def show(self, view, *, centre: bool = True) -> None:
        """Draw ``view`` (a :class:`~napari_connectome.tasks.TaskView`); the layers are made if needed."""
        em = np.asarray(view.em)
        labels = np.asarray(view.labels)
        scale = tuple(float(v) for v in view.voxel_size_nm)
        translate = tuple(float(v) for v in view.offset_nm)
        point_nm = np.asarray(view.point_nm, dtype=float)
        point = (point_nm - np.asarray(translate)) / np.asarray(scale)
        # The planes go through the voxel holding the point, inside the crop.
        voxel = getattr(view, "point_voxel", None)
        if voxel is None:
            voxel = np.round(point)
        position = tuple(float(v) for v in np.clip(np.asarray(voxel, dtype=float), 0, np.asarray(em.shape) - 1))
        colours = segment_colours(view)
        paths, path_colours = skeleton_paths_and_colours(view, colours)
        width = SKELETON_WIDTH_NM / float(min(scale))
        if not self._complete():
            self._make(em, labels, scale, translate)
        limits = em_contrast(em)
        with _one_update(self.viewer, [self._layers[name] for name in LAYER_NAMES]):
            for axis_index, axis in enumerate(EM_AXES):
                layer = self._layers[em_layer_name(axis)]
                normal = [0.0, 0.0, 0.0]
                normal[axis_index] = 1.0
                layer.data = em
                _place(layer, scale, translate)
                layer.contrast_limits_range = limits
                layer.contrast_limits = limits
                layer.plane.position = position
                layer.plane.normal = tuple(normal)
            seg_layer = self._layers[SEGMENTS]
            seg_layer.data = labels
            _place(seg_layer, scale, translate)
            seg_layer.colormap = _label_colormap(colours)
            skel = self._layers[SKELETONS]
            _place(skel, scale, translate)
            skel.data = []
            if paths:
                skel.add_paths(paths, edge_width=width, edge_color=path_colours)
            pts = self._layers[POINT]
            _place(pts, scale, translate)
            pts.data = point.reshape(1, 3)
            pts.size = POINT_SIZE_NM / float(min(scale))
        self.view = view
        if centre:
            self.centre(view)

    def centre(self, view=None) -> None:
        """Point the camera at the decision point and fit the crop (3D, oblique on the first task)."""
        view = view if view is not None else self.view
        if view is None:
            return
        if self.viewer.dims.ndisplay != 3:
            self.viewer.dims.ndisplay = 3
        cam = camera(self.viewer)
        cam.center = tuple(float(v) for v in view.point_nm)
        extent = float(np.max(np.asarray(np.shape(view.em), dtype=float) * np.asarray(view.voxel_size_nm, dtype=float)))
        canvas = _canvas_pixels(self.viewer)
        if extent > 0 and canvas > 0:
            cam.zoom = FILL * canvas / extent
        if not self._shown_once:
            cam.angles = OBLIQUE
            self._shown_once = True

    def clear(self) -> None:
        """Show nothing (no task left), keeping the layers."""
        for axis in EM_AXES:
            layer = self.layer(em_layer_name(axis))
            if layer is not None:
                layer.data = np.zeros((1, 1, 1), dtype=layer.data.dtype)
        if (layer := self.layer(SEGMENTS)) is not None:
            layer.data = np.zeros((1, 1, 1), dtype=layer.data.dtype)
        if (layer := self.layer(SKELETONS)) is not None:
            layer.data = []
        if (layer := self.layer(POINT)) is not None:
            layer.data = np.empty((0, 3))
        self.view = None

    def remove(self) -> None:
        """Remove the layers from the viewer."""
        for layer in self.layers():
            self.viewer.layers.remove(layer)
        self._layers.clear()
        self._shown_once = False
        self.view = None

    # -- internals ------------------------------------------------------------------
    def _complete(self) -> bool:
        return all(self.layer(name) is not None for name in LAYER_NAMES)

    def _make(self, em, labels, scale, translate) -> None:
        # A layer the user deleted is made again; the others are kept.
        for name in LAYER_NAMES:
            layer = self._layers.get(name)
            if layer is not None and layer not in self.viewer.layers:
                del self._layers[name]
        viewer = self.viewer
        for axis in EM_AXES:
            name = em_layer_name(axis)
            if name in self._layers:
                continue
            self._layers[name] = viewer.add_image(
                em, name=name, scale=scale, translate=translate, colormap="gray",
                depiction="plane", rendering="translucent", blending="translucent", metadata=self.meta,
            )
        if SEGMENTS not in self._layers:
            layer = viewer.add_labels(
                labels, name=SEGMENTS, scale=scale, translate=translate, opacity=0.3,
                blending="translucent_no_depth", metadata=self.meta,
            )
            layer.editable = False  # a task's crop is a picture, not the segmentation
            self._layers[SEGMENTS] = layer
        if SKELETONS not in self._layers:
            self._layers[SKELETONS] = viewer.add_shapes(
                ndim=3, name=SKELETONS, scale=scale, translate=translate, face_color="transparent",
                edge_color="white", blending="translucent_no_depth", metadata=self.meta,
            )
        if POINT not in self._layers:
            self._layers[POINT] = viewer.add_points(
                np.empty((0, 3)), name=POINT, scale=scale, translate=translate, face_color=POINT_COLOUR,
                border_color="black", symbol="disc", blending="translucent_no_depth", metadata=self.meta,
            )
        # Keep the point selected as the active layer: clicks and keys land on our layers.
        viewer.layers.selection.active = self._layers[POINT]


def _place(layer, scale, translate) -> None:
    """Set a layer's scale and translate, only where they change (each change re-computes the dims)."""
    if not np.allclose(layer.scale, scale):
        layer.scale = scale
    if not np.allclose(layer.translate, translate):
        layer.translate = translate


@contextmanager
def _one_update(viewer, layers):
    """Swap several layers' data with one dims update and one redraw per layer.

    Each change of a layer's data, scale or translate makes napari re-compute
    the dims over every layer (≈10 ms with a project open); a task swaps six
    layers, so the re-computation is held back until all are swapped. Falls
    back to napari's normal updates where its internals differ.
    """
    on_change = getattr(viewer, "_on_layers_change", None)
    blocked: list = []
    refresh_blockers: list = []
    try:
        if on_change is not None:
            for layer in layers:
                for name in ("data", "scale", "translate"):
                    emitter = getattr(layer.events, name, None)
                    if emitter is not None:
                        emitter.block(on_change)
                        blocked.append(emitter)
        for layer in layers:
            blocker = getattr(layer, "_block_refresh", None)
            if blocker is not None:
                cm = blocker()
                cm.__enter__()
                refresh_blockers.append(cm)
        yield
    finally:
        for cm in reversed(refresh_blockers):
            cm.__exit__(None, None, None)
        for emitter in blocked:
            emitter.unblock(on_change)
        if on_change is not None:
            on_change()
        for layer in layers:
            layer.refresh()


def _label_colormap(colours: dict[int, np.ndarray]):
    from napari.utils.colormaps import DirectLabelColormap

    colour_dict: dict[Any, Any] = {None: "transparent", 0: "transparent"}
    for seg, rgba in colours.items():
        colour_dict[int(seg)] = np.asarray(rgba, dtype=float)
    return DirectLabelColormap(color_dict=colour_dict)


def _canvas_pixels(viewer) -> float:
    """The canvas's shorter side in pixels (0 when unknown)."""
    canvas = getattr(viewer, "canvas", None)  # napari ≥ 0.9: viewer.canvas.size (height, width)
    size = getattr(canvas, "size", None) if canvas is not None else getattr(viewer, "_canvas_size", None)
    if size is None:
        return 0.0
    return float(min(size))
