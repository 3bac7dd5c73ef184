"""The npe2 manifest: valid, and every python_name imports."""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import napari_connectome_plugins
import pytest
import yaml

MANIFEST = Path(napari_connectome_plugins.__file__).with_name("napari.yaml")


def _manifest() -> dict:
    return yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))


def _python_names() -> list[str]:
    return [c["python_name"] for c in _manifest()["contributions"]["commands"]]


def test_manifest_names_and_contributions():
    m = _manifest()
    assert m["name"] == "napari-connectome"
    assert m["display_name"] == "Connectome"
    contrib = m["contributions"]
    reader = contrib["readers"][0]
    assert reader["accepts_directories"] is True
    for pattern in ("*.zarr", "*.n5", "*.h5", "*.hdf5", "*.hdf", "*.tif", "*.tiff", "*"):
        assert pattern in reader["filename_patterns"]
    assert {w["layer_types"][0] for w in contrib["writers"]} == {"image", "labels"}
    assert all(".ome.zarr" in w["filename_extensions"] for w in contrib["writers"])
    assert {s["key"] for s in contrib["sample_data"]} == {"gala-fib", "synthetic"}
    assert [w["display_name"] for w in contrib["widgets"]] == ["Connectome", "Proofread", "Micro-tasks", "Effort",
                                                              "Segment", "Train", "Synapses"]
    commands = {c["id"] for c in contrib["commands"]}
    used = [r["command"] for r in contrib["readers"]] + [w["command"] for w in contrib["writers"]]
    used += [s["command"] for s in contrib["sample_data"]] + [w["command"] for w in contrib["widgets"]]
    assert set(used) <= commands


@pytest.mark.parametrize("python_name", _python_names())
def test_python_name_imports(python_name):
    module_name, _, attr = python_name.partition(":")
    assert len(attr) >= 2, "npe2 rejects one-character names"
    module = importlib.import_module(module_name)
    assert callable(getattr(module, attr))


def test_installed_plugin_is_found_through_its_entry_point():
    from importlib.metadata import entry_points

    from npe2 import PluginManager

    eps = [ep for ep in entry_points(group="napari.manifest") if ep.name == "napari-connectome"]
    assert [ep.value for ep in eps] == ["napari_connectome_plugins:napari.yaml"]
    pm = PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("napari-connectome")
    assert manifest.display_name == "Connectome"
    assert len(manifest.contributions.commands) == len(_python_names())


def test_npe2_validate_passes():
    npe2 = shutil.which("npe2", path=str(Path(sys.executable).parent)) or shutil.which("npe2")
    assert npe2, "the npe2 command is not installed"
    for target in (str(MANIFEST), "napari-connectome"):
        result = subprocess.run(
            [npe2, "validate", target, "--imports"], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "valid" in result.stdout


def test_importing_the_plugin_package_loads_no_gui():
    code = (
        "import sys, napari_connectome_plugins, napari_connectome_plugins._reader;"
        "bad = [m for m in ('qtpy', 'PyQt5', 'napari', 'vispy') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
