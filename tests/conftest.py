"""Shared fixtures: where the real EM fixtures are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path | None:
    """../shared/data beside the checkout (CI clones with it there), or $NAPARI_CONNECTOME_SHARED_DATA."""
    env = os.environ.get("NAPARI_CONNECTOME_SHARED_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "data")
    for c in candidates:
        if c.is_dir():
            return c
    return None


def missing(reason: str) -> None:
    """Skip a test whose data or tool is missing here — but fail it in CI, where everything must be present."""
    if os.environ.get("CI", "").lower() not in ("", "0", "false"):
        pytest.fail(f"{reason} (CI must provide it)")
    pytest.skip(reason)


@pytest.fixture
def shared_data() -> Path:
    path = shared_data_dir()
    if path is None:
        missing("../shared/data (real EM fixtures) is not beside this checkout")
    return path


def need_torch():
    """torch, or a skip here and a failure in CI (it comes with the [models] extra, which CI installs)."""
    try:
        import torch
    except ImportError:
        missing("torch is not installed (it comes with napari-connectome[models])")
    return torch
