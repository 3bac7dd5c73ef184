"""The wheel carries the napari manifest, the sample, its licence and the registry."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_contains_package_data(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next(tmp_path.glob("napari_connectome-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in (
        "napari_connectome/__init__.py",
        "napari_connectome_plugins/napari.yaml",
        "napari_connectome_models/registry.json",
        "napari_connectome_resources/samples/gala-fib-test.h5",
        "napari_connectome_resources/samples/PROVENANCE.md",
        "napari_connectome_resources/LICENSE-gala.txt",
        "napari_connectome_resources/icons/connectome.svg",
    ):
        assert needed in names, f"{needed} missing from {wheel.name}"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "napari.manifest" in text and "napari_connectome_plugins:napari.yaml" in text
    assert not any(n.startswith(("tests/", "benchmarks/", "scripts/")) for n in names)
