"""The packaged synapse model: its registry entry, its weights and the card's measured figures agree."""

from __future__ import annotations

from importlib.resources import files

import pytest

# At import time: once tests/plugins is collected, ``conftest`` names that folder's file.
from conftest import need_torch

torch = need_torch()

from napari_connectome_models.nets.synapse import SynapseUNet  # noqa: E402
from napari_connectome_models.registry import load_network, load_registry, weights_path  # noqa: E402

SYNAPSE_MODELS = sorted(name for name, e in load_registry().items() if e.task == "synapses")


def test_the_default_synapse_model_is_shipped():
    assert "synapses-synthetic-10nm" in SYNAPSE_MODELS


@pytest.mark.parametrize("name", SYNAPSE_MODELS)
def test_each_packaged_synapse_model_loads_and_matches_its_entry(name):
    entry = load_registry()[name]
    assert entry.task == "synapses"
    assert entry.detect and 0 < entry.detect["threshold"] < 1  # chosen on held-out data
    model = load_network(entry.name)
    assert isinstance(model, SynapseUNet)
    assert model.config.context == entry.context_voxels
    assert model.config.output_shape(entry.fov_voxels) == entry.output_shape
    meta = torch.load(weights_path(entry), weights_only=True)["metadata"]
    # the card's figures are the export's measurement, not typed in
    card = (files("napari_connectome_models") / entry.card).read_text(encoding="utf-8")
    assert f"{meta['holdout_scores']['f1']:.4f}" in card
    assert f"{meta['holdout_scores']['vector_error_nm']:.1f}" in card
    assert entry.sha256 in card
