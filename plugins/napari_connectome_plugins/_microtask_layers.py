"""The layers of the Micro-tasks panel: one task's EM, segment outlines, skeletons and decision point.

A :class:`~napari_connectome.tasks.TaskView` is prepared off the GUI thread
(the session's prefetcher); showing it here only swaps layer data, so the next
task appears at once. Every layer uses the crop's geometry (``scale`` = voxel
size in nm, ``translate`` = world position of crop voxel 0), so world
coordinates are nm, as everywhere else in the suite.

The task opens in 2D, on the section through the decision point, at full
resolution: 3D rendering of a labels volume under software OpenGL took
seconds per task and hid the membranes a decision rests on. The segments
are drawn as outlines (napari Labels ``contour``), not fills, so the EM
stays readable; the skeletons are projected onto the section (a 2-D Vectors
layer, drawn on every section of the crop, one line per skeleton edge in its
segment's colour); the decision point is a ring, marked on every section (its
section is the one shown first). ``,`` and ``.`` (or napari's slider) step through the crop's
sections without leaving the task; napari's 2D/3D button shows it in 3D. A synapse question adds
an arrow from its pre point to its post point (the decision point), projected like the skeletons,
so the direction asked about is seen on any section.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Any

import numpy as np

from napari_connectome.arrays import distinct
from napari_connectome_plugins._skeleton_layer import segment_colour

TASK_KEY = "napari_connectome_task"
EM = "task EM"
SEGMENTS = "task segments"
SKELETONS = "task skeletons"
POINT = "decision point"
SYNAPSE = "task synapse"
POINT_COLOUR = "yellow"
SYNAPSE_COLOUR = "magenta"
# Arrow width of a synapse question, in voxels of the crop.
SYNAPSE_WIDTH_VOXELS = 2.0
# A synapse question opens on this much of the section (nm across the canvas's shorter side):
# cleft, T-bar and PSD are tens of nm, lost in the 2.5 µm a merge or split question needs; the
# proofreader zooms out (wheel) to see where the neurites go.
SYNAPSE_FIELD_NM = 800.0
# Outline width of the segments, in voxels of the crop: one voxel is 2–4 screen pixels at the
# task's zoom, visible yet leaving the membranes under it readable.
CONTOUR = 1
# Skeleton line width (voxels) and decision point size (nm).
SKELETON_WIDTH_VOXELS = 0.8
POINT_SIZE_NM = 60.0
# Zoom on a new task: the crop fills this share of the canvas (the tighter of height and width).
FILL = 0.95

LAYER_NAMES = (EM, SEGMENTS, SKELETONS, SYNAPSE, POINT)


def synapse_arrow(view) -> np.ndarray:
    """``(n, 2, 2)`` napari vectors (crop y, x voxels) of a synapse question's pre → post arrow; none otherwise."""
    pair = getattr(view, "synapse_nm", None)
    if pair is None:
        return np.zeros((0, 2, 2))
    size = np.asarray(view.voxel_size_nm, dtype=float)[1:]
    origin = np.asarray(view.offset_nm, dtype=float)[1:]
    pre, post = ((np.asarray(p, dtype=float)[1:] - origin) / size for p in pair)
    return np.stack([pre, post - pre])[None]


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
    """RGBA per label of the view (segments, cut sides): the view's own colours, else the suite's id colour."""
    given = dict(getattr(view, "colors", None) or {})
    out = {}
    for seg in getattr(view.task, "segments", ()):
        colour = given.get(int(seg))
        out[int(seg)] = np.asarray(colour if colour is not None else segment_colour(int(seg)), dtype=float)
    for seg, colour in given.items():
        out.setdefault(int(seg), np.asarray(colour, dtype=float))
    return out


def display_labels(view, colours: dict[int, np.ndarray]) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """The labels to draw and RGBA per drawn value: the view's small display labels when it has them."""
    shown = getattr(view, "display_labels", None)
    values = tuple(getattr(view, "display_values", ()) or ())
    if shown is None or not values:
        return np.asarray(view.labels), colours
    fallback = np.array([1.0, 1.0, 1.0, 1.0])
    return np.asarray(shown), {i + 1: colours.get(int(v), fallback) for i, v in enumerate(values)}


