"""Fixtures of the napari-face tests (helpers live in plugin_volumes.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def torch():
    """torch, or a skip here and a failure in CI (as tests/conftest.py's ``need_torch``, which this
    folder's conftest shadows: ``from conftest import`` finds this file)."""
    try:
        import torch as module
    except ImportError:
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail("torch is not installed (CI must provide it)")
        pytest.skip("torch is not installed (it comes with napari-connectome[models])")
    return module


@pytest.fixture
def gala_path() -> Path:
    from napari_connectome.samples import gala_fib_path

    return gala_fib_path()


@pytest.fixture
def gala_project(tmp_path, gala_path):
    """A project over the bundled gala-fib datasets, in tmp_path."""
    from napari_connectome.project import create_project

    return create_project(
        tmp_path / "gala-project",
        raw=f"{gala_path}/raw",
        supervoxels=f"{gala_path}/supervoxels",
        boundaries=f"{gala_path}/boundaries",
        groundtruth=f"{gala_path}/groundtruth",
        name="gala test project",
    )


@pytest.fixture
def messages(monkeypatch):
    """Capture the napari notifications the plugin shows: list of (severity, text)."""
    import napari.utils.notifications as notifications

    seen: list[tuple[str, str]] = []
    for severity in ("error", "warning", "info"):
        monkeypatch.setattr(
            notifications, f"show_{severity}", lambda text, _s=severity: seen.append((_s, text))
        )
    return seen
