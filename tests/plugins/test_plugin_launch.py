"""launch.view / launch.demo: off-screen screenshots and one-line errors (subprocesses)."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from plugin_volumes import PYTHON, gui_env

pytestmark = pytest.mark.gui


def _run(tmp_path, code: str, timeout: int = 240) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter on this test's display (pytest-xvfb's Xvfb)."""
    return subprocess.run(
        [PYTHON, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=gui_env(tmp_path),
        cwd=tmp_path,
    )


def _check_png(path, size=(1400, 900)) -> np.ndarray:
    import imageio.v3 as iio

    assert path.stat().st_size > 10_000
    image = iio.imread(path)
    assert image.shape[1] >= size[0] * 0.8 and image.shape[0] >= size[1] * 0.8
    rgb = image[..., :3].reshape(-1, 3)
    assert len(np.unique(rgb[:: max(1, len(rgb) // 200_000)], axis=0)) > 50  # not one colour
    return image


def test_demo_screenshot_shows_the_project(tmp_path):
    shot = tmp_path / "demo.png"
    result = _run(
        tmp_path,
        "from napari_connectome_plugins.launch import demo;"
        f"raise SystemExit(demo(screenshot={str(shot)!r}))",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    image = _check_png(shot)
    # The dock sits on the right: its column differs from the canvas's black margins.
    right = image[:, -300:, :3]
    assert right.std() > 10


def test_demo_synthetic_screenshot_in_3d(tmp_path):
    shot = tmp_path / "synthetic.png"
    result = _run(
        tmp_path,
        "from napari_connectome_plugins.launch import demo;"
        f"raise SystemExit(demo(sample='synthetic', screenshot={str(shot)!r}, ndisplay=3, size=(1000, 700)))",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    _check_png(shot, size=(1000, 700))


def test_view_screenshot_of_volumes(tmp_path, gala_path):
    shot = tmp_path / "view.png"
    uris = [f"{gala_path}/raw", f"{gala_path}/groundtruth"]
    result = _run(
        tmp_path,
        "from napari_connectome_plugins.launch import view;"
        f"raise SystemExit(view({uris!r}, screenshot={str(shot)!r}))",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    _check_png(shot)


@pytest.mark.parametrize(
    ("call", "expect"),
    [
        ("view(['{tmp}/missing.zarr'])", "missing.zarr: no such file or directory"),
        ("view(['{tmp}'])", "neither a project"),
        ("view(['{tmp}/notes.txt'])", "notes.txt"),
        ("view([{gala!r}], voxel_size=(0, 1, 1))", "voxel size"),
        ("demo(sample='nope')", "unknown sample 'nope'"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_2(tmp_path, gala_path, call, expect):
    (tmp_path / "notes.txt").write_text("hello\n")
    call = call.format(tmp=tmp_path, gala=f"{gala_path}/raw")
    result = _run(
        tmp_path,
        f"from napari_connectome_plugins.launch import view, demo; raise SystemExit({call})",
        timeout=120,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    ours = [line for line in result.stderr.splitlines() if line.startswith("napari-connectome:")]
    assert len(ours) == 1, result.stderr
    assert ours[0].startswith("napari-connectome: error: ")
    assert expect in ours[0]
    assert "Traceback" not in result.stderr


def test_screenshot_reports_what_the_viewer_said(tmp_path):
    """Off-screen, the toasts nobody sees are echoed on stderr."""
    import tifffile
    from plugin_volumes import image_data

    tifffile.imwrite(tmp_path / "plain.tif", image_data())
    shot = tmp_path / "plain.png"
    result = _run(
        tmp_path,
        "from napari_connectome_plugins.launch import view;"
        f"raise SystemExit(view([{str(tmp_path / 'plain.tif')!r}], screenshot={str(shot)!r}))",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    warned = [line for line in result.stderr.splitlines() if line.startswith("napari-connectome: warning:")]
    assert len(warned) == 1 and "assumed" in warned[0]
    assert shot.stat().st_size > 10_000


def test_no_display_is_one_line_not_a_qt_abort(tmp_path):
    env = gui_env(tmp_path)
    for var in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        env.pop(var, None)
    result = subprocess.run(
        [PYTHON, "-c", "from napari_connectome_plugins.launch import demo; raise SystemExit(demo(screenshot='x.png'))"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1].startswith("napari-connectome: error: no display")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.png").exists()