def skeleton_vectors(view, colours: dict[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The view's skeleton edges projected onto a section: ``(N, 2, 2)`` vectors and ``(N, 4)`` RGBA.

    Each vector is ``[(y, x) start, (dy, dx)]`` in crop voxel units; only
    edges with both ends inside the crop are kept (the rest of a long
    skeleton would cover the section with lines from far away). An edge
    takes the colour of the label under its middle (so a "Cut here?" view
    colours the skeleton by side), else its segment's colour.
    """
    size = np.asarray(view.voxel_size_nm, dtype=float)
    offset = np.asarray(view.offset_nm, dtype=float)
    labels = np.asarray(view.labels)
    shape = np.asarray(labels.shape)
    fallback = next(iter(colours.values()), np.array([1.0, 1.0, 1.0, 1.0]))
    owners = list(getattr(view, "skeleton_segments", None) or [])
    starts, ends, rgba = [], [], []
    for i, path in enumerate(view.skeleton_paths or []):
        data = (np.asarray(path, dtype=float).reshape(-1, 3) - offset) / size
        if len(data) < 2:
            continue
        a, b = data[:-1], data[1:]
        inside = np.all((a > -0.5) & (a < shape - 0.5) & (b > -0.5) & (b < shape - 0.5), axis=1)
        a, b = a[inside], b[inside]
        if not len(a):
            continue
        own = colours.get(owners[i], fallback) if i < len(owners) else fallback
        mid = np.clip(np.round((a + b) / 2).astype(int), 0, shape - 1)
        under = labels[mid[:, 0], mid[:, 1], mid[:, 2]]
        edge_rgba = np.tile(own, (len(a), 1))
        for value in distinct(under):
            if int(value) != 0 and int(value) in colours:
                edge_rgba[under == value] = colours[int(value)]
        starts.append(a[:, 1:])
        ends.append(b[:, 1:])
        rgba.append(edge_rgba)
    if not starts:
        return np.zeros((0, 2, 2)), np.zeros((0, 4))
    start = np.concatenate(starts)
    return np.stack([start, np.concatenate(ends) - start], axis=1), np.concatenate(rgba)


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
        viewer.dims.events.ndisplay.connect(self._on_ndisplay)

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
        labels, label_colours = display_labels(view, colours := segment_colours(view))
        scale = tuple(float(v) for v in view.voxel_size_nm)
        translate = tuple(float(v) for v in view.offset_nm)
        point = (np.asarray(view.point_nm, dtype=float) - np.asarray(translate)) / np.asarray(scale)
        vectors, vector_colours = skeleton_vectors(view, colours)
        if not self._complete():
            self._make(em, labels, scale, translate)
        limits = em_contrast(em)
        with _one_update(self.viewer, [self._layers[name] for name in LAYER_NAMES]):
            layer = self._layers[EM]
            layer.data = em
            _place(layer, scale, translate)
            if tuple(layer.contrast_limits) != limits:
                layer.contrast_limits_range = limits
                layer.contrast_limits = limits
            seg_layer = self._layers[SEGMENTS]
            seg_layer.data = labels
            _place(seg_layer, scale, translate)
            seg_layer.colormap = _label_colormap(label_colours)
            pts = self._layers[POINT]
            _place(pts, scale[1:], translate[1:])
            pts.data = point[1:].reshape(1, 2)
            # a synapse is seen close up (SYNAPSE_FIELD_NM): a smaller ring leaves the arrow's head visible
            ring = POINT_SIZE_NM / 2 if getattr(view, "synapse_nm", None) is not None else POINT_SIZE_NM
            pts.size = ring / float(min(scale))
            _place(self._layers[SKELETONS], scale[1:], translate[1:])
            _place(self._layers[SYNAPSE], scale[1:], translate[1:])
            self._layers[SYNAPSE].data = synapse_arrow(view)
        # Vectors data outside the held-back refresh: their colours are indexed by the sliced data.
        skel = self._layers[SKELETONS]
        skel.data = vectors
        if len(vectors):
            skel.edge_color = vector_colours
        self.view = view
        if centre:
            self.centre(view)

    def centre(self, view=None) -> None:
        """Show the section through the decision point, centred on it, the crop filling the canvas.

        The first task switches the viewer to 2D; later ones keep what the
        proofreader chose (napari's 2D/3D button).
        """
        view = view if view is not None else self.view
        if view is None:
            return
        if not self._shown_once:
            if self.viewer.dims.ndisplay != 2:
                self.viewer.dims.ndisplay = 2
            self._shown_once = True
        point = tuple(float(v) for v in view.point_nm)
        dims = self.viewer.dims
        first = dims.ndim - 3  # z, y, x are the last three axes (a channel axis may lead)
        # One call: each dims change re-slices every layer, hidden ones included.
        axes = [first + i for i in range(3) if not np.isclose(dims.point[first + i], point[i])]
        if axes:
            dims.set_point(axes, [point[a - first] for a in axes])
        # Centre on the crop, not the point: near a face of the volume the crop is cut there, and
        # centring on the point would leave part of the canvas empty and push the crop off it.
        size = np.asarray(view.voxel_size_nm, dtype=float)
        shape = np.asarray(np.shape(view.em), dtype=float)
        middle = np.asarray(view.offset_nm, dtype=float) + (shape - 1) / 2 * size
        cam = camera(self.viewer)
        cam.center = (point[0], float(middle[1]), float(middle[2]))
        extent = shape * size
        height, width = _canvas_size(self.viewer)
        if getattr(view, "synapse_nm", None) is not None and self.viewer.dims.ndisplay == 2 and min(height, width) > 0:
            # between the pre and post points, close up
            pre, post = (np.asarray(p, dtype=float) for p in view.synapse_nm)
            mid = (pre + post) / 2
            cam.center = (point[0], float(mid[1]), float(mid[2]))
            cam.zoom = FILL * min(height, width) / SYNAPSE_FIELD_NM
        elif self.viewer.dims.ndisplay == 2 and min(extent[1:]) > 0 and height > 0 and width > 0:
            cam.zoom = FILL * min(height / extent[1], width / extent[2])
        elif self.viewer.dims.ndisplay == 3 and max(extent) > 0 and min(height, width) > 0:
            cam.zoom = FILL * min(height, width) / float(max(extent))

    def step_section(self, steps: int) -> None:
        """Move ``steps`` sections (z) through the crop, staying inside it."""
        view = self.view
        if view is None:
            return
        dims = self.viewer.dims
        axis = dims.ndim - 3
        z_size = float(view.voxel_size_nm[0])
        lo = float(view.offset_nm[0])
        hi = lo + (np.shape(view.em)[0] - 1) * z_size
        now = float(dims.point[axis])
        dims.set_point(axis, float(np.clip(now + steps * z_size, lo, hi)))

    def clear(self) -> None:
        """Show nothing (no task left), keeping the layers."""
        for name in (EM, SEGMENTS):
            layer = self.layer(name)
            if layer is not None:
                layer.data = np.zeros((1, 1, 1), dtype=layer.data.dtype)
        if (layer := self.layer(SKELETONS)) is not None:
            layer.data = np.zeros((0, 2, 2))
        if (layer := self.layer(SYNAPSE)) is not None:
            layer.data = np.zeros((0, 2, 2))
        if (layer := self.layer(POINT)) is not None:
            layer.data = np.empty((0, 2))
        self.view = None

    def remove(self) -> None:
        """Remove the layers from the viewer."""
        try:
            self.viewer.dims.events.ndisplay.disconnect(self._on_ndisplay)
        except Exception:  # already gone with the viewer
            pass
        for layer in self.layers():
            self.viewer.layers.remove(layer)
        self._layers.clear()
        self._shown_once = False
        self.view = None

    def _on_ndisplay(self, _event=None) -> None:
        """3D on demand: the EM as the plane of the section shown; the 2-D projections hidden.

        The projected skeletons and the point are 2-D layers, which a 3-D
        view would draw at z = 0, away from the crop; the section's own EM
        plane keeps the picture readable while the segments show in depth.
        """
        three = self.viewer.dims.ndisplay == 3
        for name in (SKELETONS, SYNAPSE, POINT):
            if (layer := self.layer(name)) is not None:
                layer.visible = not three
        em = self.layer(EM)
        if em is None:
            return
        if three:
            em.depiction = "plane"
            em.plane.normal = (1.0, 0.0, 0.0)
            z = float(self.viewer.dims.point[self.viewer.dims.ndim - 3])
            em.plane.position = ((z - em.translate[0]) / em.scale[0], em.data.shape[1] / 2, em.data.shape[2] / 2)
        else:
            em.depiction = "volume"

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
        if EM not in self._layers:
            self._layers[EM] = viewer.add_image(
                em, name=EM, scale=scale, translate=translate, colormap="gray", metadata=self.meta,
            )
        if SEGMENTS not in self._layers:
            layer = viewer.add_labels(
                labels, name=SEGMENTS, scale=scale, translate=translate, opacity=1.0,
                blending="translucent", metadata=self.meta,
            )
            layer.contour = CONTOUR  # outlines: the membranes under the segments stay visible
            layer.editable = False  # a task's crop is a picture, not the segmentation
            self._layers[SEGMENTS] = layer
        if SKELETONS not in self._layers:
            # 2-D: napari draws a layer with fewer dimensions on every section, i.e. projected.
            self._layers[SKELETONS] = viewer.add_vectors(
                np.zeros((0, 2, 2)), ndim=2, name=SKELETONS, scale=scale[1:], translate=translate[1:],
                edge_width=SKELETON_WIDTH_VOXELS, vector_style="line", edge_color="white", length=1.0,
                blending="translucent_no_depth", metadata=self.meta,
            )
            # napari redraws a Vectors thumbnail from every vector on each change (~12 ms for a few
            # hundred skeleton edges, twice per task); a thumbnail of skeleton lines tells nothing.
            self._layers[SKELETONS]._update_thumbnail = _no_thumbnail
        if SYNAPSE not in self._layers:
            self._layers[SYNAPSE] = viewer.add_vectors(
                np.zeros((0, 2, 2)), ndim=2, name=SYNAPSE, scale=scale[1:], translate=translate[1:],
                edge_width=SYNAPSE_WIDTH_VOXELS, vector_style="arrow", edge_color=SYNAPSE_COLOUR, length=1.0,
                blending="translucent_no_depth", metadata=self.meta,
            )
            self._layers[SYNAPSE]._update_thumbnail = _no_thumbnail
        if POINT not in self._layers:
            # 2-D like the skeletons: the point's (y, x) stays marked on every section stepped to.
            self._layers[POINT] = viewer.add_points(
                np.empty((0, 2)), ndim=2, name=POINT, scale=scale[1:], translate=translate[1:],
                face_color=POINT_COLOUR, border_width=0, symbol="ring",
                blending="translucent_no_depth", metadata=self.meta,
            )
        # Keep the point selected as the active layer: clicks and keys land on our layers.
        viewer.layers.selection.active = self._layers[POINT]


def _no_thumbnail(*_args, **_kwargs) -> None:
    """Stands in for a layer's thumbnail update (see :meth:`TaskLayers._make`)."""


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


def _canvas_size(viewer) -> tuple[float, float]:
    """The canvas's (height, width) in pixels ((0, 0) when unknown)."""
    canvas = getattr(viewer, "canvas", None)  # napari ≥ 0.9: viewer.canvas.size (height, width)
    size = getattr(canvas, "size", None) if canvas is not None else getattr(viewer, "_canvas_size", None)
    if size is None:
        return 0.0, 0.0
    return float(size[0]), float(size[1])
