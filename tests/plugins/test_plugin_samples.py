"""Sample data contributions: the functions, and napari's File ▸ Open Sample."""

from __future__ import annotations

import numpy as np
import pytest
from napari_connectome_plugins._layers import META_KEY
from napari_connectome_plugins._sample_data import gala_fib, synthetic


def test_gala_fib_sample_layers():
    layers = gala_fib()
    assert [k["name"] for _, k, _ in layers] == ["raw", "supervoxels", "boundaries", "groundtruth"]
    assert [t for _, _, t in layers] == ["image", "labels", "image", "labels"]
    assert [k["visible"] for _, k, _ in layers] == [True, True, False, False]
    for data, kwargs, _ in layers:
        assert kwargs["scale"] == (10.0, 10.0, 10.0)
        assert data.shape == (50, 100, 200)
        assert kwargs["metadata"][META_KEY]["format"] == "hdf5"
    raw = np.asarray(layers[0][0][25])
    assert raw.dtype == np.uint8 and raw.std() > 5  # real EM, not a blank plane
    sv = np.asarray(layers[1][0][25])
    assert len(np.unique(sv)) > 10


def test_synthetic_sample_layers():
    layers = synthetic()
    assert [t for _, _, t in layers] == ["image", "labels"]
    (raw, raw_kw, _), (gt, gt_kw, _) = layers
    assert raw_kw["scale"] == gt_kw["scale"]
    assert raw.shape == gt.shape
    plane = np.asarray(raw[raw.shape[0] // 2])
    assert plane.std() > 1
    assert len(np.unique(np.asarray(gt[gt.shape[0] // 2]))) > 2
    assert synthetic()[0][1]["metadata"] == raw_kw["metadata"]  # seed 0: the same every time
    np.testing.assert_array_equal(np.asarray(synthetic()[0][0][3]), np.asarray(raw[3]))


@pytest.mark.gui
@pytest.mark.parametrize(("key", "count"), [("gala-fib", 4), ("synthetic", 2)])
def test_open_sample_in_napari(make_napari_viewer, key, count):
    viewer = make_napari_viewer()
    added = viewer.open_sample("napari-connectome", key)
    assert len(added) == count == len(viewer.layers)
    assert {type(layer).__name__ for layer in viewer.layers} == {"Image", "Labels"}
