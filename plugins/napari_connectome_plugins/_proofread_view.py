"""The Proofread panel's layers: the live segments, the split preview, the seeds and the selection.

The panel decides what to do (select, merge, preview and commit a split,
re-base); this class owns what napari draws for it. The segments layer gets
one :class:`~napari_connectome_plugins._proofread_layers.LiveArray` per level
for its whole life: an edit only changes the mapping behind it, so a refresh
draws it, and a re-based threshold or a split preview only points the live
arrays at another lazy source. Segment colours come from the workspace's
:class:`~napari_connectome.tasks.colours.SegmentColours`, so a body keeps its
colour through edits, in this panel and in the task view.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from napari_connectome_plugins._layers import layer_meta
from napari_connectome_plugins._proofread_layers import (
    LiveArray,
    MappedArray,
    data_to_nm,
    nm_to_data,
    segment_colormap,
)

logger = logging.getLogger(__name__)

PROOF_KEY = "napari_connectome_proofread"
SEGMENTS = "segments"
SELECTION = "selected segments"
SOURCES = "split sources"
SINKS = "split sinks"
PREVIEW = "split preview"
SOURCE_COLOUR = "royalblue"
SINK_COLOUR = "red"
SELECTION_COLOUR = "yellow"
MARKER_SIZE = 5.0


class ProofreadLayers:
    """Make, update and remove the Proofread panel's layers in ``viewer``.

    Parameters
    ----------
    viewer
        The napari viewer.
    proofreader
        The open Proofreader whose segments and supervoxels are drawn.
    colours
        Segment colours that follow the edits (the workspace's).
    project_root
        The project's folder (recorded in the layers' metadata; its
        supervoxels layer is hidden while these are shown).
    on_click
        Mouse-drag callback of the segments layer.
    on_seeds_changed
        Called when a seed point is added, moved or removed.
    """

    def __init__(self, viewer: Any, proofreader, colours, *, project_root: str,
                 on_click: Callable, on_seeds_changed: Callable) -> None:
        from napari.utils.colormaps import DirectLabelColormap

        self.viewer = viewer
        self.colours = colours
        volume = proofreader.labels_volume()
        #: The labels volume's geometry (nm) that seeds and clicks are converted with.
        self.volume = volume
        scale = tuple(float(v) for v in volume.voxel_size)
        translate = tuple(float(v) for v in volume.offset)
        meta = {PROOF_KEY: {"project": project_root}}
        multiscale = len(volume.levels) > 1

        def data(levels):
            return levels if multiscale else levels[0]

        self._segment_levels = [LiveArray(a) for a in volume.arrays]
        self._preview_levels = [
            LiveArray(MappedArray(a, [], [], default=0, dtype=np.uint8)) for a in proofreader.supervoxel_volume().arrays
        ]
        self._hidden: list[Any] = []
        for layer in viewer.layers:
            m = layer_meta(layer) or {}
            if m.get("project") == project_root and m.get("role") == "supervoxels" and layer.visible:
                layer.visible = False
                self._hidden.append(layer)
        segments = viewer.add_labels(
            data(self._segment_levels), name=SEGMENTS, scale=scale, translate=translate,
            multiscale=multiscale, opacity=0.55, metadata=meta,
            colormap=segment_colormap(proofreader.mapping()[1], colours),
        )
        # Painting into the engine's lazy segments would bypass the edit log.
        segments.editable = False
        segments.mouse_drag_callbacks.append(on_click)
        preview = viewer.add_labels(
            data(self._preview_levels), name=PREVIEW, scale=scale, translate=translate,
            multiscale=multiscale, opacity=0.75, visible=False, metadata=meta,
            colormap=DirectLabelColormap(
                color_dict={None: "transparent", 0: "transparent", 1: SOURCE_COLOUR, 2: SINK_COLOUR}
            ),
        )
        preview.editable = False
        points = {}
        for name, colour, symbol in (
            (SOURCES, SOURCE_COLOUR, "disc"),
            (SINKS, SINK_COLOUR, "disc"),
            (SELECTION, SELECTION_COLOUR, "ring"),
        ):
            kwargs: dict[str, Any] = {}
            if name == SELECTION:
                kwargs["features"] = {"segment": np.zeros(0, dtype=np.int64)}
                kwargs["text"] = {"string": "{segment}", "color": SELECTION_COLOUR, "anchor": "upper_left", "size": 10}
            points[name] = viewer.add_points(
                np.empty((0, 3)), name=name, scale=scale, translate=translate, size=MARKER_SIZE,
                face_color=colour, border_color=colour, symbol=symbol, metadata=meta, **kwargs,
            )
        for name in (SOURCES, SINKS):
            points[name].events.data.connect(on_seeds_changed)
        self._layers: dict[str, Any] = {SEGMENTS: segments, PREVIEW: preview, **points}
        viewer.layers.selection.active = segments

    # -- the layers ---------------------------------------------------------------
    def layer(self, name: str):
        """Layer ``name`` (``segments``, ``split sources`` …) if it is still in the viewer, else None."""
        layer = self._layers.get(name)
        return layer if layer is not None and layer in self.viewer.layers else None

    def all(self) -> list:
        """Every layer made here (where the panel's keys are bound too)."""
        return list(self._layers.values())

    def owns(self, layer: Any) -> bool:
        """True if ``layer`` is the segments layer (its removal ends the panel's work)."""
        segments = self._layers.get(SEGMENTS)
        return segments is not None and layer is not None and (
            getattr(layer, "__wrapped__", layer) is getattr(segments, "__wrapped__", segments)
        )

    def remove(self) -> None:
        """Remove the layers and show the supervoxels again."""
        layers, self._layers = self._layers, {}
        for layer in layers.values():
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        for layer in self._hidden:
            if layer in self.viewer.layers:
                layer.visible = True
        self._hidden = []

    # -- segments --------------------------------------------------------------------
    def recolour(self, proofreader, segment_ids=None) -> None:
        """Draw the segments through the mapping now, in the colours the edits handed on.

        ``segment_ids``: every id the layer can show (default: the Proofreader's mapping;
        while the threshold is dragged, that threshold's mapping).
        """
        segments = self.layer(SEGMENTS)
        if segments is None:
            return
        ids = proofreader.mapping()[1] if segment_ids is None else segment_ids
        try:
            segments.colormap = segment_colormap(ids, self.colours)
        except Exception:  # colours must never stop an edit from being drawn
            logger.debug("recolouring the segments failed", exc_info=True)
        # Same data object: the next read goes through the new mapping.
        segments.refresh()

    def show_segments(self, arrays, proofreader, segment_ids=None) -> None:
        """Point the segments at other lazy ``arrays`` (one per level): a re-base or a dragged threshold."""
        for live, array in zip(self._segment_levels, arrays, strict=True):
            live.retarget(array)
        self.recolour(proofreader, segment_ids)

    def show_mapping(self, proofreader, sv_ids, segment_ids) -> None:
        """Draw the supervoxels through ``sv_ids → segment_ids`` (a threshold being dragged; nothing saved)."""
        arrays = [
            MappedArray(array, sv_ids, segment_ids, default=None, dtype=live.dtype)
            for live, array in zip(self._segment_levels, proofreader.supervoxel_volume().arrays, strict=True)
        ]
        self.show_segments(arrays, proofreader, segment_ids)

    # -- split preview --------------------------------------------------------------------
    def show_preview(self, preview, proofreader) -> None:
        """Draw ``preview``'s two sides (blue sources, red sinks)."""
        keys = np.concatenate([np.asarray(preview.source_supervoxels), np.asarray(preview.sink_supervoxels)])
        sides = np.concatenate([
            np.full(len(preview.source_supervoxels), 1, np.uint8),
            np.full(len(preview.sink_supervoxels), 2, np.uint8),
        ])
        supervoxels = proofreader.supervoxel_volume()
        for level, (live, array) in enumerate(zip(self._preview_levels, supervoxels.arrays, strict=True)):
            if level == 0:
                # The preview's own voxels: they include the two parts of a
                # supervoxel divided inside, which no supervoxel id names yet.
                live.retarget(preview.volume().levels[0].array)
            else:
                live.retarget(MappedArray(array, keys, sides, default=0, dtype=np.uint8))
        layer = self.layer(PREVIEW)
        if layer is not None:
            layer.visible = True
            layer.refresh()

    def hide_preview(self, proofreader) -> None:
        """Blank and hide the preview."""
        supervoxels = proofreader.supervoxel_volume()
        for live, array in zip(self._preview_levels, supervoxels.arrays, strict=True):
            live.retarget(MappedArray(array, [], [], default=0, dtype=np.uint8))
        layer = self.layer(PREVIEW)
        if layer is not None:
            layer.visible = False

    # -- seeds and selection -----------------------------------------------------------------
    def seed_layer(self, mode: str):
        """The points layer of ``sources`` or ``sinks``.

        Raises
        ------
        RuntimeError
            The person removed it.
        """
        name = SOURCES if mode == "sources" else SINKS
        layer = self.layer(name)
        if layer is None:
            raise RuntimeError(f"the '{name}' layer was removed; reopen the project in the Proofread panel")
        return layer

    def add_seed(self, mode: str, point_nm) -> None:
        """Place a seed of ``mode`` at ``point_nm``."""
        layer = self.seed_layer(mode)
        layer.data = np.vstack([layer.data, nm_to_data(point_nm, self.volume)])

    def seeds(self) -> tuple[list[tuple[float, ...]], list[tuple[float, ...]]]:
        """The seeds shown, in nm: (sources, sinks). Moving a point moves its seed."""
        out = []
        for name in (SOURCES, SINKS):
            layer = self.layer(name)
            pts = data_to_nm(layer.data, self.volume) if layer is not None and len(layer.data) else []
            out.append([tuple(float(v) for v in p) for p in pts])
        return out[0], out[1]

    def clear_seeds(self) -> None:
        """Remove every seed point."""
        for name in (SOURCES, SINKS):
            layer = self.layer(name)
            if layer is not None and len(layer.data):
                layer.data = np.empty((0, 3))

    def show_selection(self, points_nm, segment_ids) -> None:
        """Ring the selected points, labelled with their segment ids."""
        layer = self.layer(SELECTION)
        if layer is None:
            return
        layer.data = nm_to_data(points_nm, self.volume) if len(points_nm) else np.empty((0, 3))
        layer.features = {"segment": np.asarray(segment_ids, dtype=np.int64)}
        layer.refresh()

    def select_label(self, segment: int) -> None:
        """Make ``segment`` the segments layer's selected label (napari shows it in the layer controls)."""
        segments = self.layer(SEGMENTS)
        if segments is not None:
            segments.selected_label = int(segment)
